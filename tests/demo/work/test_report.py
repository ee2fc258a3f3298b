"""The PNG report: what it shows is the prediction and the map on screen, and its facts say so."""
from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.overlay import CJK_FAMILIES, overlay
from demo.work.prediction import Prediction
from demo.work.report import (REPORT_SIZE, TUNED_COLOUR, ZERO_COLOUR, ReportContext, _fit, _font,
                              _wrap, report_facts, write_report)


def _prediction(tuned, zero):
    rng = np.random.default_rng(0)
    view = Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    return Prediction(view=view, picture=view, tuned=tuned, zero_shot=zero,
                      classnames=list(zero), digest="d" * 64)


def _context(classes, explained, alpha=0.45, cmap="jet", lang="en"):
    return ReportContext("tiny-biomedclip", True, "CT", None, classes, "a {} photo.", explained,
                         alpha, cmap, lang)


def _colour_run(row: np.ndarray, colour: str) -> int:
    rgb = np.array(Image.new("RGB", (1, 1), colour)).reshape(3)
    return int((np.abs(row.astype(int) - rgb).sum(axis=1) == 0).sum())


def test_the_report_shows_the_scan_the_map_on_screen_and_the_probabilities(tmp_path):
    p = _prediction({"cyst": 0.75, "stone": 0.25}, {"cyst": 0.4, "stone": 0.6})
    heat = np.linspace(0, 1, 224 * 224, dtype=np.float32).reshape(224, 224)
    path = write_report(tmp_path, p, heat, _context(["cyst", "stone"], "stone", 0.6, "cividis"))
    page = Image.open(path)
    assert page.size == REPORT_SIZE and path.name.startswith("biomed-dpt-report_ct_cyst_")
    facts = json.loads(page.text["biomed-dpt-report"])
    assert facts["explained"] == "stone" and facts["opacity"] == 0.6
    assert facts["colour_map"] == "cividis" and facts["scan"] == "d" * 12
    assert facts["tuned"] == {"cyst": 0.75, "stone": 0.25}
    pixels = np.asarray(page.convert("RGB"))
    # the two panels: the model's view, and the very overlay the page shows, enlarged
    scan = np.asarray(p.view.resize((300, 300), Image.BICUBIC))
    shown = np.asarray(overlay(p.view, heat, 0.6, "cividis").resize((300, 300), Image.BICUBIC))
    assert np.array_equal(pixels[200:500, 24:324], scan)
    assert np.array_equal(pixels[200:500, 364:664], shown)
    # bar lengths follow the probabilities: per class, tuned above zero-shot
    bars = pixels[:, 840:1180]
    tuned = [max(_colour_run(r, TUNED_COLOUR) for r in bars[y0:y1]) for y0, y1 in
             ((222, 355), (355, 490))]
    zero = [max(_colour_run(r, ZERO_COLOUR) for r in bars[y0:y1]) for y0, y1 in
            ((222, 355), (355, 490))]
    assert tuned[0] / tuned[1] == pytest.approx(3, rel=0.05)
    assert zero[1] / zero[0] == pytest.approx(1.5, rel=0.05)


def test_before_tuning_only_zero_shot_is_drawn(tmp_path):
    p = _prediction({}, {"cyst": 0.5, "stone": 0.5})
    page = np.asarray(Image.open(write_report(tmp_path, p, np.zeros((14, 14)),
                                              _context(["cyst", "stone"], "cyst"))).convert("RGB"))
    assert max(_colour_run(r, TUNED_COLOUR) for r in page[:, 700:]) == 0
    assert max(_colour_run(r, ZERO_COLOUR) for r in page[:, 840:]) > 50


def test_long_names_are_cut_and_korean_is_drawn_with_a_hangul_font(tmp_path):
    assert _fit("x" * 300, 12, 120).endswith("…") and _font(12).getlength(
        _fit("x" * 300, 12, 120)) <= 120
    assert _fit("short", 12, 120) == "short"
    names = ["정상 조직 " + "normal tissue " * 6, "b"] + [f"class {i}" for i in range(18)]
    p = _prediction({}, {n: 1 / len(names) for n in names})
    path = write_report(tmp_path, p, np.zeros((14, 14)), _context(names, names[0], lang="ko"))
    assert json.loads(Image.open(path).text["biomed-dpt-report"])["classes"] == names
    hangul = _font(14, cjk=True)
    assert hangul.getbbox("정")[2] > 0 and hangul.getmask("정").getbbox() is not None


