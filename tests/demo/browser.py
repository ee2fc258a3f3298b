"""Helpers for driving the app in Debian's chromium with Playwright, as a person would."""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "out"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Gradio dropdown by its label, as a mouse user would. A click on the
    box toggles its list, and the list can redraw under the pointer; so try again, as a person
    would, until the box shows the choice."""
    from playwright.sync_api import TimeoutError as NotYet
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True).first
    item = page.get_by_role("option", name=option, exact=True).first
    for _ in range(4):
        box.click()
        try:
            item.click(timeout=5_000)
            expect(box).to_have_value(option, timeout=5_000)
            return
        except (NotYet, AssertionError):
            page.keyboard.press("Escape")
    raise AssertionError(f"could not choose {option!r} in {label!r}")


def options_of(page, label: str) -> list[str]:
    """The choices a dropdown offers (opened, read, closed)."""
    box = page.get_by_label(label, exact=True).first
    box.click()
    page.get_by_role("option").first.wait_for()
    names = [o.inner_text().replace("✓", "").strip() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return names


def fill_cell(page, row: int, column: int, value: str) -> None:
    """Type into a cell of a Gradio table: double-click to edit, type, Enter to keep."""
    cell = page.locator("#class-table").get_by_test_id(f"cell-{row}-{column}")
    cell.dblclick()
    editor = cell.locator("textarea, input").first
    editor.wait_for()
    editor.fill(value)
    page.keyboard.press("Enter")


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, wanted: str, timeout: float = 60_000) -> str:
    """Wait until the element's text contains `wanted` (and is not Gradio's "processing"
    line); return it. Past `timeout`, the failure says what the page showed instead: the
    element, and every status line and toast."""
    from playwright.sync_api import TimeoutError as NotYet

    try:
        page.wait_for_function(
            "([sel, pat]) => { const e = document.querySelector(sel);"
            " return e && e.innerText.includes(pat)"
            " && !/processing \\|/.test(e.innerText); }",
            arg=[selector, wanted], timeout=timeout)
    except NotYet:
        shown = page.evaluate(
            "() => [...document.querySelectorAll('[id$=\"-status\"], .toast-body')]"
            ".map(e => (e.id || 'toast') + ': ' + e.innerText.trim().slice(0, 200))"
            ".filter(line => !line.endsWith(': '))")
        raise AssertionError(f"{selector} never showed {wanted!r} in {timeout / 1000:g} s; it "
                             f"shows {text_of(page, selector)!r}. Also on the page: "
                             f"{shown}") from None
    return text_of(page, selector)


def wait_change(page, selector: str, old: str, must: str = "", timeout: float = 60_000) -> str:
    """Wait until the element's text differs from `old` and is an answer, not Gradio's
    "processing" or "queue" line (a fresh answer arrived)."""
    page.wait_for_function(
        "([sel, old, must]) => { const e = document.querySelector(sel);"
        " const t = e ? e.innerText : '';"
        " return t.trim() && t !== old && t.includes(must) && !/processing|queue/.test(t); }",
        arg=[selector, old, must], timeout=timeout)
    return text_of(page, selector)


def answer_after(page, selector: str, click) -> str:
    """Click, then wait for the event's fresh answer in `selector`: Gradio's progress line
    appears there while the event runs and goes when its outputs arrive."""
    from playwright.sync_api import TimeoutError as NotYet

    old = text_of(page, selector)
    click()
    try:
        page.wait_for_function(
            "sel => /processing|queue/.test(document.querySelector(sel).innerText)",
            arg=selector, timeout=5_000)
    except NotYet:
        pass  # it finished before a frame showed its progress
    return wait_change(page, selector, old)


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def picture_in(page, selector: str) -> Image.Image:
    """The picture an image element shows (data URL or a file the server serves)."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    if src.startswith("data:"):
        return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
    body = page.request.get(src).body()
    return Image.open(io.BytesIO(body)).convert("RGB")


def colour_share(picture: Image.Image, colour: str, tolerance: int = 40) -> float:
    """Share of pixels within `tolerance` of a hex colour: lines drawn in that colour."""
    target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(picture, dtype=np.int16)
    return float((np.abs(pixels - target).max(axis=2) < tolerance).mean())


ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")


def predict_example_picture(page, folder, name: str = "ct_head.png") -> None:
    """In step 4, predict one of the app's example pictures (uploaded as a copy) and wait for
    its map."""
    examples = Path(__file__).resolve().parents[2] / "assets" / "examples"
    page.get_by_role("tab", name="4 · Predict").click()
    scan = Path(folder) / name
    shutil.copy(examples / name, scan)
    page.locator("#predict-scan input[type=file]").set_input_files(str(scan))
    answer_after(page, "#predict-status",
                 page.get_by_role("button", name="Predict", exact=True).click)
    page.locator("#attention-map img").wait_for()


def use_sample_scans(page) -> str:
    """Once the model is loaded, one click on the sample set; the task's status line."""
    wait_text(page, "#model-status", "tiny-biomedclip")
    page.locator("#use-samples").click()
    return wait_text(page, "#task-status", "Sample scans added")
