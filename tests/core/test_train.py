"""Recipes and the training loop."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from core.errors import TrainingError
from core.prompts import DualPrompt, PromptConfig
from core.features import FeatureCache, encode
from core.train import TrainConfig, _batches, _lr_at, fit, fit_features
from tests.helpers import BRAIN_CLASSES, BRAIN_TEMPLATE, tinted_images, tinted_pixels

DESCRIPTIONS = {"glioma": ["an irregular infiltrative mass"], "normal brain": ["no mass"]}


def make(bb, cfg=None) -> DualPrompt:
    return DualPrompt(bb, BRAIN_CLASSES, cfg or PromptConfig(template=BRAIN_TEMPLATE), DESCRIPTIONS)


def state_copy(bb):
    return {k: v.clone() for k, v in bb.model.state_dict().items()}


def test_paper_recipe_is_the_papers_item_by_item():
    cfg = TrainConfig.paper()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay) == ("sgd", 0.0025, 0.9, 5e-4)
    assert (cfg.warmup, cfg.warmup_lr) == (1, 1e-5)
    assert (cfg.batch_size, cfg.epochs, cfg.steps) == (4, 100, None)
    assert cfg.precision == "fp32" and cfg.text_dropout
    assert cfg.crop_scale == (0.08, 1.0) and not cfg.eval_view and cfg.augment_views > 0
    assert TrainConfig.paper(epochs=50).epochs == 50  # base-to-novel


def test_fast_learning_rate_is_relative_to_the_embedding_scale(bb):
    cfg = TrainConfig.fast(steps=2)
    history = fit(make(bb), *tinted_pixels(4, 1), cfg)
    assert history.steps[0]["lr"] == pytest.approx(0.1 * bb.word_embedding_rms)
    assert 0 < bb.word_embedding_rms < 1


def test_paper_schedule_is_constant_warmup_then_cosine():
    cfg = TrainConfig.paper()
    assert _lr_at(cfg, 0, 100) == 1e-5
    assert _lr_at(cfg, 1, 100) == pytest.approx(0.0025 * (1 + math.cos(math.pi / 100)) / 2)
    assert _lr_at(cfg, 50, 100) == pytest.approx(0.00125)
    assert _lr_at(cfg, 99, 100) < 1e-5


def test_released_schedule_is_dasslls_warm_up_recount():
    """Dassl's ConstantWarmupScheduler with its default recount, as the released code steps it
    (once per epoch): epoch 0 at 1e-5, then 0.5 lr (1 + cos(pi (e - 1) / E)). The figures are
    what Dassl's own scheduler gives for E = 5, lr 0.0025."""
    cfg = TrainConfig.released(epochs=5)
    dassl = [1e-05, 0.0025, 0.00226127, 0.00163627, 0.000863729]
    assert [_lr_at(cfg, e, 5) for e in range(5)] == pytest.approx(dassl, rel=1e-5)
    for e in range(1, 100):
        assert _lr_at(TrainConfig.released(), e, 100) == pytest.approx(
            0.5 * 0.0025 * (1 + math.cos(math.pi * (e - 1) / 100)))
    described = TrainConfig.paper(epochs=5)  # the described recipe: one epoch further on
    assert _lr_at(described, 1, 5) == pytest.approx(dassl[2], rel=1e-5)


def test_released_recipe_draws_a_fresh_crop_every_epoch_per_seed():
    one, two = TrainConfig.released(epochs=3, seed=1), TrainConfig.released(epochs=3, seed=2)
    assert one.view_names == ["eval", "rrc0.08-1#1000000", "rrc0.08-1#1000001",
                              "rrc0.08-1#1000002"]
    assert not set(one.view_names[1:]) & set(two.view_names[1:])
    assert TrainConfig.paper().view_names[1:] == [f"rrc0.08-1#{i}" for i in range(8)]
    changed = {k: v for k, v in one.to_dict().items() if TrainConfig.paper(epochs=3).to_dict()[k] != v}
    assert changed == {"recipe": "released", "augment_views": 3, "fresh_crops": True,
                       "warmup_recount": True}
    with pytest.raises(TrainingError, match="one crop view per epoch"):
        TrainConfig.paper(epochs=3, fresh_crops=True)


