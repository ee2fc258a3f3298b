"""`Backbone`: a frozen open_clip model and the tower stages the prompts plug into (the package's
docstring lists them), for both tower families: BiomedCLIP's (timm ViT + Hugging Face BERT) and
open_clip's native ViT + causal text transformer.

Attention maps are computed here from each block's own weights (`_block_keeping_attention`): no
module is hooked or changed, so concurrent calls are safe.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from core.errors import BackboneUnavailable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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

