"""The app's handlers called directly, with the tiny backbone and real DICOM files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from core.errors import StudioError
from core.prompts import PromptState
from demo.ui.handlers import Studio
from demo.ui.replies import AUTO_WINDOW
from demo.work.session import Session
from tests.demo.conftest import CT_FILES, MR_FILES, ROWS, real_scan


def last(generator):
    out = None
    for out in generator:
        pass
    return out


def prompts_file(updates) -> str:
    """The tuned prompts' file a tuning stream offers (with its summary)."""
    return next(u["save"] for u in updates if isinstance(u.get("save"), str))


def tuned(studio, session, *settings, estimate=True, stop_when=None) -> list[dict]:
    """A tuning run's replies, then (as the page chains it) its held-out estimate's;
    `stop_when(reply)` presses Stop after a reply."""
    updates = []
    for update in studio.tune(session, *settings, progress=lambda *a, **k: None):
        updates.append(update)
        if stop_when is not None and stop_when(update):
            studio.stop(session)
    if estimate:
        updates.extend(studio.estimate(session))
    return updates


def status_lines(updates, name: str = "tune_status") -> list[str]:
    return [u[name] for u in updates if isinstance(u.get(name), str)]


def ready_session(studio, tmp_path, tune=True) -> Session:
    session = Session()
    studio.set_task(session, "CT", "abdomen", "a {} photo.", ROWS, 12.5, 0.25)
    for label, names in ((ROWS[0][0], CT_FILES), (ROWS[1][0], MR_FILES)):
        paths = [real_scan(n, tmp_path) for n in names]
        studio.add_examples(session, paths, label, AUTO_WINDOW)
    if tune:
        tuned(studio, session, "fast", 12.5, 0.25, 10, 1, 1, estimate=False)
    return session


def test_task_is_checked_and_kept(studio):
    session = Session()
    out = studio.set_task(session, "CT", "kidney", "a CT photo of a {} in the kidney.",
                          [["cyst", "round\nfluid"], ["stone", ""], ["", ""]], 10.0, 0.5)
    assert out["session"] is session and "2 classes" in out["task_status"]
    assert session.classes == ["cyst", "stone"]
    assert session.descriptions == {"cyst": ["round", "fluid"]}
    assert (session.task.lambda_l1, session.task.lambda_kl) == (10.0, 0.5)


@pytest.mark.parametrize("template, rows, message", [
    ("a CT photo of a {}.", [["cyst", ""]], "at least two classes"),
    ("a CT photo.", ROWS, "exactly one"),
    ("a {} photo.", [["cyst", ""], ["Cyst", ""]], "given twice"),
])
def test_bad_tasks_are_explained_and_lose_nothing(studio, template, rows, message):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    out = studio.set_task(session, "CT", None, template, rows, 12.5, 0.25)
    status = out["task_status"]
    assert message in status and status.startswith("⚠️")  # shown in the step's status line
    assert set(out) == {"task_status"}  # every other output stays as it was
    assert session.classes == [r[0] for r in ROWS]  # the previous task is kept


def test_examples_are_added_per_file_and_bad_ones_named_as_uploaded(studio, tmp_path):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    good = real_scan("CT_small.dcm", tmp_path)
    bad = tmp_path / "notes"
    bad.write_text("not an image at all")
    out = studio.add_examples(session, [good, str(bad), good], ROWS[0][0], AUTO_WINDOW)
    status = out["example_status"]
    assert "Added 1 example" in status and "`notes`: " in status
    assert "the same picture as computed tomography #1" in status  # the duplicate, skipped
    assert len(session.examples) == 1 and Image.open(out["gallery"][0][0]).size == (128, 128)
    assert "**computed tomography**: 1" in out["counts"] and out["files"] is None
    assert session.owner and good in studio.files.owned(session.owner)


