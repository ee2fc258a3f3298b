"""How handlers answer: window and slice values from widgets, uploads, and the decorator that
turns a problem into a message where the user is looking."""
from __future__ import annotations

import functools
import inspect
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import gradio as gr

from core.errors import StudioError
from core.imaging import WINDOW_PRESETS
from demo.runtime import gpu
from demo.runtime.traffic import TRAFFIC
from demo.text.messages import UserError, core_text, language, text, window_label
from demo.text.strings import EN, KO

log = logging.getLogger(__name__)

TELL_EVERY_S = 300.0
_told: dict[str, float] = {}  # browser session -> when it was last told of the CPU path


AUTO_WINDOW = "auto"
MANUAL_WINDOW = "manual"
LEGACY_AUTO = "file's own / automatic"
COLOUR_MAPS = ("jet", "cividis")


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


def slice_range(first: float | int | None, last: float | int | None) -> range:
    """Every slice from `first` to `last`, both included (an empty range when they are the
    wrong way round: it is said, never turned)."""
    if first is None or last is None or int(first) < 0 or int(last) < 0:
        raise UserError("range_needs_ends")
    return range(int(first), int(last) + 1)


def volume_value(volume: float | int | None) -> int:
    """A 4-D file's volume from its box (0, the first, when left empty)."""
    return 0 if volume is None else int(volume)


# ---- how replies are made -----------------------------------------------------------------
def _request_of(fn: Callable, args, kwargs):
    try:
        return inspect.signature(fn).bind_partial(*args, **kwargs).arguments.get("request")
    except TypeError:
        return None


def _problem_reply(lang: str, exc: BaseException, outputs: int | tuple[str, ...],
                   status: int | str | None):
    message = exc.text(lang) if isinstance(exc, UserError) else core_text(lang, exc)
    gr.Warning(message, title=text(lang, "toast_problem"))
    if isinstance(outputs, tuple):  # a reply by name: only the status line changes
        return {} if status is None else {status: "⚠️ " + message}
    reply = [gr.skip()] * outputs
    if status is not None:
        reply[status] = "⚠️ " + message
    return reply[0] if outputs == 1 else tuple(reply)


def answers(outputs: int | tuple[str, ...], status: int | str | None = None,
            interactive: bool = False):
    """Decorate a handler with `outputs` outputs, `status` the index of its status line (or,
    for a handler that answers with a dict by output name, `outputs` the names and `status`
    one of them): a `StudioError` becomes a message there and a toast (the other outputs
    unchanged), anything else is logged once and answered with an apology. An `interactive`
    handler (one whose answer a user waits to see) has the right of way over background work
    (`demo.runtime.traffic`)."""
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


def by_name(handler: Callable, outputs: dict) -> Callable:
    """The one place where replies by name meet the page: `handler` answers with {output name:
    value} (a name left out: unchanged), Gradio receives {component: value} for `outputs`
    (name -> component). The handler's signature is kept (Gradio reads its request and
    progress parameters from it)."""
    def convert(reply: dict) -> dict:
        unknown = set(reply) - set(outputs)
        assert not unknown, f"{handler.__name__} answers outputs it is not wired to: {unknown}"
        return {component: reply.get(name, gr.skip()) for name, component in outputs.items()}

    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args, **kwargs):
            for reply in handler(*args, **kwargs):
                yield convert(reply)
        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        return convert(handler(*args, **kwargs))
    return call


def uploads_of(files) -> list[tuple[str, str]]:
    """(path, name as uploaded) of each file Gradio gives (paths, dicts or objects)."""
    out = []
    for f in files or []:
        path = upload_path(f)
        if path:
            out.append((path, shown_name(f, path)))
    return out


def upload_path(file) -> str | None:
    if file is None:
        return None
    if isinstance(file, (str, Path)):
        return str(file)
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return getattr(file, "path", None) or getattr(file, "name", None)


def shown_name(file, path: str) -> str:
    name = (file.get("orig_name") if isinstance(file, dict) else None) or Path(path).name
    return "`" + name.replace("`", "'") + "`"


TABLE_ROWS = 4  # the class table's empty rows when the page opens


def class_table(lang: str, rows=None):
    """The class table with its headers in the user's language (`gr.I18n` does not reach a
    table's headers), holding `rows` or empty rows (so the headers show at once)."""
    labels = KO if lang == "ko" else EN
    heads = [labels["class_name"], labels["class_descriptions"]]
    data = [list(r) for r in rows] if rows else [["", ""]] * TABLE_ROWS
    return gr.update(headers=heads, value={"headers": heads, "data": data})


def class_choices(classes) -> dict:
    """The example-class and test-class selectors, the first class chosen (none without
    classes)."""
    return {name: gr.update(choices=list(classes), value=classes[0] if classes else None)
            for name in ("example_class", "test_class")}


def problems_text(lang: str, problems, heading: str) -> str:
    """Problem files as a list under a heading; notes on files that were added after it."""
    if not problems:
        return ""

    def line(problem) -> str:
        error = problem.error
        detail = error.text(lang) if isinstance(error, UserError) else text(
            lang, "unreadable", detail=core_text(lang, error))
        return f"- {problem.where}: {detail}"

    failed = [line(p) for p in problems if not p.added]
    noted = [line(p) for p in problems if p.added]
    out = ""
    if failed:
        out += "\n\n" + text(lang, heading) + "\n" + "\n".join(failed)
    if noted:
        out += "\n\n" + "\n".join(noted)
    return out


def tell_cpu_path() -> None:
    """A toast, in the visitor's language, that this step runs on the CPU (their GPU time is
    spent); once in a while per visitor, not at every call of a step."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    who = str(getattr(request, "session_hash", None) or "")
    if not who:  # outside a page's request (tests, scripts) there is no one to tell
        return
    now = time.monotonic()
    if now - _told.get(who, -TELL_EVERY_S) < TELL_EVERY_S:
        return
    _told[who] = now
    if len(_told) > 10_000:
        _told.clear()
    lang = language(request)
    gr.Warning(text(lang, "gpu_quota_cpu"), title=text(lang, "gpu_quota_title"))
