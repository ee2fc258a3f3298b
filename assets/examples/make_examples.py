"""Regenerate the example images and manifest.json in this folder from data shipped in packages.

Needs pydicom, pydicom-data (MIT; more DICOM test files) and scikit-image. Run from anywhere:
    python assets/examples/make_examples.py
Only pixels leave the DICOM files: each PNG is written from an array, so no DICOM metadata and no
PNG text chunk is carried over. Ultrasound frames are cropped to the scan area to drop burned-in
captions. Images are downscaled to at most 512 px and until they are under 150 KB.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import skimage.data
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, apply_modality_lut

HERE = Path(__file__).resolve().parent
MAX_SIDE, MAX_BYTES = 512, 150_000
PYDICOM = "pydicom test data (MIT licence); pydicom's test-file README knows no restriction on its use"
PYDICOM_DATA = "pydicom-data package (MIT licence)"
log = logging.getLogger("make_examples")


def dicom_pixels(name: str) -> tuple[np.ndarray, pydicom.Dataset]:
    ds = pydicom.dcmread(get_testdata_file(name))
    arr = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        arr = (arr / 256).astype(np.uint8) if arr.dtype != np.uint8 else arr
    return arr, ds


def window(arr: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Grey levels in [centre - width/2, centre + width/2] spread over 0-255."""
    return (np.clip((arr - (centre - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def auto_window(arr: np.ndarray, invert: bool = False) -> np.ndarray:
    """Percentile window for images without calibrated units (X-ray, MR)."""
    lo, hi = np.percentile(arr, [1, 99.5])
    out = window(arr.astype(float), (lo + hi) / 2, max(hi - lo, 1))
    return 255 - out if invert else out


def ct_hu(name: str, centre: float, width: float) -> np.ndarray:
    arr, ds = dicom_pixels(name)
    return window(apply_modality_lut(arr, ds).astype(float), centre, width)


def xray(name: str) -> np.ndarray:
    arr, ds = dicom_pixels(name)
    return auto_window(arr.astype(float), invert=ds.PhotometricInterpretation == "MONOCHROME1")


def crop(name: str, top: int, bottom: int, left: int, right: int, grey: bool) -> np.ndarray:
    """Keep only the scan area of an ultrasound screen (the captions around it are dropped)."""
    part = dicom_pixels(name)[0][top:bottom, left:right]
    return np.asarray(Image.fromarray(part).convert("L")) if grey else part


def save_png(arr: np.ndarray, path: Path) -> None:
    image = Image.fromarray(arr)
    side = MAX_SIDE
    while True:
        small = image.copy()
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)  # no pnginfo: no text chunks
        if buffer.tell() < MAX_BYTES:
            path.write_bytes(buffer.getvalue())
            return
        side -= 32


EXAMPLES = [
    ("xray_chest.png", lambda: xray("RG1_UNCR.dcm"), "X-ray", "chest",
     "pydicom-data file RG1_UNCR.dcm (NEMA WG04 sample RG1)", PYDICOM_DATA,
     "Frontal chest radiograph (computed radiography); inverted from MONOCHROME1; percentile window."),
    ("xray_lower_leg.png", lambda: xray("RG3_UNCR.dcm"), "X-ray", "tibia",
     "pydicom-data file RG3_UNCR.dcm (NEMA WG04 sample RG3)", PYDICOM_DATA,
     "Radiograph of the lower leg and ankle; inverted from MONOCHROME1; percentile window."),
    ("ct_thorax.png", lambda: ct_hu("CT_small.dcm", 40, 400), "CT", "chest",
     "pydicom test file CT_small.dcm (128 px copy of NEMA WG04 CT1)", PYDICOM,
     "Axial CT through a thoracic vertebra and the aorta; soft-tissue window W400 L40."),
    ("ct_head.png", lambda: ct_hu("693_UNCR.dcm", 40, 80), "CT", "head",
     "pydicom-data file 693_UNCR.dcm (regression data for pydicom issue 693)", PYDICOM_DATA,
     "Axial head CT; brain window W80 L40."),
    ("mri_shoulder.png", lambda: auto_window(dicom_pixels("MR2_UNCR.dcm")[0]), "MRI", "shoulder",
     "pydicom-data file MR2_UNCR.dcm (NEMA WG04 sample MR2)", PYDICOM_DATA,
     "Coronal shoulder MR slice; percentile window."),
    ("mri_abdomen.png", lambda: auto_window(dicom_pixels("MR-SIEMENS-DICOM-WithOverlays.dcm")[0]),
     "MRI", "abdomen", "pydicom-data file MR-SIEMENS-DICOM-WithOverlays.dcm (from GDCM's test data)",
     PYDICOM_DATA, "Axial upper-abdominal MR slice (liver, kidneys); overlay not drawn."),
    ("mri_head.png", lambda: auto_window(dicom_pixels("MR_small.dcm")[0]), "MRI", "head",
     "pydicom test file MR_small.dcm", PYDICOM,
     "Axial head MR slice; percentile window. The sample set's scan to predict."),
    ("us_lymph_node.png", lambda: crop("US1_UNCR.dcm", 108, 336, 48, 592, grey=False), "ultrasound",
     "lymph node", "pydicom-data file US1_UNCR.dcm (NEMA WG04 sample US1)", PYDICOM_DATA,
     "Power-Doppler ultrasound of a lymph node, kept in colour; cropped to the scan area."),
    ("us_pelvis.png", lambda: crop("gdcm-US-ALOKA-16.dcm", 64, 404, 338, 628, grey=True),
     "ultrasound", "pelvis", "pydicom-data file gdcm-US-ALOKA-16.dcm (from GDCM's test data)",
     PYDICOM_DATA, "Pelvic ultrasound, one of two panes; cropped to the scan area, greyscale."),
    ("fundus_retina.png", skimage.data.retina, "fundus", "retina",
     "scikit-image skimage.data.retina() (Wikimedia Commons, Mikael Haggstrom)",
     "CC0 1.0 public domain dedication", "Colour fundus photograph of a normal left eye."),
    ("histology_colon_ihc.png", skimage.data.immunohistochemistry, "histopathology", "colon",
     "scikit-image skimage.data.immunohistochemistry() (Center for Microscopy and Molecular Imaging)",
     "no known copyright restrictions (scikit-image data docstring)",
     "Colonic glands, immunohistochemistry (DAB) with haematoxylin counterstain."),
]


def main() -> None:
    manifest = []
    for file, make, modality, organ, source, licence, notes in EXAMPLES:
        save_png(np.ascontiguousarray(make()), HERE / file)
        log.info("wrote %s (%d bytes)", file, (HERE / file).stat().st_size)
        manifest.append({"file": file, "modality": modality, "organ": organ, "source": source,
                         "licence": licence, "notes": notes})
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
