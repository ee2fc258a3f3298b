"""Where the model may run: `@gpu(duration=...)` marks the app's compute calls
(`demo.runtime.compute`).

On a Hugging Face ZeroGPU Space a decorated call runs in a separate worker process that holds
a GPU for the call's length: its arguments and results are pickled across (so they must be
plain, CPU-side data), nothing it changes is seen by the caller, and `duration` (seconds, or a
function of the call's arguments) is how long the visitor's quota is asked for. Anywhere else
the decorator runs the call where it is.

`BIOMED_DPT_ZEROGPU=emulate` (the test mode) imposes ZeroGPU's constraints on any machine: each
call runs in a forked child process, arguments and results pickled through a pipe, a result
holding a tensor on an accelerator refused, a call running past its duration killed, and the
model unusable outside a compute call. (The child computes on one CPU thread, as a real worker's
CPU side does: see `_enter_worker`.) `BIOMED_DPT_ZEROGPU=emulate-no-quota` also refuses every
call as a spent quota does, so the CPU fallback runs.

When a visitor's quota is spent (or no GPU comes in time), the call runs on the CPU in the main
process instead, and the page says so.

What ZeroGPU runs (`ZEROGPU_TORCH`, `ZEROGPU_PYTHONS`, the default duration and the sizes) is
written here once, as the hub's documentation lists it; the emulation holds to it (an app
emulating ZeroGPU on a PyTorch or Python it does not run refuses to start, `check_versions`),
and `python -m demo.runtime.space --zerogpu` writes a Space that meets it.
"""
from __future__ import annotations

import functools
import inspect
import io
import logging
import multiprocessing
import os
import pickle
import platform
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

MODE_ENV = "BIOMED_DPT_ZEROGPU"
EMULATE = "emulate"
EMULATE_NO_QUOTA = "emulate-no-quota"
QUOTA_TITLES = ("ZeroGPU quota exceeded", "ZeroGPU queue timeout", "ZeroGPU pending credits",
                "ZeroGPU client error")
JOIN_S = 10.0

# ZeroGPU as https://huggingface.co/docs/hub/spaces-zerogpu lists it (read 2026-12-07; the page
# was last changed 2026-08-22): each PyTorch release it runs, with the torchvision built for it,
# and its Pythons. A call asks for 60 s unless it says otherwise; "xlarge" asks for a whole card
# (twice the quota) instead of the default half.
ZEROGPU_READ_ON = "2026-12-07"
ZEROGPU_DOCS = "https://huggingface.co/docs/hub/spaces-zerogpu"
ZEROGPU_TORCH = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}
ZEROGPU_PYTHONS = ("3.10.13", "3.12.12")
DEFAULT_DURATION_S = 60
GPU_SIZES = ("large", "xlarge")

try:  # only on Hugging Face Spaces
    import spaces  # type: ignore[import-not-found]
    from spaces.config import Config as _SpacesConfig  # type: ignore[import-not-found]

    ON_ZEROGPU = bool(getattr(_SpacesConfig, "zero_gpu", False))
except ImportError:
    spaces = None
    ON_ZEROGPU = False

_state = threading.local()
_in_worker = False  # True in a GPU worker process (real or emulated): every call there computes


class ModelOutsideGpuCall(RuntimeError):
    """The model was used outside a compute call (only raised while emulating ZeroGPU)."""


class GpuTaskAborted(RuntimeError):
    """An emulated GPU call ran past its duration and was killed, as ZeroGPU does."""


class QuotaSpent(Exception):
    """The emulated scheduler's refusal (mode emulate-no-quota); stands for ZeroGPU's."""


class UnsupportedOnZeroGPU(RuntimeError):
    """The PyTorch or Python running is not one ZeroGPU runs (only raised while emulating it)."""


def _release(version: str) -> str:
    """'2.11.0+cu128' -> '2.11.0': the release, without a build's local label."""
    return version.split("+", 1)[0].strip()


def zerogpu_refuses(torch_version: str, python_version: str) -> str | None:
    """Why ZeroGPU would not run these versions, in words, or None where it runs them. Python is
    matched by its minor version (ZeroGPU offers one release of each: 3.10.13, 3.12.12)."""
    problems = []
    if _release(torch_version) not in ZEROGPU_TORCH:
        problems.append(f"PyTorch {_release(torch_version)} (it runs "
                        f"{', '.join(ZEROGPU_TORCH)})")
    if python_version.rsplit(".", 1)[0] not in {p.rsplit(".", 1)[0] for p in ZEROGPU_PYTHONS}:
        problems.append(f"Python {python_version} (it runs {' or '.join(ZEROGPU_PYTHONS)})")
    if not problems:
        return None
    return (f"ZeroGPU does not run {' or '.join(problems)}, as listed on {ZEROGPU_READ_ON} at "
            f"{ZEROGPU_DOCS}. `python -m demo.runtime.space --zerogpu OUT` writes a Space with "
            "versions it runs.")


