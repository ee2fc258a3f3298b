"""Every interface text exists in English and Korean, and every key the layout uses is defined."""
from __future__ import annotations

import re
from pathlib import Path

from demo.text.strings import EN, KO


def test_english_and_korean_have_the_same_keys():
    assert set(EN) == set(KO)
    assert all(KO[k].strip() and KO[k] != EN[k] for k in KO if k != "title")


def test_layout_uses_only_defined_keys():
    layout = (Path(__file__).resolve().parents[3] / "demo" / "ui" / "layout.py").read_text()
    used = set(re.findall(r'\bt\("([a-z_0-9]+)"\)', layout))
    assert used and used <= set(EN)


def test_server_messages_exist_in_both_languages_with_the_same_slots():
    from string import Formatter

    from demo.text import messages

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
    from demo.text.messages import ENGLISH_WORD, core_text
    from demo.work.scans import frame_used
    from demo.work.task import parse_class_rows

    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan")
    raised = []
    import nibabel

    shipped = Path(nibabel.__file__).parent / "tests" / "data"
    for attempt in (lambda: load_scan(notes),
                    lambda: frame_used(load_scan(get_testdata_file("emri_small.dcm")), 50),
                    lambda: PromptConfig(template="a CT photo."),
                    lambda: load_scan(shipped / "row_major.dconn.nii"),
                    lambda: load_scan(shipped / "simple.trk"),
                    lambda: load_scan(shipped / "analyze.hdr")):
        with pytest.raises(StudioError) as caught:
            attempt()
        raised.append(caught.value)
    formats = {"dicom", "png", "jpeg", "tiff", "bmp", "nifti", "metaimage", "nrrd", "nii",
               "dcm", "mha", "zip", "photo", "analyze", "hdr", "img", "mgh", "mgz", "cifti",
               "gifti"}  # names of formats, and the user's template
    for error in raised:
        korean = core_text("ko", error)
        english = {w.lower() for w in ENGLISH_WORD.findall(korean)} - formats
        assert korean != str(error) and not english, korean
        assert core_text("en", error) == str(error)
    assert "슬라이스 50" in core_text("ko", raised[1])
    assert parse_class_rows([["a", ""]])[0] == ["a"]  # the rows parser itself is unchanged


def test_a_prompt_file_the_app_refuses_is_explained_in_korean(studio, backbones, tmp_path):
    """Loading bad prompt files through the page, from a Korean browser: the status line and
    the toast say why in Korean (file names, format names and model names stay as they are)."""
    import pytest
    import torch
    from safetensors.torch import save_file

    from core.prompts import CHECKPOINT_FORMAT, DualPrompt, PromptConfig
    from demo.text.messages import ENGLISH_WORD

    class Korean:
        headers = {"accept-language": "ko-KR,ko;q=0.9,en;q=0.8"}

    pickled = tmp_path / "weights.safetensors"
    pickled.write_bytes(b"\x80\x04 pickled things")
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    future = tmp_path / "future.safetensors"
    save_file({"ctx": torch.zeros(2, 4)}, str(future),
              metadata={"format": CHECKPOINT_FORMAT, "format_version": "9"})
    elsewhere = DualPrompt(backbones["tiny-clip"], ["cyst", "stone"],
                           PromptConfig(template="a CT photo of a {}.")).save(
        tmp_path / "clip.safetensors")
    expected = {pickled: "이 앱에서 저장한 프롬프트 파일이 아닙니다",
                foreign: "safetensors 파일이지만 이 앱에서 저장한 프롬프트 파일이 아닙니다",
                future: "프롬프트 파일 버전은 9입니다. 이 앱은 버전 1을(를) 읽습니다",
                elsewhere: "다른 모델(tiny-clip)에서 만들어졌고, 불러온 모델은 tiny-biomedclip"}
    kept = {"weights", "other", "future", "clip", "safetensors", "tiny", "biomedclip"}
    for path, korean in expected.items():
        with pytest.warns(UserWarning) as toast:
            status = studio.load_prompts(None, str(path), Korean())["prompts_status"]
        assert status == "⚠️ " + str(toast[-1].message) and korean in status, status
        assert {w.lower() for w in ENGLISH_WORD.findall(status)} <= kept, status


def test_core_errors_are_translated_by_their_key_not_their_wording():
    import re
    from pathlib import Path

    from core.errors import CheckpointError, ScanError, quoted
    from demo.text.messages import CORE_KO, core_text

    reworded = ScanError("Any English wording at all.", key="scan_no_frame", label="frame",
                         index=7, n=3, last=2)
    assert core_text("ko", reworded) == "프레임 7은(는) 없습니다: 이 영상은 3개입니다 (0부터 2까지)."
    assert core_text("en", reworded) == "Any English wording at all."
    nested = CheckpointError("outer", key="prompt_file_settings",
                             **quoted(ScanError("inner", key="scan_damaged")))
    assert core_text("ko", nested).endswith(CORE_KO["scan_damaged"])
    assert core_text("ko", ScanError("No key here.")) == "No key here."

    root = Path(__file__).resolve().parents[3]
    source = "\n".join(p.read_text() for folder in ("core", "demo")
                       for p in (root / folder).rglob("*.py"))
    raised = set(re.findall(r'key="(\w+)"', source))
    assert set(CORE_KO) <= raised, set(CORE_KO) - raised  # no translation of nothing
