"""One run of a sweep: encoding through the feature store, training, evaluating, its result file."""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from core.backbone import Backbone, resolve_precision
from core.baselines import fit_baseline
from core.evaluate import evaluate_features, result_from_probabilities
from core.features import DEFAULT_STORE_DIR, FeatureStore, StoreKey, encode
from core.prompts import DualPrompt
from core.train import TrainConfig, fit_features

from core.reproduce.settings import (DEFAULT_SHOTS, FITTED_BASELINES, METHODS,
                                     RELEASED_TRAINING, MethodOptions, PROTOCOLS, RUN_FORMAT,
                                     ReproduceError, SettingsOverride, Switches, TUNED_METHODS,
                                     build_prompts, prompt_config, task_settings)
from core.reproduce.data import (Dataset, Item, base_novel_split, capped,
                                 dassl_few_shot_indices, few_shot_indices)
from core.reproduce.teachers import (COOP_NAME, DPT_NAME, TeacherChoice, choose_sentences,
                                     read_teacher_file)


# --------------------------------------------------------------------------------------------
# Image views and cached features
# --------------------------------------------------------------------------------------------
class Encoder:
    """Encodes data set images for the feature store through `core.features.encode`: threads
    read the files, the backbone encodes in batches, a progress bar counts images. Crop views
    are seeded by the image's path, so an image's cached crops are the same in every run."""

    def __init__(self, store: FeatureStore, batch_size: int = 64, workers: int | None = None,
                 progress: bool = True) -> None:
        self.store = store
        self.batch_size = batch_size
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.progress = progress

    def features(self, bb: Backbone, vision_prompts: int, dataset: Dataset, split: str,
                 items: list[Item], view: str, precision: str,
                 vision_mode: str = "insert") -> torch.Tensor:
        mode = vision_mode if vision_prompts else "insert"
        key = StoreKey(bb.fingerprint, vision_prompts, view, precision,
                       f"{dataset.name}/{split}", mode)
        with _bar(self.progress, len(items), f"{dataset.name}/{split} {view} features",
                  "img") as bar:
            def encode_missing(indices: list[int]) -> torch.Tensor:
                return self._encode(bb, vision_prompts, dataset, [items[i] for i in indices],
                                    view, precision, bar, mode)

            return self.store.features(key, [item.id for item in items], encode_missing,
                                       progress=lambda done, total: _bar_to(bar, done))

    def _encode(self, bb: Backbone, vision_prompts: int, dataset: Dataset, items: list[Item],
                view: str, precision: str, bar, vision_mode: str) -> torch.Tensor:
        out = []
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(items), self.batch_size):
                batch = items[start:start + self.batch_size]
                images = list(pool.map(dataset.image, batch))
                out.append(encode(bb, images, view=view, vision_prompts=vision_prompts,
                                  precision=precision, keys=[it.path for it in batch],
                                  batch_size=self.batch_size, vision_mode=vision_mode))
                bar.update(len(batch))
        return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    dataset: str
    protocol: str
    method: str
    shots: int  # 0 for zero-shot
    seed: int  # 0 for zero-shot

    def path(self, out: Path) -> Path:
        return (out / "runs" / self.dataset / self.protocol / self.method
                / f"k{self.shots}_seed{self.seed}.json")

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.protocol} {self.method} K={self.shots} seed={self.seed}"


