"""`python -m core.reproduce`: the paper's protocols on data sets in the public layout.

Data sets (the layout of the BiomedCoOp / Biomed-DPT releases): ROOT/<name>/split_<name>.json,
`{"train"|"val"|"test": [[relative_path, label, class_name], ...]}`, with the images under
ROOT/<name>/<name>/ or directly under ROOT/<name>/; optionally ROOT/<name>/descriptions.json,
`{class_name: [sentence, ...]}`, the teacher's descriptions (else each class's template sentence).

Protocols (METHOD.md): few-shot (K images per class drawn per seed from train; the full test split)
and base-to-novel (16-shot on the first ceil(C/2) classes; test on them, then on the rest with the
same context). Methods are switches of one prompt module: zero-shot, CoOp, KgCoOp-like,
BiomedCoOp-like and Biomed-DPT. Each run writes runs/<data set>/<protocol>/<method>/k<K>_seed<S>.json
under --out; finished runs are skipped, so a sweep resumes where it stopped. Image features are
cached on disk per backbone, data set, split and view (core.evaluate.FeatureStore): a sweep encodes
each image once per view. results.md and results.csv are rebuilt from every run in --out.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.backbone import Backbone, load_backbone, resolve_precision
from core.baselines import fit_baseline
from core.errors import DatasetError, StudioError
from core.evaluate import evaluate_features, result_from_probabilities
from core.features import DEFAULT_STORE_DIR, FeatureStore, StoreKey, encode
from core.prompts import DualPrompt, PromptConfig
from core.train import TrainConfig, fit_features

log = logging.getLogger(__name__)

PROTOCOLS = ("few-shot", "base-to-novel")
METHODS = ("zero-shot", "tip-adapter", "linear-probe", "coop", "kgcoop", "biomedcoop",
           "biomed-dpt")
PROMPT_METHODS = ("zero-shot", "coop", "kgcoop", "biomedcoop", "biomed-dpt")
TUNED_METHODS = ("coop", "kgcoop", "biomedcoop", "biomed-dpt")  # prompt tuning
FITTED_BASELINES = ("tip-adapter", "linear-probe")  # on the zero-shot features, no tuning
METHOD_TITLES = {"zero-shot": "BiomedCLIP zero-shot", "tip-adapter": "Tip-Adapter",
                 "linear-probe": "Linear probe (zero-shot init)", "coop": "CoOp",
                 "kgcoop": "KgCoOp-like", "biomedcoop": "BiomedCoOp-like",
                 "biomed-dpt": "Biomed-DPT"}
DEFAULT_SHOTS = {"few-shot": (1, 2, 4, 8, 16), "base-to-novel": (16,)}
RUN_FORMAT = "biomed-dpt-run/1"


class ReproduceError(StudioError, ValueError):
    """The sweep's settings or its results folder cannot be used as asked."""


# --------------------------------------------------------------------------------------------
# Per-task settings of the paper (METHOD.md)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSettings:
    """One task's prompt settings. `n_ctx` is the paper's figure (it counts the words of
    `ctx_init`); with a text initialisation the context length is the word-piece count of
    `ctx_init`, which is what replaces the prefix (METHOD.md). It is used only for a random
    context (`ctx_init=""`)."""

    name: str
    template: str
    ctx_init: str | None
    n_ctx: int
    few_shot: tuple[float, float]  # (lambda1, lambda2)
    base_to_novel: tuple[float, float]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n_ctx < 1:
            raise ReproduceError(f"n_ctx of {self.name} must be at least 1.")
        for pair in (self.few_shot, self.base_to_novel):
            if len(pair) != 2 or any(not math.isfinite(v) or v < 0 for v in pair):
                raise ReproduceError(f"The lambdas of {self.name} must be two numbers >= 0.")

    def lambdas(self, protocol: str) -> tuple[float, float]:
        return self.few_shot if protocol == "few-shot" else self.base_to_novel


def _task(name, template, ctx_init, n_ctx, few_shot, base_to_novel, *aliases) -> TaskSettings:
    return TaskSettings(name, template, ctx_init, n_ctx, few_shot, base_to_novel, aliases)


