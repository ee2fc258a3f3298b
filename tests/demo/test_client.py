"""The documented API, through gradio_client, against `python app.py --backbone tiny-biomedclip`."""
from __future__ import annotations

import threading

import pytest
from gradio_client import Client, handle_file

from tests.demo.conftest import CT_FILES, MR_FILES, ROWS, real_scan

HEADERS = ["class", "descriptions (one sentence per line)"]


def table(rows):
    return {"headers": HEADERS, "data": rows, "metadata": None}


def confidences(label_output) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label_output["confidences"]}


def run_task(client: Client, rows, folder):
    client.predict("CT", "abdomen", "a {} photo.", table(rows), 12.5, 0.25, api_name="/set_task")
    for (label, _), names in zip(rows, (CT_FILES, MR_FILES)):
        files = [handle_file(real_scan(n, folder)) for n in names]
        client.predict(files, label, "file's own / automatic", -1, api_name="/add_examples")
    return client.predict("fast", 12.5, 0.25, 20, 1, 1, api_name="/tune")


def test_whole_workflow_through_the_api(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    status, _plot, _classes = run_task(client, ROWS, tmp_path)
    assert "Tuning finished" in status
    scan = handle_file(real_scan("MR_small_padded.dcm", tmp_path))
    tuned, zero, heat, map_class, note = client.predict(scan, "file's own / automatic", -1, 0.45,
                                                        api_name="/predict")
    probs = confidences(tuned)
    assert set(probs) == {r[0] for r in ROWS} and sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert heat and map_class["value"] == tuned["label"]  # the map explains the top class

    saved = client.predict(api_name="/save_prompts")
    other = Client(app_url, verbose=False)
    message = other.predict(handle_file(saved), api_name="/load_prompts")[0]
    assert "Loaded prompts" in message
    again = other.predict(handle_file(real_scan("MR_small_padded.dcm", tmp_path)),
                          "file's own / automatic", -1, 0.45, api_name="/predict")[0]
    assert confidences(again) == pytest.approx(probs, abs=1e-5)


def test_two_clients_do_not_see_each_others_work(app_url, tmp_path):
    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    rows_b = [["bone window", ""], ["soft tissue window", ""]]
    results = {}

    def work(name, client, rows, folder):
        folder.mkdir()
        results[name] = run_task(client, rows, folder)

    threads = [threading.Thread(target=work, args=("a", a, ROWS, tmp_path / "a")),
               threading.Thread(target=work, args=("b", b, rows_b, tmp_path / "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scan_a = handle_file(real_scan("CT_small.dcm", tmp_path))
    assert set(confidences(a.predict(scan_a, "lung", -1, 0.45, api_name="/predict")[0])) == \
        {r[0] for r in ROWS}
    scan_b = handle_file(real_scan("MR_small.dcm", tmp_path))
    assert set(confidences(b.predict(scan_b, "lung", -1, 0.45, api_name="/predict")[0])) == \
        {r[0] for r in rows_b}
