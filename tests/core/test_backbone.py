"""Backbone loading (offline specs, hub cache, local folders) and the tower stages."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

import core.backbone.offline as offline
from core.backbone import (BackboneUnavailable, bf16_supported, load_backbone, resolve_device,
                           resolve_precision)


def test_offline_backbones_have_the_expected_tower_families(backbones):
    assert backbones["tiny-biomedclip"].family == "biomedclip-like"
    assert backbones["tiny-biomedclip"].hf_text and backbones["tiny-biomedclip"].timm_vision
    assert backbones["tiny-clip"].family == "clip"
    assert not backbones["tiny-clip"].hf_text and not backbones["tiny-clip"].timm_vision


def test_sizes_are_read_from_the_model(backbones):
    bmc, clip = backbones["tiny-biomedclip"], backbones["tiny-clip"]
    assert (bmc.text_width, bmc.image_width, bmc.embed_dim, bmc.context_length) == (64, 192, 64, 256)
    assert (clip.text_width, clip.image_width, clip.embed_dim, clip.context_length) == (64, 64, 32, 77)
    assert bmc.special_ids == (101, 102) and bmc.pad_id == 0
    assert clip.special_ids == (49406, 49407)


def test_backbone_is_frozen_and_in_eval_mode(bb):
    assert not bb.model.training
    assert all(not p.requires_grad for p in bb.model.parameters())


def test_random_backbones_are_identical_across_loads(bb):
    again = load_backbone(bb.name, "cpu")
    assert again.fingerprint == bb.fingerprint
    for (name, a), (_, b) in zip(bb.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_image_stage_without_prompts_equals_encode_image(bb):
    pixels = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = bb.encode_image(pixels)
        reference = bb.model.encode_image(pixels)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_deep_prompts_change_features_but_not_shape(bb):
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = bb.encode_image(pixels)
        prompted = bb.encode_image(pixels, torch.zeros(4, bb.image_width))
    assert prompted.shape == plain.shape
    assert (prompted - plain).abs().max() > 1e-4


def test_overwritten_prompts_are_the_released_vision_layout(backbones):
    """The released code's `CLIP_Inplanted`, written out on timm's trunk: four zero tokens
    replace sequence positions 1-4 before every block; 197 tokens, not 201."""
    bb = backbones["tiny-biomedclip"]
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    trunk, head = bb.model.visual.trunk, bb.model.visual.head
    with torch.no_grad():
        x = trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(pixels))))
        for block in trunk.blocks:
            x = torch.cat([x[:, :1], torch.zeros_like(x[:, 1:5]), x[:, 5:]], dim=1)
            x = block(x)
        reference = head(trunk.head(trunk.fc_norm(trunk.norm(x)[:, 0])))
        prompts = torch.zeros(4, bb.image_width)
        ours = bb.encode_image(pixels, prompts, overwrite=True)
        inserted = bb.encode_image(pixels, prompts)
        _, attention = bb.encode_image_with_attention(pixels, prompts, overwrite=True)
        _, attention_inserted = bb.encode_image_with_attention(pixels, prompts)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert (ours - inserted).abs().max() > 1e-4
    assert attention[0].shape[-1] == 197 and attention_inserted[0].shape[-1] == 201


def test_truncated_text_equals_text_padded_to_full_context(bb):
    texts = ["a MR photo of a glioma in the brain.", "normal", "a chest X-ray photo of a "
             "pneumonia affected by COVID-19 in the lung."]
    ids = bb.text_ids(texts)
    assert all(row[0] == bb.special_ids[0] and row[-1] == bb.special_ids[1] for row in ids)
    length = max(len(r) for r in ids)
    batch = torch.full((len(ids), length), bb.pad_id, dtype=torch.long)
    for i, row in enumerate(ids):
        batch[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        truncated = bb.encode_text_embeds(bb.embed_tokens(batch), torch.tensor([len(r) for r in ids]))
        padded = bb.model.encode_text(bb.tokenizer(texts))
    assert length < bb.context_length
    assert torch.allclose(truncated, padded, atol=1e-5)


def test_text_dropout_runs_on_a_weight_sharing_twin_and_changes_no_shared_state(bb):
    tower = bb.model.text.transformer if bb.hf_text else bb.model.transformer
    ids = torch.tensor(bb.text_ids(["a photo of a glioma in the brain."]))
    embeds, lengths = bb.embed_tokens(ids), torch.tensor([ids.shape[1]])
    with torch.no_grad():
        plain = bb.encode_text_embeds(embeds, lengths)
        torch.manual_seed(0)
        dropped = bb.encode_text_embeds(embeds, lengths, dropout=True)
        again = bb.encode_text_embeds(embeds, lengths)
    assert not tower.training and not any(m.training for m in tower.modules())
    assert torch.equal(plain, again)  # the shared tower never left evaluation mode
    twin = bb._text_tower(True)
    assert twin is not tower and twin.training
    assert all(a is b for a, b in zip(twin.parameters(), tower.parameters()))
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in tower.modules()):
        assert not torch.allclose(plain, dropped)


def test_precision_can_be_forced_from_the_environment(monkeypatch):
    cpu = torch.device("cpu")
    for forced in ("fp32", "bf16"):
        monkeypatch.setenv("BIOMED_DPT_PRECISION", forced)
        assert resolve_precision("auto", cpu) == forced
        assert resolve_precision("fp32", cpu) == "fp32"  # an explicit choice is kept
    monkeypatch.setenv("BIOMED_DPT_PRECISION", "fp8")
    with pytest.raises(ValueError, match="BIOMED_DPT_PRECISION"):
        resolve_precision("auto", cpu)


def test_unknown_spec_says_what_is_accepted():
    with pytest.raises(BackboneUnavailable, match="tiny-biomedclip"):
        load_backbone("biomed-clip-please")


def test_precision_resolution(monkeypatch):
    monkeypatch.delenv("BIOMED_DPT_PRECISION", raising=False)
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if bf16_supported(cpu) else "fp32")
    with pytest.raises(ValueError):
        resolve_precision("fp8", cpu)


def test_asking_for_a_missing_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None).type == "cpu"
    with pytest.raises(BackboneUnavailable, match="--device cpu"):
        resolve_device("cuda")


# ---- folders and the hub cache ------------------------------------------------------------
def _write_open_clip_folder(bb, folder, text_name):
    """An open_clip folder like BiomedCLIP's release, holding `bb`'s weights; the text tower's
    config and tokenizer are named by `text_name` (a hub id or a folder)."""
    folder.mkdir(parents=True)
    config = offline._biomedclip_like_config("vit_tiny_patch16_224", 64, folder)
    config["model_cfg"]["text_cfg"]["hf_model_name"] = text_name
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = text_name
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in bb.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


def _write_text_folder(folder):
    folder.mkdir(parents=True)
    offline._write_bert_folder(folder, **offline._BERT_TINY)


def _hub_snapshot(cache, repo_id, source):
    """Lay out `source`'s files as the Hugging Face cache holds a downloaded repository."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def no_downloads(monkeypatch):
    """Fail the test if anything tries to reach the network."""
    import huggingface_hub

    real = huggingface_hub.hf_hub_download

    def guarded(*args, **kwargs):
        assert kwargs.get("local_files_only"), "a download was attempted"
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", guarded)


