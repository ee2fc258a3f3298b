"""Runs: the long pieces of one session's work (a tuning run, the held-out estimate, encoding
examples, an evaluation), each with a stop of its own.

A run's stop signal is a file made for that run alone (so a compute call in a GPU worker process
sees it as well as the main process), removed when the run ends: a Stop reaches the run that is
going and nothing else, and never outlives it. Pressed with nothing running, it changes nothing.
"""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from demo.runtime import storage

TUNE = "tune"
ESTIMATE = "estimate"
ENCODE = "encode"
EVALUATE = "evaluate"
STEP_3 = (TUNE, ESTIMATE)  # what the Stop button of the tuning step reaches

# why a run was stopped
BY_USER = "user"
BY_NEW_RUN = "new run"
BY_CLOSE = "closed"


@dataclass(eq=False)
class Run:
    """One run of `kind`. `stop_path` is what compute calls poll."""

    kind: str
    stop_path: str
    started: float = field(default_factory=time.monotonic)
    stopped_by: str | None = None

    def stop(self, why: str = BY_USER) -> None:
        if self.stopped_by is None:
            self.stopped_by = why
        path = Path(self.stop_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    @property
    def stopped(self) -> bool:
        return self.stopped_by is not None

    def end(self) -> None:
        Path(self.stop_path).unlink(missing_ok=True)


class Runs:
    """The runs of one session that are going, at most one of each kind."""

    def __init__(self) -> None:
        self._going: dict[str, Run] = {}
        self._lock = threading.Lock()

    def going(self, *kinds: str) -> list[Run]:
        with self._lock:
            return [run for kind, run in self._going.items() if not kinds or kind in kinds]

    def busy(self, kind: str) -> bool:
        return bool(self.going(kind))

    @contextmanager
    def run(self, kind: str) -> Iterator[Run]:
        """A new run of `kind` for the length of the block; one of the same kind that is still
        going is stopped first (it was replaced)."""
        run = Run(kind, str(storage.folder() / f"stop-{kind}-{uuid.uuid4().hex}"))
        with self._lock:
            replaced = self._going.get(kind)
            self._going[kind] = run
        if replaced is not None:
            replaced.stop(BY_NEW_RUN)
        try:
            yield run
        finally:
            with self._lock:
                if self._going.get(kind) is run:
                    del self._going[kind]
            run.end()

    def stop(self, *kinds: str, why: str = BY_USER) -> list[Run]:
        """Stop the runs of `kinds` (all runs if none is named) that are going; returns them."""
        runs = self.going(*kinds)
        for run in runs:
            run.stop(why)
        return runs
