"""App benchmark: `python -m demo.bench` prints one JSON line.

Measures how long `python app.py` takes to be ready (a fresh interpreter importing everything,
loading the backbone and building the interface) and how long each interaction's handler takes,
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
from pathlib import Path

START_PROBE = ("import time; t = time.perf_counter(); from demo.layout import create_app; "
               "create_app(['--backbone', '{spec}']); print(time.perf_counter() - t)")
CLASSES = [["computed tomography", "cross-sectional x-ray image"], ["magnetic resonance", ""]]
FILES = {"computed tomography": ["CT_small.dcm", "693_UNCR.dcm", "693_UNCI.dcm"],
         "magnetic resonance": ["MR_small.dcm", "MR2_UNCR.dcm", "MR_small_implicit.dcm"]}


def app_start_s(spec: str) -> tuple[float, float]:
    """(wall seconds from launching the interpreter to a built app, of which in Python)."""
    root = Path(__file__).resolve().parents[1]
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", START_PROBE.format(spec=spec)], cwd=root,
                         capture_output=True, text=True, check=True)
    return time.perf_counter() - started, float(out.stdout.strip().splitlines()[-1])


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

    from demo.handlers import AUTO_WINDOW, Studio
    from demo.session import Session

    figures: dict = {"backbone": args.backbone}
    if not args.skip_start:
        figures["app_start_s"], figures["app_build_in_python_s"] = (
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
                  copies(names, folder), label, AUTO_WINDOW, -1)
        timed(steps, "tune_fast_100_steps", lambda: studio.tune(
            session, "fast", 12.5, 0.25, 100, 1, 1, progress=noop))
        scan = copies(["MR_small_padded.dcm"], folder)[0]
        timed(steps, "predict_with_map", studio.predict, session, scan, AUTO_WINDOW, -1, 0.45)
        other = session.classes[0]
        timed(steps, "switch_map_class", studio.change_map, session, other, 0.45)
        timed(steps, "change_opacity", studio.change_map, session, other, 0.8)
        timed(steps, "report_png", studio.report, session, other, 0.45)
        saved = timed(steps, "save_prompts", studio.save_prompts, session)
        timed(steps, "load_prompts", studio.load_prompts, Session(), saved)
        session.selected = 0
        timed(steps, "remove_example", studio.remove_selected, session)
        session.close()
    figures["handler_s"] = steps
    figures["slowest_non_training_s"] = max(v for k, v in steps.items() if not k.startswith("tune"))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