def check_versions(torch_version: str | None = None, python_version: str | None = None) -> None:
    """While ZeroGPU is emulated, refuse the versions it would refuse (the running ones unless
    given): an emulation on versions ZeroGPU never runs would vouch for what it cannot."""
    if mode() not in (EMULATE, EMULATE_NO_QUOTA):
        return
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    reason = zerogpu_refuses(torch_version, python_version or platform.python_version())
    if reason:
        raise UnsupportedOnZeroGPU(reason)


def mode() -> str:
    """'zerogpu' on a ZeroGPU Space, 'emulate' / 'emulate-no-quota' in the test mode, else
    'local'. Read at every call, so a test can switch it."""
    if ON_ZEROGPU:
        return "zerogpu"
    value = os.environ.get(MODE_ENV, "").strip().lower()
    if value in (EMULATE, EMULATE_NO_QUOTA):
        return value
    if value and value not in ("0", "off", "local"):
        raise ValueError(f"{MODE_ENV} must be '{EMULATE}' or '{EMULATE_NO_QUOTA}', not {value!r}")
    return "local"


def isolated() -> bool:
    """Whether compute calls cross a process boundary (ZeroGPU or its emulation)."""
    return mode() != "local"


def computing() -> bool:
    """Whether this thread is inside a compute call (where the model may be used)."""
    return _in_worker or getattr(_state, "depth", 0) > 0


def on_accelerator() -> bool:
    """Whether this compute call runs where the accelerator is (a ZeroGPU worker), as opposed
    to the CPU fallback in the main process."""
    return _in_worker and ON_ZEROGPU


def check_model_use() -> None:
    """Called by the model host before handing out the model: while compute calls are isolated,
    the model belongs to them alone."""
    if isolated() and not computing():
        raise ModelOutsideGpuCall(
            "The model was used outside a GPU call; on ZeroGPU this would fail or run on fake "
            "tensors. Route the work through demo.runtime.compute.")


@contextmanager
def _computing_here() -> Iterator[None]:
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def gpu(duration: float | Callable[..., float] | None = DEFAULT_DURATION_S,
        size: str | None = None) -> Callable[[Callable], Callable]:
    """Mark a compute call. `duration`: the seconds to ask ZeroGPU for, or a function of the
    call's arguments returning them (None: ZeroGPU's default, 60 s). `size`: "large" (half a
    card, ZeroGPU's default) or "xlarge" (a whole one, twice the quota)."""
    if size is not None and size not in GPU_SIZES:
        raise ValueError(f"size must be one of {GPU_SIZES}, not {size!r}")
    if duration is None:
        duration = DEFAULT_DURATION_S

    def wrap(fn: Callable) -> Callable:
        generator = inspect.isgeneratorfunction(fn)
        here = _here_generator(fn) if generator else _here(fn)
        zero = None
        if ON_ZEROGPU:  # pragma: no cover - only on a ZeroGPU Space
            sized = {} if size is None else {"size": size}
            zero = spaces.GPU(duration=duration, **sized)(_worker_generator(fn) if generator
                                                          else _worker_call(fn))

        if generator:
            @functools.wraps(fn)
            def stream(*args, **kwargs):
                current = mode()
                if current == "local":
                    yield from here(*args, **kwargs)
                    return
                try:
                    if current == "zerogpu":  # pragma: no cover
                        source = zero(*args, **kwargs)
                    else:
                        source = _emulated_stream(fn, duration, current, args, kwargs)
                    first = next(source, _END)
                except Exception as exc:  # noqa: BLE001 - only a spent quota falls back
                    if not _quota_spent(exc):
                        raise
                    _fall_back(fn, exc)
                    yield from here(*args, **kwargs)
                    return
                if first is _END:
                    return
                yield first
                yield from source
            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            current = mode()
            if current == "local":
                return here(*args, **kwargs)
            try:
                if current == "zerogpu":  # pragma: no cover
                    return zero(*args, **kwargs)
                return _emulated_call(fn, duration, current, args, kwargs)
            except Exception as exc:  # noqa: BLE001
                if not _quota_spent(exc):
                    raise
                _fall_back(fn, exc)
                return here(*args, **kwargs)
        return call
    return wrap


_END = object()


