"""Hugging Face ZeroGPU support: `spaces.GPU` where the `spaces` package exists (on a Space),
a do-nothing decorator everywhere else."""
from __future__ import annotations

from typing import Callable

try:  # pragma: no cover - only on Hugging Face Spaces
    import spaces

    def gpu(**options) -> Callable[[Callable], Callable]:
        return spaces.GPU(**options)
except ImportError:
    def gpu(**options) -> Callable[[Callable], Callable]:
        return lambda fn: fn
