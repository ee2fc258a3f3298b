"""core/imaging/ on real files: every DICOM pydicom and pydicom-data ship, photographs from
scikit-image, volumes written by SimpleITK; known values, agreement with pydicom's own VOI
functions, limits, archives, privacy. Fuzzing is in test_imaging_fuzz.py; the window maths on
plain arrays in test_imaging_window.py."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.data.data_manager import DataTypes, external_data_sources
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, apply_windowing
from pydicom.pixels import pixel_array as pydicom_pixels

from core.imaging import dicom as imaging_dicom
from core.errors import ScanError, StudioError
from core.imaging import (APP_MODALITIES, Limits, Scan, Window, load_scan, load_series,
                          robust_range, suggest_modality, to_rgb)


# --------------------------------------------------------------------------------------------
# Real files, found on disk only: pydicom-data's download fallback must never run in tests.

def local_test_files() -> list[Path]:
    root = Path(pydicom.data.__file__).parent / "test_files"
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    store = external_data_sources().get("pydicom-data")
    if store is not None:
        files += [Path(p) for p in store.get_paths("**/*", DataTypes.DATASET)]
    return sorted(set(files))


ALL_FILES = local_test_files()


def shipped(name: str) -> Path:
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} comes with pydicom-data (requirements-dev.txt)")
    return Path(path)


def rgb_array(scan: Scan, window=None, index=None) -> np.ndarray:
    return np.asarray(to_rgb(scan, window, index))


def assert_sane(scan: Scan) -> None:
    assert isinstance(scan, Scan)
    assert scan.pixels.dtype == np.float32
    assert scan.pixels.ndim in (3, 4) and scan.n_frames >= 1
    assert np.isfinite(scan.pixels).all()
    picture = to_rgb(scan)
    assert picture.mode == "RGB" and picture.size == (scan.columns, scan.rows)
    json.dumps(scan.describe())  # the UI shows it as JSON


@functools.lru_cache(maxsize=None)
def shipped_outcome(path: Path) -> str:
    """'loaded' once the scan passes the sanity checks, else 'refused: <message>'. Cached, so
    the count below costs nothing after the per-file test."""
    try:
        scan = load_scan(path)
    except ScanError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return f"refused: {exc}"
    assert_sane(scan)
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    assert (scan.rows, scan.columns) == (ds.Rows, ds.Columns)
    assert scan.n_frames == int(ds.get("NumberOfFrames", 1) or 1)
    return "loaded"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_shipped_file_loads_sanely_or_raises_scan_error(path):
    assert shipped_outcome(path).startswith(("loaded", "refused: "))


MUST_LOAD = [
    # (file, frames, colour): one of each kind the issue names
    ("CT_small.dcm", 1, False),                   # signed 16-bit CT, rescaled to HU
    ("MR_small_bigendian.dcm", 1, False),         # big endian
    ("MR_small_RLE.dcm", 1, False),               # RLE Lossless
    ("MR_small_jp2klossless.dcm", 1, False),      # JPEG 2000 lossless
    ("MR_small_jpeg_ls_lossless.dcm", 1, False),  # JPEG-LS
    ("emri_small_jpeg_2k_lossless.dcm", 10, False),
    ("examples_ybr_color.dcm", 30, True),         # JPEG baseline YBR_FULL_422 ultrasound loop
    ("examples_palette.dcm", 1, True),            # PALETTE COLOR
    ("examples_rgb_color.dcm", 1, True),
    ("SC_rgb_rle_32bit_2frame.dcm", 2, True),     # 32-bit RGB, RLE
    ("OT-PAL-8-face.dcm", 1, True),               # no preamble, no file meta
    ("image_dfl.dcm", 1, False),                  # Deflated Explicit VR
    ("JPEG-LL.dcm", 1, False),                    # JPEG Lossless (GDCM, in a child process)
    ("liver.dcm", 3, False),                      # 1-bit segmentation
    ("rtdose.dcm", 15, False),                    # 32-bit
]


@pytest.mark.parametrize("name,frames,colour", MUST_LOAD)
def test_files_of_each_kind_load(name, frames, colour):
    scan = load_scan(shipped(name))
    assert_sane(scan)
    assert (scan.n_frames, scan.is_color) == (frames, colour)


@pytest.mark.parametrize("name,frames,colour", [
    ("RG1_J2KI.dcm", 1, False), ("US1_J2KI.dcm", 1, True), ("gdcm-US-ALOKA-16.dcm", 1, True),
    ("color3d_jpeg_baseline.dcm", 120, True), ("eCT_Supplemental.dcm", 2, False),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", 1, False), ("OBXXXX1A_rle_2frame.dcm", 2, True)])
def test_pydicom_data_files_of_each_kind_load(name, frames, colour):
    scan = load_scan(shipped(name))
    assert_sane(scan)
    assert (scan.n_frames, scan.is_color) == (frames, colour)


def test_most_shipped_dicom_files_load():
    """Guards the per-file test from passing by refusing everything."""
    loaded = sum(shipped_outcome(path) == "loaded" for path in ALL_FILES)
    assert loaded >= (140 if external_data_sources().get("pydicom-data") else 80)


# --------------------------------------------------------------------------------------------
# Known values

def test_ct_values_are_hounsfield_units():
    path = shipped("CT_small.dcm")
    ds = pydicom.dcmread(path)
    scan = load_scan(path)
    assert (ds.RescaleSlope, ds.RescaleIntercept) == (1, -1024)
    assert ds.pixel_array[64, 64] == 1928 and scan.pixels[0, 64, 64] == 904.0
    np.testing.assert_array_equal(scan.pixels[0], ds.pixel_array.astype(np.float32) - 1024)
    assert scan.rescaled and scan.units == "HU" and scan.modality == "CT"
    assert scan.pixel_spacing == (0.661468, 0.661468)


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_UNCR.dcm", "MR_small.dcm"])
def test_dicom_values_agree_with_simpleitk_gdcm_reader(name):
    """An independent reader (ITK's GDCMImageIO) applies the same rescale to the same pixels."""
    import SimpleITK as sitk

    path = shipped(name)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    np.testing.assert_array_equal(load_scan(path).pixels, reference)


def test_enhanced_ct_takes_rescale_and_window_from_functional_groups():
    path = shipped("eCT_Supplemental.dcm")
    raw = pydicom.dcmread(path).pixel_array
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.pixels, raw.astype(np.float32) - 1024)
    assert scan.windows == (Window(49.0, 102.0, "LINEAR", ""),)
    assert scan.frame_label == "slice" and scan.pixel_spacing == (0.388672, 0.388672)


