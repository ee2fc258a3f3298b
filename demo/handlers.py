"""Event handlers: plain functions from widget values (and the session) to widget values.

The backbone is loaded once and shared read-only; each browser session's work lives in its own
`Session` (a `gr.State`). A problem the user can fix is shown where they are looking: in the
step's status line and as a toast, in their language; the other outputs are left as they were
(no red "Error" badges, nothing lost) and no traceback is logged. Anything unexpected is logged
and answered with a short apology.

The deep-learning stack (torch, open_clip, ...) is imported by the model loader and, after it,
by the handlers, never by both at once: every handler that needs it waits until the model has
loaded (or failed to), so no import can deadlock and no early request can break the load.
"""
from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from contextlib import closing, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import pandas as pd

from core import presets
from core.errors import StudioError
from core.imaging import WINDOW_PRESETS
from demo import gpu, storage
from demo.host import DEMO_SPEC, WAIT_FOR_MODEL_S, ModelHost, ModelInfo
from demo.messages import (TASK_TITLES_KO, UserError, core_text, language, modality_name,
                           text, window_label)
from demo.traffic import TRAFFIC
from demo.tuning_line import TuningLine

log = logging.getLogger(__name__)

AUTO_WINDOW = "auto"
MANUAL_WINDOW = "manual"
LEGACY_AUTO = "file's own / automatic"
COLOUR_MAPS = ("jet", "cividis")
LINE_POLL_S = 1.0
IDLE_S = 30 * 60.0  # a session unused this long is cleared (the page says 30 minutes)
IDLE_SWEEP_S = 60.0
KEEP_REPORTS = 3


def window_choices(lang: str, modality: str | None) -> list[tuple[str, str]]:
    """The window control's choices for a modality: CT presets on CT only."""
    choices = [(window_label(lang, AUTO_WINDOW), AUTO_WINDOW),
               (window_label(lang, MANUAL_WINDOW), MANUAL_WINDOW)]
    if modality == "CT":
        choices += [(window_label(lang, name), name) for name in WINDOW_PRESETS]
    return choices


def window_value(choice: str | None, level: float | None = None, width: float | None = None):
    """Widget values -> what `to_rgb` takes: None (the file's own / automatic), a preset name,
    or (level, width)."""
    if not choice or choice in (AUTO_WINDOW, LEGACY_AUTO):
        return None
    if choice == MANUAL_WINDOW:
        if level is None or width is None or not float(width) > 0:
            raise UserError("manual_needs_width")
        return float(level), float(width)
    return choice


def slice_value(index: float | int | None) -> int | None:
    return None if index is None or int(index) < 0 else int(index)


# ---- how replies are made -----------------------------------------------------------------
def _request_of(fn: Callable, args, kwargs):
    try:
        return inspect.signature(fn).bind_partial(*args, **kwargs).arguments.get("request")
    except TypeError:
        return None


def _problem_reply(lang: str, exc: BaseException, outputs: int, status: int | None):
    message = exc.text(lang) if isinstance(exc, UserError) else core_text(lang, str(exc))
    gr.Warning(message, title=text(lang, "toast_problem"))
    reply = [gr.skip()] * outputs
    if status is not None:
        reply[status] = "⚠️ " + message
    return reply[0] if outputs == 1 else tuple(reply)


