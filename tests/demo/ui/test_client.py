"""The documented API, through gradio_client, against `python app.py --backbone tiny-biomedclip`:
the whole workflow, and what the API user sees when they do what a person did and the app
failed them (each test names the defect it guards against)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.demo.conftest import CT_FILES, MR_FILES, ROWS, real_scan

HEADERS = ["class", "descriptions (one sentence per line)"]
AUTO = "auto"


def table(rows):
    return {"headers": HEADERS, "data": rows, "metadata": None}


def confidences(label_output) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label_output["confidences"]}


def set_task(client: Client, rows, modality="CT"):
    return client.predict(modality, "abdomen", "a {} photo.", table(rows), 12.5, 0.25,
                          api_name="/set_task")


def add(client: Client, files, label, window=AUTO, index=-1, level=40, width=400):
    return client.predict(files, label, window, level, width, index, api_name="/add_examples")


def predict(client: Client, path, window=AUTO, index=-1):
    return client.predict(handle_file(path), window, 40, 400, index, 0.45, "jet",
                          api_name="/predict")


def run_task(client: Client, rows, folder, steps=20):
    set_task(client, rows)
    for (label, _), names in zip(rows, (CT_FILES, MR_FILES)):
        add(client, [handle_file(real_scan(n, folder)) for n in names], label)
    return client.predict("fast", 12.5, 0.25, steps, 1, 1, api_name="/tune")


def test_whole_workflow_through_the_api(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    status, _curve, _classes, prompts, estimate = run_task(client, ROWS, tmp_path)
    assert "Tuning finished" in status and estimate == ""  # the estimate is its own call
    estimate = client.predict(api_name="/estimate")
    assert "Held-out estimate" in estimate and "| linear probe" in estimate
    tuned, zero, view, heat, map_class, note, baseline, nearest, *_ = predict(
        client, real_scan("MR_small_padded.dcm", tmp_path))
    report = client.predict(map_class["value"], 0.45, "jet", api_name="/report")
    probs = confidences(tuned)
    assert set(confidences(baseline)) == set(probs)
    assert len(nearest) == 3 and all(-1 <= float(item["caption"].split(" · ")[0]) <= 1
                                     for item in nearest)
    # fp32 probabilities whatever the compute precision (defect 5)
    assert set(probs) == {r[0] for r in ROWS} and sum(probs.values()) == pytest.approx(1, abs=1e-6)
    assert heat and view and map_class["value"] == tuned["label"]  # the map explains the top
    facts = json.loads(Image.open(report).text["biomed-dpt-report"])
    assert facts["tuned"] == pytest.approx(probs, abs=1e-5)  # the report of this scan

    other = Client(app_url, verbose=False)
    loaded = other.predict(handle_file(prompts), api_name="/load_prompts")
    assert "Loaded prompts" in loaded[0] and loaded[1] == "CT"  # modality restored (defect 11)
    again = predict(other, real_scan("MR_small_padded.dcm", tmp_path))[0]
    assert confidences(again) == pytest.approx(probs, abs=1e-5)


def test_two_clients_do_not_see_each_others_work(app_url, tmp_path):
    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    rows_b = [["bone window", ""], ["soft tissue window", ""]]

    def work(client, rows, folder):
        folder.mkdir()
        run_task(client, rows, folder)

    threads = [threading.Thread(target=work, args=(a, ROWS, tmp_path / "a")),
               threading.Thread(target=work, args=(b, rows_b, tmp_path / "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(confidences(predict(a, real_scan("CT_small.dcm", tmp_path), "lung")[0])) == \
        {r[0] for r in ROWS}
    assert set(confidences(predict(b, real_scan("MR_small.dcm", tmp_path), "lung")[0])) == \
        {r[0] for r in rows_b}


def test_predict_never_waits_behind_another_users_tuning(app_url, tmp_path):
    """Defect 8: a long tuning run of one user, a second user's tuning waiting its turn (told
    its place), and a third user's predictions answered meanwhile."""
    tuner, waiter, viewer = (Client(app_url, verbose=False) for _ in range(3))
    for client, name in ((tuner, "t"), (waiter, "w"), (viewer, "v")):
        (tmp_path / name).mkdir()
        run_task(client, ROWS, tmp_path / name, steps=2)
    long_run = tuner.submit("fast", 12.5, 0.25, 2000, 1, 1, api_name="/tune")
    while not any(str(o[0]).startswith("Step ") for o in long_run.outputs()):
        time.sleep(0.1)
    queued = waiter.submit("fast", 12.5, 0.25, 5, 1, 1, api_name="/tune")
    while not any("in line" in str(o[0]) for o in queued.outputs()):
        time.sleep(0.1)
    assert any("number 1 in line" in str(o[0]) for o in queued.outputs())
    started = time.monotonic()
    # (the long run ends by itself once its loss settles, some seconds in: one prediction
    # is what is sure to fit inside it on any machine)
    assert confidences(predict(viewer, real_scan("CT_small.dcm", tmp_path))[0])
    predicted_s = time.monotonic() - started
    assert not long_run.done()  # the prediction was answered during the tuning run
    tuner.predict(api_name="/stop")
    assert "Stopped by you after" in long_run.result()[0]
    assert "Tuning finished" in queued.result()[0]
    assert predicted_s < 30


