"""One browser session's work: the task, the labelled examples, the tuned prompts, the last
prediction. Plain Python over the core; the Gradio handlers in `handlers.py` only translate
between widgets and these objects. Images are kept in memory, never written to disk; the files
they came from are the handlers' (and `storage`'s) business.

A session never holds the model: it keeps plain data (pictures, features, `PromptState`s) and
asks `demo.compute` for whatever needs the model, so every model use can run in a GPU worker."""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from core.baselines import Classifier, fit_baseline
from core.evaluate import EvaluationResult, cross_validate, result_from_probabilities
from core.features import EVAL_VIEW, FeatureCache, feature_key
from core.imaging import labelled_zip, load_scan, suggest_modality
from core.overlay import model_view, overlay
from core.prompts import PromptConfig, PromptState
from core.train import History, TrainConfig
from demo import compute, storage
from demo.host import ModelInfo
from demo.messages import UserError
from demo.prediction import Prediction
from demo.scans import (Example, Problem, colour_mismatch, frame_used, kept_picture, new_uid,
                        picture_digest, read_scans, scan_picture, window_applies,
                        window_name)
from demo.task import Task, TaskChange, follow_classes

BASELINE = "linear-probe"  # the baseline shown beside the tuned prompts in Predict
COMPARED = ("zero-shot", "tip-adapter", "linear-probe")  # baselines in Evaluate and the estimate
NEAREST = 3
FOLDS = 4


class StopFlag:
    """Set by the Stop button, polled by running compute calls: a file that exists while the
    flag is set, so a call in another process (a ZeroGPU worker) sees it too. Its path is what
    is handed to compute calls."""

    def __init__(self) -> None:
        self.path = str(storage.folder() / f"stop-{uuid.uuid4().hex}")

    def set(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).touch()

    def clear(self) -> None:
        self.discard()

    def discard(self) -> None:
        Path(self.path).unlink(missing_ok=True)

    def is_set(self) -> bool:
        return os.path.exists(self.path)


