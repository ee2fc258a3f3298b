"""Relevance maps: they point at planted evidence, are class-specific, and leave the model as it
was; overlays and legends."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.backbone import load_backbone
from core.explain import colorbar, colorize, model_view, overlay, relevance_map, relevance_maps
from core.prompts import DualPrompt, PromptConfig
from tests.helpers import BRAIN_CLASSES, BRAIN_TEMPLATE, FAMILIES


def make(bb) -> DualPrompt:
    return DualPrompt(bb, BRAIN_CLASSES, PromptConfig(template=BRAIN_TEMPLATE)).eval()


def image(seed=0):
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


# ---- planted-signal pointing game ---------------------------------------------------------
def squares(n, lesion, patch, generator):
    """Noise images; where `lesion`, a bright square two patches wide at a random place on the
    patch grid. Returns pixels and each square's top-left corner."""
    side = 2 * patch
    x = 0.5 * torch.randn(n, 3, 224, 224, generator=generator)
    corners = []
    for i in range(n):
        row, col = (torch.randint(0, 224 // patch - 1, (2,), generator=generator) * patch).tolist()
        if lesion[i]:
            x[i, :, row:row + side, col:col + side] += 2.5
        corners.append((row, col))
    return x, corners


@pytest.fixture(scope="module", params=FAMILIES)
def lesion_model(request):
    """A fresh tiny backbone whose image tower is trained (seconds) so that the score of class
    'lesion' depends on a bright square: the evidence a map should point at. The timm tower is
    cut to two blocks to keep this fast."""
    bb = load_backbone(request.param, "cpu")
    if bb.timm_vision:
        bb.model.visual.trunk.blocks = bb.model.visual.trunk.blocks[:2]
    dp = DualPrompt(bb, ["normal", "lesion"], PromptConfig(template="a photo of a {}.")).eval()
    patch = 224 // bb.image_grid[0]
    g = torch.Generator().manual_seed(0)
    text = dp.text_features().detach()[1]
    bias = torch.zeros((), requires_grad=True)
    visual = bb.model.visual.requires_grad_(True)
    opt = torch.optim.Adam(list(visual.parameters()) + [bias], lr=1e-3)
    for _ in range(60):
        labels = torch.randint(0, 2, (16,), generator=g)
        x, _ = squares(16, labels, patch, g)
        feats = F.normalize(bb.encode_image(x, dp.vision_prompts), dim=-1)  # with gradients
        score = bb.logit_scale * feats @ text - bias
        loss = F.binary_cross_entropy_with_logits(score, labels.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    visual.requires_grad_(False)
    return dp, patch, g


def test_relevance_points_at_the_planted_square(lesion_model):
    dp, patch, g = lesion_model
    x, corners = squares(20, [1] * 20, patch, g)
    hits = 0
    for i, (row, col) in enumerate(corners):
        heat = relevance_map(dp, x[i], 1)
        r, c = np.unravel_index(int(heat.argmax()), heat.shape)
        hits += row <= r < row + 2 * patch and col <= c < col + 2 * patch
    chance = (2 * patch) ** 2 / 224 ** 2
    assert hits / 20 >= 0.8, f"pointing game {hits}/20, chance {chance:.3f}"


# ---- properties ---------------------------------------------------------------------------
def test_map_shape_range_and_determinism(bb):
    dp = make(bb)
    first = relevance_map(dp, image(), 0)
    assert first.shape == (224, 224) and first.dtype == np.float32
    assert first.min() == 0.0 and first.max() == pytest.approx(1.0)
    assert np.array_equal(first, relevance_map(dp, image(), 0))


def test_different_classes_give_different_maps(bb):
    maps = relevance_maps(make(bb), image(1), [0, 1, 2, 3])
    assert maps.shape == (4, 224, 224)
    differences = [np.abs(maps[0] - maps[k]).max() for k in (1, 2, 3)]
    assert max(differences) > 0.01


def test_several_classes_in_one_call_match_single_calls(bb):
    dp = make(bb)
    together = relevance_maps(dp, image(2), [2, 0])
    assert np.allclose(together[0], relevance_map(dp, image(2), 2), atol=1e-5)
    assert np.allclose(together[1], relevance_map(dp, image(2), 0), atol=1e-5)


def test_rollout_is_class_agnostic(bb):
    maps = relevance_maps(make(bb), image(3), [0, 3], kind="rollout")
    assert np.array_equal(maps[0], maps[1]) and maps.max() == pytest.approx(1.0)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_explaining_leaves_the_model_as_it_was(bb):
    dp = make(bb)
    x = image(4)
    fused = [getattr(m, "fused_attn", None) for m in bb.model.modules()]
    with torch.no_grad():
        before = dp.logits(dp.image_features(x))
    hooks = _hooks(bb.model)
    relevance_maps(dp, x, [0, 1, 2])
    relevance_map(dp, x, 1, kind="rollout")
    with torch.no_grad():
        after = dp.logits(dp.image_features(x))
    assert torch.equal(before, after)
    assert _hooks(bb.model) == hooks == 0
    assert [getattr(m, "fused_attn", None) for m in bb.model.modules()] == fused
    assert all(p.grad is None and not p.requires_grad for p in bb.model.parameters())
    assert dp.ctx.grad is None


def test_maps_work_inside_no_grad_and_under_concurrent_calls(bb):
    dp = make(bb)
    expected = {k: relevance_map(dp, image(k), k % 4) for k in range(4)}
    with torch.no_grad():
        assert np.array_equal(relevance_map(dp, image(0), 0), expected[0])
    results, errors = {}, []

    def work(k):
        try:
            with torch.no_grad():
                results[k] = relevance_map(dp, image(k), k % 4)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.allclose(results[k], expected[k], atol=1e-5) for k in range(4))


@pytest.mark.parametrize("call, message", [
    (lambda dp: relevance_map(dp, image(), 9), "Class numbers"),
    (lambda dp: relevance_maps(dp, image(), []), "Class numbers"),
    (lambda dp: relevance_map(dp, image(), 0, kind="gradcam"), "Unknown kind of map"),
    (lambda dp: relevance_map(dp, torch.zeros(2, 3, 224, 224), 0), "one preprocessed image"),
])
def test_bad_requests_are_explained(backbones, call, message):
    with pytest.raises(ValueError, match=message):
        call(make(backbones["tiny-clip"]))


# ---- pictures -----------------------------------------------------------------------------
def test_overlay_blends_the_map_over_the_image():
    picture = Image.new("L", (300, 200), 128)
    heat = np.zeros((224, 224), np.float32)
    heat[:, 112:] = 1.0
    out = overlay(picture, heat, alpha=0.5)
    assert out.mode == "RGB" and out.size == (300, 200)
    pixels = np.asarray(out).astype(int)
    low, high = colorize(np.array([[0.0, 1.0]]))[0]
    assert np.abs(pixels[100, 10] - (0.5 * 128 + 0.5 * low)).max() <= 1
    assert np.abs(pixels[100, 290] - (0.5 * 128 + 0.5 * high)).max() <= 1
    assert np.array_equal(np.asarray(overlay(picture, heat, alpha=0.0)),
                          np.asarray(picture.convert("RGB")))
    with pytest.raises(ValueError, match="alpha"):
        overlay(picture, heat, alpha=1.5)
    with pytest.raises(ValueError, match="two-dimensional"):
        overlay(picture, np.zeros((2, 2, 2)))


def test_colorbar_and_model_view():
    legend = colorbar(width=256, height=44)
    assert legend.mode == "RGB" and legend.size == (256, 44)
    ramp = np.asarray(legend)[8]
    assert np.abs(ramp[20].astype(int) - ramp[230].astype(int)).max() > 100  # blue end vs red end
    view = model_view(Image.new("RGB", (300, 200), (10, 200, 30)))
    assert view.size == (224, 224) and view.getpixel((112, 112)) == (10, 200, 30)

