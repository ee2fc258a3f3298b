"""Modality and task presets: templates, the paper's settings, DualPrompt on both tiny backbones,
the example images, and clear errors for broken preset files."""
from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from core import presets
from core.errors import PromptError
from core.prompts import DualPrompt, PromptConfig

MODALITY_IDS = ["X-ray", "CT", "MRI", "ultrasound", "dermoscopy", "fundus", "OCT",
                "histopathology", "endoscopy", "other"]

# METHOD.md's table (few-shot column) with the paper's full template for each data set:
# template, ctx init, n_ctx, lambda1, lambda2, number of classes.
PAPER = {
    "BTMRI": ("a MR photo of a {} in the brain.", "a MR photo of a", 5, 12.5, 0.25, 4),
    "BUSI": ("a ultrasound photo of a {} in the breast.", "a ultrasound photo of a", 5, 18.75, 1.0, 3),
    "CHMNIST": ("a histopathological photo of a {}.", "a histopathological photo of a", 5, 12.5, 0.5, 8),
    "COVID-QU-Ex": ("a chest X-ray photo of a {} affected by COVID-19 in the lung.",
                    "a chest X-ray photo of a", 6, 65, 2.5, 4),
    "CTKidney": ("a CT photo of a {} in the kidney.", "a CT photo of a", 5, 18.75, 0.25, 4),
    "DermaMNIST": ("a dermatoscopy photo of a {} in the skin.", "a dermatoscopy photo of a", 5, 25, 20, 7),
    "KneeXray": ("a frontal X-ray photo of a {} in the knee joint.", "a frontal X-ray photo of a",
                 6, 25, 10, 5),
    "Kvasir": ("a endoscopic photo of a {} in the colon.", "a endoscopic photo of a", 5, 25, 0.75, 8),
    "LC25000": ("a histopathological photo of a {}.", "a histopathological photo of a", 5, 12.5, 0.25, 5),
    "OCTMNIST": ("a OCT photo of a {}.", "a OCT photo of a", 5, 12.5, 0.25, 4),
    "RETINA": ("a photo of a {} presented in image.", "a photo of a", 4, 10.5, 0.25, 4),
}
EXAMPLE_MODALITIES = {"X-ray", "CT", "MRI", "ultrasound", "fundus", "histopathology"}
TASKS = presets.load_tasks()
EXAMPLES_DIR = presets.ASSETS_DIR / "examples"


# ---- modalities -------------------------------------------------------------------------------
def test_the_app_offers_exactly_these_modalities():
    mods = presets.load_modalities()
    assert [m.id for m in mods] == MODALITY_IDS
    assert [m.name for m in mods] == MODALITY_IDS
    assert all(m.description and m.organs for m in mods)


@pytest.mark.parametrize("modality_id", MODALITY_IDS)
def test_every_modality_and_organ_gives_a_valid_prompt_config(modality_id):
    mod = presets.modality(modality_id)
    for organ in [None, "", *mod.organs]:
        template = presets.template_for(modality_id, organ)
        assert template.count("{}") == 1 and "{organ}" not in template
        assert template.startswith("a ") and template.endswith(".")
        cfg = presets.prompt_config_for(modality_id, organ)
        assert isinstance(cfg, PromptConfig) and cfg.template == template
        assert cfg.ctx_init == cfg.template_prefix and cfg.n_ctx is None
        if organ and mod.has_organ_slot:
            assert organ in template


