"""NIfTI-1, NIfTI-2, Analyze 7.5 pairs and FreeSurfer MGH/MGZ through nibabel, the field's own
reader (MIT), behind `core.imaging`.

Import `core.imaging`, not this module. As with the other readers: the limits are checked from
the header before any voxel is read, and the result is `(pixels, meta)` with `pixels` float32
(slices, rows, cols) or (slices, rows, cols, 3). Volumes are turned to the orientation of axial
DICOM (the patient's right on the image's left, anterior at the top, slices from foot to head)
from the file's affine, as SimpleITK's `DICOMOrient(image, "LPS")` does. Values are nibabel's:
scale slope and intercept applied; NaN voxels are left to `core.imaging` (they become 0, with
a note). A 4-D file shows its first volume, read alone.

A file that nibabel reads but that is not an image to classify (a CIFTI matrix) is named as
what it is; a file is called damaged only when its data really is cut short or corrupt.
"""
from __future__ import annotations

import gzip
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ScanError
from core.imaging.formats import (HEAD_BYTES, Limits, Meta, check_volume, named_link, positive,
                                  volume_notes)

# The magic of each single file and pair header; Analyze has none (its header is 348 bytes).
NIFTI1_SINGLE, NIFTI1_PAIR = b"n+1\x00", b"ni1\x00"
NIFTI2_SINGLE, NIFTI2_PAIR = b"n+2\x00", b"ni2\x00"
MGH_HEADER_BYTES = 284
MGH_TYPES = {0: 1, 1: 4, 3: 4, 4: 2}  # MRI_UCHAR, MRI_INT, MRI_FLOAT, MRI_SHORT -> bytes
GZIP_MAX_RATIO = 1100  # deflate cannot expand data much past 1032:1
CIFTI_INTENTS = range(3000, 3100)  # NIFTI_INTENT_CONNECTIVITY_* (CIFTI-2)
LABELS = {"nifti1": "NIfTI", "nifti2": "NIfTI-2", "analyze": "Analyze", "mgh": "MGH"}
PAIR_HEADER = ("This is the header (.hdr) of an Analyze or NIfTI image pair; its voxels are in "
               "the .img file of the same name. Upload both files together (choose both at "
               "once), or a zip holding the two.")


def sniff_neuro(head: bytes) -> str | None:
    """'nifti' (a single-file NIfTI-1 or -2), 'pair-header' (the .hdr of an Analyze or NIfTI
    pair), 'mgh'; or what the field writes that is not an image: 'tracks' (TrackVis .trk,
    MRtrix .tck), 'surface' (GIFTI); or None."""
    if head.startswith((b"TRACK\x00", b"mrtrix tracks")):
        return "tracks"
    if b"<GIFTI" in head[:1024]:
        return "surface"
    if _int32(head, 0) == 348 and head[344:348] == NIFTI1_SINGLE:
        return "nifti"
    if _int32(head, 0) == 540 and head[4:8] == NIFTI2_SINGLE:
        return "nifti"
    if _int32(head, 0) == 540 and head[4:8] == NIFTI2_PAIR and len(head) in (540, 544):
        return "pair-header"
    if _int32(head, 0) == 348 and len(head) in (348, 352) and (
            head[344:348] in (NIFTI1_PAIR, b"\x00\x00\x00\x00") and _analyze_dims(head)):
        return "pair-header"
    if _is_mgh(head):
        return "mgh"
    return None


def _int32(head: bytes, offset: int) -> int | None:
    """The int32 at `offset` when it reads the same as 348 or 540 in either byte order."""
    if len(head) < offset + 4:
        return None
    for order in "<>":
        value = struct.unpack_from(order + "i", head, offset)[0]
        if value in (348, 540):
            return value
    return None


def _analyze_dims(head: bytes) -> bool:
    """An Analyze header's dim[0] (at byte 40) is 1 to 7, in one byte order or the other."""
    return any(1 <= struct.unpack_from(order + "h", head, 40)[0] <= 7 for order in "<>")


def _is_mgh(head: bytes) -> bool:
    """FreeSurfer MGH: big-endian version 1, four positive sizes and a known voxel type."""
    if len(head) < MGH_HEADER_BYTES:
        return False
    version, *dims, kind = struct.unpack_from(">6i", head, 0)
    return version == 1 and all(d > 0 for d in dims) and kind in MGH_TYPES


