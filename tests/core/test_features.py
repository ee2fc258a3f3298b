"""core.features: the one encoder, its views, the memory cache and the disk store; the image
tower's prompted and attention paths checked against hand-run references."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.features import (FeatureCache, FeatureStore, StoreKey, crop_views, encode,
                           encode_views, image_digest, view_transform)
from core.prompts import DualPrompt, PromptConfig
from tests.helpers import BRAIN_CLASSES, BRAIN_TEMPLATE, tinted_images, tinted_pixels


def picture(seed: int = 0, size=(60, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8))


# ---- the encoder --------------------------------------------------------------------------
def test_encode_is_the_normalised_image_tower_with_zero_prompts(bb):
    x, _ = tinted_pixels(3, 1, seed=5)
    with torch.no_grad():
        plain = F.normalize(bb.model.encode_image(x), dim=-1)
        prompted = F.normalize(bb.encode_image(x, torch.zeros(4, bb.image_width)), dim=-1)
    assert torch.allclose(encode(bb, x, vision_prompts=0, precision="fp32"), plain, atol=1e-5)
    feats = encode(bb, x, vision_prompts=4, precision="fp32")
    assert torch.allclose(feats, prompted, atol=1e-5)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)
    dp = DualPrompt(bb, BRAIN_CLASSES, PromptConfig(template=BRAIN_TEMPLATE)).eval()
    assert torch.allclose(dp.image_features(x, precision="fp32").cpu(), feats, atol=1e-6)


def test_encoding_is_deterministic_whatever_the_batch(backbones):
    bb = backbones["tiny-clip"]
    x, _ = tinted_pixels(3, 1, seed=5)
    first = encode(bb, x, batch_size=2, precision="fp32")
    assert torch.equal(first, encode(bb, x, batch_size=2, precision="fp32"))
    assert torch.allclose(first, encode(bb, x, batch_size=8, precision="fp32"), atol=1e-5)


def test_pictures_and_their_pixels_give_the_same_eval_features(backbones):
    bb = backbones["tiny-biomedclip"]
    images, _ = tinted_images(2, 2)
    from_pictures = encode(bb, images, precision="fp32")
    from_pixels = encode(bb, bb.pixels(images).cpu(), precision="fp32")
    assert torch.allclose(from_pictures, from_pixels, atol=1e-5)


def test_the_cache_keys_content_view_prompts_and_precision(backbones):
    bb = backbones["tiny-biomedclip"]
    images, _ = tinted_images(2, 1)
    cache = FeatureCache()
    first = encode(bb, images, cache=cache, precision="fp32")
    assert (cache.misses, len(cache)) == (2, 2)
    copies = [image.copy() for image in images]  # other objects, same content: hits
    assert torch.equal(encode(bb, copies, cache=cache, precision="fp32"), first)
    assert cache.hits == 2
    encode(bb, images, cache=cache, vision_prompts=0, precision="fp32")
    encode(bb, images, cache=cache, view="rrc0.5-1#0", precision="fp32")
    encode(bb, images, cache=cache, precision="bf16")
    assert len(cache) == 8  # each setting its own features


def test_the_cache_drops_the_least_recently_used():
    cache = FeatureCache(max_items=2)
    for key in "abc":
        cache.put(key, torch.ones(3))
    assert cache.get("a") is None and cache.get("c") is not None and len(cache) == 2


def test_stopping_returns_nothing(backbones):
    bb = backbones["tiny-clip"]
    x, _ = tinted_pixels(2, 2)
    assert encode(bb, x, should_stop=lambda: True) is None
    assert encode_views(bb, [picture()], ["eval"], should_stop=lambda: True) is None


def test_views_stack_eval_first_and_count_progress(backbones):
    bb = backbones["tiny-clip"]
    images = [picture(i) for i in range(3)]
    seen = []
    views = encode_views(bb, images, ["eval"] + crop_views(2, (0.5, 1.0)), vision_prompts=0,
                         precision="fp32", progress=lambda done, total: seen.append((done, total)))
    assert views.shape == (3, 3, bb.embed_dim)
    assert torch.allclose(views[0], encode(bb, images, vision_prompts=0, precision="fp32"))
    assert seen[-1] == (9, 9)
    assert not torch.allclose(views[1], views[2])


def test_crops_are_fixed_per_image_key_and_view(backbones):
    bb = backbones["tiny-biomedclip"]
    image = picture()
    first, second = (view_transform(bb, f"rrc0.08-1#{i}") for i in (0, 1))
    assert torch.equal(first(image, "a/b.png"), first(image, "a/b.png"))
    assert not torch.equal(first(image, "a/b.png"), second(image, "a/b.png"))
    assert not torch.equal(first(image, "a/b.png"), first(image, "a/c.png"))
    # without keys, a picture's crop is seeded by its content
    a = encode(bb, [image], view="rrc0.08-1#0", precision="fp32")
    b = encode(bb, [image.copy()], view="rrc0.08-1#0", precision="fp32")
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="Unknown image view"):
        view_transform(bb, "flip")


def test_digests_see_content_not_identity():
    assert image_digest(picture(1)) == image_digest(picture(1))
    assert image_digest(picture(1)) != image_digest(picture(2))
    assert image_digest(picture(1)) != image_digest(picture(1).convert("L").convert("RGB"))


# ---- the image tower's paths against references -------------------------------------------
def test_vision_prompts_follow_a_hand_run_reference(bb):
    """1 + P + patches tokens, the prompts reset to zero before every block, removed before
    pooling: run block by block here and compared with the backbone's prompted path."""
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    p = 4
    with torch.no_grad():
        tokens, prefix = bb._image_tokens(x)
        rows, cols = bb.image_grid
        assert tokens.shape[1] == prefix + rows * cols  # 1 + 196 for a 224-px ViT-B/16
        counts = []
        for block in bb.image_blocks():
            zeros = tokens.new_zeros(tokens.shape[0], p, tokens.shape[2])
            patches = tokens[:, prefix:] if tokens.shape[1] == prefix + rows * cols else \
                tokens[:, prefix + p:]
            tokens = torch.cat([tokens[:, :prefix], zeros, patches], dim=1)
            counts.append(tokens.shape[1])
            tokens = block(tokens)
        tokens = torch.cat([tokens[:, :prefix], tokens[:, prefix + p:]], dim=1)
        reference = bb._image_head(tokens)
        ours = bb.encode_image(x, torch.zeros(p, bb.image_width))
    assert set(counts) == {prefix + p + rows * cols}
    assert torch.allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("prompts", [0, 4])
