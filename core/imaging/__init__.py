"""Medical image input: files -> `Scan` (float pixels + safe technical metadata) -> RGB picture.

    scan = load_scan(path)                    # DICOM, PNG/JPEG/TIFF/BMP, NIfTI, MGH, MHA, NRRD, zip
    scan = load_series([path, path, ...])     # the files of one DICOM series, in any order
    picture = to_rgb(scan, window="lung", index=40)
    suggest_modality(scan)                    # "CT", "X-ray", ... or None

Formats are recognised by content, never by extension alone. DICOM pixels go through the modality
LUT (CT values become Hounsfield units) and keep the file's own windows and VOI LUTs for display;
MONOCHROME1 is inverted only when drawn. Every failure, whatever the bytes, is a `ScanError` whose
message a clinician can act on, and limits are checked from headers before any pixel data is
decoded. Patient names, IDs, dates, institutions and file names are never kept, logged or shown.
The readers live in `dicom.py` and `formats.py` of this package, the windowing maths on arrays
in `window.py`; this module is the whole API.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from core.errors import ScanError
from core.presets import modality_ids
from core.imaging.dicom import read_dicom, read_dicom_series
from core.imaging.formats import (MAX_FILE_BYTES, MAX_FRAMES, MAX_PIXELS_PER_FRAME,
                                  MAX_TOTAL_SAMPLES, MAX_UNZIPPED_BYTES, MAX_ZIP_MEMBERS,
                                  PILLOW_FORMATS, Limits, Meta, check_volume, read_head, read_itk,
                                  read_pillow, sniff, unzip_members)
from core.imaging.neuro import (PAIR_HEADER, gzip_holds, not_an_image, read_neuro,
                                sniff_neuro)
from core.imaging.window import (WINDOW_PRESETS, VoiLut, Window, apply_voi_lut, apply_window,
                                 levels_to_rgb, robust_range)

__all__ = ["APP_MODALITIES", "Limits", "MAX_FILE_BYTES", "MAX_FRAMES", "MAX_PIXELS_PER_FRAME",
           "MAX_TOTAL_SAMPLES", "MAX_UNZIPPED_BYTES", "MAX_ZIP_MEMBERS", "Scan", "ScanError",
           "VoiLut", "WINDOW_PRESETS", "Window", "apply_voi_lut", "apply_window", "frame_index",
           "labelled_zip", "load_scan", "load_series", "resolve_window", "robust_range",
           "suggest_modality", "to_rgb"]

logger = logging.getLogger(__name__)

APP_MODALITIES = modality_ids()  # the one vocabulary: assets/modalities.json

# DICOM Modality (0008,0060) defined terms (PS3.3 C.7.3.1.1.1) -> the app's modality names.
_DICOM_TO_APP = {
    **dict.fromkeys(["CR", "DX", "MG", "RG", "XA", "RF", "PX", "IO", "DF", "DS"], "X-ray"),
    "CT": "CT", "MR": "MRI", "US": "ultrasound", "IVUS": "ultrasound",
    "OP": "fundus", "OPT": "OCT", "OCT": "OCT", "IVOCT": "OCT",
    "SM": "histopathology", "GM": "histopathology", "ES": "endoscopy", "DMS": "dermoscopy",
    **dict.fromkeys(["PT", "NM", "XC", "OT", "RTIMAGE", "TG", "BI", "OPM", "SC"], "other"),
}

WindowSpec = Union[str, int, tuple[float, float], Window, None]

NOT_AN_IMAGE = ("This file is not a medical image this app can read. Upload DICOM (.dcm, with or "
                "without an extension), PNG, JPEG, TIFF, BMP, NIfTI (.nii, .nii.gz), Analyze "
                "(.hdr with its .img), MGH (.mgh, .mgz), MetaImage (.mha), NRRD (.nrrd), or a zip "
                "of one DICOM series.")
DAMAGED = ("This file could not be read: it looks damaged or incomplete (for example cut short "
           "during export or upload). Export it again from the source system and upload the new "
           "copy.")
TOO_BIG_FOR_MEMORY = ("This scan is too large for the memory available here. Upload fewer "
                      "slices or a downscaled copy.")


@dataclass(frozen=True, eq=False, repr=False)
class Scan:
    """Pixels as float32, (frames, rows, cols) for grey or (frames, rows, cols, 3) for colour,
    plus technical metadata only: nothing here identifies a patient, and no reader object
    (such as a pydicom Dataset) is kept. `pixels` is read-only: copy it to change it."""

    pixels: np.ndarray
    source_format: str
    modality: str | None = None            # DICOM Modality code: "CT", "CR", "US", ...
    body_part: str | None = None           # DICOM Body Part Examined, e.g. "CHEST"
    photometric: str | None = None         # as stored; YCbCr and palette are drawn as RGB
    frame_label: str = "frame"             # "slice" for volumes and series
    pixel_spacing: tuple[float, float] | None = None   # (row, column) in mm
    slice_spacing: float | None = None     # mm between slices
    windows: tuple[Window, ...] = ()       # the file's own windows, in the file's order
    voi_luts: tuple[VoiLut, ...] = ()      # the file's own VOI LUTs (preferred over windows)
    display_range: tuple[float, float] | None = None   # full range of 8-bit and colour data
    rescaled: bool = False                 # modality LUT / rescale slope+intercept applied
    units: str | None = None               # e.g. "HU" after a CT rescale
    inverted: bool = False                 # MONOCHROME1: low values are drawn white
    bits_stored: int | None = None
    compression: str | None = None         # the DICOM transfer syntax, when compressed
    value_range: tuple[float, float] = (0.0, 0.0)
    notes: tuple[str, ...] = field(default=())   # what the reader changed or left out
    volumes: int = 1                       # a 4-D file's volumes (a time series, echoes...)
    volume: int = 0                        # the one read, counted from 0

    def __post_init__(self) -> None:
        pixels = self.pixels
        grey = pixels.ndim == 3
        if pixels.dtype != np.float32 or not (grey or (pixels.ndim == 4 and pixels.shape[3] == 3)):
            raise ValueError("Scan.pixels must be float32 (frames, rows, cols[, 3]), got "
                             f"{pixels.dtype} {pixels.shape}")
        pixels.flags.writeable = False
        for name in ("windows", "voi_luts", "notes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def n_frames(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 4

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[2])

    @cached_property
    def auto_range(self) -> tuple[float, float]:
        """The display range used when the file brings none: a robust percentile window."""
        return robust_range(self.pixels)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the UI; every value in it is technical."""
        return {
            "format": self.source_format,
            "modality": self.modality,
            "suggested_modality": suggest_modality(self),
            "body_part": self.body_part,
            "frames": self.n_frames,
            "frame_label": self.frame_label,
            "volumes": self.volumes,
            "volume": self.volume,
            "rows": self.rows,
            "columns": self.columns,
            "color": self.is_color,
            "photometric": self.photometric,
            "bits_stored": self.bits_stored,
            "compression": self.compression,
            "pixel_spacing_mm": list(self.pixel_spacing) if self.pixel_spacing else None,
            "slice_spacing_mm": self.slice_spacing,
            "rescaled": self.rescaled,
            "units": self.units,
            "inverted": self.inverted,
            "windows": [w._asdict() for w in self.windows],
            "voi_luts": [lut.explanation for lut in self.voi_luts],
            "value_range": list(self.value_range),
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        shape = " x ".join(str(s) for s in self.pixels.shape)
        return (f"Scan({self.source_format}, modality={self.modality!r}, {shape}, "
                f"units={self.units!r}, windows={len(self.windows)}, "
                f"voi_luts={len(self.voi_luts)}, inverted={self.inverted})")


# --------------------------------------------------------------------------------------------
# Loading

def load_scan(path: str | os.PathLike[str], limits: Limits | None = None,
              volume: int = 0) -> Scan:
    """Read one file (a zip is read as one DICOM series). Returns a Scan or raises ScanError,
    whatever the file holds. `volume`: which volume of a 4-D file (counted from 0) is read;
    only that one is."""
    limits = limits or Limits()
    with _as_scan_error():
        return _one_volume(_load_file(Path(path), limits, volume), volume)


def load_series(paths: Iterable[str | os.PathLike[str]], limits: Limits | None = None,
                volume: int = 0) -> Scan:
    """Read several uploaded files as one DICOM series, ordered by slice position. Files that
    are not images of the largest series (reports, DICOMDIR, localisers) are left out, with a
    note; a single path is read like `load_scan`."""
    limits = limits or Limits()
    with _as_scan_error():
        paths = [Path(p) for p in paths]
        if not paths:
            raise ScanError("No files were given. Upload the files of one series.")
        if len(paths) == 1:
            return _one_volume(_load_file(paths[0], limits, volume), volume)
        if len(paths) > limits.zip_members:
            raise ScanError(f"{len(paths)} files were uploaded; the limit is "
                            f"{limits.zip_members}. Upload one series at a time.")
        return _one_volume(_load_many(paths, limits, volume), volume)


def _one_volume(scan: Scan, volume: int) -> Scan:
    """The scan read, when it has the volume asked for (files of one volume are read whole,
    and only volume 0 of them exists)."""
    check_volume(volume, scan.volumes)
    return scan


def _load_file(path: Path, limits: Limits, volume: int = 0) -> Scan:
    if not path.is_file():
        raise ScanError("The uploaded file could not be found (it may have expired). Upload it "
                        "again.")
    limits.check_file_size(path.stat().st_size)
    fmt = _sniff(path)
    if fmt is None:
        raise ScanError(NOT_AN_IMAGE, key="scan_not_an_image")
    if fmt == "zip":  # a zip inside it is left out by _load_many, never opened
        with tempfile.TemporaryDirectory(prefix="scan-zip-") as folder:
            members = unzip_members(path, Path(folder), limits)
            return _load_many([copy for _, copy in members], limits, volume)
    return _make_scan(*_read(path, fmt, limits, volume))


def _sniff(path: Path) -> str | None:
    head = read_head(path)
    return sniff(head) or sniff_neuro(head)


def _read(path: Path, fmt: str, limits: Limits, volume: int = 0) -> tuple[np.ndarray, Meta]:
    if fmt == "dicom":
        return read_dicom(path, limits)
    if fmt in PILLOW_FORMATS:
        return read_pillow(path, fmt, limits)
    if fmt in ("nifti", "mgh"):
        return read_neuro(path, fmt, limits, volume=volume)
    if fmt == "gzip":  # read only when it holds a NIfTI volume or an MGH one (.mgz)
        inside = gzip_holds(path)
        if inside is None:
            raise ScanError("This is a compressed (.gz) file that does not hold a NIfTI or MGH "
                            "volume. Decompress it and upload the image inside.")
        return read_neuro(path, inside, limits, compressed=True, volume=volume)
    if fmt == "pair-header":
        raise ScanError(PAIR_HEADER, key="scan_pair_header")
    if fmt in ("tracks", "surface"):
        raise not_an_image(fmt)
    return read_itk(path, fmt, limits, volume)


def labelled_zip(path: str | os.PathLike[str], folder: str | os.PathLike[str],
                 limits: Limits | None = None, with_names: bool = False) -> list[tuple]:
    """The files of a zip of class folders (`glioma/a.dcm`, `test/normal/b.png`, ...), copied
    into `folder` under made-up names, each with its class: the name of the folder holding it
    ('' for files at the top). The files are not read; `load_scan` each one. `with_names`
    adds each file's path inside the zip (to show the person who uploaded it; never log it)."""
    limits = limits or Limits()
    path = Path(path)
    with _as_scan_error():
        if sniff(read_head(path)) != "zip":
            raise ScanError("Upload a .zip file holding one folder per class.")
        members = unzip_members(path, Path(folder), limits)
    return [(name.rstrip("/").rsplit("/", 1)[0].rsplit("/", 1)[-1] if "/" in name else "", copy)
            + ((name,) if with_names else ()) for name, copy in members]


def _load_many(paths: list[Path], limits: Limits, volume: int = 0) -> Scan:
    """Several files (an upload or a zip's members): the DICOM files form a series; failing
    that, a single image among them is read on its own."""
    kinds = []
    for path in paths:
        limits.check_file_size(path.stat().st_size)
        kinds.append(_sniff(path))
    dicom = [p for p, k in zip(paths, kinds) if k == "dicom"]
    headers = [p for p, k in zip(paths, kinds) if k == "pair-header"]
    if headers and not dicom:
        return _make_scan(*_read_pair(headers, [p for p, k in zip(paths, kinds) if k is None],
                                      limits, volume))
    if len(dicom) > 1:
        pixels, meta = read_dicom_series(dicom, limits)
    elif len(dicom) == 1:
        pixels, meta = read_dicom(dicom[0], limits)
    else:
        images = [(p, k) for p, k in zip(paths, kinds) if k not in (None, "zip")]
        if len(images) != 1:
            raise ScanError("These files hold no DICOM series, nor a single image. Upload the "
                            "DICOM files of one series, or one image at a time.")
        pixels, meta = _read(*images[0], limits, volume)
    skipped = len(paths) - (len(dicom) or 1)
    if skipped:
        meta.setdefault("notes", []).append(f"{skipped} file(s) that are not DICOM were left out")
    return _make_scan(pixels, meta)


def _read_pair(headers: list[Path], data: list[Path], limits: Limits, volume: int = 0
               ) -> tuple[np.ndarray, Meta]:
    """An Analyze or NIfTI pair: one header (.hdr) and its voxels (.img, which has no
    signature: the one file beside it that is nothing else)."""
    if len(headers) > 1 or len(data) > 1:
        raise ScanError("These files hold more than one Analyze or NIfTI pair. Upload one pair "
                        "(its .hdr and .img files) at a time.")
    if not data:
        raise ScanError(PAIR_HEADER, key="scan_pair_header")
    return read_neuro(headers[0], "pair-header", limits, pair_data=data[0], volume=volume)


def _make_scan(pixels: np.ndarray, meta: Meta) -> Scan:
    notes = list(meta.pop("notes", []))
    low, high = float(pixels.min()), float(pixels.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        # Float formats (NIfTI, TIFF, float DICOM) may hold NaN or infinity; the model cannot.
        finite = pixels[np.isfinite(pixels)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=high, neginf=low)
        low, high = float(pixels.min()), float(pixels.max())
        notes.append("values that were not numbers (NaN or infinity) were replaced")
    for key in ("windows", "voi_luts"):
        meta[key] = tuple(meta.get(key, ()))
    return Scan(pixels=pixels, value_range=(low, high), notes=tuple(notes), **meta)


@contextmanager
def _as_scan_error() -> Iterator[None]:
    """The promise of `load_scan`: whatever the bytes, a Scan or a ScanError. Library messages
    can quote the file, even patient data, so only the exception's type and place are logged.
    Readers' warnings are recorded rather than printed, for the same reason; `catch_warnings`
    is process-wide, which at worst lets another thread's warning through meanwhile."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        if caught:
            logger.debug("readers warned %d time(s): %s", len(caught),
                         sorted({w.category.__name__ for w in caught}))
    except (ScanError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except MemoryError:
        raise ScanError(TOO_BIG_FOR_MEMORY, key="scan_too_big") from None
    except BaseException as exc:  # the promise above. BaseException: decoders written in Rust
        # (pylibjpeg-rle) raise pyo3's PanicException, which is not an Exception.
        logger.warning("unreadable upload: %s raised in %s", type(exc).__name__, _origin(exc))
        raise ScanError(DAMAGED, key="scan_damaged") from None


def _origin(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_globals.get('__name__', '?')}.{tb.tb_frame.f_code.co_name}"


# --------------------------------------------------------------------------------------------
# Display: which frame and which window a Scan is drawn with (the maths is in window.py)

def to_rgb(scan: Scan, window: WindowSpec = None, index: int | None = None) -> Image.Image:
    """One frame or slice (the middle one by default) as an 8-bit RGB picture.

    `window`: None uses the file's own VOI LUT or first window, else the full range of 8-bit and
    colour data, else a robust 0.5-99.5 percentile window; a `WINDOW_PRESETS` name; an int, the
    file's window of that number; a (centre, width) pair; or a `Window`."""
    frame = scan.pixels[frame_index(scan, index)]
    if window is None:
        levels = _default_levels(scan, frame)
    else:
        levels = apply_window(frame, resolve_window(scan, window))
    return levels_to_rgb(levels, scan.inverted)


def _default_levels(scan: Scan, frame: np.ndarray) -> np.ndarray:
    if scan.voi_luts:
        return apply_voi_lut(frame, scan.voi_luts[0])
    if scan.windows:
        return apply_window(frame, scan.windows[0])
    low, high = scan.display_range or scan.auto_range
    return apply_window(frame, Window((low + high) / 2, high - low))


def frame_index(scan: Scan, index: int | None) -> int:
    """The frame (slice) to draw: `index`, checked to be one of the scan's (0 to n - 1), or the
    middle one when None. The one check of a frame number, for the app's pages and the API."""
    n = scan.n_frames
    if index is None:
        return n // 2
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        label = scan.frame_label
        raise ScanError(f"There is no {label} {index!r}: this scan has {n} {label}s "
                        f"(0 to {n - 1}).", key="scan_no_frame", label=label, index=index, n=n,
                        last=n - 1)
    return int(index)


def resolve_window(scan: Scan, window: WindowSpec) -> Window:
    """Turn any accepted `window` argument into a Window (presets and pairs are LINEAR_EXACT:
    plain centre +/- width/2)."""
    if isinstance(window, Window):
        resolved = window
    elif isinstance(window, str):
        key = " ".join(window.lower().replace("_", " ").replace("-", " ").split())
        if key not in WINDOW_PRESETS:
            raise ScanError(f"Unknown window '{window}'. Choose one of: "
                            f"{', '.join(WINDOW_PRESETS)}, or give a centre and width.")
        resolved = WINDOW_PRESETS[key]
    elif isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        if not 0 <= window < len(scan.windows):
            raise ScanError(f"This file defines {len(scan.windows)} window(s); there is no "
                            f"window number {window}.")
        resolved = scan.windows[int(window)]
    elif isinstance(window, (tuple, list)) and len(window) == 2:
        try:
            resolved = Window(float(window[0]), float(window[1]))
        except (TypeError, ValueError):
            raise ScanError("A window's centre and width must be numbers.") from None
    else:
        raise ScanError("A window is a preset name, the number of one of the file's windows, or "
                        "a (centre, width) pair.")
    if not (math.isfinite(resolved.center) and math.isfinite(resolved.width)
            and resolved.width > 0):
        raise ScanError("A window needs a finite centre and a width greater than zero.")
    return resolved


def suggest_modality(scan: Scan) -> str | None:
    """The app's modality name for this file when the file says it (DICOM Modality), else None."""
    code = (scan.modality or "").upper()
    if code == "XC" and scan.body_part == "SKIN":
        return "dermoscopy"  # external-camera photographs of skin
    return _DICOM_TO_APP.get(code)
