"""The frozen vision-language backbone: loading, and the tower stages the prompts plug into.

This is the only module that knows open_clip, timm and transformers internals. Everything above it
talks to a `Backbone` through five stages:

- `text_ids(texts)`: token ids with the tokenizer's own start/end tokens, unpadded;
- `embed_tokens(ids)`: word embeddings, the space the learnable text context lives in;
- `encode_text_embeds(embeds, lengths)`: embeddings -> projected text features;
- `encode_image(pixels, prompts)`: pixels -> projected image features, with optional deep visual
  prompt tokens inserted after the class token and reset before every block;
- `logit_scale`, widths and lengths read from the model.

Two tower families are supported: BiomedCLIP's (timm ViT + Hugging Face BERT) and open_clip's
native ViT + causal text transformer.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlparse

import torch
import torch.nn as nn

from core.errors import BackboneUnavailable

log = logging.getLogger(__name__)

BIOMEDCLIP_HUB_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
DEFAULT_SPEC = "biomedclip"
OFFLINE_SPECS = ("tiny-biomedclip", "tiny-clip", "random-biomedclip")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_TEXT_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                         "tokenizer.json")
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_HUB_PROBE_TIMEOUT_S = 3.0


# --------------------------------------------------------------------------------------------
# Devices and precision
# --------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit choice is checked, not silently replaced."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackboneUnavailable("A GPU was requested (--device cuda) but none is available. "
                                  "Use --device cpu.")
    return device


def configure_cpu_threads() -> int:
    """Use every core this process may run on, unless the user chose a count (OMP_NUM_THREADS)."""
    if "OMP_NUM_THREADS" not in os.environ:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        torch.set_num_threads(max(1, cores))
    return torch.get_num_threads()


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matrix work is native (fast) here, not emulated (slow on CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps is None:
        return False
    try:
        found = caps()
    except Exception:  # capability probing must never break loading
        return False
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


PRECISION_ENV = "BIOMED_DPT_PRECISION"


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware has native bfloat16, else 'fp32'. The environment
    variable BIOMED_DPT_PRECISION (fp32 or bf16) decides 'auto' instead of the hardware, so a
    test run can force either compute path on any machine (bf16 runs, emulated, everywhere)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
    if precision == "auto":
        forced = os.environ.get(PRECISION_ENV, "").strip().lower()
        if forced in ("fp32", "bf16"):
            return forced
        if forced:
            raise ValueError(f"{PRECISION_ENV} must be fp32 or bf16, not {forced!r}")
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off: logits, softmax and losses, every number shown, in fp32."""
    return torch.autocast(device_type=device.type, enabled=False)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the frozen towers; weights stay fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Backbone:
    """A frozen open_clip model plus the tower stages the prompt module needs."""

    model: nn.Module
    tokenizer: Callable
    preprocess: Callable
    device: torch.device
    name: str
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    image_size: int = 224
    _fingerprint: str | None = field(default=None, repr=False)
    _dropout_tower: nn.Module | None = field(default=None, repr=False)

    # ---- tower families -------------------------------------------------------------------
    @property
    def hf_text(self) -> bool:
        """Text tower is a Hugging Face encoder (BiomedCLIP's BERT), not open_clip's own."""
        return type(getattr(self.model, "text", None)).__name__ == "HFTextEncoder"

    @property
    def timm_vision(self) -> bool:
        """Image tower is a timm ViT (BiomedCLIP's), not open_clip's own."""
        return hasattr(self.model.visual, "trunk")

    @property
    def family(self) -> str:
        return "biomedclip-like" if self.hf_text else "clip"

    # ---- sizes, read from the model -------------------------------------------------------
    @property
    def text_width(self) -> int:
        return self._word_embeddings.embedding_dim

    @property
    def image_width(self) -> int:
        if self.timm_vision:
            return self.model.visual.trunk.embed_dim
        return self.model.visual.class_embedding.shape[-1]

    @property
    def embed_dim(self) -> int:
        """Width of the joint image-text feature space."""
        if self.hf_text:
            return int(self.model.text.output_dim)
        proj = self.model.text_projection
        return int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[-1])

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)

    @property
    def pad_id(self) -> int:
        if self.hf_text:
            return int(self.model.text.config.pad_token_id)
        return 0

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().exp()

    @property
    def fingerprint(self) -> str:
        """A short hash of the architecture and a sample of the weights: identifies the backbone
        whatever path or hub id it was loaded from."""
        if self._fingerprint is None:
            self._fingerprint = _weights_fingerprint(self.model)
        return self._fingerprint

    @property
    def word_embedding_rms(self) -> float:
        """Root mean square of the word-embedding table: the scale of the text context space."""
        return float(self._word_embeddings.weight.detach().float().pow(2).mean().sqrt())

    @property
    def _word_embeddings(self) -> nn.Embedding:
        if self.hf_text:
            return self.model.text.transformer.get_input_embeddings()
        return self.model.token_embedding

    # ---- text stages ----------------------------------------------------------------------
    def text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text with start and end tokens, without padding (truncated to the
        context length as the tokenizer does)."""
        padded = self.tokenizer(list(texts))
        return [row[: int(n)].tolist() for row, n in zip(padded, self._real_lengths(padded))]

    def _real_lengths(self, ids: torch.Tensor) -> torch.Tensor:
        if self.hf_text:
            return (ids != self.pad_id).sum(dim=1)
        return ids.argmax(dim=1) + 1  # the end token has the highest id in CLIP's vocabulary

    @property
    def special_ids(self) -> tuple[int, int]:
        """(start, end) token ids."""
        ids = self.text_ids([""])[0]
        return ids[0], ids[-1]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self._word_embeddings(ids)

    def encode_text_embeds(self, embeds: torch.Tensor, lengths: torch.Tensor,
                           dropout: bool = False) -> torch.Tensor:
        """(B, L, W) word embeddings whose first `lengths[b]` positions are real -> (B, D).
        `dropout`: run the text tower with its dropout active (as the method's released code
        trains), through a twin of the tower that shares its weights, so that no module's mode
        ever changes and concurrent callers never see each other's setting."""
        positions = torch.arange(embeds.shape[1], device=embeds.device)
        tower = self._text_tower(dropout)
        if self.hf_text:
            text = self.model.text
            mask = (positions[None, :] < lengths[:, None]).long()
            out = tower(inputs_embeds=embeds, attention_mask=mask)
            return text.proj(text.pooler(out, mask))
        m = self.model
        x = embeds + m.positional_embedding[: embeds.shape[1]].to(embeds.dtype)
        length = embeds.shape[1]
        x = tower(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        if m.text_pool_type == "first":
            pooled = x[:, 0]
        else:  # 'argmax' / 'eos': the end token, the last real position
            pooled = x[torch.arange(x.shape[0], device=x.device), lengths - 1]
        proj = m.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj

    def _text_tower(self, dropout: bool) -> nn.Module:
        """The text transformer in evaluation mode, or (dropout) its twin in training mode: a
        structural copy sharing every parameter and buffer, made once."""
        tower = self.model.text.transformer if self.hf_text else self.model.transformer
        if not dropout:
            return tower
        if self._dropout_tower is None:
            import copy

            shared = {id(t): t for t in (*tower.parameters(), *tower.buffers())}
            twin = copy.deepcopy(tower, memo=shared)
            self._dropout_tower = twin.train()
        return self._dropout_tower

    # ---- image stage ----------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor, prompts: torch.Tensor | None = None,
                     overwrite: bool = False) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D). `prompts` (P, width) are inserted after the class token and
        reset to their values before every block (deep visual prompts); they are removed before
        pooling. `overwrite`: instead of being inserted they replace the first P patch tokens
        before every block (the released code's layout: the sequence keeps its length and those
        patches are lost)."""
        return self._run_image(pixels, prompts, attention=None, overwrite=overwrite)

    def encode_image_with_attention(self, pixels: torch.Tensor, prompts: torch.Tensor | None = None,
                                    overwrite: bool = False
                                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`encode_image`, plus every block's attention probabilities (B, heads, N, N) as part of
        the autograd graph, so that gradients with respect to them can be taken. Attention is
        computed explicitly from each block's own weights; no module is changed or hooked, so
        concurrent calls are safe. Token order: prefix (class) tokens, prompts, patches (with
        `overwrite`, the patches after the first P)."""
        attention: list[torch.Tensor] = []
        return self._run_image(pixels, prompts, attention, overwrite), attention

    def _run_image(self, pixels: torch.Tensor, prompts: torch.Tensor | None,
                   attention: list[torch.Tensor] | None, overwrite: bool = False) -> torch.Tensor:
        tokens, prefix = self._image_tokens(pixels)
        n_prompts = 0 if prompts is None else prompts.shape[0]

        def with_prompts(x: torch.Tensor) -> torch.Tensor:
            p = prompts.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
            return torch.cat([x[:, :prefix], p, x[:, prefix + n_prompts:]], dim=1)

        if n_prompts and not overwrite:
            tokens = torch.cat([tokens[:, :prefix], tokens.new_zeros(tokens.shape[0], n_prompts,
                                tokens.shape[2]), tokens[:, prefix:]], dim=1)
        blocks = self.image_blocks() if attention is None else self._raw_image_blocks()
        for block in blocks:
            if n_prompts:
                tokens = with_prompts(tokens)
            tokens = block(tokens) if attention is None else _block_keeping_attention(
                block, tokens, attention)
        if n_prompts and not overwrite:
            tokens = torch.cat([tokens[:, :prefix], tokens[:, prefix + n_prompts:]], dim=1)
        return self._image_head(tokens)

    def image_blocks(self) -> Sequence[nn.Module]:
        """The transformer blocks of the image tower, each mapping (B, N, width) -> same."""
        blocks = self._raw_image_blocks()
        if self.timm_vision or self.model.visual.transformer.batch_first:
            return blocks
        return [_SequenceFirst(block) for block in blocks]

    def _raw_image_blocks(self) -> list[nn.Module]:
        if self.timm_vision:
            return list(self.model.visual.trunk.blocks)
        return list(self.model.visual.transformer.resblocks)

    @property
    def image_grid(self) -> tuple[int, int]:
        """Patch grid (rows, columns) of the image tower."""
        if self.timm_vision:
            return tuple(self.model.visual.trunk.patch_embed.grid_size)
        return tuple(self.model.visual.grid_size)

    @property
    def image_prefix_tokens(self) -> int:
        """Tokens before the patches (and before any prompts): the class token, registers."""
        return self.model.visual.trunk.num_prefix_tokens if self.timm_vision else 1

    @property
    def image_pooling(self) -> str:
        """'token' (the class token is the image feature) or 'avg' (mean of patch tokens)."""
        pool = (self.model.visual.trunk.global_pool if self.timm_vision
                else self.model.visual.pool_type)
        if pool in ("token", "tok"):
            return "token"
        if pool == "avg":
            return "avg"
        raise BackboneUnavailable(f"Image pooling {pool!r} is not supported for attention maps.")

    def _image_tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Patch + class tokens with positions, before the first block; and the prefix count."""
        if self.timm_vision:
            trunk = self.model.visual.trunk
            x = trunk.patch_embed(pixels)
            x = trunk._pos_embed(x)
            x = trunk.patch_drop(x)
            return trunk.norm_pre(x), trunk.num_prefix_tokens
        return self.model.visual._embeds(pixels), 1

    def _image_head(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        if self.timm_vision:
            x = visual.trunk.forward_head(visual.trunk.norm(tokens))
            return visual.head(x)
        pooled, _ = visual._pool(tokens)
        return pooled @ visual.proj if visual.proj is not None else pooled

    # ---- conveniences ---------------------------------------------------------------------
    def pixels(self, images: Sequence) -> torch.Tensor:
        """PIL images -> (B, 3, H, W) on the device, with the model's evaluation transform."""
        return torch.stack([self.preprocess(image) for image in images]).to(self.device)


