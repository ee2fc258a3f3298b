"""A session's labelled scans (demo/work/labelled.py) with real DICOM files; no model is needed."""
from __future__ import annotations

import pytest

from demo.text.messages import UserError
from demo.work.session import Session
from demo.work.task import Task
from tests.demo.conftest import class_zip, real_scan

CLASSES = ("computed tomography", "magnetic resonance")


def _session() -> Session:
    return Session(task=Task(modality="other", template="a {} scan.", classes=CLASSES))


def test_examples_need_a_task_and_one_of_its_classes(tmp_path):
    with pytest.raises(UserError) as err:
        Session().add_examples([(real_scan("CT_small.dcm", tmp_path), "a.dcm")], "x")
    assert err.value.key == "need_task"
    with pytest.raises(UserError) as err:
        _session().add_examples([(real_scan("CT_small.dcm", tmp_path), "a.dcm")], "bone")
    assert err.value.key == "choose_class" and "magnetic resonance" in str(err.value)


def test_examples_are_named_per_class_and_the_same_picture_twice_is_skipped(tmp_path):
    session = _session()
    ct = real_scan("CT_small.dcm", tmp_path)
    added, problems = session.add_examples([(ct, "first.dcm"), (ct, "again.dcm")], CLASSES[0])
    assert added == 1 and [p.where for p in problems] == ["again.dcm"]
    assert problems[0].error.key == "duplicate_of"
    session.add_examples([(real_scan("MR_small.dcm", tmp_path), "m.dcm")], CLASSES[1],
                         suffix=" (sample)")
    assert [e.name for e in session.examples] == ["computed tomography #1",
                                                   "magnetic resonance #1 (sample)"]
    assert session.counts() == {CLASSES[0]: 1, CLASSES[1]: 1}
    examples, labels = session.training_set()
    assert labels == [0, 1] and examples == session.examples
    session.selected = 0
    assert session.remove_selected().label == CLASSES[0] and session.selected is None
    with pytest.raises(UserError) as err:
        session.training_set()
    assert err.value.key == "need_examples" and CLASSES[0] in str(err.value)


def test_a_zip_of_class_folders_fills_the_test_set_and_names_what_it_refuses(tmp_path):
    session = _session()
    session.add_examples([(real_scan("CT_small.dcm", tmp_path), "a.dcm")], CLASSES[0])
    path = class_zip(tmp_path / "tests.zip", {
        "Computed  Tomography": ["CT_small.dcm", "693_UNCR.dcm"],  # case and spaces differ
        "Magnetic Resonance": ["MR_small.dcm"],
        "ultrasound": ["US1_UNCR.dcm"]}, top="study")
    added, problems = session.add_test_zip(path)
    assert added == 3 and session.test_counts() == {CLASSES[0]: 2, CLASSES[1]: 1}
    assert [p.where for p in problems] == ["`study/ultrasound/US1_UNCR.dcm`"]
    assert problems[0].error.key == "zip_folder" and "ultrasound" in str(problems[0].error)
    assert session.overlap() == 1  # CT_small is an example too


def test_a_promoted_test_scan_becomes_an_example_and_leaves_the_test_set(tmp_path):
    session = _session()
    session.add_examples([(real_scan("CT_small.dcm", tmp_path), "a.dcm")], CLASSES[0])
    session.add_test_files([(real_scan("693_UNCR.dcm", tmp_path), "b.dcm"),
                            (real_scan("CT_small.dcm", tmp_path), "c.dcm")], CLASSES[0])
    fresh, copy = session.test_set
    moved = session.promote(fresh)
    assert moved.name == "computed tomography #2" and moved.digest == fresh.digest
    assert session.test_set == [copy] and session.counts()[CLASSES[0]] == 2
    with pytest.raises(UserError) as err:  # already an example: refused, and not a test scan
        session.promote(copy)
    assert err.value.key == "duplicate_of" and session.test_set == []