# Templates as in the authors' released code; ctx_init, n_ctx and lambdas from the paper's table.
PAPER_TASKS: dict[str, TaskSettings] = {t.name: t for t in (
    _task("BTMRI", "a MR photo of a {} in the brain.", "a MR photo of a", 5, (12.5, 0.25), (25, 0.5)),
    _task("BUSI", "a ultrasound photo of a {} in the breast.", "a ultrasound photo of a", 5,
          (18.75, 1.0), (18.75, 0.65)),
    _task("CHMNIST", "a histopathological photo of a {}.", "a histopathological photo of a", 5,
          (12.5, 0.5), (23, 0.9)),
    _task("COVID-QU-Ex", "a chest X-ray photo of a {} affected by COVID-19 in the lung.",
          "a chest X-ray photo of a", 6, (65, 2.5), (18.75, 0.5), "COVID_19", "COVID-19", "COVID"),
    _task("CTKidney", "a CT photo of a {} in the kidney.", "a CT photo of a", 5, (18.75, 0.25),
          (25, 1.0)),
    _task("DermaMNIST", "a dermatoscopy photo of a {} in the skin.", "a dermatoscopy photo of a", 5,
          (25, 20), (11.5, 5)),
    _task("KneeXray", "a frontal X-ray photo of a {} in the knee joint.", "a frontal X-ray photo of a",
          6, (25, 10), (23, 4.5)),
    _task("Kvasir", "a endoscopic photo of a {} in the colon.", "a endoscopic photo of a", 5,
          (25, 0.75), (10, 0.5)),
    _task("LC25000", "a histopathological photo of a {}.", "a histopathological photo of a", 5,
          (12.5, 0.25), (9.5, 0.3), "LungColon"),
    _task("OCTMNIST", "a OCT photo of a {}.", "a OCT photo of a", 5, (12.5, 0.25), (12.5, 0.5)),
    _task("RETINA", "a photo of a {} presented in image.", "a photo of a", 4, (10.5, 0.25),
          (22, 0.4)),
)}

# METHOD.md's published averages over the 11 data sets (3 seeds), for the results file.
PUBLISHED_FEW_SHOT = {"CoOp": (50.18, 54.17, 59.77, 65.85, 69.72),
                      "CoCoOp": (48.53, 51.28, 54.69, 61.09, 65.10),
                      "KgCoOp": (52.16, 54.24, 59.21, 63.87, 64.85),
                      "ProGrad": (51.37, 54.40, 60.61, 65.50, 67.03),
                      "BiomedCoOp": (56.69, 58.58, 64.45, 68.84, 72.13),
                      "Biomed-DPT": (59.03, 61.27, 66.12, 70.76, 73.51)}
PUBLISHED_BASE_TO_NOVEL = {"BiomedCLIP zero-shot": (47.84, 65.42), "CoOp": (74.28, 67.93),
                           "BiomedCoOp": (76.16, 73.09), "Biomed-DPT": (78.06, 75.97)}


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def paper_settings(dataset: str) -> TaskSettings | None:
    """The built-in settings of a data set, by folder name (case, '-' and '_' ignored)."""
    key = _name_key(dataset)
    for task in PAPER_TASKS.values():
        if key in {_name_key(n) for n in (task.name, *task.aliases)}:
            return task
    return None


@dataclass(frozen=True)
class SettingsOverride:
    """Command-line replacements of the built-in per-task settings (None: keep)."""

    template: str | None = None
    ctx_init: str | None = None
    n_ctx: int | None = None
    lambda1: float | None = None
    lambda2: float | None = None


def task_settings(dataset: str, override: SettingsOverride = SettingsOverride()) -> TaskSettings:
    """Built-in settings with the overrides applied; a data set without built-in settings needs
    at least a template."""
    base = paper_settings(dataset)
    if base is None and override.template is None:
        raise DatasetError(f"There are no built-in settings for the data set {dataset!r} (known: "
                           f"{', '.join(PAPER_TASKS)}). Pass --template 'a CT photo of a {{}} in "
                           "the liver.' and, if you like, --ctx-init, --lambda1 and --lambda2.")
    if base is None:
        base = TaskSettings(dataset, override.template, None, 4, (12.5, 0.25), (12.5, 0.25))
    template = override.template or base.template
    ctx_init = base.ctx_init if override.template is None else None
    if override.ctx_init is not None:
        ctx_init = override.ctx_init
    fs, b2n = base.few_shot, base.base_to_novel
    if override.lambda1 is not None:
        fs, b2n = (override.lambda1, fs[1]), (override.lambda1, b2n[1])
    if override.lambda2 is not None:
        fs, b2n = (fs[0], override.lambda2), (b2n[0], override.lambda2)
    return replace(base, name=dataset, template=template, ctx_init=ctx_init,
                   n_ctx=override.n_ctx or base.n_ctx, few_shot=fs, base_to_novel=b2n)


