"""A real browser (Debian's chromium driven by Playwright) runs the whole workflow by clicking, as a
person would, and saves a screenshot of the prediction with its map."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.demo.conftest import real_scan

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "out"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(apt-get install chromium); .ci/run installs it")

CLASSES = ["computed tomography", "magnetic resonance"]
FILES = {CLASSES[0]: ["CT_small.dcm", "693_UNCR.dcm", "693_UNCI.dcm"],
         CLASSES[1]: ["MR_small.dcm", "MR2_UNCR.dcm", "MR_small_implicit.dcm"]}


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


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


def fill_cell(page, row: int, column: int, text: str) -> None:
    """Type into a cell of a Gradio table: double-click to edit, type, Enter to keep."""
    page.get_by_test_id(f"cell-{row}-{column}").dblclick()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_clinician_workflow_in_a_real_browser(app_url, page, tmp_path):
    page.goto(app_url)
    page.get_by_text("For research and teaching only").wait_for()

    # 1. Task: a two-class task typed into the class table
    page.get_by_label("Clinical template ({} is where the class name goes)").fill("a {} photo.")
    fill_cell(page, 0, 0, CLASSES[0])
    fill_cell(page, 1, 0, CLASSES[1])
    page.get_by_role("button", name="Use this task").click()
    page.get_by_text("Task set: 2 classes").wait_for()

    # 2. Examples: three real DICOM files (no extension) per class
    page.get_by_role("tab", name="2 · Examples").click()
    for label, names in FILES.items():
        choose(page, "These examples belong to", label)
        paths = [real_scan(n, tmp_path) for n in names]
        page.locator("#example-files input[type=file]").set_input_files(paths)
        page.get_by_role("button", name="Add examples").click()
        page.get_by_text(f"Added 3 examples of {label}").wait_for()
    page.get_by_text(f"{CLASSES[1]}: 3").first.wait_for()

    # 3. Tune with the fast recipe
    page.get_by_role("tab", name="3 · Tune").click()
    page.get_by_role("button", name="Tune prompts").click()
    page.get_by_text("Tuning finished").wait_for(timeout=180_000)

    # 4. Predict a new scan and look at the map
    page.get_by_role("tab", name="4 · Predict").click()
    page.locator("#predict-scan input[type=file]").set_input_files(
        real_scan("MR_small_padded.dcm", tmp_path))
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator("#attention-map img").wait_for()
    page.get_by_text("Zero-shot (plain template)").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "prediction.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
