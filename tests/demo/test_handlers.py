"""The app's handlers called directly, with the tiny backbone and real DICOM files."""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from core.prompts import DualPrompt
from demo.handlers import AUTO_WINDOW, Studio
from demo.session import Session
from tests.demo.conftest import CT_FILES, MR_FILES, ROWS, real_scan


def last(generator):
    out = None
    for out in generator:
        pass
    return out


def ready_session(studio, tmp_path, tune=True) -> Session:
    session = Session()
    studio.set_task(session, "CT", "abdomen", "a {} photo.", ROWS, 12.5, 0.25)
    for label, names in ((ROWS[0][0], CT_FILES), (ROWS[1][0], MR_FILES)):
        paths = [real_scan(n, tmp_path) for n in names]
        studio.add_examples(session, paths, label, AUTO_WINDOW, -1)
    if tune:
        last(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1, progress=lambda *a, **k: None))
    return session


def test_task_is_checked_and_kept(studio):
    session = Session()
    out = studio.set_task(session, "CT", "kidney", "a CT photo of a {} in the kidney.",
                          [["cyst", "round\nfluid"], ["stone", ""], ["", ""]], 10.0, 0.5)
    assert out[0] is session and "2 classes" in out[1]
    assert session.classes == ["cyst", "stone"]
    assert session.descriptions == {"cyst": ["round", "fluid"]}
    assert (session.lambda_l1, session.lambda_kl) == (10.0, 0.5)


@pytest.mark.parametrize("template, rows, message", [
    ("a CT photo of a {}.", [["cyst", ""]], "at least two classes"),
    ("a CT photo.", ROWS, "exactly one"),
    ("a {} photo.", [["cyst", ""], ["Cyst", ""]], "given twice"),
])
def test_bad_tasks_are_explained_and_lose_nothing(studio, template, rows, message):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    with pytest.raises(gr.Error, match=message):
        studio.set_task(session, "CT", None, template, rows, 12.5, 0.25)
    assert session.classes == [r[0] for r in ROWS]  # the previous task is kept


def test_examples_are_added_per_file_and_uploads_deleted_with_the_session(studio, tmp_path):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    good = real_scan("CT_small.dcm", tmp_path)
    bad = tmp_path / "notes"
    bad.write_text("not an image at all")
    out = studio.add_examples(session, [good, str(bad)], ROWS[0][0], AUTO_WINDOW, -1)
    assert "Added 1 example" in out[2] and "File 2:" in out[2]
    assert "notes" not in out[2]  # file names may identify patients; positions are used
    assert len(session.examples) == 1 and isinstance(out[3][0][0], Image.Image)
    assert "**computed tomography**: 1" in out[4]
    assert os.path.exists(good)  # another session may be reading the same cached upload
    session.close()
    assert not os.path.exists(good) and not bad.exists()