def test_fresh_crops_train_epoch_e_on_view_e(backbones):
    """Epoch e trains on crop view e alone: the first step's loss is the untrained module's
    loss on the first crop, and swapping the first two crops swaps it."""
    bb = backbones["tiny-biomedclip"]
    cfg = PromptConfig(template="a {} photo.", n_vision_prompts=0)
    train = TrainConfig.released(epochs=3, batch_size=2, text_dropout=False)
    views = F.normalize(torch.randn(4, 2, bb.embed_dim, generator=torch.Generator().manual_seed(0)),
                        dim=-1)
    labels = torch.tensor([0, 1])

    def first_loss(feats) -> float:
        with torch.no_grad():
            return DualPrompt(bb, ["a", "b"], cfg).loss(feats, labels)[0].item()

    history = fit_features(DualPrompt(bb, ["a", "b"], cfg), views, [0, 1], train)
    assert [r["epoch"] for r in history.steps] == [0, 1, 2]
    assert history.steps[0]["loss"] == pytest.approx(first_loss(views[1]), abs=1e-6)
    swapped = fit_features(DualPrompt(bb, ["a", "b"], cfg), views[[0, 2, 1, 3]], [0, 1], train)
    assert swapped.steps[0]["loss"] == pytest.approx(first_loss(views[2]), abs=1e-6)
    assert first_loss(views[1]) != pytest.approx(first_loss(views[2]), abs=1e-4)


def test_last_incomplete_batch_is_dropped():
    cfg = TrainConfig.paper()
    batches = _batches(10, cfg, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(torch.cat(batches).tolist())) == 8
    tiny = _batches(3, cfg, torch.Generator().manual_seed(0))  # fewer images than one batch
    assert [len(b) for b in tiny] == [3]


@pytest.mark.parametrize("changes, message", [
    (dict(epochs=3), "not both"),
    (dict(steps=None), "either"),
    (dict(steps=0), "at least one"),
    (dict(optimizer="lion"), "Unknown optimizer"),
    (dict(lr=-1.0), "learning rate"),
    (dict(eval_view=False, augment_views=0), "view"),
    (dict(crop_scale=(0.5, 0.2)), "crop_scale"),
    (dict(precision="fp16"), "precision"),
])
def test_bad_training_settings_are_explained(changes, message):
    with pytest.raises(TrainingError, match=message):
        TrainConfig.fast(**changes)


def test_fast_training_lowers_the_loss_and_leaves_the_backbone_untouched(bb):
    dp = make(bb)
    x, y = tinted_pixels(4, 6)
    before = state_copy(bb)
    history = fit(dp, x, y, TrainConfig.fast(converge_tol=None))
    assert len(history.steps) == 100 and history.stopped is None
    assert history.steps[-1]["loss"] < history.steps[0]["loss"] - 0.05
    assert history.final["loss"] < history.steps[0]["loss"]
    after = bb.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in bb.model.parameters())
    assert not dp.training


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stopping_at_convergence_reaches_the_full_runs_loss_within_two_percent(bb, seed):
    x, y = tinted_pixels(4, 4, seed=seed)
    feats = encode(bb, x, precision="fp32")
    full = fit_features(make(bb), feats, y, TrainConfig.fast(converge_tol=None, precision="fp32"))
    early = fit_features(make(bb), feats, y, TrainConfig.fast(precision="fp32"))
    assert len(full.steps) == 100 and early.stopped == "converged"
    assert 30 <= len(early.steps) < 100
    assert early.final["loss"] <= 1.02 * full.final["loss"]