# --------------------------------------------------------------------------------------------
# Data sets in the public layout
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One image of a split: its path relative to the image folder, its class number, and its
    size in bytes (part of its cache id, so a replaced file is encoded again)."""

    path: str
    label: int
    size: int

    @property
    def id(self) -> str:
        return f"{self.path}|{self.size}"


@dataclass
class Dataset:
    """A data set folder, checked: classes in label order, the train and test splits."""

    name: str
    folder: Path
    image_dir: Path
    split_file: Path
    classnames: list[str]
    train: list[Item]
    test: list[Item]
    descriptions: dict[str, list[str]] = field(default_factory=dict)

    def image(self, item: Item) -> Image.Image:
        path = self.image_dir / item.path
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{path} cannot be read as an image ({exc}); replace it with the "
                               "file from the data set's download.") from exc

    def descriptions_for(self, classnames: Sequence[str]) -> dict[str, list[str]]:
        return {n: self.descriptions[n] for n in classnames if n in self.descriptions}


def load_dataset(folder: str | Path) -> Dataset:
    """Read and check a data set folder; every problem raises DatasetError saying what to fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"There is no data set folder {folder}. --root must hold one folder per "
                           "data set (e.g. ROOT/BTMRI with split_BTMRI.json).")
    split_file = _find_split_file(folder)
    split = _read_json(split_file)
    if not isinstance(split, dict):
        raise DatasetError(f"{split_file} must hold an object with 'train' and 'test' lists.")
    for name in ("train", "test"):
        if not isinstance(split.get(name), list) or not split[name]:
            raise DatasetError(f"{split_file.name} has no '{name}' split (or it is empty); it needs "
                               "'train' and 'test' lists of [relative_path, label, class_name].")
    rows = {name: _parse_rows(split[name], name, split_file) for name in ("train", "test")}
    classnames = _class_table(rows, split_file)
    image_dir = _image_dir(folder, rows["train"][0][0])
    items = {name: _items(rows[name], image_dir, split_file) for name in ("train", "test")}
    descriptions = _read_descriptions(folder / "descriptions.json", classnames)
    return Dataset(folder.name, folder, image_dir, split_file, classnames, items["train"],
                   items["test"], descriptions)


def _find_split_file(folder: Path) -> Path:
    preferred = folder / f"split_{folder.name}.json"
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("split*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"{folder} has no split file. Put the data set's split JSON "
                           f"(split_{folder.name}.json: {{\"train\"|\"val\"|\"test\": "
                           "[[relative_path, label, class_name], ...]}) in it.")
    raise DatasetError(f"{folder} has several split files ({', '.join(f.name for f in found)}); "
                       f"keep one, or name the one to use split_{folder.name}.json.")


def _parse_rows(rows: list, split: str, split_file: Path) -> list[tuple[str, int, str]]:
    out = []
    for i, row in enumerate(rows):
        ok = (isinstance(row, (list, tuple)) and len(row) == 3 and isinstance(row[0], str)
              and isinstance(row[1], int) and not isinstance(row[1], bool)
              and isinstance(row[2], str) and row[1] >= 0 and row[0].strip() and row[2].strip())
        if not ok:
            raise DatasetError(f"Entry {i} of the '{split}' split of {split_file.name} is {row!r}; "
                               "each entry must be [relative_path, label (a whole number >= 0), "
                               "class_name].")
        out.append((row[0].replace("\\", "/"), row[1], " ".join(row[2].split())))
    return out


def _class_table(rows: Mapping[str, list[tuple[str, int, str]]], split_file: Path) -> list[str]:
    """Class names in label order, from train; test may use only those classes."""
    names: dict[int, str] = {}
    for _, label, name in rows["train"]:
        if names.setdefault(label, name) != name:
            raise DatasetError(f"In {split_file.name}, label {label} is given two class names "
                               f"({names[label]!r} and {name!r}); each label needs one name.")
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        raise DatasetError(f"The 'train' split of {split_file.name} has no images of label(s) "
                           f"{missing}; labels must run from 0 to the number of classes - 1, "
                           "each with training images.")
    classnames = [names[i] for i in range(len(names))]
    for path, label, name in rows["test"]:
        if names.get(label) != name:
            raise DatasetError(f"The 'test' split of {split_file.name} has an unknown class: "
                               f"{path} is labelled {label} {name!r}, but the training classes "
                               f"are {dict(enumerate(classnames))}. Fix the split file.")
    if len({n.casefold() for n in classnames}) != len(classnames):
        raise DatasetError(f"{split_file.name} gives the same class name to two labels.")
    return classnames


def _image_dir(folder: Path, first_path: str) -> Path:
    nested = folder / folder.name
    if nested.is_dir() and (nested / first_path).exists():
        return nested
    if (folder / first_path).exists() or not nested.is_dir():
        return folder
    return nested


def _items(rows: list[tuple[str, int, str]], image_dir: Path, split_file: Path) -> list[Item]:
    items, missing = [], []
    for path, label, _ in rows:
        try:
            items.append(Item(path, label, (image_dir / path).stat().st_size))
        except OSError:
            missing.append(path)
    if missing:
        raise DatasetError(f"{len(missing)} image(s) listed in {split_file.name} are missing "
                           f"under {image_dir}, e.g. {', '.join(missing[:3])}. Download the "
                           "complete data set, or fix the paths in the split file.")
    return items


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc}).") from exc