def test_stop_before_the_first_step_keeps_the_previous_prompts(app_url, tmp_path):
    """Defect 7."""
    client = Client(app_url, verbose=False)
    run_task(client, ROWS, tmp_path)
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    before = confidences(predict(client, scan)[0])
    job = client.submit("paper", 12.5, 0.25, 10, 50, 1, api_name="/tune")
    while not any("Reading the examples" in str(o[0]) for o in job.outputs()):
        time.sleep(0.05)  # the run has begun: encoding its crops, no step yet
    client.predict(api_name="/stop")
    status = job.result()[0]
    assert "Stopped before the first step" in status and "previous prompts are kept" in status
    assert confidences(predict(client, scan)[0]) == pytest.approx(before, abs=1e-6)


def test_renaming_a_class_keeps_its_examples(app_url, tmp_path):
    """Defect 9."""
    client = Client(app_url, verbose=False)
    set_task(client, ROWS)
    add(client, [handle_file(real_scan(n, tmp_path)) for n in CT_FILES], ROWS[0][0])
    renamed = [["CT scan", ROWS[0][1]], ROWS[1]]
    out = set_task(client, renamed)
    assert "Renamed computed tomography to CT scan; its 3 examples were kept" in out[0]
    assert "**CT scan**: 3" in out[4]
    out = set_task(client, [ROWS[1], ["ultrasound", ""]])
    assert "Removed the class CT scan and its 3 examples" in out[0]


def test_window_choices_fit_the_modality_and_misfits_are_said(app_url, tmp_path):
    """Defect 10: CT presets on CT tasks only; a CT window on an MR file is not applied."""
    client = Client(app_url, verbose=False)
    mri = set_task(client, ROWS, modality="MRI")[5]
    assert [c[1] for c in mri["choices"]] == ["auto", "manual"]
    ct = set_task(client, ROWS, modality="CT")[5]
    assert "soft tissue" in [c[1] for c in ct["choices"]]
    out = add(client, [handle_file(real_scan("MR_small.dcm", tmp_path))], ROWS[1][0],
              window="soft tissue")
    assert "Added 1 example" in out[1] and "is a CT window" in out[1]
    out = add(client, [handle_file(real_scan("MR2_UNCR.dcm", tmp_path))], ROWS[1][0],
              window="manual", level=300, width=600)
    assert "Added 1 example" in out[1]


def test_a_slice_past_the_last_one_is_refused_by_name(app_url, tmp_path):
    """Defects 12 and 17: a bad file is named as uploaded; slice 50 of 10 is not frame 9."""
    client = Client(app_url, verbose=False)
    set_task(client, ROWS, modality="MRI")
    out = add(client, [handle_file(real_scan("emri_small.dcm", tmp_path))], ROWS[1][0],
              index=50)
    assert "Added 0 examples" in out[1]
    assert "`emri_small`: " in out[1] and "There is no slice 50" in out[1] and "0 to 9" in out[1]
    assert "Added 1 example" in add(client, [handle_file(real_scan("emri_small.dcm", tmp_path))],
                                    ROWS[1][0], index=9)[1]