def test_retuning_from_cached_features_encodes_nothing(bb):
    """The app's path: features cached as examples arrive; every tune re-uses them."""
    images, y = tinted_images(4, 2)
    cache = FeatureCache()
    first = fit(make(bb), images, y, TrainConfig.fast(steps=3), cache=cache)
    assert first.encode_s > 0 and len(cache) == 8 and cache.misses == 8
    again = fit(make(bb), images, y, TrainConfig.fast(steps=3, seed=2), cache=cache)
    assert cache.misses == 8 and cache.hits == 8 and again.steps
    feats = encode(bb, images, cache=cache)
    direct = fit_features(make(bb), feats, y, TrainConfig.fast(steps=3, seed=2))
    assert direct.steps[-1]["loss"] == pytest.approx(again.steps[-1]["loss"], rel=1e-5)
    with pytest.raises(TrainingError, match="evaluation view first"):
        fit_features(make(bb), torch.stack([feats, feats]), y, TrainConfig.fast(steps=3))


def test_fast_step_count_does_not_grow_with_shots(bb):
    few = fit(make(bb), *tinted_pixels(4, 1), TrainConfig.fast(steps=7))
    many = fit(make(bb), *tinted_pixels(4, 8), TrainConfig.fast(steps=7))
    assert len(few.steps) == len(many.steps) == 7


def test_training_is_seeded_and_deterministic(backbones):
    bb = backbones["tiny-clip"]
    x, y = tinted_pixels(4, 3)
    cfg = TrainConfig.paper(epochs=3, augment_views=2)
    a, b = make(bb), make(bb)
    ha, hb = fit(a, x, y, cfg), fit(b, x, y, cfg)
    assert torch.equal(a.ctx, b.ctx)
    assert [s["loss"] for s in ha.steps] == [s["loss"] for s in hb.steps]
    c = make(bb)
    fit(c, x, y, TrainConfig.paper(epochs=3, augment_views=2, seed=2))
    assert not torch.equal(a.ctx, c.ctx)


def test_paper_recipe_steps_per_epoch_and_dropout_restored(backbones):
    bb = backbones["tiny-biomedclip"]
    dp = make(bb)
    before = state_copy(bb)
    history = fit(dp, *tinted_pixels(4, 3), TrainConfig.paper(epochs=2, augment_views=2))
    assert len(history.steps) == 2 * (12 // 4)
    assert [s["epoch"] for s in history.steps] == [0, 0, 0, 1, 1, 1]
    assert history.steps[0]["lr"] == 1e-5 and history.steps[-1]["lr"] > 1e-5
    assert not bb.model.text.training  # text dropout was switched on for training only
    assert all(torch.equal(before[k], v) for k, v in bb.model.state_dict().items())
    assert set(history.final) == {"loss", "ce", "l1", "kl", "accuracy"}


def test_progress_reports_encoding_then_every_step(bb):
    events = []
    fit(make(bb), *tinted_pixels(4, 5), TrainConfig.fast(steps=4), on_step=events.append)
    encode = [e for e in events if e.phase == "encode"]
    train = [e for e in events if e.phase == "train"]
    assert encode[-1].done == encode[-1].total == 20
    assert [e.done for e in train] == [1, 2, 3, 4] and train[0].total == 4
    assert set(train[0].parts) == {"ce", "l1", "kl"}
    assert 0.0 <= train[0].accuracy <= 1.0 and train[0].loss > 0
    assert events.index(encode[-1]) < events.index(train[0])


def test_stop_is_honoured_within_one_step_and_keeps_what_was_learned(bb):
    dp = make(bb)
    initial = dp.ctx.detach().clone()
    steps_seen = []
    history = fit(dp, *tinted_pixels(4, 3), TrainConfig.fast(steps=30),
                  on_step=lambda p: steps_seen.append(p.done) if p.phase == "train" else None,
                  should_stop=lambda: len(steps_seen) >= 3)
    assert history.stopped == "user"
    assert len(history.steps) == 3
    assert not torch.equal(dp.ctx, initial)
    assert history.final  # the summary is still computed


def test_stop_during_encoding_trains_nothing(bb):
    dp = make(bb)
    initial = dp.ctx.detach().clone()
    history = fit(dp, *tinted_pixels(4, 3), TrainConfig.fast(), should_stop=lambda: True)
    assert history.stopped == "user" and history.steps == []
    assert torch.equal(dp.ctx, initial)


def test_time_budget_stops_training(bb):
    history = fit(make(bb), *tinted_pixels(4, 2), TrainConfig.fast(steps=10_000, time_budget_s=2.0,
                                                                    converge_tol=None))
    assert history.stopped == "time budget"
    assert 0 < len(history.steps) < 10_000


def test_pil_images_train_with_augmented_views(bb):
    images, labels = tinted_images(4, 2)
    events = []
    history = fit(make(bb), images, labels, TrainConfig.fast(steps=3, augment_views=2),
                  on_step=events.append)
    assert [e.total for e in events if e.phase == "encode"][-1] == 8 * 3
    assert len(history.steps) == 3


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 2], "one label per image"),
    ([0, 1, 2, 7], "class numbers"),
    ([0, 1, 1, 0], "No examples for pituitary tumor, normal brain"),
])
def test_bad_labels_are_explained(bb, labels, message):
    x, _ = tinted_pixels(4, 1)
    with pytest.raises(TrainingError, match=message):
        fit(make(bb), x, labels, TrainConfig.fast(steps=1))


