"""DICOM reading behind `core.imaging`: single files, multi-frame files and series.

Import `core.imaging`, not this module. pydicom parses and decodes (its decoder plugins do the
compressed transfer syntaxes) and its pixel functions apply palette colour and Modality LUTs.
What leaves this module is `(pixels, meta)`: float32 pixels after the modality LUT (so CT values
are Hounsfield units) and a dict of technical values. No Dataset, and no patient, date,
institution or UID value, ever leaves it; file names never enter messages or logs either.
"""
from __future__ import annotations

import logging
import math
import struct
import zlib
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels import (apply_color_lut, apply_modality_lut, as_pixel_options,
                            convert_color_space, get_decoder)
from pydicom.pixels.processing import apply_voi
from pydicom.pixels.utils import _get_jpg_parameters  # pinned pydicom; no public twin
from pydicom.uid import (UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless)

from core.errors import ScanError
from core.imaging.formats import Limits, Meta
from core.imaging.gdcm import decode_with_gdcm
from core.imaging.window import VoiLut, Window

logger = logging.getLogger(__name__)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
CINE_MODALITIES = {"US", "IVUS", "XA", "RF", "ES", "XC", "GM", "SM", "OP", "DMS"}
VOI_FUNCTIONS = {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
# In-process decoder plugins, fastest first. GDCM is absent on purpose: see core/imaging/gdcm.py.
IN_PROCESS_PLUGINS = ("pylibjpeg", "pillow", "pyjpegls", "pydicom")
COLOR_PHOTOMETRICS = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}


# --------------------------------------------------------------------------------------------
# Reading

def read_dicom(path: Path, limits: Limits) -> tuple[np.ndarray, Meta]:
    """One DICOM file (single- or multi-frame) as float32 pixels plus technical metadata."""
    return dataset_pixels(read_dataset(path, limits), limits, path)


def read_dataset(path: Path, limits: Limits, *, header_only: bool = False) -> Dataset:
    _redact_pydicom_log()
    _refuse_deflate_bomb(path, limits)
    # force=True: files without the 128-byte preamble and "DICM" are common from older systems.
    return pydicom.dcmread(path, force=True, stop_before_pixels=header_only)


def _refuse_deflate_bomb(path: Path, limits: Limits) -> None:
    """pydicom inflates a Deflated data set in one unbounded call: measure it first, in chunks."""
    with open(path, "rb") as f:
        if f.read(132)[128:132] != b"DICM":
            return
    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise ScanError("This deflate-compressed DICOM lacks the header field needed to read it "
                        "safely. Export it uncompressed and upload that.")
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as f:
        f.seek(132 + 12 + int(group_length))
        while chunk := f.read(2**20):
            while chunk:
                total += len(inflater.decompress(chunk, 2**24))
                chunk = inflater.unconsumed_tail
                if total > limits.file_bytes:
                    raise ScanError("This deflate-compressed DICOM expands to more than "
                                    f"{limits.file_bytes // 2**20} MB: it was not opened. Export "
                                    "it uncompressed, or fewer frames, and upload that.")
            if inflater.eof:
                break