def _read_descriptions(path: Path, classnames: list[str]) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path.name} must map class names to lists of sentences.")
    by_key = {" ".join(n.split()).casefold(): n for n in classnames}
    out = {}
    for name, texts in data.items():
        key = " ".join(str(name).split()).casefold()
        if key not in by_key:
            raise DatasetError(f"{path.name} describes an unknown class {name!r}; the classes are "
                               f"{', '.join(classnames)}.")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DatasetError(f"{path.name}: the descriptions of {name!r} must be a list of "
                               "sentences.")
        kept = [" ".join(t.split()) for t in texts if t.strip()]
        if kept:
            out[by_key[key]] = kept
    return out


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------
def few_shot_indices(labels: Sequence[int], shots: int, seed: int) -> list[int]:
    """Positions of `shots` images per class, drawn with a generator seeded by (seed, class).
    The draws are nested (the 4-shot set of a seed holds its 2-shot set), so a sweep over K
    shares cached features and K-to-K differences are not drawing noise. A class with fewer
    images gives all it has."""
    labels = np.asarray(labels)
    chosen: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            log.warning("Class %d has %d training images, fewer than %d shots: using all.",
                        c, len(members), shots)
        order = np.random.default_rng([seed, int(c)]).permutation(len(members))
        chosen += members[order[:shots]].tolist()
    return sorted(chosen)


def base_novel_split(classnames: Sequence[str]) -> tuple[list[str], list[str]]:
    """Classes in label order: base = the first ceil(C/2), novel = the rest."""
    m = math.ceil(len(classnames) / 2)
    return list(classnames[:m]), list(classnames[m:])


def capped(items: list[Item], max_items: int | None) -> list[Item]:
    """At most `max_items` items, a fixed (seed 0) random subset in split order."""
    if max_items is None or len(items) <= max_items:
        return items
    keep = np.sort(np.random.default_rng(0).permutation(len(items))[:max_items])
    return [items[i] for i in keep]