def test_templates_use_the_papers_wording():
    assert presets.template_for("MRI", "brain") == "a MR photo of a {} in the brain."
    assert presets.template_for("CT", "kidney") == "a CT photo of a {} in the kidney."
    assert presets.template_for("X-ray", "chest") == "a chest X-ray photo of a {}."
    assert presets.template_for("ultrasound", "breast") == "a ultrasound photo of a {} in the breast."
    assert presets.template_for("dermoscopy", "skin") == "a dermatoscopy photo of a {} in the skin."
    assert presets.template_for("endoscopy", "colon") == "a endoscopic photo of a {} in the colon."
    # The paper's fundus, OCT and histology sentences have no organ part.
    assert presets.template_for("fundus", "retina") == "a photo of a {}."
    assert presets.template_for("OCT", "retina") == "a OCT photo of a {}."
    assert presets.template_for("histopathology", "lung") == "a histopathological photo of a {}."
    assert presets.template_for("MRI", "  left   knee ") == "a MR photo of a {} in the left knee."


def test_default_lambdas_are_the_closest_data_sets_few_shot_values():
    expected = {"X-ray": (65, 2.5), "CT": (18.75, 0.25), "MRI": (12.5, 0.25),
                "ultrasound": (18.75, 1.0), "dermoscopy": (25, 20), "fundus": (10.5, 0.25),
                "OCT": (12.5, 0.25), "histopathology": (12.5, 0.5), "endoscopy": (25, 0.75),
                "other": (12.5, 0.25)}
    for modality_id, (l1, kl) in expected.items():
        cfg = presets.prompt_config_for(modality_id)
        assert (cfg.lambda_l1, cfg.lambda_kl) == (l1, kl), modality_id
    knee = presets.prompt_config_for("X-ray", "Knee")
    assert (knee.lambda_l1, knee.lambda_kl) == (25, 10)
    lung = presets.prompt_config_for("histopathology", "lung")
    assert (lung.lambda_l1, lung.lambda_kl) == (12.5, 0.25)


def test_bad_modality_or_organ_is_refused_with_a_clear_message():
    with pytest.raises(PromptError, match="Unknown modality 'PET'.*X-ray, CT, MRI"):
        presets.template_for("PET", "brain")
    with pytest.raises(PromptError, match="braces"):
        presets.template_for("MRI", "brain {}")
    with pytest.raises(PromptError, match="characters"):
        presets.template_for("CT", "kidney " * 20)


# ---- tasks ------------------------------------------------------------------------------------
def test_there_is_one_task_per_paper_data_set():
    assert len(TASKS) >= 10
    assert sorted(t.shaped_like for t in TASKS) == sorted(PAPER)
    assert len({t.id for t in TASKS}) == len(TASKS)
    assert presets.task("brain-tumour-mri").shaped_like == "BTMRI"
    with pytest.raises(PromptError, match="Unknown task 'nope'"):
        presets.task("nope")


@pytest.mark.parametrize("preset", TASKS, ids=lambda t: t.id)
def test_task_settings_equal_the_papers_table(preset):
    template, ctx_init, n_ctx, l1, kl, n_classes = PAPER[preset.shaped_like]
    assert (preset.template, preset.ctx_init, preset.paper_n_ctx) == (template, ctx_init, n_ctx)
    assert (preset.lambda_l1, preset.lambda_kl) == (l1, kl)
    assert len(preset.classes) == n_classes
    # The paper's n_ctx counts space-separated words (CoOp's convention), not word pieces.
    assert preset.paper_n_ctx == len(preset.ctx_init.split())
    cfg = preset.prompt_config()
    assert (cfg.template, cfg.ctx_init, cfg.n_ctx) == (template, ctx_init, None)
    assert (cfg.lambda_l1, cfg.lambda_kl, cfg.n_vision_prompts) == (l1, kl, 4)
    assert preset.prompt_config(n_vision_prompts=0).n_vision_prompts == 0
    assert preset.shaped_like in preset.credit


