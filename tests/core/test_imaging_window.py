"""core/imaging/window.py on plain arrays: known windows, LUTs and ranges give known levels.
Agreement with pydicom on real files is tested in test_imaging.py."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import core.imaging
from core.imaging.window import (WINDOW_PRESETS, VoiLut, Window, apply_voi_lut, apply_window,
                                 levels_to_rgb, robust_range)

MOVED = ("Window", "VoiLut", "WINDOW_PRESETS", "apply_window", "apply_voi_lut", "robust_range")


@pytest.mark.parametrize("name", MOVED)
def test_core_imaging_still_exports_the_window_names(name):
    assert getattr(core.imaging, name) is getattr(core.imaging.window, name)
    assert name in core.imaging.__all__


def test_presets_are_standard_ct_windows():
    assert WINDOW_PRESETS["brain"][:2] == (40, 80)
    assert WINDOW_PRESETS["lung"][:2] == (-600, 1500)
    assert WINDOW_PRESETS["bone"][:2] == (400, 1800)
    assert {"subdural", "stroke", "mediastinum", "soft tissue", "liver"} <= set(WINDOW_PRESETS)
    assert all(w.function == "LINEAR_EXACT" for w in WINDOW_PRESETS.values())
    hu = np.array([-1000.0, -600.0, 0.0, 40.0, 80.0, 1000.0], dtype=np.float32)
    assert apply_window(hu, WINDOW_PRESETS["brain"]).tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]


def test_linear_exact_window_is_centre_plus_or_minus_half_the_width():
    values = np.array([-100, 0, 25, 50, 100, 150], dtype=np.int16)
    levels = apply_window(values, Window(50, 100))
    assert levels.dtype == np.float32
    assert levels.tolist() == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert values.tolist() == [-100, 0, 25, 50, 100, 150]  # the input is left alone


def test_dicom_linear_window_shifts_centre_and_width():
    # PS3.3 C.11.2.1.2: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to [0, 1].
    levels = apply_window(np.array([0.0, 20.0, 39.5, 79.0, 100.0]), Window(40, 80, "LINEAR"))
    np.testing.assert_allclose(levels, [0.0, (20 - 39.5) / 79 + 0.5, 0.5, 1.0, 1.0], rtol=1e-6)
    # A width of 1 or less is a threshold at centre - 0.5.
    threshold = apply_window(np.array([9.0, 9.5, 9.6, 10.0]), Window(10, 1, "LINEAR"))
    assert threshold.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_sigmoid_window():
    # PS3.3 C.11.2.1.3: 1 / (1 + exp(-4 (x - c) / w)); extreme values saturate without warnings.
    values = np.array([100.0, 110.0, 90.0, -1e6, 1e6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        levels = apply_window(values, Window(100, 40, "SIGMOID"))
    np.testing.assert_allclose(levels, [0.5, 1 / (1 + math.exp(-1)), 1 / (1 + math.e), 0.0, 1.0],
                               rtol=1e-6)


def test_voi_lut_maps_its_entries_and_clamps_outside_them():
    table = np.array([0.0, 100.0, 255.0], dtype=np.float32)
    lut = VoiLut(first_mapped=10, values=table, bits=8)
    levels = apply_voi_lut(np.array([5, 10, 11, 11.7, 12, 20]), lut)
    np.testing.assert_allclose(levels, [0.0, 0.0, 100 / 255, 100 / 255, 1.0, 1.0], rtol=1e-6)
    assert table.tolist() == [0.0, 100.0, 255.0]  # the file's table is not scaled in place


def test_robust_range_is_the_half_percent_percentiles():
    ramp = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)
    assert robust_range(ramp) == pytest.approx((4.995, 994.005))


def test_robust_range_samples_large_scans_on_a_regular_grid():
    pixels = np.full((1, 100, 100), 1e6, dtype=np.float32)
    pixels[:, ::10, ::10] = np.arange(100).reshape(10, 10)  # only these are sampled
    assert robust_range(pixels, max_samples=100) == pytest.approx((0.495, 98.505))


def test_robust_range_of_nearly_or_wholly_constant_images():
    one_hot_pixel = np.zeros((1, 100, 100), dtype=np.float32)
    one_hot_pixel[0, 7, 7] = 1000.0  # the percentiles coincide: the full range is used
    assert robust_range(one_hot_pixel) == (0.0, 1000.0)
    assert robust_range(np.full((1, 4, 4), 7.0, dtype=np.float32)) == (6.5, 7.5)


def test_levels_become_rounded_8_bit_grey():
    levels = np.array([[0.0, 0.499, 0.5, 1.0]], dtype=np.float32)
    picture = levels_to_rgb(levels.copy())
    assert picture.mode == "RGB" and picture.size == (4, 1)
    assert np.asarray(picture)[0].tolist() == [[v] * 3 for v in (0, 127, 128, 255)]
    inverted = np.asarray(levels_to_rgb(levels.copy(), inverted=True))[0, :, 0]
    assert inverted.tolist() == [255, 128, 128, 0]


def test_colour_levels_keep_their_channels():
    levels = np.array([[[0.0, 0.5, 1.0], [1.0, 0.0, 0.25]]], dtype=np.float32)
    assert np.asarray(levels_to_rgb(levels)).tolist() == [[[0, 128, 255], [255, 0, 64]]]