class _RedactValues(logging.Filter):
    """pydicom logs problems with element values verbatim, and a value may be a patient's name,
    ID or birth date: the record keeps its level and place, not its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = ("pydicom reported a problem with a DICOM element (details withheld: they "
                      "may quote patient data)")
        record.args = ()
        return True


def _redact_pydicom_log() -> None:
    pydicom_logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _RedactValues) for f in pydicom_logger.filters):
        pydicom_logger.addFilter(_RedactValues())


# --------------------------------------------------------------------------------------------
# Pixels

def dataset_pixels(ds: Dataset, limits: Limits, path: Path) -> tuple[np.ndarray, Meta]:
    """Decode `ds` (read from `path`), after checking its declared size against `limits`."""
    _require_image(ds)
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    frames, samples = _int_tag(ds, "NumberOfFrames", 1), _int_tag(ds, "SamplesPerPixel", 1)
    limits.check_image(rows, cols, frames, samples)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if samples not in (1, 3) or (samples == 3 and photometric not in COLOR_PHOTOMETRICS):
        raise ScanError(f"This DICOM stores its pixels as '{photometric or '?'}' with {samples} "
                        "samples each, which is not supported. Export it as greyscale or RGB.")
    ts = _transfer_syntax(ds)
    decoder = _decoder_for(ts)
    if not decoder.is_native and ts != RLELossless:
        _check_codestream_sizes(ds, rows, cols, frames)
    pixels = _decode(decoder, ds, ts, path)
    if pixels.ndim == (2 if samples == 1 else 3):
        pixels = pixels[None]  # one frame: give it the frame axis every Scan has

    meta = _technical_meta(ds, ts, photometric, frames)
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        meta["display_range"] = (0.0, float(np.iinfo(pixels.dtype).max))
    elif samples == 3:
        # pydicom (or the JPEG/JPEG 2000 codec) has already turned YCbCr into RGB.
        meta["display_range"] = (0.0, float(2 ** meta["bits_stored"] - 1))
    else:
        pixels, rescale = _modality_values(ds, pixels)
        meta.update(rescale)
        meta["windows"] = _windows(ds)
        meta["voi_luts"] = _voi_luts(ds)
        meta["inverted"] = photometric == "MONOCHROME1"
        unsigned = ds.get("PixelRepresentation", 0) == 0
        if not rescale["rescaled"] and unsigned and meta["bits_stored"] <= 8:
            meta["display_range"] = (0.0, float(2 ** meta["bits_stored"] - 1))
    return pixels.astype(np.float32, copy=False), meta


def _require_image(ds: Dataset) -> None:
    if any(k in ds for k in PIXEL_KEYWORDS):
        return
    kind = _text(ds, "Modality")
    if "DirectoryRecordSequence" in ds:
        hint = ("It is a DICOMDIR (an index of a CD or folder): upload the image files it lists, "
                "or a zip of the whole folder.")
    elif "Rows" in ds:
        hint = ("It describes an image, but the pixel data is missing or cut short: the file is "
                "damaged or incomplete. Export it again.")
    elif kind:
        hint = (f"Its modality is '{kind}', but it carries no pixel data: it may be a report, "
                "plan, waveform or a copy stripped of its pixels.")
    else:
        hint = "It may be a report, an index or a damaged file."
    raise ScanError(f"This DICOM file holds no image. {hint}")


def _int_tag(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, None)
    if value is None or value == "":
        if default is None:
            raise ScanError(f"This DICOM file lacks '{keyword}', so its image cannot be laid "
                            "out: the file is damaged or incomplete. Export it again.")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ScanError(f"This DICOM file's '{keyword}' is not a number: the file is damaged. "
                        "Export it again.") from None


def _check_codestream_sizes(ds: Dataset, rows: int, cols: int, frames: int) -> None:
    """Each compressed frame states its own size, and codecs allocate by that, not by the DICOM
    header: a frame claiming 65535 x 65535 inside a 64 x 64 image is a decompression bomb."""
    for frame in generate_frames(ds.PixelData, number_of_frames=frames):
        size = _codestream_size(frame)
        if size is not None and (size[0] > rows or size[1] > cols):
            raise ScanError(f"The compressed image data describes a larger picture ({size[1]} x "
                            f"{size[0]}) than the file's header ({cols} x {rows}): the file is "
                            "damaged, and was not decoded. Export it again.")


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) declared inside a JPEG 2000, JPEG or JPEG-LS codestream; None if unknown."""
    if frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:
        # SOC then SIZ (ISO/IEC 15444-1 A.5.1): Xsiz, Ysiz, XOsiz, YOsiz after Lsiz and Rsiz.
        width, height, x_offset, y_offset = struct.unpack(">4I", frame[8:24])
        return height - y_offset, width - x_offset
    info = _get_jpg_parameters(frame)  # pydicom's own SOF reader (JPEG and JPEG-LS)
    if info.get("height"):  # 0 means "given later by a DNL marker"
        return info["height"], info["width"]
    return None