def _glyph(font, value: str) -> np.ndarray:
    picture = Image.new("L", (48, 32))
    ImageDraw.Draw(picture).text((4, 4), value, font=font, fill=255)
    return np.asarray(picture)


def test_the_reports_korean_has_hangul_glyphs_with_only_the_pip_font(monkeypatch):
    """Two syllables drawn as two shapes (a font without Hangul draws both as the same box),
    with the installed fonts and on a machine whose only Hangul font is the one pip installs."""
    from matplotlib import font_manager

    fonts = [_font(14, cjk=True), _font(14, bold=True, cjk=True)]
    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        [e for e in font_manager.fontManager.ttflist
                         if e.name not in CJK_FAMILIES or e.name == "NanumGothic"])
    fonts += [_font.__wrapped__(14, cjk=True), _font.__wrapped__(14, bold=True, cjk=True)]
    assert [f.path.rsplit("/", 1)[-1] for f in fonts[2:]] == ["NanumGothic.ttf",
                                                              "NanumGothicBold.ttf"]
    for font in fonts:
        ga, na = _glyph(font, "가"), _glyph(font, "나")
        assert (ga > 128).sum() > 20 and np.abs(ga.astype(int) - na).max() > 128
        assert font.getmask("가").getbbox() != font.getmask("\ue000").getbbox()


@pytest.mark.parametrize("window, en, ko", [
    ("auto", "Window: file's own / automatic;", "창: 파일 자체 창 / 자동;"),
    ("lung", "Window: CT lung;", "창: CT 폐;"),
    ("level 40, width 400", "Window: level 40, width 400;", "창: 중심값 40, 폭 400;")])
def test_the_reports_window_is_named_in_the_users_language(window, en, ko):
    p = _prediction({}, {"cyst": 0.5, "stone": 0.5})
    p.window = window
    when = datetime(2026, 1, 2, 3, 4)
    lines = [report_facts(p, _context(["cyst", "stone"], "cyst", lang=lang), when)["view_line"]
             for lang in ("en", "ko")]
    assert lines[0].startswith(en) and lines[1].startswith(ko)
    assert report_facts(p, _context(["cyst", "stone"], "cyst"), when)["window"] == window


def _red_pixels(page: Image.Image, rows: slice) -> int:
    """Pixels of the warning colour, or of its anti-aliased edges on white."""
    r, g, b = np.moveaxis(np.asarray(page.convert("RGB"))[rows].astype(int), -1, 0)
    return int(((r - g > 60) & (np.abs(g - b) < 12)).sum())


def test_the_report_is_named_after_the_predicted_class_not_the_one_explained(tmp_path):
    """Issue 20, item 6: the file was named after the map's class."""
    p = _prediction({"cyst": 0.75, "stone": 0.25}, {"cyst": 0.4, "stone": 0.6})
    path = write_report(tmp_path, p, np.zeros((14, 14)), _context(["cyst", "stone"], "stone"),
                        datetime(2026, 1, 2, 3, 4, 5))
    assert path.name == "biomed-dpt-report_ct_cyst_2026-01-02_030405.png"
    facts = json.loads(Image.open(path).text["biomed-dpt-report"])
    assert facts["top"] == "cyst" and facts["explained"] == "stone"
    zero_only = _prediction({}, {"cyst": 0.4, "stone": 0.6})  # no tuned prompts: zero-shot's
    assert "_ct_stone_" in write_report(tmp_path, zero_only, np.zeros((14, 14)),
                                        _context(["cyst", "stone"], "cyst")).name


@pytest.mark.parametrize("lang, words", [("en", "in colour, but CT images are greyscale"),
                                         ("ko", "이 영상은 컬러이지만 CT 영상은 흑백입니다")])
