"""The whole workflow under ZeroGPU's constraints (`BIOMED_DPT_ZEROGPU=emulate`: every compute
call in a forked worker, arguments and results pickled, the model unusable outside), compared
with the same workflow run in-process: a call that relied on changing what it was given, or on
the model outside a GPU call, fails or differs here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.runtime import gpu
from demo.ui.replies import AUTO_WINDOW
from demo.work.session import Session
from tests.demo.conftest import ROWS, real_scan
from tests.demo.ui.test_handlers import _class_zip, last, prompts_file, ready_session

NOOP = lambda *a, **k: None  # noqa: E731


def workflow(studio, folder: Path) -> dict:
    """Task, examples (encoded as they arrive), tune, predict, another class's map, the report,
    evaluate with a cell's maps, save and load the prompts: what a user sees of each."""
    session = ready_session(studio, folder, tune=False)
    out = {}
    out["features"] = last(studio.prepare_features(session))["features_status"]
    tuned = list(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1, progress=NOOP))
    out["summary"] = tuned[-1]["tune_status"]
    out["estimate"] = last(studio.estimate(session))["estimate_status"]
    out["saved"] = prompts_file(tuned)
    scan = real_scan("MR_small_padded.dcm", folder)
    predicted = studio.predict(session, scan, AUTO_WINDOW)
    out["tuned"], out["zero"] = predicted["tuned_label"], predicted["zero_label"]
    out["baseline"] = predicted["baseline_label"]
    out["map"] = np.asarray(Image.open(predicted["heat"]), dtype=np.int16)
    other = [c for c in session.classes if c != predicted["map_class"]["value"]][0]
    _, switched = studio.change_map(session, other, 0.6, "jet")
    out["switched"] = np.asarray(Image.open(switched), dtype=np.int16)
    report = studio.report(session, other, 0.6, "jet")
    out["report"] = json.loads(Image.open(report).text["biomed-dpt-report"])["explained"]
    studio.add_test_scans(session, _class_zip(folder), None, ROWS[0][0], AUTO_WINDOW)
    evaluated = studio.evaluate(session)
    out["evaluated"] = evaluated["eval_status"]
    out["table"] = evaluated["metrics"]["value"].values.tolist()
    cell = evaluated["cell"]["choices"][0][1]
    out["cell"] = [np.asarray(Image.open(p), dtype=np.int16)
                   for p, _ in studio.show_cell(session, cell)["cell_gallery"]]
    fresh = Session()
    upload = folder / "upload.safetensors"
    upload.write_bytes(Path(out["saved"]).read_bytes())
    out["loaded"] = studio.load_prompts(fresh, str(upload))["prompts_status"]
    again = studio.predict(fresh, real_scan("MR_small_padded.dcm", folder), AUTO_WINDOW)
    out["again"] = again["tuned_label"]
    return out


def stopped_run(studio, session_source, folder: Path) -> list:
    updates = []
    for update in studio.tune(session_source, "fast", 12.5, 0.25, 2000, 1, 1, progress=NOOP):
        updates.append(update)
        if update.get("tune_status", "").startswith("Step "):
            studio.stop(session_source)
    return updates


@pytest.fixture(scope="module")
def both(studio, tmp_path_factory):
    previous = os.environ.pop(gpu.MODE_ENV, None)
    try:
        local = workflow(studio, tmp_path_factory.mktemp("local"))
        os.environ[gpu.MODE_ENV] = gpu.EMULATE
        emulated = workflow(studio, tmp_path_factory.mktemp("emulated"))
    finally:
        os.environ.pop(gpu.MODE_ENV, None)
        if previous is not None:
            os.environ[gpu.MODE_ENV] = previous
    return local, emulated


def test_the_workflow_runs_under_zerogpus_constraints(both):
    _, out = both
    assert "ready" in out["features"]
    assert "Tuning finished" in out["summary"] and "held-out" in out["summary"].lower()
    assert sum(out["tuned"].values()) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(out["map"] - out["switched"]).max() > 50 and out["report"] in ROWS[0][0] + ROWS[1][0]
    assert "3 test scans" in out["evaluated"]
    assert out["cell"] and "Loaded prompts" in out["loaded"]
    assert out["again"] == pytest.approx(out["tuned"], abs=1e-5)


def test_the_workflow_gives_what_it_gives_in_process(both):
    local, emulated = both
    for key in ("tuned", "zero", "again"):
        assert emulated[key] == pytest.approx(local[key], abs=1e-5), key
    # the linear probe's L-BFGS fit carries the features' last bits (one thread there, two here)
    assert emulated["baseline"] == pytest.approx(local["baseline"], abs=1e-3)
    assert emulated["table"] == local["table"]
    # the same maps, to the last bits of a float summed on one thread there and two here
    for mine, theirs in zip([emulated["map"], *emulated["cell"]], [local["map"], *local["cell"]]):
        assert np.abs(mine - theirs).max() <= 2
    assert len(emulated["cell"]) == len(local["cell"])


def test_stop_reaches_a_running_gpu_worker(studio, tmp_path, monkeypatch):
    monkeypatch.setenv(gpu.MODE_ENV, gpu.EMULATE)
    session = ready_session(studio, tmp_path, tune=False)
    updates = stopped_run(studio, session, tmp_path)
    assert "stopped by you" in updates[-1]["tune_status"]
    assert session.tuned is not None and len(session.history.steps) < 2000


def test_a_spent_quota_runs_the_workflow_on_the_cpu(studio, tmp_path, monkeypatch):
    monkeypatch.setenv(gpu.MODE_ENV, gpu.EMULATE_NO_QUOTA)
    session = ready_session(studio, tmp_path, tune=False)
    final = last(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1, progress=NOOP))
    assert "Tuning finished" in final["tune_status"]
    out = studio.predict(session, real_scan("MR_small_padded.dcm", tmp_path), AUTO_WINDOW)
    assert sum(out["tuned_label"].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_run_past_its_gpu_time_is_answered_and_loses_nothing(studio, tmp_path, monkeypatch):
    from demo.runtime import compute

    monkeypatch.setenv(gpu.MODE_ENV, gpu.EMULATE)
    session = ready_session(studio, tmp_path, tune=False)
    last(studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1, progress=NOOP))
    kept = session.tuned
    monkeypatch.setattr(compute, "MAX_S", 0.2)  # ZeroGPU lends each call a fifth of a second
    # the paper's recipe for 200 epochs (no convergence stop): far more than that
    final = last(studio.tune(session, "paper", 12.5, 0.25, 10, 200, 3, progress=NOOP))
    status = final["tune_status"]
    assert status.startswith("⚠️") and "longer than the GPU time" in status
    assert session.tuned is kept and len(session.examples) == 6
