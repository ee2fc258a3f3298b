"""`python -m core.doctor`: the real-weights sanity check (runs only where BiomedCLIP is cached)
and the doctor's plumbing on the offline tiny backbone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import doctor
from core.doctor import (DEFAULT_EXAMPLES, MODALITY_PHRASES, CheckResult, biomedclip_cache_status,
                         canonical_modality, modality_check, read_examples, run_doctor,
                         tune_check)
from core.errors import BackboneUnavailable

MODALITIES = ["X-ray", "CT", "MRI", "ultrasound", "fundus", "histopathology"]


def make_examples(folder: Path, modalities=MODALITIES, extra: list | None = None) -> Path:
    """A manifest.json in the shape of assets/examples, with synthetic PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i, modality in enumerate(modalities):
        pixels = np.clip(rng.uniform(30, 225, 3) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
        entries.append({"file": f"{i}.png", "modality": modality, "organ": "any",
                        "source": "synthetic", "licence": "CC0-1.0"})
    (folder / "manifest.json").write_text(json.dumps(entries + (extra or [])))
    return folder


def _real_weights_skip_reason() -> str | None:
    cached, why = biomedclip_cache_status()
    if not cached:
        return f"BiomedCLIP weights are not cached here ({why}); run `python -m core.doctor` " \
               "on a machine that has them"
    if not (DEFAULT_EXAMPLES / "manifest.json").is_file():
        return f"no example scans: {DEFAULT_EXAMPLES / 'manifest.json'} is missing"
    return None


@pytest.mark.skipif(_real_weights_skip_reason() is not None,
                    reason=_real_weights_skip_reason() or "")
def test_real_biomedclip_recognises_modalities_and_tunes():
    """The host's real model, its tokenizer and our code agree: modality recognition clearly
    beats chance, the prompt path equals the plain sentences, and a tuning round runs."""
    report = run_doctor("biomedclip", device=None, examples=DEFAULT_EXAMPLES)
    print(report.format())
    assert report.backbone["status"] == "loaded"
    checks = {c.name: c for c in report.checks}
    recognition = checks["zero-shot modality recognition"]
    assert recognition.status == "passed", recognition.detail
    assert recognition.figures["accuracy"] >= 2 * recognition.figures["chance"]
    assert checks["tune then predict"].status == "passed", checks["tune then predict"].detail


# ---- plumbing, offline --------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("X-ray", "X-ray"), ("chest x-ray", "X-ray"), ("CT", "CT"), ("MR", "MRI"), ("MRI", "MRI"),
    ("Ultrasound", "ultrasound"), ("fundus photograph", "fundus"), ("histology", "histopathology"),
    ("PET", None),
])
def test_manifest_modalities_are_recognised(name, expected):
    assert canonical_modality(name) == expected


def test_examples_are_read_and_odd_entries_noted(tmp_path):
    folder = make_examples(tmp_path, extra=[
        {"file": "pet.png", "modality": "PET"}, {"file": "gone.png", "modality": "CT"},
        {"modality": "CT"}])
    examples, notes = read_examples(folder)
    assert [e.modality for e in examples] == MODALITIES
    assert len(notes) == 3 and any("gone.png: file missing" in n for n in notes)
    with pytest.raises(FileNotFoundError):
        read_examples(tmp_path / "nowhere")


def test_modality_check_returns_a_result_on_a_tiny_backbone(backbones, tmp_path):
    examples, _ = read_examples(make_examples(tmp_path))
    result = modality_check(backbones["tiny-biomedclip"], examples)
    assert isinstance(result, CheckResult) and result.status in ("passed", "failed")
    figures = result.figures
    assert figures["chance"] == pytest.approx(1 / 6) and figures["images"] == 6
    assert figures["needed"] == pytest.approx(0.5)
    assert [p["modality"] for p in figures["per_image"]] == MODALITIES
    assert all(p["predicted"] in MODALITY_PHRASES for p in figures["per_image"])
    # our prompt assembly equals the tokenised sentence at initialisation, on any weights
    assert figures["prompt_path_gap"] < 1e-4


def test_tune_check_runs_a_short_round(backbones, tmp_path):
    examples, _ = read_examples(make_examples(tmp_path, MODALITIES[:3]))
    result = tune_check(backbones["tiny-biomedclip"], examples, steps=2)
    assert result.status == "passed", result.detail
    assert result.figures["steps"] == 2 and 0.0 <= result.figures["train_accuracy"] <= 1.0