def _block_keeping_attention(block: nn.Module, x: torch.Tensor, attention: list[torch.Tensor]
                             ) -> torch.Tensor:
    """One pre-norm transformer block in evaluation mode, with its attention computed
    explicitly; appends the attention probabilities (B, heads, N, N) to `attention`."""
    batch, n, width = x.shape
    if hasattr(block, "norm1") and hasattr(block.attn, "qkv"):  # timm ViT block
        attn = block.attn
        if getattr(attn, "gate", None) is not None:
            raise BackboneUnavailable("Gated attention is not supported for attention maps.")
        heads, head_dim = attn.num_heads, attn.head_dim
        qkv = attn.qkv(block.norm1(x)).reshape(batch, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        probs = (q * attn.scale @ k.transpose(-2, -1)).softmax(dim=-1)
        out = attn.proj(attn.norm((probs @ v).transpose(1, 2).reshape(batch, n, -1)))
        x = x + block.ls1(out)
        x = x + block.ls2(block.mlp(block.norm2(x)))
    elif hasattr(block, "ln_1") and isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
        mha = block.attn  # open_clip's own residual block
        heads = mha.num_heads
        head_dim = width // heads
        qkv = nn.functional.linear(block.ln_1(x), mha.in_proj_weight, mha.in_proj_bias)
        q, k, v = qkv.reshape(batch, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        probs = (q @ k.transpose(-2, -1) / head_dim ** 0.5).softmax(dim=-1)
        out = mha.out_proj((probs @ v).transpose(1, 2).reshape(batch, n, width))
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    else:
        raise BackboneUnavailable(f"Attention maps are not supported for {type(block).__name__} "
                                  "blocks.")
    attention.append(probs)
    return x


class _SequenceFirst(nn.Module):
    """Adapts a sequence-first residual block to batch-first tokens."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.transpose(0, 1)).transpose(0, 1)


def _weights_fingerprint(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    params = dict(model.named_parameters())
    for name in sorted(params)[:: max(1, len(params) // 16)] + ["logit_scale"]:
        sample = params[name].detach().flatten()[:4096].to("cpu", torch.float32)
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def load_backbone(spec: str = DEFAULT_SPEC, device: str | torch.device | None = None) -> Backbone:
    """Load a frozen backbone.

    spec: 'biomedclip' (the default), 'hf-hub:ORG/NAME', 'local-dir:PATH', or one of the offline
    random-weight backbones 'tiny-biomedclip', 'tiny-clip', 'random-biomedclip'.
    """
    device = resolve_device(device)
    if device.type == "cpu":
        configure_cpu_threads()
    spec = spec.strip()
    if spec == DEFAULT_SPEC:
        spec = f"hf-hub:{BIOMEDCLIP_HUB_ID}"
    if spec in OFFLINE_SPECS:
        model, tokenizer, preprocess = _build_random(spec)
    elif spec.startswith("hf-hub:"):
        model, tokenizer, preprocess = _load_from_hub(spec[len("hf-hub:"):])
    elif spec.startswith("local-dir:"):
        model, tokenizer, preprocess = _load_from_dir(Path(spec[len("local-dir:"):]).expanduser())
    else:
        raise BackboneUnavailable(
            f"Unknown backbone {spec!r}. Use 'biomedclip', 'hf-hub:ORG/NAME', 'local-dir:PATH', "
            f"or one of {', '.join(OFFLINE_SPECS)}.")
    return _freeze(model, tokenizer, preprocess, device, spec)


def _freeze(model: nn.Module, tokenizer, preprocess, device: torch.device, name: str) -> Backbone:
    model = model.to(device=device, dtype=torch.float32).eval()
    model.requires_grad_(False)
    if not hasattr(model, "text") and model.text_pool_type not in ("argmax", "eos", "first"):
        raise BackboneUnavailable(f"Backbone {name!r} pools text with {model.text_pool_type!r}, "
                                  "which prompt tuning does not support.")
    norm = _find_normalize(preprocess)
    image_size = getattr(model.visual, "image_size", 224)
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    return Backbone(model=model, tokenizer=tokenizer, preprocess=preprocess, device=device,
                    name=name, mean=tuple(norm.mean), std=tuple(norm.std),
                    image_size=image_size)


def _find_normalize(preprocess):
    for t in getattr(preprocess, "transforms", []):
        if type(t).__name__ == "Normalize":
            return t
    raise BackboneUnavailable("The backbone's image transform has no normalisation step.")


class _DropRandomInitNotes(logging.Filter):
    """open_clip warns on the root logger that a model without weights is random: for the
    offline random backbones that is the point, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname or record.levelno >= logging.ERROR


def _create(folder: Path, has_weights: bool):
    import open_clip  # heavy: imported only when a model is actually loaded

    source = f"local-dir:{folder}"
    quiet = _DropRandomInitNotes()
    if not has_weights:
        logging.getLogger().addFilter(quiet)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            source, pretrained_text=False, pretrained_image=False, load_weights=has_weights)
        tokenizer = open_clip.get_tokenizer(source)
    except Exception as exc:  # open_clip raises many types; the person needs one message
        raise BackboneUnavailable(f"The model files in {folder} could not be loaded ({exc}). "
                                  "Download them again or point to a complete folder.") from exc
    finally:
        logging.getLogger().removeFilter(quiet)
    return model, tokenizer, preprocess


def _stage(config: dict, text_dir: Path | None, weights: Path | None, stage: Path) -> Path:
    """Lay out one self-contained open_clip folder: the config (pointing at itself for the text
    tower and tokenizer), links to the weights and the text tower's config and tokenizer files."""
    config = json.loads(json.dumps(config))
    text_cfg = config["model_cfg"].get("text_cfg", {})
    if text_dir is not None:
        text_cfg["hf_model_name"] = str(stage)
        text_cfg["hf_tokenizer_name"] = str(stage)
        for name in ("config.json",) + _TEXT_TOKENIZER_FILES:
            if (text_dir / name).is_file():
                (stage / name).symlink_to((text_dir / name).resolve())
    if weights is not None:
        (stage / weights.name).symlink_to(weights.resolve())
    (stage / "open_clip_config.json").write_text(json.dumps(config))
    return stage


def _load_staged(config: dict, text_dir: Path | None, weights: Path | None):
    with tempfile.TemporaryDirectory(prefix="biomed-dpt-backbone-") as tmp:
        return _create(_stage(config, text_dir, weights, Path(tmp)), weights is not None)


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackboneUnavailable(f"{path} is not a readable open_clip config ({exc}).") from exc
    if "model_cfg" not in config:
        raise BackboneUnavailable(f"{path} has no 'model_cfg': it is not an open_clip config.")
    return config


def _load_from_dir(folder: Path):
    """An open_clip folder on disk: open_clip_config.json and weights. The text tower's config and
    tokenizer are read from the folder itself, from a local folder the config names, or from the
    Hugging Face cache; never from the network."""
    if not folder.is_dir():
        raise BackboneUnavailable(f"The folder {folder} does not exist.")
    config = _read_config(folder / "open_clip_config.json")
    weights = next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise BackboneUnavailable(
            f"{folder} holds no weights file ({' or '.join(_WEIGHT_FILES)}).")
    text_name = config["model_cfg"].get("text_cfg", {}).get("hf_model_name")
    text_dir = None
    if text_name:
        if (folder / "config.json").is_file() and (folder / "vocab.txt").is_file():
            text_dir = folder
        elif Path(text_name).expanduser().is_dir():
            text_dir = Path(text_name).expanduser()
        else:
            text_dir = _cached_text_files(text_name, allow_download=False)
    return _load_staged(config, text_dir, weights)


def _load_from_hub(repo_id: str):
    """A Hugging Face Hub model: from the local cache when it is there (no network), else a
    download, but only after a quick check that the hub can be reached at all."""
    try:
        folder, config = _cached_hub_model(repo_id, allow_download=False)
    except _NotCached:
        _check_hub_reachable(repo_id)
        folder, config = _cached_hub_model(repo_id, allow_download=True)
    weights = next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), None)
    text_name = config["model_cfg"].get("text_cfg", {}).get("hf_model_name")
    text_dir = None
    if text_name:
        try:
            text_dir = _cached_text_files(text_name, allow_download=False)
        except _NotCached:
            _check_hub_reachable(text_name)
            text_dir = _cached_text_files(text_name, allow_download=True)
    return _load_staged(config, text_dir, weights)