def answers(outputs: int, status: int | None = None, interactive: bool = False):
    """Decorate a handler with `outputs` outputs, `status` the index of its status line: a
    `StudioError` becomes a message there and a toast (the other outputs unchanged), anything
    else is logged once and answered with an apology. An `interactive` handler (one whose
    answer a user waits to see) has the right of way over background work (`demo.traffic`)."""
    def wrap(handler: Callable) -> Callable:
        def problem(args, kwargs, exc):
            lang = language(_request_of(handler, args, kwargs))
            if isinstance(exc, gpu.GpuTaskAborted):
                exc = UserError("gpu_aborted")
            elif isinstance(exc, gr.Error):  # ZeroGPU's own refusals say what happened
                exc = StudioError(getattr(exc, "message", None) or str(exc))
            elif not isinstance(exc, StudioError):
                log.error("unexpected error in %s", handler.__name__, exc_info=exc)
                exc = UserError("unexpected")
            return _problem_reply(lang, exc, outputs, status)

        if inspect.isgeneratorfunction(handler):
            assert not interactive, "a streamed handler is background work"

            @functools.wraps(handler)
            def stream(*args, **kwargs):
                try:
                    yield from handler(*args, **kwargs)
                except GeneratorExit:
                    raise
                except Exception as exc:  # noqa: BLE001 - answered, never shown as a trace
                    yield problem(args, kwargs, exc)
            return stream

        @functools.wraps(handler)
        def call(*args, **kwargs):
            try:
                with TRAFFIC.interactive() if interactive else nullcontext():
                    return handler(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                return problem(args, kwargs, exc)
        call.interactive = interactive
        return call
    return wrap


def _uploads(files) -> list[tuple[str, str]]:
    """(path, name as uploaded) of each file Gradio gives (paths, dicts or objects)."""
    out = []
    for f in files or []:
        path = _path(f)
        if path:
            out.append((path, _shown_name(f, path)))
    return out


def _path(file) -> str | None:
    if file is None:
        return None
    if isinstance(file, (str, Path)):
        return str(file)
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return getattr(file, "path", None) or getattr(file, "name", None)


def _shown_name(file, path: str) -> str:
    name = (file.get("orig_name") if isinstance(file, dict) else None) or Path(path).name
    return "`" + name.replace("`", "'") + "`"


class Studio:
    """The app's handlers around one shared model (`ModelHost`). The handlers never touch the
    model: they hand plain data to `demo.compute` through the sessions."""

    def __init__(self, backbone=None, problem: str | None = None,
                 time_budget_s: float | None = None, precision: str = "auto") -> None:
        self.host = ModelHost(backbone, problem, precision)
        self.time_budget_s = time_budget_s
        self.precision = precision
        self.files = storage.SessionFiles()
        self.sessions: dict[str, Any] = {}
        self.line = TuningLine()
        self.idle_s = IDLE_S

    def start_sweeping(self) -> None:
        """Clear idle sessions in the background (the server does; tests call `expire_idle`)."""
        threading.Thread(target=self._sweep_idle, daemon=True, name="idle-sessions").start()

    # ---- the model ------------------------------------------------------------------------
    @classmethod
    def start(cls, spec: str, device: str | None = None, background: bool = False,
              **options) -> Studio:
        """Load the backbone (in a background thread if asked, so the page can be served
        meanwhile); if it cannot be loaded the app still runs, says why, and offers a retry and
        the demo model."""
        studio = cls(None, None, **options)
        studio.host.device = device
        studio.host.load(spec, background)
        studio.start_sweeping()
        return studio

    @property
    def bb(self):
        """The loaded backbone (scripts and tests); handlers use `model_info`."""
        return self.host.bb

    @property
    def ready(self) -> bool:
        return self.host.ready

    @property
    def demo_model(self) -> bool:
        return self.host.demo_model

    def model_info(self, wait_s: float = WAIT_FOR_MODEL_S) -> ModelInfo:
        return self.host.wait(wait_s)

    def status(self, lang: str = "en") -> str:
        return self.host.status(lang)

    def _model_view(self, request):
        lang = language(request)
        failed = self.ready and self.bb is None
        return (self.status(lang), gr.update(active=not self.ready), gr.update(visible=failed))

    def status_until_ready(self, request: gr.Request = None):
        """For a timer: the status, the timer (off once loaded) and the fix-it buttons."""
        return self._model_view(request)

    def retry_load(self, request: gr.Request = None):
        if self.ready and self.bb is None and self.host.spec:
            self.host.load(self.host.spec)
        return self._model_view(request)

    def use_demo_model(self, request: gr.Request = None):
        if self.ready and self.bb is None:
            self.host.load(DEMO_SPEC)
        return self._model_view(request)

    def on_load(self, request: gr.Request = None):
        """The page opened: status, fix-it buttons, and the server-made choices in the
        browser's language."""
        lang = language(request)
        status, poll, actions = self._model_view(request)
        tasks = [(TASK_TITLES_KO.get(t.id, t.title) if lang == "ko" else t.title, t.id)
                 for t in presets.load_tasks()]
        modalities = [(modality_name(lang, m.id), m.id) for m in presets.load_modalities()]
        curve = gr.skip()
        if self.ready:  # while the loader imports the stack, no request imports any of it
            from demo.report import training_curve

            curve = training_curve([], 1, lang)
        windows = [gr.update(choices=window_choices(lang, "MRI"), value=AUTO_WINDOW)
                   for _ in range(3)]
        samples = [(s.title_ko if lang == "ko" else s.title, s.id) for s in presets.load_samples()]
        return (status, poll, actions, gr.update(choices=tasks), gr.update(choices=modalities),
                *windows, curve, gr.update(choices=samples, value=samples[0][1] if samples else None),
                self.legend("jet", request))

    # ---- sessions and their files ------------------------------------------------------------
    def _session(self, session, request=None):
        """The browser session's Session, made at its first event (after the model load, so
        the stack it imports is never imported by two threads at once)."""
        self.model_info()
        from demo.session import Session

        if session is None:
            session = Session()
        owner = getattr(request, "session_hash", None) or getattr(session, "owner", None)
        if not owner:
            owner = f"local-{id(session):x}"
        session.owner = owner
        if session.gone and session.expired:
            session.revive()
            self.sessions[owner] = session
            raise UserError("session_expired", minutes=round(self.idle_s / 60))
        session.last_used = time.monotonic()
        self.sessions[owner] = session
        return session

    def expire_idle(self, now: float | None = None) -> int:
        """Clear the sessions unused for `idle_s` (their work and files); returns how many.
        Their pages, when still open, are told at their next step."""
        now = time.monotonic() if now is None else now
        idle = [(owner, s) for owner, s in list(self.sessions.items())
                if now - s.last_used > self.idle_s]
        for owner, session in idle:
            session.close()
            session.expired = True
            self.sessions.pop(owner, None)
            self.files.close(owner)
        if idle:
            log.info("cleared %d idle sessions", len(idle))
        return len(idle)

    def _sweep_idle(self) -> None:
        while True:
            time.sleep(IDLE_SWEEP_S)
            try:
                self.expire_idle()
            except Exception:  # noqa: BLE001 - the sweeper must keep going
                log.exception("clearing idle sessions failed")

    def _keep(self, session, paths) -> None:
        self.files.remember(session.owner, paths)

    def _picture(self, owner: str | None, picture, name: str) -> str | None:
        """A picture for the page, written into the session's folder (so it is deleted with
        the session; Gradio would otherwise keep its own copy in its cache)."""
        if picture is None:
            return None
        from demo.scans import picture_digest

        folder = self.files.downloads(owner or "anonymous")
        digest = picture_digest(picture)[:16]
        path = folder / f"{name}-{digest}.png"
        if not path.exists():
            picture.save(path, format="PNG")
        return str(path)

    def remember_upload(self, files, request: gr.Request = None) -> None:
        """An upload arrived (before any button is pressed): it is this session's, and is
        deleted with it."""
        owner = getattr(request, "session_hash", None)
        if owner:
            items = files if isinstance(files, list) else [files]
            self.files.remember(owner, [p for p in map(_path, items) if p])

    def close_session(self, request: gr.Request = None) -> None:
        """The page was closed: delete the session's files and forget its work."""
        owner = getattr(request, "session_hash", None)
        if not owner:
            return
        session = self.sessions.pop(owner, None)
        if session is not None:
            session.close()
        self.files.close(owner)

    def forget(self, session) -> None:
        """gr.State's delete callback (an hour after the page closed, or at expiry)."""
        if session is None:
            return
        owner = getattr(session, "owner", None)
        session.close()
        if owner:
            self.sessions.pop(owner, None)
            self.files.close(owner)

    # ---- step 1: task ---------------------------------------------------------------------
    def modality_changed(self, modality: str):
        organs = presets.modality(modality).organs
        organ = organs[0] if organs else None
        return gr.update(choices=list(organs), value=organ), presets.template_for(modality, organ)

    def organ_changed(self, modality: str, organ: str | None):
        return presets.template_for(modality, organ)

    def preset_chosen(self, task_id: str | None, request: gr.Request = None):
        if not task_id:
            return (gr.skip(),) * 7
        lang = language(request)
        task = presets.task(task_id)
        rows = [[c, "\n".join(task.descriptions.get(c, ()))] for c in task.classes]
        organs = list(presets.modality(task.modality).organs)
        if task.organ and task.organ not in organs:
            organs.append(task.organ)
        from demo.tasks_ko import TASK_DESCRIPTIONS_KO

        if lang == "ko":
            about = text(lang, "task_chosen", title=TASK_TITLES_KO.get(task.id, task.title),
                         description=TASK_DESCRIPTIONS_KO.get(task.id, task.description))
        else:
            about = text(lang, "task_chosen", title=task.title, description=task.description)
        return (task.modality, gr.update(choices=organs, value=task.organ), task.template,
                rows, task.lambda_l1, task.lambda_kl, about)

    @answers(9, status=1, interactive=True)
    def set_task(self, session: Any, modality: str, organ: str | None, template: str,
                 rows, lambda_l1: float, lambda_kl: float, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        change = session.set_task(self.model_info(), template or "", _rows(rows), modality, organ,
                                  (lambda_l1, lambda_kl))
        classes = session.classes
        lines = [text(lang, "task_set", n=len(classes), classes=", ".join(classes))]
        lines += [text(lang, "renamed", old=a, new=b, n=n) for a, b, n in change.renamed]
        lines += [text(lang, "class_removed", name=c, n=n) for c, n in change.removed if n]
        windows = self._windows(lang, session.modality)
        return (session, "\n\n".join(lines), *_class_choices(classes),
                *self._examples_view(session, lang), *windows)

    @answers(16, status=1)
    def use_samples(self, session: Any, sample_id: str | None, request: gr.Request = None):
        """A ready task with its licensed sample scans added as examples: the whole workflow
        in a minute, no files needed."""
        lang = language(request)
        samples = presets.sample_set(sample_id or presets.load_samples()[0].id)
        rows = [[c, "\n".join(samples.descriptions.get(c, ()))] for c in samples.classes]
        out = self.set_task(session, samples.modality, samples.organ, samples.template, rows,
                            samples.lambda_l1, samples.lambda_kl, request)
        session = out[0]
        if not hasattr(session, "examples"):  # the task was refused: its message is in out[1]
            return (*out, *(gr.skip(),) * 7)
        problems = []
        for label, paths in samples.files.items():
            _, bad = session.add_examples([(str(p), p.name) for p in paths], label,
                                          suffix=text(lang, "sample_suffix"))
            problems += bad
        counts = ", ".join(f"{c} {n}" for c, n in session.counts().items())
        message = (out[1] + "\n\n" + text(lang, "samples_added", counts=counts)
                   + _problems_text(lang, problems, "not_added"))
        organs = list(presets.modality(samples.modality).organs)
        return (session, message, *out[2:4], *self._examples_view(session, lang), *out[6:9],
                samples.modality, gr.update(choices=organs, value=samples.organ),
                samples.template, rows, samples.lambda_l1, samples.lambda_kl, message)

    def legend(self, cmap: str = "jet", request: gr.Request = None):
        """The map's colour legend in the user's language."""
        from core.overlay import colorbar

        lang = language(request)
        return colorbar(cmap if cmap in COLOUR_MAPS else "jet", width=360,
                        labels=(text(lang, "legend_low"), text(lang, "legend_high")))

    def _windows(self, lang: str, modality: str | None):
        # one update per output: Gradio consumes an update dict when it applies it
        return tuple(gr.update(choices=window_choices(lang, modality), value=AUTO_WINDOW)
                     for _ in range(3))

    # ---- step 2: examples -----------------------------------------------------------------
    def _examples_view(self, session, lang: str):
        gallery = [(self._picture(session.owner, e.thumbnail, f"thumb-{e.uid}"), e.name)
                   for e in session.examples]
        counts = (" · ".join(f"**{c}**: {n}" for c, n in session.counts().items())
                  or text(lang, "counts_none"))
        return gallery, counts

    @answers(5, status=2)
    def add_examples(self, session: Any, files, label: str, window: str, level=None,
                     width=None, index=-1, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        uploads = _uploads(files)
        self._keep(session, [p for p, _ in uploads])
        if not uploads:
            raise UserError("choose_files")
        added, problems = session.add_examples(uploads, label, window_value(window, level, width),
                                               slice_value(index))
        key = "added_example" if added == 1 else "added_examples"
        message = text(lang, key, n=added, label=label) + _problems_text(lang, problems,
                                                                         "not_added")
        return (session, None, message, *self._examples_view(session, lang))

    @answers(2, status=1)
    def prepare_features(self, session: Any, request: gr.Request = None):
        """After examples arrive: encode those not yet encoded (with its own progress line in
        the step), so that tuning costs only the text steps. Closing the page stops it; a tune
        started meanwhile encodes whatever is still missing."""
        lang = language(request)
        if session is None or not getattr(session, "examples", None):
            yield session, gr.skip()
            return
        info = self.model_info()
        ready = False
        for event in session.encode_examples(info, self.precision):
            if event[0] == "progress":
                done, total = event[1], event[2]
                if done < total:
                    yield session, text(lang, "encoding", done=done, total=total)
            else:
                ready = event[1]
        yield session, text(lang, "features_ready" if ready else "features_stopped")

    @answers(3, interactive=True)
    def preview(self, files, window: str, level=None, width=None, index=-1,
                request: gr.Request = None):
        """The scan viewer: the first chosen file as the model will see it, with its size and
        frames. Reads the file; needs no model, but waits for its load (the imports)."""
        self.model_info()
        from core.imaging import load_scan
        from core.overlay import model_view
        from demo.scans import frame_used, scan_picture

        lang = language(request)
        uploads = _uploads(files if isinstance(files, list) else [files] if files else [])
        hidden = gr.update(visible=False)
        if not uploads:
            return None, "", hidden
        path, name = uploads[0]
        try:
            scan = load_scan(path)
            picture, note = scan_picture(scan, window_value(window, level, width),
                                         slice_value(index))
        except StudioError as exc:
            detail = exc.text(lang) if isinstance(exc, UserError) else core_text(lang, str(exc))
            return None, name + ": " + text(lang, "preview_failed", detail=detail), hidden
        frames, slider = "", hidden
        if scan.n_frames > 1:
            shown = frame_used(scan, slice_value(index))
            shown = scan.n_frames // 2 if shown is None else shown
            frames = text(lang, "preview_frames", label=scan.frame_label, index=shown,
                          last=scan.n_frames - 1)
            slider = gr.update(visible=True, minimum=0, maximum=scan.n_frames - 1, value=shown)
        kind = scan.modality or scan.source_format
        about = name + ": " + text(lang, "preview", kind=kind, rows=scan.rows,
                                   columns=scan.columns, frames=frames)
        if note is not None:
            about += " " + note.text(lang)
        owner = getattr(request, "session_hash", None)
        if owner:
            self.files.remember(owner, [path])
        return self._picture(owner, model_view(picture), "preview"), about, slider

    def class_cards(self, session) -> list[dict]:
        """What each class's card shows: name, descriptions, count, its thumbnails."""
        if session is None or not getattr(session, "classes", None):
            return []
        return [{"name": c, "descriptions": list(session.descriptions.get(c, [])),
                 "thumbnails": [(self._picture(session.owner, e.thumbnail, f"thumb-{e.uid}"),
                                 e.name) for e in session.examples if e.label == c]}
                for c in session.classes]

    def select_in_class(self, session: Any, label: str, index: int, request=None):
        """A click on the `index`-th thumbnail of a class's card selects that example."""
        lang = language(request)
        mine = [i for i, e in enumerate(getattr(session, "examples", [])) if e.label == label]
        if not 0 <= index < len(mine):
            return session, text(lang, "select_first")
        session.selected = mine[index]
        return session, text(lang, "selected", name=session.examples[mine[index]].name)

    @answers(4, status=1)
    def remove_selected(self, session: Any, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        removed = session.remove_selected()
        message = (text(lang, "removed", name=removed.name) if removed
                   else text(lang, "select_first"))
        return (session, message, *self._examples_view(session, lang))

    # ---- step 3: tune ---------------------------------------------------------------------
    def training_config(self, recipe: str, steps, epochs, seed):
        from core.train import TrainConfig

        common = dict(seed=int(seed), time_budget_s=self.time_budget_s)
        if recipe == "paper":
            return TrainConfig.paper(epochs=int(epochs), **common)
        return TrainConfig.fast(steps=int(steps), precision=self.precision, **common)

    @answers(5, status=1)
    def tune(self, session: Any, recipe: str, lambda_l1: float, lambda_kl: float, steps,
             epochs, seed, request: gr.Request = None, progress=gr.Progress()):
        lang = language(request)
        session = self._session(session, request)
        info = self.model_info()
        examples, labels = session.training_set()
        cfg = self.training_config(recipe, steps, epochs, seed)
        session.stop.clear()
        ticket = self.line.join()
        try:
            while not self.line.wait_turn(ticket, LINE_POLL_S):
                if session.stop.is_set():
                    key = "stopped_early_kept" if session.tuned is not None else "stopped_early_none"
                    yield session, text(lang, key), gr.skip(), gr.skip(), gr.skip()
                    return
                place = self.line.position(ticket)
                yield (session, text(lang, "line_wait", position=place,
                                     seconds=self.line.estimate_s(place)),
                       gr.skip(), gr.skip(), gr.skip())
            yield from self._tune_now(session, info, examples, labels, cfg,
                                      (lambda_l1, lambda_kl), lang, progress)
        except GeneratorExit:  # the page went away: the run stops, wherever it runs
            session.stop.set()
            raise
        finally:
            self.line.leave(ticket)

    def _tune_now(self, session, info, examples, labels, cfg, lambdas, lang, progress):
        """Encode what is missing of the views the recipe needs, then tune in one compute call
        (streamed: the curve grows as it runs), then the held-out estimate."""
        from core import train
        from demo import compute
        from demo.report import training_curve

        task = session.tuning_task(info, lambdas)
        started = time.perf_counter()
        features = None
        for event in session.feature_stream(info, examples, task.cfg.n_vision_prompts,
                                            cfg.precision, cfg.view_names, background=True):
            if event[0] == "progress":
                step = train.Progress("encode", event[1], event[2], time.perf_counter() - started)
                yield session, _progress_text(step, progress, lang), gr.skip(), gr.skip(), gr.skip()
            else:
                features = event[1]
        encode_s = time.perf_counter() - started
        if features is not None and len(cfg.view_names) == 1:
            features = features[0]
        history, tuned, points, total = None, None, [], 1
        if features is not None and not session.stop.is_set():
            stream = compute.tune(task, features, labels, cfg, session.stop.path)
            with closing(stream):
                for event in stream:
                    if event[0] == "done":
                        _, history, tuned = event
                        continue
                    step = event[1]
                    message = _progress_text(step, progress, lang)
                    total = step.total
                    points.append({"step": step.done, "loss": step.loss, "accuracy": step.accuracy})
                    if step.done % 5 and step.done != step.total:
                        continue  # redraw every few steps: the plot, not the model, is the cost
                    yield (session, message, training_curve(points, total, lang), gr.skip(),
                           gr.skip())
        if history is None or not history.steps:  # stopped before any step: keep what was
            key = "stopped_early_kept" if session.tuned is not None else "stopped_early_none"
            yield session, text(lang, key), gr.skip(), gr.skip(), gr.skip()
            return
        history.encode_s = encode_s
        history.total_s += encode_s
        session.keep_tuned(tuned, history)
        saved = self._prompts_file(session, tuned)
        summary = _summary(history, tuned, lang)
        if history.stopped == "converged":  # the curve's axis ends where tuning did
            total = len(history.steps)
        curve = training_curve(points, total, lang)
        yield session, summary, curve, gr.update(choices=tuned.classnames), saved
        if session.stop.is_set():
            return
        yield from self._estimate(session, info, task, cfg, summary, lang,
                                  (curve, gr.update(choices=tuned.classnames), saved))

    def _estimate(self, session, info, task, cfg, summary: str, lang: str, results: tuple):
        """The held-out estimate after tuning, streamed into the status line below the
        summary; Stop ends it. The last update repeats the tuning's `results` (curve, classes,
        prompts file): an API client receives the last update only."""
        from demo.session import COMPARED, FOLDS

        n = len(session.examples)
        yield (session, summary + "\n\n" + text(lang, "estimating", folds=FOLDS, done=0,
                                                 total=1 + len(COMPARED)),
               gr.skip(), gr.skip(), gr.skip())
        held_out = None
        for event in session.estimate(info, task, cfg, self.precision):
            if event[0] == "done":
                held_out = event[1]
                continue
            yield (session, summary + "\n\n" + text(lang, "estimating", folds=FOLDS,
                                                     done=event[1], total=event[2]),
                   gr.skip(), gr.skip(), gr.skip())
        yield (session, summary + "\n\n" + estimate_text(lang, held_out, n), *results)

    def _prompts_file(self, session, dp) -> str:
        """The tuned prompts as the file the download button offers (made with the result it
        belongs to, so one click downloads these prompts)."""
        from demo.report import _slug

        info = {"recipe": session.history.config.recipe if session.history else None,
                "examples": len(session.examples), "modality": session.modality,
                "organ": session.organ}
        task = "-".join(filter(None, [session.modality, session.organ]))
        when = datetime.now().strftime("%Y-%m-%d_%H%M%S")
        path = (self.files.downloads(session.owner)
                / f"biomed-dpt-prompts_{_slug(task)}_{when}.safetensors")
        dp.save(path, info=info)
        return str(path)

    def stop(self, session: Any, request: gr.Request = None):
        if session is not None:
            session.stop.set()
        return text(language(request), "stopping")

    # ---- step 4: predict ------------------------------------------------------------------
    @answers(9, status=6, interactive=True)
    def predict(self, session: Any, file, window: str, level=None, width=None, index=-1,
                alpha: float = 0.45, cmap: str = "jet", request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        uploads = _uploads([file] if file else [])
        self._keep(session, [p for p, _ in uploads])
        if not uploads:
            raise UserError("choose_scan")
        info = self.model_info()
        p = session.predict(info, uploads[0][0], window_value(window, level, width),
                            slice_value(index), self.precision)
        top = p.top
        notes = [text(lang, "predicted", top=top, p=(p.tuned or p.zero_shot)[top])]
        if session.tuned is None:
            notes.append(text(lang, "zero_shot_only"))
        if (p.suggested_modality and session.modality != "other"
                and p.suggested_modality != session.modality):
            notes.append(text(lang, "looks_like", found=modality_name(lang, p.suggested_modality),
                              task=modality_name(lang, session.modality)))
        elif p.colour_mismatch:
            notes.append(text(lang, p.colour_mismatch, task=modality_name(lang, session.modality)))
        cmap = cmap if cmap in COLOUR_MAPS else "jet"
        heat = session.overlay_for(info, top, alpha, cmap)
        nearest = [(self._picture(session.owner, e.thumbnail, f"thumb-{e.uid}"),
                    text(lang, "nearest_caption", name=e.name, similarity=sim))
                   for e, sim in p.nearest]
        return (session, p.tuned or None, p.zero_shot,
                self._picture(session.owner, p.view, "scan"),
                self._picture(session.owner, heat, "map"),
                gr.update(choices=p.classnames, value=top), " ".join(notes),
                p.baseline or None, nearest)

    @answers(2, interactive=True)
    def change_map(self, session: Any, class_name: str, alpha: float, cmap: str = "jet",
                   request: gr.Request = None):
        if session is None or session.prediction is None or not class_name:
            return session, gr.skip()
        info = self.model_info()
        cmap = cmap if cmap in COLOUR_MAPS else "jet"
        heat = session.overlay_for(info, class_name, alpha, cmap)
        return session, self._picture(session.owner, heat, "map")

    @staticmethod
    def report_pending():
        """The report button while the report of a new prediction or map is being made: no
        click can download the previous scan's report."""
        return gr.update(value=None, interactive=False)

    @staticmethod
    def report_ready():
        return gr.update(interactive=True)

    @answers(1)
    def report(self, session: Any, class_name: str, alpha: float, cmap: str = "jet",
               request: gr.Request = None):
        """The report of the prediction and map on screen, made after they are shown (its
        figure is the slowest part of a prediction, and nobody waits to see it)."""
        if session is None or session.prediction is None:
            return gr.skip()
        classes = session.prediction.classnames
        class_name = class_name if class_name in classes else session.prediction.top
        cmap = cmap if cmap in COLOUR_MAPS else "jet"
        return self._report(session, self.model_info(), class_name, alpha, cmap,
                            language(request))

    def _report(self, session, info, class_name: str, alpha: float, cmap: str, lang: str) -> str:
        from demo.report import ReportContext, write_report

        ctx = ReportContext(model=info.name, demo_model=self.demo_model, modality=session.modality,
                            organ=session.organ, classes=list(session.classes),
                            template=session.template, explained=class_name,
                            alpha=float(alpha), cmap=cmap, lang=lang)
        folder = self.files.downloads(session.owner)
        path = write_report(folder, session.prediction, session.map_for(info, class_name), ctx)
        # keep the last few (a click may be fetching the previous one), delete older ones
        older = sorted(folder.glob("biomed-dpt-report_*.png"), key=lambda p: p.stat().st_mtime)
        for stale in older[:-KEEP_REPORTS]:
            storage.delete_file(stale)
        return str(path)

    # ---- step 5: evaluate -----------------------------------------------------------------
    @answers(5, status=3)
    def add_test_scans(self, session: Any, zipped, files, label: str, window: str, level=None,
                       width=None, index=-1, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        zip_path = _path(zipped)
        uploads = _uploads(files)
        self._keep(session, [p for p, _ in uploads] + ([zip_path] if zip_path else []))
        if zip_path is None and not uploads:
            raise UserError("choose_test")
        spec, where = window_value(window, level, width), slice_value(index)
        added, problems = 0, []
        if zip_path is not None:
            n, bad = session.add_test_zip(zip_path, spec, where)
            added, problems = added + n, problems + bad
        if uploads:
            n, bad = session.add_test_files(uploads, label, spec, where)
            added, problems = added + n, problems + bad
        key = "added_test" if added == 1 else "added_tests"
        message = text(lang, key, n=added) + _problems_text(lang, problems, "tests_not_added")
        counts = " · ".join(f"**{c}**: {n}" for c, n in session.test_counts().items())
        return session, None, None, message, counts

    @answers(6, status=1, interactive=True)
    def evaluate(self, session: Any, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        from core.evaluate import confusion_figure, summary_rows

        results = session.evaluate(self.model_info(), self.precision)
        names = {"zero-shot": text(lang, "col_zero"), "tuned": text(lang, "col_tuned"),
                 "tip-adapter": text(lang, "col_tip-adapter"),
                 "linear-probe": text(lang, "col_linear-probe")}
        labels = {"accuracy": text(lang, "m_accuracy"),
                  "balanced_accuracy": text(lang, "m_balanced"),
                  "macro_f1": text(lang, "m_macro_f1"), "precision": text(lang, "m_precision"),
                  "recall": text(lang, "m_recall"), "f1": text(lang, "m_f1")}
        headers, rows = summary_rows(results, labels)
        headers = [text(lang, "col_metric")] + [names[h] for h in headers[1:]]
        axes = (text(lang, "predicted_class"), text(lang, "true_class"))
        figures = {name: confusion_figure(
            result, title=text(lang, "confusion_title", which=names[name],
                               accuracy=result.accuracy), axis_labels=axes,
            colour_label=text(lang, "fraction_true"))
            for name, result in results.items() if name in ("zero-shot", "tuned")}
        best = results.get("tuned", results["zero-shot"])
        which = text(lang, "which_tuned" if "tuned" in results else "which_zero")
        message = text(lang, "evaluated", n=best.n, accuracy=best.accuracy,
                       balanced=best.balanced_accuracy, which=which)
        overlap = session.overlap()
        if overlap:
            message += "\n\n" + text(lang, "overlap", n=overlap)
        table = gr.update(value=pd.DataFrame(rows, columns=headers), visible=True)
        return (session, message, table, figures["zero-shot"], figures.get("tuned"),
                self._cells(best, lang))

    def _cells(self, result, lang: str):
        """The confusion matrix's non-empty cells as choices, the mistakes first."""
        names = result.classnames
        cells = [(t, p, n) for t, row in enumerate(result.confusion) for p, n in enumerate(row)
                 if n]
        cells.sort(key=lambda c: (c[0] == c[1], -c[2]))
        choices = [(text(lang, "cell_choice", true=names[t], predicted=names[p], n=n),
                    f"{t},{p}") for t, p, n in cells]
        return gr.update(choices=choices, value=choices[0][1] if choices else None,
                         visible=bool(choices))

    @answers(4, status=2, interactive=True)
    def show_cell(self, session: Any, cell: str | None, request: gr.Request = None):
        """Lead back from the matrix to the scans: the test scans of one cell with the maps of
        the class they were predicted as."""
        lang = language(request)
        session = self._session(session, request)
        if session.evaluated is None or not cell:
            raise UserError("evaluate_first")
        _, results = session.evaluated
        result = results.get("tuned", results["zero-shot"])
        t, p = (result.classnames[int(k)] for k in cell.split(","))
        info = self.model_info()
        scans = session.cell(t, p)
        session.cell_scans, session.cell_selected = scans, None
        pictures = session.cell_maps(info, scans, p)
        which = text(lang, "which_tuned" if "tuned" in results else "which_zero")
        gallery = [(self._picture(session.owner, pic, f"cell-{e.uid}"), e.name)
                   for pic, e in zip(pictures, scans)]
        return (session, gallery,
                text(lang, "cell_shown", n=len(scans), true=t, predicted=p, which=which),
                gr.update(visible=bool(scans)))

    def select_cell_scan(self, session: Any, event: gr.SelectData, request: gr.Request = None):
        lang = language(request)
        scans = getattr(session, "cell_scans", None) or []
        if event is None or not 0 <= event.index < len(scans):
            return session, text(lang, "cell_select_first")
        session.cell_selected = event.index
        return session, text(lang, "cell_selected", true=scans[event.index].label)

    @answers(6, status=1)
    def promote_cell_scan(self, session: Any, request: gr.Request = None):
        """Add the selected test scan to the examples under its true class."""
        lang = language(request)
        session = self._session(session, request)
        k = session.cell_selected
        if k is None or not 0 <= k < len(session.cell_scans):
            raise UserError("cell_select_first")
        moved = session.promote(session.cell_scans.pop(k))
        session.cell_selected = None
        counts = " · ".join(f"**{c}**: {n}" for c, n in session.test_counts().items())
        gallery = [(self._picture(session.owner, e.thumbnail, f"cellthumb-{e.uid}"), e.name)
                   for e in session.cell_scans]
        return (session, text(lang, "cell_promoted", name=moved.name),
                *self._examples_view(session, lang), counts, gallery)

    # ---- step 6: prompts ------------------------------------------------------------------
    @answers(12, status=1)
    def load_prompts(self, session: Any, file, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        path = _path(file)
        if path is None:
            raise UserError("choose_prompts")
        self._keep(session, [path])
        from demo import compute

        self.model_info()
        dp = compute.load_prompts(path)
        session.adopt_prompts(dp)
        rows = [[c, "\n".join(dp.descriptions.get(c, []))] for c in dp.classnames]
        message = text(lang, "loaded", classes=", ".join(dp.classnames),
                       modality=modality_name(lang, session.modality))
        organs = list(presets.modality(session.modality).organs) if session.modality else []
        if session.organ and session.organ not in organs:
            organs.append(session.organ)
        return (session, message, session.modality, gr.update(choices=organs, value=session.organ),
                dp.cfg.template, rows, *_class_choices(dp.classnames), self._prompts_file(session, dp),
                *self._windows(lang, session.modality))


def _class_choices(classes) -> tuple[dict, dict]:
    """The example-class and test-class selectors, the first class chosen."""
    return tuple(gr.update(choices=list(classes), value=classes[0]) for _ in range(2))


def _rows(rows) -> list[list[str]]:
    if isinstance(rows, pd.DataFrame):
        return rows.astype(str).values.tolist()
    if isinstance(rows, dict):  # the API's {"headers": [...], "data": [...]}
        return rows.get("data") or []
    return rows or []


def _problems_text(lang: str, problems, heading: str) -> str:
    """Problem files as a list under a heading; notes on files that were added after it."""
    if not problems:
        return ""

    def line(problem) -> str:
        error = problem.error
        detail = error.text(lang) if isinstance(error, UserError) else text(
            lang, "unreadable", detail=core_text(lang, str(error)))
        return f"- {problem.where}: {detail}"

    failed = [line(p) for p in problems if not p.added]
    noted = [line(p) for p in problems if p.added]
    out = ""
    if failed:
        out += "\n\n" + text(lang, heading) + "\n" + "\n".join(failed)
    if noted:
        out += "\n\n" + "\n".join(noted)
    return out


def _progress_text(event, progress, lang: str) -> str:
    if event.phase == "encode":
        message = text(lang, "reading", done=event.done, total=event.total)
        progress((event.done, event.total), desc=message)
        return message
    message = text(lang, "step", done=event.done, total=event.total, loss=event.loss,
                   ce=event.parts["ce"], l1=event.parts["l1"], kl=event.parts["kl"],
                   accuracy=event.accuracy)
    progress((event.done, event.total), desc=message.split(" · ")[0])
    return message


def _summary(history, dp, lang: str) -> str:
    final = history.final
    how = {None: "how_finished", "user": "how_user", "time budget": "how_budget",
           "converged": "how_converged"}
    return text(lang, "summary", how=text(lang, how[history.stopped]), steps=len(history.steps),
                seconds=history.total_s, precision=history.precision,
                accuracy=final.get("accuracy", 0.0), loss=final.get("loss", float("nan")),
                classes=", ".join(dp.classnames)) + " " + text(lang, "train_accuracy_note")


def estimate_text(lang: str, held_out: dict | None, n: int) -> str:
    """The held-out estimate as a small table, with its warnings."""
    if held_out is None:
        return text(lang, "estimate_stopped")
    lines = []
    methods = held_out["methods"]
    if methods:
        recipe = text(lang, "estimate_fast") if held_out.get("refit_fast") else ""
        lines += [text(lang, "estimate_title", folds=held_out["folds"], n=n, recipe=recipe), "",
                  text(lang, "estimate_head"), "|---|---|---|---|"]
        for name, out in methods.items():
            lines.append(text(lang, "estimate_row", method=text(lang, f"method_{name}"),
                              accuracy=out["accuracy"], balanced=out["balanced_accuracy"],
                              std=out["std"]))
    warnings = [text(lang, key, **values) for key, values in held_out["warnings"]]
    return "\n".join(lines + ([""] if lines and warnings else []) + warnings)