# --------------------------------------------------------------------------------------------
# Methods: settings of one prompt module, and the baselines on cached features
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodOptions:
    """Settings of the methods that METHOD.md's table does not give."""

    vision_prompts: int = 4
    kgcoop_weight: float = 8.0  # KgCoOp's default
    biomedcoop_mse: float = 1.0
    biomedcoop_kl: float = 1.0

    def __post_init__(self) -> None:
        for name in ("kgcoop_weight", "biomedcoop_mse", "biomedcoop_kl"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ReproduceError(f"{name} must be a number >= 0, not {value!r}.")

    def relevant(self, method: str) -> dict:
        """The options that change `method`'s results (recorded in its run file)."""
        return {"biomed-dpt": {"vision_prompts": self.vision_prompts},
                "kgcoop": {"kgcoop_weight": self.kgcoop_weight},
                "biomedcoop": {"biomedcoop_mse": self.biomedcoop_mse,
                               "biomedcoop_kl": self.biomedcoop_kl}}.get(method, {})


def prompt_config(method: str, settings: TaskSettings, protocol: str,
                  options: MethodOptions) -> PromptConfig:
    """The prompt module's settings that make it `method` on this task (baselines: those of
    the zero-shot classifier they start from)."""
    if method not in METHODS:
        raise ReproduceError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    common = dict(ctx_init=settings.ctx_init,
                  n_ctx=settings.n_ctx if settings.ctx_init == "" else None)
    if method == "biomed-dpt":
        l1, l2 = settings.lambdas(protocol)
        common.update(n_vision_prompts=options.vision_prompts, lambda_l1=l1, lambda_kl=l2)
    elif method == "kgcoop":
        common.update(lambda_kg=options.kgcoop_weight)
    elif method == "biomedcoop":
        common.update(lambda_mse=options.biomedcoop_mse, lambda_kl=options.biomedcoop_kl)
    prompt_method = method if method in PROMPT_METHODS else "zero-shot"
    return PromptConfig.for_method(prompt_method, settings.template, **common)


def build_prompts(method: str, bb: Backbone, classnames: Sequence[str], cfg: PromptConfig,
                  descriptions: Mapping[str, Sequence[str]]) -> DualPrompt:
    """The prompt module of `method`; zero-shot (and the baselines' text classifier) is the
    untrained template classifier. Only the methods whose loss reads them get descriptions."""
    uses = cfg.uses_teacher and method in ("biomed-dpt", "biomedcoop")
    dp = DualPrompt(bb, classnames, cfg, descriptions if uses else None)
    return dp if method in TUNED_METHODS else dp.zero_shot()


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
                 items: list[Item], view: str, precision: str) -> torch.Tensor:
        key = StoreKey(bb.fingerprint, vision_prompts, view, precision,
                       f"{dataset.name}/{split}")
        with _bar(self.progress, len(items), f"{dataset.name}/{split} {view} features",
                  "img") as bar:
            def encode_missing(indices: list[int]) -> torch.Tensor:
                return self._encode(bb, vision_prompts, dataset, [items[i] for i in indices],
                                    view, precision, bar)

            return self.store.features(key, [item.id for item in items], encode_missing,
                                       progress=lambda done, total: _bar_to(bar, done))

    def _encode(self, bb: Backbone, vision_prompts: int, dataset: Dataset, items: list[Item],
                view: str, precision: str, bar) -> torch.Tensor:
        out = []
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(items), self.batch_size):
                batch = items[start:start + self.batch_size]
                images = list(pool.map(dataset.image, batch))
                out.append(encode(bb, images, view=view, vision_prompts=vision_prompts,
                                  precision=precision, keys=[it.path for it in batch],
                                  batch_size=self.batch_size))
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

    @property
    def shot_list(self) -> tuple[int, ...]:
        return tuple(self.shots or DEFAULT_SHOTS[self.protocol])

    def train_config(self, seed: int) -> TrainConfig:
        if self.recipe == "paper":
            epochs = self.epochs or (100 if self.protocol == "few-shot" else 50)
            return TrainConfig.paper(epochs=epochs, seed=seed)
        return TrainConfig.fast(seed=seed, **({"steps": self.steps} if self.steps else {}))

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

    # ---- what a run is --------------------------------------------------------------------
    def config(self, spec: RunSpec) -> dict:
        """Everything that determines a run's result (compared before a finished run is
        skipped); not the device, the batch size, the paths or the name the backbone was loaded
        by (its weights' fingerprint identifies it)."""
        ds, options = self.datasets[spec.dataset], self.options
        settings = self.settings[spec.dataset]
        trained = spec.method in TUNED_METHODS
        return _json_ready({
            "backbone_fingerprint": self.bb.fingerprint,
            "dataset": ds.name, "classnames": ds.classnames, "protocol": spec.protocol,
            "method": spec.method, "shots": spec.shots, "seed": spec.seed,
            "prompt": asdict(prompt_config(spec.method, settings, spec.protocol,
                                           options.method_options)),
            "paper_n_ctx": settings.n_ctx,
            "method_options": options.method_options.relevant(spec.method),
            "train": options.train_config(spec.seed).to_dict() if trained else None,
            "precision": self.precision, "max_test": options.max_test,
            "descriptions_sha256": _digest(ds.descriptions) if spec.method in (
                "biomed-dpt", "biomedcoop") and ds.descriptions else None,
        })

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
        model, history, timing = self._fitted(spec, ds, base,
                                              [it for it in ds.train if it.label < m])
        feats = self._test_features(model, ds, test, timing)
        eval_started = time.perf_counter()
        labels = torch.tensor([it.label for it in test])
        on_base = labels < m
        base_result = self._evaluate(model, feats[on_base], labels[on_base].tolist(), base)
        novel_labels = (labels[~on_base] - m).tolist()
        if len(novel) >= 2:
            if isinstance(model, DualPrompt):  # the same learned context over the novel names
                novel_model = model.with_classes(novel, ds.descriptions_for(novel)).eval()
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
        return self.encoder.features(self.bb, prompts, ds, split, items, view, self.precision)

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
        cfg = prompt_config("zero-shot", self.settings[ds.name], "few-shot",
                            self.options.method_options)
        zero = build_prompts("zero-shot", self.bb, classnames, cfg, {})
        text = zero.text_features().cpu()
        scale = float(self.bb.logit_scale)
        if feats is None:
            feats = torch.zeros(0, text.shape[1])
        return fit_baseline(method, feats, labels, text, logit_scale=scale)

    def _fitted(self, spec: RunSpec, ds: Dataset, classnames: list[str], pool: list[Item]):
        """The run's classifier: a prompt module trained on its K-shot draw (untrained for
        zero-shot) or a baseline fitted on it; its training summary and timings."""
        options = self.options
        timing: dict = {}
        if spec.method == "zero-shot":
            cfg = prompt_config(spec.method, self.settings[ds.name], spec.protocol,
                                options.method_options)
            return build_prompts(spec.method, self.bb, classnames, cfg, {}), None, timing
        chosen = [pool[i] for i in few_shot_indices([it.label for it in pool], spec.shots,
                                                     spec.seed)]
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
        cfg = prompt_config(spec.method, self.settings[ds.name], spec.protocol,
                            options.method_options)
        dp = build_prompts(spec.method, self.bb, classnames, cfg, ds.descriptions_for(classnames))
        train_cfg = options.train_config(spec.seed)
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


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


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


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def collect_runs(out: Path) -> list[dict]:
    """Every finished run file under out/runs."""
    runs = []
    for path in sorted((out / "runs").glob("*/*/*/k*_seed*.json")):
        data = _read_run(path)
        if data is not None:
            runs.append(data)
    return runs