class _NotCached(BackboneUnavailable):
    pass


def _fix_hint(repo_id: str) -> str:
    return (f"Load it once on a machine with internet access (`python -c \"from core.backbone "
            f"import load_backbone; load_backbone('hf-hub:{repo_id}')\"`) so that it is in the "
            f"Hugging Face cache, or pass --backbone local-dir:/path/to/folder with the model "
            f"files. To try the app without the real model, use --backbone tiny-biomedclip.")


def _hub_file(repo_id: str, filename: str, allow_download: bool) -> Path | None:
    """Local path of one file of a hub repository; None when the repository has no such file or,
    without download, when the cache does not hold it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=not allow_download))
    except LocalEntryNotFoundError:
        if allow_download:
            raise BackboneUnavailable(f"Could not download {repo_id}. " + _fix_hint(repo_id)) from None
        return None
    except EntryNotFoundError:
        return None
    except Exception as exc:  # network and hub errors of every kind
        raise BackboneUnavailable(f"Could not fetch {filename} of {repo_id} ({exc}). "
                                  + _fix_hint(repo_id)) from exc


def _required_hub_file(repo_id: str, filename: str, allow_download: bool) -> Path:
    path = _hub_file(repo_id, filename, allow_download)
    if path is not None:
        return path
    if not allow_download:
        raise _NotCached(f"{repo_id} is not in the local cache. " + _fix_hint(repo_id))
    raise BackboneUnavailable(f"{repo_id} has no file {filename}; it is not a usable model.")


def _cached_hub_model(repo_id: str, allow_download: bool) -> tuple[Path, dict]:
    config = _read_config(_required_hub_file(repo_id, "open_clip_config.json", allow_download))
    weights = [_hub_file(repo_id, name, allow_download) for name in _WEIGHT_FILES]
    if not any(weights):
        _required_hub_file(repo_id, _WEIGHT_FILES[-1], allow_download)
    folder = next(w for w in weights if w is not None).parent
    return folder, config


def _cached_text_files(repo_id: str, allow_download: bool) -> Path:
    """The text tower's config and tokenizer files (no weights: the CLIP checkpoint holds them)."""
    config = _required_hub_file(repo_id, "config.json", allow_download)
    _required_hub_file(repo_id, "vocab.txt", allow_download)
    for name in _TEXT_TOKENIZER_FILES[1:]:
        _hub_file(repo_id, name, allow_download)
    return config.parent


