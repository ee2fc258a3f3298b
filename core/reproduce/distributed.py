"""A sweep's runs on Ray, past one machine: `--ray local` (a Ray instance on this machine) or
`--ray ADDRESS` (a running cluster, e.g. `ray://head:10001`). The runs are independent: each Ray
worker is an actor that loads the backbone and the data sets once, then runs the specs it is
handed, and every run writes its own result file (atomically), exactly as without Ray, so an
interrupted sweep resumes and the tables merge whatever finished. The data, `--out` and
`--cache-dir` must be paths every node sees (a shared file system).

Ray is optional: `pip install "ray==2.60.0"` where sweeps are distributed.
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

from core.reproduce.runs import Options, RunSpec, _write_json_atomic
from core.reproduce.settings import ReproduceError

log = logging.getLogger(__name__)


class RunWorker:
    """One Ray actor: the backbone and the data sets loaded once, a run at a time."""

    def __init__(self, options: Options) -> None:
        from core.backbone import load_backbone
        from core.reproduce.data import find_datasets, load_dataset
        from core.reproduce.runs import Sweep

        datasets = {}
        for folder in find_datasets(options.root, options.datasets):
            ds = load_dataset(folder)
            datasets[ds.name] = ds
        self.options = options
        self.sweep = Sweep(options, load_backbone(options.backbone, options.device), datasets)

    def run(self, spec: RunSpec) -> tuple[RunSpec, dict]:
        record = self.sweep.run(spec)
        _write_json_atomic(spec.path(self.options.out), record)
        return spec, record["metrics"]

    def encoded(self) -> int:
        return self.sweep.store.encoded


def run_on_ray(options: Options, specs: Sequence[RunSpec], workers: int | None = None
               ) -> Iterator[tuple[RunSpec, dict]]:
    """Run `specs` on Ray actors; yields (spec, metrics) as each run finishes (its file is
    written by then). One actor per GPU of the cluster, else one per CPU, unless `workers`."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise ReproduceError("--ray needs Ray: pip install \"ray==2.60.0\".") from exc
    if not specs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        if options.ray == "local":
            ray.init(include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
        else:
            ray.init(address=options.ray, logging_level=logging.WARNING)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and options.device != "cpu"
        count = workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1))))
        actor = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(RunWorker)
        pool = ActorPool([actor.remote(options) for _ in range(min(count, len(specs)))])
        log.info("Ray: %d worker(s) on %s", min(count, len(specs)),
                 f"{gpus} GPU(s)" if use_gpu else f"{int(resources.get('CPU', 1))} CPU(s)")
        yield from pool.map_unordered(lambda worker, spec: worker.run.remote(spec), list(specs))
    finally:
        if started_here:
            ray.shutdown()