@pytest.mark.parametrize("plain,compressed", [
    ("MR_small.dcm", "MR_small_RLE.dcm"), ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"), ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("MR_small.dcm", "MR_small_implicit.dcm"), ("emri_small.dcm", "emri_small_RLE.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"), ("SC_rgb.dcm", "SC_rgb_rle.dcm"),
    ("SC_rgb_16bit.dcm", "SC_rgb_rle_16bit.dcm"), ("SC_rgb.dcm", "SC_rgb_expb.dcm"),
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm"), ("693_UNCR.dcm", "693_J2KR.dcm"),
    ("US1_UNCR.dcm", "US1_J2KR.dcm"), ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm")])
def test_lossless_compression_gives_the_same_values(plain, compressed):
    np.testing.assert_array_equal(load_scan(shipped(plain)).pixels,
                                  load_scan(shipped(compressed)).pixels)


@pytest.mark.parametrize("name,mean_difference", [
    ("SC_ybr_full_uncompressed.dcm", 1.0),  # the same picture stored as YBR_FULL
    ("SC_ybr_full_422_uncompressed.dcm", 1.0),
    ("SC_rgb_jpeg_dcmtk.dcm", 1.0),  # JPEG baseline, YBR_FULL
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", 4.0)])  # JPEG baseline with 4:2:2 chroma subsampling
def test_ycbcr_files_come_back_as_the_rgb_picture(name, mean_difference):
    reference = load_scan(shipped("SC_rgb.dcm")).pixels
    scan = load_scan(shipped(name))
    assert scan.is_color and scan.photometric.startswith("YBR")
    assert np.abs(scan.pixels - reference).mean() < mean_difference


def test_ycbcr_conversion_matches_pydicom():
    path = shipped("examples_ybr_color.dcm")
    reference = pydicom_pixels(pydicom.dcmread(path), decoding_plugin="pillow")
    assert np.abs(load_scan(path).pixels - reference).max() <= 1.0  # rounding only


def test_palette_colour_matches_pydicom():
    path = shipped("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    expected = apply_color_lut(ds.pixel_array, ds)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.pixels[0], expected)
    np.testing.assert_allclose(rgb_array(scan), expected / 65535 * 255, atol=0.51)


def test_modality_lut_sequence_is_applied():
    path = shipped("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(load_scan(path).pixels[0],
                                  apply_modality_lut(ds.pixel_array, ds))


def test_frame_counts_and_labels():
    mr = load_scan(shipped("emri_small.dcm"))
    us = load_scan(shipped("examples_ybr_color.dcm"))
    assert (mr.n_frames, mr.frame_label) == (10, "slice")
    assert (us.n_frames, us.frame_label) == (30, "frame")
    assert us.compression == "JPEG Baseline (Process 1)"
    middle = rgb_array(us)
    np.testing.assert_array_equal(middle, rgb_array(us, index=15))
    assert not np.array_equal(rgb_array(us, index=0), middle)


@pytest.mark.parametrize("name", ["6154", "RG3_UNCR.dcm"])
def test_monochrome1_renders_inverted(name):
    matches = [p for p in ALL_FILES if p.name == name]
    path = matches[0] if matches else shipped(name)
    scan = load_scan(path)
    assert scan.photometric == "MONOCHROME1" and scan.inverted
    as_stored = rgb_array(dataclasses.replace(scan, inverted=False))
    np.testing.assert_array_equal(rgb_array(scan), 255 - as_stored)
    lowest = np.unravel_index(np.argmin(scan.pixels[0]), scan.pixels[0].shape)
    highest = np.unravel_index(np.argmax(scan.pixels[0]), scan.pixels[0].shape)
    assert rgb_array(scan)[lowest][0] > rgb_array(scan)[highest][0]  # low values drawn bright


# --------------------------------------------------------------------------------------------
# Windowing agrees with pydicom's own VOI functions

def pydicom_display(path: Path, index: int, function: str | None = None) -> np.ndarray:
    """pydicom's modality LUT + VOI for window `index`, scaled to 0-255 over pydicom's own output
    range (found by windowing two extreme values), MONOCHROME1 inverted."""
    ds = pydicom.dcmread(path)
    if function:
        ds.VOILUTFunction = function
    values = apply_modality_lut(ds.pixel_array, ds)
    out = apply_voi_lut(values, ds, index=index)
    if "VOILUTSequence" in ds:
        low, high = 0, 2 ** ds.VOILUTSequence[index].LUTDescriptor[2] - 1
    else:
        low, high = apply_windowing(np.array([-1e12, 1e12]), ds, index=index)
    levels = (out - low) / (high - low) * 255
    return 255 - levels if ds.PhotometricInterpretation == "MONOCHROME1" else levels


@pytest.mark.parametrize("name,index", [
    ("MR_small.dcm", 0), ("examples_overlay.dcm", 0), ("examples_overlay.dcm", 1),
    ("J2K_pixelrep_mismatch.dcm", 2), ("693_UNCR.dcm", 0), ("RG1_UNCR.dcm", 0),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", 1), ("vlut_04.dcm", 0)])
def test_file_windows_and_voi_luts_agree_with_pydicom(name, index):
    path = shipped(name)
    scan = load_scan(path)
    window = None if scan.voi_luts else index
    ours = rgb_array(scan, window)[..., 0].astype(float)
    assert np.abs(ours - pydicom_display(path, index)).max() <= 0.51


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_agree_with_pydicom(tmp_path, function):
    path = tmp_path / "mr.dcm"
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    ds.VOILUTFunction = function
    ds.save_as(path)
    scan = load_scan(path)
    assert scan.windows[0].function == function
    ours = rgb_array(scan)[..., 0].astype(float)
    assert np.abs(ours - pydicom_display(path, 0)).max() <= 0.51


def test_monochrome1_with_rescale_agrees_with_pydicom():
    path = next(p for p in ALL_FILES if p.name == "6154")
    assert np.abs(rgb_array(load_scan(path))[..., 0] - pydicom_display(path, 0)).max() <= 0.51


def test_presets_are_chosen_by_name_in_any_spelling_or_by_centre_and_width():
    hu = np.array([[[-1000.0, -600.0, 0.0, 40.0, 80.0, 1000.0]]], dtype=np.float32)
    scan = Scan(hu, "test", modality="CT", units="HU")
    brain = rgb_array(scan, "brain")[0, :, 0]
    assert brain.tolist() == [0, 0, 0, 128, 255, 255]
    assert rgb_array(scan, "Lung")[0, 1, 0] == 128
    assert rgb_array(scan, "soft_tissue")[0, 3, 0] == 128
    assert rgb_array(scan, (40, 80)).tolist() == rgb_array(scan, "brain").tolist()


@pytest.mark.parametrize("window", ["kidney", (40, 0), (40, float("nan")), 3, "", (1, 2, 3)])
def test_bad_windows_are_scan_errors(window):
    scan = load_scan(shipped("CT_small.dcm"))
    with pytest.raises(ScanError):
        to_rgb(scan, window)


@pytest.mark.parametrize("index", [5, -6, 1.5, True])
def test_bad_frame_index_is_a_scan_error(index):
    scan = Scan(np.zeros((5, 4, 4), np.float32), "test")
    with pytest.raises(ScanError, match="this scan has 5"):
        to_rgb(scan, index=index)


def test_without_a_window_16_bit_data_gets_a_robust_percentile_window(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(1000, 3000, size=(200, 300)).astype(np.uint16)
    values[0, :5] = 65535  # a few hot pixels must not darken the picture
    Image.fromarray(values).save(tmp_path / "grey16.png")
    scan = load_scan(tmp_path / "grey16.png")
    assert scan.bits_stored == 16 and not scan.windows
    low, high = robust_range(scan.pixels)
    assert 1000 <= low < 1030 and 2970 < high <= 3000
    grey = rgb_array(scan)[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and 100 < grey.mean() < 155


def test_eight_bit_and_colour_pictures_pass_through_unchanged(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    retina = skimage_data.retina()  # a real fundus photograph
    Image.fromarray(retina).save(tmp_path / "fundus.png")
    np.testing.assert_array_equal(rgb_array(load_scan(tmp_path / "fundus.png")), retina)
    camera = skimage_data.camera()
    Image.fromarray(camera).save(tmp_path / "grey.bmp")
    np.testing.assert_array_equal(rgb_array(load_scan(tmp_path / "grey.bmp"))[..., 1], camera)


# --------------------------------------------------------------------------------------------
# Pillow formats and real photographs

@pytest.mark.parametrize("fmt,suffix,exact", [("PNG", ".png", True), ("TIFF", ".tif", True),
                                              ("BMP", ".bmp", True), ("JPEG", ".jpg", False)])
def test_photographs_in_each_format(tmp_path, fmt, suffix, exact):
    skimage_data = pytest.importorskip("skimage.data")
    ihc = skimage_data.immunohistochemistry()  # a real histology photograph
    path = tmp_path / f"ihc{suffix}"
    Image.fromarray(ihc).save(path, fmt)
    scan = load_scan(path)
    assert scan.source_format == fmt and scan.is_color and scan.display_range == (0.0, 255.0)
    difference = np.abs(scan.pixels[0] - ihc)
    assert difference.max() == 0 if exact else difference.mean() < 4


def test_pillow_modes(tmp_path):
    grey16 = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    Image.fromarray(grey16).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_scan(tmp_path / "a.png").pixels[0], grey16)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[255, 0], [51, 255]]
    Image.fromarray(rgba).save(tmp_path / "b.png")
    np.testing.assert_allclose(load_scan(tmp_path / "b.png").pixels[0, ..., 0],
                               [[200, 0], [40, 200]])  # composited on black

    palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / "c.png")
    scan = load_scan(tmp_path / "c.png")
    assert scan.is_color and scan.pixels[0, 0, 0].tolist() == [255, 0, 0]

    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "d.png")
    assert load_scan(tmp_path / "d.png").pixels[0].tolist() == [[0, 255]]

    floats = np.array([[0.5, np.nan], [np.inf, -2.0]], np.float32)
    Image.fromarray(floats).save(tmp_path / "e.tif")
    scan = load_scan(tmp_path / "e.tif")
    assert scan.pixels[0].tolist() == [[0.5, 0.0], [0.5, -2.0]] and scan.notes


def test_exif_rotation_is_applied(tmp_path):
    picture = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    picture.save(tmp_path / "phone.jpg", exif=exif)
    assert load_scan(tmp_path / "phone.jpg").pixels.shape == (1, 40, 20, 3)


def test_multipage_tiff_becomes_frames(tmp_path):
    pages = [Image.fromarray(np.full((8, 9), v, np.uint8)) for v in (10, 20, 30)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    scan = load_scan(tmp_path / "pages.tif")
    assert scan.n_frames == 3 and scan.pixels[:, 0, 0].tolist() == [10, 20, 30]


# --------------------------------------------------------------------------------------------
# Volumes through SimpleITK

@pytest.fixture
def volume():
    import SimpleITK as sitk

    values = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 60
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.5, 0.75, 2.0))
    return image, values


@pytest.mark.parametrize("suffix,label", [(".nii", "NIfTI"), (".nii.gz", "NIfTI"),
                                          (".mha", "MetaImage"), (".nrrd", "NRRD")])
def test_volumes_load_by_content_with_any_name(tmp_path, volume, suffix, label):
    import SimpleITK as sitk

    image, values = volume
    sitk.WriteImage(image, str(tmp_path / f"v{suffix}"))
    shutil.copy(tmp_path / f"v{suffix}", tmp_path / "upload")  # uploads often lose the name
    for path in (tmp_path / f"v{suffix}", tmp_path / "upload"):
        scan = load_scan(path)
        assert scan.source_format == label and scan.frame_label == "slice"
        np.testing.assert_array_equal(scan.pixels, values)
        assert (scan.pixel_spacing, scan.slice_spacing) == ((0.75, 0.5), 2.0)
        assert_sane(scan)


def test_volumes_are_reoriented_like_axial_dicom(tmp_path, volume):
    import SimpleITK as sitk

    image, values = volume
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS, as nibabel writes
    sitk.WriteImage(image, str(tmp_path / "ras.nii.gz"))
    np.testing.assert_array_equal(load_scan(tmp_path / "ras.nii.gz").pixels,
                                  values[:, ::-1, ::-1])


def test_4d_volume_shows_its_first_volume(tmp_path):
    import SimpleITK as sitk

    volumes = [sitk.GetImageFromArray(np.full((3, 4, 5), t, np.float32)) for t in range(3)]
    sitk.WriteImage(sitk.JoinSeries(volumes), str(tmp_path / "fmri.nii.gz"))
    scan = load_scan(tmp_path / "fmri.nii.gz")
    assert scan.pixels.shape == (3, 4, 5) and scan.pixels.max() == 0 and scan.notes


def test_headers_pointing_at_other_files_are_refused(tmp_path):
    (tmp_path / "a.mha").write_text("ObjectType = Image\nNDims = 2\nDimSize = 2 2\n"
                                    "ElementType = MET_UCHAR\nElementDataFile = /etc/passwd\n")
    (tmp_path / "b.nrrd").write_text("NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2 2\n"
                                     "encoding: raw\ndata file: /etc/passwd\n\n")
    for name in ("a.mha", "b.nrrd"):
        with pytest.raises(ScanError, match="separate data file"):
            load_scan(tmp_path / name)


def test_truncated_nifti_is_refused_before_reading(tmp_path, volume):
    import SimpleITK as sitk

    sitk.WriteImage(volume[0], str(tmp_path / "v.nii"))
    data = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[:400])
    with pytest.raises(ScanError, match="smaller than the image"):
        load_scan(tmp_path / "cut.nii")


# --------------------------------------------------------------------------------------------
# Series and archives

def write_ct_series(folder: Path, n: int = 6, seed: int = 0) -> list[Path]:
    """CT_small copies at shuffled positions 2.5 mm apart, each filled with 100 x its slot."""
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    paths = []
    for slot in np.random.default_rng(seed).permutation(n):
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * float(slot)]
        ds.InstanceNumber = int(100 - slot)  # deliberately opposite to the position
        ds.PixelData = np.full((128, 128), 100 * slot + 1024, np.int16).tobytes()
        path = folder / f"slice_{len(paths):02d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_series_is_ordered_by_slice_position(tmp_path):
    scan = load_series(write_ct_series(tmp_path))
    assert scan.source_format == "DICOM series" and scan.n_frames == 6
    assert scan.pixels[:, 0, 0].tolist() == [0, 100, 200, 300, 400, 500]
    assert scan.slice_spacing == 2.5 and scan.units == "HU"


def test_series_without_positions_falls_back_to_instance_numbers(tmp_path):
    paths = write_ct_series(tmp_path)
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    assert load_series(paths).pixels[:, 0, 0].tolist() == [500, 400, 300, 200, 100, 0]


def test_series_keeps_the_largest_series_and_notes_the_rest(tmp_path):
    paths = write_ct_series(tmp_path, n=4)
    other = pydicom.dcmread(shipped("MR_small.dcm"))
    other.save_as(tmp_path / "localiser.dcm")
    (tmp_path / "notes.txt").write_text("not an image")
    scan = load_series(paths + [tmp_path / "localiser.dcm", tmp_path / "notes.txt"])
    assert scan.n_frames == 4 and len(scan.notes) == 2


def test_zip_of_a_series_with_clutter(tmp_path):
    paths = write_ct_series(tmp_path, n=5)
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as archive:
        for path in paths:
            archive.write(path, f"STUDY/SERIES/{path.name}")
        archive.write(shipped("DICOMDIR"), "DICOMDIR")
        archive.writestr("__MACOSX/._slice_00.dcm", b"resource fork")
        archive.writestr("README.txt", "exported by a PACS")
    scan = load_scan(tmp_path / "study.zip")
    assert scan.n_frames == 5 and scan.pixels[:, 0, 0].tolist() == [0, 100, 200, 300, 400]


def test_zip_member_names_never_become_paths(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "inner").mkdir()
    with zipfile.ZipFile(tmp_path / "inner" / "evil.zip", "w") as archive:
        archive.write(tmp_path / "x.png", "../../escaped.png")
    assert load_scan(tmp_path / "inner" / "evil.zip").source_format == "PNG"
    assert not (tmp_path / "escaped.png").exists() and not Path("/escaped.png").exists()


def test_zip_limits_and_bombs(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.dcm", bytes(4_000_000))  # 4 MB of zeros pack into 4 kB
    assert (tmp_path / "bomb.zip").stat().st_size < 50_000
    with pytest.raises(ScanError, match="zip"):
        load_scan(tmp_path / "bomb.zip", Limits(unzipped_bytes=1_000_000))
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for i in range(5):
            archive.writestr(f"{i}.txt", "x")
    with pytest.raises(ScanError, match="holds 5 files"):
        load_scan(tmp_path / "many.zip", Limits(zip_members=3))
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as archive:
        archive.write(tmp_path / "many.zip", "many.zip")
    with pytest.raises(ScanError):
        load_scan(tmp_path / "nested.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.raises(ScanError):
        load_scan(tmp_path / "empty.zip")


# --------------------------------------------------------------------------------------------
# Limits, damage, unsupported data: always a ScanError that says what to do

def test_limits_are_checked_from_headers_before_decoding(monkeypatch):
    def no_decoding(*args):
        raise AssertionError("pixel data was decoded despite the limits")

    monkeypatch.setattr(imaging_dicom, "_decode", no_decoding)
    ct, mr = shipped("CT_small.dcm"), shipped("emri_small.dcm")
    with pytest.raises(ScanError, match="megapixels"):
        load_scan(ct, Limits(pixels_per_frame=10_000))
    with pytest.raises(ScanError, match="holds 10 frames"):
        load_scan(mr, Limits(frames=5))
    with pytest.raises(ScanError, match="million values"):
        load_scan(mr, Limits(total_samples=10_000))
    with pytest.raises(ScanError, match="the limit is"):
        load_scan(ct, Limits(file_bytes=1000))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size and holds (almost) no data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height", [(9000, 9000), (10_000, 9_500), (100_000, 100_000)])
def test_image_bombs_are_refused(tmp_path, width, height):
    """Past our 80 MP limit, past Pillow's warning (89 MP) and past its refusal (179 MP)."""
    (tmp_path / "bomb.png").write_bytes(png_header_only(width, height))
    with pytest.raises(ScanError, match="megapixels|decompression bomb"):
        load_scan(tmp_path / "bomb.png")


def test_deflated_dicom_bomb_is_refused():
    path = shipped("image_dfl.dcm")  # 4.6 kB that inflates to 262 kB
    assert load_scan(path).rows == 512
    with pytest.raises(ScanError, match="expands"):
        load_scan(path, Limits(file_bytes=100_000))


def test_codestream_larger_than_header_is_refused(tmp_path):
    ds = pydicom.dcmread(shipped("MR_small_jp2klossless.dcm"))
    ds.Rows = ds.Columns = 32  # the JPEG 2000 stream inside still says 64 x 64
    ds.save_as(tmp_path / "liar.dcm")
    with pytest.raises(ScanError, match="larger picture"):
        load_scan(tmp_path / "liar.dcm")


def test_missing_decoder_is_named(monkeypatch):
    class NoPlugins:
        is_available = False
        missing_dependencies = ["pyjpegls - requires numpy and pyjpegls>=1.2"]

    monkeypatch.setattr(imaging_dicom, "get_decoder", lambda uid: NoPlugins())
    with pytest.raises(ScanError, match="no decoder for it is installed.*pyjpegls"):
        load_scan(shipped("MR_small_jpeg_ls_lossless.dcm"))


def test_twelve_bit_jpeg_names_the_plugin_it_needs():
    with pytest.raises(ScanError, match="JPEG Extended.*pylibjpeg-libjpeg"):
        load_scan(shipped("JPEG-lossy.dcm"))


def test_video_transfer_syntax_is_refused(tmp_path):
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG4HP41
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds.save_as(tmp_path / "video.dcm")
    with pytest.raises(ScanError, match="video"):
        load_scan(tmp_path / "video.dcm")


@pytest.mark.parametrize("name,message", [
    ("DICOMDIR", "DICOMDIR"), ("rtplan.dcm", "RTPLAN"), ("reportsi.dcm", "'SR'"),
    ("waveform_ecg.dcm", "ECG"), ("MR_truncated.dcm", "damaged or incomplete"),
    ("README.txt", "not a medical image"), ("zipMR.gz", "NIfTI"),
    ("emri_small_jpeg_2k_lossless_too_short.dcm", "damaged")])
def test_non_images_and_damage_are_explained(name, message):
    matches = [p for p in ALL_FILES if p.name == name]
    with pytest.raises(ScanError, match=message):
        load_scan(matches[0] if matches else shipped(name))


def test_truncations_of_a_real_ct_are_scan_errors(tmp_path):
    data = shipped("CT_small.dcm").read_bytes()
    for cut in (0, 10, 132, 500, 1500, len(data) // 2, len(data) - 1000):  # (it ends in padding)
        (tmp_path / "cut.dcm").write_bytes(data[:cut])
        with pytest.raises(ScanError):
            load_scan(tmp_path / "cut.dcm")


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(ScanError, match="could not be found"):
        load_scan(tmp_path / "missing.dcm")
    with pytest.raises(ScanError):
        load_scan(tmp_path)
    with pytest.raises(ScanError, match="No files"):
        load_series([])


def test_scan_error_is_a_studio_error_and_a_value_error():
    assert issubclass(ScanError, StudioError) and issubclass(ScanError, ValueError)


# --------------------------------------------------------------------------------------------
# Modality suggestion and the safe summary

@pytest.mark.parametrize("name,expected", [
    ("CT_small.dcm", "CT"), ("MR_small.dcm", "MRI"), ("examples_ybr_color.dcm", "ultrasound"),
    ("RG1_UNCR.dcm", "X-ray"), ("JPEG2000.dcm", "other"), ("SC_jpeg_no_color_transform.dcm", None)])
def test_modality_is_suggested_from_the_file(name, expected):
    assert suggest_modality(load_scan(shipped(name))) == expected


@pytest.mark.parametrize("code,body_part,expected", [
    ("DX", None, "X-ray"), ("MG", None, "X-ray"), ("OP", None, "fundus"), ("OPT", None, "OCT"),
    ("SM", None, "histopathology"), ("ES", None, "endoscopy"), ("XC", "SKIN", "dermoscopy"),
    ("DMS", None, "dermoscopy"), ("XC", "HAND", "other"), ("PT", None, "other"),
    ("FOO", None, None), (None, None, None)])
def test_modality_table(code, body_part, expected):
    scan = Scan(np.zeros((1, 2, 2), np.float32), "test", modality=code, body_part=body_part)
    assert suggest_modality(scan) == expected
    assert expected is None or expected in APP_MODALITIES


def test_describe_is_a_safe_summary():
    summary = load_scan(shipped("MR-SIEMENS-DICOM-WithOverlays.dcm")).describe()
    assert summary["modality"] == "MR" and summary["suggested_modality"] == "MRI"
    assert len(summary["windows"]) == 2 and summary["rows"] == 484
    assert set(summary) >= {"format", "frames", "color", "pixel_spacing_mm", "value_range"}


def test_scan_pixels_are_read_only():
    scan = load_scan(shipped("CT_small.dcm"))
    with pytest.raises(ValueError):
        scan.pixels[0, 0, 0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        scan.modality = "MR"


# --------------------------------------------------------------------------------------------
# Privacy: identifying values never leave the reader

IDENTIFYING = ["PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
               "PatientAddress", "InstitutionName", "InstitutionAddress",
               "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
               "StationName", "AccessionNumber", "StudyID", "StudyDate", "SeriesDate",
               "AcquisitionDate", "ContentDate", "StudyInstanceUID", "SeriesInstanceUID",
               "SOPInstanceUID", "DeviceSerialNumber", "StudyDescription", "SeriesDescription"]


def identifying_values(path: Path) -> set[str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    values = set()
    for keyword in IDENTIFYING:
        value = ds.get(keyword)
        for item in (value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]):
            text = str(item or "").strip()
            values |= {t for t in [text, *text.split("^")] if len(t) >= 4}
    return values


def reachable(obj, depth: int = 0):
    yield obj
    if depth < 4:
        children = (vars(obj).values() if dataclasses.is_dataclass(obj)
                    else obj if isinstance(obj, (tuple, list)) else ())
        for child in children:
            yield from reachable(child, depth + 1)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "RG1_UNCR.dcm",
                                  "examples_ybr_color.dcm", "JPEG-LL.dcm"])
def test_identifying_values_are_never_returned_or_logged(tmp_path, caplog, name):
    source = shipped(name)
    secrets = identifying_values(source) | {"Doe_Jane_19700101"}
    assert len(secrets) > 3
    named = tmp_path / "Doe_Jane_19700101.dcm"  # file names can identify too
    shutil.copy(source, named)
    caplog.set_level(logging.DEBUG)
    scan = load_scan(named)
    broken = tmp_path / "Doe_Jane_19700101_cut.dcm"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 3])
    try:
        load_scan(broken)
        error = ""
    except ScanError as exc:
        error = str(exc)
    shown = repr(scan) + json.dumps(scan.describe()) + caplog.text + error
    assert not [s for s in secrets if s in shown]
    assert not any(isinstance(o, (pydicom.Dataset, pydicom.DataElement)) for o in reachable(scan))


def test_pydicom_log_records_are_redacted(caplog):
    caplog.set_level(logging.DEBUG)
    load_scan(shipped("CT_small.dcm"))  # installs the redaction on pydicom's logger
    logging.getLogger("pydicom").warning("Invalid value for VR PN: %s", "Doe^Jane")
    assert "Doe" not in caplog.text and "details withheld" in caplog.text


def test_gdcm_crash_costs_one_file_not_the_app(tmp_path):
    """GDCM aborts its process on this corrupt baseline JPEG (found by fuzzing): run in a
    child it raises, and load_scan, which never gives GDCM a baseline JPEG, explains."""
    from core.imaging.gdcm import decode_with_gdcm

    data = bytearray(shipped("SC_rgb_jpeg_dcmtk.dcm").read_bytes())
    data[1745:1827] = bytes.fromhex(
        "66cc27fa199af9732e6fb6e40ecf23369e551136a50494fa4f73df26921176288afa947f9c27ef8789acb0"
        "16d3e76e1945ca24be05b896f654e34f0aaf087adedd5db02db8f3e8f469f61e3e993df3f68e57")
    (tmp_path / "crash.dcm").write_bytes(bytes(data))
    with pytest.raises(RuntimeError):
        decode_with_gdcm(tmp_path / "crash.dcm", pydicom.uid.JPEGBaseline8Bit)
    with pytest.raises(ScanError, match="could not be decoded"):
        load_scan(tmp_path / "crash.dcm")


def test_concurrent_uploads_load_as_they_do_alone():
    """Gradio serves several people at once: readers share no state that changes results."""
    from concurrent.futures import ThreadPoolExecutor

    names = ["CT_small.dcm", "MR_small_RLE.dcm", "examples_palette.dcm", "emri_small.dcm",
             "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_dcmtk.dcm"] * 2
    paths = [shipped(n) for n in names]
    alone = [load_scan(p).pixels for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda p: load_scan(p).pixels, paths))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)


def test_benchmark_files_are_what_they_claim(tmp_path):
    """The figures of `python -m benchmarks.imaging` are only as good as its files."""
    from benchmarks.imaging import write_ct_slice, write_radiograph

    plain, compressed = write_ct_slice(tmp_path)
    ct = load_scan(plain)
    assert ct.pixels.shape == (1, 512, 512) and ct.units == "HU" and ct.pixels.min() < -800
    np.testing.assert_array_equal(load_scan(compressed).pixels, ct.pixels)
    dicom, png = write_radiograph(tmp_path)
    dx = load_scan(dicom)
    assert dx.pixels.shape == (1, 2000, 2000) and dx.inverted and suggest_modality(dx) == "X-ray"
    np.testing.assert_array_equal(load_scan(png).pixels, dx.pixels)
