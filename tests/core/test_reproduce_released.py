"""`python -m core.reproduce --mode released`: each switch changes what it should and nothing
else, the authors' teacher file is read (never run), fallbacks are warned about, the tables put
the published figures beside the measured ones, BUSI is averaged with and without."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import pytest

from core.errors import DatasetError
from core.reproduce import (MethodOptions, Options, ReproduceError, SettingsOverride,
                            few_shot_indices, prompt_config, task_settings)
from core.reproduce.settings import METHODS, Switches
from core.reproduce.tables import build_tables, csv_rows, render_markdown
from core.reproduce.teachers import choose_sentences, read_teacher_file
from tests.core.test_reproduce import make_public_dataset, run_cli

# A small file shaped like the authors' trainers/prompt_templates.py: other dictionaries, both
# teacher dictionaries, and code that must never run (it would leave a file behind).
TEMPLATES_PY = '''\
import os
os.makedirs({marker!r}, exist_ok=True)
CUSTOM_TEMPLATES = {{"BTMRI": "a photo of a {{}}."}}
CUSTOM_BIOMEDDPT_TEMPLATES = {{"BTMRI": "a MR photo of a {{}} in the brain."}}
BIOMEDDPT_TEMPLATES = {{
    "glioma": [{glioma}],
    "meningioma": ["A mass attached to the dura."],
    "normal_brain": ["No mass is seen.", "Symmetric hemispheres."],
}}
BIOMEDCOOP_TEMPLATES = {{
    "glioma": ["A glioma, as BiomedCoOp describes it."],
}}
'''


def templates_file(folder: Path) -> tuple[Path, Path]:
    marker = folder / "the-file-was-run"
    glioma = ", ".join(f'"Glioma sentence {i}."' for i in range(60))
    path = folder / "prompt_templates.py"
    path.write_text(TEMPLATES_PY.format(marker=str(marker), glioma=glioma))
    return path, marker


def configs(switches: Switches, protocol: str = "few-shot") -> dict[str, dict]:
    settings = task_settings("BTMRI")
    return {m: asdict(prompt_config(m, settings, protocol, MethodOptions(), switches))
            for m in METHODS}


def changed(before: dict, after: dict) -> dict:
    return {m: {k: (before[m][k], v) for k, v in after[m].items() if before[m][k] != v}
            for m in after if before[m] != after[m]}


# ---- switches ---------------------------------------------------------------------------------
def test_released_mode_is_every_switch_and_each_switch_changes_only_its_part():
    described = configs(Switches())
    assert Switches.for_mode("released") == Switches(
        layout="middle", vision="overwrite", n_ctx="config", schedule="dassl",
        baselines="published", draws="dassl", teacher_limit=50)
    assert changed(described, configs(Switches(draws="dassl"))) == {}  # the images only
    assert Switches.for_mode("released", layout="end").mode == "mixed"
    assert changed(described, configs(Switches(layout="middle"))) == {
        "biomed-dpt": {"class_position": ("end", "middle")}}
    assert changed(described, configs(Switches(vision="overwrite"))) == {
        "biomed-dpt": {"vision_mode": ("insert", "overwrite")}}
    assert changed(described, configs(Switches(n_ctx="config"))) == {
        "biomed-dpt": {"n_ctx": (None, 5)}}
    assert changed(described, configs(Switches(schedule="dassl"))) == {}  # training only
    published = changed(described, configs(Switches(baselines="published")))
    assert "biomed-dpt" not in published
    photo = ("a MR photo of a {} in the brain.", "a photo of a {}.")
    own = {"template": photo, "ctx_init": ("a MR photo of a", "a photo of a")}
    assert published["zero-shot"] == published["tip-adapter"] == published["linear-probe"] == own
    assert published["coop"] == own
    assert published["kgcoop"]["lambda_kg"] == (8.0, 2.0)  # BTMRI's released weight
    assert {k: v[1] for k, v in published["biomedcoop"].items() if k != "template"} == {
        "ctx_init": "a photo of a", "lambda_mse": 0.5, "lambda_kl": 0.25,
        "kl_teacher": "batch"}
    b2n = configs(Switches(baselines="published"), "base-to-novel")
    assert b2n["kgcoop"]["lambda_kg"] == 8.0
    assert (b2n["biomedcoop"]["lambda_mse"], b2n["biomedcoop"]["prune_tau"]) == (0.5, 1.25)


def test_the_schedule_and_published_baselines_set_each_runs_training(tmp_path):
    def train(switches: Switches, method: str):
        return Options(root=tmp_path, out=tmp_path, switches=switches).train_config(2, method)

    described = train(Switches(), "coop")
    assert (described.recipe, described.batch_size, described.lr) == ("paper", 4, 0.0025)
    dassl = train(Switches(schedule="dassl"), "biomed-dpt")
    assert dassl.fresh_crops and dassl.warmup_recount and dassl.augment_views == 100
    assert dassl.view_names[1] == "rrc0.08-1#2000000"  # seed 2's own crops
    coop = train(Switches(baselines="published"), "coop")
    assert (coop.batch_size, coop.lr, coop.text_dropout, coop.fresh_crops) == (32, 0.002, False,
                                                                              False)
    kgcoop = train(Switches.for_mode("released"), "kgcoop")
    assert (kgcoop.batch_size, kgcoop.lr, kgcoop.fresh_crops) == (128, 0.002, True)
    assert train(Switches.for_mode("released"), "biomedcoop").batch_size == 4
    with pytest.raises(ReproduceError, match="--schedule described"):
        Options(root=tmp_path, out=tmp_path, recipe="fast", switches=Switches(schedule="dassl"))


def test_n_ctx_given_on_the_command_line_applies_with_context_words_too():
    settings = task_settings("BTMRI", override=SettingsOverride(n_ctx=3))
    cfg = prompt_config("biomed-dpt", settings, "few-shot", MethodOptions())
    assert (cfg.ctx_init, cfg.n_ctx) == ("a MR photo of a", 3)
    assert prompt_config("coop", settings, "few-shot", MethodOptions()).n_ctx == 3


def test_dassl_draws_are_the_images_its_sampler_picks():
    """Dassl's generate_fewshot_dataset, written out as it reads: the global `random` seeded
    with the run's seed, a dict of classes in first-appearance order, random.sample each."""
    import random
    from collections import defaultdict

    from core.reproduce.data import dassl_few_shot_indices

    labels = [2, 0, 1, 2, 2, 0, 1, 1, 0, 2, 0, 1, 1, 2, 0]  # class 2 appears first
    for seed, shots in ((1, 2), (2, 3), (3, 1), (1, 6)):
        random.seed(seed)
        tracker = defaultdict(list)
        for i, label in enumerate(labels):
            tracker[label].append(i)
        expected = []
        for items in tracker.values():
            expected += random.sample(items, shots) if len(items) >= shots else items
        assert dassl_few_shot_indices(labels, shots, seed) == sorted(expected)
    assert dassl_few_shot_indices(labels, 2, 1) != few_shot_indices(labels, 2, 1)


