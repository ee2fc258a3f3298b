"""NIfTI-1, NIfTI-2, Analyze pairs and MGH/MGZ (core/imaging/neuro.py), on the test images
nibabel ships and on files nibabel and SimpleITK write here: the values are the writer's, the
slices are oriented as axial DICOM, files that are not images are named as what they are, and
only files that really are cut short are called damaged."""
from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.errors import ScanError
from core.imaging import Limits, load_scan, load_series

DATA = Path(nib.__file__).parent / "tests" / "data"
SHIPPED = ["anatomical.nii", "functional.nii", "example4d.nii.gz", "example_nifti2.nii.gz",
           "reoriented_anat_moved.nii", "resampled_anat_moved.nii", "standard.nii.gz",
           "test.mgz"]
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # axial DICOM's voxel axes, as an affine


def first_volume(image) -> np.ndarray:
    data = np.asanyarray(image.dataobj, dtype=np.float64)
    return data[..., 0] if data.ndim == 4 else data


def axial(values: np.ndarray) -> np.ndarray:
    """Voxels written with the LPS affine, as slices: (k, j, i)."""
    return values.transpose(2, 1, 0)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_image_nibabel_ships_loads_with_its_values(name):
    """The first volume's values are nibabel's (scaling applied; NaN voxels, which the model
    cannot take, become 0 with a note), and the 4-D files say that the first volume is
    shown."""
    image = nib.load(DATA / name)
    scan = load_scan(DATA / name)
    expected = first_volume(image)
    assert any("NaN" in n for n in scan.notes) == bool(np.isnan(expected).any())
    expected = np.nan_to_num(expected, nan=0.0)
    assert sorted(scan.pixels.shape) == sorted(expected.shape)  # axes turned to axial
    np.testing.assert_allclose(np.sort(scan.pixels.ravel()), np.sort(expected.ravel()),
                               rtol=1e-6)
    assert scan.frame_label == "slice" and scan.source_format in ("NIfTI", "NIfTI-2", "MGH")
    four_d = len(image.shape) == 4 and image.shape[3] > 1
    assert any("volume 0 is shown" in n for n in scan.notes) == four_d
    assert (scan.volumes, scan.volume) == ((image.shape[3] if four_d else 1), 0)


@pytest.mark.parametrize("name", ["anatomical.nii", "reoriented_anat_moved.nii",
                                  "standard.nii.gz"])
def test_slices_are_oriented_as_simpleitk_orients_them(name):
    """SimpleITK, an independent reader, turned to LPS as axial DICOM is shown."""
    import SimpleITK as sitk

    expected = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(DATA / name)), "LPS"))
    np.testing.assert_array_equal(load_scan(DATA / name).pixels, expected.astype(np.float32))


DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", [nib.Nifti1Image, nib.Nifti2Image])
def test_each_datatype_written_by_nibabel_comes_back(tmp_path, dtype, kind):
    values = (np.arange(5 * 6 * 4).reshape(5, 6, 4) % 97).astype(dtype)
    path = tmp_path / "v.nii.gz"
    kind(values, LPS).to_filename(path)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.pixels, axial(values).astype(np.float32))
    assert scan.source_format == ("NIfTI-2" if kind is nib.Nifti2Image else "NIfTI")


def test_scaled_4d_and_nan_voxels_are_read_as_nibabel_reads_them(tmp_path):
    values = np.arange(4 * 3 * 2 * 3, dtype=np.int16).reshape(4, 3, 2, 3)
    image = nib.Nifti1Image(values, LPS)
    image.header.set_slope_inter(0.5, -10)
    image.to_filename(tmp_path / "scaled.nii")
    scan = load_scan(tmp_path / "scaled.nii")
    np.testing.assert_allclose(scan.pixels, axial(values[..., 0] * 0.5 - 10))
    assert "of 3 volumes: volume 0 is shown" in scan.notes[0]
    for k in (1, 2):  # the volume chosen is read, and said
        chosen = load_scan(tmp_path / "scaled.nii", volume=k)
        np.testing.assert_allclose(chosen.pixels, axial(values[..., k] * 0.5 - 10))
        assert (chosen.volumes, chosen.volume) == (3, k) and f"volume {k} is shown" in \
            chosen.notes[0]
    holes = np.ones((4, 4, 2), np.float32)
    holes[0, 0, 0] = np.nan
    nib.Nifti1Image(holes, LPS).to_filename(tmp_path / "holes.nii")
    with_nan = load_scan(tmp_path / "holes.nii")
    assert np.isfinite(with_nan.pixels).all()  # the model cannot take NaN: said in a note
    assert with_nan.pixels[0, 0, 0] == 0 and any("NaN" in n for n in with_nan.notes)


def test_an_affine_in_ras_is_turned_to_axial_dicom(tmp_path):
    values = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    nib.Nifti1Image(values, np.diag([2.0, 3.0, 4.0, 1.0])).to_filename(tmp_path / "ras.nii")
    scan = load_scan(tmp_path / "ras.nii")
    np.testing.assert_array_equal(scan.pixels, values[::-1, ::-1].transpose(2, 1, 0))
    assert (scan.pixel_spacing, scan.slice_spacing) == ((3.0, 2.0), 4.0)


def analyze_pair(folder: Path, kind=nib.AnalyzeImage) -> tuple[Path, Path, np.ndarray]:
    values = np.arange(6 * 5 * 3, dtype=np.int16).reshape(6, 5, 3)
    kind(values, LPS).to_filename(folder / "brain.hdr")
    return folder / "brain.hdr", folder / "brain.img", values


