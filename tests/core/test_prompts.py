"""The dual-prompt module: construction, features, teacher, loss, variants and checkpoints."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from core.errors import CheckpointError, PromptError
from core.prompts import DualPrompt, PromptConfig, read_checkpoint
from tests.helpers import BRAIN_CLASSES, BRAIN_TEMPLATE

DESCRIPTIONS = {
    "glioma": ["an irregular infiltrative mass with surrounding edema",
               "a heterogeneously enhancing tumor in the white matter"],
    "meningioma": ["a well defined extra-axial mass with a dural tail"],
}


def make(bb, cfg=None, classes=BRAIN_CLASSES, descriptions=None) -> DualPrompt:
    return DualPrompt(bb, classes, cfg or PromptConfig(template=BRAIN_TEMPLATE), descriptions).eval()


def pixels(n=3, seed=0):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


# ---- construction -------------------------------------------------------------------------
def test_context_is_the_template_prefix(bb):
    dp = make(bb)
    prefix_ids = bb.text_ids(["a MR photo of a"])[0][1:-1]
    assert dp.n_ctx == len(prefix_ids) == 5
    assert dp.ctx.shape == (5, bb.text_width)
    with torch.no_grad():
        assert torch.equal(dp.ctx, bb.embed_tokens(torch.tensor(prefix_ids)))


def test_at_initialisation_learned_prompts_equal_the_template_sentences(bb):
    dp = make(bb)
    with torch.no_grad():
        learned = dp.text_features()
        plain = F.normalize(bb.model.encode_text(bb.tokenizer(dp.prompts())), dim=-1)
    assert dp.prompts()[2] == "a MR photo of a pituitary tumor in the brain."
    assert torch.allclose(learned, plain, atol=1e-5)
    assert torch.allclose(dp.template_features(), plain, atol=1e-5)


def test_prompts_are_truncated_to_the_longest_real_prompt(bb):
    dp = make(bb)
    longest = max(len(r) for r in bb.text_ids(dp.prompts()))
    assert dp.token_ids.shape == (4, longest)
    assert dp.lengths.tolist() == [len(r) for r in bb.text_ids(dp.prompts())]


def test_zero_vision_prompts_off_gives_encode_image(bb):
    dp = make(bb, PromptConfig(template=BRAIN_TEMPLATE, n_vision_prompts=0))
    x = pixels()
    with torch.no_grad():
        assert torch.allclose(dp.image_features(x), F.normalize(bb.model.encode_image(x), dim=-1),
                              atol=1e-6)


def test_zero_vision_prompts_on_change_image_features(bb):
    x = pixels()
    with torch.no_grad():
        prompted = make(bb).image_features(x)
        plain = make(bb).zero_shot().image_features(x)
    assert prompted.shape == plain.shape
    assert torch.allclose(prompted.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (prompted - plain).abs().max() > 1e-4


def test_vision_prompts_are_zero_buffers_not_parameters(bb):
    dp = make(bb)
    assert dp.vision_prompts.shape == (4, bb.image_width)
    assert torch.count_nonzero(dp.vision_prompts) == 0
    assert [name for name, _ in dp.named_parameters()] == ["ctx"]


def test_random_context_is_seeded_and_placed_before_the_template(bb):
    cfg = PromptConfig(template="{} in the brain.", n_ctx=6, init_seed=3)
    a, b = make(bb, cfg), make(bb, cfg)
    assert a.ctx.shape == (6, bb.text_width)
    assert torch.equal(a.ctx, b.ctx)
    assert abs(a.ctx.std().item() - 0.02) < 0.005
    assert a.lengths[0] == 1 + 6 + len(bb.text_ids(["glioma in the brain."])[0][1:-1]) + 1
    other = make(bb, PromptConfig(template="{} in the brain.", n_ctx=6, init_seed=4))
    assert not torch.equal(a.ctx, other.ctx)


def test_explicit_context_words_may_be_a_shorter_start_of_the_prefix(bb):
    dp = make(bb, PromptConfig(template=BRAIN_TEMPLATE, ctx_init="a MR photo"))
    assert dp.n_ctx == len(bb.text_ids(["a MR photo"])[0]) - 2
    with torch.no_grad():
        plain = F.normalize(bb.model.encode_text(bb.tokenizer(dp.prompts())), dim=-1)
        assert torch.allclose(dp.text_features(), plain, atol=1e-5)


@pytest.mark.parametrize("classes, message", [
    ([], "at least two classes"),
    (["glioma"], "at least two classes"),
    (["glioma", "Glioma"], "given twice"),
    (["glioma", "  "], "empty name"),
    ("glioma", "as a list"),
])
def test_bad_class_lists_are_explained(bb, classes, message):
    with pytest.raises(PromptError, match=message):
        DualPrompt(bb, classes, PromptConfig(template=BRAIN_TEMPLATE))


@pytest.mark.parametrize("changes, message", [
    (dict(template="a MR photo of the brain."), "exactly one"),
    (dict(template="a {} or a {}."), "exactly one"),
    (dict(template="a {} in {the brain."), "stray braces"),
    (dict(ctx_init="a CT photo of a"), "must be the start"),
    (dict(ctx_init="a MR photo of a tumour in the"), "longer than"),
    (dict(ctx_init="a MR pho"), "word boundary"),
    (dict(n_vision_prompts=-1), "n_vision_prompts"),
    (dict(lambda_l1=-1.0), "lambda_l1"),
    (dict(lambda_kl=math.nan), "lambda_kl"),
    (dict(n_ctx=0), "n_ctx"),
])
def test_bad_prompt_settings_are_explained(changes, message):
    with pytest.raises(PromptError, match=message):
        PromptConfig(**{"template": BRAIN_TEMPLATE, **changes})


def test_a_fixed_context_length_replaces_the_templates_first_tokens(bb):
    """The released N_CTX: the context covers the template's first n_ctx tokens and starts
    from the first n_ctx tokens of the context words as the tokenizer pads them."""
    words = bb.text_ids(["a MR photo of a"])[0]  # [start] a mr photo of a [end]
    default = make(bb)
    same = make(bb, PromptConfig(template=BRAIN_TEMPLATE, n_ctx=5))
    with torch.no_grad():
        assert torch.equal(same.ctx, default.ctx)
        assert torch.allclose(same.text_features(), default.text_features(), atol=1e-6)
        short = make(bb, PromptConfig(template=BRAIN_TEMPLATE, n_ctx=3))
        assert torch.equal(short.ctx, bb.embed_tokens(torch.tensor(words[1:4])))
        # at its start the prompt is still the plain sentence: the context holds its own tokens
        assert torch.allclose(short.text_features(), short.template_features(), atol=1e-5)
        long = make(bb, PromptConfig(template=BRAIN_TEMPLATE, n_ctx=7))
        continued = torch.tensor(words[1:] + [bb.pad_id])  # ... a [end] [pad]
        assert torch.equal(long.ctx, bb.embed_tokens(continued))
        assert not torch.allclose(long.text_features(), long.template_features(), atol=1e-3)
    assert long.token_ids.shape[1] == len(bb.text_ids([BRAIN_TEMPLATE.format("pituitary tumor")])[0])
    with pytest.raises(PromptError, match="Lower n_ctx"):
        make(bb, PromptConfig(template=BRAIN_TEMPLATE, n_ctx=12), classes=["glioma", "normal"])


def test_the_middle_layout_moves_the_token_after_the_context(backbones):
    """The released layout (name_lens 1): `[CLS] c c glioma c c c tumor in the brain . [SEP]`.
    At its start the context holds "a mr photo of a", so the prompt reads as that sentence."""
    bb = backbones["tiny-biomedclip"]
    cfg = PromptConfig(template="a MR photo of a {} in the brain.", class_position="middle")
    dp = make(bb, cfg, classes=["glioma tumor", "normal brain"])
    with torch.no_grad():
        moved = dp.encode_sentences(["a MR glioma photo of a tumor in the brain.",
                                     "a MR normal photo of a brain in the brain."])
        assert torch.allclose(dp.text_features(), moved, atol=1e-5)
        assert not torch.allclose(make(bb, replace(cfg, class_position="end"),
                                       classes=["glioma tumor", "normal brain"]).text_features(),
                                  moved, atol=1e-3)
        embeds = dp.prompt_embeds()
        assert embeds.shape == dp.token_embeds.shape  # nothing added or lost
        assert torch.equal(embeds[0, 3], dp.token_embeds[0, 6])  # "glioma" after two of five
        assert torch.equal(embeds[0, 1:3], dp.ctx[:2]) and torch.equal(embeds[0, 4:7], dp.ctx[2:])


def test_overwritten_vision_prompts_reach_every_image_path(backbones):
    bb = backbones["tiny-biomedclip"]
    over = make(bb, PromptConfig(template=BRAIN_TEMPLATE, vision_mode="overwrite"))
    inserted = make(bb)
    with torch.no_grad():
        direct = F.normalize(bb.encode_image(pixels(2), over.vision_prompts, overwrite=True), dim=-1)
        assert torch.allclose(over.image_features(pixels(2), "fp32"), direct, atol=1e-6)
        assert not torch.allclose(inserted.image_features(pixels(2), "fp32"), direct, atol=1e-4)
    from core.explain import relevance_map

    heat = relevance_map(over, pixels(1)[0], 0)
    assert heat.shape == (224, 224) and np.isfinite(heat).all()


def test_a_prompt_longer_than_the_model_reads_is_refused(bb):
    long_name = " ".join(["tumor"] * (bb.context_length + 5))
    with pytest.raises(PromptError, match="at most"):
        make(bb, classes=["glioma", long_name])


def test_descriptions_must_name_known_classes(bb):
    with pytest.raises(PromptError, match="not one of the classes"):
        make(bb, descriptions={"astrocytoma": ["a mass"]})


# ---- teacher and loss ---------------------------------------------------------------------
def test_teacher_is_mean_of_normalised_descriptions_or_the_template(bb):
    dp = make(bb, descriptions=DESCRIPTIONS)
    teacher = dp.teacher_features()
    glioma = F.normalize(dp.encode_sentences(DESCRIPTIONS["glioma"]).mean(0), dim=0)
    assert torch.allclose(teacher[0], glioma, atol=1e-5)
    assert torch.allclose(teacher[2], dp.template_features()[2], atol=1e-5)
    assert torch.allclose(teacher.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_descriptions_given_as_text_are_one_sentence_per_line(bb):
    dp = make(bb, descriptions={"glioma": "first line\n\n  second   line \n"})
    assert dp.descriptions == {"glioma": ["first line", "second line"]}


def test_loss_matches_the_method(bb):
    cfg = PromptConfig(template=BRAIN_TEMPLATE, lambda_l1=3.0, lambda_kl=2.0)
    dp = make(bb, cfg, descriptions=DESCRIPTIONS)
    with torch.no_grad():
        dp.ctx.add_(0.05 * torch.randn(dp.ctx.shape, generator=torch.Generator().manual_seed(0)))
    feats = dp.image_features(pixels(5)).detach()
    labels = torch.tensor([0, 1, 2, 3, 1])
    total, parts = dp.loss(feats, labels)

    s = bb.logit_scale
    t, teacher = dp.text_features(), dp.teacher_features()
    z_s, z_t = s * feats @ t.T, s * feats @ teacher.T
    ce = F.cross_entropy(z_s, labels)
    l1 = (t - teacher).abs().mean()
    p_t = z_t.softmax(-1)
    kl = (p_t * (p_t.log() - z_s.log_softmax(-1))).sum() / (5 * 4)
    assert parts["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert parts["l1"] == pytest.approx(l1.item(), rel=1e-5)
    assert parts["kl"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-8)
    assert total.item() == pytest.approx((ce + 3.0 * l1 + 2.0 * kl).item(), rel=1e-5)
    assert parts["l1"] > 0 and parts["kl"] > 0


def test_coop_switch_has_no_vision_prompts_and_no_teacher(bb):
    dp = make(bb, PromptConfig.coop(BRAIN_TEMPLATE))
    assert dp.vision_prompts.shape[0] == 0 and not dp.cfg.uses_teacher
    feats = dp.image_features(pixels(2)).detach()
    total, parts = dp.loss(feats, torch.tensor([0, 1]))
    assert parts["l1"] == parts["kl"] == 0.0
    assert total.item() == pytest.approx(parts["ce"], rel=1e-6)
    assert dp._sentences is None and not dp._targets  # never computed


def test_only_ctx_receives_gradients(bb):
    dp = make(bb, descriptions=DESCRIPTIONS)
    feats = dp.image_features(pixels(4)).detach()
    total, _ = dp.loss(feats, torch.tensor([0, 1, 2, 3]))
    total.backward()
    assert dp.ctx.grad is not None and dp.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.model.parameters())


def test_logits_use_the_model_logit_scale(bb):
    dp = make(bb)
    feats = dp.image_features(pixels(2))
    expected = bb.model.logit_scale.exp() * feats @ dp.text_features().T
    assert torch.allclose(dp.logits(feats), expected, atol=1e-5)
    probs = dp.predict_proba(pixels(2))
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-6)


def test_inference_is_deterministic_and_text_cache_follows_ctx(bb):
    dp = make(bb)
    x = pixels(2)
    first, second = dp.predict_proba(x), dp.predict_proba(x)
    assert torch.equal(first, second)
    with torch.no_grad():  # not a constant shift: BERT's embedding LayerNorm would remove it
        dp.ctx.add_(0.5 * torch.randn(dp.ctx.shape, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(dp.predict_proba(x), first)


# ---- variants -----------------------------------------------------------------------------
def test_with_classes_keeps_the_learned_context(bb):
    dp = make(bb)
    with torch.no_grad():
        dp.ctx.mul_(1.5)
    novel = dp.with_classes(["metastasis", "glioma"])
    assert torch.equal(novel.ctx, dp.ctx) and novel.ctx is not dp.ctx
    with torch.no_grad():
        assert torch.allclose(novel.text_features()[1], dp.text_features()[0], atol=1e-5)


def test_zero_shot_is_the_plain_template_classifier(bb):
    dp = make(bb)
    with torch.no_grad():
        dp.ctx.add_(0.3)
    zs = dp.zero_shot()
    x = pixels(2)
    with torch.no_grad():
        expected = (bb.logit_scale * F.normalize(bb.model.encode_image(x), dim=-1)
                    @ F.normalize(bb.model.encode_text(bb.tokenizer(dp.prompts())), dim=-1).T)
    assert torch.allclose(zs.logits(zs.image_features(x)), expected, atol=1e-4)


@pytest.mark.parametrize("template, ctx_init", [("{} seen on a brain MR scan.", None),
                                                ("a MR photo of a {} in the brain.", "")])
def test_zero_shot_is_the_plain_template_also_without_context_words(bb, template, ctx_init):
    """A template that starts with the class name, or an empty context init, leaves the
    prompt module a random context; its zero-shot classifier must still be the template's."""
    dp = DualPrompt(bb, BRAIN_CLASSES, PromptConfig(template=template, ctx_init=ctx_init))
    zs = dp.zero_shot()
    x = pixels(2)
    with torch.no_grad():
        expected = (bb.logit_scale * F.normalize(bb.model.encode_image(x), dim=-1)
                    @ F.normalize(bb.model.encode_text(bb.tokenizer(dp.prompts())), dim=-1).T)
        learned = dp.logits(F.normalize(bb.model.encode_image(x), dim=-1))
        assert torch.allclose(zs.logits(zs.image_features(x)), expected, atol=1e-4)
        assert not torch.allclose(learned, expected, atol=1e-3)  # the random context differs
        assert torch.allclose(zs.text_features(), zs.template_features())