# ---- the teacher file ---------------------------------------------------------------------------
def test_the_authors_file_is_read_as_a_literal_and_never_run(tmp_path):
    path, marker = templates_file(tmp_path)
    dpt = read_teacher_file(path)
    assert set(dpt) == {"glioma", "meningioma", "normal_brain"} and len(dpt["glioma"]) == 60
    assert read_teacher_file(path, "BIOMEDCOOP_TEMPLATES") == {
        "glioma": ["A glioma, as BiomedCoOp describes it."]}
    assert not marker.exists()
    as_json = tmp_path / "sentences.json"
    as_json.write_text(json.dumps(dpt))
    assert read_teacher_file(as_json) == dpt


@pytest.mark.parametrize("text, message", [
    ("BIOMEDDPT_TEMPLATES = {'a': [open('/etc/passwd').read()]}", "not a plain literal"),
    ("BIOMEDDPT_TEMPLATES = {'a': ['one',", "can be parsed"),
    ("OTHER = {'a': ['one']}", "has no BIOMEDDPT_TEMPLATES"),
    ("BIOMEDDPT_TEMPLATES = {'a': 'one sentence, not a list'}", "list of sentences"),
])
def test_a_file_that_is_not_the_authors_is_refused_with_a_reason(tmp_path, text, message):
    path = tmp_path / "prompt_templates.py"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_teacher_file(path)