def hub_cache_status(repo_id: str = BIOMEDCLIP_HUB_ID) -> tuple[bool, str]:
    """(cached, explanation): whether a hub model's weights and config, and its text tower's
    config and vocabulary, are all in the Hugging Face cache, as the loader looks for them;
    checked without the network."""
    try:
        _, config = _cached_hub_model(repo_id, allow_download=False)
    except _NotCached:
        return False, f"{repo_id} is not in the Hugging Face cache"
    except BackboneUnavailable as exc:
        return False, str(exc)
    text = config.get("model_cfg", {}).get("text_cfg", {}).get("hf_model_name")
    if text and not Path(str(text)).is_dir():
        try:
            _cached_text_files(text, allow_download=False)
        except BackboneUnavailable:
            return False, f"the text tower {text} lacks config.json or vocab.txt in the cache"
    return True, f"{repo_id} and its text tower's files are cached"


def _check_hub_reachable(repo_id: str) -> None:
    """Fail in seconds, not after the hub client's retries, when there is no network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise BackboneUnavailable(f"{repo_id} is not in the local cache and HF_HUB_OFFLINE is set. "
                                  + _fix_hint(repo_id))
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)

    def connect() -> None:
        with socket.create_connection((host, port), timeout=_HUB_PROBE_TIMEOUT_S):
            pass

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=_HUB_PROBE_TIMEOUT_S + 1)
    except Exception:
        raise BackboneUnavailable(f"{repo_id} is not in the local cache and {host} cannot be "
                                  f"reached from this machine. " + _fix_hint(repo_id)) from None
    finally:
        pool.shutdown(wait=False)  # a DNS lookup that hangs must not hold the caller


# --------------------------------------------------------------------------------------------
# Offline random-weight backbones (tests, CI, benchmarks, trying the UI)
# --------------------------------------------------------------------------------------------
_RANDOM_SEED = 20250508

_BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, vocab_size=30522, initializer_range=0.02)
# BERT's usual 0.02 init makes a 2-layer, 64-wide random tower blind to its input (every class
# prompt gets the same feature to 1e-4); a wider init gives the tiny tower input-dependent
# features, so tests of learning have something to learn.
_BERT_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128, vocab_size=2048, initializer_range=0.3)


def _build_random(spec: str):
    """Random weights, seeded: the same spec gives bit-identical models in every process."""
    with tempfile.TemporaryDirectory(prefix="biomed-dpt-random-") as tmp:
        folder = Path(tmp)
        if spec == "tiny-clip":
            config = _native_clip_config()
        else:
            bert = _BERT_BASE if spec == "random-biomedclip" else _BERT_TINY
            vit = "vit_base_patch16_224" if spec == "random-biomedclip" else "vit_tiny_patch16_224"
            config = _biomedclip_like_config(vit, 512 if spec == "random-biomedclip" else 64, folder)
            _write_bert_folder(folder, **bert)
        (folder / "open_clip_config.json").write_text(json.dumps(config))
        # Import the model libraries before seeding, so that nothing they do when first imported
        # can move the random stream the weights are drawn from.
        import open_clip  # noqa: F401
        import timm  # noqa: F401
        import transformers  # noqa: F401

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_RANDOM_SEED)
            return _create(folder, has_weights=False)


def _biomedclip_like_config(timm_name: str, embed_dim: int, text_dir: Path) -> dict:
    return {
        "model_cfg": {
            "embed_dim": embed_dim,
            "vision_cfg": {"timm_model_name": timm_name, "timm_model_pretrained": False,
                           "timm_pool": "", "timm_proj": "linear", "image_size": 224},
            "text_cfg": {"hf_model_name": str(text_dir), "hf_tokenizer_name": str(text_dir),
                         "hf_proj_type": "mlp",
                         "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 256},
        },
        "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
    }


def _native_clip_config() -> dict:
    return {
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32,
                           "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                         "layers": 2},
        },
        "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
    }


def _write_bert_folder(folder: Path, hidden_size: int, num_hidden_layers: int,
                       num_attention_heads: int, intermediate_size: int, vocab_size: int,
                       initializer_range: float) -> None:
    """A BERT config and an uncased WordPiece vocabulary: special tokens at BERT's ids, every
    lower-case letter and digit (alone and as a continuation) so any text can be tokenised, then
    whole words common in clinical prompts."""
    bert = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": hidden_size,
            "num_hidden_layers": num_hidden_layers, "num_attention_heads": num_attention_heads,
            "intermediate_size": intermediate_size, "vocab_size": vocab_size,
            "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "initializer_range": initializer_range}
    (folder / "config.json").write_text(json.dumps(bert))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
         "model_max_length": 256}))
    (folder / "vocab.txt").write_text("\n".join(_generated_vocab(vocab_size)) + "\n")


def _generated_vocab(size: int) -> list[str]:
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    symbols = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab += symbols + ["##" + s for s in symbols if s.isalnum()]
    for word in _PROMPT_WORDS.split():
        if word not in vocab:
            vocab.append(word)
    vocab += [f"[unused{i}]" for i in range(99, 99 + size - len(vocab))]
    return vocab[:size]


_PROMPT_WORDS = """
a an the of in on with and or no not photo image scan view showing shows show there is are
mr mri ct x ray xray chest frontal lateral ultrasound oct fundus dermatoscopy dermoscopy
histopathological histopathology histology endoscopic endoscopy microscopy photograph
brain breast lung lungs kidney knee skin retina colon colorectal liver heart bone tissue
tumor tumour glioma meningioma pituitary normal benign malignant cyst stone lesion nodule mass
covid pneumonia opacity infection effusion fracture grade healthy disease cancer carcinoma
adenocarcinoma polyp polyps ulcer inflammation edema oedema drusen choroidal neovascularization
diabetic retinopathy glaucoma cataract melanoma nevus keratosis basal cell squamous vascular
dermatofibroma adipose debris lymphocytes mucus muscle stroma epithelium cells cell
affected by from at to as its bright dark round irregular smooth sharp well defined borders
margin margins shape size small large enhancing enhancement calcification contrast signal
"""
