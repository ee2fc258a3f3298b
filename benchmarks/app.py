"""App benchmark: `python -m benchmarks.app` prints one JSON line.

Measures how long `python app.py` takes to serve the page and to have the model ready (it loads
in the background while the page is served), and how long each interaction's handler takes,
with real DICOM files from pydicom's test data. Default backbone: tiny-biomedclip.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

CLASSES = [["computed tomography", "cross-sectional x-ray image"], ["magnetic resonance", ""]]
FILES = {"computed tomography": ["CT_small.dcm", "693_UNCR.dcm", "693_UNCI.dcm"],
         "magnetic resonance": ["MR_small.dcm", "MR2_UNCR.dcm", "MR_small_implicit.dcm"]}


@contextmanager
def serve(spec: str, *flags: str, timeout_s: float = 300):
    """`python app.py --backbone SPEC` on a free port: yields (its URL, when it was started)
    once the page is served; stopped afterwards."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--backbone", spec, "--port", str(port),
                                *flags], cwd=root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > timeout_s:
                    raise RuntimeError("the app did not start")
                time.sleep(0.1)
        yield url, started
    finally:
        process.terminate()
        process.wait(timeout=30)


def app_start_s(spec: str) -> tuple[float, float]:
    """Seconds from `python app.py --backbone SPEC` to (the page being served, the model being
    ready), as a person opening the page would see them."""
    from gradio_client import Client

    with serve(spec) as (url, started):
        page = time.perf_counter() - started
        client = Client(url, verbose=False)
        while client.predict(api_name="/status")[0].startswith("⏳"):
            time.sleep(0.1)
        return page, time.perf_counter() - started


def copies(names: list[str], folder: Path) -> list[str]:
    from pydicom.data import get_testdata_file

    paths = []
    for name in names:
        target = folder / f"{len(list(folder.iterdir()))}-{name}"
        shutil.copy(get_testdata_file(name), target)
        paths.append(str(target))
    return paths


def timed(results: dict, name: str, fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    if hasattr(out, "__next__"):
        for out in out:
            pass
    results[name] = round(time.perf_counter() - started, 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-biomedclip")
    parser.add_argument("--skip-start", action="store_true", help="do not time the app start")
    args = parser.parse_args(argv)

    from demo.ui.handlers import Studio
    from demo.ui.replies import AUTO_WINDOW
    from demo.work.session import Session

    figures: dict = {"backbone": args.backbone}
    if not args.skip_start:
        figures["app_page_served_s"], figures["app_model_ready_s"] = (
            round(v, 2) for v in app_start_s(args.backbone))
    studio = Studio.start(args.backbone)
    session = Session()
    steps: dict = {}
    noop = lambda *a, **k: None  # noqa: E731 - stands in for the progress bar
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timed(steps, "set_task", studio.set_task, session, "CT", None, "a {} photo.", CLASSES,
              12.5, 0.25)
        for label, names in FILES.items():
            timed(steps, f"add_3_examples[{label}]", studio.add_examples, session,
                  copies(names, folder), label, AUTO_WINDOW)
        outputs = []
        timed(steps, "tune_fast_100_steps", lambda: outputs.extend(studio.tune(
            session, "fast", 12.5, 0.25, 100, 1, 1, progress=noop)))
        saved = next(o["save"] for o in outputs if "save" in o)  # written as tuning ends
        timed(steps, "tune_held_out_estimate", lambda: list(studio.estimate(session)))
        scan = copies(["MR_small_padded.dcm"], folder)[0]
        # predict, switch the map and change its opacity; each is followed by its report
        timed(steps, "predict_with_map", studio.predict, session, scan, AUTO_WINDOW)
        timed(steps, "report", studio.report, session, session.prediction.top, 0.45)
        other = session.classes[0]
        timed(steps, "switch_map_class", studio.change_map, session, other, 0.45)
        timed(steps, "change_opacity", studio.change_map, session, other, 0.8)
        timed(steps, "load_prompts", studio.load_prompts, Session(), saved)
        session.selected = 0
        timed(steps, "remove_example", studio.remove_selected, session)
        studio.end_work(session)
    figures["handler_s"] = steps
    figures["slowest_non_training_s"] = max(v for k, v in steps.items() if not k.startswith("tune"))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