@dataclass(frozen=True)
class Options:
    """A sweep, checked on creation."""

    root: Path
    out: Path
    datasets: tuple[str, ...] = ()  # empty: every data set folder under root
    protocol: str = "few-shot"
    shots: tuple[int, ...] | None = None  # None: the protocol's default
    seeds: tuple[int, ...] = (1, 2, 3)
    methods: tuple[str, ...] = METHODS
    backbone: str = "biomedclip"
    recipe: str = "paper"
    epochs: int | None = None
    steps: int | None = None
    cache_dir: Path = DEFAULT_STORE_DIR
    device: str | None = None
    max_test: int | None = None
    force: bool = False
    batch_size: int = 64
    progress: bool = True
    override: SettingsOverride = SettingsOverride()
    method_options: MethodOptions = MethodOptions()
    switches: Switches = Switches()
    teacher_file: Path | None = None  # the authors' prompt_templates.py, or JSON
    ray: str | None = None  # run the runs on Ray: "local" or a cluster address
    ray_workers: int | None = None  # Ray actors (default: one per GPU, else per CPU)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ReproduceError(f"Unknown protocol {self.protocol!r}; use {' or '.join(PROTOCOLS)}.")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ReproduceError(f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
        if any(k < 1 for k in self.shot_list) or any(s < 0 for s in self.seeds) or not self.seeds:
            raise ReproduceError("Shots must be whole numbers >= 1 and seeds whole numbers >= 0.")
        if self.recipe not in ("paper", "fast"):
            raise ReproduceError(f"Unknown recipe {self.recipe!r}; use 'paper' or 'fast'.")
        if self.recipe == "fast" and self.epochs is not None:
            raise ReproduceError("The fast recipe counts steps, not epochs: use --steps.")
        if self.recipe == "paper" and self.steps is not None:
            raise ReproduceError("The paper recipe counts epochs, not steps: use --epochs.")
        for name in ("epochs", "steps", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ReproduceError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.batch_size < 1:
            raise ReproduceError("--batch-size must be at least 1.")
        if self.ray_workers is not None and (self.ray_workers < 1 or not self.ray):
            raise ReproduceError("--ray-workers needs --ray and must be at least 1.")
        if self.recipe == "fast" and self.switches.schedule == "dassl":
            raise ReproduceError("The released schedule (Dassl's, fresh crops every epoch) is "
                                 "the paper recipe's: use --recipe paper, or --schedule "
                                 "described.")

    @property
    def shot_list(self) -> tuple[int, ...]:
        return tuple(self.shots or DEFAULT_SHOTS[self.protocol])

    def train_config(self, seed: int, method: str = "biomed-dpt") -> TrainConfig:
        """The recipe of one run: the paper's (as described, or with the released schedule),
        with a published baseline's own batch and learning rate; or the fast one."""
        if self.recipe == "fast":
            return TrainConfig.fast(seed=seed, **({"steps": self.steps} if self.steps else {}))
        epochs = self.epochs or (100 if self.protocol == "few-shot" else 50)
        own = RELEASED_TRAINING.get(method, {}) if self.switches.baselines == "published" else {}
        if self.switches.schedule == "dassl":
            return TrainConfig.released(epochs=epochs, seed=seed, **own)
        return TrainConfig.paper(epochs=epochs, seed=seed, **own)

    def precision(self, device: torch.device) -> str:
        return resolve_precision(self.train_config(1).precision, device)

    def specs(self, datasets: Sequence[str]) -> list[RunSpec]:
        out = []
        for name in datasets:
            for method in self.methods:
                if method == "zero-shot":
                    out.append(RunSpec(name, self.protocol, method, 0, 0))
                    continue
                out += [RunSpec(name, self.protocol, method, k, s)
                        for k in self.shot_list for s in self.seeds]
        return out


@dataclass
class Summary:
    """What a sweep did and where its tables are."""

    ran: int = 0
    skipped: int = 0
    encoded: int = 0
    results_md: Path | None = None
    results_csv: Path | None = None
    markdown: str = ""


class Sweep:
    """Runs the specs of one invocation against loaded data sets, one backbone, one store."""

    def __init__(self, options: Options, bb: Backbone, datasets: Mapping[str, Dataset]) -> None:
        self.options = options
        self.bb = bb
        self.datasets = datasets
        self.precision = options.precision(bb.device)
        self.store = FeatureStore(options.cache_dir)
        self.encoder = Encoder(self.store, options.batch_size, progress=options.progress)
        self.settings = {name: task_settings(name, options.override) for name in datasets}
        self.teacher_files = _teacher_files(options)
        self._teachers: dict[tuple, TeacherChoice] = {}

    # ---- what a run is --------------------------------------------------------------------
    def config(self, spec: RunSpec) -> dict:
        """Everything that determines a run's result (compared before a finished run is
        skipped); not the device, the batch size, the paths or the name the backbone was loaded
        by (its weights' fingerprint identifies it)."""
        ds, options = self.datasets[spec.dataset], self.options
        settings = self.settings[spec.dataset]
        trained = spec.method in TUNED_METHODS
        teaches = spec.method in ("biomed-dpt", "biomedcoop")
        return _json_ready({
            "backbone_fingerprint": self.bb.fingerprint,
            "dataset": ds.name, "classnames": ds.classnames, "protocol": spec.protocol,
            "method": spec.method, "shots": spec.shots, "seed": spec.seed,
            "prompt": asdict(self.prompt_config(spec.method, ds.name, spec.protocol)),
            "paper_n_ctx": settings.n_ctx,
            "method_options": options.method_options.relevant(spec.method),
            "switches": options.switches.to_dict(), "mode": options.switches.mode,
            "train": options.train_config(spec.seed, spec.method).to_dict() if trained else None,
            "precision": self.precision, "max_test": options.max_test,
            "teacher": self.teacher(ds, ds.classnames, spec.method).record() if teaches else None,
        })

    def prompt_config(self, method: str, dataset: str, protocol: str):
        return prompt_config(method, self.settings[dataset], protocol,
                             self.options.method_options, self.options.switches)

    def teacher(self, ds: Dataset, classnames: Sequence[str], method: str) -> TeacherChoice:
        """The descriptions `method` reads for these classes: from the teacher file when one is
        given (BiomedCoOp with published baselines: its own dictionary), else descriptions.json;
        classes without sentences fall back to their template sentence."""
        which = COOP_NAME if (method == "biomedcoop"
                              and self.options.switches.baselines == "published") else DPT_NAME
        key = (ds.name, tuple(classnames), which)
        if key not in self._teachers:
            sentences = self.teacher_files.get(which)
            if sentences is not None:
                self._teachers[key] = choose_sentences(
                    sentences, classnames, self.options.switches.teacher_limit,
                    f"{self.options.teacher_file.name}:{which}", ds.name)
            else:
                self._teachers[key] = choose_sentences(ds.descriptions, classnames, None,
                                                       "descriptions.json", ds.name)
        return self._teachers[key]

    # ---- running --------------------------------------------------------------------------
    def run(self, spec: RunSpec) -> dict:
        started = time.perf_counter()
        ds = self.datasets[spec.dataset]
        if spec.protocol == "few-shot":
            results, metrics, history, timing = self._few_shot(spec, ds)
        else:
            results, metrics, history, timing = self._base_to_novel(spec, ds)
        timing["total_s"] = round(time.perf_counter() - started, 3)
        return {"format": RUN_FORMAT, "config": self.config(spec), "metrics": metrics,
                "results": results, "history": history, "timing": timing,
                "backbone": self.bb.name, "device": str(self.bb.device), "versions": _versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _few_shot(self, spec: RunSpec, ds: Dataset):
        test = capped(ds.test, self.options.max_test)
        model, history, timing = self._fitted(spec, ds, ds.classnames, ds.train)
        feats = self._test_features(model, ds, test, timing)
        eval_started = time.perf_counter()
        result = self._evaluate(model, feats, [it.label for it in test], ds.classnames)
        timing["eval_s"] = round(time.perf_counter() - eval_started, 3)
        return ({"test": result.to_dict()}, {"accuracy": result.accuracy}, history, timing)

    def _base_to_novel(self, spec: RunSpec, ds: Dataset):
        base, novel = base_novel_split(ds.classnames)
        m = len(base)
        test = capped(ds.test, self.options.max_test)
        model, history, timing = self._fitted(spec, ds, base, ds.train, keep_below=m)
        feats = self._test_features(model, ds, test, timing)
        eval_started = time.perf_counter()
        labels = torch.tensor([it.label for it in test])
        on_base = labels < m
        base_result = self._evaluate(model, feats[on_base], labels[on_base].tolist(), base)
        novel_labels = (labels[~on_base] - m).tolist()
        if len(novel) >= 2:
            if isinstance(model, DualPrompt):  # the same learned context over the novel names
                novel_model = model.with_classes(
                    novel, self.teacher(ds, novel, spec.method).descriptions).eval()
            else:  # a baseline has no examples of the novel classes: their zero-shot classifier
                novel_model = self._baseline("zero-shot", ds, novel, None, [])
            novel_result = self._evaluate(novel_model, feats[~on_base], novel_labels, novel)
        else:  # one novel class: every prediction is that class (as in the released code)
            novel_result = result_from_probabilities(
                novel_labels, np.ones((len(novel_labels), 1), np.float32), novel)
        timing["eval_s"] = round(time.perf_counter() - eval_started, 3)
        b, n = base_result.accuracy, novel_result.accuracy
        metrics = {"base": b, "novel": n, "mean": (b + n) / 2, "harmonic_mean": _harmonic(b, n)}
        return ({"base": base_result.to_dict(), "novel": novel_result.to_dict()}, metrics,
                history, timing)

    def _features(self, model, ds: Dataset, split: str, items: list[Item], view: str
                  ) -> torch.Tensor:
        prompts = model.cfg.n_vision_prompts if isinstance(model, DualPrompt) else 0
        mode = model.cfg.vision_mode if isinstance(model, DualPrompt) else "insert"
        return self.encoder.features(self.bb, prompts, ds, split, items, view, self.precision,
                                     mode)

    def _test_features(self, model, ds: Dataset, test: list[Item], timing: dict) -> torch.Tensor:
        started = time.perf_counter()
        feats = self._features(model, ds, "test", test, "eval")
        timing["test_encode_s"] = round(time.perf_counter() - started, 3)
        return feats

    def _evaluate(self, model, feats: torch.Tensor, labels: list[int], classnames: list[str]):
        if isinstance(model, DualPrompt):
            return evaluate_features(model, feats, labels, self.precision)
        return result_from_probabilities(labels, model.predict_proba(feats), classnames)

    def _baseline(self, method: str, ds: Dataset, classnames: list[str],
                  feats: torch.Tensor | None, labels: list[int]):
        """A baseline fitted on un-prompted training features, over the template classifier."""
        cfg = self.prompt_config("zero-shot", ds.name, "few-shot")
        zero = build_prompts("zero-shot", self.bb, classnames, cfg, {})
        text = zero.text_features().cpu()
        scale = float(self.bb.logit_scale)
        if feats is None:
            feats = torch.zeros(0, text.shape[1])
        return fit_baseline(method, feats, labels, text, logit_scale=scale)

    def _draw(self, spec: RunSpec, pool: list[Item], keep_below: int | None) -> list[Item]:
        """The run's K-shot images of `pool`, of the classes below `keep_below` (base-to-novel's
        base half): nested draws of those classes, or Dassl's draw over every class (the
        released code draws before it keeps the base half)."""
        if self.options.switches.draws == "dassl":
            drawn = [pool[i] for i in dassl_few_shot_indices([it.label for it in pool],
                                                             spec.shots, spec.seed)]
            return [it for it in drawn if keep_below is None or it.label < keep_below]
        pool = [it for it in pool if keep_below is None or it.label < keep_below]
        return [pool[i] for i in few_shot_indices([it.label for it in pool], spec.shots,
                                                  spec.seed)]

    def _fitted(self, spec: RunSpec, ds: Dataset, classnames: list[str], pool: list[Item],
                keep_below: int | None = None):
        """The run's classifier: a prompt module trained on its K-shot draw (untrained for
        zero-shot) or a baseline fitted on it; its training summary and timings."""
        options = self.options
        timing: dict = {}
        if spec.method == "zero-shot":
            cfg = self.prompt_config(spec.method, ds.name, spec.protocol)
            return build_prompts(spec.method, self.bb, classnames, cfg, {}), None, timing
        chosen = self._draw(spec, pool, keep_below)
        labels = [it.label for it in chosen]
        if spec.method in FITTED_BASELINES:
            started = time.perf_counter()
            feats = self.encoder.features(self.bb, 0, ds, "train", chosen, "eval",
                                          self.precision)
            timing["train_encode_s"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            model = self._baseline(spec.method, ds, classnames, feats, labels)
            timing["train_s"] = round(time.perf_counter() - started, 3)
            return model, {"n_train": len(chosen), "train_images": [it.path for it in chosen]}, \
                timing
        cfg = self.prompt_config(spec.method, ds.name, spec.protocol)
        dp = build_prompts(spec.method, self.bb, classnames, cfg,
                           self.teacher(ds, classnames, spec.method).descriptions)
        train_cfg = options.train_config(spec.seed, spec.method)
        encode_started = time.perf_counter()
        views = torch.stack([self._features(dp, ds, "train", chosen, view)
                             for view in train_cfg.view_names])
        timing["train_encode_s"] = round(time.perf_counter() - encode_started, 3)
        with _bar(options.progress, None, f"training {spec.method} K={spec.shots}",
                  "step") as bar:
            def on_step(progress) -> None:
                if progress.phase == "train":
                    bar.total = progress.total
                    bar.set_postfix(loss=f"{progress.loss:.3f}", refresh=False)
                    _bar_to(bar, progress.done)

            history = fit_features(dp, views, labels, train_cfg, on_step=on_step)
        timing["train_s"] = round(history.train_s, 3)
        summary = {"steps": len(history.steps), "n_train": len(chosen),
                   "first_loss": history.steps[0]["loss"] if history.steps else None,
                   "last_loss": history.steps[-1]["loss"] if history.steps else None,
                   "final": history.final, "stopped": history.stopped,
                   "train_images": [it.path for it in chosen]}
        return dp.eval(), summary, timing


def _teacher_files(options: Options) -> dict[str, dict[str, list[str]]]:
    """The dictionaries of the teacher file: Biomed-DPT's, and BiomedCoOp's when its published
    configuration runs (a JSON file serves both)."""
    path = options.teacher_file
    if path is None:
        return {}
    out = {DPT_NAME: read_teacher_file(path, DPT_NAME)}
    if path.suffix.lower() == ".json":
        out[COOP_NAME] = out[DPT_NAME]
    elif "biomedcoop" in options.methods and options.switches.baselines == "published":
        out[COOP_NAME] = read_teacher_file(path, COOP_NAME)
    return out


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def _json_ready(value):
    return json.loads(json.dumps(value))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    for name in ("open_clip_torch", "timm", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _write_json_atomic(path: Path, data: dict) -> None:
    """A run file appears whole or not at all, so an interrupted run is never taken as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_run(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT or "config" not in data:
        return None
    return data


# --------------------------------------------------------------------------------------------
# Progress bars (stderr; quiet in tests and logs with --no-progress)
# --------------------------------------------------------------------------------------------
class _NoBar:
    """Stands in for a tqdm bar when progress bars are off."""

    total: int | None = None
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def _bar(enabled: bool, total: int | None, desc: str, unit: str) -> Iterator:
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()


def _bar_to(bar, done: int) -> None:
    if done > bar.n:
        bar.update(done - bar.n)