def test_the_attention_path_gives_the_encoders_features(bb, prompts):
    """Maps use `encode_image_with_attention`; its features must be the encoder's."""
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    tokens = torch.zeros(prompts, bb.image_width) if prompts else None
    with torch.no_grad():
        feats, attention = bb.encode_image_with_attention(x, tokens)
    expected = encode(bb, x, vision_prompts=prompts, precision="fp32")
    assert torch.allclose(F.normalize(feats, dim=-1), expected, atol=1e-5)
    rows, cols = bb.image_grid
    assert attention[0].shape[-1] == bb.image_prefix_tokens + prompts + rows * cols


# ---- the disk store -----------------------------------------------------------------------
def key(view="eval", n_vision_prompts=4) -> StoreKey:
    return StoreKey("fp", n_vision_prompts, view, "fp32", "TOY/test")


def fake_encoder(log: list):
    def encode_some(indices):
        log.append(list(indices))
        return torch.stack([torch.full((3,), float(i)) for i in indices])
    return encode_some


def test_store_encodes_only_missing_images_and_survives_a_restart(tmp_path):
    calls: list = []
    store = FeatureStore(tmp_path)
    a = store.features(key(), ["x", "y"], fake_encoder(calls))
    assert calls == [[0, 1]] and a[:, 0].tolist() == [0.0, 1.0]
    b = store.features(key(), ["y", "z", "x"], fake_encoder(calls))
    assert calls[-1] == [1]  # only z, at position 1 of the request
    assert b[:, 0].tolist() == [1.0, 1.0, 0.0]  # y and x from the store, z freshly encoded
    fresh = FeatureStore(tmp_path)  # a new process reads the file
    again = fresh.features(key(), ["z", "x", "y"], fake_encoder(calls))
    assert len(calls) == 2 and fresh.encoded == 0
    assert again[:, 0].tolist() == [1.0, 0.0, 1.0]
    other = fresh.features(key(n_vision_prompts=0), ["x"], fake_encoder(calls))
    assert len(calls) == 3 and other.shape == (1, 3)  # other settings: another file
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_a_damaged_store_file_is_rebuilt(tmp_path, caplog):
    store = FeatureStore(tmp_path)
    store.features(key(), ["x"], fake_encoder([]))
    store.path(key()).write_bytes(b"not a safetensors file")
    calls: list = []
    with caplog.at_level(logging.WARNING):
        out = FeatureStore(tmp_path).features(key(), ["x"], fake_encoder(calls))
    assert calls == [[0]] and out.shape == (1, 3)
    assert "damaged feature cache" in caplog.text