def test_a_picture_from_another_domain_is_flagged(app_url, tmp_path):
    """Defect 19: a colour fundus photo in a CT task."""
    from skimage import data

    photo = tmp_path / "retina.png"
    Image.fromarray(data.retina()).save(photo)
    client = Client(app_url, verbose=False)
    set_task(client, ROWS, modality="CT")
    note = predict(client, str(photo))[5]
    assert "in colour, but CT images are greyscale" in note
    assert "greyscale" not in predict(client, real_scan("CT_small.dcm", tmp_path))[5]


def test_user_errors_are_messages_not_tracebacks(app_url, tmp_path, app_log):
    """Defects 16 and 20: an ordinary mistake answers in the status line; the log stays clean."""
    client = Client(app_url, verbose=False)
    set_task(client, ROWS)
    out = client.predict([], ROWS[0][0], AUTO, 40, 400, -1, api_name="/add_examples")
    assert "Choose one or more scans" in out[1]
    assert "Traceback" not in app_log.read_text()


def test_a_stop_with_nothing_running_breaks_nothing_later(app_url, tmp_path):
    """Issue 20, defect 1: a Stop with no run going left its flag set, so the next Tune never
    started and every Evaluate answered "stopped"."""
    client = Client(app_url, verbose=False)
    run_task(client, ROWS, tmp_path, steps=5)
    client.predict(api_name="/stop")  # nothing is running
    assert "Tuning finished" in client.predict("fast", 12.5, 0.25, 5, 1, 2, api_name="/tune")[0]
    client.predict(None, [handle_file(real_scan("CT_small.dcm", tmp_path))], ROWS[0][0], AUTO,
                   40, 400, -1, api_name="/add_test_scans")
    assert "1 test scans. Accuracy" in client.predict(api_name="/evaluate")[0]


def test_a_quick_stop_keeps_the_tuned_prompts_and_offers_the_others(app_url, tmp_path):
    """Issue 20, defect 3: Tune then Stop at once replaced good prompts with a few steps'."""
    client = Client(app_url, verbose=False)
    run_task(client, ROWS, tmp_path, steps=10)
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    before = confidences(predict(client, scan)[0])
    job = client.submit("fast", 12.5, 0.25, 2000, 1, 2, api_name="/tune")
    while not any(str(o[0]).startswith("Step ") for o in job.outputs()):
        time.sleep(0.05)
    client.predict(api_name="/stop")
    status = job.result()[0]
    assert "Stopped by you after" in status and "(10 steps) are kept" in status
    assert confidences(predict(client, scan)[0]) == pytest.approx(before, abs=1e-6)
    status = client.predict(api_name="/swap_prompts")[0]
    assert "Now using the other prompts" in status
    assert confidences(predict(client, scan)[0]) != pytest.approx(before, abs=1e-6)


def test_a_saved_workspace_opens_in_another_session_with_the_same_predictions(app_url,
                                                                             tmp_path):
    """Save -> open in a new client session (another browser): the task, examples, test set,
    tuned prompts and evaluation come back, and a scan is predicted as before."""
    client = Client(app_url, verbose=False)
    run_task(client, ROWS, tmp_path)
    client.predict(None, [handle_file(real_scan(CT_FILES[0], tmp_path))], ROWS[0][0], AUTO, 40,
                   400, -1, api_name="/add_test_scans")
    client.predict(None, [handle_file(real_scan(MR_FILES[0], tmp_path))], ROWS[1][0], AUTO, 40,
                   400, -1, api_name="/add_test_scans")
    evaluated = client.predict(api_name="/evaluate")
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    before = confidences(predict(client, scan)[0])
    saved, status = client.predict(api_name="/save_workspace")
    assert saved.endswith(".biomed-dpt.zip") and "Saved the workspace" in status

    other = Client(app_url, verbose=False)
    opened = other.predict(handle_file(saved), api_name="/open_workspace")
    message = opened[0]
    assert "Opened the workspace: 6 examples, 2 test scans, with its tuned prompts" in message
    assert opened[1] is None  # nothing was there before: no earlier work to keep
    assert confidences(predict(other, scan)[0]) == pytest.approx(before, abs=1e-6)
    again = other.predict(api_name="/evaluate")
    assert again[0] == evaluated[0]  # the same metrics on the same test set

    # opening over work keeps that work as a file; a bad file changes nothing
    notes = tmp_path / "notes.biomed-dpt.zip"
    notes.write_text("not a workspace")
    refused = other.predict(handle_file(str(notes)), api_name="/open_workspace")
    assert "is not a workspace file" in refused[0]
    assert confidences(predict(other, scan)[0]) == pytest.approx(before, abs=1e-6)
    reopened = other.predict(handle_file(saved), api_name="/open_workspace")
    assert "The work you had before was saved as" in reopened[0]
    assert reopened[1].endswith(".biomed-dpt.zip")