def test_one_modality_cannot_be_checked(backbones, tmp_path):
    examples, _ = read_examples(make_examples(tmp_path, ["CT"]))
    assert modality_check(backbones["tiny-biomedclip"], examples).status == "skipped"


def test_report_lists_versions_device_backbone_and_checks(backbones, tmp_path):
    report = run_doctor("tiny-biomedclip", "cpu", make_examples(tmp_path, MODALITIES[:2]),
                        tune_steps=1, loaded=backbones["tiny-biomedclip"])
    text = report.format()
    for needle in ("versions:", "  torch: ", "  open_clip_torch: ", "  transformers: ",
                   "  timm: ", "  gradio: ", "  pydicom: ", "  SimpleITK: ", "device:",
                   "bf16_native:", "fingerprint:", "zero-shot modality recognition",
                   "tune then predict", "0.png: X-ray -> "):
        assert needle in text
    assert [c.name for c in report.checks] == ["context length", "teacher sentences",
                                               "zero-shot modality recognition",
                                               "tune then predict"]
    assert "COVID-QU-Ex: 'a chest X-ray photo of a' -> 8 word pieces" in text
    assert "paper N_CTX 6   <- differs" in text
    assert report.exit_code == (1 if any(c.failed for c in report.checks) else 0)


def test_without_weights_the_checks_are_skipped_and_the_exit_code_is_zero(monkeypatch, capsys):
    def unavailable(spec, device=None):
        raise BackboneUnavailable("microsoft/BiomedCLIP is not in the local cache.")

    monkeypatch.setattr(doctor, "load_backbone", unavailable)
    assert doctor.main(["--backbone", "biomedclip"]) == 0
    out = capsys.readouterr().out
    assert "status: not available" in out and "[SKIPPED] real-weights checks" in out
    assert "not in the local cache" in out and "cache: " in out


def test_a_failed_check_gives_exit_code_one(monkeypatch, capsys, backbones, tmp_path):
    monkeypatch.setattr(doctor, "load_backbone", lambda spec, device=None: backbones[spec])
    monkeypatch.setattr(doctor, "modality_check",
                        lambda bb, ex: CheckResult("zero-shot modality recognition", "failed",
                                                   "17% of 6 images"))
    monkeypatch.setattr(doctor, "tune_check", lambda bb, ex, steps: CheckResult(
        "tune then predict", "passed", "ok"))
    code = doctor.main(["--backbone", "tiny-biomedclip", "--examples", str(make_examples(tmp_path))])
    out = capsys.readouterr().out
    assert code == 1 and "[FAILED] zero-shot modality recognition" in out
    assert "result: a check FAILED" in out


def test_missing_manifest_skips_the_example_checks(backbones, tmp_path):
    report = run_doctor("tiny-biomedclip", "cpu", tmp_path / "none",
                        loaded=backbones["tiny-biomedclip"])
    assert [c.status for c in report.checks] == ["passed", "passed", "skipped"]
    assert report.exit_code == 0 and "no manifest.json" in report.checks[-1].detail


def test_the_context_words_are_counted_under_the_models_tokenizer(backbones):
    """Described mode uses the word pieces, released mode the configs' N_CTX: where they
    differ is said (the offline vocabulary splits "X-ray" as BERT does: x - ray)."""
    result = doctor.context_check(backbones["tiny-biomedclip"])
    rows = {r["task"]: r for r in result.figures["tasks"]}
    assert len(rows) == 11 and rows["BTMRI"]["word_pieces"] == rows["BTMRI"]["paper_n_ctx"] == 5
    assert rows["COVID-QU-Ex"]["pieces"] == ["a", "chest", "x", "-", "ray", "photo", "of", "a"]
    assert (rows["KneeXray"]["word_pieces"], rows["KneeXray"]["paper_n_ctx"]) == (8, 6)
    assert "COVID-QU-Ex, KneeXray" in result.detail


def test_classes_whose_teacher_falls_back_are_warned_about(tmp_path, caplog):
    from tests.core.test_reproduce import make_public_dataset

    make_public_dataset(tmp_path / "data")
    teacher = tmp_path / "sentences.json"
    teacher.write_text(json.dumps({"glioma": ["a mass"], "normal brain": ["no mass"]}))
    assert doctor.teacher_check().figures["fallback"] == []  # every ready class has sentences
    with caplog.at_level("WARNING"):
        result = doctor.teacher_check(teacher, tmp_path / "data")
    assert result.figures["fallback"] == ["BTMRI: meningioma", "BTMRI: pituitary tumor"]
    assert "2 classes fall back" in result.detail
    assert sum("falls back" in r.getMessage() for r in caplog.records) == 2
