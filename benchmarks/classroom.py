"""Classroom load test: `python -m benchmarks.classroom` prints one JSON line.

Starts `python app.py` (default backbone tiny-biomedclip) and lets N students use it at once,
each a `gradio_client` session of its own running the whole workflow with real DICOM files
(pydicom's test data): set a task, add examples, tune, predict. A third of them then tune in a
loop while the others keep predicting. Students are of a few kinds (different templates and
class orders), so a leak between sessions would change someone's predictions.

Reports: predict latency p50 / p95 while others tune (each prediction is followed by its report,
as on the page, timed apart: the prediction is what a student waits to see) (targets: p95 <= 2 s with the tiny
backbone on 2 cores), how long tuning runs waited for their turn, errors (target 0), and
whether every student's predictions equal those of the same workflow run alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.app import serve

KINDS = [  # (template, classes in order): the same scans, told apart differently
    ("a {} photo.", ["computed tomography", "magnetic resonance"]),
    ("an image made by {}.", ["magnetic resonance", "computed tomography"]),
    ("a medical scan of the {} kind.", ["computed tomography", "magnetic resonance"]),
]
FILES = {"computed tomography": ["CT_small.dcm", "693_UNCR.dcm", "693_UNCI.dcm"],
         "magnetic resonance": ["MR_small.dcm", "MR2_UNCR.dcm", "MR_small_implicit.dcm"]}
QUERIES = ["MR_small_padded.dcm", "CT_small.dcm", "MR_small_bigendian.dcm"]
STEPS = 20


def copy(name: str, folder: Path) -> str:
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{len(list(folder.iterdir()))}-{name.replace('.dcm', '')}"
    shutil.copy(get_testdata_file(name), target)
    return str(target)


def fetch(url: str) -> bytes:
    """A file the page shows, fetched as a browser does (files are not downloaded by the
    clients themselves: their decoding would load the machine the server runs on)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.read()


def confidences(label) -> dict[str, float]:
    return {c["label"]: float(c["confidence"]) for c in (label or {}).get("confidences", [])}


class Student:
    """One browser session, through gradio_client."""

    def __init__(self, url: str, kind: int, folder: Path) -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False)
        self.kind, self.folder = kind, folder
        self.errors: list[str] = []
        self.report_s: list[float] = []

    def _check(self, message) -> None:
        if isinstance(message, str) and message.startswith("⚠️"):
            self.errors.append(message[:200])

    def prepare(self) -> None:
        from gradio_client import handle_file

        template, classes = KINDS[self.kind]
        table = {"headers": ["class", "descriptions"], "data": [[c, ""] for c in classes]}
        out = self.client.predict("CT", None, template, table, 12.5, 0.25, api_name="/set_task")
        self._check(out[0])
        for label in classes:
            files = [handle_file(copy(n, self.folder)) for n in FILES[label]]
            out = self.client.predict(files, label, "auto", 40, 400, -1, api_name="/add_examples")
            self._check(out[1])

    def tune(self) -> float:
        """One tuning run, from the template's words (cold: each run the same as the one run
        alone, whatever ran before it); returns how long it waited for its turn."""
        job = self.client.submit("fast", 12.5, 0.25, STEPS, 1, 1, True, api_name="/tune")
        submitted, waited = time.perf_counter(), None
        while not job.done():
            outputs = job.outputs()
            if waited is None and any(not str(o[0]).startswith("⏳") and "in line" not in str(o[0])
                                      for o in outputs):
                waited = time.perf_counter() - submitted
            time.sleep(0.05)
        self._check(job.result()[0])
        # the page chains the held-out estimate after each run, in the tuning line too
        self._check(self.client.predict(api_name="/estimate"))
        return waited if waited is not None else time.perf_counter() - submitted

    def predict(self) -> tuple[list[dict], list[float]]:
        """Each query predicted, then its report fetched, as the page does; returns the
        predictions and how long each took to show (the report comes after)."""
        from gradio_client import handle_file

        answers, seconds = [], []
        for name in QUERIES:
            started = time.perf_counter()
            out = self.client.predict(handle_file(copy(name, self.folder)), "auto", 40, 400, -1,
                                      0.45, "jet", api_name="/predict")
            for picture in (out[2], out[3], *(item["image"] for item in out[7])):
                fetch(picture["url"])  # what the page shows: the scan, its map, the nearest
            seconds.append(time.perf_counter() - started)
            self._check(out[5])
            answers.append(confidences(out[0]))
            started = time.perf_counter()
            report = self.client.predict(out[4]["value"], 0.45, "jet", api_name="/report")
            self.report_s.append(time.perf_counter() - started)
            if not (isinstance(report, dict) and fetch(report["url"]).startswith(b"\x89PNG")):
                self.errors.append(f"no report: {report!r}"[:200])
        return answers, seconds