def test_the_report_carries_the_modality_mismatch_note(tmp_path, lang, words):
    """Issue 20, item 6: the page said a colour photo does not fit a CT task; its report
    did not."""
    ctx = _context(["cyst", "stone"], "cyst", lang=lang)
    p = _prediction({}, {"cyst": 0.5, "stone": 0.5})
    plain = write_report(tmp_path, p, np.zeros((14, 14)), ctx, datetime(2026, 1, 2, 3, 4, 5))
    p.colour_mismatch = "colour_in_grey"
    noted = write_report(tmp_path, p, np.zeros((14, 14)), ctx, datetime(2026, 1, 2, 3, 4, 6))
    facts = json.loads(Image.open(noted).text["biomed-dpt-report"])
    assert words in facts["note"]
    assert json.loads(Image.open(plain).text["biomed-dpt-report"])["note"] is None
    # drawn in red between the header and the panels (the demo model's warning sits above)
    below_header = slice(8 + 20 * 6, 170)
    assert _red_pixels(Image.open(noted), below_header) > 100
    assert _red_pixels(Image.open(plain), below_header) == 0


def test_a_long_note_is_wrapped_and_cut_to_fit_above_the_panels():
    lines = _wrap("word " * 200, 13, 1176, 2)
    assert len(lines) == 2 and lines[1].endswith("…")
    assert all(_font(13).getlength(line) <= 1176 for line in lines)
    assert _wrap("a short note", 13, 1176, 2) == ["a short note"] and _wrap("", 13, 100, 2) == []


@pytest.mark.parametrize("lang, words", [("en", "frame / slice 3 of 0–9"),
                                         ("ko", "프레임/슬라이스 3 (0–9)")])
def test_the_reports_slice_is_numbered_as_on_the_page(lang, words):
    """Issue 20, item 6: the report said "slice 3 of 10" where the page's slider says 3 of
    0–9."""
    p = _prediction({}, {"cyst": 0.5, "stone": 0.5})
    p.frame, p.n_frames = 3, 10
    facts = report_facts(p, _context(["cyst", "stone"], "cyst", lang=lang), datetime(2026, 1, 2))
    assert facts["view_line"].endswith(words) and facts["frame"] == 3


def test_a_volume_predicted_slice_by_slice_carries_its_plot_and_its_numbers(tmp_path):
    """The report of a volume adds the plot along its slices (lines drawn in each class's
    colour), and its facts carry each slice's probabilities; the panels above are unchanged.
    A 4-D file's volume is named."""
    from demo.work.prediction import VolumePrediction
    from demo.work.report import PLOT_COLOURS

    p = _prediction({"cyst": 0.9, "stone": 0.1}, {"cyst": 0.5, "stone": 0.5})
    p.frame, p.n_frames, p.volume, p.volumes = 6, 10, 2, 5
    rising = [k / 9 for k in range(10)]
    volume = VolumePrediction(list(range(10)), [{"cyst": r, "stone": 1 - r} for r in rising],
                              "tuned", "slice", 10, 9, 1, 2)
    heat = np.zeros((224, 224), np.float32)
    (tmp_path / "one").mkdir()
    plain = Image.open(write_report(tmp_path / "one", p, heat, _context(["cyst", "stone"],
                                                                        "cyst")))
    page = Image.open(write_report(tmp_path, p, heat, _context(["cyst", "stone"], "cyst"),
                                   volume=volume))
    assert page.width == REPORT_SIZE[0] and page.height > REPORT_SIZE[1] + 250
    top, below = np.asarray(page.convert("RGB")), np.asarray(plain.convert("RGB"))
    assert np.array_equal(top[200:500], below[200:500])  # the scan, the map, the bars
    plot = top[REPORT_SIZE[1] - 16:page.height - 30]
    for colour in PLOT_COLOURS[:2]:  # a line per class
        assert max(_colour_run(row, colour) for row in plot) > 0
        assert sum(_colour_run(row, colour) for row in plot) > 300
    facts = json.loads(page.text["biomed-dpt-report"])
    assert facts["best_slice"] == 9 and facts["slice_classifier"] == "tuned"
    assert [r["slice"] for r in facts["slices"]] == list(range(10))
    assert facts["slices"][3]["probabilities"]["cyst"] == pytest.approx(3 / 9, abs=1e-6)
    assert (facts["volume"], facts["volumes"]) == (2, 5)
    assert "slice 6 of 0–9, volume 2 of 0–4" in report_facts(
        p, _context(["cyst", "stone"], "cyst"), datetime(2026, 1, 2))["view_line"]
