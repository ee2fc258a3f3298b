"""Fuzzing `load_scan`: 3000 seeded cases of mutated real files (DICOM in several transfer
syntaxes, PNG, JPEG, TIFF, BMP, NIfTI, MetaImage, NRRD, zip) and random bytes, saved under the
extensions uploads arrive with. Each must give a sane Scan or a ScanError: nothing else, no
crash. Warnings are fine. A failure lists the case numbers; rerun one with `make_case(k)`."""
from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from PIL import Image

from core.imaging import Scan, ScanError, load_scan, to_rgb

N_CASES = 3000
CHUNK = 250
EXTENSIONS = [".dcm", ".png", ".jpg", ".tif", ".nii", ".nii.gz", ".mha", ".zip", ""]
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"BM", b"\x1f\x8b\x08",
         b"PK\x03\x04", b"NRRD0004\n", b"\x00" * 128 + b"DICM", b"\x08\x00\x05\x00CS"]
# Small files of every kind; GDCM-only JPEG Lossless is left out here (each decode starts a
# child process) and fuzzed separately below.
DICOM_SEEDS = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
               "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "CT_small.dcm",
               "SC_ybr_full_422_uncompressed.dcm", "emri_small_RLE.dcm", "image_dfl.dcm",
               "SC_rgb_small_odd_jpeg.dcm", "rtdose_1frame.dcm", "OT-PAL-8-face.dcm"]


def seed_files() -> dict[str, bytes]:
    import SimpleITK as sitk

    seeds = {n: Path(pydicom.data.get_testdata_file(n)).read_bytes() for n in DICOM_SEEDS}
    rng = np.random.default_rng(1)
    grey = (rng.random((24, 32)) * 255).astype(np.uint8)

    def encode(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    seeds["grey.png"] = encode(Image.fromarray(grey), "PNG")
    seeds["grey16.png"] = encode(Image.fromarray(grey.astype(np.uint16) * 200), "PNG")
    seeds["rgb.jpg"] = encode(Image.fromarray(np.stack([grey, grey[::-1], grey], -1)), "JPEG")
    seeds["lzw.tif"] = encode(Image.fromarray(grey), "TIFF", compression="tiff_lzw")
    seeds["palette.bmp"] = encode(Image.fromarray(grey).convert("P"), "BMP")
    volume = sitk.GetImageFromArray((rng.random((4, 8, 9)) * 1000).astype(np.int16))
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".nii", ".nii.gz", ".mha", ".nrrd"):
            sitk.WriteImage(volume, f"{folder}/v{suffix}")
            seeds[f"volume{suffix}"] = Path(f"{folder}/v{suffix}").read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", seeds["MR_small.dcm"])
        z.writestr("b.dcm", seeds["CT_small.dcm"])
    seeds["series.zip"] = archive.getvalue()
    return seeds


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    out = bytearray(data)
    kind = int(rng.integers(7))
    if kind == 0:  # scattered byte flips
        for _ in range(int(rng.integers(1, 20))):
            out[rng.integers(len(out))] = rng.integers(256)
    elif kind == 1:  # flips in the header, where sizes and offsets live
        for _ in range(int(rng.integers(1, 8))):
            out[rng.integers(min(len(out), 1024))] = rng.integers(256)
    elif kind == 2:  # truncation
        out = out[: rng.integers(len(out))]
    elif kind == 3:  # insertion
        at = rng.integers(len(out))
        out[at:at] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == 4:  # overwritten run
        at, n = rng.integers(len(out)), int(rng.integers(1, 256))
        out[at:at + n] = rng.bytes(n)
    elif kind == 5:  # deleted run
        a, b = sorted(rng.integers(len(out), size=2))
        del out[a:b]
    else:  # a 16- or 32-bit field set to an extreme
        at = rng.integers(max(1, min(len(out), 2048) - 4))
        out[at:at + 4] = bytes(rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                                           b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"]))
    return bytes(out)


def make_case(k: int, seeds: dict[str, bytes]) -> tuple[str, bytes, str]:
    """Case k: (what it came from, its bytes, the extension it is uploaded with)."""
    rng = np.random.default_rng([20240501, k])
    if k % 10 == 9:
        body = rng.bytes(int(rng.integers(0, 3000)))
        if rng.random() < 0.6:
            body = MAGIC[int(rng.integers(len(MAGIC)))] + body
        source, data = "random bytes", body
    else:
        names = sorted(seeds)
        source = names[int(rng.integers(len(names)))]
        data = mutate(rng, seeds[source])
    return source, data, EXTENSIONS[int(rng.integers(len(EXTENSIONS)))]


@pytest.fixture(scope="module")
def seeds():
    return seed_files()


def check_outcome(path: Path) -> str | None:
    """None when the outcome is allowed, else a description of what went wrong."""
    try:
        scan = load_scan(path)
    except ScanError as exc:
        return None if str(exc) else "empty ScanError message"
    except BaseException as exc:  # noqa: BLE001 - the point of the test
        return f"{type(exc).__name__} escaped load_scan"
    if not isinstance(scan, Scan) or scan.pixels.dtype != np.float32:
        return "not a float32 Scan"
    if not np.isfinite(scan.pixels).all():
        return "non-finite pixels"
    picture = to_rgb(scan)
    if picture.size != (scan.columns, scan.rows):
        return "picture of the wrong size"
    json.dumps(scan.describe())
    return None


@pytest.mark.parametrize("start", range(0, N_CASES, CHUNK))
def test_mutated_and_random_files_give_a_scan_or_a_scan_error(tmp_path, seeds, start):
    problems = []
    for k in range(start, start + CHUNK):
        source, data, ext = make_case(k, seeds)
        path = tmp_path / f"case{k}{ext}"
        path.write_bytes(data)
        problem = check_outcome(path)
        if problem:
            problems.append(f"case {k} ({source}, '{ext}'): {problem}")
        path.unlink()
    assert not problems, "\n".join(problems)


def test_mutated_jpeg_lossless_files_decoded_by_gdcm(tmp_path):
    """GDCM runs in a child process: a crash there must come back as a ScanError."""
    data = Path(pydicom.data.get_testdata_file("JPEG-LL.dcm", download=False) or
                pydicom.data.get_testdata_file("SC_rgb_jpeg_gdcm.dcm")).read_bytes()
    problems = []
    for k in range(8):
        rng = np.random.default_rng([7, k])
        path = tmp_path / f"lossless{k}.dcm"
        mutated = bytearray(data)
        at = int(rng.integers(len(data) // 2, len(data) - 64))
        mutated[at:at + 64] = rng.bytes(64)  # inside the compressed pixel data
        path.write_bytes(bytes(mutated))
        if problem := check_outcome(path):
            problems.append(f"case {k}: {problem}")
    assert not problems, "\n".join(problems)
