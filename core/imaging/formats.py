"""Upload limits, format sniffing and the non-DICOM readers behind `core.imaging`.

Import `core.imaging`, not this module. Every reader here takes a path and a `Limits`, checks the
limits against the file's header before any pixel data is decoded, and returns `(pixels, meta)`
in the manner of MONAI's readers: `pixels` is float32 shaped (frames, rows, cols) or
(frames, rows, cols, 3); `meta` is a dict of `Scan` fields holding only technical values.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from core.errors import ScanError

logger = logging.getLogger(__name__)

Meta = dict[str, Any]

# Upload limits. A 512x512x1000 CT (262 M values, 1 GiB as float32) is the largest study the demo
# is meant to hold in memory; anything past these is refused from its header, before decoding.
MAX_FILE_BYTES = 512 * 2**20
MAX_PIXELS_PER_FRAME = 80_000_000
MAX_FRAMES = 2000
MAX_TOTAL_SAMPLES = 2**28
MAX_ZIP_MEMBERS = 4000
MAX_UNZIPPED_BYTES = 2 * MAX_FILE_BYTES

HEAD_BYTES = 4096  # enough for every signature (NIfTI-1 magic sits at byte 344)


@dataclass(frozen=True)
class Limits:
    """What an upload may cost. Checked from headers, so a hostile file is refused before it is
    decoded; pass a smaller `Limits` to `load_scan` to test the refusals or to protect a small host.
    Pillow's own decompression-bomb guard (about 179 megapixels) also stays in force."""

    file_bytes: int = MAX_FILE_BYTES
    pixels_per_frame: int = MAX_PIXELS_PER_FRAME
    frames: int = MAX_FRAMES
    total_samples: int = MAX_TOTAL_SAMPLES
    zip_members: int = MAX_ZIP_MEMBERS
    unzipped_bytes: int = MAX_UNZIPPED_BYTES

    def check_file_size(self, n_bytes: int) -> None:
        if n_bytes > self.file_bytes:
            raise ScanError(
                f"This file is {_mb(n_bytes)}; the limit is {_mb(self.file_bytes)}. Export a "
                "smaller file (one series, or fewer frames) and upload that.")

    def check_image(self, rows: int, cols: int, frames: int = 1, samples: int = 1) -> None:
        if min(rows, cols, frames, samples) < 1:
            raise ScanError("The file's header describes an empty image (no rows, columns or "
                            "frames): the file is damaged or holds no picture.")
        if rows * cols > self.pixels_per_frame:
            raise ScanError(
                f"Each image in this file is {cols} x {rows} pixels "
                f"({rows * cols / 1e6:.0f} megapixels); the limit is "
                f"{self.pixels_per_frame / 1e6:.0f} megapixels. Upload a downscaled copy.")
        if frames > self.frames:
            raise ScanError(
                f"This file holds {frames} frames or slices; the limit is {self.frames}. "
                "Upload a shorter series, or the frames you need.")
        if rows * cols * frames * samples > self.total_samples:
            raise ScanError(
                f"This scan holds {rows * cols * frames * samples / 1e6:.0f} million values; the "
                f"limit is {self.total_samples / 1e6:.0f} million. Upload fewer slices or a "
                "downscaled copy.")


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MB"


# --------------------------------------------------------------------------------------------
# Sniffing: the content decides, never the extension (uploads often lose or lie about it).

