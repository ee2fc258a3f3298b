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


def test_server_messages_exist_in_both_languages_with_the_same_slots():
    from string import Formatter

    from demo import messages

    assert set(messages.EN) == set(messages.KO)

    def slots(template):
        return {name for _, name, _, _ in Formatter().parse(template) if name}

    for key in messages.EN:
        assert slots(messages.EN[key]) == slots(messages.KO[key]), key


def test_the_cores_common_messages_are_said_in_korean(tmp_path):
    """Real messages raised by the core, as the Korean interface shows them."""
    import pytest
    from pydicom.data import get_testdata_file

    from core.errors import StudioError
    from core.imaging import load_scan
    from core.prompt_config import PromptConfig
    from demo.messages import ENGLISH_WORD, core_text
    from demo.scans import frame_used
    from demo.task import parse_class_rows

    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan")
    raised = []
    for attempt in (lambda: load_scan(notes),
                    lambda: frame_used(load_scan(get_testdata_file("emri_small.dcm")), 50),
                    lambda: PromptConfig(template="a CT photo.")):
        with pytest.raises(StudioError) as caught:
            attempt()
        raised.append(str(caught.value))
    formats = {"dicom", "png", "jpeg", "tiff", "bmp", "nifti", "metaimage", "nrrd", "nii",
               "dcm", "mha", "zip", "photo"}  # names of formats, and the user's template
    for message in raised:
        korean = core_text("ko", message)
        english = {w.lower() for w in ENGLISH_WORD.findall(korean)} - formats
        assert korean != message and not english, korean
        assert core_text("en", message) == message
    assert "슬라이스 50" in core_text("ko", raised[1])
    assert parse_class_rows([["a", ""]])[0] == ["a"]  # the rows parser itself is unchanged
