"""One browser session's work: the task, the labelled examples, the tuned prompts, the last
prediction. Plain Python over the core; the Gradio handlers in `handlers.py` only translate
between widgets and these objects. Images are kept in memory, never written to disk."""
from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from core.backbone import Backbone, autocast, resolve_precision
from core.errors import PromptError, ScanError, StudioError
from core.explain import model_view, overlay, relevance_maps
from core.evaluate import EvaluationResult, FeatureCache, compare, evaluate
from core.imaging import Scan, labelled_zip, load_scan, suggest_modality, to_rgb
from core.prompts import DualPrompt, PromptConfig
from core.train import History

MAX_EXAMPLES = 400
MAX_CLASSES = 20
THUMBNAIL = 160
_ids = itertools.count(1)


@dataclass
class Example:
    """One labelled example: the picture the model sees and a small thumbnail."""

    uid: int
    label: str
    image: Image.Image  # RGB, windowed, the chosen slice
    thumbnail: Image.Image
    name: str  # a display name; never the uploaded file's own name


@dataclass
class Prediction:
    """The last scan predicted, kept so the map can be switched without recomputing."""

    view: Image.Image  # what the model saw (centre crop), for the overlay
    pixels: torch.Tensor
    tuned: dict[str, float]
    zero_shot: dict[str, float]
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    classnames: list[str] = field(default_factory=list)
    suggested_modality: str | None = None


