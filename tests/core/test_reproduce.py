"""`python -m core.reproduce` on tiny synthetic data sets in the public layout: end to end, table
shapes, determinism, resuming, protocols, settings, ablation losses and layout errors."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import reproduce
from core.errors import DatasetError, TrainingError
from core.prompts import DualPrompt, PromptConfig
from core.reproduce import (PAPER_TASKS, Item, Options, ReproduceError, SettingsOverride,
                            base_novel_split, capped, few_shot_indices, load_dataset, run_sweep,
                            task_settings)

CLASSES = ["glioma", "meningioma", "pituitary tumor", "normal brain"]
FAST = ["--backbone", "tiny-biomedclip", "--recipe", "fast", "--steps", "3", "--no-progress"]


def make_public_dataset(root: Path, name: str = "BTMRI", classes=CLASSES, n_train: int = 3,
                        n_test: int = 2, seed: int = 0) -> Path:
    """ROOT/<name>/split_<name>.json and ROOT/<name>/<name>/<class>/<file>.png, as released;
    each class a different tint, so the tiny towers have something to separate."""
    rng = np.random.default_rng(seed)
    folder = root / name
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    tints = rng.uniform(30, 225, size=(len(classes), 3))
    for label, cls in enumerate(classes):
        sub = cls.replace(" ", "_")
        (folder / name / sub).mkdir(parents=True, exist_ok=True)
        for part, count in (("train", n_train), ("val", 1), ("test", n_test)):
            for i in range(count):
                pixels = np.clip(tints[label] + rng.normal(0, 25, (24, 24, 3)), 0, 255)
                relative = f"{sub}/{part}{i}.png"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / name / relative)
                split[part].append([relative, label, cls])
    (folder / f"split_{name}.json").write_text(json.dumps(split))
    return folder


def run_cli(backbones, *argv: str) -> tuple[int, str]:
    """main() in process, the tiny backbone shared with the other tests instead of rebuilt."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reproduce.sweep, "load_backbone", lambda spec, device=None: backbones[spec])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = reproduce.main(list(argv))
    return code, out.getvalue()


def read_run(out: Path, method: str, k: int, seed: int, protocol: str = "few-shot") -> dict:
    return json.loads((out / "runs" / "BTMRI" / protocol / method / f"k{k}_seed{seed}.json")
                      .read_text())


