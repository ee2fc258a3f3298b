"""Every interface text exists in English and Korean, and every key the layout uses is defined."""
from __future__ import annotations

import re
from pathlib import Path

from demo.strings import EN, KO


def test_english_and_korean_have_the_same_keys():
    assert set(EN) == set(KO)
    assert all(KO[k].strip() and KO[k] != EN[k] for k in KO if k != "title")


def test_layout_uses_only_defined_keys():
    layout = (Path(__file__).resolve().parents[2] / "demo" / "layout.py").read_text()
    used = set(re.findall(r'\bt\("([a-z_0-9]+)"\)', layout))
    assert used and used <= set(EN)
