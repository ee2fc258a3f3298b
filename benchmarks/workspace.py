"""Workspace benchmark: `python -m benchmarks.workspace` prints one JSON line.

Saves and opens the workspace of a session with 100 examples and 40 test scans (4 classes),
tuned prompts, their features and an evaluation, and reports the median time of each and the
file's size. The pictures are the app's licensed sample pictures (CT, MRI, X-ray, ultrasound,
fundus, histology), each example a different crop and turn of one of them, kept at the largest
size the app keeps (448 pixels on the longer side), so the file is as large as such work makes
it. Default backbone: BiomedCLIP's full architecture at random weights (`random-biomedclip`;
saving and opening do not depend on the weights' values).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "examples"
CLASSES = [["ct", ""], ["mri", ""], ["x-ray", ""], ["other", ""]]
KEPT = 448


def pictures(n: int, folder: Path, offset: int = 0) -> list[str]:
    """`n` distinct PNG files made from the sample pictures (a crop, a turn, a size)."""
    sources = [Image.open(p).convert("RGB") for p in sorted(ASSETS.glob("*.png"))]
    paths = []
    for i in range(offset, offset + n):
        picture = sources[i % len(sources)]
        w, h = picture.size
        cut = 0.06 + 0.02 * ((i // len(sources)) % 6)
        box = (int(w * cut), int(h * cut * 0.7), w - int(w * cut * 0.5), h - int(h * cut))
        made = picture.crop(box).rotate(3 * (i % 5) - 6, fillcolor=(0, 0, 0))
        side = KEPT - (i % 7) * 4
        made = made.resize((side, int(side * made.height / made.width)))
        path = folder / f"scan-{i:03d}.png"
        made.save(path)
        paths.append(str(path))
    return paths


def median_s(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3), out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="random-biomedclip")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from demo.ui.handlers import Studio
    from demo.ui.replies import AUTO_WINDOW
    from demo.work.session import Session
    from demo.work.workspace import read_workspace, write_workspace

    studio = Studio.start(args.backbone)
    info = studio.model_info(wait_s=600)
    session = Session()
    noop = lambda *a, **k: None  # noqa: E731 - stands in for the progress bar
    figures: dict = {"backbone": args.backbone, "examples": args.examples, "tests": args.tests}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        studio.set_task(session, "other", None, "a {} picture.", CLASSES, 12.5, 0.25)
        per_class = args.examples // len(CLASSES)
        made = pictures(args.examples + args.tests, folder)
        for c, (label, _) in enumerate(CLASSES):
            studio.add_examples(session, made[c * per_class:(c + 1) * per_class], label,
                                AUTO_WINDOW)
        tests = made[args.examples:]
        per_test = len(tests) // len(CLASSES)
        for c, (label, _) in enumerate(CLASSES):
            studio.add_test_scans(session, None, tests[c * per_test:(c + 1) * per_test], label,
                                  AUTO_WINDOW)
        started = time.perf_counter()
        for _ in studio.prepare_features(session):
            pass
        for _ in studio.tune(session, "fast", 12.5, 0.25, 10, 1, 1, progress=noop):
            pass
        for _ in studio.evaluate(session):
            pass
        figures["preparing_s"] = round(time.perf_counter() - started, 1)
        assert session.tuned is not None and session.evaluated is not None
        figures["examples_kept"], figures["tests_kept"] = (len(session.examples),
                                                           len(session.test_set))

        saved = folder / "saved"
        figures["save_s"], path = median_s(
            lambda: write_workspace(session, info, saved, "benchmark"), args.repeats)
        figures["file_mb"] = round(path.stat().st_size / 2**20, 1)
        figures["open_s"], opened = median_s(lambda: read_workspace(path, info), args.repeats)
        back = opened.session
        figures["opened_whole"] = (len(back.examples) == len(session.examples)
                                   and len(back.test_set) == len(session.test_set)
                                   and back.tuned is not None and back.evaluated is not None
                                   and not opened.notes)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