def _transfer_syntax(ds: Dataset) -> UID:
    """The file's transfer syntax; for files without a file meta header, the encoding pydicom
    found while reading (which is all a decoder needs)."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        implicit, little = ds.original_encoding
        if little is None:
            raise ScanError("This file's DICOM encoding cannot be determined: it is damaged.")
        ts = ImplicitVRLittleEndian if implicit else (
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        if meta is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
    return UID(str(ts))


def _decoder_for(ts: UID) -> Any:
    """pydicom's decoder for `ts`, or advice when there is none or its plugins are missing."""
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise ScanError(f"This DICOM's images are stored as '{ts.name}', which this app cannot "
                        "decode (video formats such as MPEG-2, H.264 and HEVC are not "
                        "supported). Export still frames, uncompressed or as JPEG 2000, and "
                        "upload those.") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "none known"
        raise ScanError(f"This DICOM is compressed as '{ts.name}', and no decoder for it is "
                        "installed here. Export it uncompressed, or ask whoever runs this app to "
                        f"install a decoder plugin ({missing}).")
    return decoder


def _decode(decoder: Any, ds: Dataset, ts: UID, path: Path) -> np.ndarray:
    """Decode through pydicom's plugins, turning a decoder's failure into advice. YCbCr comes
    back as RGB."""
    try:
        pixels, photometric = _decode_with_plugins(decoder, ds, ts, path)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        if decoder.is_native:
            raise  # uncompressed data that does not fit its header: damaged, said by the caller
        logger.info("decoding %s failed: %s", ts.name, type(exc).__name__)
        missing = "; ".join(decoder.missing_dependencies) or "none known"
        raise ScanError(f"The '{ts.name}' image data in this DICOM could not be decoded by the "
                        f"installed decoders ({', '.join(decoder.available_plugins)}). The file is "
                        "damaged, or uses a variant that needs a decoder plugin not installed "
                        f"here ({missing}). Export it uncompressed and upload that.") from None
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        # Frame by frame: on long ultrasound loops this is twice as fast as all at once.
        pixels = convert_color_space(pixels, "YBR_FULL", "RGB", per_frame=pixels.ndim == 4)
    return pixels


def _decode_with_plugins(decoder: Any, ds: Dataset, ts: UID, path: Path
                         ) -> tuple[np.ndarray, str]:
    """Pixels and the colour space they came out in. Plugins are named one at a time rather
    than left to pydicom's own order: the fastest go first (measured: pylibjpeg's OpenJPEG
    beats GDCM on JPEG 2000, Pillow's libjpeg-turbo beats it three-fold on baseline JPEG), and
    GDCM, which can abort the process on a corrupt stream, runs only in a child process and
    only for syntaxes no in-process plugin reads (JPEG Lossless, mostly)."""
    options = as_pixel_options(ds)
    if decoder.is_native:
        pixels, decoded = decoder.as_array(ds, raw=True, **options)
        return pixels, str(decoded.get("photometric_interpretation", ""))
    plugins = [p for p in IN_PROCESS_PLUGINS if p in decoder.available_plugins]
    for plugin in plugins:
        try:
            pixels, decoded = decoder.as_array(ds, raw=True, decoding_plugin=plugin, **options)
            return pixels, str(decoded.get("photometric_interpretation", ""))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a plugin's failure (a Rust panic is no Exception):
            logger.info("the %s decoder failed: %s", plugin, type(exc).__name__)
    if not plugins and "gdcm" in decoder.available_plugins:
        return decode_with_gdcm(path, str(ts)), "RGB"
    raise RuntimeError(f"no installed plugin decoded {ts.name}")


def _modality_values(ds: Dataset, pixels: np.ndarray) -> tuple[np.ndarray, Meta]:
    """Stored values -> modality values (Hounsfield units for CT) via the Modality LUT or the
    rescale slope/intercept, which enhanced multi-frame files keep per frame."""
    if ds.get("ModalityLUTSequence"):
        out = apply_modality_lut(pixels, ds).astype(np.float32)
        units = _text(ds.ModalityLUTSequence[0], "ModalityLUTType")
        return out, {"rescaled": True, "units": None if units == "US" else units}
    rescales = [_rescale(ds, frame) for frame in range(len(pixels))]
    out = pixels.astype(np.float32)
    if all(r is None for r in rescales):
        return out, {"rescaled": False, "units": None}
    for frame, rescale in enumerate(rescales):
        if rescale is not None and rescale[:2] != (1.0, 0.0):
            slope, intercept, _ = rescale
            out[frame] *= slope
            out[frame] += intercept
    units = next(r[2] for r in rescales if r is not None)
    if units is None and _text(ds, "Modality") == "CT":
        units = "HU"  # the CT Image IOD defines rescaled values as Hounsfield units
    return out, {"rescaled": True, "units": units}


