"""Reading uploads into a session's pictures: real DICOM files, duplicates, bad files, limits,
and what colour says about a modality."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from demo.work import scans
from demo.work.scans import (KEPT_SIDE, THUMBNAIL, colour_mismatch, kept_picture, looks_coloured,
                             read_scans)
from tests.demo.conftest import real_scan


def _named(label, target):
    return f"{label} #{sum(e.label == label for e in target) + 1}"


def test_real_files_are_read_once_and_bad_ones_reported_by_their_name(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan")
    items = [("ct", real_scan("CT_small.dcm", tmp_path), "first.dcm"),
             ("ct", str(notes), "notes.txt"),
             ("ct", real_scan("CT_small.dcm", tmp_path / ".."), "again.dcm"),
             ("mr", real_scan("MR_small.dcm", tmp_path), "mr.dcm")]
    target = []
    added, problems = read_scans(target, "examples", items, None, None, _named)
    assert added == 2 and [e.name for e in target] == ["ct #1", "mr #1"]
    assert [p.where for p in problems] == ["notes.txt", "again.dcm"]
    assert "ct #1" in str(problems[1].error.text("en"))  # the duplicate names its twin
    assert target[0].uid != target[1].uid and target[0].digest != target[1].digest
    assert max(target[0].thumbnail.size) <= THUMBNAIL and target[0].image.mode == "RGB"


def test_a_ct_window_on_an_mr_scan_is_noted_and_the_file_still_added(tmp_path):
    target = []
    added, problems = read_scans(target, "examples", [("mr", real_scan("MR_small.dcm", tmp_path),
                                                       "mr.dcm")], "lung", None, _named)
    assert added == 1 and problems[0].added and problems[0].where == "mr.dcm"


def test_a_full_set_refuses_more(tmp_path, monkeypatch):
    monkeypatch.setattr(scans, "MAX_EXAMPLES", 1)
    target = []
    items = [("ct", real_scan("CT_small.dcm", tmp_path), "a"),
             ("mr", real_scan("MR_small.dcm", tmp_path), "b")]
    added, problems = read_scans(target, "test scans", items, None, None, _named)
    assert added == 1 and "test scans" in problems[0].error.text("en")


def test_kept_pictures_are_reduced_and_colour_is_told_apart():
    big = Image.new("RGB", (2000, 1000), "grey")
    assert max(kept_picture(big).size) == KEPT_SIDE and kept_picture(big).size[1] == KEPT_SIDE // 2
    small = Image.new("RGB", (100, 80))
    assert kept_picture(small) is small
    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    grey = Image.fromarray(np.repeat(rng.integers(0, 255, (64, 64, 1), dtype=np.uint8), 3, 2))
    assert looks_coloured(colour) and not looks_coloured(grey)
    assert colour_mismatch(colour, "CT") == "colour_in_grey"
    assert colour_mismatch(grey, "dermoscopy") in ("grey_in_colour", None)


def test_a_frame_past_the_last_is_refused(tmp_path):
    from core.errors import ScanError
    from core.imaging import load_scan

    scan = load_scan(real_scan("emri_small.dcm", tmp_path))
    assert scans.frame_used(scan, None) is None and scans.frame_used(scan, 2) == 2
    with pytest.raises(ScanError, match="0 to"):
        scans.frame_used(scan, scan.n_frames)