def stable(run: dict) -> dict:
    """A run without what may differ between identical runs (times, dates, versions)."""
    return {k: v for k, v in run.items() if k not in ("timing", "created", "versions")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_public_dataset(root)
    return root


@pytest.fixture(scope="module")
def sweep(backbones, data_root, tmp_path_factory) -> tuple[Path, Path, str]:
    """One few-shot sweep of every method, K 1 and 2, seeds 1 and 2: (out, cache, stdout)."""
    out, cache = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("cache")
    code, text = run_cli(backbones, "--root", str(data_root), "--out", str(out), "--cache-dir",
                         str(cache), "--shots", "1,2", "--seeds", "1,2", *FAST)
    assert code == 0
    return out, cache, text


# ---- end to end ---------------------------------------------------------------------------
def test_cli_writes_one_run_file_per_run(sweep, backbones):
    out, _, _ = sweep
    files = sorted(p.relative_to(out / "runs").as_posix() for p in (out / "runs").rglob("*.json"))
    expected = ["BTMRI/few-shot/zero-shot/k0_seed0.json"] + [
        f"BTMRI/few-shot/{m}/k{k}_seed{s}.json"
        for m in ("tip-adapter", "linear-probe", "coop", "kgcoop", "biomedcoop", "biomed-dpt")
        for k in (1, 2) for s in (1, 2)]
    assert files == sorted(expected)
    run = read_run(out, "biomed-dpt", 2, 1)
    cfg = run["config"]
    assert run["backbone"] == "tiny-biomedclip" and cfg["classnames"] == CLASSES
    assert cfg["backbone_fingerprint"] == backbones["tiny-biomedclip"].fingerprint
    assert cfg["prompt"]["n_vision_prompts"] == 4
    assert (cfg["prompt"]["lambda_l1"], cfg["prompt"]["lambda_kl"]) == (12.5, 0.25)  # BTMRI FS
    assert cfg["prompt"]["template"] == "a MR photo of a {} in the brain."
    assert cfg["train"]["recipe"] == "fast" and cfg["train"]["steps"] == 3
    assert cfg["train"]["seed"] == 1
    test = run["results"]["test"]
    assert test["n"] == 8 and list(test["per_class"]) == CLASSES
    assert np.asarray(test["confusion"]).sum() == 8
    assert run["metrics"]["accuracy"] == pytest.approx(test["accuracy"])
    assert run["history"]["n_train"] == 8 and run["history"]["steps"] == 3
    assert {"train_encode_s", "train_s", "test_encode_s", "eval_s", "total_s"} <= set(run["timing"])
    coop = read_run(out, "coop", 1, 1)["config"]
    assert coop["prompt"]["n_vision_prompts"] == 0 and coop["prompt"]["lambda_l1"] == 0
    assert read_run(out, "kgcoop", 1, 1)["config"]["method_options"] == {"kgcoop_weight": 8.0}
    assert read_run(out, "zero-shot", 0, 0)["history"] is None
    tip = read_run(out, "tip-adapter", 2, 1)
    assert tip["config"]["train"] is None and tip["config"]["prompt"]["n_vision_prompts"] == 0
    assert tip["history"]["n_train"] == 8 and tip["results"]["test"]["n"] == 8


def test_tables_have_the_papers_shape(sweep):
    out, _, stdout = sweep
    rows = list(csv.reader((out / "results.csv").read_text().splitlines()))
    assert rows[0] == ["protocol", "dataset", "method", "K=1 mean", "K=1 std", "K=2 mean",
                       "K=2 std", "mean over K", "seeds"]
    assert [r[2] for r in rows[1:]] == ["BiomedCLIP zero-shot", "Tip-Adapter",
                                        "Linear probe (zero-shot init)", "CoOp", "KgCoOp-like",
                                        "BiomedCoOp-like", "Biomed-DPT"]
    assert all(r[:2] == ["few-shot", "BTMRI"] and len(r) == len(rows[0]) for r in rows[1:])
    dpt = dict(zip(rows[0], rows[-1]))
    accuracies = [100 * read_run(out, "biomed-dpt", k, s)["metrics"]["accuracy"]
                  for k in (1, 2) for s in (1, 2)]
    assert float(dpt["K=1 mean"]) == pytest.approx(np.mean(accuracies[:2]), abs=1e-3)
    assert float(dpt["K=2 std"]) == pytest.approx(np.std(accuracies[2:], ddof=1), abs=1e-3)
    assert float(dpt["mean over K"]) == pytest.approx(np.mean(accuracies), abs=1e-3)
    assert dpt["seeds"] == "2"
    zero = dict(zip(rows[0], rows[1]))
    assert zero["K=1 mean"] == zero["K=2 mean"]  # no training images: one figure
    markdown = (out / "results.md").read_text()
    assert "### BTMRI" in markdown and "| method | K=1 | K=2 | mean |" in markdown
    assert "| Biomed-DPT | 59.03 | 61.27 | 66.12 | 70.76 | 73.51 | 66.14 |" in markdown  # published
    assert markdown.strip() in stdout


def test_a_second_invocation_skips_finished_runs(backbones, sweep, data_root):
    out, cache, _ = sweep
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    options = Options(root=data_root, out=out, cache_dir=cache, shots=(1, 2), seeds=(1, 2),
                      backbone="tiny-biomedclip", recipe="fast", steps=3, progress=False)
    summary = run_sweep(options, backbones["tiny-biomedclip"])
    assert (summary.ran, summary.skipped, summary.encoded) == (0, 25, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")} == before


def test_runs_are_deterministic_by_seed(backbones, sweep, data_root, tmp_path):
    out, _, _ = sweep
    code, _ = run_cli(backbones, "--root", str(data_root), "--out", str(tmp_path / "again"),
                      "--cache-dir", str(tmp_path / "fresh-cache"), "--methods",
                      "coop,biomed-dpt", "--shots", "1", "--seeds", "1,2", *FAST)
    assert code == 0
    for method in ("coop", "biomed-dpt"):
        for seed in (1, 2):
            assert stable(read_run(tmp_path / "again", method, 1, seed)) == \
                stable(read_run(out, method, 1, seed))
    one, two = (read_run(out, "biomed-dpt", 1, s)["history"]["train_images"] for s in (1, 2))
    assert one != two  # another seed, another draw


def test_changed_settings_conflict_until_forced(backbones, sweep, data_root, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sweep[0], out)
    options = Options(root=data_root, out=out, cache_dir=sweep[1], methods=("coop",), shots=(1,),
                      seeds=(1,), backbone="tiny-biomedclip", recipe="fast", steps=4,
                      progress=False)
    with pytest.raises(ReproduceError, match=r"train\.steps was 3, now 4.*--force"):
        run_sweep(options, backbones["tiny-biomedclip"])
    forced = run_sweep(Options(**{**options.__dict__, "force": True}), backbones["tiny-biomedclip"])
    assert forced.ran == 1 and forced.encoded == 0  # features came from the cache
    assert read_run(out, "coop", 1, 1)["config"]["train"]["steps"] == 4


def test_base_to_novel_tests_base_then_novel_with_the_same_context(backbones, sweep, data_root,
                                                                   tmp_path):
    out = tmp_path / "b2n"
    code, _ = run_cli(backbones, "--root", str(data_root), "--out", str(out), "--cache-dir",
                      str(sweep[1]), "--protocol", "base-to-novel", "--methods",
                      "zero-shot,biomed-dpt", "--shots", "2", "--seeds", "1", *FAST)
    assert code == 0
    run = read_run(out, "biomed-dpt", 2, 1, "base-to-novel")
    assert list(run["results"]["base"]["per_class"]) == ["glioma", "meningioma"]
    assert list(run["results"]["novel"]["per_class"]) == ["pituitary tumor", "normal brain"]
    assert run["results"]["base"]["n"] == run["results"]["novel"]["n"] == 4
    assert run["history"]["n_train"] == 4  # 2 shots of the 2 base classes
    assert (run["config"]["prompt"]["lambda_l1"], run["config"]["prompt"]["lambda_kl"]) == (25, 0.5)
    b, n = run["metrics"]["base"], run["metrics"]["novel"]
    assert run["metrics"]["mean"] == pytest.approx((b + n) / 2)
    assert run["metrics"]["harmonic_mean"] == pytest.approx(2 * b * n / (b + n) if b + n else 0)
    rows = list(csv.reader((out / "results.csv").read_text().splitlines()))
    assert rows[0] == ["protocol", "dataset", "method", "base mean", "base std", "novel mean",
                       "novel std", "mean (paper HM)", "harmonic mean", "seeds"]
    assert [r[2] for r in rows[1:]] == ["BiomedCLIP zero-shot", "Biomed-DPT"]
    markdown = (out / "results.md").read_text()
    assert "mean (paper's \"HM\")" in markdown and "harmonic mean" in markdown


def test_paper_recipe_trains_on_cached_crops(backbones, data_root, tmp_path):
    cache = tmp_path / "cache"
    code, _ = run_cli(backbones, "--root", str(data_root), "--out", str(tmp_path / "out"),
                      "--cache-dir", str(cache), "--methods", "biomed-dpt", "--shots", "1",
                      "--seeds", "1", "--backbone", "tiny-biomedclip", "--recipe", "paper",
                      "--epochs", "2", "--no-progress")
    assert code == 0
    run = json.loads(next((tmp_path / "out" / "runs").rglob("k1_seed1.json")).read_text())
    assert run["config"]["train"]["recipe"] == "paper" and run["config"]["train"]["epochs"] == 2
    assert run["history"]["steps"] == 2  # 4 images, batches of 4, 2 epochs
    assert len(list(cache.glob("BTMRI_train-*"))) == 1 + 8  # evaluation view + 8 crops
    assert len(list(cache.glob("BTMRI_test-*"))) == 1


# ---- protocols and settings ---------------------------------------------------------------
def test_few_shot_draws_are_per_class_seeded_and_nested():
    labels = [0] * 10 + [1] * 10 + [2] * 3
    two, four = few_shot_indices(labels, 2, 1), few_shot_indices(labels, 4, 1)
    assert [labels[i] for i in two] == [0, 0, 1, 1, 2, 2]
    assert set(two) <= set(four) and len(four) == 4 + 4 + 3  # class 2 has only 3
    assert few_shot_indices(labels, 2, 1) == two
    assert few_shot_indices(labels, 2, 2) != two


def test_base_and_novel_classes_split_in_label_order():
    assert base_novel_split(["a", "b", "c", "d"]) == (["a", "b"], ["c", "d"])
    assert base_novel_split(["a", "b", "c", "d", "e"]) == (["a", "b", "c"], ["d", "e"])


def test_test_cap_is_a_fixed_subset():
    items = [Item(f"{i}.png", i % 2, 1) for i in range(10)]
    assert capped(items, None) == items
    assert capped(items, 4) == capped(items, 4) and len(capped(items, 4)) == 4


def test_data_set_names_select_the_papers_settings():
    assert set(PAPER_TASKS) == {"BTMRI", "BUSI", "CHMNIST", "COVID-QU-Ex", "CTKidney",
                                "DermaMNIST", "KneeXray", "Kvasir", "LC25000", "OCTMNIST", "RETINA"}
    covid = task_settings("COVID_19")
    assert covid.template == "a chest X-ray photo of a {} affected by COVID-19 in the lung."
    assert covid.lambdas("few-shot") == (65, 2.5) and covid.lambdas("base-to-novel") == (18.75, 0.5)
    assert task_settings("lungcolon").lambdas("few-shot") == (12.5, 0.25)
    assert task_settings("DermaMNIST").lambdas("few-shot") == (25, 20)
    changed = task_settings("BTMRI", SettingsOverride(lambda2=1.5, template="a MR scan of a {}."))
    assert changed.lambdas("few-shot") == (12.5, 1.5) and changed.ctx_init is None
    with pytest.raises(DatasetError, match="no built-in settings.*--template"):
        task_settings("MyScans")
    mine = task_settings("MyScans", SettingsOverride(template="a CT photo of a {} in the liver."))
    assert mine.template == "a CT photo of a {} in the liver."


def test_every_papers_template_builds_prompts(backbones):
    bb = backbones["tiny-biomedclip"]
    for task in PAPER_TASKS.values():
        for method in ("coop", "biomed-dpt"):
            cfg = reproduce.prompt_config(method, task, "few-shot", reproduce.MethodOptions())
            dp = DualPrompt(bb, ["normal", "tumor"], cfg)
            assert dp.prompts()[0] == task.template.format("normal")
            assert dp.n_ctx == len(bb.text_ids([task.ctx_init])[0]) - 2


# ---- methods as settings of one module ------------------------------------------------------
def test_methods_are_settings_of_one_module(backbones):
    bb = backbones["tiny-biomedclip"]
    task = PAPER_TASKS["BTMRI"]
    options = reproduce.MethodOptions(kgcoop_weight=3.0, biomedcoop_mse=2.0, biomedcoop_kl=0.5)
    kg = reproduce.prompt_config("kgcoop", task, "few-shot", options)
    assert (kg.lambda_kg, kg.lambda_l1, kg.lambda_kl, kg.n_vision_prompts) == (3.0, 0, 0, 0)
    coop = reproduce.prompt_config("biomedcoop", task, "few-shot", options)
    assert (coop.lambda_mse, coop.lambda_kl, coop.kl_teacher) == (2.0, 0.5, "pruned")
    dpt = reproduce.prompt_config("biomed-dpt", task, "few-shot", options)
    assert (dpt.lambda_l1, dpt.lambda_kl, dpt.n_vision_prompts) == (12.5, 0.25, 4)
    for method in reproduce.METHODS:
        dp = reproduce.build_prompts(method, bb, CLASSES,
                                     reproduce.prompt_config(method, task, "few-shot", options),
                                     {"glioma": ["an irregular mass"]})
        assert type(dp) is DualPrompt
        assert dp.plain == (method not in reproduce.TUNED_METHODS)


def test_fit_features_on_cached_views_equals_fit_on_images(backbones):
    """The seam sweeps and the app use: features encoded once, then `fit_features`."""
    from core.features import encode
    from core.train import TrainConfig, fit, fit_features
    from tests.helpers import BRAIN_TEMPLATE, tinted_pixels

    bb = backbones["tiny-clip"]
    x, y = tinted_pixels(4, 2)
    cfg = TrainConfig.fast(steps=4, precision="fp32")
    a, b = (DualPrompt(bb, CLASSES, PromptConfig(template=BRAIN_TEMPLATE)) for _ in range(2))
    from_images = fit(a, x, y, cfg)
    views = encode(bb, x, precision="fp32")
    from_views = fit_features(b, views, y, cfg)
    assert torch.allclose(a.ctx, b.ctx, atol=1e-5)
    assert from_views.final["loss"] == pytest.approx(from_images.final["loss"], abs=1e-4)
    with pytest.raises(TrainingError, match="evaluation view first"):
        fit_features(b, views, y, TrainConfig.paper(epochs=1))


# ---- layouts that cannot be used ----------------------------------------------------------
def edit_split(folder: Path, change) -> None:
    path = folder / f"split_{folder.name}.json"
    split = json.loads(path.read_text())
    change(split)
    path.write_text(json.dumps(split))


def test_a_good_layout_loads(tmp_path):
    ds = load_dataset(make_public_dataset(tmp_path))
    assert ds.classnames == CLASSES and len(ds.train) == 12 and len(ds.test) == 8
    assert ds.image_dir == tmp_path / "BTMRI" / "BTMRI"
    assert ds.image(ds.test[0]).mode == "RGB"


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "split_BTMRI.json").unlink(), "has no split file"),
    (lambda f: edit_split(f, lambda s: s.pop("test")), "has no 'test' split"),
    (lambda f: (f / "BTMRI" / "glioma" / "test1.png").unlink(),
     r"1 image\(s\) listed in split_BTMRI.json are missing.*glioma/test1.png"),
    (lambda f: edit_split(f, lambda s: s["test"].append(["glioma/test0.png", 7, "astrocytoma"])),
     "unknown class.*astrocytoma"),
    (lambda f: edit_split(f, lambda s: s["train"].append(["glioma/test0.png", 0, "tumour"])),
     "label 0 is given two class names"),
    (lambda f: edit_split(f, lambda s: s["train"].insert(0, ["glioma/test0.png", "0"])),
     r"Entry 0 of the 'train' split"),
    (lambda f: (f / "descriptions.json").write_text(json.dumps({"astrocytoma": ["x"]})),
     "descriptions.json describes an unknown class 'astrocytoma'"),
])
def test_bad_layouts_are_explained(tmp_path, damage, message):
    folder = make_public_dataset(tmp_path, n_train=2, n_test=2)
    damage(folder)
    with pytest.raises(DatasetError, match=message):
        load_dataset(folder)