def test_the_first_50_per_class_and_a_loud_warning_for_each_fallback(tmp_path, caplog):
    path, _ = templates_file(tmp_path)
    classes = ["glioma", "meningioma", "pituitary tumor", "normal brain"]
    with caplog.at_level(logging.WARNING, logger="core.reproduce.teachers"):
        choice = choose_sentences(read_teacher_file(path), classes, 50, "prompt_templates.py",
                                  "BTMRI")
    assert len(choice.descriptions["glioma"]) == 50
    assert choice.descriptions["glioma"][-1] == "Glioma sentence 49."
    assert choice.descriptions["normal brain"] == ["No mass is seen.", "Symmetric hemispheres."]
    assert choice.fallback == ["pituitary tumor"]
    fallbacks = [r.getMessage() for r in caplog.records if "TEACHER FALLBACK" in r.getMessage()]
    assert len(fallbacks) == 1 and "'pituitary tumor'" in fallbacks[0]
    assert choice.record()["fallback"] == ["pituitary tumor"]


# ---- a released sweep ---------------------------------------------------------------------------
def test_a_released_sweep_runs_and_records_its_switches_and_teacher(backbones, tmp_path, caplog):
    root = tmp_path / "data"
    make_public_dataset(root)
    path, marker = templates_file(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code, text = run_cli(backbones, "--root", str(root), "--out", str(out), "--cache-dir",
                             str(tmp_path / "cache"), "--backbone", "tiny-biomedclip",
                             "--mode", "released", "--recipe", "paper", "--epochs", "2",
                             "--shots", "1", "--seeds", "1", "--methods",
                             "biomed-dpt,biomedcoop,zero-shot", "--teacher-file", str(path),
                             "--no-progress")
    assert code == 0 and not marker.exists()
    run = json.loads((out / "runs/BTMRI/few-shot/biomed-dpt/k1_seed1.json").read_text())
    cfg = run["config"]
    assert cfg["mode"] == "released" and cfg["switches"]["layout"] == "middle"
    assert (cfg["prompt"]["class_position"], cfg["prompt"]["vision_mode"],
            cfg["prompt"]["n_ctx"]) == ("middle", "overwrite", 5)
    assert cfg["train"]["recipe"] == "released" and run["history"]["steps"] == 2
    assert cfg["teacher"]["fallback"] == ["pituitary tumor"]
    assert cfg["teacher"]["sentences"]["glioma"] == 50
    coop = json.loads((out / "runs/BTMRI/few-shot/biomedcoop/k1_seed1.json").read_text())
    assert coop["config"]["teacher"]["source"].endswith("BIOMEDCOOP_TEMPLATES")
    assert coop["config"]["teacher"]["fallback"] == ["meningioma", "pituitary tumor",
                                                     "normal brain"]
    assert "Mode: released" in text
    assert any("TEACHER FALLBACK" in r.getMessage() and "'pituitary tumor'" in r.getMessage()
               for r in caplog.records)


# ---- tables -------------------------------------------------------------------------------------
def _b2n_run(dataset: str, method: str, base: float, novel: float) -> dict:
    return {"config": {"dataset": dataset, "method": method, "protocol": "base-to-novel",
                       "shots": 16, "seed": 1, "train": None, "precision": "fp32",
                       "mode": "released"},
            "metrics": {"base": base, "novel": novel}}


def test_base_to_novel_is_averaged_with_and_without_busi_beside_the_published():
    runs = [_b2n_run("BTMRI", "biomed-dpt", 0.80, 0.70), _b2n_run("BUSI", "biomed-dpt", 0.60, 1.0),
            _b2n_run("CTKidney", "biomed-dpt", 0.70, 0.60)]
    text = render_markdown(build_tables(runs))
    assert "| Average over 3 data sets | Biomed-DPT | 70.00 | 76.67 |" in text
    assert "| Average over 2 data sets, without BUSI | Biomed-DPT | 75.00 | 65.00 |" in text
    assert "| Average over 3 data sets | Biomed-DPT (published) | 78.06 | 75.97 |" in text
    assert "| Average over 2 data sets, without BUSI | Biomed-DPT (measured − published) | " \
           "-3.06 | -10.97 |" in text
    assert "100 % by construction" in text and "RUN.md" in text
    header, rows = csv_rows(build_tables(runs))
    without = {r[2]: r for r in rows if r[1] == "Average over 2 data sets, without BUSI"}
    assert without["Biomed-DPT (published)"][3:6] == [78.06, "", 75.97]
    assert without["Biomed-DPT (measured - published)"][3] == pytest.approx(-3.06)
    assert all(len(r) == len(header) for r in rows)


def test_few_shot_averages_carry_the_published_figures_and_the_difference():
    runs = [{"config": {"dataset": name, "method": "coop", "protocol": "few-shot", "shots": 1,
                        "seed": 1, "train": None, "precision": "fp32"},
             "metrics": {"accuracy": acc}} for name, acc in (("BTMRI", 0.5), ("BUSI", 0.6))]
    text = render_markdown(build_tables(runs))
    assert "| CoOp | 55.00 | 55.00 |" in text
    assert "| CoOp (published) | 50.18 | |" in text
    assert "| CoOp (measured − published) | +4.82 | |" in text
    assert "this average covers 2" in text


# ---- past one machine ---------------------------------------------------------------------------
def test_a_sweep_on_ray_writes_the_same_run_files_and_resumes_without_it(backbones, tmp_path):
    """Local Ray on this machine's CPUs: each worker loads the backbone and runs whole runs;
    the files equal a sweep's without Ray, and a later sweep without Ray finds them done."""
    pytest.importorskip("ray")
    root = tmp_path / "data"
    make_public_dataset(root)
    common = ["--root", str(root), "--backbone", "tiny-biomedclip", "--recipe", "fast",
              "--steps", "3", "--shots", "1", "--seeds", "1,2", "--methods",
              "biomed-dpt,coop", "--no-progress"]
    code, _ = run_cli(backbones, *common, "--out", str(tmp_path / "ray"), "--cache-dir",
                      str(tmp_path / "cache-ray"), "--ray", "local", "--ray-workers", "2")
    assert code == 0
    code, _ = run_cli(backbones, *common, "--out", str(tmp_path / "alone"), "--cache-dir",
                      str(tmp_path / "cache-alone"))
    assert code == 0
    files = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("k*.json"))
    assert len(files) == 4
    for name in files:
        on_ray = json.loads((tmp_path / "ray" / name).read_text())
        alone = json.loads((tmp_path / "alone" / name).read_text())
        assert on_ray["config"] == alone["config"] and on_ray["metrics"] == alone["metrics"]
        assert on_ray["history"]["last_loss"] == pytest.approx(alone["history"]["last_loss"],
                                                               abs=1e-5)
    code, text = run_cli(backbones, *common, "--out", str(tmp_path / "ray"), "--cache-dir",
                         str(tmp_path / "cache-ray"))
    assert code == 0 and "0 run(s) done, 4 skipped" in text
