"""The font figures draw Korean with: Hangul glyphs, not missing-glyph boxes, on a machine with
only what pip installs."""
from __future__ import annotations

import logging
import sys
import warnings

import matplotlib
import numpy as np
import pytest
from matplotlib import font_manager

from core import overlay
from core.overlay import bundled_font_files, figure_fonts, hangul_family, hangul_font_file

KOREAN = "정상 뇌 조직"


def _drawn(value: str) -> tuple[np.ndarray, list[str]]:
    """`value` drawn by matplotlib with the current fonts: its pixels (grey) and the warnings
    about glyphs the fonts lack."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 0.6), dpi=100)
    canvas = FigureCanvasAgg(fig)
    fig.text(0.05, 0.3, value, fontsize=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        canvas.draw()
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    return np.asarray(canvas.buffer_rgba())[..., :3].mean(axis=-1), missing


@pytest.fixture
def without_system_hangul(monkeypatch):
    """A machine without fonts-noto-cjk (or any other Hangul font but the one pip installs)."""
    hidden = [e for e in font_manager.fontManager.ttflist
              if e.name not in overlay.CJK_FAMILIES or e.name == "NanumGothic"]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", hidden)
    with matplotlib.rc_context():
        yield


def test_the_pip_font_is_found_without_importing_its_package():
    files = bundled_font_files()
    assert [f.name for f in files] == ["NanumGothic.ttf", "NanumGothicBold.ttf"]
    assert all(f.stat().st_size > 1_000_000 for f in files)
    assert "koreanize_matplotlib" not in sys.modules  # its import would restyle every figure


def test_figures_draw_hangul_glyphs_not_boxes():
    with matplotlib.rc_context():
        families = figure_fonts()
        assert families[0] == "DejaVu Sans" and families[1] in overlay.CJK_FAMILIES
        pixels, missing = _drawn(KOREAN)
        assert missing == [] and pixels.min() < 100  # drawn, and nothing lacked a glyph
        ga, na = _drawn("가")[0], _drawn("나")[0]
        assert np.abs(ga - na).max() > 100  # two syllables, two different shapes
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        assert len(_drawn(KOREAN)[1]) == 5  # the check above sees boxes where they are drawn


def test_without_system_fonts_the_pip_font_draws_korean(without_system_hangul):
    assert hangul_family() == "NanumGothic"
    assert figure_fonts() == ["DejaVu Sans", "NanumGothic"]
    assert _drawn(KOREAN)[1] == []
    regular, bold = hangul_font_file(), hangul_font_file(bold=True)
    assert (regular[0].endswith("NanumGothic.ttf") and bold[0].endswith("NanumGothicBold.ttf")
            and regular[1] == bold[1] == 0)


def test_without_any_hangul_font_figures_say_so(without_system_hangul, monkeypatch, caplog):
    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        [e for e in font_manager.fontManager.ttflist if e.name != "NanumGothic"])
    monkeypatch.setattr(overlay, "bundled_font_files", lambda: [])
    with caplog.at_level(logging.WARNING, logger="core.overlay"):
        assert figure_fonts() == ["DejaVu Sans"] and hangul_font_file() is None
    assert "koreanize-matplotlib" in caplog.text
