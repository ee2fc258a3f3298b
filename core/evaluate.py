"""Evaluation of prompts on labelled images: metrics, cached image features, a confusion figure.

The metrics are pure numpy functions of a confusion matrix (rows = true class, columns =
predicted class), checked in the tests against hand-computed values.

Image features are encoded in batches and cached. A prompted image feature depends only on the
backbone, the number of (zero, untrained) vision prompts, the view and the precision, never on
the learned context, so a cached feature is exact:
- `FeatureCache` (memory) keys a feature by the content of the preprocessed image: the app
  evaluates the same upload zero-shot and tuned, and again after every re-tuning;
- `FeatureStore` (disk, safetensors) keys it by image id within a named collection: a sweep over
  shots, seeds and methods (`python -m core.reproduce`) encodes each image once per view.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from core.backbone import autocast, resolve_precision
from core.errors import DatasetError
from core.prompts import DualPrompt

log = logging.getLogger(__name__)

STORE_FORMAT = "biomed-dpt-features"
STORE_VERSION = "1"
DEFAULT_STORE_DIR = Path("~/.cache/biomed-dpt-studio/features")

ProgressCallback = Callable[[int, int], None]  # (images done, images in all)


# --------------------------------------------------------------------------------------------
# Metrics: pure functions of labels, predictions and the confusion matrix
# --------------------------------------------------------------------------------------------
def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], n_classes: int) -> np.ndarray:
    """(C, C) counts; entry [t, p] is the number of images of true class t predicted as p."""
    true = np.asarray(labels, dtype=np.int64).reshape(-1)
    pred = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"{true.size} labels but {pred.size} predictions.")
    for name, values in (("label", true), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"A {name} is outside the class numbers 0..{n_classes - 1}.")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def accuracy(confusion: np.ndarray) -> float:
    """Fraction of images on the diagonal; 0.0 for an empty matrix."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def precision_recall_f1(confusion: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class: precision, recall, F1 and support (true images of the class).

    Zero-division convention: a quantity whose denominator is zero is 0.0, never NaN: precision
    of a class never predicted, recall of a class with no true images, and F1 when precision and
    recall are both 0."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = _divide(hits, predicted)
    recall = _divide(hits, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    return precision, recall, f1, support.astype(np.int64)


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes that have true images (classes absent from the labels are
    left out, as scikit-learn does, so an evaluation set without some class is not penalised for
    it); 0.0 when there are no images."""
    _, recall, _, support = precision_recall_f1(confusion)
    present = support > 0
    return float(recall[present].mean()) if present.any() else 0.0


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes that have true images (the same classes as `balanced_accuracy`);
    0.0 when there are no images."""
    _, _, f1, support = precision_recall_f1(confusion)
    present = support > 0
    return float(f1[present].mean()) if present.any() else 0.0


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMetrics:
    """One class's figures (0.0 where undefined; see `precision_recall_f1`)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvaluationResult:
    """What `evaluate` returns. Fractions in [0, 1]; `confusion` rows are true classes, columns
    predicted classes; `probabilities` is (N, C) float32 in the order of the images given."""

    classnames: list[str]
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]
    labels: list[int]
    predictions: list[int]
    probabilities: np.ndarray

    @property
    def n(self) -> int:
        return len(self.labels)

    def to_dict(self, with_samples: bool = False) -> dict:
        """JSON-ready summary; `with_samples` adds labels, predictions and probabilities."""
        out = {"n": self.n, "classnames": list(self.classnames), "accuracy": self.accuracy,
               "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1,
               "per_class": {name: asdict(m) for name, m in self.per_class.items()},
               "confusion": self.confusion}
        if with_samples:
            out.update(labels=self.labels, predictions=self.predictions,
                       probabilities=np.round(self.probabilities, 6).tolist())
        return out


def result_from_probabilities(labels: Sequence[int], probabilities: np.ndarray,
                              classnames: Sequence[str]) -> EvaluationResult:
    """Metrics of the arg-max predictions of (N, C) class probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    predictions = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    matrix = confusion_matrix(labels, predictions, len(classnames))
    precision, recall, f1, support = precision_recall_f1(matrix)
    per_class = {name: ClassMetrics(float(precision[c]), float(recall[c]), float(f1[c]),
                                    int(support[c])) for c, name in enumerate(classnames)}
    return EvaluationResult(
        classnames=list(classnames), accuracy=accuracy(matrix),
        balanced_accuracy=balanced_accuracy(matrix), macro_f1=macro_f1(matrix),
        per_class=per_class, confusion=matrix.tolist(), labels=[int(y) for y in labels],
        predictions=[int(p) for p in predictions], probabilities=probabilities)


# --------------------------------------------------------------------------------------------
# Image features, batched and cached
# --------------------------------------------------------------------------------------------
class FeatureCache:
    """Prompted image features in memory, keyed by the content of the preprocessed image and
    everything the feature depends on (see `feature_key`). Least recently used entries are
    dropped beyond `max_items`. Hold one per backbone (e.g. beside it in the app)."""

    def __init__(self, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError("A feature cache holds at least one item.")
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> torch.Tensor | None:
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: str, feature: torch.Tensor) -> None:
        self._items[key] = feature.detach().to("cpu", torch.float32)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


def feature_key(dp: DualPrompt, precision: str, pixels: torch.Tensor) -> str:
    """Cache key of one preprocessed image (3, H, W) under this module's image tower."""
    digest = hashlib.sha256(f"{dp.backbone.fingerprint}|{dp.cfg.n_vision_prompts}|{precision}|"
                            f"{tuple(pixels.shape)}|".encode())
    digest.update(pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def encode_images(dp: DualPrompt, images: Sequence[Image.Image] | torch.Tensor,
                  batch_size: int = 32, precision: str = "auto",
                  cache: FeatureCache | None = None, progress: ProgressCallback | None = None
                  ) -> torch.Tensor:
    """(N, D) L2-normalised prompted image features (CPU, float32) of PIL images (evaluation
    transform of the backbone) or of preprocessed pixels (N, 3, H, W), in batches; with a cache,
    only images it has not seen are encoded."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    bb = dp.backbone
    precision = resolve_precision(precision, bb.device)
    from_pixels = isinstance(images, torch.Tensor)
    n = len(images)
    out: list[torch.Tensor] = []
    for start in range(0, n, batch_size):
        chunk = images[start:start + batch_size]
        pixels = chunk.float() if from_pixels else torch.stack(
            [bb.preprocess(_rgb(image)) for image in chunk])
        keys = [feature_key(dp, precision, p) for p in pixels] if cache is not None else []
        found = [cache.get(k) for k in keys] if cache is not None else [None] * len(pixels)
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            with autocast(bb.device, precision):
                fresh = dp.image_features(pixels[missing].to(bb.device)).float().cpu()
            for i, feature in zip(missing, fresh):
                found[i] = feature
                if cache is not None:
                    cache.put(keys[i], feature)
        out.append(torch.stack(found))
        if progress is not None:
            progress(min(start + batch_size, n), n)
    if not out:
        return torch.zeros(0, bb.embed_dim)
    return torch.cat(out)


def _rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise DatasetError(f"Expected PIL images or a pixel tensor, got {type(image).__name__}.")
    return image if image.mode == "RGB" else image.convert("RGB")


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def evaluate(dp: DualPrompt, images: Sequence[Image.Image] | torch.Tensor,
             labels: Sequence[int | str], batch_size: int = 32, precision: str = "auto",
             feature_cache: FeatureCache | None = None, progress: ProgressCallback | None = None
             ) -> EvaluationResult:
    """Accuracy, balanced accuracy, per-class precision / recall / F1, confusion matrix and the
    probabilities of `dp` on labelled images. `labels` are class numbers of `dp.classnames` or
    class names (matched ignoring case and spacing). Deterministic: `dp` is put in eval mode."""
    label_ids = class_numbers(labels, dp.classnames)
    if len(label_ids) != len(images):
        raise DatasetError(f"{len(images)} images but {len(label_ids)} labels; give one label "
                           "per image.")
    if not label_ids:
        raise DatasetError("There are no labelled images to evaluate; add some.")
    dp.eval()
    feats = encode_images(dp, images, batch_size, precision, feature_cache, progress)
    return evaluate_features(dp, feats, label_ids, precision)


@torch.no_grad()
def evaluate_features(dp: DualPrompt, features: torch.Tensor, labels: Sequence[int],
                      precision: str = "auto") -> EvaluationResult:
    """`evaluate` on prompted image features already encoded (N, D)."""
    bb = dp.backbone
    precision = resolve_precision(precision, bb.device)
    dp.eval()
    with autocast(bb.device, precision):
        logits = dp.logits(features.to(bb.device))
    probabilities = logits.float().softmax(dim=-1).cpu().numpy()
    return result_from_probabilities(list(labels), probabilities, dp.classnames)


def compare(dp: DualPrompt, images: Sequence[Image.Image] | torch.Tensor,
            labels: Sequence[int | str], batch_size: int = 32, precision: str = "auto",
            feature_cache: FeatureCache | None = None, progress: ProgressCallback | None = None
            ) -> dict[str, EvaluationResult]:
    """{"zero-shot": ..., "tuned": ...}: the plain template classifier of the same task and the
    tuned prompts on the same images (features shared whenever the two image towers agree)."""
    cache = feature_cache if feature_cache is not None else FeatureCache()
    return {"zero-shot": evaluate(dp.zero_shot(), images, labels, batch_size, precision, cache,
                                  progress),
            "tuned": evaluate(dp, images, labels, batch_size, precision, cache, progress)}


DEFAULT_ROW_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                      "macro_f1": "macro F1", "precision": "precision: {name}",
                      "recall": "recall: {name}", "f1": "F1: {name}"}


def summary_rows(results: Mapping[str, EvaluationResult], labels: Mapping[str, str] | None = None
                 ) -> tuple[list[str], list[list]]:
    """(headers, rows) of a side-by-side table: overall metrics then per-class precision,
    recall and F1, in percent with one decimal, one column per result (e.g. zero-shot and
    tuned). `labels` overrides the row names (`DEFAULT_ROW_LABELS`' keys; per-class ones have
    a {name} slot), e.g. to translate them."""
    names = list(results)
    first = results[names[0]]
    label = {**DEFAULT_ROW_LABELS, **(labels or {})}
    rows: list[list] = []
    for attr in ("accuracy", "balanced_accuracy", "macro_f1"):
        rows.append([label[attr]] + [_pct(getattr(results[n], attr)) for n in names])
    for attr in ("precision", "recall", "f1"):
        for cls in first.classnames:
            rows.append([label[attr].format(name=cls)]
                        + [_pct(getattr(results[n].per_class[cls], attr)) for n in names])
    return ["metric"] + names, rows


def _pct(value: float) -> float:
    return round(100 * value, 1)


def class_numbers(labels: Sequence[int | str], classnames: Sequence[str]) -> list[int]:
    """Class numbers from numbers or names; names match ignoring case and repeated spaces."""
    by_name = {" ".join(n.split()).casefold(): i for i, n in enumerate(classnames)}
    out = []
    for label in labels:
        if isinstance(label, str):
            key = " ".join(label.split()).casefold()
            if key not in by_name:
                raise DatasetError(f"The label {label!r} is not one of the classes "
                                   f"({', '.join(classnames)}); rename it or tune prompts for "
                                   "that class.")
            out.append(by_name[key])
        else:
            number = int(label)
            if not 0 <= number < len(classnames):
                raise DatasetError(f"The label {label} is not a class number from 0 to "
                                   f"{len(classnames) - 1}.")
            out.append(number)
    return out


# --------------------------------------------------------------------------------------------
# Disk store for sweeps
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreKey:
    """What a stored feature depends on. `collection` names the image set (e.g. 'BTMRI/test');
    `view` the transform ('eval' or an augmented crop such as 'rrc0.08-1.0#3')."""

    fingerprint: str
    n_vision_prompts: int
    view: str
    precision: str
    collection: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


class FeatureStore:
    """Prompted image features on disk, one safetensors file per `StoreKey` holding one row per
    image id (for a data set: its relative path and file size). Rows are keyed by id, not by the
    list of ids, so the K-shot draws of a sweep share every image they have in common. Files are
    written atomically after every chunk, so an interrupted encoding keeps what it finished.
    Never unpickles: a damaged file is ignored (with a warning) and rebuilt."""

    def __init__(self, root: str | Path = DEFAULT_STORE_DIR) -> None:
        self.root = Path(root).expanduser()
        self._loaded: dict[str, tuple[dict[str, int], torch.Tensor | None]] = {}
        self.encoded = 0  # images encoded by this store since it was made (tests, logs)

    def path(self, key: StoreKey) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.collection)
        return self.root / f"{safe}-{key.digest()}.safetensors"

    def features(self, key: StoreKey, ids: Sequence[str],
                 encode: Callable[[list[int]], torch.Tensor], chunk: int = 1024,
                 progress: ProgressCallback | None = None) -> torch.Tensor:
        """(N, D) features of `ids` (CPU float32); `encode(indices)` makes the missing ones,
        given as positions in `ids`, and returns them as (len(indices), D)."""
        index, table = self._load(key)
        missing = [i for i, item in enumerate(ids) if item not in index]
        done = len(ids) - len(missing)
        if progress is not None:
            progress(done, len(ids))
        for start in range(0, len(missing), chunk):
            part = missing[start:start + chunk]
            fresh = encode(part).detach().to("cpu", torch.float32)
            if fresh.shape[0] != len(part):
                raise RuntimeError(f"encode returned {fresh.shape[0]} features for {len(part)} images")
            for i in part:
                index[ids[i]] = len(index)
            table = fresh if table is None else torch.cat([table, fresh])
            self._loaded[key.digest()] = (index, table)
            self._save(key, index, table)
            self.encoded += len(part)
            done += len(part)
            if progress is not None:
                progress(done, len(ids))
        if not ids:
            return torch.zeros(0, 0 if table is None else table.shape[1])
        return table[torch.tensor([index[item] for item in ids])]

    def _load(self, key: StoreKey) -> tuple[dict[str, int], torch.Tensor | None]:
        digest = key.digest()
        if digest in self._loaded:
            return self._loaded[digest]
        found: tuple[dict[str, int], torch.Tensor | None] = ({}, None)
        path = self.path(key)
        if path.is_file():
            try:
                found = _read_store(path, key)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                log.warning("Ignoring the damaged feature cache %s (%s); it will be rebuilt.",
                            path, exc)
        self._loaded[digest] = found
        return found

    def _save(self, key: StoreKey, index: dict[str, int], table: torch.Tensor) -> None:
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        ids = sorted(index, key=index.get)
        metadata = {"format": STORE_FORMAT, "version": STORE_VERSION,
                    "key": json.dumps(asdict(key), sort_keys=True), "ids": json.dumps(ids)}
        handle, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(handle)
        try:
            save_file({"features": table.contiguous()}, tmp, metadata=metadata)
            os.replace(tmp, self.path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _read_store(path: Path, key: StoreKey) -> tuple[dict[str, int], torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            table = f.get_tensor("features")
    except SafetensorError as exc:
        raise ValueError(str(exc)) from exc
    if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
        raise ValueError("not a feature file of this version")
    if json.loads(meta["key"]) != asdict(key):
        raise ValueError("made for other settings")
    ids = json.loads(meta["ids"])
    if table.dim() != 2 or table.shape[0] != len(ids) or not torch.isfinite(table).all():
        raise ValueError("its table does not match its ids")
    return {item: i for i, item in enumerate(ids)}, table.float()


# --------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------
def confusion_figure(result: EvaluationResult, classnames: Sequence[str] | None = None,
                     title: str | None = None,
                     axis_labels: tuple[str, str] = ("predicted class", "true class")):
    """A matplotlib Figure of the confusion matrix: counts in the cells, colour = fraction of the
    true class (row-normalised, so rare classes are as visible as common ones). Built on
    `matplotlib.figure.Figure`, with no pyplot global state, so it is safe in a web server."""
    from matplotlib.figure import Figure

    names = list(classnames or result.classnames)
    counts = np.asarray(result.confusion, dtype=np.int64)
    if counts.shape != (len(names), len(names)):
        raise ValueError(f"{len(names)} class names for a {counts.shape} confusion matrix.")
    rows = counts.sum(axis=1, keepdims=True)
    fractions = _divide(counts.astype(np.float64), np.broadcast_to(rows, counts.shape))
    n = len(names)
    side = float(np.clip(1.8 + 0.6 * n, 4.0, 16.0))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    font = float(np.clip(14 - 0.4 * n, 5, 11))
    for t in range(n):
        for p in range(n):
            ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=font,
                    color="white" if fractions[t, p] > 0.5 else "black")
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right", fontsize=font)
    ax.set_yticks(range(n), labels=names, fontsize=font)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title or f"accuracy {result.accuracy:.1%}, balanced {result.balanced_accuracy:.1%}"
                 f" (n = {result.n})")
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    return fig