# ---- checkpoints --------------------------------------------------------------------------
def test_save_then_load_gives_identical_features(bb, tmp_path):
    dp = make(bb, PromptConfig(template=BRAIN_TEMPLATE, lambda_l1=7.0), descriptions=DESCRIPTIONS)
    with torch.no_grad():
        dp.ctx.add_(0.1 * torch.randn(dp.ctx.shape, generator=torch.Generator().manual_seed(5)))
    path = dp.save(tmp_path / "prompts.safetensors", info={"recipe": "fast", "steps": 50})
    loaded = DualPrompt.load(path, bb)
    assert loaded.classnames == dp.classnames and loaded.cfg == dp.cfg
    assert loaded.descriptions == dp.descriptions and loaded.info == {"recipe": "fast", "steps": 50}
    assert torch.equal(loaded.ctx, dp.ctx)
    x = pixels(2)
    assert torch.equal(loaded.predict_proba(x), dp.eval().predict_proba(x))
    assert torch.equal(loaded.teacher_features(), dp.teacher_features())


def test_a_state_is_plain_data_that_scores_saves_and_rebuilds_the_module(bb, tmp_path):
    import pickle

    dp = make(bb, PromptConfig(template=BRAIN_TEMPLATE), descriptions=DESCRIPTIONS)
    with torch.no_grad():
        dp.ctx.add_(0.1 * torch.randn(dp.ctx.shape, generator=torch.Generator().manual_seed(6)))
    dp.teacher_features()
    state = pickle.loads(pickle.dumps(dp.eval().state()))  # what crosses a process boundary
    assert state.ctx.device.type == state.text.device.type == "cpu"
    assert set(state.targets) >= {"teacher"} and state.fingerprint == bb.fingerprint
    feats = dp.image_features(pixels(3))
    with torch.no_grad():
        expected = dp.logits(feats).softmax(dim=-1).cpu()
    assert torch.allclose(state.proba(feats), expected, atol=1e-6)
    rebuilt = DualPrompt.from_state(bb, state)
    assert torch.equal(rebuilt.ctx, dp.ctx) and rebuilt.cfg == dp.cfg
    assert torch.equal(rebuilt.teacher_features(), dp.teacher_features())
    with torch.no_grad():
        assert torch.allclose(rebuilt.text_features(), dp.text_features(), atol=1e-6)
    loaded = DualPrompt.load(state.save(tmp_path / "s.safetensors", info={"a": 1}), bb)
    assert torch.equal(loaded.ctx, dp.ctx) and loaded.info == {"a": 1}
    fresh = DualPrompt.from_state(bb, state.__class__.untrained(
        dp.classnames, dp.descriptions, dp.cfg, bb.name, bb.fingerprint, state.targets))
    assert torch.equal(fresh.ctx, make(bb, PromptConfig(template=BRAIN_TEMPLATE)).ctx)