class StopFlag:
    """Set by the Stop button, polled by the training thread. A plain flag (not a
    threading.Event) so that Gradio can copy a fresh Session for each browser session."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set


@dataclass
class Session:
    """Everything one user has done; lives in a `gr.State`, invisible to other users."""

    modality: str = "MRI"
    organ: str | None = None
    template: str = "a MR photo of a {} in the brain."
    classes: list[str] = field(default_factory=list)
    descriptions: dict[str, list[str]] = field(default_factory=dict)
    lambda_l1: float = 12.5
    lambda_kl: float = 0.25
    examples: list[Example] = field(default_factory=list)
    selected: int | None = None  # index into examples, chosen in the gallery
    tuned: DualPrompt | None = None
    history: History | None = None
    prediction: Prediction | None = None
    stop: StopFlag = field(default_factory=StopFlag)
    test_set: list[Example] = field(default_factory=list)  # labelled scans for evaluation
    features: FeatureCache = field(default_factory=FeatureCache)  # image features, re-used
    files: list[str] = field(default_factory=list)  # uploads and downloads of this session
    _zero: tuple | None = field(default=None, repr=False)

    # ---- task ---------------------------------------------------------------------------------
    def set_task(self, bb: Backbone, template: str, rows: Iterable[Sequence[str]],
                 modality: str | None = None, organ: str | None = None,
                 lambdas: tuple[float, float] | None = None) -> DualPrompt:
        """Check and keep a task. Rows are (class name, descriptions with one sentence per
        line). Examples of classes that no longer exist are dropped. Returns the zero-shot
        classifier of the task (building it is the check)."""
        classes, descriptions = parse_class_rows(rows)
        l1, kl = lambdas if lambdas is not None else (self.lambda_l1, self.lambda_kl)
        cfg = PromptConfig(template=template.strip(), lambda_l1=float(l1), lambda_kl=float(kl))
        zero_shot = DualPrompt(bb, classes, cfg, descriptions).zero_shot()
        self.template, self.classes, self.descriptions = cfg.template, classes, descriptions
        self.lambda_l1, self.lambda_kl = cfg.lambda_l1, cfg.lambda_kl
        if modality:
            self.modality, self.organ = modality, organ
        self.examples = [e for e in self.examples if e.label in classes]
        self.selected = None
        self._zero = ((self.template, tuple(classes)), zero_shot)  # predict re-uses it
        return zero_shot

    def prompt_config(self, **changes) -> PromptConfig:
        return PromptConfig(template=self.template, lambda_l1=self.lambda_l1,
                            lambda_kl=self.lambda_kl, **changes)

    def zero_shot(self, bb: Backbone) -> DualPrompt:
        """The plain template classifier of the current task (cached while the task stays)."""
        key = (self.template, tuple(self.classes))
        if self._zero is None or self._zero[0] != key:
            self._zero = (key, DualPrompt(bb, self.classes, self.prompt_config(),
                                          self.descriptions).zero_shot())
        return self._zero[1]

    def require_task(self) -> None:
        if len(self.classes) < 2:
            raise PromptError("Set up the task first: at least two classes (step 1).")

    # ---- examples -----------------------------------------------------------------------------
    def add_examples(self, paths: Sequence[str], label: str, window=None, index: int | None = None
                     ) -> tuple[int, list[str]]:
        """Read each file; keep the good ones, report the bad ones by position (never by the
        file's name, which may identify a patient). Only the decoded pictures are kept."""
        self.require_task()
        if label not in self.classes:
            raise PromptError(f"Choose which class these examples belong to ({', '.join(self.classes)}).")
        items = [(label, path, f"File {n}") for n, path in enumerate(paths, start=1)]
        return self._read_into(self.examples, "examples", items, window, index,
                               lambda lab, kept: f"{lab} #{sum(e.label == lab for e in kept) + 1}")

    def _read_into(self, target: list[Example], kind: str, items, window, index, name
                   ) -> tuple[int, list[str]]:
        """Read (class, path, where) items into `target`; a bad file is reported by `where`
        (a position, never its name, which may identify a patient) and loses nothing else."""
        added, problems = 0, []
        for label, path, where in items:
            try:
                if len(target) >= MAX_EXAMPLES:
                    raise ScanError(f"At most {MAX_EXAMPLES} {kind} can be kept in one session.")
                picture = scan_picture(load_scan(path), window, index)
                target.append(Example(next(_ids), label, picture, thumbnail(picture),
                                      name(label, target)))
                added += 1
            except StudioError as exc:
                problems.append(f"{where}: {exc}")
            finally:
                self.uploaded(path)
        return added, problems

    def remove_selected(self) -> Example | None:
        if self.selected is None or not 0 <= self.selected < len(self.examples):
            return None
        removed = self.examples.pop(self.selected)
        self.selected = None
        return removed

    def counts(self) -> dict[str, int]:
        return {c: sum(e.label == c for e in self.examples) for c in self.classes}

    # ---- tuning -------------------------------------------------------------------------------
    def training_set(self) -> tuple[list[Image.Image], list[int]]:
        self.require_task()
        missing = [c for c, n in self.counts().items() if n == 0]
        if missing:
            raise PromptError(f"Add at least one example for {', '.join(missing)} (step 2).")
        index = {c: i for i, c in enumerate(self.classes)}
        return [e.image for e in self.examples], [index[e.label] for e in self.examples]

    def new_prompts(self, bb: Backbone, lambdas: tuple[float, float]) -> DualPrompt:
        cfg = PromptConfig(template=self.template, lambda_l1=float(lambdas[0]),
                           lambda_kl=float(lambdas[1]))
        return DualPrompt(bb, self.classes, cfg, self.descriptions)

    # ---- evaluation ---------------------------------------------------------------------------
    def add_test_files(self, paths: Sequence[str], label: str, window=None,
                       index: int | None = None) -> tuple[int, list[str]]:
        """Labelled scans for evaluation, given with their class."""
        self.require_task()
        if label not in self.classes:
            raise PromptError(f"Choose the class of these scans ({', '.join(self.classes)}).")
        return self._add_test([(label, p, f"File {n}") for n, p in enumerate(paths, start=1)],
                              window, index)

    def add_test_zip(self, path: str, window=None, index: int | None = None
                     ) -> tuple[int, list[str]]:
        """Labelled scans for evaluation from a zip holding one folder per class."""
        self.require_task()
        by_key = {" ".join(c.split()).casefold(): c for c in self.classes}
        try:
            with tempfile.TemporaryDirectory(prefix="biomed-dpt-eval-") as folder:
                items, problems = [], []
                for n, (folder_name, member) in enumerate(labelled_zip(path, folder), start=1):
                    label = by_key.get(" ".join(folder_name.split()).casefold())
                    if label is None:
                        problems.append(f"File {n} of the zip: its folder "
                                        f"{folder_name or '(none)'!r} is not one of the classes; "
                                        f"put each scan in a folder named after its class.")
                    else:
                        items.append((label, str(member), f"File {n} of the zip"))
                added, unreadable = self._add_test(items, window, index)
        finally:
            self.uploaded(path)
        return added, problems + unreadable

    def _add_test(self, items, window, index) -> tuple[int, list[str]]:
        return self._read_into(self.test_set, "test scans", items, window, index,
                               lambda label, kept: f"{label} (test)")

    def test_counts(self) -> dict[str, int]:
        return {c: sum(e.label == c for e in self.test_set) for c in self.classes}

    def evaluate(self, bb: Backbone, precision: str = "auto") -> dict[str, EvaluationResult]:
        """Zero-shot and (when tuned) the tuned prompts on the test set, side by side."""
        self.require_task()
        if not self.test_set:
            raise PromptError("Add labelled test scans first (a zip of class folders, or files "
                              "with their class).")
        pictures = [e.image for e in self.test_set]
        labels = [e.label for e in self.test_set]
        if self.tuned is None:
            return {"zero-shot": evaluate(self.zero_shot(bb), pictures, labels,
                                          precision=precision, feature_cache=self.features)}
        return compare(self.tuned, pictures, labels, precision=precision,
                       feature_cache=self.features)

    # ---- prediction ---------------------------------------------------------------------------
    def predict(self, bb: Backbone, path: str, window=None, index: int | None = None,
                precision: str = "auto") -> Prediction:
        self.require_task()
        try:
            scan = load_scan(path)
        finally:
            self.uploaded(path)
        picture = scan_picture(scan, window, index)
        classifier = self.tuned
        zero = self.zero_shot(bb)
        pixels = bb.pixels([picture])
        precision = resolve_precision(precision, bb.device)
        with torch.no_grad(), autocast(bb.device, precision):
            zero_probs = zero.predict_proba(pixels)[0]
            tuned_probs = classifier.predict_proba(pixels)[0] if classifier is not None else None
        explained = classifier or zero
        names = explained.classnames
        probs = tuned_probs if tuned_probs is not None else zero_probs
        top = int(probs.argmax())
        prediction = Prediction(
            view=model_view(picture, bb.image_size), pixels=pixels,
            tuned=_as_dict(names, tuned_probs) if tuned_probs is not None else {},
            zero_shot=_as_dict(zero.classnames, zero_probs), classnames=list(names),
            suggested_modality=suggest_modality(scan))
        prediction.maps[top] = relevance_maps(explained, pixels, [top])[0]
        self.prediction = prediction
        return prediction

    def map_for(self, bb: Backbone, class_name: str) -> np.ndarray:
        p = self.prediction
        if p is None:
            raise PromptError("Predict a scan first.")
        if class_name not in p.classnames:
            raise PromptError(f"{class_name!r} is not one of the predicted classes.")
        k = p.classnames.index(class_name)
        if k not in p.maps:
            explained = self.tuned if self.tuned is not None else self.zero_shot(bb)
            p.maps[k] = relevance_maps(explained, p.pixels, [k])[0]
        return p.maps[k]

    def overlay_for(self, bb: Backbone, class_name: str, alpha: float) -> Image.Image:
        return overlay(self.prediction.view, self.map_for(bb, class_name), alpha=alpha)

    # ---- files ------------------------------------------------------------------------------------
    def uploaded(self, path: str) -> None:
        """Remember an upload so that it is deleted when the session ends. (Not at once: the
        server keeps one copy of identical files, which another session may be reading.)"""
        if path and path not in self.files:
            self.files.append(str(path))

    def new_file(self, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(prefix="biomed-dpt-", suffix=suffix)
        os.close(handle)
        self.files.append(name)
        return Path(name)

    def close(self) -> None:
        """Forget everything and delete this session's files (the browser tab was closed)."""
        for name in self.files:
            discard_upload(name)
        self.files.clear()
        self.examples.clear()
        self.test_set.clear()
        self.features = FeatureCache()
        self.tuned = self.prediction = self.history = self._zero = None
        self.stop.set()


def parse_class_rows(rows: Iterable[Sequence[str]]) -> tuple[list[str], dict[str, list[str]]]:
    """Table rows -> class names and their descriptions; blank rows are ignored."""
    classes, descriptions = [], {}
    for row in rows or []:
        cells = [("" if c is None else str(c)) for c in (list(row) + ["", ""])[:2]]
        name = " ".join(cells[0].split())
        if not name:
            continue
        classes.append(name)
        lines = [" ".join(line.split()) for line in cells[1].splitlines() if line.strip()]
        if lines:
            descriptions[name] = lines
    if len(classes) > MAX_CLASSES:
        raise PromptError(f"{len(classes)} classes is more than the {MAX_CLASSES} this app handles.")
    return classes, descriptions


def scan_picture(scan: Scan, window=None, index: int | None = None) -> Image.Image:
    """The RGB picture of one frame or slice, windowed."""
    if index is not None and scan.n_frames > 1:
        index = min(max(int(index), 0), scan.n_frames - 1)
    elif scan.n_frames <= 1:
        index = None
    return to_rgb(scan, window=window or None, index=index)


def thumbnail(picture: Image.Image) -> Image.Image:
    small = picture.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    return small


def discard_upload(path: str | os.PathLike | None) -> None:
    """Delete an uploaded or generated file."""
    if not path:
        return
    try:
        os.remove(path)
    except OSError:
        pass


def _as_dict(names: Sequence[str], probs: torch.Tensor) -> dict[str, float]:
    return {name: float(p) for name, p in zip(names, probs.float().cpu())}
