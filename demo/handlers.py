"""Event handlers: plain functions from widget values (and the session) to widget values.

The backbone is loaded once and shared read-only; each browser session's work lives in its own
`Session` (a `gr.State`). Errors meant for people become `gr.Error` with their message; anything
unexpected is logged and shown as a short apology, never as a traceback.

The deep-learning stack (torch, open_clip, ...) is imported inside the handlers, not here, so the
interface can be served while the model loads in the background.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
import pandas as pd

from core import presets
from core.errors import BackboneUnavailable, StudioError
from core.imaging import WINDOW_PRESETS
from demo.spaces_support import gpu

if TYPE_CHECKING:
    from core.backbone import Backbone
    from core.prompts import DualPrompt
    from core.train import Progress, TrainConfig
    from demo.session import Session

log = logging.getLogger(__name__)

AUTO_WINDOW = "file's own / automatic"
WINDOW_CHOICES = [AUTO_WINDOW] + list(WINDOW_PRESETS)
PLOT_COLUMNS = ["step", "value", "series"]


@contextlib.contextmanager
def _shown_as_messages(name: str):
    try:
        yield
    except gr.Error:
        raise
    except StudioError as exc:
        raise gr.Error(str(exc)) from None
    except Exception:
        log.exception("unexpected error in %s", name)
        raise gr.Error("Something went wrong on our side; your work so far is kept. "
                       "Please try again.") from None


def friendly(handler: Callable) -> Callable:
    """Show people a message they can act on, never a traceback."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args, **kwargs):
            with _shown_as_messages(handler.__name__):
                yield from handler(*args, **kwargs)
        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        with _shown_as_messages(handler.__name__):
            return handler(*args, **kwargs)
    return call


def _warm_up() -> None:
    """Import what the handlers import lazily, so that no person's first click pays for it."""
    import core.evaluate  # noqa: F401
    import core.explain  # noqa: F401
    import core.train  # noqa: F401
    import demo.report  # noqa: F401
    import demo.session  # noqa: F401


def ensure(session: Session | None) -> Session:
    """The browser session's Session, made at its first event."""
    if session is None:
        from demo.session import Session

        session = Session()
    return session


def window_value(choice: str | None):
    return None if not choice or choice == AUTO_WINDOW else choice


def slice_value(index: float | int | None) -> int | None:
    return None if index is None or int(index) < 0 else int(index)


