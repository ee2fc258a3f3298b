"""A sweep: finding the data sets, skipping finished runs, running the rest."""
from __future__ import annotations

import logging
from typing import Sequence

from core.backbone import Backbone, load_backbone
from core.errors import DatasetError

from core.reproduce.data import find_datasets, load_dataset
from core.reproduce.settings import ReproduceError, task_settings
from core.reproduce.runs import (Options, RunSpec, Summary, Sweep, _bar, _read_run,
                                 _write_json_atomic)
from core.reproduce.tables import write_tables

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
def check_conflicts(sweep: Sweep, specs: Sequence[RunSpec]) -> tuple[list[RunSpec], int]:
    """(runs to do, runs to skip). A finished run made with other settings is an error unless
    --force: mixing settings in one table would be silently wrong."""
    todo, skipped, conflicts = [], 0, []
    for spec in specs:
        found = _read_run(spec.path(sweep.options.out))
        if found is None or sweep.options.force:
            todo.append(spec)
        elif found["config"] != sweep.config(spec):
            conflicts.append((spec, _first_difference(found["config"], sweep.config(spec))))
        else:
            skipped += 1
    if conflicts:
        spec, diff = conflicts[0]
        raise ReproduceError(f"{len(conflicts)} finished run(s) in {sweep.options.out} were made "
                             f"with other settings (first: {spec.label}: {diff}). Pass --force "
                             "to redo them, or choose another --out.")
    return todo, skipped


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_difference(a, b, f"{prefix}{key}.")
            return f"{prefix}{key} was {a!r}, now {b!r}"
    return "no difference"


def run_sweep(options: Options, backbone: Backbone | None = None) -> Summary:
    """Check the data sets, load the backbone, run what is not finished, rebuild the tables."""
    folders = find_datasets(options.root, options.datasets)
    datasets = {}
    for folder in folders:
        ds = load_dataset(folder)
        task_settings(ds.name, options.override)  # fail now, not after hours of work
        datasets[ds.name] = ds
        log.info("%s: %d classes, %d train, %d test images", ds.name, len(ds.classnames),
                 len(ds.train), len(ds.test))
    if options.protocol == "base-to-novel":
        small = [n for n, d in datasets.items() if len(d.classnames) < 3]
        if small:
            raise DatasetError(f"Base-to-novel needs at least 3 classes; {', '.join(small)} "
                               "has fewer.")
    bb = backbone or load_backbone(options.backbone, "cpu" if options.ray else options.device)
    sweep = Sweep(options, bb, datasets)
    todo, skipped = check_conflicts(sweep, options.specs(list(datasets)))
    log.info("%d run(s) to do, %d already finished; backbone %s on %s, precision %s",
             len(todo), skipped, bb.name, bb.device, sweep.precision)
    summary = Summary(skipped=skipped)
    with _bar(options.progress and bool(todo), len(todo), "runs", "run") as bar:
        for spec, metrics in _runs(sweep, todo):
            log.info("%s: %s", spec.label, _metrics_text(metrics))
            summary.ran += 1
            bar.update(1)
    summary.encoded = sweep.store.encoded
    summary.results_md, summary.results_csv, summary.markdown = write_tables(options.out)
    return summary


def _runs(sweep: Sweep, todo: Sequence[RunSpec]):
    """(spec, metrics) of each run as it finishes, its file written: here one after another,
    or on Ray's workers."""
    if sweep.options.ray:
        from core.reproduce.distributed import run_on_ray

        yield from run_on_ray(sweep.options, todo, sweep.options.ray_workers)
        return
    for spec in todo:
        record = sweep.run(spec)
        _write_json_atomic(spec.path(sweep.options.out), record)
        yield spec, record["metrics"]


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items())