def test_remove_selected_example(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    session.selected = 0
    out = studio.remove_selected(session)
    assert "Removed computed tomography #1" in out[1] and len(session.examples) == 5
    assert "Click an example first" in studio.remove_selected(session)[1]


def test_tuning_streams_progress_and_keeps_the_prompts(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    updates = list(studio.tune(session, "fast", 12.5, 0.25, 12, 1, 1,
                               progress=lambda *a, **k: None))
    assert any("Reading the examples" in u[1] for u in updates)
    assert any(u[1].startswith("Step ") for u in updates)
    final = updates[-1]
    assert "Tuning finished" in final[1] and "12 steps" in final[1]
    assert set(final[2]["series"]) == {"loss", "accuracy"} and final[2]["step"].max() == 12
    assert isinstance(session.tuned, DualPrompt) and session.tuned.classnames == session.classes


def test_stop_ends_tuning_with_what_was_learned(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    updates = []
    for update in studio.tune(session, "fast", 12.5, 0.25, 2000, 1, 1,
                              progress=lambda *a, **k: None):
        updates.append(update)
        if update[1].startswith("Step "):
            studio.stop(session)
    assert "stopped by you" in updates[-1][1]
    assert session.tuned is not None and len(session.history.steps) <= 10


def test_tuning_without_examples_is_explained(studio):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    with pytest.raises(gr.Error, match="Add at least one example"):
        last(studio.tune(session, "fast", 12.5, 0.25, 5, 1, 1, progress=lambda *a, **k: None))


def test_predict_shows_both_classifiers_and_a_map(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    out = studio.predict(session, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW, -1, 0.45)
    tuned, zero, picture, dropdown = out[1], out[2], out[3], out[4]
    assert set(tuned) == set(zero) == set(session.classes)
    assert sum(tuned.values()) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(picture, Image.Image) and picture.size == (224, 224)
    assert dropdown["value"] == max(tuned, key=tuned.get)
    other = [c for c in session.classes if c != dropdown["value"]][0]
    switched = studio.change_map(session, other, 0.8)[1]
    assert switched.size == (224, 224) and switched.tobytes() != picture.tobytes()
    report = Path(studio.report(session, other, 0.5))
    assert report.suffix == ".png" and Image.open(report).size[0] > 800


def test_predict_before_tuning_uses_zero_shot(studio, tmp_path):
    session = Session()
    studio.set_task(session, "MRI", None, "a {} photo.", ROWS, 12.5, 0.25)
    out = studio.predict(session, real_scan("CT_small.dcm", tmp_path), "brain", -1, 0.45)
    assert out[1] is None and set(out[2]) == set(session.classes)
    assert "zero-shot" in out[5] and "looks like CT" in out[5]


def test_prompts_round_trip_through_a_file(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    saved = studio.save_prompts(session)
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    first = studio.predict(session, scan, AUTO_WINDOW, -1, 0.45)[1]
    fresh = Session()
    upload = tmp_path / "upload.safetensors"
    upload.write_bytes(Path(saved).read_bytes())
    out = studio.load_prompts(fresh, str(upload))
    assert "Loaded prompts" in out[1] and fresh.classes == session.classes
    again = studio.predict(fresh, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW, -1, 0.45)
    assert again[1] == pytest.approx(first)


def test_bad_prompt_files_are_refused(studio, tmp_path):
    fake = tmp_path / "weights.safetensors"
    fake.write_bytes(b"\x80\x04 pickled things")
    with pytest.raises(gr.Error, match="not a prompt file"):
        studio.load_prompts(Session(), str(fake))
    with pytest.raises(gr.Error, match="Tune the prompts first"):
        studio.save_prompts(Session())


def test_app_without_a_model_says_what_is_wrong():
    studio = Studio(None, "BiomedCLIP is not in the local cache. Load it once ...")
    assert "could not be loaded" in studio.status() and "local cache" in studio.status()
    with pytest.raises(gr.Error, match="not loaded"):
        studio.set_task(Session(), "CT", None, "a {} photo.", ROWS, 12.5, 0.25)


def test_closing_the_session_deletes_its_files(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    saved = studio.save_prompts(session)
    session.close()
    assert not os.path.exists(saved) and session.examples == [] and session.tuned is None


def _class_zip(tmp_path) -> str:
    import zipfile

    from pydicom.data import get_testdata_file

    path = tmp_path / "test-set.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.write(get_testdata_file("CT_small.dcm"), "eval/Computed Tomography/a")
        z.write(get_testdata_file("693_UNCI.dcm"), "eval/computed tomography/b.dcm")
        z.write(get_testdata_file("MR_small_padded.dcm"), "eval/magnetic resonance/c")
        z.write(get_testdata_file("MR_small_bigendian.dcm"), "eval/ultrasound/d")
        z.writestr("eval/magnetic resonance/notes.txt", "not a scan")
        z.writestr("loose.dcm", "at the top")
    return str(path)


def test_evaluation_from_a_zip_of_class_folders_and_from_files(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    out = studio.add_test_scans(session, _class_zip(tmp_path), None, ROWS[0][0], AUTO_WINDOW, -1)
    message = out[3]
    assert "Added 3 test scans" in message
    assert "'ultrasound' is not one of the classes" in message and "'(none)'" in message
    assert "File 5 of the zip" in message  # the text file, reported by position
    assert "**computed tomography**: 2" in out[4] and "**magnetic resonance**: 1" in out[4]
    more = studio.add_test_scans(session, None, [real_scan("MR_small.dcm", tmp_path)], ROWS[1][0],
                                 AUTO_WINDOW, -1)
    assert "Added 1 test scan." in more[3]

    _, status, table, zero_fig, tuned_fig = studio.evaluate(session)
    assert "4 test scans" in status and "tuned prompts" in status
    assert list(table.columns) == ["metric", "zero-shot", "tuned"]
    assert table.iloc[0, 0] == "accuracy" and 0 <= table.iloc[0, 2] <= 100
    assert zero_fig is not None and tuned_fig is not None and len(tuned_fig.axes) >= 1
    cached = len(session.features)
    studio.evaluate(session)
    assert len(session.features) == cached  # images are encoded once per session


def test_evaluation_needs_a_test_set_and_works_before_tuning(studio, tmp_path):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    with pytest.raises(gr.Error, match="Add labelled test scans"):
        studio.evaluate(session)
    with pytest.raises(gr.Error, match="Choose a zip"):
        studio.add_test_scans(session, None, None, ROWS[0][0], AUTO_WINDOW, -1)
    bad = tmp_path / "notazip.zip"
    bad.write_text("plain text")
    with pytest.raises(gr.Error, match="zip file holding one folder per class"):
        studio.add_test_scans(session, str(bad), None, ROWS[0][0], AUTO_WINDOW, -1)
    studio.add_test_scans(session, _class_zip(tmp_path), None, ROWS[0][0], AUTO_WINDOW, -1)
    _, status, table, _, tuned_fig = studio.evaluate(session)
    assert "zero-shot: no tuned prompts yet" in status
    assert list(table.columns) == ["metric", "zero-shot"] and tuned_fig is None


def test_model_loads_in_the_background_and_the_page_says_so():
    studio = Studio.start("no-such-backbone", background=True)
    studio._ready.wait(60)
    assert "could not be loaded" in studio.status() and "Unknown backbone" in studio.status()
    text, timer = studio.status_until_ready()
    assert timer["active"] is False
    loading = Studio(None)
    assert loading.status().startswith("⏳") and loading.status_until_ready()[1]["active"] is True
    with pytest.raises(gr.Error, match="still loading"):
        loading.backbone(wait_s=0.01)


def test_a_session_is_made_by_its_first_event(studio):
    out = studio.set_task(None, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    assert isinstance(out[0], Session) and out[0].classes == [r[0] for r in ROWS]
