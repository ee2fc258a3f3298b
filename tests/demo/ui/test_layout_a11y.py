"""The page at a phone's (390 x 844), a small laptop's (1280 x 720) and a desktop's size, in
Debian's chromium: every step's tab button is on screen (no "..." menu), each step's main result
is visible and nothing covers it, and axe-core's WCAG 2 A/AA rules find no critical and no
colour-contrast violation. Screenshots go to out/a11y-<width>-<step>.png."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.demo.browser import (CHROMIUM, FLAGS, SCREENSHOTS, predict_example_picture, shot,
                                use_sample_scans)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(apt-get install chromium); .ci/run installs it")

AXE_VERSION = "4.14.1"
VIEWPORTS = [(390, 844), (1280, 720), (1400, 1000)]
# each step's tab, a short name for its screenshot, and the areas that hold its result
STEPS = [
    ("1 · Task", "task", ["#class-table"]),
    ("2 · Examples", "examples", ["#card-0"]),
    ("3 · Tune", "tune", ["#training-curve"]),
    ("4 · Predict", "predict", ["#attention-map", "#zero-probs", "#baseline-probs", "#nearest"]),
    ("5 · Evaluate", "evaluate", ["#test-zip", "#confusion-zero"]),
    ("6 · Save / load", "prompts", ["#save-prompts", "#load-prompts"]),
]
LAPTOP_MASTHEAD_SHARE = 0.33  # the step tabs end within the top third of a 720-pixel screen
AXE_TAGS = ["wcag2a", "wcag2aa"]

# The parts of an area that its heading and its toolbar must not cover: a table's top class and
# bars, a gallery's pictures, buttons, a picture (where it is drawn: a picture fitted to its box
# is centred in it), an empty box's icon, a file box's icon and prompt.
_COVERED = """
sel => {
  const root = document.querySelector(sel);
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const covers = [root.querySelector(':scope > label[data-testid="block-label"]:not(.sr-only)'),
                  root.querySelector('.icon-button-wrapper.top-panel')].filter(e => e && shown(e));
  const drawn = e => {
    const r = e.getBoundingClientRect();
    const fit = getComputedStyle(e).objectFit;
    if (e.tagName !== 'IMG' || !e.naturalWidth || !['contain', 'scale-down'].includes(fit))
      return r;
    const k = Math.min(r.width / e.naturalWidth, r.height / e.naturalHeight,
                       fit === 'scale-down' ? 1 : Infinity);
    const w = e.naturalWidth * k, v = e.naturalHeight * k;
    const left = r.left + (r.width - w) / 2, top = r.top + (r.height - v) / 2;
    return {left, top, right: left + w, bottom: top + v, width: w, height: v};
  };
  const meet = (a, b) => a.width && a.height && a.left < b.right - 1 && b.left < a.right - 1
    && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const parts = [...root.querySelectorAll('[data-testid="label-output-value"], .confidence-set, '
    + '.thumbnail-item, img, canvas, .icon-button, .empty .icon, [data-testid="upload-icon"], '
    + '.or')];
  return covers.flatMap(cover => parts
    .filter(e => !cover.contains(e) && meet(drawn(e), cover.getBoundingClientRect()))
    .map(e => cover.tagName + ' covers ' + e.outerHTML.slice(0, 120)));
}
"""
# Whatever is drawn at the centre of the area's visible part: the area itself or a part of it.
_ON_TOP = """
sel => {
  const root = document.querySelector(sel);
  const r = root.getBoundingClientRect();
  const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, window.innerHeight);
  const left = Math.max(r.left, 0), right = Math.min(r.right, window.innerWidth);
  if (bottom <= top || right <= left) return 'off screen';
  const hit = document.elementFromPoint((left + right) / 2, (top + bottom) / 2);
  return root.contains(hit) ? '' : (hit ? hit.outerHTML.slice(0, 160) : 'nothing');
}
"""
_AXE = """
tags => axe.run(document, {runOnly: {type: 'tag', values: tags}}).then(r =>
  r.violations.map(v => ({id: v.id, impact: v.impact,
                          nodes: v.nodes.map(n => n.target.join(' '))})))