def _dataset_order(names: set[str]) -> list[str]:
    def key(name: str):
        task = paper_settings(name)
        return (0, list(PAPER_TASKS).index(task.name), name) if task else (1, 0, name)
    return sorted(names, key=key)


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (0 for one value), in percent."""
    arr = 100 * np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std, len(arr)


@dataclass
class Tables:
    """Cell statistics of both protocols, built from run files."""

    few_shot: dict[tuple[str, str, int], tuple[float, float, int]] = field(default_factory=dict)
    base_to_novel: dict[tuple[str, str], dict] = field(default_factory=dict)
    shots: list[int] = field(default_factory=list)
    datasets: dict[str, list[str]] = field(default_factory=dict)  # protocol -> data sets
    recipes: set[str] = field(default_factory=set)


def build_tables(runs: Sequence[dict]) -> Tables:
    few: dict[tuple[str, str, int], list[float]] = {}
    zero: dict[str, float] = {}
    b2n: dict[tuple[str, str], list[tuple[float, float]]] = {}
    tables = Tables()
    for run in runs:
        cfg = run["config"]
        name, method = cfg["dataset"], cfg["method"]
        if cfg["train"]:
            recipe = cfg["train"]["recipe"]
            length = cfg["train"]["epochs"] or cfg["train"]["steps"]
            unit = "epochs" if cfg["train"]["epochs"] else "steps"
            tables.recipes.add(f"{recipe} ({length} {unit}, {cfg['precision']})")
        tables.datasets.setdefault(cfg["protocol"], [])
        if name not in tables.datasets[cfg["protocol"]]:
            tables.datasets[cfg["protocol"]].append(name)
        if cfg["protocol"] == "few-shot":
            if method == "zero-shot":
                zero[name] = run["metrics"]["accuracy"]
            else:
                few.setdefault((name, method, cfg["shots"]), []).append(run["metrics"]["accuracy"])
        else:
            b2n.setdefault((name, method), []).append((run["metrics"]["base"],
                                                      run["metrics"]["novel"]))
    tables.shots = sorted({k for (_, _, k) in few}) or list(DEFAULT_SHOTS["few-shot"])
    for key, values in few.items():
        tables.few_shot[key] = _mean_std(values)
    for name, value in zero.items():  # no training images: the same figure under every K
        for k in tables.shots:
            tables.few_shot[(name, "zero-shot", k)] = (100 * value, 0.0, 1)
    for key, pairs in b2n.items():
        base = _mean_std([p[0] for p in pairs])
        novel = _mean_std([p[1] for p in pairs])
        tables.base_to_novel[key] = {"base": base, "novel": novel, "n": len(pairs)}
    for protocol in tables.datasets:
        tables.datasets[protocol] = _dataset_order(set(tables.datasets[protocol]))
    return tables


def _fmt(cell: tuple[float, float, int] | None, with_std: bool = True) -> str:
    if cell is None:
        return "—"
    mean, std, n = cell
    return f"{mean:.2f} ± {std:.2f}" if with_std and n > 1 else f"{mean:.2f}"


def _few_shot_rows(tables: Tables, names: list[str]) -> dict[str, dict]:
    """Per method: per K the cell over `names` (one data set: its cell; several: the mean of
    their means, only when every data set has it) and the mean over K."""
    rows = {}
    for method in METHODS:
        cells = {}
        for k in tables.shots:
            found = [tables.few_shot.get((n, method, k)) for n in names]
            if any(c is None for c in found):
                cells[k] = None
            elif len(names) == 1:
                cells[k] = found[0]
            else:
                cells[k] = (float(np.mean([c[0] for c in found])), 0.0, 1)
        if all(c is None for c in cells.values()):
            continue
        complete = all(c is not None for c in cells.values())
        mean = (float(np.mean([c[0] for c in cells.values()])), 0.0, 1) if complete else None
        rows[method] = {"cells": cells, "mean": mean}
    return rows


def _b2n_cell(tables: Tables, names: list[str], method: str) -> dict | None:
    found = [tables.base_to_novel.get((n, method)) for n in names]
    if not found or any(c is None for c in found):
        return None
    if len(names) == 1:
        cell = found[0]
    else:
        cell = {"base": (float(np.mean([c["base"][0] for c in found])), 0.0, 1),
                "novel": (float(np.mean([c["novel"][0] for c in found])), 0.0, 1), "n": 1}
    b, n = cell["base"][0], cell["novel"][0]
    return {**cell, "mean": (b + n) / 2, "harmonic_mean": _harmonic(b, n)}


def render_markdown(tables: Tables) -> str:
    lines = ["# Results", ""]
    if tables.recipes:
        lines += [f"Recipe: {'; '.join(sorted(tables.recipes))}. Accuracy in %, mean ± sample "
                  "standard deviation over seeds.", ""]
    if "few-shot" in tables.datasets:
        lines += _few_shot_markdown(tables)
    if "base-to-novel" in tables.datasets:
        lines += _b2n_markdown(tables)
    return "\n".join(lines).rstrip() + "\n"


def _few_shot_markdown(tables: Tables) -> list[str]:
    names = tables.datasets["few-shot"]
    header = "| method | " + " | ".join(f"K={k}" for k in tables.shots) + " | mean |"
    rule = "|---|" + "---|" * (len(tables.shots) + 1)
    lines = ["## Few-shot accuracy (%)", ""]
    groups = [(n, [n]) for n in names]
    if len(names) > 1:
        groups.append((f"Average over {len(names)} data sets", names))
    for title, group in groups:
        lines += [f"### {title}", "", header, rule]
        for method, row in _few_shot_rows(tables, group).items():
            cells = [_fmt(row["cells"][k]) for k in tables.shots]
            lines.append(f"| {METHOD_TITLES[method]} | " + " | ".join(cells)
                         + f" | {_fmt(row['mean'])} |")
        lines.append("")
    if any(method == "zero-shot" for (_, method, _) in tables.few_shot):
        lines += ["Zero-shot uses no training images: the same figure under every K.", ""]
    lines += ["### Published (METHOD.md: average over the 11 data sets, 3 seeds)", "",
              "| method | K=1 | K=2 | K=4 | K=8 | K=16 | mean |", "|---|---|---|---|---|---|---|"]
    for method, values in PUBLISHED_FEW_SHOT.items():
        lines.append(f"| {method} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {np.mean(values):.2f} |")
    return lines + [""]


def _b2n_markdown(tables: Tables) -> list[str]:
    names = tables.datasets["base-to-novel"]
    lines = ["## Base-to-novel accuracy (%)", "",
             "Mean is (base + novel) / 2, which the paper's tables label HM; the true harmonic "
             "mean 2·base·novel / (base + novel) is given beside it.", "",
             "| data set | method | base | novel | mean (paper's \"HM\") | harmonic mean |",
             "|---|---|---|---|---|---|"]
    groups = [(n, [n]) for n in names]
    if len(names) > 1:
        groups.append((f"Average over {len(names)} data sets", names))
    for title, group in groups:
        for method in METHODS:
            cell = _b2n_cell(tables, group, method)
            if cell is None:
                continue
            lines.append(f"| {title} | {METHOD_TITLES[method]} | {_fmt(cell['base'])} | "
                         f"{_fmt(cell['novel'])} | {cell['mean']:.2f} | "
                         f"{cell['harmonic_mean']:.2f} |")
    lines += ["", "### Published (METHOD.md: average over the data sets, 3 seeds)", "",
              "| method | base | novel | mean (paper's \"HM\") | harmonic mean |",
              "|---|---|---|---|---|"]
    for method, (b, n) in PUBLISHED_BASE_TO_NOVEL.items():
        lines.append(f"| {method} | {b:.2f} | {n:.2f} | {(b + n) / 2:.2f} | "
                     f"{_harmonic(b, n):.2f} |")
    return lines + [""]


def csv_rows(tables: Tables) -> tuple[list[str], list[list]]:
    """(header, rows): one row per data set (and the average) and method, columns of the
    paper's tables as numbers; columns of a protocol appear only when it has runs."""
    header = ["protocol", "dataset", "method"]
    few = "few-shot" in tables.datasets
    b2n = "base-to-novel" in tables.datasets
    if few:
        header += [f"K={k} {s}" for k in tables.shots for s in ("mean", "std")] + ["mean over K"]
    if b2n:
        header += ["base mean", "base std", "novel mean", "novel std", "mean (paper HM)",
                   "harmonic mean"]
    header.append("seeds")
    rows: list[list] = []

    def blank(n: int) -> list:
        return [""] * n

    n_few = 2 * len(tables.shots) + 1 if few else 0
    n_b2n = 6 if b2n else 0
    for protocol, names in tables.datasets.items():
        groups = [(n, [n]) for n in names] + ([("Average", names)] if len(names) > 1 else [])
        for title, group in groups:
            if protocol == "few-shot":
                for method, row in _few_shot_rows(tables, group).items():
                    values = []
                    for k in tables.shots:
                        c = row["cells"][k]
                        values += ["", ""] if c is None else [round(c[0], 4), round(c[1], 4)]
                    values.append("" if row["mean"] is None else round(row["mean"][0], 4))
                    seeds = max((c[2] for c in row["cells"].values() if c), default=0)
                    rows.append([protocol, title, METHOD_TITLES[method]] + values + blank(n_b2n)
                                + [seeds if len(group) == 1 else ""])
            else:
                for method in METHODS:
                    cell = _b2n_cell(tables, group, method)
                    if cell is None:
                        continue
                    values = [round(cell["base"][0], 4), round(cell["base"][1], 4),
                              round(cell["novel"][0], 4), round(cell["novel"][1], 4),
                              round(cell["mean"], 4), round(cell["harmonic_mean"], 4)]
                    rows.append([protocol, title, METHOD_TITLES[method]] + blank(n_few) + values
                                + [cell["n"] if len(group) == 1 else ""])
    return header, rows


