"""What long work streams back, as small typed values (they cross to and from a GPU worker
process, so they hold plain CPU-side data only)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counted:
    """`done` of `total` units finished (images encoded, folds of an estimate)."""

    done: int
    total: int


@dataclass(frozen=True)
class Stepped:
    """A tuning step (or an encoding batch inside a tuning run)."""

    progress: Any  # core.train.Progress (not imported here: this module needs no torch)


@dataclass(frozen=True)
class Finished:
    """The end of a stream: its result, None when it was stopped before it had one."""

    value: Any = None

    @property
    def stopped(self) -> bool:
        return self.value is None