def alone(url: str, folder: Path) -> list[list[dict]]:
    """Each kind's predictions when its student is the only one."""
    out = []
    for kind in range(len(KINDS)):
        student = Student(url, kind, folder / f"alone-{kind}")
        student.prepare()
        student.tune()
        out.append(student.predict()[0])
    return out


def same(a: list[dict], b: list[dict], tol: float = 1e-4) -> bool:
    return all(x.keys() == y.keys() and all(abs(x[k] - y[k]) <= tol for k in x)
               for x, y in zip(a, b)) and len(a) == len(b)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-biomedclip")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="prediction rounds of each predicting student while the others tune")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, serve(args.backbone) as (url, _):
        folder = Path(tmp)
        reference = alone(url, folder)
        students = [Student(url, i % len(KINDS), folder / f"s{i}") for i in range(args.clients)]
        tuners = students[: max(1, args.clients // 3)]
        viewers = students[len(tuners):] or students[:1]
        started = time.perf_counter()
        failures: list[str] = []

        def run(fn, *a):
            try:
                fn(*a)
            except Exception as exc:  # noqa: BLE001 - counted, the test goes on
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

        setup = [threading.Thread(target=run, args=(lambda s=s: (s.prepare(), s.tune()),))
                 for s in students]
        for t in setup:
            t.start()
        for t in setup:
            t.join()
        setup_s = time.perf_counter() - started

        tuning = threading.Event()
        waits: list[float] = []
        latencies: list[float] = []
        differing: set[int] = set()  # students whose predictions differ from their kind alone

        def keep_tuning(student: Student) -> None:
            while tuning.is_set():
                waits.append(student.tune())

        def keep_predicting(student: Student) -> None:
            for _ in range(args.rounds):
                answers, seconds = student.predict()
                latencies.extend(seconds)
                if not same(answers, reference[student.kind]):
                    differing.add(id(student))

        tuning.set()
        phase_started, client_cpu = time.perf_counter(), time.process_time()
        loops = [threading.Thread(target=run, args=(keep_tuning, s)) for s in tuners]
        for t in loops:
            t.start()
        time.sleep(0.5)  # the tuning runs are under way
        viewing = [threading.Thread(target=run, args=(keep_predicting, s)) for s in viewers]
        for t in viewing:
            t.start()
        for t in viewing:
            t.join()
        load_share = ((time.process_time() - client_cpu)
                      / ((time.perf_counter() - phase_started) * (os.cpu_count() or 1)))
        tuning.clear()
        for t in loops:
            t.join()
        for student in tuners:  # the tuners' own results, after their loops
            if not same(student.predict()[0], reference[student.kind]):
                differing.add(id(student))
        errors = failures + [e for s in students for e in s.errors]

    figures = {
        "backbone": args.backbone, "clients": args.clients, "tuning_clients": len(tuners),
        "setup_s": round(setup_s, 2),
        "predicts_while_tuning": len(latencies),
        "predict_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "predict_p95_s": round(percentile(latencies, 0.95), 3),
        "report_p95_s": round(percentile([r for s in viewers for r in s.report_s], 0.95), 3),
        "tune_runs_while_predicting": len(waits),
        "tune_wait_p50_s": round(statistics.median(waits), 2) if waits else None,
        "tune_wait_max_s": round(max(waits), 2) if waits else None,
        # the students' own clients run on the server's machine: their share of its CPU
        "load_generator_cpu_share": round(load_share, 2),
        "errors": len(errors), "error_samples": errors[:3],
        "sessions_checked": len(set(map(id, viewers + tuners))),
        "sessions_differing_from_alone": len(differing),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