def test_local_dir_loads_the_saved_weights_offline(backbones, tmp_path):
    bb = backbones["tiny-biomedclip"]
    folder = tmp_path / "biomedclip"
    _write_open_clip_folder(bb, folder, str(folder))
    offline._write_bert_folder(folder, **offline._BERT_TINY)
    loaded = load_backbone(f"local-dir:{folder}", "cpu")
    assert loaded.fingerprint == bb.fingerprint
    assert loaded.name == f"local-dir:{folder}"
    assert loaded.text_ids(["a glioma"]) == bb.text_ids(["a glioma"])


def test_local_dir_reads_text_files_from_a_named_folder(backbones, tmp_path):
    bb = backbones["tiny-biomedclip"]
    _write_text_folder(tmp_path / "bert")
    _write_open_clip_folder(bb, tmp_path / "clip", str(tmp_path / "bert"))
    assert load_backbone(f"local-dir:{tmp_path / 'clip'}", "cpu").fingerprint == bb.fingerprint


def test_local_dir_problems_are_clear(backbones, tmp_path):
    with pytest.raises(BackboneUnavailable, match="does not exist"):
        load_backbone(f"local-dir:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneUnavailable, match="open_clip config"):
        load_backbone(f"local-dir:{tmp_path / 'empty'}")
    folder = tmp_path / "noweights"
    _write_open_clip_folder(backbones["tiny-biomedclip"], folder, str(folder))
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(BackboneUnavailable, match="no weights"):
        load_backbone(f"local-dir:{folder}")


def test_hub_model_loads_from_the_cache_without_network(backbones, tmp_path, hub_cache, no_downloads):
    bb = backbones["tiny-biomedclip"]
    _write_text_folder(tmp_path / "bert")
    _write_open_clip_folder(bb, tmp_path / "clip", "example/tiny-bert")
    _hub_snapshot(hub_cache, "example/tiny-bert", tmp_path / "bert")
    _hub_snapshot(hub_cache, "example/tiny-biomedclip", tmp_path / "clip")
    loaded = load_backbone("hf-hub:example/tiny-biomedclip", "cpu")
    assert loaded.fingerprint == bb.fingerprint
    assert loaded.name == "hf-hub:example/tiny-biomedclip"


def test_cache_status_is_the_loaders_view_of_the_cache(backbones, tmp_path, hub_cache, no_downloads):
    from core.backbone import hub_cache_status

    bb = backbones["tiny-biomedclip"]
    assert hub_cache_status("example/tiny-biomedclip") == (
        False, "example/tiny-biomedclip is not in the Hugging Face cache")
    _write_open_clip_folder(bb, tmp_path / "clip", "example/tiny-bert")
    _hub_snapshot(hub_cache, "example/tiny-biomedclip", tmp_path / "clip")
    cached, why = hub_cache_status("example/tiny-biomedclip")
    assert not cached and "text tower example/tiny-bert" in why
    _write_text_folder(tmp_path / "bert")
    _hub_snapshot(hub_cache, "example/tiny-bert", tmp_path / "bert")
    assert hub_cache_status("example/tiny-biomedclip")[0] is True


def test_uncached_hub_model_offline_fails_at_once_with_a_fix(hub_cache, no_downloads, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneUnavailable) as info:
        load_backbone("biomedclip")
    message = str(info.value)
    assert "local-dir:" in message and "internet access" in message


def test_uncached_hub_model_with_hub_unreachable_fails_before_any_download(
        hub_cache, no_downloads, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(BackboneUnavailable, match="cannot be reached"):
        load_backbone("biomedclip")
