"""Right of way on one server: what a user waits to see first (a prediction, a map, a report,
an evaluation) goes before background work (tuning runs, their held-out estimates, examples
encoded as they arrive).

Interactive handlers run inside `TRAFFIC.interactive()`. Background loops call
`TRAFFIC.give_way()` between steps: it returns at once when no interactive request is in flight,
else waits until none is, or `PATIENCE_S` at most, so a stream of predictions slows a tuning run
down without ever stopping it. On a CPU the two compete for the same cores; the tuning step
that waits is the one that would have doubled a prediction's time.

Counting is per process: in a GPU worker process (ZeroGPU, or its emulation) a background loop
has its own device and gives way to nobody.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

PATIENCE_S = 1.5  # the longest one background step waits for interactive work to finish


class Traffic:
    def __init__(self, patience_s: float = PATIENCE_S) -> None:
        self.patience_s = patience_s
        self._cond = threading.Condition()
        self._in_flight = 0
        self._pid = os.getpid()
        self.waited_s = 0.0  # background time spent giving way, for benchmarks

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @contextmanager
    def interactive(self) -> Iterator[None]:
        with self._cond:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def give_way(self) -> float:
        """Wait while interactive work is in flight (at most `patience_s`); the seconds waited."""
        if os.getpid() != self._pid:  # a worker process: nobody here to give way to
            return 0.0
        with self._cond:
            if not self._in_flight:
                return 0.0
            started = time.monotonic()
            deadline = started + self.patience_s
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            waited = time.monotonic() - started
            self.waited_s += waited
            return waited


TRAFFIC = Traffic()