def test_a_state_made_on_another_model_is_refused(backbones):
    state = make(backbones["tiny-clip"]).state()
    with pytest.raises(CheckpointError, match="another model"):
        DualPrompt.from_state(backbones["tiny-biomedclip"], state)


def test_checkpoint_holds_only_the_context_and_json_metadata(bb, tmp_path):
    path = make(bb).save(tmp_path / "p.safetensors")
    tensors, meta = read_checkpoint(path)
    assert list(tensors) == ["ctx"]
    assert meta["format"] == "biomed-dpt-prompts" and meta["format_version"] == "1"
    assert meta["backbone"] == bb.name and meta["backbone_fingerprint"] == bb.fingerprint
    assert json.loads(meta["classnames"]) == BRAIN_CLASSES
    assert json.loads(meta["config"])["template"] == BRAIN_TEMPLATE


def test_checkpoint_for_another_backbone_is_refused(backbones, tmp_path):
    path = make(backbones["tiny-clip"]).save(tmp_path / "clip.safetensors")
    with pytest.raises(CheckpointError, match="another model"):
        DualPrompt.load(path, backbones["tiny-biomedclip"])


def _rewrite(path, tensors=None, **meta_changes):
    original, meta = read_checkpoint(path)
    meta.update(meta_changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    save_file(tensors if tensors is not None else original, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"\x80\x04\x95 this is a pickle, not safetensors"), "must be a .safetensors"),
    (lambda p: p.write_bytes(p.read_bytes()[:-7]), "must be a .safetensors"),
    (lambda p: p.write_bytes(b""), "must be a .safetensors"),
    (lambda p: _rewrite(p, format="something-else"), "not a prompt file"),
    (lambda p: _rewrite(p, format_version="99"), "version 99"),
    (lambda p: _rewrite(p, classnames=None), "incomplete"),
    (lambda p: _rewrite(p, tensors={"ctx": torch.zeros(5, 64), "extra": torch.zeros(1)}), "exactly one"),
    (lambda p: _rewrite(p, tensors={"ctx": torch.full((5, 64), math.nan)}), "damaged"),
    (lambda p: _rewrite(p, tensors={"ctx": torch.zeros(5, 64, dtype=torch.float16)}), "damaged"),
    (lambda p: _rewrite(p, config=json.dumps({"template": "no braces"})), "settings are not valid"),
    (lambda p: _rewrite(p, config=json.dumps({"template": "a {}", "colour": "red"})), "newer version"),
])
def test_damaged_or_foreign_files_are_refused_clearly(backbones, tmp_path, damage, message):
    bb = backbones["tiny-biomedclip"]
    path = make(bb).save(tmp_path / "p.safetensors")
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        DualPrompt.load(path, bb)