@pytest.mark.parametrize("preset", TASKS, ids=lambda t: t.id)
def test_task_classes_and_descriptions_are_well_formed(preset):
    assert preset.modality in MODALITY_IDS
    assert preset.title and preset.description and preset.organ
    assert len(preset.classes) >= 2
    assert len({c.casefold() for c in preset.classes}) == len(preset.classes)
    assert all(c == c.lower() and c == c.strip() for c in preset.classes)
    assert set(preset.descriptions) == set(preset.classes)
    for name, sentences in preset.descriptions.items():
        assert 5 <= len(sentences) <= 10, name
        assert len(set(sentences)) == len(sentences), name
        for sentence in sentences:
            assert sentence[0].isupper() and sentence.endswith("."), sentence
            assert sentence.count(". ") == 0 and len(sentence.split()) <= 25, sentence


@pytest.mark.parametrize("preset", TASKS, ids=lambda t: t.id)
def test_every_task_builds_a_dual_prompt_on_both_tiny_backbones(preset, backbones):
    for family, bb in backbones.items():
        dp = DualPrompt(bb, preset.classes, preset.prompt_config(), preset.descriptions).eval()
        assert dp.prompts() == [preset.template.format(c) for c in preset.classes]
        context_pieces = len(bb.text_ids([preset.ctx_init])[0]) - 2
        assert dp.n_ctx == context_pieces, family
        with torch.no_grad():
            teacher, text = dp.teacher_features(), dp.text_features()
        assert teacher.shape == text.shape == (len(preset.classes), bb.embed_dim)
        assert torch.isfinite(teacher).all() and torch.isfinite(text).all()
    # The tiny BERT vocabulary keeps these context words whole, so there the word-piece count
    # equals the paper's word count; "X-ray" splits into three pieces (as in PubMedBERT).
    tiny = backbones["tiny-biomedclip"]
    pieces = len(tiny.text_ids([preset.ctx_init])[0]) - 2
    hyphens = preset.ctx_init.count("-")
    assert pieces == preset.paper_n_ctx + 2 * hyphens