def _rescale(ds: Dataset, frame: int) -> tuple[float, float, str | None] | None:
    source = ds if "RescaleSlope" in ds else _functional_item(
        ds, "PixelValueTransformationSequence", frame)
    if source is None or "RescaleSlope" not in source:
        return None
    slope = _floats(source.get("RescaleSlope"))
    intercept = _floats(source.get("RescaleIntercept", 0.0))
    if len(slope) != 1 or len(intercept) != 1 or slope[0] == 0:
        logger.info("ignoring an invalid rescale slope/intercept")
        return None
    units = _text(source, "RescaleType")
    return slope[0], intercept[0], None if units == "US" else units  # US: "unspecified"


def _functional_item(ds: Dataset, keyword: str, frame: int) -> Dataset | None:
    """Enhanced multi-frame objects keep per-frame attributes in functional groups: the frame's
    own group first, then the shared one."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq and len(seq) > index:
            inner = seq[index].get(keyword)
            if inner:
                return inner[0]
    return None


def _windows(ds: Dataset) -> list[Window]:
    source = ds if "WindowCenter" in ds else _functional_item(ds, "FrameVOILUTSequence", 0)
    if source is None:
        return []
    function = (_text(source, "VOILUTFunction") or _text(ds, "VOILUTFunction") or "LINEAR")
    if function not in VOI_FUNCTIONS:
        function = "LINEAR"
    centers = _floats(source.get("WindowCenter"))
    widths = _floats(source.get("WindowWidth"))
    explanations = source.get("WindowCenterWidthExplanation") or []
    explanations = [explanations] if isinstance(explanations, str) else list(explanations)
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths)):
        if width >= (1 if function == "LINEAR" else 1e-12):  # PS3.3 C.11.2.1.2: LINEAR needs >= 1
            label = str(explanations[i]).strip()[:64] if i < len(explanations) else ""
            windows.append(Window(center, width, function, label))
    return windows


def _voi_luts(ds: Dataset) -> list[VoiLut]:
    """The file's VOI LUTs, each tabulated through pydicom's own `apply_voi` (which knows the
    LUT Data encodings) and applied later by `core.imaging.window`."""
    luts = []
    for index, item in enumerate(ds.get("VOILUTSequence") or []):
        try:
            n_entries, first, bits = (int(v) for v in item.LUTDescriptor)
            n_entries = n_entries or 2**16
            table = apply_voi(np.arange(first, first + n_entries), ds, index=index)
            luts.append(VoiLut(first, np.asarray(table, dtype=np.float32), bits,
                               (_text(item, "LUTExplanation") or "")[:64]))
        except Exception as exc:  # a broken LUT should not cost the image: it falls back
            logger.info("ignoring an unreadable VOI LUT: %s", type(exc).__name__)
    return luts


def _technical_meta(ds: Dataset, ts: UID, photometric: str, frames: int) -> Meta:
    modality = _text(ds, "Modality")
    measures = ds if "PixelSpacing" in ds else _functional_item(ds, "PixelMeasuresSequence", 0)
    spacing = _floats(measures.get("PixelSpacing")) if measures is not None else []
    if not spacing:
        spacing = _floats(ds.get("ImagerPixelSpacing"))  # projection radiographs: at the detector
    between = _floats(ds.get("SpacingBetweenSlices")) or _floats(
        (measures or ds).get("SliceThickness"))
    return {
        "source_format": "DICOM",
        "modality": modality,
        "body_part": _text(ds, "BodyPartExamined"),
        "photometric": photometric or None,
        "frame_label": "frame" if frames == 1 or modality in CINE_MODALITIES else "slice",
        "pixel_spacing": tuple(spacing) if len(spacing) == 2 and min(spacing) > 0 else None,
        "slice_spacing": between[0] if len(between) == 1 and between[0] > 0 else None,
        "bits_stored": _int_tag(ds, "BitsStored", _int_tag(ds, "BitsAllocated", 8)),
        "compression": ts.name if ts.is_compressed else None,
    }


def _floats(value: Any) -> list[float]:
    """A DS/FD value (one or many) as finite floats; [] when absent or unreadable."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        return []
    return out if all(math.isfinite(v) for v in out) else []


