"""Stateless tools: each call carries everything it needs (scans, classes, a support set or a
prompts file) and keeps nothing. Each is a documented API endpoint and, with `--mcp`, an MCP
tool for agents. They run the same session code as the page (every model use through
`demo.runtime.compute`, so they work on ZeroGPU too), on a fresh session per call; the files
they are given are deleted once read.

The classify tools read a volume (a NIfTI file, a multi-frame DICOM, a zip of one DICOM
series) at its middle slice, or, with `slices="all"`, slice by slice: the page's volume
prediction (`Session.predict_volume`), one entry per slice.

A problem with the input is raised as `gr.Error` with a message a person understands: a tool
has no status line, and an agent reads the error.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio.data_classes import FileData

from core.errors import StudioError
from core.methods import FITTED, ZERO_SHOT, names
from demo.runtime import storage
from demo.text.messages import UserError, core_text

DEFAULT_TEMPLATE = "a photo of a {}."
FEW_SHOT_METHODS = ("biomed-dpt",) + names(ZERO_SHOT, FITTED)  # the app's methods
MAX_WAIT_S = 600.0
SLICES = ("middle", "all")  # a volume's middle slice, or each slice (`Session.predict_volume`)
BASELINE_METHODS = names(FITTED)  # fitted on the support set's features, not prompts

Probabilities = dict[str, float]  # class -> probability
PerSlice = list[dict]  # [{"slice": i, "probabilities": {class: p}}], `VolumePrediction.rows`


def _path(file: Any) -> str:
    if isinstance(file, (str, Path)):
        return str(file)
    if isinstance(file, dict):
        return file.get("path") or ""
    return getattr(file, "path", "") or ""


def _scan_path(image: Any) -> str:
    path = _path(image)
    if not path:
        raise UserError("choose_scan")
    return path


def _classes(classes: str) -> list[list[str]]:
    """'a, b' or one class per line -> table rows."""
    parts = [p.strip() for chunk in (classes or "").splitlines() for p in chunk.split(",")]
    return [[p, ""] for p in parts if p]


def _each_slice(slices: str) -> bool:
    """Whether a classify tool answers slice by slice ("all") or for the middle slice."""
    if slices not in SLICES:
        raise UserError("unknown_slices", slices=repr(slices))
    return slices == "all"


def _answered(tool: Callable) -> Callable:
    """A tool's problems become `gr.Error` with the user-facing message; its input files are
    deleted once it has run."""
    @functools.wraps(tool)
    def call(self, *args, **kwargs):
        try:
            return tool(self, *args, **kwargs)
        except gr.Error:
            raise
        except UserError as exc:
            raise gr.Error(exc.text("en"), print_exception=False) from None
        except StudioError as exc:
            raise gr.Error(core_text("en", exc), print_exception=False) from None
        finally:
            for value in list(args) + list(kwargs.values()):
                path = _path(value) if isinstance(value, (dict, FileData)) else ""
                if path:
                    storage.delete_file(path)
    return call


class Tools:
    """The stateless tools over a `Studio`'s model."""

    names = ("classify_zero_shot", "classify_few_shot", "classify_with_prompts", "explain")

    def __init__(self, studio) -> None:
        self.studio = studio

    # ---- helpers ----------------------------------------------------------------------------
    def _session(self, template: str, classes: str):
        from demo.work.session import Session

        rows = _classes(classes)
        session = Session(owner="tools")
        session.set_task(self.studio.model_info(), template or DEFAULT_TEMPLATE, rows,
                         modality="other")
        return session

    def _prompted_session(self, prompts: Any):
        from demo.runtime import compute
        from demo.work.session import Session
        from demo.work.task import Task

        self.studio.model_info()
        state = compute.load_prompts(_path(prompts))
        session = Session(owner="tools", task=Task(modality="other"))
        session.adopt_prompts(state)
        return session

    def _predict(self, session, image: Any):
        return session.predict(self.studio.model_info(), _scan_path(image), None, None,
                               self.studio.precision)

    def _predict_volume(self, session, image: Any, scan=None):
        """Each slice classified by the session's tuned prompts, else zero-shot (every slice
        up to `MAX_SLICES`, then evenly spaced ones; a single picture is slice 0; `scan`: the
        file, read already)."""
        return session.predict_volume(self.studio.model_info(), _scan_path(image), None, None,
                                      self.studio.precision, scan=scan)

    def _baseline_rows(self, session, image: Any, method: str) -> PerSlice:
        """Each slice classified by a baseline fitted on the session's examples: the slices
        `predict_volume` classified, their plain features (cached by it) through the
        baseline, as `Session.scores` does for one scan."""
        from dataclasses import replace

        from core.imaging import load_scan
        from demo.work.prediction import slice_pictures

        scan = load_scan(_scan_path(image))  # read once, for both
        volume = self._predict_volume(session, image, scan)
        info = self.studio.model_info()
        # the pictures `predict_volume` made: their features are found by their digest
        slices = slice_pictures(scan, None, volume.slices)
        features = session.features_of(info, slices, 0, self.studio.precision)
        baseline = session.baseline(info, method)
        if baseline is None:  # a class whose scans could not be read
            raise UserError("need_examples", classes=", ".join(
                c for c, n in session.counts().items() if n == 0))
        probs = baseline.predict_proba(features)
        return replace(volume, classifier=method, probabilities=[
            {name: float(p) for name, p in zip(session.classes, row)} for row in probs]).rows()

    # ---- the tools --------------------------------------------------------------------------
    @_answered
    def classify_zero_shot(self, image: FileData, classes: str,
                           template: str = DEFAULT_TEMPLATE,
                           slices: str = "middle") -> Probabilities | PerSlice:
        """Classify a medical image (DICOM, PNG, JPEG, NIfTI) among given classes with the
        frozen BiomedCLIP, no examples needed: the probability of each class (with
        slices="all", a list of {"slice": number, "probabilities": {class: probability}}).

        Args:
            image: the scan to classify; a volume (NIfTI, multi-frame DICOM, a .zip of one
                DICOM series) is read at its middle slice unless `slices` is "all".
            classes: the class names, separated by commas or one per line (at least two).
            template: the sentence the model reads for each class, with {} where the class name
                goes, e.g. "a MR photo of a {} in the brain.".
            slices: "middle" (the middle slice of a volume) or "all" (each slice classified,
                numbered from 0; past 64 slices, every k-th; a single picture is slice 0).
        """
        each = _each_slice(slices)
        session = self._session(template, classes)
        if each:
            return self._predict_volume(session, image).rows()
        return self._predict(session, image).zero_shot

    @_answered
    def classify_few_shot(self, support_set: FileData, image: FileData,
                          method: str = "biomed-dpt", template: str = DEFAULT_TEMPLATE,
                          slices: str = "middle") -> Probabilities | PerSlice:
        """Classify a medical image after learning from a few labelled examples: the
        probability of each class (with slices="all", a list of {"slice": number,
        "probabilities": {class: probability}}). `biomed-dpt` tunes prompts on the examples
        (seconds on a GPU, up to a minute on a CPU); the others fit in milliseconds.

        Args:
            support_set: a .zip holding one folder per class (the folder's name is the class
                name) with a few scans each.
            image: the scan to classify; a volume (NIfTI, multi-frame DICOM, a .zip of one
                DICOM series) is read at its middle slice unless `slices` is "all".
            method: biomed-dpt, zero-shot, tip-adapter or linear-probe.
            template: the sentence the model reads for each class, with {} for the class name.
            slices: "middle" (the middle slice of a volume) or "all" (each slice classified,
                numbered from 0; past 64 slices, every k-th; a single picture is slice 0).
        """
        if method not in FEW_SHOT_METHODS:
            raise UserError("unknown_method", method=repr(method),
                            methods=", ".join(FEW_SHOT_METHODS))
        each = _each_slice(slices)
        session = self._support(support_set, template)
        if method == "biomed-dpt":
            self._tune(session)
        if each:  # tuned prompts, else zero-shot, unless a baseline is asked for
            if method in BASELINE_METHODS:
                return self._baseline_rows(session, image, method)
            return self._predict_volume(session, image).rows()
        prediction = self._predict(session, image)
        if method == "biomed-dpt":
            return prediction.tuned
        if method == "zero-shot":
            return prediction.zero_shot
        return session.scores(self.studio.model_info(), method)

    @_answered
    def classify_with_prompts(self, prompts: FileData, image: FileData,
                              slices: str = "middle") -> Probabilities | PerSlice:
        """Classify a medical image with prompts tuned earlier in this app (the .safetensors
        file its Tune step saves): the probability of each of their classes (with
        slices="all", a list of {"slice": number, "probabilities": {class: probability}}).

        Args:
            prompts: the prompts file.
            image: the scan to classify; a volume (NIfTI, multi-frame DICOM, a .zip of one
                DICOM series) is read at its middle slice unless `slices` is "all".
            slices: "middle" (the middle slice of a volume) or "all" (each slice classified,
                numbered from 0; past 64 slices, every k-th; a single picture is slice 0).
        """
        each = _each_slice(slices)
        session = self._prompted_session(prompts)
        if each:
            return self._predict_volume(session, image).rows()
        return self._predict(session, image).tuned

    @_answered
    def explain(self, image: FileData, classes: str = "", class_name: str = "",
                template: str = DEFAULT_TEMPLATE, prompts: FileData | None = None) -> FileData:
        """Where the model looked: the scan as the model saw it, with the relevance map of one
        class laid over it (red: most relevant), as a PNG.

        Args:
            image: the scan to explain.
            classes: the class names (commas or one per line); not needed with a prompts file.
            class_name: the class to explain; empty: the class ranked first.
            template: the sentence the model reads for each class, with {} for the class name.
            prompts: optional prompts file from this app's Tune step (then `classes` and
                `template` come from it).
        """
        session = (self._prompted_session(prompts) if prompts is not None and _path(prompts)
                   else self._session(template, classes))
        prediction = self._predict(session, image)
        scores = prediction.tuned or prediction.zero_shot
        name = class_name.strip() or max(scores, key=scores.get)
        picture = session.overlay_for(self.studio.model_info(), name, 0.45)
        folder = self.studio.files.downloads("tools")
        path = Path(tempfile.mkstemp(prefix="relevance-map-", suffix=".png", dir=folder)[1])
        picture.save(path, format="PNG")
        return FileData(path=str(path))

    # ---- the support set ----------------------------------------------------------------------
    def _support(self, support_set: Any, template: str):
        from core.imaging import labelled_zip

        path = _path(support_set)
        if not path:
            raise UserError("choose_support")
        with tempfile.TemporaryDirectory(prefix="biomed-dpt-support-") as folder:
            members = labelled_zip(path, folder)
            names = sorted({label for label, _ in members if label})
            if len(names) < 2:
                raise UserError("support_needs_classes")
            session = self._session(template, "\n".join(names))
            for name in names:
                files = [(str(copy), f"`{name}`") for label, copy in members if label == name]
                session.add_examples(files, name)
        return session

    def _tune(self, session) -> None:
        """The fast recipe on the support set, in its turn among tuning runs: the page's
        tuning run (`demo.work.tuning.tuning_run`)."""
        from demo.runtime.events import Finished
        from demo.runtime.runs import TUNE
        from demo.work.tuning import tuning_run

        info = self.studio.model_info()
        cfg = self.studio.training_config("fast", 100, 1, 1)
        line = self.studio.line
        ticket = line.join()
        try:
            if not line.wait_turn(ticket, MAX_WAIT_S):
                raise UserError("line_too_long")
            with session.runs.run(TUNE) as run:
                events = list(tuning_run(session, info, cfg, None, run))
            tuning = events[-1].value if isinstance(events[-1], Finished) else None
            if tuning is None:  # ended before its first step (the server is stopping)
                raise UserError("stopped_early_none")
            session.prompts.finished(tuning)
        finally:
            line.leave(ticket)


def register(studio, queues: dict[str, tuple[str, int]]) -> Tools:
    """The tools as API endpoints (inside a `gr.Blocks` being built); `queues`: the
    (concurrency id, limit) of "infer" and "tune" work (a few-shot call may tune, and then
    takes its turn among tuning runs, never holding up predictions)."""
    tools = Tools(studio)
    for name in tools.names:
        queue_id, limit = queues["tune" if name == "classify_few_shot" else "infer"]
        gr.api(getattr(tools, name), api_name=name, concurrency_id=queue_id,
               concurrency_limit=limit)
    return tools