def test_remove_selected_example(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    session.selected = 0
    out = studio.remove_selected(session)
    assert "Removed computed tomography #1" in out["example_status"]
    assert len(session.examples) == 5
    assert "Click an example first" in studio.remove_selected(session)["example_status"]


def test_tuning_streams_progress_and_keeps_the_prompts(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    updates = tuned(studio, session, "fast", 12.5, 0.25, 12, 1, 1)
    lines = status_lines(updates)
    assert any("Reading the examples" in line for line in lines)
    assert any(line.startswith("Step ") for line in lines)
    final = next(u for u in updates if "save" in u)  # the tuned prompts' file
    assert "Tuning finished" in final["tune_status"] and "12 steps" in final["tune_status"]
    assert "Training accuracy" in final["tune_status"]
    assert "not a measure" in final["tune_status"]
    curve = final["curve"]  # a figure with numeric axes over the whole run, both lines drawn
    loss_axis = curve.axes[0]
    assert loss_axis.get_xlim() == (0, 12) and len(loss_axis.lines[0].get_xdata()) == 12
    assert len(curve.axes[1].lines[0].get_ydata()) == 12
    # the summary's training accuracy is the curve's marked final point (defect 6)
    (marker_y,) = curve.axes[1].lines[1].get_ydata()
    assert marker_y == pytest.approx(100 * session.history.final["accuracy"])
    assert isinstance(session.tuned, PromptState) and session.tuned.classnames == session.classes
    saved = final["save"]
    assert Path(saved).name.startswith("biomed-dpt-prompts_") and Path(saved).exists()
    # then the held-out estimate, computed from the cached features, in its own line
    progress = status_lines(updates, "estimate_status")
    assert any(line.startswith("Estimating accuracy on held-out examples (3-fold") for line in
               progress)  # the folds it will use, not a constant (defect 6)
    estimate = progress[-1]
    assert "Held-out estimate" in estimate
    assert "3-fold cross-validation on your 6 examples" in estimate
    for method in ("tuned prompts (Biomed-DPT)", "zero-shot", "Tip-Adapter", "linear probe"):
        assert f"| {method}" in estimate
    assert "only 3 examples" in estimate  # fewer than 4 per class: said
    held = session.held_out["methods"]
    assert set(held) == {"tuned", "zero-shot", "tip-adapter", "linear-probe"}
    assert all(0 <= m["accuracy"] <= 1 and len(m["per_fold"]) == 3 for m in held.values())
    assert not session.runs.going()  # every run ended, with its stop


def test_examples_are_encoded_as_they_arrive_and_tuning_reuses_them(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    updates = list(studio.prepare_features(session))
    lines = status_lines(updates, "features_status")
    assert any("Preparing the features of the examples" in line for line in lines)
    assert "features are ready" in lines[-1]
    assert len(session.features) == 2 * len(session.examples)  # with and without prompts
    misses = session.features.misses
    updates = tuned(studio, session, "fast", 12.5, 0.25, 5, 1, 1)
    assert "Held-out estimate" in status_lines(updates, "estimate_status")[-1]
    # nothing re-encoded: not for tuning, nor for the estimate and its baselines
    assert session.features.misses == misses


def test_closing_a_tuning_stream_stops_and_joins_its_worker(studio, tmp_path):
    import threading

    session = ready_session(studio, tmp_path, tune=False)
    stream = studio.tune(session, "fast", 12.5, 0.25, 5000, 1, 1, progress=lambda *a, **k: None)
    for update in stream:
        if update.get("tune_status", "").startswith("Step "):
            (run,) = session.runs.going()
            break
    stream.close()  # the client went away mid-run
    assert run.stopped and not Path(run.stop_path).exists()  # stopped, and its stop gone
    assert not [t for t in threading.enumerate() if t.name == "tune"]
    assert not session.runs.going()


def test_stop_ends_a_first_tuning_with_what_was_learned(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    updates = tuned(studio, session, "fast", 12.5, 0.25, 2000, 1, 1, estimate=False,
                    stop_when=lambda u: u.get("tune_status", "").startswith("Step "))
    assert "stopped by you" in updates[-1]["tune_status"]  # no prompts before: these are kept
    assert session.tuned is not None and len(session.history.steps) <= 10


def test_a_quick_stop_keeps_the_good_prompts_and_offers_the_stopped_ones(studio, tmp_path):
    """Defect 3: after a finished run, Tune then Stop at once kept the stopped run's prompts,
    with no way back."""
    session = ready_session(studio, tmp_path)
    good = session.tuned
    updates = tuned(studio, session, "fast", 12.5, 0.25, 2000, 1, 1,
                    stop_when=lambda u: u.get("tune_status", "").startswith("Step "))
    offered = next(u for u in updates if "swap" in u)
    assert "Stopped by you after" in offered["tune_status"]
    assert "(10 steps) are kept" in offered["tune_status"]
    assert offered["swap"]["visible"] and "Use the stopped run's prompts" in offered["swap"]["value"]
    assert session.tuned is good and "save" not in offered  # the Save button keeps its file
    # no estimate is claimed for prompts that were not kept; the kept ones are estimated
    assert "see the held-out" not in offered["tune_status"]
    assert "Held-out estimate" in status_lines(updates, "estimate_status")[-1]
    assert session.held_out is not None
    stopped = session.prompts.other.prompts
    # taking the stopped run's prompts, then going back: each one click, nothing lost
    took = studio.swap_prompts(session)
    assert session.tuned is stopped and "Now using the other prompts" in took["tune_status"]
    assert "Restore the previous prompts (10 steps)" in took["swap"]["value"]
    assert Path(took["save"]).exists()  # Save offers the prompts now in use
    back = studio.swap_prompts(session)
    assert session.tuned is good and session.held_out is not None  # with its estimate
    assert "Go back to the prompts you left" in back["swap"]["value"]


def test_a_finished_run_keeps_the_previous_prompts_restorable(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    first = session.tuned
    updates = tuned(studio, session, "fast", 12.5, 0.25, 6, 1, 2, estimate=False)
    final = next(u for u in updates if "save" in u)
    assert session.tuned is not first
    assert "Restore the previous prompts (10 steps)" in final["swap"]["value"]
    restored = studio.swap_prompts(session)
    assert session.tuned is first and "10 steps" in restored["tune_status"]
    assert restored["curve"].axes[0].get_xlim() == (0, 10)  # the restored run's own curve


def test_stop_before_the_first_step_keeps_the_previous_prompts(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    previous = session.tuned
    updates = []
    for update in studio.tune(session, "paper", 12.5, 0.25, 10, 5, 1,
                              progress=lambda *a, **k: None):
        updates.append(update)
        studio.stop(session)  # during the encoding of the crops, before any step
    assert "previous prompts are kept" in updates[-1]["tune_status"]
    assert session.tuned is previous


def test_stop_with_nothing_running_says_so_and_breaks_nothing_later(studio, tmp_path):
    """Defect 1: a Stop pressed with no run left the stop set; the next Tune never started,
    every Evaluate answered "stopped", and new examples said their features were
    interrupted."""
    session = ready_session(studio, tmp_path)
    assert studio.stop(session) == {}  # nothing changes on the page (a toast says why)
    assert not session.runs.going()
    updates = tuned(studio, session, "fast", 12.5, 0.25, 5, 1, 1)
    assert "Tuning finished" in next(u for u in updates if "save" in u)["tune_status"]
    assert "Held-out estimate" in status_lines(updates, "estimate_status")[-1]
    studio.add_test_scans(session, None, [real_scan("CT_small.dcm", tmp_path)], ROWS[0][0],
                          AUTO_WINDOW)
    assert "Accuracy" in studio.evaluate(session)["eval_status"]
    studio.add_examples(session, [real_scan("emri_small.dcm", tmp_path)], ROWS[1][0],
                        AUTO_WINDOW)
    assert "features are ready" in list(studio.prepare_features(session))[-1]["features_status"]


def test_stop_reaches_the_estimate_only_and_tune_replaces_it(studio, tmp_path):
    """Defect 2: during the held-out estimate, Tune acts (ends the estimate, starts) and Stop
    ends the estimate alone."""
    import threading

    session = ready_session(studio, tmp_path, tune=False)
    tuned(studio, session, "fast", 12.5, 0.25, 10, 1, 1, estimate=False)
    estimate = studio.estimate(session)
    first = next(estimate)
    assert first["estimate_status"].startswith("Estimating")
    (run,) = session.runs.going()
    assert run.kind == "estimate"
    assert studio.stop(session) == {"estimate_status": "Stopping after the current step…"}
    assert status_lines(list(estimate), "estimate_status")[-1] == \
        "The held-out estimate was stopped."
    assert session.tuned is not None and session.held_out is None

    # the estimate waits in the tuning line behind another user's run; a Tune replaces it
    (tmp_path / "other").mkdir()
    other = ready_session(studio, tmp_path / "other", tune=False)
    long_run = studio.tune(other, "fast", 12.5, 0.25, 5000, 1, 1, progress=lambda *a, **k: None)
    for update in long_run:
        if update.get("tune_status", "").startswith("Step "):
            break
    replies = []
    waiting = threading.Thread(target=lambda: replies.extend(studio.estimate(session)))
    waiting.start()
    while not any("in line" in r.get("estimate_status", "") for r in replies):
        waiting.join(0.05)
    again = studio.tune(session, "fast", 12.5, 0.25, 5, 1, 3, progress=lambda *a, **k: None)
    next(again)  # the new run has begun: the estimate of the prompts it replaces ends
    waiting.join(30)
    assert not waiting.is_alive()
    assert replies[-1] == {"estimate_status": "The held-out estimate was stopped: a new tuning "
                                              "run began."}
    long_run.close()
    assert "Tuning finished" in next(u for u in again if "save" in u)["tune_status"]


def test_a_second_tune_while_one_runs_changes_nothing(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    running = studio.tune(session, "fast", 12.5, 0.25, 5000, 1, 1, progress=lambda *a, **k: None)
    for update in running:
        if update.get("tune_status", "").startswith("Step "):
            break
    again = list(studio.tune(session, "fast", 12.5, 0.25, 5, 1, 1,
                             progress=lambda *a, **k: None))
    assert again == [{"tune_status": again[0]["tune_status"]}]  # a skip: the page keeps its text
    assert [r.kind for r in session.runs.going()] == ["tune"]
    running.close()


def test_tuning_without_examples_is_explained(studio):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    out = last(studio.tune(session, "fast", 12.5, 0.25, 5, 1, 1, progress=lambda *a, **k: None))
    assert "Add at least one example" in out["tune_status"]


def test_predict_shows_both_classifiers_a_map_and_its_report(studio, tmp_path):
    import json

    session = ready_session(studio, tmp_path)
    out = studio.predict(session, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW)
    tuned, zero, baseline = out["tuned_label"], out["zero_label"], out["baseline_label"]
    view, picture, dropdown, nearest = out["scan_view"], out["heat"], out["map_class"], out["nearest"]
    assert set(tuned) == set(zero) == set(baseline) == set(session.classes)
    assert sum(tuned.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(baseline.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(nearest) == 3 and all(Image.open(path).size[0] <= 160 for path, _ in nearest)
    similarities = [float(caption.split(" · ")[0]) for _, caption in nearest]
    assert similarities == sorted(similarities, reverse=True) and similarities[0] <= 1.0
    assert session.prediction.nearest[0][0] in session.examples
    picture, view = Image.open(picture), Image.open(view)
    assert picture.size == view.size == (224, 224)
    assert dropdown["value"] == max(tuned, key=tuned.get)
    # the report is made after the prediction is shown, of the class on screen
    assert studio.report_pending() == {"__type__": "update", "value": None, "interactive": False}
    assert studio.report_ready() == {"__type__": "update", "interactive": True}
    report = studio.report(session, dropdown["value"], 0.45, "jet")
    facts = json.loads(Image.open(report).text["biomed-dpt-report"])
    assert facts["tuned"] == pytest.approx(tuned, abs=1e-5) and facts["window"] == "auto"
    assert facts["explained"] == dropdown["value"]
    other = [c for c in session.classes if c != dropdown["value"]][0]
    _, switched = studio.change_map(session, other, 0.8, "cividis")
    switched = Image.open(switched)
    assert switched.size == (224, 224) and switched.tobytes() != picture.tobytes()
    report2 = studio.report(session, other, 0.8, "cividis")
    facts2 = json.loads(Image.open(report2).text["biomed-dpt-report"])
    assert facts2["explained"] == other and facts2["colour_map"] == "cividis"
    assert facts2["opacity"] == 0.8
    # a class the prediction does not know falls back to the one ranked first
    assert json.loads(Image.open(studio.report(session, "nonsense", 0.5)).text[
        "biomed-dpt-report"])["explained"] == dropdown["value"]


def test_predict_before_tuning_uses_zero_shot(studio, tmp_path):
    session = Session()
    studio.set_task(session, "MRI", None, "a {} photo.", ROWS, 12.5, 0.25)
    out = studio.predict(session, real_scan("CT_small.dcm", tmp_path), "brain")
    assert out["tuned_label"] is None and set(out["zero_label"]) == set(session.classes)
    assert "zero-shot" in out["predict_status"] and "looks like CT" in out["predict_status"]


def test_prompts_round_trip_through_a_file(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    saved = prompts_file(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1,
                                     progress=lambda *a, **k: None))
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    first = studio.predict(session, scan, AUTO_WINDOW)["tuned_label"]
    fresh = Session()
    upload = tmp_path / "upload.safetensors"
    upload.write_bytes(Path(saved).read_bytes())
    out = studio.load_prompts(fresh, str(upload))
    assert "Loaded prompts" in out["prompts_status"] and fresh.classes == session.classes
    assert out["modality"] == "CT" and fresh.modality == "CT"  # the modality comes back too
    again = studio.predict(fresh, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW)
    assert again["tuned_label"] == pytest.approx(first)


def test_a_task_of_other_classes_drops_the_tuned_prompts_and_says_so(studio, tmp_path):
    session = ready_session(studio, tmp_path)
    tuned_for = ", ".join(session.tuned.classnames)
    same = studio.set_task(session, "CT", "abdomen", "a CT photo of a {}.", ROWS, 12.5, 0.25)
    assert session.tuned is not None and "tune again" not in same["task_status"]  # kept
    assert "value" not in same["save"]  # the Save button keeps offering them
    rows = [ROWS[0], ["renal stone", ""]]
    out = studio.set_task(session, "CT", "abdomen", "a {} photo.", rows, 12.5, 0.25)
    assert f"were for other classes ({tuned_for}); tune again" in out["task_status"]
    assert session.tuned is None and session.history is None
    assert out["save"]["value"] is None  # and the Save button no longer offers them
    out = studio.predict(session, real_scan("CT_small.dcm", tmp_path), AUTO_WINDOW)
    assert out["tuned_label"] is None


def test_loading_prompts_drops_the_scans_of_other_classes_and_says_so(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    saved = prompts_file(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1,
                                     progress=lambda *a, **k: None))
    other = Session()
    studio.set_task(other, "MRI", None, "a {} photo.", [[ROWS[0][0], ""], ["oedema", ""]],
                    12.5, 0.25)
    studio.add_examples(other, [real_scan("MR_small.dcm", tmp_path)], "oedema", AUTO_WINDOW)
    studio.add_examples(other, [real_scan("CT_small.dcm", tmp_path)], ROWS[0][0], AUTO_WINDOW)
    other.add_test_files([(real_scan("MR_small_padded.dcm", tmp_path), "t.dcm")], "oedema")
    out = studio.load_prompts(other, saved)
    assert "Removed the class oedema and its 1 examples." in out["prompts_status"]
    assert other.classes == session.classes and other.task.modality == "CT"
    assert [e.label for e in other.examples] == [ROWS[0][0]] and other.test_set == []
    assert out["table"] == session.task.rows()  # the class table shows the file's task


def test_bad_prompt_files_are_refused(studio, tmp_path):
    fake = tmp_path / "weights.safetensors"
    fake.write_bytes(b"\x80\x04 pickled things")
    assert "not a prompt file" in studio.load_prompts(Session(), str(fake))["prompts_status"]


def test_app_without_a_model_says_what_is_wrong():
    studio = Studio(None, "BiomedCLIP is not in the local cache. Load it once ...")
    assert "could not be loaded" in studio.status() and "local cache" in studio.status()
    assert "demo model" in studio.status()  # the page offers it
    assert "not loaded" in studio.set_task(Session(), "CT", None, "a {} photo.", ROWS,
                                           12.5, 0.25)["task_status"]


def test_closing_the_page_deletes_the_sessions_files(studio, tmp_path):
    session = ready_session(studio, tmp_path, tune=False)
    saved = prompts_file(studio.tune(session, "fast", 12.5, 0.25, 5, 1, 1,
                                     progress=lambda *a, **k: None))
    uploads = studio.files.owned(session.owner)
    assert uploads and all(os.path.exists(p) for p in uploads) and os.path.exists(saved)
    for path in uploads:  # uploaded a while ago
        os.utime(path, (os.path.getmtime(path) - 60,) * 2)

    class Closed:
        session_hash = session.owner

    studio.close_session(Closed())
    assert not os.path.exists(saved) and not any(os.path.exists(p) for p in uploads)
    assert session.examples == [] and session.tuned is None


def test_a_file_just_uploaded_again_by_someone_else_outlives_the_first_page(tmp_path,
                                                                           monkeypatch):
    """Gradio keeps one file per content and name: a second student's upload of the same scan
    may be that file, before any handler of theirs has seen it."""
    import time

    from demo.runtime import storage

    monkeypatch.setattr(storage, "FRESH_S", 0.5)
    files = storage.SessionFiles()
    shared, other = tmp_path / "shared.dcm", tmp_path / "other.dcm"
    shared.write_bytes(b"scan"), other.write_bytes(b"scan 2")
    files.remember("first", [shared])
    files.remember("third", [other])
    files.close("first")
    assert shared.exists()  # written a moment ago: perhaps someone's upload in flight
    files.remember("second", [shared])  # ... it was: the second student's handler takes it up
    files.close("third")
    time.sleep(1.0)
    assert shared.exists() and not other.exists()
    files.close("second")
    time.sleep(1.0)
    assert not shared.exists()


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
    out = studio.add_test_scans(session, _class_zip(tmp_path), None, ROWS[0][0], AUTO_WINDOW)
    message = out["test_status"]
    assert "Added 3 test scans" in message
    assert "'ultrasound' is not one of the classes" in message and "'(none)'" in message
    assert "eval/magnetic resonance/notes.txt" in message  # named by its path in the zip
    counts = out["test_counts"]
    assert "**computed tomography**: 2" in counts and "**magnetic resonance**: 1" in counts
    more = studio.add_test_scans(session, None, [real_scan("MR2_UNCR.dcm", tmp_path)],
                                 ROWS[1][0], AUTO_WINDOW)
    assert "Added 1 test scan." in more["test_status"]

    evaluated = studio.evaluate(session)
    status, table, cells = evaluated["eval_status"], evaluated["metrics"], evaluated["cell"]
    zero_fig, tuned_fig = evaluated["confusion_zero"], evaluated["confusion_tuned"]
    assert table["visible"] is True
    table = table["value"]
    assert "4 test scans" in status and "tuned prompts" in status
    assert "also training examples" in status  # MR2_UNCR is an example too
    assert list(table.columns) == ["metric", "zero-shot", "Tip-Adapter", "linear probe", "tuned"]
    assert table.iloc[0, 0] == "accuracy" and all(0 <= v <= 100 for v in table.iloc[0, 1:])
    assert set(session.evaluated[1]) == {"zero-shot", "tip-adapter", "linear-probe", "tuned"}
    assert zero_fig is not None and tuned_fig is not None and len(tuned_fig.axes) >= 1
    cached = len(session.features)
    studio.evaluate(session)
    assert len(session.features) == cached  # images are encoded once per session

    # from a cell of the matrix back to its scans, with maps, and one into the examples
    result = session.evaluated[1]["tuned"]
    assert sum(n for row in result.confusion for n in row) == 4
    first = cells["choices"][0]
    assert cells["value"] == first[1] and "true " in first[0] and "predicted" in first[0]
    t, p = (int(k) for k in first[1].split(","))
    assert result.confusion[t][p] == int(first[0].rsplit("(", 1)[1].rstrip(")"))
    out = studio.show_cell(session, first[1])
    shown = out["cell_gallery"]
    assert len(shown) == result.confusion[t][p] and out["promote"]["visible"] is True
    assert Image.open(shown[0][0]).size == (224, 224)

    class Click:
        index = 0

    n_examples, n_tests = len(session.examples), len(session.test_set)
    assert "Selected" in studio.select_cell_scan(session, Click())[1]
    out = studio.promote_cell_scan(session)
    status = out["cell_status"]
    if "already there" not in status:  # a scan that is an example already is refused
        left = len(shown) - 1
        assert "Added it to the examples" in status and f"this cell now holds {left}" in status
        assert len(session.examples) == n_examples + 1
        assert len(session.test_set) == n_tests - 1
        # the cell's other scans keep their maps (issue 20, defect 6)
        assert len(out["cell_gallery"]) == left
        assert all(Image.open(path).size == (224, 224) for path, _ in out["cell_gallery"])


def test_evaluation_needs_a_test_set_and_works_before_tuning(studio, tmp_path):
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    assert "Add labelled test scans" in studio.evaluate(session)["eval_status"]
    assert "Choose a zip" in studio.add_test_scans(session, None, None, ROWS[0][0],
                                                   AUTO_WINDOW)["test_status"]
    bad = tmp_path / "notazip.zip"
    bad.write_text("plain text")
    assert "zip file holding one folder per class" in studio.add_test_scans(
        session, str(bad), None, ROWS[0][0], AUTO_WINDOW)["test_status"]
    studio.add_test_scans(session, _class_zip(tmp_path), None, ROWS[0][0], AUTO_WINDOW)
    evaluated = studio.evaluate(session)
    status, table = evaluated["eval_status"], evaluated["metrics"]["value"]
    tuned_fig = evaluated["confusion_tuned"]
    assert "zero-shot: no tuned prompts yet" in status
    assert list(table.columns) == ["metric", "zero-shot"] and tuned_fig is None


def test_sample_scans_set_a_whole_task_in_one_click(studio):
    session = Session()
    out = studio.use_samples(session, "imaging-modality")
    assert "Sample scans added" in out["task_status"] and len(session.examples) == 8
    assert session.counts() == {c: 2 for c in session.classes}
    assert all(e.name.endswith("(sample)") for e in session.examples)
    assert out["modality"] == "other" and out["template"] == "a medical photo of a {}."
    assert len(out["gallery"]) == 8  # the gallery shows them
    assert "Every class has examples: tune in step 3" in out["task_status"]  # not "add some"


def test_the_viewer_offers_a_slider_and_a_strip_for_volumes(studio, tmp_path):
    """A volume is seen whole: a slider, and a strip of its slices (ends included) whose
    click picks that slice; a single picture has neither."""
    from gradio import SelectData

    volume = real_scan("emri_small.dcm", tmp_path)
    view = studio.preview([volume], AUTO_WINDOW, None, None, 3)
    assert Image.open(view["preview"]).size == (224, 224)
    about, slider = view["preview_text"], view["frame"]
    assert "slice 3 of 0–9" in about or "frame 3 of 0–9" in about
    assert slider["visible"] is True and slider["maximum"] == 9 and slider["value"] == 3
    strip = view["strip"]["value"]
    assert [caption for _, caption in strip] == [str(i) for i in range(10)]
    assert all(max(Image.open(path).size) <= 96 for path, _ in strip)
    assert view["strip_slices"] == {"slices": list(range(10)), "frames": 10}
    assert view["range_row"]["visible"] is True and view["volume"]["visible"] is False
    click = SelectData(None, {"index": 7, "value": None})
    assert studio.strip_clicked(view["strip_slices"], click) == 7
    single = studio.preview([real_scan("CT_small.dcm", tmp_path)], AUTO_WINDOW, None, None, -1)
    assert single["frame"]["visible"] is False and single["strip"]["visible"] is False
    assert single["range_row"]["visible"] is False


def test_every_slice_from_a_to_b_is_said_then_added_each_as_an_example(studio, tmp_path):
    """The count is said before anything is added; each slice of the range becomes an example
    (pictures equal to another are added once, said); a range past the last slice or the
    wrong way round is refused and adds nothing."""
    import nibabel as nib
    import numpy as np

    session = Session()
    studio.set_task(session, "MRI", None, "a {} photo.", ROWS, 12.5, 0.25)
    label = ROWS[0][0]
    values = np.zeros((24, 24, 12), np.int16)
    for k in range(8):  # slices 0-7 differ; 8-11 are the same blank picture
        values[k:k + 6, 3 + k:9 + k, k] = 100 + 20 * k
    path = tmp_path / "volume.nii.gz"
    nib.Nifti1Image(values, np.eye(4)).to_filename(path)
    view = studio.preview([str(path)], AUTO_WINDOW, None, None, -1)
    said = studio.range_said(True, -1, -1, -1, view["strip_slices"])
    assert (said["range_first"]["value"], said["range_last"]["value"]) == (2, 10)
    assert "every slice from 2 to 10" in said["range_note"]
    assert "**9 examples** per file" in said["range_note"]
    assert "**3 examples**" in studio.range_said(True, 6, 8, -1, view["strip_slices"])[
        "range_note"]
    assert studio.range_said(False, 6, 8, -1, view["strip_slices"])["range_note"] == ""
    out = studio.add_examples(session, [str(path)], label, AUTO_WINDOW, None, None, -1, 0,
                              True, 5, 11)
    # slices 5, 6, 7 and one blank: the three other blank ones are the same picture
    assert len(session.examples) == 4 and "Added 4 examples" in out["example_status"]
    assert "3 of its 7 slices were the same picture as another example" in out[
        "example_status"]
    from core.imaging import load_scan
    from demo.work.scans import kept_picture, picture_digest, scan_picture

    scan = load_scan(path)
    expected = [picture_digest(kept_picture(scan_picture(scan, None, k)[0])) for k in (5, 6, 7)]
    assert [e.digest for e in session.examples[:3]] == expected
    for first, last, why in ((10, 12, "There is no slice 12"), (7, 3, "no slice"),
                             (-1, 3, "first and the last slice")):
        refused = studio.add_examples(session, [str(path)], label, AUTO_WINDOW, None, None, -1,
                                      0, True, first, last)
        assert why in refused["example_status"] and len(session.examples) == 4
    # a single picture in the same upload is itself, once
    png = real_scan("CT_small.dcm", tmp_path)
    studio.add_examples(session, [png], label, AUTO_WINDOW, None, None, -1, 0, True, 0, 3)
    assert len(session.examples) == 5


def test_a_volume_of_a_4d_file_is_chosen_in_the_viewer_and_used(studio, tmp_path):
    """The viewer offers the volume of a 4-D file; adding and predicting use the one chosen,
    and a volume that is not there is said, losing nothing."""
    import nibabel as nib
    import numpy as np
    from core.imaging import load_scan
    from demo.work.scans import kept_picture, picture_digest, scan_picture

    functional = Path(nib.__file__).parent / "tests" / "data" / "functional.nii"
    view = studio.preview([str(functional)], AUTO_WINDOW, None, None, -1, 5)
    assert "volume 5 of 0–19" in view["preview_text"]
    assert view["volume"]["visible"] is True and view["volume"]["maximum"] == 19
    session = Session()
    studio.set_task(session, "MRI", None, "a {} photo.", ROWS, 12.5, 0.25)
    studio.add_examples(session, [str(functional)], ROWS[0][0], AUTO_WINDOW, None, None, 1, 5)
    fifth = load_scan(functional, volume=5)
    assert session.examples[0].digest == picture_digest(kept_picture(scan_picture(fifth, None,
                                                                                  1)[0]))
    assert not np.array_equal(fifth.pixels, load_scan(functional).pixels)
    missing = studio.add_examples(session, [str(functional)], ROWS[0][0], AUTO_WINDOW, None,
                                  None, 1, 20)
    assert "0 to 19; there is no volume 20" in missing["example_status"]
    assert len(session.examples) == 1
    gone = studio.preview([str(functional)], AUTO_WINDOW, None, None, -1, 20)
    assert "no volume 20" in gone["preview_text"] and "volume" not in gone  # the box stays
    # the predict step: the strip and the volume box appear with the scan
    strip = studio.predict_new_scan(str(functional), AUTO_WINDOW)
    assert strip["predict_volume_of"]["visible"] is True and strip["predict_index"] == -1
    assert strip["predict_strip_slices"]["frames"] == 3


def test_a_click_on_the_predict_strip_chooses_that_slice(studio, tmp_path):
    from gradio import SelectData

    volume = real_scan("emri_small.dcm", tmp_path)
    strip = studio.predict_new_scan(volume, AUTO_WINDOW)
    assert strip["predict_strip"]["visible"] is True
    assert [c for _, c in strip["predict_strip"]["value"]] == [str(i) for i in range(10)]
    assert strip["predict_volume_of"]["visible"] is False  # one volume: no box
    click = SelectData(None, {"index": 4, "value": None})
    assert studio.strip_clicked(strip["predict_strip_slices"], click) == 4
    assert studio.predict_new_scan(None, AUTO_WINDOW)["predict_strip"]["visible"] is False


def test_model_loads_in_the_background_and_the_page_says_so():
    studio = Studio.start("no-such-backbone", background=True)
    studio.host._ready.wait(60)
    assert "could not be loaded" in studio.status() and "Unknown backbone" in studio.status()
    view = studio.status_until_ready()
    assert view["poll"]["active"] is False and view["model_actions"]["visible"] is True
    studio.use_demo_model()
    studio.host._ready.wait(60)
    assert studio.demo_model and "Demo model" in studio.status()
    loading = Studio(None)
    assert loading.status().startswith("⏳") and loading.status_until_ready()["poll"]["active"]
    with pytest.raises(StudioError, match="still loading"):
        loading.model_info(wait_s=0.01)


def test_a_session_is_made_by_its_first_event(studio):
    out = studio.set_task(None, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    assert isinstance(out["session"], Session)
    assert out["session"].classes == [r[0] for r in ROWS]


def test_a_ready_task_is_described_in_the_users_language(studio):
    from core import presets

    class Korean:
        headers = {"accept-language": "ko-KR,ko;q=0.9,en;q=0.8"}

    out = studio.preset_chosen("kidney-ct", Korean())
    assert out["modality"] == "CT" and presets.task("kidney-ct").description_ko in out["task_status"]
    assert out["task_status"].startswith("CT의 신장")
    assert "Classify kidney CT slices" in studio.preset_chosen("kidney-ct")["task_status"]


def test_an_example_keeps_the_models_view_not_the_full_resolution(studio, tmp_path):
    import numpy as np

    session = Session()
    studio.set_task(session, "X-ray", None, "a {} photo.", ROWS, 12.5, 0.25)
    big = tmp_path / "radiograph.png"
    ramp = np.linspace(0, 65535, 2000 * 2000).reshape(2000, 2000).astype(np.uint16)
    Image.fromarray(ramp).save(big)  # a 2000 x 2000 16-bit radiograph: 12 MB as RGB
    studio.add_examples(session, [str(big)], ROWS[0][0], AUTO_WINDOW)
    kept = session.examples[0].image
    assert max(kept.size) == 448 and len(kept.tobytes()) <= 1_000_000
    assert len(session.examples[0].thumbnail.tobytes()) < 100_000


def test_idle_sessions_are_cleared_and_their_page_is_told(studio, tmp_path):
    import time

    from demo.text.strings import EN

    session = ready_session(studio, tmp_path, tune=False)
    busy = Session()
    studio.set_task(busy, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    saved = list(studio.files.owned(session.owner))
    assert saved and session.examples
    for path in saved:  # uploaded a while ago
        os.utime(path, (os.path.getmtime(path) - 60,) * 2)
    session.last_used -= studio.idle_s + 1  # half an hour ago
    assert studio.expire_idle() == 1 and session.owner not in studio.sessions
    assert busy.owner in studio.sessions and busy.classes  # a session in use is kept
    assert session.examples == [] and not any(os.path.exists(p) for p in saved)
    out = studio.predict(session, real_scan("CT_small.dcm", tmp_path), AUTO_WINDOW)
    assert "cleared after 30 minutes without use" in out["predict_status"]
    again = studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    assert "2 classes" in again["task_status"] and session.classes  # the page works again
    assert f"{round(studio.idle_s / 60)} minutes" in EN["privacy"]
    assert time.monotonic() - session.last_used < 60


class Korean:
    headers = {"accept-language": "ko-KR,ko;q=0.9,en;q=0.8"}


def _report_facts(path: str) -> dict:
    import json

    return json.loads(Image.open(path).text["biomed-dpt-report"])


def test_the_report_is_named_after_the_top_class_whichever_map_is_shown(studio, tmp_path):
    """Issue 20, item 6: the report of a map of another class was named after that class."""
    session = ready_session(studio, tmp_path)
    out = studio.predict(session, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW)
    top = max(out["tuned_label"], key=out["tuned_label"].get)  # the tuned prompts' first class
    other = next(c for c in session.classes if c != top)
    report = Path(studio.report(session, other, 0.45, "jet"))
    assert report.name.startswith(f"biomed-dpt-report_ct-abdomen_{top.replace(' ', '-')}_")
    facts = _report_facts(str(report))
    assert facts["top"] == top and facts["explained"] == other


def test_the_report_carries_the_modality_note_in_the_users_language(studio, tmp_path):
    """Issue 20, item 6: the page said a colour photo is not what CT looks like; the report
    did not."""
    from skimage import data

    session = ready_session(studio, tmp_path, tune=False)
    photo = tmp_path / "retina.png"
    Image.fromarray(data.retina()).save(photo)
    for request, words in ((None, "in colour, but CT images are greyscale"),
                           (Korean(), "이 영상은 컬러이지만 CT 영상은 흑백입니다")):
        status = studio.predict(session, str(photo), AUTO_WINDOW,
                                request=request)["predict_status"]
        note = _report_facts(studio.report(session, "", 0.45, "jet", request=request))["note"]
        assert words in status and words in note
    studio.predict(session, real_scan("CT_small.dcm", tmp_path), AUTO_WINDOW)
    assert _report_facts(studio.report(session, "", 0.45, "jet"))["note"] is None


def test_the_report_numbers_frames_as_the_page_does(studio, tmp_path):
    """Issue 20, item 6: the report said "slice 3 of 10" where the page numbers 0 to 9."""
    from datetime import datetime

    from demo.work.report import ReportContext, report_facts

    volume = real_scan("emri_small.dcm", tmp_path)
    about = studio.preview([volume], AUTO_WINDOW, None, None, 3)["preview_text"]
    session = Session()
    studio.set_task(session, "MRI", None, "a {} photo.", ROWS, 12.5, 0.25)
    studio.predict(session, volume, AUTO_WINDOW, None, None, 3)
    ctx = ReportContext("tiny-biomedclip", True, "MRI", None, session.classes, "a {} photo.",
                        session.prediction.top, 0.45)
    facts = report_facts(session.prediction, ctx, datetime.now())
    assert "3 of 0–9" in about and facts["view_line"].endswith("3 of 0–9")
    assert facts["frame"] == 3 and facts["frames"] == 10


def test_empty_probe_and_nearest_panels_are_explained(studio, tmp_path):
    """Issue 20, item 6: after loading a prompts file, Predict showed empty linear-probe and
    nearest-example panels with no word why."""
    session = ready_session(studio, tmp_path, tune=False)
    saved = prompts_file(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1,
                                     progress=lambda *a, **k: None))
    fresh = Session()
    studio.load_prompts(fresh, saved)
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    out = studio.predict(fresh, scan, AUTO_WINDOW)
    assert out["tuned_label"] and out["baseline_label"] is None and out["nearest"] == []
    assert ("The linear probe and the nearest examples need examples of every class"
            in out["predict_status"])
    korean = studio.predict(fresh, scan, AUTO_WINDOW, request=Korean())["predict_status"]
    assert "선형 프로브와 가장 가까운 예시를 보려면 모든 클래스에 예시가" in korean
    studio.add_examples(fresh, [real_scan("CT_small.dcm", tmp_path)], ROWS[0][0], AUTO_WINDOW)
    out = studio.predict(fresh, scan, AUTO_WINDOW)
    assert out["baseline_label"] is None and len(out["nearest"]) == 1
    assert (f"The linear probe needs examples of every class: add some for {ROWS[1][0]}"
            in out["predict_status"])
    assert "linear probe" not in studio.predict(session, scan, AUTO_WINDOW)["predict_status"]


def test_a_scan_unlike_every_example_is_flagged(studio, tmp_path):
    """Issue 20, item 6: in the sample task a histology photo was given a confident class with
    no word that it resembles none of the examples. The examples are the sample scans; a
    fundus photo is unlike all of them, a CT slice of another patient is not."""
    from skimage import data

    session = Session()
    studio.use_samples(session, "imaging-modality")
    photo = tmp_path / "retina.png"
    Image.fromarray(data.retina()).save(photo)
    odd = studio.predict(session, str(photo), AUTO_WINDOW)
    nearest, floor = session.prediction.nearest[0][1], session.prediction.similarity_floor
    said = odd["predict_status"]
    assert nearest < floor and f"({nearest:.2f})" in said and f"({floor:.2f})" in said
    assert "This scan is unlike every example" in odd["predict_status"]
    assert "unlike every example" in _report_facts(studio.report(session, "", 0.45))["note"]
    korean = studio.predict(session, str(photo), AUTO_WINDOW, request=Korean())["predict_status"]
    assert "어떤 예시와도 닮지 않았습니다" in korean
    for usual in ("CT_small.dcm", "MR_small.dcm"):
        out = studio.predict(session, real_scan(usual, tmp_path), AUTO_WINDOW)
        assert session.prediction.nearest[0][1] > floor and "unlike" not in out["predict_status"]


def test_save_with_nothing_tuned_says_why(studio, capsys):
    """Issue 20, defect 6: Download with nothing tuned did nothing, silently."""
    studio.save_clicked(Session())
    assert "no tuned prompts to save yet" in capsys.readouterr().out  # the toast, outside a page


def test_other_files_in_the_viewer_start_at_their_middle_slice(studio, tmp_path):
    """Issue 20, defect 5: a slice number left from a multi-frame file applied to the next
    uploads, which were refused with "no slice 100"."""
    volume = real_scan("emri_small.dcm", tmp_path)  # 10 frames
    shown = studio.preview_new_files([volume], AUTO_WINDOW)
    assert shown["index"] == -1 and shown["frame"]["maximum"] == 9
    assert shown["frame"]["value"] == 5 and shown["volume"]["value"] == 0
    assert shown["every_slice"] is False and shown["range_first"]["value"] == -1
    empty = studio.preview_new_files(None, AUTO_WINDOW)
    assert empty["preview"] is None and empty["preview_text"] == "" and empty["index"] == -1
    assert empty["frame"] == {"__type__": "update", "visible": False}


def test_files_that_cannot_be_added_are_also_said_in_a_toast(studio, tmp_path):
    """Issue 20, defect 7: a file dropped on a lower card was reported only at the top."""
    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    bad = tmp_path / "notes"
    bad.write_text("not an image at all")
    with pytest.warns(UserWarning, match="`notes`: ") as toasts:
        out = studio.add_examples(session, [str(bad)], ROWS[0][0], AUTO_WINDOW, toast=True)
    assert "`notes`: " in out["example_status"] and len(toasts) == 1


def test_the_status_line_and_the_progress_bar_say_the_same_step(studio, tmp_path):
    """While tuning, each status the page shows names the step the progress bar shows."""
    session = ready_session(studio, tmp_path, tune=False)
    bar = []
    statuses = []
    for update in studio.tune(session, "fast", 12.5, 0.25, 12, 1, 1,
                              progress=lambda value, desc=None, **k: bar.append(desc)):
        status = update.get("tune_status") if isinstance(update, dict) else None
        if isinstance(status, str) and status.startswith("Step "):
            statuses.append((status, bar[-1]))
    assert len(statuses) >= 8
    for status, shown in statuses:
        assert status.split(" · ")[0] == shown, (status, shown)


def test_a_lesson_opens_as_each_students_own_copy(backbones, tmp_path):
    """A teacher's workspace offered as a lesson: each student who opens it works on a copy
    of their own; a file that is not a workspace is not offered, and said."""
    from demo.work.workspace import SUFFIX, write_workspace

    studio = Studio(backbones["tiny-biomedclip"], time_budget_s=60)
    teacher = ready_session(studio, tmp_path)
    lesson = write_workspace(teacher, studio.model_info(), tmp_path / "lessons")
    lesson = lesson.rename(lesson.with_name(f"kidney-week-3{SUFFIX}"))
    notes = tmp_path / f"notes{SUFFIX}"
    notes.write_text("not a workspace")
    problems = studio.offer_lessons([lesson, notes, tmp_path / "gone.biomed-dpt.zip"])
    assert list(studio.lessons) == ["kidney-week-3"] and len(problems) == 2
    assert "is not a workspace file" in problems[0]

    first, second = Session(), Session()
    out = studio.open_lesson(first, "kidney-week-3")
    assert out["task_status"].startswith("Lesson kidney-week-3: this copy is yours")
    assert "6 examples" in out["task_status"] and out["modality"] == "CT"
    studio.open_lesson(second, "kidney-week-3")
    first.selected = 0
    first.remove_selected()
    assert len(first.examples) == len(teacher.examples) - 1
    assert len(second.examples) == len(teacher.examples)  # nobody else's work changed
    assert second.tuned is not None and second.tuned is not first.tuned
    refused = studio.open_lesson(second, "week-4")
    assert "Choose one of the lessons: kidney-week-3" in refused["task_status"]
    assert len(second.examples) == len(teacher.examples)


def test_a_workspace_waits_for_the_run_going_and_a_bad_one_changes_nothing(studio, tmp_path):
    """Opening a workspace while a tuning run goes would let the run's result land in the
    opened work: it is refused with the reason; a file that is not a workspace changes
    nothing; afterwards the workspace opens."""
    from demo.runtime.runs import TUNE
    from demo.work.workspace import write_workspace

    session = ready_session(studio, tmp_path)
    saved = write_workspace(session, studio.model_info(), tmp_path / "saved")
    other = ready_session(studio, tmp_path, tune=False)
    examples = [e.digest for e in other.examples]
    with other.runs.run(TUNE):
        out = studio.open_workspace(other, str(saved))
    assert "A tuning run or an evaluation is going" in out["workspace_status"]
    assert [e.digest for e in other.examples] == examples and other.tuned is None
    notes = tmp_path / "notes.txt"
    notes.write_text("not a workspace")
    out = studio.open_workspace(other, str(notes))
    assert "is not a workspace file" in out["workspace_status"]
    assert [e.digest for e in other.examples] == examples
    out = studio.open_workspace(other, str(saved))
    assert out["workspace_status"].startswith("Opened the workspace: 6 examples")
    assert "The work you had before was saved as" in out["workspace_status"]
    assert other.tuned is not None and out["workspace_file"].endswith(".biomed-dpt.zip")


class Page:
    """A browser page's request: its own session id (a new one at each reload)."""

    def __init__(self, name: str) -> None:
        self.session_hash = name
        self.headers = {"accept-language": "en"}


def test_a_reloaded_page_finds_all_its_work_as_it_was(studio, tmp_path):
    """The browser keeps a key; the work stays on the server: a reload (a new page with the
    same key) shows the task, cards, prompts with their curve and estimate, and the same
    prediction; closing the page keeps the work for the idle period."""
    first = Page("reload-1")
    came = studio.arrive([], first)
    assert came["work_keys"] and came["work_notice"] == "" and "session" not in came
    session = studio._session(None, first)  # the page's first step makes its work
    assert session.owner == came["work_keys"][0]
    studio.set_task(session, "CT", "abdomen", "a {} photo.", ROWS, 12.5, 0.25, request=first)
    for label, names in ((ROWS[0][0], CT_FILES), (ROWS[1][0], MR_FILES)):
        studio.add_examples(session, [real_scan(n, tmp_path) for n in names], label,
                            AUTO_WINDOW, request=first)
    updates = tuned(studio, session, "fast", 12.5, 0.25, 10, 1, 1)
    estimate = status_lines(updates, "estimate_status")[-1]
    before = studio.predict(session, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW,
                            request=first)
    studio.close_session(first)  # reload: the page goes ...
    assert studio.sessions[session.owner] is session and session.examples
    studio.forget(session)  # (its gr.State's delete callback) ... and the work stays
    assert session.examples and not session.gone
    again = studio.arrive(came["work_keys"], Page("reload-2"))  # ... and comes back
    assert again["session"] is session and again["work_keys"][0] == session.owner
    assert again["table"]["value"]["data"] == [list(r) for r in session.task.rows()]
    assert len(again["gallery"]) == len(session.examples)
    assert "Tuning finished after 10 steps" in again["tune_status"].replace("*", "")
    assert again["curve"] is not None and again["estimate_status"] == estimate != ""
    assert again["tuned_label"] == before["tuned_label"]
    assert again["zero_label"] == before["zero_label"]
    assert again["predict_status"] == before["predict_status"]
    assert Path(again["heat"]).exists() and Path(again["scan_view"]).exists()


def test_a_second_tab_works_on_its_own_and_may_take_the_first_ones_work(studio, tmp_path):
    one, two = Page("tabs-1"), Page("tabs-2")
    keys = studio.arrive([], one)["work_keys"]
    mine = studio._session(None, one)
    studio.set_task(mine, "CT", None, "a {} photo.", ROWS, 12.5, 0.25, request=one)
    came = studio.arrive(keys, two)  # the same browser: the same stored keys
    assert "open in another tab" in came["work_notice"]
    assert came["take_over"]["visible"] and "session" not in came
    theirs = studio._session(None, two)
    assert theirs is not mine and theirs.owner != mine.owner
    studio.set_task(theirs, "MRI", None, "an {} scan.", [["a", ""], ["b", ""]], 12.5, 0.25,
                    request=two)
    taken = studio.take_over(theirs, came["work_keys"], two)
    assert taken["session"] is mine and "is here now" in taken["work_notice"]
    assert taken["workspace_file"].endswith(".biomed-dpt.zip")  # the tab's own work, kept
    assert "was saved as" in taken["work_notice"] and not taken["take_over"]["visible"]
    assert taken["work_keys"][0] == mine.owner
    refused = studio.set_task(mine, "CT", None, "a {} photo.", [["x", ""], ["y", ""]], 12.5,
                              0.25, request=one)  # the first tab, still open
    assert "open in another tab" in refused["task_status"]
    assert mine.classes == [r[0] for r in ROWS]  # its step changed nothing
    out = studio.set_task(taken["session"], "CT", None, "a {} photo.",
                          [["x", ""], ["y", ""]], 12.5, 0.25, request=two)
    assert "2 classes" in out["task_status"] and mine.classes == ["x", "y"]


def test_a_page_whose_work_was_cleared_for_being_idle_says_so_when_it_comes_back(studio):
    page = Page("idle-1")
    keys = studio.arrive([], page)["work_keys"]
    session = studio._session(None, page)
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25, request=page)
    studio.close_session(page)
    session.last_used -= studio.idle_s + 1
    assert studio.expire_idle() >= 1 and session.owner not in studio.sessions
    came = studio.arrive(keys, Page("idle-2"))
    assert "cleared after 30 minutes without use" in came["work_notice"]
    assert "session" not in came and came["work_keys"][0] != session.owner


def test_the_sample_set_is_a_lesson_with_its_scans_to_predict(studio, tmp_path):
    """The sample set is a lesson made from assets/: its examples, and its scan to predict
    offered in step 4; using it over other work keeps that work as a file."""
    from core import presets

    session = Session()
    studio.set_task(session, "CT", None, "a {} photo.", ROWS, 12.5, 0.25)
    out = studio.use_samples(session, "imaging-modality")
    assert out["workspace_file"].endswith(".biomed-dpt.zip")  # the work there was, kept
    assert "was saved as" in out["workspace_status"]
    sample = presets.sample_set("imaging-modality")
    assert [e.name for e in session.to_predict] == [p.stem for p in sample.to_predict]
    offered = studio.sample_scan(session)
    assert Path(offered).name == f"{sample.to_predict[0].stem}.png"
    direct = studio.predict(session, str(sample.to_predict[0]), AUTO_WINDOW)
    from_lesson = studio.predict(session, offered, AUTO_WINDOW)
    assert from_lesson["tuned_label"] == direct["tuned_label"]
    assert from_lesson["zero_label"] == direct["zero_label"]  # the same picture, predicted
    other = Session()  # another student: a copy of their own, from the same lesson file
    studio.use_samples(other, "imaging-modality")
    assert [e.digest for e in other.examples] == [e.digest for e in session.examples]
    assert other.examples[0] is not session.examples[0]


def test_an_analyze_pair_uploaded_together_is_one_example_and_a_4d_nifti_is_read(studio,
                                                                                  tmp_path):
    """The .hdr and .img of a pair, chosen together, are one scan; nibabel's 4-D fMRI file,
    once called damaged, is read (its first volume)."""
    import nibabel as nib
    import numpy as np

    session = Session()
    studio.set_task(session, "MRI", None, "a {} photo.", ROWS, 12.5, 0.25)
    values = (np.arange(32 * 32 * 5).reshape(32, 32, 5) % 251).astype(np.int16)
    nib.AnalyzeImage(values, np.eye(4)).to_filename(tmp_path / "brain.hdr")
    out = studio.add_examples(session, [str(tmp_path / "brain.img"),
                                        str(tmp_path / "brain.hdr")], ROWS[0][0], AUTO_WINDOW)
    assert "Added 1 example" in out["example_status"] and len(session.examples) == 1
    alone = studio.add_examples(session, [str(tmp_path / "brain.hdr")], ROWS[0][0],
                                AUTO_WINDOW)
    assert "Upload both files together" in alone["example_status"]
    functional = Path(nib.__file__).parent / "tests" / "data" / "functional.nii"
    view = studio.preview([str(functional)], AUTO_WINDOW, None, None, -1)
    assert view["preview"] is not None and "NIfTI" in view["preview_text"]
    assert "damaged" not in view["preview_text"]
    assert view["frame"]["visible"] is True and view["frame"]["maximum"] == 2


def test_a_volume_is_predicted_slice_by_slice_and_each_slice_shows_its_map(studio, tmp_path):
    """Every slice classified (one in k past 64), the most confident one proposed and shown
    with its map, a plot along the volume; sliding to a slice predicts that slice."""
    import nibabel as nib
    import numpy as np

    session = ready_session(studio, tmp_path)
    volume = real_scan("emri_small.dcm", tmp_path)  # 10 frames
    out = studio.predict_volume(session, volume, AUTO_WINDOW)
    rows = out["volume_rows"]
    assert [r["slice"] for r in rows] == list(range(10))
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)
    confidence = [max(r["probabilities"].values()) for r in rows]
    best = int(np.argmax(confidence))
    assert out["predict_index"] == best and session.volume.best == best
    assert f"most confident about slice {best}" in out["predict_status"]
    assert out["volume_plot"]["visible"] and out["volume_slice"]["value"] == best
    single = studio.predict(session, volume, AUTO_WINDOW, None, None, best)  # that slice alone
    assert single["tuned_label"] == out["tuned_label"]
    assert single["volume_plot"]["visible"] is False  # one scan now: no plot
    studio.predict_volume(session, volume, AUTO_WINDOW)
    slid = studio.show_slice(session, volume, AUTO_WINDOW, None, None, 3)
    assert session.prediction.frame == 3 and slid["volume_slice"]["value"] == 3
    assert slid["predict_index"] == 3 and slid["predict_status"].startswith("Shown: slice 3 of 0–9")
    assert slid["tuned_label"] == studio.predict(session, volume, AUTO_WINDOW, None, None,
                                                 3)["tuned_label"]
    # a long volume: one slice in k, said
    long = tmp_path / "long.nii.gz"
    nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 130)).astype(np.float32),
                    np.eye(4)).to_filename(long)
    out = studio.predict_volume(session, str(long), AUTO_WINDOW)
    assert [r["slice"] for r in out["volume_rows"]] == list(range(0, 130, 3))
    assert "one slice in 3: the volume has more than 64" in out["predict_status"]
    flat = studio.predict_volume(session, real_scan("CT_small.dcm", tmp_path), AUTO_WINDOW)
    assert len(flat["volume_rows"]) == 1 and "one picture" in flat["predict_status"]


def test_the_pool_suggests_what_to_label_and_one_click_labels_it(studio, tmp_path):
    """Scans without a class go into the pool; Label next gives at most 8 of them with the
    model's guess and why; labelling one moves exactly that scan into its class."""
    session = ready_session(studio, tmp_path, tune=False)
    names = ["JPEG2000.dcm", "SC_rgb.dcm", "US1_J2KR.dcm", "RG1_J2KR.dcm", "liver.dcm",
             "OBXXXX1A.dcm"]
    empty = studio.suggest(session)
    assert "The pool is empty" in empty["pool_status"]
    out = studio.add_to_pool(session, [real_scan(n, tmp_path) for n in names] + [
        real_scan("CT_small.dcm", tmp_path)])  # an example already: skipped, said
    assert "Added 6 scans to the pool (6 unlabelled in all)" in out["pool_status"]
    assert "CT_small" in out["pool_status"] and len(session.pool) == 6
    shown = studio.suggest(session, "ranked")
    rows = shown["suggestions"]
    # the tiny random model sees some of these as near-copies: those wait, and that is said
    assert 2 <= len(rows) <= 6 and len({r["uid"] for r in rows}) == len(rows)
    assert f"The {len(rows)} scans (of 6 unlabelled)" in shown["pool_status"]
    assert ("looks almost the same" in shown["pool_status"]) == (len(rows) < 6)
    assert all(r["classifier"] == "zero-shot" and r["guess"] in session.classes for r in rows)
    assert all(Image.open(r["picture"]).size[0] <= 160 for r in rows)
    assert all(r["why"].startswith(("Unsure:", "The classifiers disagree")) for r in rows)
    first = rows[0]
    other = next(c for c in session.classes if c != first["guess"])
    before = len(session.examples)
    done = studio.label_pool_scan(session, first["uid"], other, rows)
    assert len(session.examples) == before + 1 and session.examples[-1].label == other
    assert len(session.pool) == 5 and [r["uid"] for r in done["suggestions"]] == [
        r["uid"] for r in rows[1:]]
    assert f"Added to {other} (as {other} #" in done["pool_status"]
    assert "5 left in the pool" in done["pool_status"]
    again = studio.label_pool_scan(session, first["uid"], other, done["suggestions"])
    assert "no longer in the pool" in again["pool_status"] and len(session.examples) == before + 1
    shuffled = studio.suggest(session, "random")
    assert {r["reason"] for r in shuffled["suggestions"]} == {"random"}
    assert "picked at random" in shuffled["pool_status"]


def test_tuning_again_starts_warm_from_the_prompts_before_and_cold_is_one_switch_away(
        studio, tmp_path):
    """With the classes unchanged, a second run continues from the tuned prompts (its first
    loss is the last run's level, not a fresh start's) and may stop early; ticking cold
    starts from the template's words; a changed class list starts cold whatever is asked.
    Each run's history says which it was."""
    session = ready_session(studio, tmp_path, tune=False)
    settings = ("fast", 12.5, 0.25, 60, 1, 1)
    tuned(studio, session, *settings, estimate=False)
    cold = session.prompts.current.history
    assert cold.warm is False
    studio.add_examples(session, [real_scan("emri_small.dcm", tmp_path)], ROWS[1][0],
                        AUTO_WINDOW)
    updates = tuned(studio, session, *settings, estimate=False)
    warm = session.prompts.current.history
    assert warm.warm is True and "continued from the prompts tuned before" in updates[-1][
        "tune_status"]
    assert warm.steps[0]["loss"] < cold.steps[0]["loss"]  # it starts where the last one ended
    assert len(warm.steps) < len(cold.steps)
    assert warm.to_dict()["warm"] is True
    tuned(studio, session, *settings, True, estimate=False)  # cold: from the template's words
    again = session.prompts.current.history
    assert again.warm is False and again.steps[0]["loss"] == pytest.approx(
        cold.steps[0]["loss"], rel=0.2)
    # another class list: the prompts before do not fit, so the run starts cold
    studio.set_task(session, "CT", "abdomen", "a {} photo.", ROWS + [["bone", "a bone"]],
                    12.5, 0.25)
    studio.add_examples(session, [real_scan("JPEG2000.dcm", tmp_path)], "bone", AUTO_WINDOW)
    tuned(studio, session, *settings, estimate=False)
    assert session.prompts.current.history.warm is False


def test_each_estimate_adds_a_point_to_is_labelling_still_paying(studio, tmp_path):
    """After each run's held-out estimate, its examples and accuracies are a point; the plot
    draws both lines with their spread; none before the first estimate."""
    from demo.ui.steps.tune import TuneStep

    session = ready_session(studio, tmp_path, tune=False)
    assert TuneStep.paying_plot(session)["visible"] is False
    tuned(studio, session, "fast", 12.5, 0.25, 20, 1, 1)
    first = session.labelling[-1]
    assert first["examples"] == 6 and first["per_class"] == {c: 3 for c in session.classes}
    held = session.prompts.current.held_out["methods"]
    assert first["tuned"] == pytest.approx(held["tuned"]["accuracy"], abs=1e-6)
    best = max((k for k in held if k != "tuned"), key=lambda k: held[k]["accuracy"])
    assert first["baseline"] == best and first["warm"] is False
    studio.add_examples(session, [real_scan("emri_small.dcm", tmp_path)], ROWS[1][0],
                        AUTO_WINDOW)
    tuned(studio, session, "fast", 12.5, 0.25, 20, 1, 1)
    assert [p["examples"] for p in session.labelling] == [6, 7]
    assert session.labelling[-1]["warm"] is True
    plot = TuneStep.paying_plot(session)
    assert plot["visible"] is True
    ax = plot["value"].axes[0]
    assert [list(line.get_xdata()) for line in ax.lines[:1]] == [[6, 7]]
    assert len([c for c in ax.containers]) == 2  # two error-bar series


def test_the_map_of_the_examples_is_drawn_and_a_click_shows_its_scan(studio, tmp_path):
    from gradio import SelectData

    session = ready_session(studio, tmp_path, tune=False)
    studio.add_to_pool(session, [real_scan("JPEG2000.dcm", tmp_path)])
    drawn = studio.draw_feature_map(session)
    assert "6 examples, 0 test scans and 1 unlabelled scans" in drawn["map_status"]
    assert Image.open(drawn["feature_map"]).size[0] >= 600
    points = drawn["map_points"]
    assert [p["kind"] for p in points] == ["example"] * 6 + ["pool"]
    target = points[4]
    clicked = studio.map_clicked(session, points, SelectData(
        None, {"index": [target["x"] + 2, target["y"] + 1], "value": None}))
    assert clicked["map_status"].startswith(f"**{session.examples[4].name}**: an example of")
    assert Image.open(clicked["map_pick"]).size == session.examples[4].thumbnail.size
    missed = studio.map_clicked(session, points, SelectData(None, {"index": [1, 1],
                                                                   "value": None}))
    assert "No scan there" in missed["map_status"] and missed["map_pick"] is None
    assert studio.map_again(session, []) == {}  # never drawn: not drawn on a change
    studio.predict(session, real_scan("MR_small.dcm", tmp_path), AUTO_WINDOW)
    again = studio.map_again(session, points)
    assert again["map_points"][-1]["kind"] == "shown" and "The star" in again["map_status"]