def not_an_image(kind: str) -> ScanError:
    """What the field writes that is not an image, named (`kind` from `sniff_neuro`)."""
    if kind == "tracks":
        return ScanError("This is a tractography file (fibre tracks), not an image this app can "
                         "classify. Upload the scan the tracks were made from (NIfTI or DICOM).",
                         key="scan_tracks")
    return ScanError("This is a GIFTI surface (a mesh of the brain's surface), not an image this "
                     "app can classify. Upload the scan it was made from (NIfTI or DICOM).",
                     key="scan_surface")


def gzip_holds(path: Path) -> str | None:
    """What a .gz file holds: 'nifti', 'mgh' (an .mgz), or None; the peek is bounded."""
    with gzip.open(path, "rb") as f:
        inner = f.read(HEAD_BYTES)
    kind = sniff_neuro(inner)
    return kind if kind in ("nifti", "mgh") else None


def read_neuro(path: Path, kind: str, limits: Limits, compressed: bool = False,
               pair_data: Path | None = None, volume: int = 0) -> tuple[np.ndarray, Meta]:
    """One volume (`volume`, from 0) of a NIfTI / MGH file, or of an Analyze or NIfTI pair
    (`path` its header, `pair_data` its .img), as slices in the orientation of axial DICOM;
    only that volume's voxels are read."""
    import nibabel as nib  # imported only when such a file arrives

    suffix = {"nifti": ".nii", "mgh": ".mgh", "pair-header": ".hdr"}[kind]
    if compressed:
        suffix = ".mgz" if kind == "mgh" else suffix + ".gz"
    with tempfile.TemporaryDirectory(prefix="scan-") as tmp:
        # nibabel chooses readers by file name, and uploads may have none: give them names
        named = named_link(path, Path(tmp) / f"scan{suffix}")
        if pair_data is not None:
            named_link(pair_data, Path(tmp) / "scan.img")
        image = nib.load(str(named))
        header = image.header
        label = _label(image)
        _refuse_what_is_not_an_image(image)
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        components = 3 if dtype.names and len(dtype.names) in (3, 4) else 1
        if dtype.names and components == 1 or np.dtype(dtype).kind == "c" or len(shape) < 2:
            raise ScanError(f"This {label} file holds {_what_it_holds(dtype, shape)}, not an "
                            "image that can be displayed.")
        extra = shape[4:] if len(shape) > 4 else ()
        if any(n > 1 for n in extra):
            raise ScanError(f"This {label} file has {len(shape)} dimensions (vectors or "
                            "tensors per voxel); only 2-D, 3-D and 4-D images are supported.")
        cols, rows = shape[0], shape[1]
        slices = shape[2] if len(shape) > 2 else 1
        volumes = shape[3] if len(shape) > 3 else 1
        limits.check_image(rows, cols, slices, components)
        volume = check_volume(volume, volumes)
        _check_data_fits(image, path, pair_data, compressed, label, shape, dtype, limits)
        chosen = image.dataobj[(slice(None),) * 3 + (volume,) + (0,) * (len(shape) - 4)] \
            if len(shape) > 3 else image.dataobj[...]
        data = _as_float(np.asarray(chosen), dtype)
    if data.ndim == 2 + (components == 3):
        data = data[:, :, None]
    data, spacing = _axial(data, image.affine, header.get_zooms()[:3])
    meta: Meta = {"source_format": label, "frame_label": "slice", "notes": volume_notes(volume,
                                                                                   volumes),
                  "volumes": volumes, "volume": volume,
                  "pixel_spacing": positive((spacing[1], spacing[0])),
                  "slice_spacing": positive((spacing[2],))}
    if components == 3 and np.dtype(dtype[0] if dtype.names else dtype) == np.uint8:
        meta["display_range"] = (0.0, 255.0)
    return data, meta


def _label(image: Any) -> str:
    import nibabel as nib

    if isinstance(image, (nib.Nifti2Image, nib.Nifti2Pair)):
        return LABELS["nifti2"]
    if isinstance(image, (nib.Nifti1Image, nib.Nifti1Pair)):
        return LABELS["nifti1"]
    if isinstance(image, nib.MGHImage):
        return LABELS["mgh"]
    return LABELS["analyze"]