def test_context_of_the_wrong_shape_is_refused(backbones, tmp_path):
    bb = backbones["tiny-biomedclip"]
    path = make(bb).save(tmp_path / "p.safetensors")
    _rewrite(path, tensors={"ctx": torch.zeros(3, 64)})
    with pytest.raises(CheckpointError, match="shape"):
        DualPrompt.load(path, bb)


def test_missing_and_oversized_files_are_refused(backbones, tmp_path):
    bb = backbones["tiny-biomedclip"]
    with pytest.raises(CheckpointError, match="cannot be read"):
        DualPrompt.load(tmp_path / "absent.safetensors", bb)
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        f.truncate(17 * 2**20)
    with pytest.raises(CheckpointError, match="MB"):
        DualPrompt.load(big, bb)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_scores_and_losses_are_fp32_whatever_the_compute_precision(bb, precision):
    """bf16 autocast runs (emulated where the CPU lacks it) on any machine: the towers may run
    in bf16, the logits, probabilities and loss a person is shown never do."""
    from core.backbone import autocast
    from tests.helpers import tinted_pixels

    dp = DualPrompt(bb, BRAIN_CLASSES, PromptConfig(template=BRAIN_TEMPLATE)).eval()
    pixels, labels = tinted_pixels(4, 2)
    with autocast(bb.device, precision):
        probs = dp.predict_proba(pixels)
        feats = dp.image_features(pixels)
        loss, parts, logits = dp.loss_and_logits(feats, torch.tensor(labels))
    assert probs.dtype == logits.dtype == loss.dtype == torch.float32
    assert torch.allclose(probs.sum(dim=-1), torch.ones(len(labels)), atol=1e-6)
    expected = F.cross_entropy(bb.logit_scale.float() * feats.float() @ dp.text_features().float().T,
                               torch.tensor(labels))
    if precision == "fp32":
        assert parts["ce"] == pytest.approx(expected.item(), rel=1e-5)
    assert math.isfinite(loss.item())


def test_class_names_compare_by_one_key_everywhere():
    from core.evaluate import class_numbers
    from core.prompt_config import class_key

    assert class_key("  Normal\t brain ") == class_key("normal brain") == "normal brain"
    assert class_numbers(["NORMAL  BRAIN", "glioma"], ["glioma", "normal brain"]) == [1, 0]
    with pytest.raises(PromptError, match="given twice"):
        DualPrompt(None, ["Glioma", "glioma "], PromptConfig(template="a {}."))
