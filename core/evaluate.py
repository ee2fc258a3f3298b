"""Evaluation: metrics, held-out estimates, a confusion figure.

The metrics are pure numpy functions of a confusion matrix (rows = true class, columns =
predicted class), checked in the tests against hand-computed values. Image features come from
`core.features` (encoded once, cached by content): the app evaluates the same upload zero-shot,
tuned and with the baselines, and again after every re-tuning, encoding it once.

`cross_validate` estimates, from the labelled examples alone, how a method does on scans it
was not tuned on: stratified k-fold, every example predicted once by a model that never saw it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from core.backbone import autocast, resolve_precision
from core.errors import DatasetError
from core.features import FeatureCache, ProgressCallback, encode
from core.prompt_config import class_key
from core.prompts import DualPrompt

log = logging.getLogger(__name__)


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
    feats = encode(dp.backbone, images, vision_prompts=dp.cfg.n_vision_prompts,
                   cache=feature_cache, precision=precision, batch_size=batch_size,
                   progress=progress, vision_mode=dp.cfg.vision_mode)
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


# --------------------------------------------------------------------------------------------
# A held-out estimate from the examples alone
# --------------------------------------------------------------------------------------------
def stratified_folds(labels: Sequence[int], folds: int, seed: int = 1) -> list[np.ndarray]:
    """Test indices of each fold: every class's examples shuffled (by `seed`) and dealt round
    the folds, so each fold holds each class in proportion; the folds cover every example once.
    Folds are capped at the smallest class's size, so every class is in every training part."""
    y = np.asarray(list(labels), dtype=np.int64)
    counts = np.bincount(y) if y.size else np.zeros(0, np.int64)
    present = counts[counts > 0]
    if present.size < 2:
        raise DatasetError("A held-out estimate needs examples of at least two classes.")
    if present.min() < 2:
        raise DatasetError("A held-out estimate needs at least two examples of every class: one "
                           "to tune on and one to test on.")
    k = int(min(folds, present.min()))
    if k < 2:
        raise DatasetError("A held-out estimate needs at least two folds.")
    rng = np.random.default_rng(seed)
    dealt: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in np.flatnonzero(counts):
        members = rng.permutation(np.flatnonzero(y == c))
        for j, i in enumerate(members):
            dealt[(offset + j) % k].append(int(i))
        offset += len(members)  # start the next class where this one stopped: even folds
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in dealt]


def cross_validate(method: str, features: torch.Tensor, labels: Sequence[int], folds: int = 4,
                   seed: int = 1, *, should_stop: Callable[[], bool] | None = None,
                   on_fold: Callable[[int, int], None] | None = None, **settings) -> dict | None:
    """Stratified k-fold estimate of `method` on labelled features alone: each fold is
    predicted by a model fitted on the other folds. Returns accuracy and balanced accuracy of
    the pooled held-out predictions (every example predicted once), `std` (of the per-fold
    accuracies), `balanced_std`, `per_fold`, `folds`, `n` and the held-out `probabilities`;
    None when stopped (polled between folds).

    Methods and their settings:
    - baselines (`core.baselines.BASELINES`): `text_features` (C, D), optional `logit_scale`
      and the baseline's own options; `features` are (N, D) without vision prompts;
    - prompt methods (`core.prompt_config.METHODS` but zero-shot): `prompts`, an untrained
      DualPrompt of the method (copied per fold), and `train`, a TrainConfig; `features` are
      (N, D) or (V, N, D) as `fit_features` takes them, with the module's vision prompts.
    """
    from core.baselines import BASELINES, fit_baseline

    y = np.asarray(list(labels), dtype=np.int64)
    parts = stratified_folds(y, folds, seed)
    views = features if features.dim() == 3 else features.unsqueeze(0)
    n_classes = _n_classes(method, settings)
    held_out = np.zeros((len(y), n_classes), dtype=np.float64)
    per_fold = []
    for k, test in enumerate(parts):
        if should_stop is not None and should_stop():
            return None
        train = np.setdiff1d(np.arange(len(y)), test)
        if method in BASELINES:
            options = {key: v for key, v in settings.items() if key != "text_features"}
            clf = fit_baseline(method, views[0][train], y[train].tolist(),
                               settings["text_features"], **options)
            probs = clf.predict_proba(views[0][test])
        else:
            probs = _prompt_fold(settings["prompts"], settings["train"], views, y, train, test,
                                 should_stop)
            if probs is None:
                return None
        held_out[test] = probs
        fold = result_from_probabilities(y[test].tolist(), probs, [str(c) for c in
                                                                   range(n_classes)])
        per_fold.append({"accuracy": fold.accuracy, "balanced_accuracy": fold.balanced_accuracy,
                         "n": int(len(test))})
        if on_fold is not None:
            on_fold(k + 1, len(parts))
    pooled = result_from_probabilities(y.tolist(), held_out, [str(c) for c in range(n_classes)])
    return {"method": method, "accuracy": pooled.accuracy,
            "balanced_accuracy": pooled.balanced_accuracy,
            "std": float(np.std([f["accuracy"] for f in per_fold])),
            "balanced_std": float(np.std([f["balanced_accuracy"] for f in per_fold])),
            "per_fold": per_fold, "folds": len(parts), "n": int(len(y)),
            "probabilities": held_out.astype(np.float32)}


def _n_classes(method: str, settings: Mapping) -> int:
    if "text_features" in settings:
        return int(settings["text_features"].shape[0])
    if "prompts" in settings:
        return len(settings["prompts"].classnames)
    raise DatasetError(f"cross_validate({method!r}) needs text_features (a baseline) or prompts "
                       "and train (a prompt method).")


def _prompt_fold(prompts: DualPrompt, train_cfg, views: torch.Tensor, y: np.ndarray,
                 train: np.ndarray, test: np.ndarray, should_stop) -> np.ndarray | None:
    """Tune a fresh copy of `prompts` on the training part; held-out probabilities."""
    from core.train import fit_features

    dp = prompts.copy()  # every fold starts from the same context
    history = fit_features(dp, views[:, train], y[train].tolist(), train_cfg,
                           should_stop=should_stop)
    if history.stopped == "user":
        return None
    return evaluate_features(dp, views[0][test], y[test].tolist(),
                             train_cfg.precision).probabilities


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
    by_name = {class_key(n): i for i, n in enumerate(classnames)}
    out = []
    for label in labels:
        if isinstance(label, str):
            key = class_key(label)
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
# Figure
# --------------------------------------------------------------------------------------------
def confusion_figure(result: EvaluationResult, classnames: Sequence[str] | None = None,
                     title: str | None = None,
                     axis_labels: tuple[str, str] = ("predicted class", "true class"),
                     colour_label: str = "fraction of the true class"):
    """A matplotlib Figure of the confusion matrix: counts in the cells, colour = fraction of the
    true class (row-normalised, so rare classes are as visible as common ones). Built on
    `matplotlib.figure.Figure`, with no pyplot global state, so it is safe in a web server."""
    from matplotlib.figure import Figure

    from core.overlay import figure_fonts

    figure_fonts()
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
    fig.colorbar(image, ax=ax, label=colour_label, shrink=0.8)
    return fig
