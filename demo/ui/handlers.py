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

import logging
import threading
import time
from typing import Any

import gradio as gr

from core import presets
from demo.runtime import storage
from demo.runtime.host import DEMO_SPEC, WAIT_FOR_MODEL_S, ModelHost, ModelInfo
from demo.runtime.pages import TAKEN, Pages
from demo.runtime.tuning_line import TuningLine
from demo.text.messages import UserError, language, modality_name, task_title
from demo.ui.replies import class_table, upload_path
from demo.ui.steps.evaluate import EvaluateStep
from demo.ui.steps.examples import ExamplesStep
from demo.ui.steps.pool import PoolStep
from demo.ui.steps.predict import PredictStep
from demo.ui.steps.prompts import PromptsStep
from demo.ui.steps.task import WINDOWS, TaskStep
from demo.ui.steps.tune import TuneStep
from demo.ui.steps.workspace import WorkspaceStep

log = logging.getLogger(__name__)
MODEL_OUTPUTS = ("status", "poll", "model_actions")
LOAD_OUTPUTS = (*MODEL_OUTPUTS, "preset", "modality", *WINDOWS, "curve", "samples", "legend",
                "table")


def warm_up() -> None:
    """Import what the handlers import lazily, in the model loader's thread (so no handler
    imports the deep-learning stack while the loader does)."""
    import core.evaluate  # noqa: F401
    import core.explain  # noqa: F401
    import core.train  # noqa: F401
    import demo.runtime.compute  # noqa: F401
    import demo.work.report  # noqa: F401
    import demo.work.session  # noqa: F401


IDLE_S = 30 * 60.0  # a session unused this long is cleared (the page says 30 minutes)
IDLE_SWEEP_S = 60.0


class Studio(TaskStep, ExamplesStep, PoolStep, TuneStep, PredictStep, EvaluateStep,
             PromptsStep, WorkspaceStep):
    """The app's handlers around one shared model (`ModelHost`). The handlers never touch the
    model: they hand plain data to `demo.runtime.compute` through the sessions."""

    def __init__(self, backbone=None, problem: str | None = None,
                 time_budget_s: float | None = None, precision: str = "auto") -> None:
        self.host = ModelHost(backbone, problem, precision, on_loaded=warm_up)
        self.time_budget_s = time_budget_s
        self.precision = precision
        self.files = storage.SessionFiles()
        self.pages = Pages()  # which page holds which work
        self.sessions: dict[str, Any] = self.pages.works  # the works, by owner
        self.line = TuningLine()
        self.idle_s = IDLE_S
        self.lessons: dict[str, str] = {}  # title -> workspace file offered as a lesson

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

    def _model_view(self, request) -> dict:
        """The model's status line, the timer that refreshes it while the model loads, and the
        fix-it buttons when the load failed."""
        lang = language(request)
        failed = self.ready and self.bb is None
        return {"status": self.status(lang), "poll": gr.update(active=not self.ready),
                "model_actions": gr.update(visible=failed)}

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
        tasks = [(task_title(lang, t), t.id) for t in presets.load_tasks()]
        modalities = [(modality_name(lang, m.id), m.id) for m in presets.load_modalities()]
        curve = gr.skip()
        if self.ready:  # while the loader imports the stack, no request imports any of it
            from demo.work.report import training_curve

            curve = training_curve([], 1, lang)
        samples = [(task_title(lang, s), s.id) for s in presets.load_samples()]
        return {**self._model_view(request), "preset": gr.update(choices=tasks),
                "modality": gr.update(choices=modalities), **self._windows(lang, "MRI"),
                "curve": curve,
                "samples": gr.update(choices=samples, value=samples[0][1] if samples else None),
                "legend": self.legend("jet", request), "table": class_table(lang)}

    # ---- sessions and their files ------------------------------------------------------------
    def _owner(self, request) -> str | None:
        """Whose work a request is for: the key of the work its page holds, or (for an API
        client, which opens no page) its own session id."""
        page = getattr(request, "session_hash", None)
        return self.pages.key_of(page) or page

    def _session(self, session, request=None):
        """The Session the request works on, made at its first event (after the model load, so
        the stack it imports is never imported by two threads at once). A page whose work
        another tab took over is refused, with the reason."""
        self.model_info()
        from demo.work.session import Session

        page = getattr(request, "session_hash", None)
        key = self.pages.key_of(page)
        if key == TAKEN:
            raise UserError("work_taken_over")
        owner = key or page
        if session is None or (key and session.owner and session.owner != key):
            session = self.sessions.get(owner) if owner else None
            session = Session() if session is None else session
        owner = owner or session.owner or f"local-{id(session):x}"
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
            self.pages.clear(owner)
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
        from demo.work.scans import picture_digest

        folder = self.files.downloads(owner or "anonymous")
        digest = picture_digest(picture)[:16]
        path = folder / f"{name}-{digest}.png"
        if not path.exists():
            picture.save(path, format="PNG")
        return str(path)

    def sample_scan(self, session=None, request: gr.Request = None) -> str | None:
        """A scan to predict, put in the Predict upload box as a file in the session's folder:
        the next of those its lesson offers (one click after another goes through them), else
        the first sample set's (none of them an example)."""
        owner = self._owner(request) or "anonymous"
        offered = list(getattr(session, "to_predict", None) or [])
        if offered:
            scan = offered[session.predict_turn % len(offered)]
            session.predict_turn += 1
            copy = self.files.downloads(owner) / f"{_file_stem(scan.name)}.png"
            scan.image.save(copy, format="PNG")
            return str(copy)
        import shutil

        scans = [p for s in presets.load_samples() for p in s.to_predict]
        if not scans:
            return None
        copy = self.files.downloads(owner) / scans[0].name
        shutil.copyfile(scans[0], copy)
        return str(copy)

    def remember_upload(self, files, request: gr.Request = None) -> None:
        """An upload arrived (before any button is pressed): it is this session's, and is
        deleted with it."""
        owner = self._owner(request)
        if owner:
            items = files if isinstance(files, list) else [files]
            self.files.remember(owner, [p for p in map(upload_path, items) if p])

    def close_session(self, request: gr.Request = None) -> None:
        """The page was closed (or reloads): its work stays on the server for the idle period,
        from now, so the page finds it again. A page that made no work (its files were only
        uploaded or previewed) or held no key (its browser keeps none) has nothing to come back
        to: its files, and work, are deleted now."""
        page = getattr(request, "session_hash", None)
        if not page:
            return
        key = self.pages.leave(page)
        if key:
            session = self.sessions.get(key)
            if session is not None:
                session.last_used = time.monotonic()
            else:  # no step was taken: nothing to come back to, its uploads go now
                self.files.close(key)
            return
        session = self.sessions.get(page)
        if session is not None:
            self.end_work(session)
        else:
            self.files.close(page)

    def end_work(self, session) -> None:
        """Delete a session's work and its files now."""
        owner = getattr(session, "owner", None)
        session.close()
        if owner:
            if self.sessions.get(owner) is session:
                self.pages.clear(owner, idle=False)
            self.files.close(owner)

    def forget(self, session) -> None:
        """gr.State's delete callback (an hour after its page closed). Work kept for its
        browser is the idle sweep's to clear; other work goes now."""
        if session is None:
            return
        owner = getattr(session, "owner", None)
        if owner and self.sessions.get(owner) is session and \
                time.monotonic() - session.last_used < self.idle_s:
            return
        self.end_work(session)


def _file_stem(name: str) -> str:
    """A scan's display name as a file name."""
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")
    return stem[:60] or "scan"