def test_a_volume_is_predicted_slice_by_slice_through_the_api(app_url, tmp_path):
    """/predict_volume (file, window, level, width, step): first a list with one entry per
    slice predicted, {"slice": i, "probabilities": {class: p}}."""
    client = Client(app_url, verbose=False)
    run_task(client, ROWS, tmp_path, steps=5)
    volume = handle_file(real_scan("emri_small.dcm", tmp_path))
    rows = client.predict(volume, AUTO, 40, 400, 0, api_name="/predict_volume")[0]
    assert [r["slice"] for r in rows] == list(range(10))
    assert set(rows[0]["probabilities"]) == {name for name, _ in ROWS}
    every_third = client.predict(volume, AUTO, 40, 400, 3, api_name="/predict_volume")[0]
    assert [r["slice"] for r in every_third] == [0, 3, 6, 9]
    assert every_third[1]["probabilities"] == pytest.approx(rows[3]["probabilities"], abs=1e-6)


def test_a_slice_range_and_a_4d_volume_through_the_api(app_url, tmp_path):
    """/add_examples takes every slice from a to b (each an example) and a 4-D file's volume;
    /predict and /predict_volume take the volume too."""
    import nibabel as nib

    client = Client(app_url, verbose=False)
    set_task(client, ROWS, modality="MRI")
    functional = str(Path(nib.__file__).parent / "tests" / "data" / "functional.nii")
    out = client.predict([handle_file(functional)], ROWS[0][0], AUTO, 40, 400, -1, 7, True, 0,
                         2, api_name="/add_examples")
    assert "Added 3 examples" in out[1]
    missing = client.predict([handle_file(functional)], ROWS[0][0], AUTO, 40, 400, -1, 20,
                             api_name="/add_examples")
    assert "there is no volume 20" in missing[1]
    seventh = client.predict(handle_file(functional), AUTO, 40, 400, 1, 0.45, "jet", 7,
                             api_name="/predict")
    first = predict(client, functional, index=1)
    zero = confidences(seventh[1])  # nothing tuned: zero-shot
    assert zero != confidences(first[1])
    rows = client.predict(handle_file(functional), AUTO, 40, 400, 0, 0.45, "jet", 7,
                          api_name="/predict_volume")[0]
    assert rows[1]["probabilities"] == pytest.approx(zero, abs=1e-6)


def test_the_pool_through_the_api(app_url, tmp_path):
    """/add_to_pool, /suggest (order) and /label_pool_scan (uid, class): the suggestions as
    a list of {uid, guess, probability, reason, why, ...}; labelling one moves it."""
    client = Client(app_url, verbose=False)
    set_task(client, ROWS)
    for (label, _), names in zip(ROWS, (CT_FILES, MR_FILES)):
        add(client, [handle_file(real_scan(n, tmp_path)) for n in names], label)
    pool = ["JPEG2000.dcm", "SC_rgb.dcm", "US1_J2KR.dcm", "RG1_J2KR.dcm", "liver.dcm"]
    said = client.predict([handle_file(real_scan(n, tmp_path)) for n in pool],
                          api_name="/add_to_pool")
    assert "Added 5 scans to the pool" in said[1]
    rows, status = client.predict("ranked", api_name="/suggest")
    assert 1 <= len(rows) <= 5 and "teach most" in status
    assert {"uid", "guess", "probability", "reason", "why"} <= set(rows[0])
    other = next(name for name, _ in ROWS if name != rows[0]["guess"])
    out = client.predict(rows[0]["uid"], other, rows, api_name="/label_pool_scan")
    assert [r["uid"] for r in out[0]] == [r["uid"] for r in rows[1:]]
    assert "4 left in the pool" in out[1] and f"**{other}**: 4" in out[3]
    random_rows = client.predict("random", api_name="/suggest")[0]
    assert {r["reason"] for r in random_rows} == {"random"} and len(random_rows) == 4