def _refuse_what_is_not_an_image(image: Any) -> None:
    """A CIFTI file is a NIfTI-2 whose intent is a matrix over brain locations."""
    header = getattr(image, "nifti_header", image.header)  # nibabel reads CIFTI as its own
    try:
        intent = int(header["intent_code"])
    except (KeyError, ValueError, TypeError):  # Analyze and MGH have no intent
        intent = None
    if intent in CIFTI_INTENTS:
        raise ScanError("This is a CIFTI file: a matrix of values over the brain's surface and "
                        "regions (connectivity or a time series), not an image this app can "
                        "classify. Upload the volume it was made from (NIfTI).",
                        key="scan_cifti")


def _what_it_holds(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    if np.dtype(dtype).kind == "c":
        return "complex numbers (save the magnitude image and upload that)"
    if len(shape) < 2:
        return "a list of values"
    return "several values of different kinds per voxel"


def _check_data_fits(image: Any, path: Path, pair_data: Path | None, compressed: bool,
                     label: str, shape: tuple[int, ...], dtype: np.dtype,
                     limits: Limits) -> None:
    """The voxels the header declares fit in what was uploaded (a cut-short file is damaged;
    a hostile header cannot make us allocate more than the file could hold)."""
    declared = math.prod(shape) * np.dtype(dtype).itemsize
    data_file = pair_data if pair_data is not None else path
    size = data_file.stat().st_size
    offset = int(getattr(image.dataobj, "offset", 0))  # where the voxels start, as read
    room = size * GZIP_MAX_RATIO if compressed else size - offset
    if compressed and declared > limits.unzipped_bytes:
        raise ScanError(f"This {label} file unpacks to {declared / 2**20:.0f} MB; the limit is "
                        f"{limits.unzipped_bytes / 2**20:.0f} MB. Upload fewer volumes or a "
                        "smaller copy.")
    if compressed and declared <= room:  # how much it holds is known only by inflating it
        room = _inflated_bytes(data_file, offset + declared) - offset
    if declared > room:
        raise ScanError(f"This {label} file is smaller than the image its header describes: it "
                        "is damaged or incomplete. Export it again.", key="scan_damaged")


def _inflated_bytes(path: Path, needed: int) -> int:
    """How many bytes a gzip file inflates to, up to `needed` (a stream cut short ends early;
    a damaged one raises, and is called damaged). Nothing is kept."""
    total = 0
    with gzip.open(path, "rb") as f:
        while total < needed and (chunk := f.read(min(2**22, needed - total))):
            total += len(chunk)
        if total >= needed:
            f.read(2**16)  # reading on reaches a cut or corrupt end, not hidden by the cap
    return total


def _as_float(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Voxels as float32; an RGB datatype (a record of 3 or 4 bytes) as a last axis of 3."""
    if data.dtype.names:
        names = data.dtype.names[:3]
        return np.stack([data[n] for n in names], axis=-1).astype(np.float32)
    return data.astype(np.float32, copy=False)


def _axial(data: np.ndarray, affine: np.ndarray, zooms) -> tuple[np.ndarray, tuple]:
    """Voxel axes (i, j, k[, rgb]) -> (slice, row, col[, rgb]) as axial DICOM shows them: the
    axes turned to RAS by the affine, then rows running anterior to posterior and columns
    right to left."""
    import nibabel as nib

    ornt = np.array([[0, 1], [1, 1], [2, 1]])  # no usable affine: the voxel axes as they are
    if np.all(np.isfinite(affine)):
        found = nib.io_orientation(affine[:4, :4])
        if np.all(np.isfinite(found)):
            ornt = found
    spacing = [1.0, 1.0, 1.0]
    for axis, (to, _) in enumerate(ornt[:3]):
        if axis < len(zooms):
            spacing[int(to)] = float(zooms[axis])
    ras = nib.apply_orientation(data, ornt)  # a trailing RGB axis is carried along
    lps = ras[::-1, ::-1]
    order = (2, 1, 0, 3) if lps.ndim == 4 else (2, 1, 0)
    return np.ascontiguousarray(lps.transpose(order)), tuple(spacing)
