"""A background worker whose progress a handler streams to the page.

`Worker(work, stop)` runs `work(emit)` in a thread; iterating the worker yields what it emits,
then `result()` returns what it returned (or raises what it raised). When the handler's
generator is closed before the work ends (the page was closed, the client went away), `close()`
calls `stop()` and joins the thread, so no orphaned run keeps computing for nobody.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

_DONE = object()
JOIN_S = 60.0


class Worker:
    def __init__(self, work: Callable[[Callable[[Any], None]], Any], stop: Callable[[], None],
                 name: str = "worker") -> None:
        self._events: queue.Queue = queue.Queue()
        self._outcome: dict[str, Any] = {}
        self._stop = stop
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True, name=name)
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self._outcome["result"] = work(self._events.put)
        except BaseException as exc:  # handed to whoever asks for the result
            self._outcome["error"] = exc
        finally:
            self._events.put(_DONE)

    def __iter__(self) -> Iterator[Any]:
        while (event := self._events.get()) is not _DONE:
            yield event

    def close(self) -> None:
        """Stop the work if it is still running, and wait for its thread to end."""
        if self._thread.is_alive():
            self._stop()
            self._thread.join(JOIN_S)

    def result(self) -> Any:
        self._thread.join()
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome.get("result")
