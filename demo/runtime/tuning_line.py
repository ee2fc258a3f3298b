"""The line for tuning: tuning runs take turns (one at a time on a small machine), while
prediction, maps and evaluation never wait behind them. Each waiting user can be told their
place and an estimate from the durations of recent runs."""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque

DEFAULT_ESTIMATE_S = 30.0


class TuningLine:
    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._running: dict[int, float] = {}
        self._durations: deque[float] = deque(maxlen=8)
        self._tickets = itertools.count(1)

    def join(self) -> int:
        with self._cond:
            ticket = next(self._tickets)
            self._waiting.append(ticket)
            return ticket

    def position(self, ticket: int) -> int:
        """0 when the ticket may run (or runs), else its place in line (1 = next)."""
        with self._cond:
            return self._position(ticket)

    def _position(self, ticket: int) -> int:
        if ticket in self._running:
            return 0
        ahead = self._waiting.index(ticket)
        free = self.slots - len(self._running)
        return 0 if ahead < free else ahead - free + 1

    def wait_turn(self, ticket: int, timeout: float) -> bool:
        """Wait up to `timeout` s for the ticket's turn; True once it runs (it is then counted
        as running until `leave`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._position(ticket) != 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            if ticket not in self._running:
                self._waiting.remove(ticket)
                self._running[ticket] = time.monotonic()
            return True

    def leave(self, ticket: int) -> None:
        """The run ended (or the user gave up waiting)."""
        with self._cond:
            started = self._running.pop(ticket, None)
            if started is not None:
                self._durations.append(time.monotonic() - started)
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._cond.notify_all()

    def estimate_s(self, position: int) -> float:
        """Seconds until a ticket at `position` may run: the runs ahead of it, each as long as
        recent runs were (the ones running now counted as half done)."""
        with self._cond:
            typical = (sum(self._durations) / len(self._durations) if self._durations
                       else DEFAULT_ESTIMATE_S)
            now = time.monotonic()
            running_left = [max(typical - (now - s), typical / 2) for s in self._running.values()]
        rounds = max(0, position - 1)
        return (min(running_left) if running_left else 0.0) + rounds * typical / self.slots

    def __len__(self) -> int:
        with self._cond:
            return len(self._waiting) + len(self._running)