class Studio:
    """The app's handlers around one shared backbone."""

    def __init__(self, backbone: Backbone | None, problem: str | None = None,
                 time_budget_s: float | None = None, precision: str = "auto") -> None:
        self.bb = backbone
        self.problem = problem
        self.time_budget_s = time_budget_s
        self.precision = precision
        self._ready = threading.Event()
        if backbone is not None or problem is not None:
            self._ready.set()

    @classmethod
    def start(cls, spec: str, device: str | None = None, background: bool = False,
              **options) -> Studio:
        """Load the backbone (in a background thread if asked, so the page can be served
        meanwhile); if it cannot be loaded the app still runs and says why."""
        studio = cls(None, None, **options)

        def load() -> None:
            try:
                from core.backbone import load_backbone

                studio.bb = load_backbone(spec, device)
                _warm_up()
            except BackboneUnavailable as exc:
                log.warning("backbone %s unavailable: %s", spec, exc)
                studio.problem = str(exc)
            except Exception as exc:  # a broken install must still leave a working page
                log.exception("loading backbone %s failed", spec)
                studio.problem = f"Loading it failed unexpectedly ({type(exc).__name__})."
            finally:
                studio._ready.set()

        if background:
            threading.Thread(target=load, daemon=True, name="load-model").start()
        else:
            load()
        return studio

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def backbone(self, wait_s: float = 600.0) -> Backbone:
        if not self._ready.wait(timeout=wait_s):
            raise gr.Error("The model is still loading; try again in a minute.")
        if self.bb is None:
            raise gr.Error(f"The model is not loaded. {self.problem}")
        return self.bb

    def status(self) -> str:
        if not self.ready:
            return "⏳ Loading the model… You can set up the task meanwhile."
        if self.bb is None:
            return f"⚠️ **The model could not be loaded.** {self.problem}"
        return f"Model: `{self.bb.name}` on {self.bb.device.type.upper()}"

    def status_until_ready(self):
        """For a timer: the status, and the timer switched off once the model is ready."""
        return self.status(), gr.update(active=not self.ready)

    # ---- step 1: task -------------------------------------------------------------------------
    def modality_changed(self, modality: str):
        organs = presets.modality(modality).organs
        organ = organs[0] if organs else None
        return gr.update(choices=list(organs), value=organ), presets.template_for(modality, organ)

    def organ_changed(self, modality: str, organ: str | None):
        return presets.template_for(modality, organ)

    def preset_chosen(self, task_id: str | None):
        if not task_id:
            return (gr.update(),) * 6
        task = presets.task(task_id)
        rows = [[c, "\n".join(task.descriptions.get(c, ()))] for c in task.classes]
        organs = list(presets.modality(task.modality).organs)
        if task.organ and task.organ not in organs:
            organs.append(task.organ)
        return (task.modality, gr.update(choices=organs, value=task.organ), task.template,
                rows, task.lambda_l1, task.lambda_kl)

    @friendly
    def set_task(self, session: Session, modality: str, organ: str | None, template: str,
                 rows, lambda_l1: float, lambda_kl: float):
        session = ensure(session)
        session.set_task(self.backbone(), template or "", _rows(rows), modality, organ,
                         (lambda_l1, lambda_kl))
        classes = session.classes
        message = (f"Task set: {len(classes)} classes ({', '.join(classes)}). "
                   "Now add a few examples of each (step 2).")
        choose = gr.update(choices=classes, value=classes[0])
        return (session, message, choose, choose, *self._examples_view(session))

    # ---- step 2: examples ---------------------------------------------------------------------
    def _examples_view(self, session: Session):
        session = ensure(session)
        gallery = [(e.thumbnail, e.name) for e in session.examples]
        counts = " · ".join(f"**{c}**: {n}" for c, n in session.counts().items()) or "No task yet."
        return gallery, counts

    @friendly
    def add_examples(self, session: Session, files, label: str, window: str, index):
        session = ensure(session)
        paths = [_path(f) for f in (files or [])]
        if not paths:
            raise gr.Error("Choose one or more scans to add.")
        added, problems = session.add_examples(paths, label, window_value(window),
                                               slice_value(index))
        message = f"Added {added} example{'s' if added != 1 else ''} of {label}."
        if problems:
            message += " Some files were not added:\n- " + "\n- ".join(problems)
        return (session, None, message, *self._examples_view(session))

    def select_example(self, session: Session, event: gr.SelectData):
        session = ensure(session)
        session.selected = event.index
        example = session.examples[event.index]
        return session, f"Selected {example.name}. Press “Remove selected example” to drop it."

    @friendly
    def remove_selected(self, session: Session):
        session = ensure(session)
        removed = session.remove_selected()
        message = f"Removed {removed.name}." if removed else "Click an example first to select it."
        return (session, message, *self._examples_view(session))

    # ---- step 3: tune -------------------------------------------------------------------------
    def training_config(self, recipe: str, steps, epochs, seed) -> TrainConfig:
        from core.train import TrainConfig

        common = dict(seed=int(seed), time_budget_s=self.time_budget_s)
        if recipe == "paper":
            return TrainConfig.paper(epochs=int(epochs), **common)
        return TrainConfig.fast(steps=int(steps), precision=self.precision, **common)

    @friendly
    @gpu(duration=120)
    def tune(self, session: Session, recipe: str, lambda_l1: float, lambda_kl: float, steps,
             epochs, seed, progress=gr.Progress()):
        session = ensure(session)
        from core.train import fit

        bb = self.backbone()
        images, labels = session.training_set()
        dp = session.new_prompts(bb, (lambda_l1, lambda_kl))
        cfg = self.training_config(recipe, steps, epochs, seed)
        session.stop.clear()
        events: queue.Queue = queue.Queue()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["history"] = fit(dp, images, labels, cfg, on_step=events.put,
                                         should_stop=session.stop.is_set)
            except BaseException as exc:  # handed to the generator below
                outcome["error"] = exc
            finally:
                events.put(None)

        threading.Thread(target=run, daemon=True, name="tune").start()
        points: list[list] = []
        while (event := events.get()) is not None:
            text = _progress_text(event, progress)
            if event.phase == "train":
                points += [[event.done, event.loss, "loss"], [event.done, event.accuracy, "accuracy"]]
                if event.done % 5 and event.done != event.total:
                    continue  # redraw every few steps: the plot, not the model, is the bottleneck
            yield session, text, _plot(points), gr.update()
        if "error" in outcome:
            raise outcome["error"]
        history = outcome["history"]
        session.tuned, session.history = dp, history
        yield session, _summary(history, dp), _plot(points), gr.update(choices=dp.classnames)

    def stop(self, session: Session):
        session = ensure(session)
        session.stop.set()
        return "Stopping after the current step…"

    # ---- step 5: evaluate ---------------------------------------------------------------------
    @friendly
    def add_test_scans(self, session: Session, zipped, files, label: str, window: str, index):
        session = ensure(session)
        if zipped is None and not files:
            raise gr.Error("Choose a zip of class folders, or scans and their class.")
        added, problems = 0, []
        if zipped is not None:
            n, bad = session.add_test_zip(_path(zipped), window_value(window), slice_value(index))
            added, problems = added + n, problems + bad
        if files:
            n, bad = session.add_test_files([_path(f) for f in files], label,
                                            window_value(window), slice_value(index))
            added, problems = added + n, problems + bad
        message = f"Added {added} test scan{'s' if added != 1 else ''}."
        if problems:
            message += " Some were not added:\n- " + "\n- ".join(problems)
        counts = " · ".join(f"**{c}**: {n}" for c, n in session.test_counts().items())
        return session, None, None, message, counts

    @friendly
    @gpu(duration=120)
    def evaluate(self, session: Session):
        session = ensure(session)
        from core.evaluate import confusion_figure, summary_rows

        results = session.evaluate(self.backbone(), self.precision)
        headers, rows = summary_rows(results)
        figures = {name: confusion_figure(result, title=f"{name}: accuracy {result.accuracy:.1%}")
                   for name, result in results.items()}
        best = results.get("tuned", results["zero-shot"])
        message = (f"{best.n} test scans. Accuracy {best.accuracy:.1%}, balanced accuracy "
                   f"{best.balanced_accuracy:.1%}" + (" (tuned prompts)." if "tuned" in results
                                                      else " (zero-shot: no tuned prompts yet)."))
        return (session, message, pd.DataFrame(rows, columns=headers), figures["zero-shot"],
                figures.get("tuned"))

    # ---- step 4: predict ----------------------------------------------------------------------
    @friendly
    @gpu(duration=60)
    def predict(self, session: Session, file, window: str, index, alpha: float):
        session = ensure(session)
        if file is None:
            raise gr.Error("Choose a scan to classify.")
        bb = self.backbone()
        p = session.predict(bb, _path(file), window_value(window), slice_value(index),
                            self.precision)
        probs = p.tuned or p.zero_shot
        top = max(probs, key=probs.get)
        note = "" if session.tuned is not None else (
            "No tuned prompts yet: showing the zero-shot classifier. Tune them in step 3.")
        if p.suggested_modality and p.suggested_modality != session.modality:
            note += (f" This file looks like {p.suggested_modality}, but the task is "
                     f"{session.modality}.")
        return (session, p.tuned or None, p.zero_shot, session.overlay_for(bb, top, alpha),
                gr.update(choices=p.classnames, value=top), note.strip())

    @friendly
    def change_map(self, session: Session, class_name: str, alpha: float):
        session = ensure(session)
        if session.prediction is None or not class_name:
            return session, None
        return session, session.overlay_for(self.backbone(), class_name, alpha)

    @friendly
    def report(self, session: Session, class_name: str, alpha: float):
        session = ensure(session)
        from demo.report import write_report

        p = session.prediction
        if p is None:
            raise gr.Error("Predict a scan first.")
        heat = session.map_for(self.backbone(), class_name)
        task = f"{session.modality}: {', '.join(session.classes)} — template “{session.template}”"
        return str(write_report(session.new_file(".png"), p, task, class_name, heat, alpha))

    # ---- step 6: prompts ----------------------------------------------------------------------
    @friendly
    def save_prompts(self, session: Session):
        session = ensure(session)
        if session.tuned is None:
            raise gr.Error("Tune the prompts first (step 3), then download them.")
        info = {"recipe": session.history.config.recipe if session.history else None,
                "examples": len(session.examples), "modality": session.modality}
        path = session.new_file(".safetensors")
        session.tuned.save(path, info=info)
        return str(path)

    @friendly
    def load_prompts(self, session: Session, file):
        session = ensure(session)
        if file is None:
            raise gr.Error("Choose a .safetensors prompt file saved by this app.")
        from core.prompts import DualPrompt

        path = _path(file)
        try:
            dp = DualPrompt.load(path, self.backbone())
        finally:
            session.uploaded(path)
        session.tuned, session.history = dp, None
        session.template, session.classes = dp.cfg.template, list(dp.classnames)
        session.descriptions = dict(dp.descriptions)
        session.lambda_l1, session.lambda_kl = dp.cfg.lambda_l1, dp.cfg.lambda_kl
        session.examples = [e for e in session.examples if e.label in session.classes]
        rows = [[c, "\n".join(dp.descriptions.get(c, []))] for c in dp.classnames]
        message = f"Loaded prompts for {', '.join(dp.classnames)}. Predict in step 4."
        choose = gr.update(choices=dp.classnames, value=dp.classnames[0])
        return session, message, dp.cfg.template, rows, choose, choose