def write_tables(out: Path) -> tuple[Path, Path, str]:
    tables = build_tables(collect_runs(out))
    markdown = render_markdown(tables)
    md_path, csv_path = out / "results.md", out / "results.csv"
    md_path.write_text(markdown)
    header, rows = csv_rows(tables)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    csv_path.write_text(buffer.getvalue())
    return md_path, csv_path, markdown


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
def find_datasets(root: Path, names: Sequence[str]) -> list[Path]:
    """Folders of the named data sets (case-insensitive), or of every data set under root."""
    if not root.is_dir():
        raise DatasetError(f"--root {root} is not a folder; point it at the folder that holds "
                           "one folder per data set.")
    folders = {p.name: p for p in root.iterdir() if p.is_dir()}
    if not names:
        found = [p for n, p in sorted(folders.items()) if any(p.glob("split*.json"))]
        if not found:
            raise DatasetError(f"No data set folders (with a split*.json file) under {root}.")
        return found
    out = []
    for name in names:
        match = folders.get(name) or next(
            (p for n, p in folders.items() if n.casefold() == name.casefold()), None)
        if match is None:
            raise DatasetError(f"There is no folder {name!r} under {root} (found: "
                               f"{', '.join(sorted(folders)) or 'nothing'}).")
        out.append(match)
    return out


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
    bb = backbone or load_backbone(options.backbone, options.device)
    sweep = Sweep(options, bb, datasets)
    todo, skipped = check_conflicts(sweep, options.specs(list(datasets)))
    log.info("%d run(s) to do, %d already finished; backbone %s on %s, precision %s",
             len(todo), skipped, bb.name, bb.device, sweep.precision)
    summary = Summary(skipped=skipped)
    with _bar(options.progress and bool(todo), len(todo), "runs", "run") as bar:
        for spec in todo:
            bar.set_postfix(run=spec.label, refresh=False)
            record = sweep.run(spec)
            _write_json_atomic(spec.path(options.out), record)
            log.info("%s: %s", spec.label, _metrics_text(record["metrics"]))
            summary.ran += 1
            bar.update(1)
    summary.encoded = sweep.store.encoded
    summary.results_md, summary.results_csv, summary.markdown = write_tables(options.out)
    return summary


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items())


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole "
                                         "numbers") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.reproduce",
                                description="Reproduce the Biomed-DPT paper's tables on data sets "
                                            "in the public layout (see docs/reproduce.md).")
    p.add_argument("--root", type=Path, required=True, help="folder holding one folder per data set")
    p.add_argument("--datasets", type=_names, default=(), help="comma list (default: all under --root)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="few-shot")
    p.add_argument("--shots", type=_ints, default=None,
                   help="comma list of K (default: 1,2,4,8,16 few-shot; 16 base-to-novel)")
    p.add_argument("--seeds", type=_ints, default=(1, 2, 3))
    p.add_argument("--methods", type=_names, default=METHODS, help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--backbone", default="biomedclip")
    p.add_argument("--recipe", choices=("paper", "fast"), default="paper")
    p.add_argument("--epochs", type=int, default=None, help="paper recipe: epochs (default 100 / 50)")
    p.add_argument("--steps", type=int, default=None, help="fast recipe: steps (default 100)")
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_STORE_DIR)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the GPU if present)")
    p.add_argument("--max-test", type=int, default=None, help="cap test images (quick looks)")
    p.add_argument("--batch-size", type=int, default=64, help="images per encoding batch")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("per-task settings (default: METHOD.md's table)")
    g.add_argument("--template", default=None, help="e.g. 'a CT photo of a {} in the liver.'")
    g.add_argument("--ctx-init", default=None, help="context words ('' for a random context)")
    g.add_argument("--n-ctx", type=int, default=None, help="length of a random context")
    g.add_argument("--lambda1", type=float, default=None)
    g.add_argument("--lambda2", type=float, default=None)
    g = p.add_argument_group("ablation methods")
    g.add_argument("--vision-prompts", type=int, default=4)
    g.add_argument("--kgcoop-weight", type=float, default=8.0)
    g.add_argument("--biomedcoop-mse", type=float, default=1.0)
    g.add_argument("--biomedcoop-kl", type=float, default=1.0)
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        root=args.root, out=args.out, datasets=args.datasets, protocol=args.protocol,
        shots=args.shots, seeds=args.seeds, methods=args.methods, backbone=args.backbone,
        recipe=args.recipe, epochs=args.epochs, steps=args.steps, cache_dir=args.cache_dir,
        device=args.device, max_test=args.max_test, force=args.force, batch_size=args.batch_size,
        progress=not args.no_progress,
        override=SettingsOverride(args.template, args.ctx_init, args.n_ctx, args.lambda1,
                                  args.lambda2),
        method_options=MethodOptions(args.vision_prompts, args.kgcoop_weight,
                                     args.biomedcoop_mse, args.biomedcoop_kl))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        options = options_from_args(args)
        with logging_redirect_tqdm():
            summary = run_sweep(options)
    except StudioError as exc:
        log.error("%s", exc)
        return 2
    print(summary.markdown)
    print(f"{summary.ran} run(s) done, {summary.skipped} skipped; tables in "
          f"{summary.results_md} and {summary.results_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
