"""Where and how precisely the frozen towers compute: the device, CPU threads, bfloat16 autocast.

Weights always stay fp32; bf16 is only ever an autocast region around the frozen towers, and
everything shown to a person (logits, softmax, losses) is computed with autocast switched off.
"""
from __future__ import annotations

import contextlib
import os

import torch

from core.errors import BackboneUnavailable

PRECISION_ENV = "BIOMED_DPT_PRECISION"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit choice is checked, not silently replaced."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackboneUnavailable("A GPU was requested (--device cuda) but none is available. "
                                  "Use --device cpu.")
    return device


def configure_cpu_threads() -> int:
    """Use every core this process may run on, unless the user chose a count (OMP_NUM_THREADS)."""
    if "OMP_NUM_THREADS" not in os.environ:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, cores))
    return torch.get_num_threads()


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matrix work is native (fast) here, not emulated (slow on CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps is None:
        return False
    try:
        found = caps()
    except Exception:  # capability probing must never break loading
        return False
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware has native bfloat16, else 'fp32'. The environment
    variable BIOMED_DPT_PRECISION (fp32 or bf16) decides 'auto' instead of the hardware, so a
    test run can force either compute path on any machine (bf16 runs, emulated, everywhere)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
    if precision == "auto":
        forced = os.environ.get(PRECISION_ENV, "").strip().lower()
        if forced in ("fp32", "bf16"):
            return forced
        if forced:
            raise ValueError(f"{PRECISION_ENV} must be fp32 or bf16, not {forced!r}")
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off: logits, softmax and losses, every number shown, in fp32."""
    return torch.autocast(device_type=device.type, enabled=False)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the frozen towers; weights stay fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
