"""Predicting one scan: what the model saw, each classifier's probabilities, the examples it
resembles, and the maps made of it so far (switching the map's class reuses them). The last
prediction is kept in the session."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from core.features import EVAL_VIEW, feature_key
from core.imaging import load_scan, suggest_modality
from core.overlay import model_view, overlay
from demo.runtime import compute
from demo.runtime.host import ModelInfo
from demo.text.messages import UserError, modality_name, text
from demo.work.encoding import BASELINE, resolved_precision
from demo.work.scans import (Example, colour_mismatch, frame_used, kept_picture, picture_digest,
                             scan_picture, window_applies, window_name)

MAX_SLICES = 64  # a volume's slices classified; past that, every k-th


@dataclass
class Prediction:
    """The last scan predicted, kept so the map can be switched without recomputing."""

    view: Image.Image  # what the model saw (centre crop), for the overlay
    picture: Image.Image  # the scan as kept (longer side at most KEPT_SIDE), for more maps
    tuned: dict[str, float]
    zero_shot: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)  # BASELINE on the examples
    nearest: list[tuple[Example, float]] = field(default_factory=list)  # (example, cosine)
    similarity_floor: float | None = None  # the examples' `least_typical_similarity`
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    classnames: list[str] = field(default_factory=list)
    suggested_modality: str | None = None
    colour_mismatch: str | None = None  # "colour_in_grey" / "grey_in_colour" for the task
    window: str = "auto"  # how the scan was drawn, for the report
    frame: int | None = None
    n_frames: int = 1
    volume: int = 0  # of a 4-D file, the one predicted (of `volumes`)
    volumes: int = 1
    digest: str = ""
    plain: torch.Tensor | None = None  # (D,) its plain BiomedCLIP feature, for the baselines

    @property
    def top(self) -> str:
        """The class ranked first (by the tuned prompts once there are some)."""
        probs = self.tuned or self.zero_shot
        return max(probs, key=probs.get)

    @property
    def unlike_examples(self) -> bool:
        """Whether the scan is farther from its nearest example than any example is from its
        own (`demo.work.encoding.least_typical_similarity`): then no classifier has seen anything
        like it, and its probabilities mean little."""
        return (bool(self.nearest) and self.similarity_floor is not None
                and self.nearest[0][1] < self.similarity_floor)


class Predicting:
    """The prediction side of a `Session`: one scan at a time, kept in its `prediction`."""

    def predict(self, info: ModelInfo, path: str, window=None, index: int | None = None,
                precision: str = "auto", scan=None, volume: int = 0) -> Prediction:
        """Classify one scan (of a 4-D file, its volume `volume`) with the tuned prompts,
        zero-shot and the baseline, and find the examples it resembles most; the scan is
        encoded once per image tower, in one compute call that also makes the map of the
        class ranked first (`scan`: the file, read already)."""
        self.require_task()
        scan = load_scan(path, volume=volume) if scan is None else scan
        picture, _ = scan_picture(scan, window, index)
        picture = kept_picture(picture)
        digest = picture_digest(picture)
        precision = resolved_precision(info, precision)
        classifier = self.tuned
        zero = self.zero_shot(info)
        explained = classifier or zero
        tuned_vp = classifier.cfg.n_vision_prompts if classifier is not None else 0
        feats, top, heat = compute.look(picture, digest, (0, tuned_vp), precision, explained,
                                        tuned_vp)
        for vp, feature in feats.items():
            self.features.put(feature_key(info, digest, EVAL_VIEW, vp, precision), feature)
        plain = feats[0][None]
        zero_probs = zero.proba(plain)[0]
        tuned_probs = classifier.proba(feats[tuned_vp][None])[0] if classifier else None
        base = self.baseline(info, BASELINE, precision)
        prediction = Prediction(
            view=model_view(picture, info.image_size), picture=picture,
            tuned=_as_dict(classifier.classnames, tuned_probs) if classifier else {},
            zero_shot=_as_dict(zero.classnames, zero_probs),
            classnames=list(explained.classnames),
            baseline=(_as_dict(self.classes, torch.from_numpy(base.predict_proba(plain)[0]))
                      if base is not None else {}),
            nearest=self.nearest(info, plain[0], precision),
            similarity_floor=self.similarity_floor(info, precision),
            suggested_modality=suggest_modality(scan),
            colour_mismatch=colour_mismatch(picture, self.modality),
            window=window_name(window if window_applies(scan, window) else None),
            frame=frame_used(scan, index), n_frames=scan.n_frames, volume=scan.volume,
            volumes=scan.volumes, digest=digest, plain=plain[0])
        prediction.maps[top] = heat
        self.prediction = prediction
        return prediction

    def predict_volume(self, info: ModelInfo, path: str, window=None, step: int | None = None,
                       precision: str = "auto", stop: str | None = None,
                       progress=None, volume: int = 0, scan=None) -> VolumePrediction | None:
        """Classify every slice of a volume (every `step`-th; by default every slice up to
        `MAX_SLICES`, past that as many evenly spaced ones) with the tuned prompts (zero-shot
        before any tuning), in one compute call; then the slice the model is most confident
        about is predicted as one scan, with its map. None when stopped (`stop`: the run's
        stop file); `progress(done, total)` counts the slices encoded; `volume`: of a 4-D
        file (`scan`: the file, read already)."""
        self.require_task()
        scan = load_scan(path, volume=volume) if scan is None else scan
        n = scan.n_frames
        step = max(1, int(step)) if step else max(1, math.ceil(n / MAX_SLICES))
        numbers = list(range(0, n, step))
        slices = slice_pictures(scan, window, numbers)
        classifier = self.tuned or self.zero_shot(info)
        vp = classifier.cfg.n_vision_prompts if self.tuned is not None else 0
        features = self.features_of(info, slices, vp, precision, progress, stop)
        if features is None:
            return None
        probs = classifier.proba(features)
        per_slice = [_as_dict(classifier.classnames, row) for row in probs]
        best = numbers[int(probs.max(dim=1).values.argmax())]
        along = VolumePrediction(numbers, per_slice, "tuned" if self.tuned is not None
                                 else "zero-shot", scan.frame_label, n, best, step, scan.volume)
        self.predict(info, path, window, best if n > 1 else None, precision, scan=scan)
        self.volume = along
        return along

    def scores(self, info: ModelInfo, method: str) -> dict[str, float]:
        """The last predicted scan's class probabilities by a baseline (`COMPARED`) fitted on
        the examples."""
        p = self.prediction
        if p is None:
            raise UserError("predict_first")
        if method == "zero-shot":
            return p.zero_shot
        clf = self.baseline(info, method)
        if clf is None:
            raise UserError("need_examples", classes=", ".join(
                c for c, n in self.counts().items() if n == 0))
        return _as_dict(self.classes, torch.from_numpy(clf.predict_proba(p.plain[None])[0]))

    def map_for(self, info: ModelInfo, class_name: str) -> np.ndarray:
        p = self.prediction
        if p is None:
            raise UserError("predict_first")
        if class_name not in p.classnames:
            raise UserError("not_a_class", name=repr(class_name))
        k = p.classnames.index(class_name)
        if k not in p.maps:
            p.maps[k] = compute.maps(self.explained(info), [p.picture], [k])[0]
        return p.maps[k]

    def overlay_for(self, info: ModelInfo, class_name: str, alpha: float, cmap: str = "jet"
                    ) -> Image.Image:
        return overlay(self.prediction.view, self.map_for(info, class_name), alpha=alpha,
                       cmap=cmap)


@dataclass
class VolumePrediction:
    """A volume's slices classified one by one: which slices (every `step`-th of `n_frames`),
    each one's probabilities by `classifier` ("tuned" or "zero-shot"), and the slice the
    model is most confident about."""

    slices: list[int]
    probabilities: list[dict[str, float]]
    classifier: str
    frame_label: str
    n_frames: int
    best: int
    step: int = 1
    volume: int = 0  # of a 4-D file, the one predicted

    def rows(self) -> list[dict]:
        """One entry per slice predicted: {"slice": i, "probabilities": {class: p}}."""
        return [{"slice": i, "probabilities": dict(p)}
                for i, p in zip(self.slices, self.probabilities)]


def slice_pictures(scan, window, numbers: Sequence[int]) -> list[Example]:
    """Slices `numbers` of a scan as the pictures the model sees, each with its digest (their
    features are cached by it); a single picture is itself."""
    out = []
    for i in numbers:
        picture = kept_picture(scan_picture(scan, window, i if scan.n_frames > 1 else None)[0])
        out.append(Example(0, "", picture, picture, f"slice {i}", picture_digest(picture)))
    return out


def scan_notes(p: Prediction, modality: str | None, lang: str) -> list[str]:
    """Why the prediction may mean little for this scan, in `lang`: a file of another
    modality than the task's, or a colour that does not fit it; a scan unlike every example.
    The predict step's status line and the report both say them."""
    notes = []
    task = modality_name(lang, modality)
    if p.suggested_modality and modality != "other" and p.suggested_modality != modality:
        notes.append(text(lang, "looks_like", found=modality_name(lang, p.suggested_modality),
                          task=task))
    elif p.colour_mismatch:
        notes.append(text(lang, p.colour_mismatch, task=task))
    if p.unlike_examples:
        notes.append(text(lang, "unlike_examples", similarity=p.nearest[0][1],
                          floor=p.similarity_floor))
    return notes


def _as_dict(names: Sequence[str], probs: torch.Tensor) -> dict[str, float]:
    return {name: float(p) for name, p in zip(names, probs.float().cpu())}