def _path(file) -> str:
    """Gradio gives a path, or an object / dict with one."""
    if isinstance(file, str):
        return file
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return getattr(file, "path", None) or getattr(file, "name")


def _rows(rows) -> list[list[str]]:
    if isinstance(rows, pd.DataFrame):
        return rows.astype(str).values.tolist()
    if isinstance(rows, dict):  # the API's {"headers": [...], "data": [...]}
        return rows.get("data") or []
    return rows or []


def _progress_text(event: Progress, progress: gr.Progress) -> str:
    if event.phase == "encode":
        progress((event.done, event.total), desc="Reading the examples")
        return f"Reading the examples: {event.done}/{event.total}"
    progress((event.done, event.total), desc="Tuning")
    return (f"Step {event.done}/{event.total} · loss {event.loss:.3f} "
            f"(CE {event.parts['ce']:.3f}, L1 {event.parts['l1']:.4f}, KL {event.parts['kl']:.4f}) "
            f"· train accuracy {event.accuracy:.0%}")


def _plot(points: list[list]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=PLOT_COLUMNS)


def _summary(history, dp: DualPrompt) -> str:
    final = history.final
    how = {None: "finished", "user": "stopped by you", "time budget": "stopped at the time limit"}
    return (f"**Tuning {how[history.stopped]}** after {len(history.steps)} steps in "
            f"{history.total_s:.1f} s ({history.precision}). On the examples: accuracy "
            f"{final.get('accuracy', 0):.0%}, loss {final.get('loss', float('nan')):.3f}. "
            f"Classes: {', '.join(dp.classnames)}. Predict in step 4.")
