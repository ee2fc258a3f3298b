"""Windowing behind `core.imaging`: how stored values become grey levels and an 8-bit picture.

Pure functions on arrays, in the manner of pydicom's `pixels/processing.py`: values and a
`Window` or `VoiLut` in, display levels in [0, 1] out, then `levels_to_rgb` for the picture.
Nothing here reads a file or knows a `Scan`; `core.imaging.to_rgb` chooses the frame and the
window, and re-exports these names.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image


class Window(NamedTuple):
    """A VOI window: the value at `center` maps to mid-grey, `width` spans black to white.

    `function` is the DICOM VOI LUT Function: LINEAR (the DICOM default, PS3.3 C.11.2.1.2),
    LINEAR_EXACT (plain center +/- width/2) or SIGMOID."""

    center: float
    width: float
    function: str = "LINEAR_EXACT"
    explanation: str = ""


class VoiLut(NamedTuple):
    """A DICOM VOI LUT: stored value `first_mapped + i` displays as `values[i] / (2**bits - 1)`."""

    first_mapped: int
    values: np.ndarray
    bits: int
    explanation: str = ""


# CT windows in Hounsfield units, (centre, width), as listed by Radiopaedia's "Windowing (CT)"
# article (radiopaedia.org/articles/windowing-ct): brain W80 L40; subdural W130-300 L50-100
# (75/215 sits inside both ranges); stroke W40 L40 (the narrower W8 L32 is also quoted); lungs
# W1500 L-600; mediastinum W350 L50; soft tissues W350-400 L20-60; liver W150 L30; bone W1800 L400.
WINDOW_PRESETS: dict[str, Window] = {
    "brain": Window(40, 80),
    "subdural": Window(75, 215),
    "stroke": Window(40, 40),
    "lung": Window(-600, 1500),
    "mediastinum": Window(50, 350),
    "soft tissue": Window(40, 400),
    "liver": Window(30, 150),
    "bone": Window(400, 1800),
}


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Display levels in [0, 1] (float32) for `values` under a VOI window, following DICOM
    PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT) and C.11.2.1.3 (SIGMOID)."""
    x = values.astype(np.float32, copy=True)
    center, width = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        x -= center
        x *= -4.0 / width
        with np.errstate(over="ignore"):
            np.exp(x, out=x)
        x += 1.0
        return np.reciprocal(x, out=x)
    if window.function == "LINEAR":
        # DICOM's LINEAR shifts centre and width by 0.5 and 1 so integer data splits evenly.
        if width <= 1:
            return (x > center - 0.5).astype(np.float32)
        center, width = center - 0.5, width - 1.0
    x -= center
    x /= width
    x += 0.5
    return np.clip(x, 0.0, 1.0, out=x)


def apply_voi_lut(values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """Display levels in [0, 1] through a DICOM VOI LUT: values below the first mapped value
    take the first entry, values past the table take the last (PS3.3 C.11.2.1.1)."""
    index = values.astype(np.int64) - lut.first_mapped
    np.clip(index, 0, len(lut.values) - 1, out=index)
    levels = lut.values[index]
    levels /= np.float32(2 ** lut.bits - 1)
    return levels


def robust_range(pixels: np.ndarray, low: float = 0.5, high: float = 99.5,
                 max_samples: int = 1_000_000) -> tuple[float, float]:
    """The 0.5th-99.5th percentile range: a window for data that brings none (MR without
    windows, NIfTI, 16-bit PNG) that ignores a few extreme pixels. Large scans are sampled on a
    regular grid, which moves the percentiles negligibly and keeps this fast."""
    step = max(1, math.ceil(math.sqrt(pixels.size / max_samples)))
    sample = pixels[:, ::step, ::step]
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        lo, hi = float(pixels.min()), float(pixels.max())
    if hi <= lo:
        return lo - 0.5, lo + 0.5  # a constant image: draw it mid-grey
    return lo, hi


def levels_to_rgb(levels: np.ndarray, inverted: bool = False) -> Image.Image:
    """An 8-bit RGB picture of display levels in [0, 1], shaped (rows, cols) for grey or
    (rows, cols, 3) for colour, each rounded to the nearest of 256 steps; `inverted` draws low
    values white (MONOCHROME1). `levels` is overwritten: the apply_* functions return fresh
    arrays, and a 2000 x 2000 radiograph is not copied again."""
    if inverted:
        np.subtract(1.0, levels, out=levels)
    levels *= 255.0
    levels += 0.5
    grey_or_rgb = levels.astype(np.uint8)
    if levels.ndim == 3:
        return Image.fromarray(grey_or_rgb, "RGB")
    return Image.fromarray(grey_or_rgb, "L").convert("RGB")
