"""Benchmark: `python -m benchmarks.imaging` prints one JSON line of figures.

Times `load_scan` + `to_rgb` (file to RGB picture, default window) on files written into a
temporary folder: a 512x512 CT slice (pydicom's own CT_small.dcm upscaled four-fold, so real
anatomy in Hounsfield units), uncompressed and as JPEG 2000 lossless, and a 2000x2000 12-bit
MONOCHROME1 radiograph as DICOM and as a 16-bit PNG. When the `pydicom-data` package is
installed, its real 1955x1841 chest radiograph (RG1) is timed too. Figures are seconds: the median
of `--repeats` runs after one warm-up, so first-call costs (imports, the decoders' own start-up)
are left out. Targets (2 CPU cores): CT slice <= 0.050 s, 2000x2000 radiograph <= 0.300 s.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from core.imaging import load_scan, to_rgb

TARGETS_S = {"ct_512_dicom": 0.050, "radiograph_2000_dicom": 0.300}


def write_ct_slice(folder: Path) -> tuple[Path, Path]:
    """CT_small (128x128, HU via rescale) upscaled to 512x512, plain and JPEG 2000 lossless."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = np.kron(ds.pixel_array, np.ones((4, 4), dtype=ds.pixel_array.dtype))
    ds.set_pixel_data(pixels, "MONOCHROME2", 16)
    ds.WindowCenter, ds.WindowWidth = 40, 400
    plain = folder / "ct512.dcm"
    ds.save_as(plain, enforce_file_format=True)
    ds.compress(JPEG2000Lossless)
    compressed = folder / "ct512_j2k.dcm"
    ds.save_as(compressed, enforce_file_format=True)
    return plain, compressed


def write_radiograph(folder: Path, size: int = 2000) -> tuple[Path, Path]:
    """A smooth 12-bit body-like field plus noise, as MONOCHROME1 DICOM and as a 16-bit PNG."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    body = 2500 * np.exp(-(x**2 / 0.5 + y**2 / 0.8)) + 800
    pixels = np.clip(body + rng.normal(0, 60, body.shape), 0, 4095).astype(np.uint16)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        delattr(ds, keyword)
    ds.Modality = "DX"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(pixels, "MONOCHROME1", 12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3500
    dicom = folder / "dx2000.dcm"
    ds.save_as(dicom, enforce_file_format=True)
    png = folder / "dx2000.png"
    Image.fromarray(pixels).save(png)
    return dicom, png


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def file_to_picture(path: Path) -> Callable[[], object]:
    return lambda: to_rgb(load_scan(path))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-imaging-") as tmp:
        folder = Path(tmp)
        ct, ct_j2k = write_ct_slice(folder)
        dx, dx_png = write_radiograph(folder)
        cases = {"ct_512_dicom": ct, "ct_512_dicom_j2k_lossless": ct_j2k,
                 "radiograph_2000_dicom": dx, "radiograph_2000_png16": dx_png}
        for name, file in (("radiograph_rg1_1955x1841_dicom", "RG1_UNCR.dcm"),
                           ("radiograph_rg1_j2k_lossless", "RG1_J2KR.dcm")):
            local = get_testdata_file(file, download=False)  # pydicom-data, never the network
            if local:
                cases[name] = Path(local)
        for name, path in cases.items():
            repeats = args.repeats if "ct_512" in name else max(3, args.repeats // 3)
            figures[f"{name}_s"] = round(median_seconds(file_to_picture(path), repeats), 4)

    figures["targets_s"] = TARGETS_S
    figures["meets_targets"] = all(figures[f"{k}_s"] <= v for k, v in TARGETS_S.items())
    figures["machine"] = {"cpu": cpu_name(),
                          "cores": os.cpu_count(), "python": platform.python_version(),
                          "numpy": np.__version__, "pydicom": pydicom.__version__}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