def sniff(head: bytes) -> str | None:
    """Name the format of a file from its first bytes, or None when nothing here reads it
    (NIfTI, Analyze and MGH are named by `neuro.sniff_neuro`)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if _looks_like_metaimage(head):
        return "metaimage"
    if head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") and len(head) >= 8:
        # A DICOM data set written without the 128-byte preamble starts with a group 2 or 8 tag.
        return "dicom"
    return None


def _looks_like_metaimage(head: bytes) -> bool:
    first = head.lstrip()[:32]
    return first.startswith((b"ObjectType", b"NDims")) and b"ElementDataFile" in head


def read_head(path: Path, n: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


# --------------------------------------------------------------------------------------------
# Pillow: PNG, JPEG, TIFF, BMP.

PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                    "YCbCr", "LAB", "HSV"}


def read_pillow(path: Path, fmt: str, limits: Limits) -> tuple[np.ndarray, Meta]:
    """Frames of a PNG/JPEG/TIFF/BMP as float32, colour as RGB with alpha composited on black."""
    with warnings.catch_warnings():
        # Pillow warns, then refuses, past Image.MAX_IMAGE_PIXELS: make the warning a refusal
        # here too, without touching that global for the rest of the program.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=[PILLOW_FORMATS[fmt]]) as im:
                n_frames = int(getattr(im, "n_frames", 1))
                limits.check_image(im.height, im.width, n_frames, len(im.getbands()))
                return _pillow_frames(im, n_frames)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ScanError("This image declares more pixels than any scan should have (a "
                            "'decompression bomb'): it was not opened. Upload a smaller "
                            "copy.") from None
        except Image.UnidentifiedImageError:
            raise ScanError(f"This file starts like a {fmt.upper()} image but cannot be read as "
                            "one: it is damaged or incomplete. Export it again.") from None


def _pillow_frames(im: Image.Image, n_frames: int) -> tuple[np.ndarray, Meta]:
    notes: list[str] = []
    if n_frames == 1:
        frames = [ImageOps.exif_transpose(im)]  # phone and camera photos store their rotation
    else:
        frames = []
        for frame in ImageSequence.Iterator(im):
            if frame.size != im.size or frame.mode != im.mode:
                # Pyramid TIFFs keep downscaled copies as later pages: the first is the image.
                notes.append(f"only the first {len(frames)} pages were used; later pages differ "
                             "in size or type")
                break
            frames.append(frame.copy())
    mode = frames[0].mode
    arrays = [_pillow_to_array(f) for f in frames]
    pixels = np.stack(arrays)
    meta: Meta = {"source_format": im.format or "image", "photometric": mode, "notes": notes}
    if mode in _EIGHT_BIT_MODES:
        meta["bits_stored"] = 8
        meta["display_range"] = (0.0, 255.0)
    elif mode.startswith("I;16"):
        meta["bits_stored"] = 16
    return pixels.astype(np.float32, copy=False), meta


def _pillow_to_array(im: Image.Image) -> np.ndarray:
    """One frame as float32 (rows, cols) or (rows, cols, 3)."""
    mode = im.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in im.info else "RGB"
        im = im.convert(mode)
    elif mode == "PA":
        mode, im = "RGBA", im.convert("RGBA")
    elif mode == "1":
        mode, im = "L", im.convert("L")
    elif mode in ("La", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        mode, im = ("LA", im.convert("LA")) if mode == "La" else ("RGB", im.convert("RGB"))
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        raise ScanError(f"This image uses the pixel layout '{mode}', which is not supported. "
                        "Save it as an 8- or 16-bit greyscale or RGB PNG and upload that.")
    arr = np.asarray(im).astype(np.float32)
    if mode in ("LA", "RGBA"):
        # Composite transparent areas onto black, as a viewer with a dark background shows them.
        arr = arr[..., :-1] * (arr[..., -1:] / 255.0)
        if mode == "LA":
            arr = arr[..., 0]
    return arr


# --------------------------------------------------------------------------------------------
# SimpleITK: MetaImage (.mha) and NRRD (.nrrd), single files only (NIfTI, Analyze and MGH are
# nibabel's, in neuro.py).

_ITK_IO = {"metaimage": ("MetaImageIO", ".mha", "MetaImage"),
           "nrrd": ("NrrdImageIO", ".nrrd", "NRRD")}


def read_itk(path: Path, fmt: str, limits: Limits, volume: int = 0
             ) -> tuple[np.ndarray, Meta]:
    """Volumes via SimpleITK, reoriented to LPS so slices display like axial DICOM (patient's
    right on the image's left, anterior at the top); of a 4-D file, volume `volume`."""
    import SimpleITK as sitk  # heavy (about 0.4 s): imported only when a volume arrives

    io_name, suffix, label = _ITK_IO[fmt]
    if fmt in ("metaimage", "nrrd"):
        _refuse_detached_data(read_head(path, 64 * 1024), fmt)
    with tempfile.TemporaryDirectory(prefix="scan-") as tmp:
        # ITK chooses readers by file name, and uploads may have none: give it a named link.
        named = named_link(path, Path(tmp) / f"scan{suffix}")
        reader = sitk.ImageFileReader()
        reader.SetImageIO(io_name)
        reader.SetFileName(str(named))
        reader.ReadImageInformation()
        size = tuple(int(s) for s in reader.GetSize())  # ITK order: x, y[, z[, t]]
        n_comp = int(reader.GetNumberOfComponents())
        if len(size) < 2 or n_comp not in (1, 3, 4):
            raise ScanError(f"This {label} file has {len(size)} dimension(s) and {n_comp} value(s) "
                            "per voxel; only 2-D or 3-D greyscale or RGB images are supported.")
        limits.check_image(size[1], size[0], math.prod(size[2:]), n_comp)
        volumes = size[3] if len(size) > 3 else 1
        volume = check_volume(volume, volumes)
        _check_declared_size(reader, path.stat().st_size, compressed=fmt != "nifti", label=label)
        image = reader.Execute()
    notes = volume_notes(volume, volumes)
    if image.GetDimension() == 4:
        image = image[:, :, :, volume]
    if image.GetDimension() == 3:
        image = sitk.DICOMOrient(image, "LPS")
    pixels = sitk.GetArrayFromImage(image)  # numpy order: z, y, x[, component]
    if np.iscomplexobj(pixels):
        raise ScanError(f"This {label} file holds complex numbers, not an image that can be "
                        "displayed. Save the magnitude image and upload that.")
    if image.GetDimension() == 2:
        pixels = pixels[None]
    if n_comp == 4:
        pixels = pixels[..., :3]
    spacing = tuple(float(s) for s in image.GetSpacing())
    meta: Meta = {"source_format": label, "frame_label": "slice", "notes": notes,
                  "pixel_spacing": positive((spacing[1], spacing[0])), "volumes": volumes,
                  "volume": volume}
    if len(spacing) > 2:
        meta["slice_spacing"] = positive((spacing[2],))
    if n_comp > 1 and pixels.dtype == np.uint8:
        meta["display_range"] = (0.0, 255.0)
    return pixels.astype(np.float32, copy=False), meta


def check_volume(volume: int, volumes: int) -> int:
    """`volume` when a file of `volumes` volumes has it, else the error that says which it
    has (checked from the header, before any voxel is read)."""
    volume = int(volume)
    if not 0 <= volume < volumes:
        if volumes == 1:
            raise ScanError(f"This file holds one volume; there is no volume {volume}. Choose "
                            "volume 0.", key="scan_one_volume", volume=volume)
        raise ScanError(f"This file holds {volumes} volumes, 0 to {volumes - 1}; there is no "
                        f"volume {volume}.", key="scan_no_volume", volume=volume, last=volumes - 1)
    return volume


def volume_notes(volume: int, volumes: int) -> list[str]:
    """What a reader of a 4-D file says about the volume it read."""
    if volumes <= 1:
        return []
    return [f"4-D file of {volumes} volumes: volume {volume} is shown (0 is the first)"]


def named_link(path: Path, named: Path) -> Path:
    """`path` under the name `named` (a link, or a copy where links cannot be made), for
    readers that choose their format by file name."""
    try:
        os.symlink(path.resolve(), named)
    except OSError:
        shutil.copyfile(path, named)
    return named


def _check_declared_size(reader: Any, file_bytes: int, *, compressed: bool, label: str) -> None:
    """A damaged or hostile header can declare far more voxels than the file holds, and ITK
    allocates them (or quietly reads a short file). Raw NIfTI data must fit in the file after its
    header; compressed data cannot expand past deflate's maximum ratio (about 1032:1)."""
    import SimpleITK as sitk

    one_voxel = sitk.Image([1, 1], reader.GetPixelID(), reader.GetNumberOfComponents())
    declared = math.prod(reader.GetSize()) * reader.GetNumberOfComponents() * int(
        one_voxel.GetSizeOfPixelComponent())
    if declared > (file_bytes * 1100 if compressed else file_bytes - 352):  # 352: NIfTI-1 header
        raise ScanError(f"This {label} file is smaller than the image its header describes: it "
                        "is damaged or incomplete. Export it again.")


def _refuse_detached_data(head: bytes, fmt: str) -> None:
    """A MetaImage or NRRD header may name other files as its pixel data: with an upload that
    would read files on the server, so only data stored in the same file is accepted."""
    text = head.decode("latin-1").lower()
    if fmt == "metaimage":
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "elementdatafile" and value.strip() != "local":
                raise ScanError("This MetaImage header points to a separate data file. Save it as "
                                "a single .mha file (data stored locally) and upload that.")
    else:
        header = text.split("\n\n", 1)[0]
        if any(line.startswith(("data file:", "datafile:")) for line in header.splitlines()):
            raise ScanError("This NRRD header points to a separate data file. Save it as a "
                            "single .nrrd file and upload that.")


def positive(values: tuple[float, ...]) -> Any:
    """Spacings only when every value is a finite positive number, rounded to the micrometre
    (NIfTI stores float32, so 0.7 reads back as 0.699999988)."""
    if all(math.isfinite(v) and v > 0 for v in values):
        rounded = tuple(round(v, 6) for v in values)
        return rounded if len(rounded) > 1 else rounded[0]
    return None


# --------------------------------------------------------------------------------------------
# Zip archives: members are copied into a temporary folder under names made here, never the
# archive's own (no path traversal), with sizes counted as they are read (headers can lie).

def unzip_members(path: Path, folder: Path, limits: Limits) -> list[tuple[str, Path]]:
    """Copy the archive's files into `folder` as 00000, 00001, ...; return each one's name in
    the archive (for its folder; never used as a path) and its copy's path."""
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir() and not _is_clutter(i.filename)]
        if len(infos) > limits.zip_members:
            raise ScanError(f"This zip holds {len(infos)} files; the limit is "
                            f"{limits.zip_members}. Zip one series at a time.")
        if any(i.flag_bits & 0x1 for i in infos):
            raise ScanError("This zip is password-protected. Upload an unprotected copy.")
        if sum(i.file_size for i in infos) > limits.unzipped_bytes:
            raise ScanError(f"This zip unpacks to more than {_mb(limits.unzipped_bytes)}. "
                            "Zip one series at a time.")
        paths, total = [], 0
        for n, info in enumerate(infos):
            target = folder / f"{n:05d}"
            with zf.open(info) as src, open(target, "wb") as dst:
                member = 0
                while chunk := src.read(2**20):
                    member += len(chunk)
                    total += len(chunk)
                    if member > limits.file_bytes or total > limits.unzipped_bytes:
                        raise ScanError("This zip unpacks to more data than it declares or than "
                                        f"the limit of {_mb(limits.unzipped_bytes)} (a 'zip "
                                        "bomb'): it was not opened.")
                    dst.write(chunk)
            paths.append((info.filename, target))
    return paths


def _is_clutter(name: str) -> bool:
    """Folders' by-products that are never images: macOS resource forks and Windows thumbnails."""
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith("._") or base in ("Thumbs.db",
                                                                            ".DS_Store")