# ---- example images ---------------------------------------------------------------------------
def _png_chunk_types(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path.name
    types, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        types.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return types


def test_example_manifest_lists_small_clean_images_covering_the_main_modalities():
    manifest = json.loads((EXAMPLES_DIR / "manifest.json").read_text())
    files = [entry["file"] for entry in manifest]
    assert len(set(files)) == len(files)
    assert set(files) == {p.name for p in EXAMPLES_DIR.glob("*.png")}
    assert EXAMPLE_MODALITIES <= {entry["modality"] for entry in manifest}
    for entry in manifest:
        assert entry["modality"] in MODALITY_IDS
        assert all(entry[key].strip() for key in ("organ", "source", "licence", "notes"))
        path = EXAMPLES_DIR / entry["file"]
        assert path.stat().st_size < 150_000, entry["file"]
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and max(im.size) <= 512 and min(im.size) >= 64
            assert im.mode in ("L", "RGB")
            im.load()
        # Nothing but pixels: no text, EXIF or time chunks that could carry identifiers.
        assert set(_png_chunk_types(path)) <= {b"IHDR", b"PLTE", b"IDAT", b"IEND"}, entry["file"]
    assert (EXAMPLES_DIR / "SOURCES.md").is_file() and (EXAMPLES_DIR / "make_examples.py").is_file()


# ---- broken preset files ----------------------------------------------------------------------
@pytest.fixture
def assets_copy(tmp_path) -> Path:
    target = tmp_path / "assets"
    shutil.copytree(presets.ASSETS_DIR, target, ignore=shutil.ignore_patterns("examples"))
    return target


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_copy_of_the_assets_loads_like_the_original(assets_copy):
    assert presets.load_tasks(assets_copy) == TASKS
    assert presets.load_modalities(assets_copy) == presets.load_modalities()


TASK_BREAKAGES = {
    "missing field(s) classes": lambda d: d.pop("classes"),
    "must contain exactly one": lambda d: d.update(template="a MR photo of the brain."),
    "context words": lambda d: d.update(ctx_init="a CT photo of a"),
    "unknown modality 'PET'": lambda d: d.update(modality="PET"),
    "given twice": lambda d: d["classes"].append("Glioma"),
    "['glioma'] have no descriptions": lambda d: d["descriptions"].pop("glioma"),
    "not among the classes": lambda d: d["descriptions"].update(astrocytoma=["A mass."]),
    "'descriptions['glioma']' must be a list": lambda d: d["descriptions"].update(glioma="x"),
    "'lambda_kl' must be a number >= 0": lambda d: d.update(lambda_kl=-1),
    "'n_ctx' must be a whole number": lambda d: d.update(n_ctx="five"),
    "must match the file name": lambda d: d.update(id="other-name"),
    "at least two classes": lambda d: (d.update(classes=["glioma"]),
                                       d.update(descriptions={"glioma": ["A mass."]})),
}


@pytest.mark.parametrize("problem", TASK_BREAKAGES)
def test_a_broken_task_file_is_named_in_the_error(assets_copy, problem):
    path = assets_copy / "tasks" / "brain-tumour-mri.json"
    _edit(path, TASK_BREAKAGES[problem])
    with pytest.raises(PromptError, match=re.escape(problem)) as err:
        presets.load_tasks(assets_copy)
    assert "brain-tumour-mri.json" in str(err.value)


def test_malformed_json_is_named_with_its_line(assets_copy):
    path = assets_copy / "tasks" / "kidney-ct.json"
    path.write_text(path.read_text().replace('"classes":', '"classes"', 1))
    with pytest.raises(PromptError, match=r"kidney-ct\.json is not valid JSON \(line \d+"):
        presets.load_tasks(assets_copy)


MODALITY_BREAKAGES = {
    "must contain exactly one": lambda d: d["modalities"][2].update(
        template="a MR photo in the {organ}."),
    "'template_without_organ' is not usable": lambda d: d["modalities"][1].update(
        template_without_organ="a CT photo of a {} {}."),
    "'{organ}' may appear once": lambda d: d["modalities"][0].update(
        template_without_organ="a {organ} X-ray photo of a {}."),
    "missing field(s) lambda_kl": lambda d: d["modalities"][3].pop("lambda_kl"),
    "does not contain the modality phrase": lambda d: d["modalities"][4].update(phrase="dermoscopy"),
    "'MRI' is given twice": lambda d: d["modalities"][0].update(id="MRI"),
    "non-empty 'modalities' list": lambda d: d.update(modalities=[]),
}


@pytest.mark.parametrize("problem", MODALITY_BREAKAGES)
def test_a_broken_modalities_file_is_named_in_the_error(assets_copy, problem):
    _edit(assets_copy / "modalities.json", MODALITY_BREAKAGES[problem])
    with pytest.raises(PromptError, match=re.escape(problem)) as err:
        presets.load_modalities(assets_copy)
    assert "modalities.json" in str(err.value)


def test_missing_preset_files_are_reported(tmp_path):
    with pytest.raises(PromptError, match="modalities.json cannot be read"):
        presets.load_modalities(tmp_path)
    shutil.copy(presets.ASSETS_DIR / "modalities.json", tmp_path)
    with pytest.raises(PromptError, match="task presets folder"):
        presets.load_tasks(tmp_path)


def test_every_ready_task_and_modality_carries_its_korean_words():
    hangul = re.compile(r"[\uac00-\ud7a3]")
    for task in TASKS:
        assert hangul.search(task.title_ko) and hangul.search(task.description_ko), task.id
        assert task.title_ko != task.title
    for modality in presets.load_modalities():
        assert modality.name_ko, modality.id
    assert presets.modality("ultrasound").name_ko == "초음파"


def test_a_task_file_without_its_korean_title_is_refused_by_name(assets_copy):
    path = assets_copy / "tasks" / "kidney-ct.json"
    _edit(path, lambda data: data.pop("title_ko"))
    with pytest.raises(PromptError, match="title_ko"):
        presets.load_tasks(assets_copy)