def test_no_images_is_explained(bb):
    with pytest.raises(TrainingError, match="Add labelled example images"):
        fit(make(bb), [], [], TrainConfig.fast())


@pytest.mark.parametrize("spec", ["tiny-biomedclip", "tiny-clip"])
def test_fast_recipe_reaches_a_training_loss_comparable_to_the_papers(backbones, spec):
    """The interactive recipe (100 full-batch steps) against the paper's (100 epochs of SGD on
    augmented batches of 4) on the same planted-signal task: final loss over every training
    image, evaluation view, evaluation mode."""
    bb = backbones[spec]
    x, y = tinted_pixels(4, 8)
    paper = fit(make(bb), x, y, TrainConfig.paper())
    fast = fit(make(bb), x, y, TrainConfig.fast())
    start = fast.steps[0]["loss"]
    assert fast.final["loss"] < start and paper.final["loss"] < paper.steps[0]["loss"] + 0.5
    assert fast.final["loss"] <= 1.2 * paper.final["loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_matches_the_cpu_recipe():
    from core.backbone import load_backbone

    gpu = load_backbone("tiny-biomedclip", "cuda")
    dp = make(gpu)
    history = fit(dp, *tinted_pixels(4, 4), TrainConfig.fast(precision="fp32"))
    assert dp.ctx.device.type == "cuda"
    assert history.steps[-1]["loss"] < history.steps[0]["loss"]


def test_a_history_reads_back_from_json_as_it_was():
    import json

    from core.train import History

    history = History(TrainConfig.fast(steps=7), steps=[{"step": 1, "loss": 0.5}],
                      final={"accuracy": 0.75, "loss": 0.4}, stopped="converged",
                      precision="bf16", encode_s=0.25, train_s=1.5, total_s=1.75)
    back = History.from_dict(json.loads(json.dumps(history.to_dict())))
    assert back == history and back.config.crop_scale == (0.5, 1.0)
    with pytest.raises(TrainingError, match="Unknown training settings"):
        TrainConfig.from_dict({**TrainConfig.fast().to_dict(), "magic": 1})
    with pytest.raises(TrainingError):
        History.from_dict({"steps": []})


def test_a_warm_start_may_stop_sooner_and_an_epoch_recipe_is_left_as_it_is():
    from core.train import WARM_CONVERGE_MIN, WARM_LR, warm_config

    fast = TrainConfig.fast(steps=100)
    warm = warm_config(fast)
    assert warm.converge_min == WARM_CONVERGE_MIN < fast.converge_min
    assert warm.lr == pytest.approx(WARM_LR * fast.lr) and warm.steps == 20
    assert replace(warm, converge_min=fast.converge_min, lr=fast.lr, steps=fast.steps,
                   warmup_lr=fast.warmup_lr) == fast  # nothing else changes
    assert warm_config(TrainConfig.fast(steps=40)).steps == 2 * WARM_CONVERGE_MIN
    assert warm_config(TrainConfig.fast(steps=10)).steps == 10
    paper = TrainConfig.paper(epochs=5)
    assert replace(warm_config(paper), lr=paper.lr, warmup_lr=paper.warmup_lr) == paper