"""


def _cache_dir() -> Path:
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return home / "biomed-dpt-tests" / f"axe-core-{AXE_VERSION}"


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core's browser build, installed once with npm into a cache folder."""
    folder = _cache_dir()
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: it brings axe-core, the accessibility checker")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(folder), f"axe-core@{AXE_VERSION}",
                           "--no-audit", "--no-fund", "--no-save", "--silent"],
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not script.exists():
        pytest.skip(f"npm could not install axe-core@{AXE_VERSION} (offline?), exit code "
                    f"{done.returncode}: {done.stderr.strip()[-300:]}")
    return script


def _show_every_result(page, folder: Path) -> None:
    """Sample scans in step 1, then a prediction, so the probability tables, the map and the
    nearest examples are filled."""
    use_sample_scans(page)
    predict_example_picture(page, folder)
    page.locator("#nearest .thumbnail-item").first.wait_for()


def _tabs_are_on_screen(page, width: int) -> None:
    assert not page.get_by_role("button", name="More tabs").is_visible()
    for name, _, _ in STEPS:
        tab = page.get_by_role("tab", name=name, exact=True)
        assert tab.is_visible(), name
        box = tab.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box)


def _masthead_is_compact(page, height: int) -> None:
    tabs = page.get_by_role("tablist").first.bounding_box()
    assert tabs["y"] + tabs["height"] <= height * LAPTOP_MASTHEAD_SHARE, tabs


def _promises_are_shown(page) -> None:
    """The disclaimer and the privacy promise stay in full view, whatever the size."""
    for selector in (".block.disclaimer", "#privacy"):
        area = page.locator(selector)
        assert area.is_visible() and area.bounding_box()["height"] > 10, selector


def _result_is_in_view(page, selector: str, width: int) -> None:
    area = page.locator(selector).first  # a group repeats its id on an inner element
    area.scroll_into_view_if_needed()
    assert area.is_visible(), selector
    box = area.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (selector, box)
    assert page.evaluate(_COVERED, selector) == [], selector
    assert page.evaluate(_ON_TOP, selector) == "", selector


def _axe_violations(page, script: Path) -> list[dict]:
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(script))
    return page.evaluate(_AXE, AXE_TAGS)


def _walk_steps(page, script: Path, width: int, height: int) -> Counter[str]:
    """Every step at this size: its tab, its results, its screenshot, its axe-core check."""
    page.set_viewport_size({"width": width, "height": height})
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(500)  # the tabs settle into rows after a resize
    _tabs_are_on_screen(page, width)
    _promises_are_shown(page)
    if width >= 1280:
        _masthead_is_compact(page, height)
    found: Counter[str] = Counter()
    for number, (name, short, results) in enumerate(STEPS, start=1):
        page.get_by_role("tab", name=name, exact=True).click()
        page.wait_for_timeout(300)
        for selector in results:
            _result_is_in_view(page, selector, width)
        page.evaluate("() => window.scrollTo(0, 0)")
        shot(page, f"a11y-{width}-{number}-{short}")
        violations = _axe_violations(page, script)
        found.update({v["id"]: len(v["nodes"]) for v in violations})
        blocking = [v for v in violations
                    if v["impact"] == "critical" or v["id"] == "color-contrast"]
        assert blocking == [], (width, name, blocking)
    return found


def test_every_step_reads_and_reaches_at_phone_laptop_and_desktop_sizes(axe_script, app_url,
                                                                        tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
        page.set_default_timeout(60_000)
        page.goto(app_url)
        _show_every_result(page, tmp_path)
        remaining = {f"{w}x{h}": _walk_steps(page, axe_script, w, h) for w, h in VIEWPORTS}
        browser.close()
    # what axe-core still reports (Gradio's own markup), kept beside the screenshots
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "a11y-axe.json").write_text(json.dumps(remaining, indent=1, sort_keys=True))