def _text(ds: Dataset, keyword: str) -> str | None:
    """A short coded string (Modality, BodyPartExamined, ...). Only ever called with technical
    keywords: identifying ones are never read."""
    value = ds.get(keyword)
    if not isinstance(value, str):
        return None
    return value.strip().upper()[:64] or None


# --------------------------------------------------------------------------------------------
# Series: several files of one acquisition, ordered along the slice normal.

def read_dicom_series(paths: list[Path], limits: Limits) -> tuple[np.ndarray, Meta]:
    """Stack the image files of the largest series among `paths`, ordered by slice position.
    Headers are read first (no pixel data), so the limits apply to the whole stack up front."""
    headers = [(p, read_dataset(p, limits, header_only=True)) for p in paths]
    images = [(p, ds) for p, ds in headers if "Rows" in ds and "Columns" in ds]
    if not images:
        raise ScanError("None of these DICOM files holds an image (they may be reports or a "
                        "DICOMDIR index). Upload the image files of one series.")
    group = _largest_series(images)
    ordered, spacing = _order_slices(group)
    counts = [_int_tag(ds, "NumberOfFrames", 1) for _, ds in ordered]
    first = ordered[0][1]
    limits.check_image(_int_tag(first, "Rows"), _int_tag(first, "Columns"), sum(counts),
                       _int_tag(first, "SamplesPerPixel", 1))

    stack: np.ndarray | None = None
    metas: list[Meta] = []
    start = 0
    for (path, _), count in zip(ordered, counts):
        pixels, meta = dataset_pixels(read_dataset(path, limits), limits, path)
        if stack is None:
            stack = np.empty((sum(counts),) + pixels.shape[1:], dtype=np.float32)
        if pixels.shape[1:] != stack.shape[1:] or len(pixels) != count:
            raise ScanError("The files of this series do not share one image size. Upload the "
                            "files of a single series.")
        stack[start:start + count] = pixels
        start += count
        metas.append(meta)
    meta = dict(metas[len(metas) // 2])  # the middle slice is shown first: its window fits it
    meta.update(source_format="DICOM series", frame_label="slice")
    if spacing is not None:
        meta["slice_spacing"] = spacing
    left_out = len(paths) - len(ordered)
    if left_out:
        meta["notes"] = [f"{left_out} file(s) without an image, or from another series or "
                         "image size, were left out"]
    return stack, meta


def _largest_series(images: list[tuple[Path, Dataset]]) -> list[tuple[Path, Dataset]]:
    """Uploads of a study folder mix series (localisers, reformats): keep the biggest one with
    one image size. UIDs are used here to group and never leave this function."""
    groups: dict[tuple, list[tuple[Path, Dataset]]] = {}
    for path, ds in images:
        key = (str(ds.get("SeriesInstanceUID", "")), ds.get("Rows"), ds.get("Columns"),
               ds.get("SamplesPerPixel", 1))
        groups.setdefault(key, []).append((path, ds))
    return max(groups.values(), key=len)


def _order_slices(group: list[tuple[Path, Dataset]]
                  ) -> tuple[list[tuple[Path, Dataset]], float | None]:
    """Sort by position along the slice normal (Image Position . (row x column direction)),
    else by Instance Number, else keep the upload order; also return the slice spacing."""
    positions = [_slice_position(ds) for _, ds in group]
    instance = [_floats(ds.get("InstanceNumber")) for _, ds in group]
    numbers = [n[0] if n else math.inf for n in instance]
    if all(p is not None for p in positions):
        order = sorted(range(len(group)), key=lambda i: (positions[i], numbers[i], i))
        steps = [positions[b] - positions[a] for a, b in zip(order, order[1:])]
        steps = [s for s in steps if s > 1e-6]
        return [group[i] for i in order], (median(steps) if steps else None)
    order = sorted(range(len(group)), key=lambda i: (numbers[i], i))
    return [group[i] for i in order], None


def _slice_position(ds: Dataset) -> float | None:
    orientation = _floats(ds.get("ImageOrientationPatient"))
    position = _floats(ds.get("ImagePositionPatient"))
    if len(orientation) != 6 or len(position) != 3:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, position))