def _here(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _computing_here():
            return fn(*args, **kwargs)
    return call


def _here_generator(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def stream(*args, **kwargs):
        gen = fn(*args, **kwargs)
        try:
            while True:
                with _computing_here():
                    try:
                        item = next(gen)
                    except StopIteration:
                        return
                yield item
        finally:
            with _computing_here():
                gen.close()
    return stream


def _enter_worker() -> None:
    """A forked worker's first step. The main process has run CPU kernels on OpenMP threads,
    whose pool a forked child cannot use (its first parallel region would wait forever); the
    worker's CPU work (decoding, resizing) is small, so it runs on one thread."""
    global _in_worker
    if not _in_worker:
        _in_worker = True
        import torch

        torch.set_num_threads(1)


def _worker_call(fn: Callable) -> Callable:  # pragma: no cover - runs in a ZeroGPU worker
    @functools.wraps(fn)
    def call(*args, **kwargs):
        _enter_worker()
        return fn(*args, **kwargs)
    return call


def _worker_generator(fn: Callable) -> Callable:  # pragma: no cover
    @functools.wraps(fn)
    def stream(*args, **kwargs):
        _enter_worker()
        yield from fn(*args, **kwargs)
    return stream


# ---- the spent quota: the CPU path ----------------------------------------------------------
def _quota_spent(exc: BaseException) -> bool:
    if isinstance(exc, QuotaSpent):
        return True
    title = str(getattr(exc, "title", "") or "")
    return title.startswith(QUOTA_TITLES)


_listeners: list[Callable[[], None]] = []  # what the page does when a step runs on the CPU


def when_on_cpu(listener: Callable[[], None]) -> None:
    """Call `listener` (inside the request) each time a GPU call falls back to the CPU; the page
    registers its toast here once."""
    if listener not in _listeners:
        _listeners.append(listener)


def _fall_back(fn: Callable, exc: BaseException) -> None:
    log.warning("no GPU for %s (%s): running it on the CPU", fn.__name__,
                getattr(exc, "title", type(exc).__name__))
    for listener in _listeners:
        try:
            listener()
        except Exception:  # noqa: BLE001 - a toast that cannot be shown never stops the step
            log.debug("the CPU-path listener failed", exc_info=True)


# ---- the emulation: a forked child per call, everything pickled -----------------------------
class _CpuOnlyPickler(pickle.Pickler):
    """Refuses tensors that live on an accelerator: ZeroGPU cannot send them back."""

    def reducer_override(self, obj):
        import torch

        if isinstance(obj, torch.Tensor) and obj.device.type != "cpu":
            raise pickle.PicklingError(f"A tensor on {obj.device} crossed the GPU-call "
                                       "boundary; move it to the CPU first.")
        return NotImplemented


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _CpuOnlyPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _seconds(duration, args, kwargs) -> float:
    """The seconds a call asks for; a duration function answering None asks for the default,
    as ZeroGPU's scheduler does."""
    seconds = duration(*args, **kwargs) if callable(duration) else duration
    return float(DEFAULT_DURATION_S if seconds is None else seconds)


def _child(fn: Callable, conn, payload: bytes, stop, generator: bool) -> None:
    """The emulated worker: unpickle the call, run it, send back pickled results."""
    _enter_worker()
    try:
        args, kwargs = pickle.loads(payload)
        if generator:
            gen = fn(*args, **kwargs)
            for item in gen:
                if stop.is_set():
                    gen.close()
                    break
                conn.send_bytes(_dumps(("item", item)))
            conn.send_bytes(_dumps(("end", None)))
        else:
            conn.send_bytes(_dumps(("result", fn(*args, **kwargs))))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller
        try:
            conn.send_bytes(_dumps(("error", exc)))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send_bytes(_dumps(("error", RuntimeError(detail))))
    finally:
        conn.close()
        os._exit(0)  # no atexit handlers, no flushing of the parent's buffers twice


def _start(fn, duration, current, args, kwargs, generator: bool):
    if current == EMULATE_NO_QUOTA:
        raise QuotaSpent("the emulated ZeroGPU quota is spent")
    limit = _seconds(duration, args, kwargs)
    if not limit > 0:
        raise ValueError(f"illegal duration {limit!r} for {fn.__name__}")
    payload = _dumps((args, kwargs))  # what cannot be pickled fails here, as on ZeroGPU
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    process = ctx.Process(target=_child, args=(fn, there, payload, stop, generator),
                          daemon=True, name=f"gpu-{fn.__name__}")
    process.start()
    there.close()
    return process, here, stop, time.monotonic() + limit, limit


def _receive(fn, process, conn, deadline: float, limit: float):
    left = deadline - time.monotonic()
    if left <= 0 or not conn.poll(left):
        process.kill()
        process.join(JOIN_S)
        raise GpuTaskAborted(f"{fn.__name__} ran past its {limit:g} s duration.")
    try:
        kind, value = pickle.loads(conn.recv_bytes())
    except EOFError:
        process.join(JOIN_S)
        raise GpuTaskAborted(f"{fn.__name__}'s worker ended without an answer "
                             f"(exit code {process.exitcode}).") from None
    if kind == "error":
        process.join(JOIN_S)
        raise value
    return kind, value


def _emulated_call(fn, duration, current, args, kwargs):
    process, conn, _, deadline, limit = _start(fn, duration, current, args, kwargs, False)
    try:
        return _receive(fn, process, conn, deadline, limit)[1]
    finally:
        conn.close()
        process.join(JOIN_S)


def _emulated_stream(fn, duration, current, args, kwargs):
    process, conn, stop, deadline, limit = _start(fn, duration, current, args, kwargs, True)
    try:
        while True:
            kind, value = _receive(fn, process, conn, deadline, limit)
            if kind == "end":
                return
            yield value
    finally:  # closed early (the page went away): the worker stops at its next item
        stop.set()
        conn.close()
        process.join(JOIN_S)
        if process.is_alive():
            process.kill()