def test_cli_reports_layout_errors_before_loading_a_model(tmp_path, caplog):
    make_public_dataset(tmp_path / "data", name="MyScans", n_train=1, n_test=1)
    called = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reproduce.sweep, "load_backbone", lambda *a, **k: called.append(a))
        code = reproduce.main(["--root", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
                               "--no-progress"])
        missing = reproduce.main(["--root", str(tmp_path / "data"), "--datasets", "BUSI",
                                  "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == missing == 2 and not called
    assert "no built-in settings for the data set 'MyScans'" in caplog.text
    assert "There is no folder 'BUSI'" in caplog.text


def test_descriptions_file_feeds_the_teacher(tmp_path):
    folder = make_public_dataset(tmp_path, n_train=1, n_test=1)
    (folder / "descriptions.json").write_text(json.dumps(
        {"Glioma": ["an irregular infiltrative mass", "  "], "normal brain": ["no mass"]}))
    ds = load_dataset(folder)
    assert ds.descriptions == {"glioma": ["an irregular infiltrative mass"],
                               "normal brain": ["no mass"]}
    assert ds.descriptions_for(["meningioma", "normal brain"]) == {"normal brain": ["no mass"]}


@pytest.mark.parametrize("changes, message", [
    (dict(protocol="zero-to-hero"), "Unknown protocol"),
    (dict(methods=("coop", "clip-adapter")), "Unknown method"),
    (dict(recipe="fast", epochs=3), "use --steps"),
    (dict(recipe="paper", steps=3), "use --epochs"),
    (dict(shots=(0,)), "Shots must be"),
    (dict(max_test=0), "--max-test must be at least 1"),
])
def test_bad_sweep_settings_are_explained(tmp_path, changes, message):
    with pytest.raises(ReproduceError, match=message):
        Options(root=tmp_path, out=tmp_path, **changes)


def test_defaults_are_the_papers_protocols(tmp_path):
    few = Options(root=tmp_path, out=tmp_path)
    assert few.shot_list == (1, 2, 4, 8, 16) and few.seeds == (1, 2, 3)
    assert few.train_config(2).epochs == 100 and few.train_config(2).seed == 2
    b2n = Options(root=tmp_path, out=tmp_path, protocol="base-to-novel")
    assert b2n.shot_list == (16,) and b2n.train_config(1).epochs == 50
    assert math.isclose(b2n.train_config(1).lr, 0.0025)
    assert len(few.specs(["A"])) == 1 + 6 * 5 * 3  # zero-shot once; 2 baselines, 4 tuned