@pytest.mark.parametrize("kind", [nib.AnalyzeImage, nib.Nifti1Pair, nib.Nifti2Pair])
def test_a_pair_is_read_uploaded_together_or_zipped_and_a_lone_header_is_explained(tmp_path,
                                                                                   kind):
    header, data, values = analyze_pair(tmp_path, kind)
    expected = nib.load(header).get_fdata()
    uploaded = tmp_path / "up"
    uploaded.mkdir()
    for i, path in enumerate((data, header)):  # uploads keep no common name or folder
        target = uploaded / f"{i}" / path.name
        target.parent.mkdir()
        target.write_bytes(path.read_bytes())
    together = load_series(sorted(uploaded.glob("*/*")))
    assert np.sort(together.pixels.ravel()).tolist() == np.sort(expected.ravel()).tolist()
    with zipfile.ZipFile(tmp_path / "pair.zip", "w") as zf:
        zf.write(header, "brain.hdr")
        zf.write(data, "brain.img")
    np.testing.assert_array_equal(load_scan(tmp_path / "pair.zip").pixels, together.pixels)
    with pytest.raises(ScanError, match="Upload both files together"):
        load_scan(header)


def test_mgh_and_mgz_written_by_nibabel(tmp_path):
    values = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = nib.MGHImage(values, LPS)
    image.to_filename(tmp_path / "v.mgh")
    image.to_filename(tmp_path / "v.mgz")
    for name in ("v.mgh", "v.mgz"):
        scan = load_scan(tmp_path / name)
        np.testing.assert_array_equal(scan.pixels, axial(values))
        assert scan.source_format == "MGH"


def test_files_that_are_not_images_are_named_as_what_they_are(tmp_path):
    from nibabel import gifti

    surface = gifti.GiftiImage(darrays=[gifti.GiftiDataArray(np.zeros((3, 3), np.float32),
                                                             intent="NIFTI_INTENT_POINTSET")])
    surface.to_filename(tmp_path / "lh.surf.gii")
    cases = {DATA / "row_major.dconn.nii": ("CIFTI file", "scan_cifti"),
             DATA / "simple.trk": ("tractography", "scan_tracks"),
             DATA / "standard.tck": ("tractography", "scan_tracks"),
             tmp_path / "lh.surf.gii": ("GIFTI surface", "scan_surface")}
    for path, (what, key) in cases.items():
        with pytest.raises(ScanError, match=what) as caught:
            load_scan(path)
        assert caught.value.key == key and "damaged" not in str(caught.value)


@pytest.mark.parametrize("name", ["functional.nii", "example4d.nii.gz", "test.mgz",
                                  "example_nifti2.nii.gz"])
def test_only_copies_cut_short_are_called_damaged(tmp_path, name):
    data = (DATA / name).read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ScanError, match="damaged or incomplete"):
        load_scan(cut)


def test_a_cut_short_pair_is_damaged(tmp_path):
    header, data, _ = analyze_pair(tmp_path)
    data.write_bytes(data.read_bytes()[:50])
    with pytest.raises(ScanError, match="damaged or incomplete"):
        load_series([header, data])


def test_limits_are_checked_from_the_header_before_any_voxel(tmp_path):
    """A header that declares a huge volume is refused by its size, not read."""
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), LPS)
    image.header.set_data_shape((4000, 4000, 900))
    raw = image.header.binaryblock + b"\0" * 4 + b"\0" * 8
    (tmp_path / "huge.nii").write_bytes(raw)
    with pytest.raises(ScanError, match="limit"):
        load_scan(tmp_path / "huge.nii", Limits(pixels_per_frame=1_000_000))
    packed = tmp_path / "huge.nii.gz"
    packed.write_bytes(gzip.compress(raw))
    with pytest.raises(ScanError, match="damaged or incomplete|limit"):
        load_scan(packed)


@pytest.mark.parametrize("name", ["functional.nii", "example_nifti2.nii.gz"])
def test_each_volume_of_a_4d_file_nibabel_ships_is_nibabels(name):
    """Any volume can be chosen; one past the last is refused from the header, saying which
    volumes there are; a file of one volume has only volume 0."""
    image = nib.load(DATA / name)
    last = image.shape[3] - 1
    for k in (0, last // 2, last):
        expected = np.nan_to_num(np.asarray(image.dataobj[..., k], dtype=np.float64))
        scan = load_scan(DATA / name, volume=k)
        np.testing.assert_allclose(np.sort(scan.pixels.ravel()), np.sort(expected.ravel()),
                                   rtol=1e-6)
        assert scan.volume == k and scan.volumes == last + 1
    with pytest.raises(ScanError, match=f"0 to {last}; there is no volume {last + 1}") as info:
        load_scan(DATA / name, volume=last + 1)
    assert info.value.key == "scan_no_volume"
    with pytest.raises(ScanError, match="holds one volume") as one:
        load_scan(DATA / "anatomical.nii", volume=1)
    assert one.value.key == "scan_one_volume"


def test_a_volume_of_a_4d_metaimage_is_chosen_as_with_nifti(tmp_path):
    """SimpleITK's 4-D files (MetaImage) take the same volume choice."""
    import SimpleITK as sitk

    values = np.arange(3 * 4 * 5 * 6, dtype=np.int16).reshape(3, 4, 5, 6)  # t, z, y, x
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(v) for v in values]),
                    str(tmp_path / "series.mha"))
    scan = load_scan(tmp_path / "series.mha", volume=2)
    assert (scan.volumes, scan.volume) == (3, 2)
    np.testing.assert_array_equal(np.sort(scan.pixels.ravel()),
                                  np.sort(values[2].astype(np.float32).ravel()))
    with pytest.raises(ScanError, match="no volume 3"):
        load_scan(tmp_path / "series.mha", volume=3)