@dataclass
class Session:
    """Everything one user has done; lives in a `gr.State`, invisible to other users."""

    task: Task = field(default_factory=Task)
    examples: list[Example] = field(default_factory=list)
    selected: int | None = None  # index into examples, chosen in the gallery
    tuned: PromptState | None = None  # the tuned prompts, as plain data (no model)
    history: History | None = None
    prediction: Prediction | None = None
    stop: StopFlag = field(default_factory=StopFlag)
    test_set: list[Example] = field(default_factory=list)  # labelled scans for evaluation
    features: FeatureCache = field(default_factory=FeatureCache)  # image features, re-used
    owner: str = ""  # the browser session's id: whose files are whose
    evaluated: tuple | None = None  # (test scans, results) of the last evaluation
    cell_scans: list[Example] = field(default_factory=list)  # the confusion cell shown
    cell_selected: int | None = None
    held_out: dict | None = None  # the last held-out estimate (see `estimate`)
    gone: bool = False  # the browser session ended (or expired): background work stops
    last_used: float = field(default_factory=time.monotonic)  # for idle expiry
    expired: bool = False  # cleared for being idle (not closed): its page is told
    _zero: tuple | None = field(default=None, repr=False)
    _targets: tuple | None = field(default=None, repr=False)  # (task, frozen text targets)
    _baselines: dict = field(default_factory=dict, repr=False)  # fitted, by examples and task

    # ---- task ---------------------------------------------------------------------------------
    @property
    def modality(self) -> str | None:
        return self.task.modality

    @property
    def organ(self) -> str | None:
        return self.task.organ

    @property
    def template(self) -> str:
        return self.task.template

    @property
    def classes(self) -> list[str]:
        return list(self.task.classes)

    @property
    def descriptions(self) -> dict[str, list[str]]:
        return dict(self.task.descriptions)

    def set_task(self, info: ModelInfo, template: str, rows: Iterable[Sequence[str]],
                 modality: str | None = None, organ: str | None = None,
                 lambdas: tuple[float, float] | None = None) -> TaskChange:
        """Check and keep a task. Rows are (class name, descriptions with one sentence per
        line). A class whose name changed in its row keeps its examples (a rename); the
        examples of classes that are gone are dropped, and the change says so. Building the
        task's zero-shot classifier is the check, and it is kept for Predict and Evaluate."""
        task = Task.typed(self.task, template, rows, modality, organ, lambdas)
        zero_shot = compute.zero_shot(list(task.classes), dict(task.descriptions), task.config())
        change = self._take(task, rename=True)
        self._zero = (task.key, zero_shot)
        return change

    def adopt_prompts(self, state: PromptState) -> TaskChange:
        """Prompts from a file become the session's, with their task (classes, template,
        descriptions, lambdas, and the modality they were tuned for); examples and test scans
        of other classes are dropped, and the change says so."""
        change = self._take(Task.of_prompts(self.task, state), rename=False)
        self.tuned, self.history, self.held_out = state, None, None
        return change

    def _take(self, task: Task, rename: bool) -> TaskChange:
        """`task` becomes the session's; the labelled scans follow its classes. Tuned prompts
        of other classes, and the held-out estimate of another task, no longer apply."""
        change, self.examples, self.test_set = follow_classes(
            self.classes, task.classes, self.examples, self.test_set, rename)
        if task.key != self.task.key:
            self._zero = None
            self.held_out = None
        if self.tuned is not None and list(self.tuned.classnames) != list(task.classes):
            change = replace(change, untuned=tuple(self.tuned.classnames))
            self.tuned = self.history = None
        self.task = task
        self.selected = None
        return change

    def prompt_config(self, **changes) -> PromptConfig:
        return self.task.config(**changes)

    def zero_shot(self, info: ModelInfo) -> PromptState:
        """The plain template classifier of the current task (cached while the task stays)."""
        if self._zero is None or self._zero[0] != self.task.key:
            self._zero = (self.task.key, compute.zero_shot(self.classes, self.descriptions,
                                                            self.prompt_config()))
        return self._zero[1]

    def require_task(self) -> None:
        if len(self.classes) < 2:
            raise UserError("need_task")

    # ---- examples -----------------------------------------------------------------------------
    def add_examples(self, files: Sequence[tuple[str, str]], label: str, window=None,
                     index: int | None = None, suffix: str = "") -> tuple[int, list[Problem]]:
        """Read each (path, name as uploaded) file; keep the good ones, report the others by
        their name. Only the decoded pictures are kept; the same picture twice is skipped.
        `suffix` marks the examples' names (e.g. as sample scans)."""
        self.require_task()
        if label not in self.classes:
            raise UserError("choose_class", classes=", ".join(self.classes))
        items = [(label, path, name) for path, name in files]
        return read_scans(
            self.examples, "examples", items, window, index,
            lambda lab, kept: f"{lab} #{sum(e.label == lab for e in kept) + 1}{suffix}")

    def remove_selected(self) -> Example | None:
        if self.selected is None or not 0 <= self.selected < len(self.examples):
            return None
        removed = self.examples.pop(self.selected)
        self.selected = None
        return removed

    def counts(self) -> dict[str, int]:
        return {c: sum(e.label == c for e in self.examples) for c in self.classes}

    # ---- features ---------------------------------------------------------------------------
    def feature_stream(self, info: ModelInfo, pictures: Sequence[Example],
                       vision_prompts: int, precision: str = "auto",
                       views: Sequence[str] = (EVAL_VIEW,), background: bool = False
                       ) -> Iterator[tuple]:
        """Features (V, N, D) of the examples' views through the session's cache: the ones
        missing are encoded in one compute call. Yields ("progress", done, total) for the
        encodings, then ("features", tensor) or ("stopped", None). `background`: encoding
        nobody waits to see, which gives way to interactive requests (`demo.traffic`)."""
        precision = _precision(info, precision)
        views = list(views)

        def key(e: Example, view: str) -> str:
            return feature_key(info, e.digest, view, vision_prompts, precision)

        missing = [e for e in pictures if any(key(e, v) not in self.features for v in views)]
        if missing:
            fresh = None
            for event in compute.encode([e.image for e in missing], [e.digest for e in missing],
                                        views, vision_prompts, precision, self.stop.path,
                                        background):
                if event[0] == "progress":
                    yield event
                else:
                    fresh = event[1]
            if fresh is None:
                yield "stopped", None
                return
            for v, view in enumerate(views):
                for e, feature in zip(missing, fresh[v]):
                    self.features.put(key(e, view), feature)
        found = [[self.features.get(key(e, v)) for e in pictures] for v in views]
        if any(f is None for row in found for f in row):  # evicted meanwhile: encode again
            yield from self.feature_stream(info, pictures, vision_prompts, precision, views)
            return
        if not pictures:
            yield "features", torch.zeros(len(views), 0, info.embed_dim)
            return
        yield "features", torch.stack([torch.stack(row) for row in found])

    def features_of(self, info: ModelInfo, pictures: Sequence[Example], vision_prompts: int,
                    precision: str = "auto", progress=None) -> torch.Tensor | None:
        """(N, D) evaluation-view features of examples (None if stopped); `progress(done,
        total)` counts the encodings."""
        out = None
        for event in self.feature_stream(info, pictures, vision_prompts, precision):
            if event[0] == "progress":
                if progress is not None:
                    progress(event[1], event[2])
            else:
                out = event[1]
        return None if out is None else out[0]

    def encode_examples(self, info: ModelInfo, precision: str = "auto") -> Iterator[tuple]:
        """Encode every example not yet cached, with and without the vision prompts (tuning
        uses the first, zero-shot, the baselines and the nearest examples the second). Yields
        ("progress", done, total) over both, then ("done", False if stopped)."""
        examples = list(self.examples)
        n = len(examples)
        for k, prompts in enumerate((self.prompt_config().n_vision_prompts, 0)):
            for event in self.feature_stream(info, examples, prompts, precision,
                                             background=True):
                if event[0] == "progress":
                    yield "progress", k * n + event[1], 2 * n
                elif event[0] == "stopped":
                    yield "done", False
                    return
        yield "done", True

    # ---- tuning -------------------------------------------------------------------------------
    def training_set(self) -> tuple[list[Example], list[int]]:
        """The examples as they are now (a snapshot) and their class numbers."""
        self.require_task()
        missing = [c for c, n in self.counts().items() if n == 0]
        if missing:
            raise UserError("need_examples", classes=", ".join(missing))
        index = {c: i for i, c in enumerate(self.classes)}
        return list(self.examples), [index[e.label] for e in self.examples]

    def tuning_task(self, info: ModelInfo, lambdas: tuple[float, float] | None = None
                    ) -> PromptState:
        """The untrained prompts of the task (with the given lambdas), reusing the frozen text
        targets of an earlier run on the same task."""
        cfg = self.prompt_config()
        if lambdas is not None:
            cfg = replace(cfg, lambda_l1=float(lambdas[0]), lambda_kl=float(lambdas[1]))
        targets = self._targets[1] if self._targets and self._targets[0] == self.task.key \
            else {}
        return PromptState.untrained(self.classes, self.descriptions, cfg, info.name,
                                     info.fingerprint, targets)

    def keep_tuned(self, state: PromptState, history: History) -> None:
        """The result of a tuning run becomes the session's prompts."""
        self.tuned, self.history = state, history
        self.held_out = None
        self._targets = (self.task.key, dict(state.targets))

    def baseline(self, info: ModelInfo, name: str = BASELINE, precision: str = "auto"
                 ) -> Classifier | None:
        """Baseline `name` fitted on the examples' features (milliseconds; kept while the
        examples and the task stay the same); None until every class has an example."""
        if len(self.classes) < 2 or any(n == 0 for n in self.counts().values()):
            return None
        key = (name, self.template, tuple(self.classes), tuple(e.digest for e in self.examples),
               tuple(e.label for e in self.examples))
        if key not in self._baselines:
            examples, labels = self.training_set()
            feats = self.features_of(info, examples, 0, precision)
            if feats is None:
                return None
            text = self.zero_shot(info).text
            self._baselines = {k: v for k, v in self._baselines.items() if k[1:] == key[1:]}
            self._baselines[key] = fit_baseline(name, feats, labels, text,
                                                logit_scale=info.logit_scale)
        return self._baselines[key]

    def estimate(self, info: ModelInfo, task: PromptState, cfg: TrainConfig,
                 precision: str = "auto") -> Iterator[tuple]:
        """The held-out estimate on the examples alone: stratified k-fold cross-validated
        accuracy and balanced accuracy, with its spread, for the tuned method (re-tuned per
        fold from the cached features, with the fast recipe when it was tuned with the paper's)
        and the baselines; warnings when it is unreliable. Yields ("fold", done, total), then
        ("done", the estimate, or None if stopped)."""
        examples, labels = self.training_set()
        counts = list(self.counts().values())
        if min(counts) < 2:
            self.held_out = {"methods": {}, "warnings": [("too_few_to_estimate", {})]}
            yield "done", self.held_out
            return
        fast = cfg if cfg.augment_views == 0 else TrainConfig.fast(seed=cfg.seed,
                                                                    precision=precision)
        prompted = self.features_of(info, examples, task.cfg.n_vision_prompts, fast.precision)
        plain = self.features_of(info, examples, 0, precision)
        if prompted is None or plain is None:
            yield "done", None
            return
        text = self.zero_shot(info).text
        methods, total = {}, 1 + len(COMPARED)
        out = None
        for event in compute.cross_validate_prompts(task, prompted, labels, FOLDS, cfg.seed, fast,
                                                    self.stop.path):
            if event[0] == "done":
                out = event[1]
        if out is None:
            yield "done", None
            return
        methods["tuned"] = out
        yield "fold", 1, total
        for k, name in enumerate(COMPARED):
            if self.stop.is_set():
                yield "done", None
                return
            methods[name] = cross_validate(name, plain, labels, FOLDS, cfg.seed,
                                           text_features=text, logit_scale=info.logit_scale)
            yield "fold", k + 2, total
        self.held_out = {"methods": methods, "warnings": estimate_warnings(counts, methods),
                         "refit_fast": fast is not cfg, "folds": methods["tuned"]["folds"]}
        yield "done", self.held_out

    # ---- evaluation ---------------------------------------------------------------------------
    def add_test_files(self, files: Sequence[tuple[str, str]], label: str, window=None,
                       index: int | None = None) -> tuple[int, list[Problem]]:
        """Labelled scans for evaluation, given with their class."""
        self.require_task()
        if label not in self.classes:
            raise UserError("choose_test_class", classes=", ".join(self.classes))
        return self._add_test([(label, p, name) for p, name in files], window, index)

    def add_test_zip(self, path: str, window=None, index: int | None = None
                     ) -> tuple[int, list[Problem]]:
        """Labelled scans for evaluation from a zip holding one folder per class; each is
        reported by its path inside the zip."""
        self.require_task()
        by_key = {" ".join(c.split()).casefold(): c for c in self.classes}
        with tempfile.TemporaryDirectory(prefix="biomed-dpt-eval-") as folder:
            items, problems = [], []
            for folder_name, member, inside in labelled_zip(path, folder, with_names=True):
                where = "`" + inside.replace("`", "'") + "`"
                label = by_key.get(" ".join(folder_name.split()).casefold())
                if label is None:
                    problems.append(Problem(where, UserError(
                        "zip_folder", folder=repr(folder_name or "(none)"))))
                else:
                    items.append((label, str(member), where))
            added, unreadable = self._add_test(items, window, index)
        return added, problems + unreadable

    def _add_test(self, items, window, index) -> tuple[int, list[Problem]]:
        return read_scans(self.test_set, "test scans", items, window, index,
                               lambda label, kept: f"{label} (test)")

    def overlap(self) -> int:
        """Test scans that are also training examples (the same picture)."""
        training = {e.digest for e in self.examples}
        return sum(e.digest in training for e in self.test_set)

    def test_counts(self) -> dict[str, int]:
        return {c: sum(e.label == c for e in self.test_set) for c in self.classes}

    def evaluate(self, info: ModelInfo, precision: str = "auto") -> dict[str, EvaluationResult]:
        """Zero-shot, the baselines (once every class has examples) and (when tuned) the tuned
        prompts on the test set, side by side; each test scan is encoded once per image tower."""
        self.require_task()
        if not self.test_set:
            raise UserError("need_tests")
        tests = list(self.test_set)
        index = {c: i for i, c in enumerate(self.classes)}
        labels = [index[e.label] for e in tests]
        plain = self.features_of(info, tests, 0, precision)
        if plain is None:
            raise UserError("stopped_evaluation")
        zero = self.zero_shot(info)
        results = {"zero-shot": result_from_probabilities(labels, zero.proba(plain).numpy(),
                                                          zero.classnames)}
        for name in COMPARED[1:]:
            clf = self.baseline(info, name, precision)
            if clf is not None:
                results[name] = result_from_probabilities(labels, clf.predict_proba(plain),
                                                          self.classes)
        if self.tuned is not None:
            prompted = self.features_of(info, tests, self.tuned.cfg.n_vision_prompts, precision)
            if prompted is None:
                raise UserError("stopped_evaluation")
            results["tuned"] = result_from_probabilities(
                labels, self.tuned.proba(prompted).numpy(), self.tuned.classnames)
        self.evaluated = (tests, results)
        return results

    # ---- from the evaluation back to the scans --------------------------------------------
    def cell(self, true: str, predicted: str) -> list[Example]:
        """The test scans of true class `true` that the last evaluation (tuned, else zero-shot)
        predicted as `predicted`."""
        if self.evaluated is None:
            raise UserError("evaluate_first")
        scans, results = self.evaluated
        result = results.get("tuned", results["zero-shot"])
        names = result.classnames
        return [e for e, t, p in zip(scans, result.labels, result.predictions)
                if names[t] == true and names[p] == predicted
                and any(e is kept for kept in self.test_set)]

    def explained(self, info: ModelInfo) -> PromptState:
        """What the maps explain: the tuned prompts, else zero-shot."""
        return self.tuned if self.tuned is not None else self.zero_shot(info)

    def cell_maps(self, info: ModelInfo, scans: Sequence[Example], predicted: str,
                  limit: int = 12) -> list[Image.Image]:
        """Each scan with the map of the class it was predicted as."""
        explained = self.explained(info)
        k = explained.classnames.index(predicted)
        shown = list(scans[:limit])
        heats = compute.maps(explained, [e.image for e in shown], [k] * len(shown))
        return [overlay(model_view(e.image, info.image_size), heat)
                for e, heat in zip(shown, heats)]

    def promote(self, example: Example) -> Example:
        """Move a test scan into the examples under its true class (it no longer counts as a
        test scan: a scan must not be both)."""
        self.test_set = [e for e in self.test_set if e is not example]
        n = sum(e.label == example.label for e in self.examples) + 1
        moved = Example(new_uid(), example.label, example.image, example.thumbnail,
                        f"{example.label} #{n}", example.digest)
        if any(e.digest == moved.digest for e in self.examples):
            raise UserError("duplicate_of", other=next(
                e.name for e in self.examples if e.digest == moved.digest))
        self.examples.append(moved)
        return moved

    # ---- prediction ---------------------------------------------------------------------------
    def predict(self, info: ModelInfo, path: str, window=None, index: int | None = None,
                precision: str = "auto") -> Prediction:
        """Classify one scan with the tuned prompts, zero-shot and the baseline, and find the
        examples it resembles most; the scan is encoded once per image tower, in one compute
        call that also makes the map of the class ranked first."""
        self.require_task()
        scan = load_scan(path)
        picture, _ = scan_picture(scan, window, index)
        picture = kept_picture(picture)
        digest = picture_digest(picture)
        precision = _precision(info, precision)
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
            suggested_modality=suggest_modality(scan),
            colour_mismatch=colour_mismatch(picture, self.modality),
            window=window_name(window if window_applies(scan, window) else None),
            frame=frame_used(scan, index), n_frames=scan.n_frames, digest=digest,
            plain=plain[0])
        prediction.maps[top] = heat
        self.prediction = prediction
        return prediction

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

    def nearest(self, info: ModelInfo, feature: torch.Tensor, precision: str = "auto",
                k: int = NEAREST) -> list[tuple[Example, float]]:
        """The `k` examples closest to an image feature (cosine, plain BiomedCLIP features):
        what the scan resembles, whatever any classifier makes of it."""
        if not self.examples:
            return []
        feats = self.features_of(info, self.examples, 0, precision)
        if feats is None:
            return []
        similarity = feats @ feature.float()
        order = torch.argsort(similarity, descending=True)[:k]
        return [(self.examples[int(i)], float(similarity[i])) for i in order]

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

    def close(self) -> None:
        """Forget everything (the browser tab was closed)."""
        self.examples.clear()
        self.test_set.clear()
        self.features = FeatureCache()
        self.tuned = self.prediction = self.history = self._zero = self.evaluated = None
        self.held_out = None
        self._baselines = {}
        self.cell_scans = []
        self.gone = True
        self.stop.set()
        self.stop.discard()

    def revive(self) -> None:
        """An expired session, empty, made usable again (its page is still open)."""
        self.__dict__.update(Session(owner=self.owner).__dict__)


def _precision(info: ModelInfo, precision: str) -> str:
    """'auto' -> the precision the model host's compute calls use."""
    return info.precision if precision == "auto" else precision


def estimate_warnings(counts: Sequence[int], methods: dict) -> list[tuple[str, dict]]:
    """Why a held-out estimate may mislead: (message key, values) pairs."""
    out = []
    if min(counts) < 4:
        out.append(("few_per_class", {"n": min(counts)}))
    if min(counts) and max(counts) > 3 * min(counts):
        out.append(("unbalanced", {"most": max(counts), "least": min(counts)}))
    tuned = methods.get("tuned")
    if tuned is not None:
        others = [m for name, m in methods.items() if name != "tuned"]
        best_other = max(others, key=lambda m: m["accuracy"]) if others else None
        if best_other is not None:
            gap = abs(tuned["accuracy"] - best_other["accuracy"])
            if max(tuned["std"], best_other["std"]) > gap:
                out.append(("spread_wide", {"spread": max(tuned["std"], best_other["std"]),
                                            "gap": gap}))
    return out


def _as_dict(names: Sequence[str], probs: torch.Tensor) -> dict[str, float]:
    return {name: float(p) for name, p in zip(names, probs.float().cpu())}
