"""Where the model looked: class-specific relevance maps for the prompted ViT, and overlays.

`"relevance"` (default) is the gradient-weighted attention relevance of Chefer et al., "Generic
Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers" (ICCV
2021), for the score s * f . t_c of the image feature f against class c's learned-prompt text
feature t_c. Starting from R = I, every block b updates R <- R + mean_heads((dS/dA_b * A_b)^+) R;
the pooled token's row of R, over the patch tokens, is the map. The zero vision prompts take part
in the propagation like any token and are dropped when the row is laid onto the patch grid.

`"rollout"` is attention rollout (Abnar & Zuidema, 2020): the product over blocks of the
head-averaged attention with the residual added, a class-agnostic baseline.

Nothing here changes the model: attention comes from `Backbone.encode_image_with_attention`,
which computes it explicitly without hooks or switches.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.overlay import colorbar, colorize, model_view, overlay  # noqa: F401 - part of this API
from core.prompts import DualPrompt

MAP_KINDS = ("relevance", "rollout")  # kinds of map (not methods: see core.methods)


def relevance_map(dp: DualPrompt, pixels: torch.Tensor, class_index: int,
                  kind: str = "relevance") -> np.ndarray:
    """(H, W) float32 map in [0, 1] at the input's resolution for one preprocessed image
    ((3, H, W) or (1, 3, H, W)), explaining class `class_index`."""
    return relevance_maps(dp, pixels, [class_index], kind)[0]


def relevance_maps(dp: DualPrompt, pixels: torch.Tensor, class_indices: Sequence[int],
                   kind: str = "relevance") -> np.ndarray:
    """(K, H, W) maps for several classes of one image, sharing one forward pass."""
    if kind not in MAP_KINDS:
        raise ValueError(f"Unknown kind of map {kind!r}; use one of {', '.join(MAP_KINDS)}.")
    pixels = _one_image(pixels, dp.backbone.device)
    classes = [int(c) for c in class_indices]
    if not classes or any(not 0 <= c < len(dp.classnames) for c in classes):
        raise ValueError(f"Class numbers must be from 0 to {len(dp.classnames) - 1}.")
    if kind == "rollout":
        rows = _rollout_rows(dp, pixels)
        rows = rows.expand(len(classes), -1)
    else:
        rows = _relevance_rows(dp, pixels, classes)
    return _to_maps(dp, rows, pixels.shape[-2:])


def _one_image(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(0)
    if pixels.dim() != 4 or pixels.shape[0] != 1 or pixels.shape[1] != 3:
        raise ValueError(f"Expected one preprocessed image (3, H, W), got {tuple(pixels.shape)}.")
    return pixels.to(device)


def _prompts(dp: DualPrompt) -> torch.Tensor | None:
    return dp.vision_prompts if dp.cfg.n_vision_prompts else None


def _overwrite(dp: DualPrompt) -> bool:
    return dp.cfg.vision_mode == "overwrite"


def _relevance_rows(dp: DualPrompt, pixels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """(K, N) relevance of every token to the pooled output, one row per class."""
    bb = dp.backbone
    with torch.no_grad():
        text = dp.text_features()[classes]
    with torch.enable_grad():
        # The backbone is frozen; an input that needs a gradient makes autograd record the graph.
        source = pixels.detach().clone().requires_grad_(True)
        raw, attention = bb.encode_image_with_attention(source, _prompts(dp), _overwrite(dp))
        scores = bb.logit_scale * F.normalize(raw.float(), dim=-1)[0] @ text.T  # (K,)
        rows = []
        for k in range(len(classes)):
            grads = torch.autograd.grad(scores[k], attention, retain_graph=k < len(classes) - 1)
            rows.append(_propagate(attention, grads, bb.image_pooling, _patch_start(dp)))
    return torch.stack(rows)


def _propagate(attention: list[torch.Tensor], grads: Sequence[torch.Tensor], pooling: str,
               patch_start: int) -> torch.Tensor:
    n = attention[0].shape[-1]
    relevance = torch.eye(n, device=attention[0].device)
    for probs, grad in zip(attention, grads):
        weighted = (grad[0].float() * probs[0].detach().float()).clamp(min=0).mean(dim=0)
        relevance = relevance + weighted @ relevance
    return _pooled_row(relevance, pooling, patch_start)


def _rollout_rows(dp: DualPrompt, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        _, attention = dp.backbone.encode_image_with_attention(pixels, _prompts(dp),
                                                               _overwrite(dp))
        n = attention[0].shape[-1]
        eye = torch.eye(n, device=pixels.device)
        rollout = eye
        for probs in attention:
            mixed = probs[0].float().mean(dim=0) + eye
            rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    return _pooled_row(rollout, dp.backbone.image_pooling, _patch_start(dp)).unsqueeze(0)


def _pooled_row(matrix: torch.Tensor, pooling: str, patch_start: int) -> torch.Tensor:
    """The row of the token that becomes the image feature (mean of the patch rows when the
    tower averages patches)."""
    if pooling == "token":
        return matrix[0]
    return matrix[patch_start:].mean(dim=0)


def _patch_start(dp: DualPrompt) -> int:
    return dp.backbone.image_prefix_tokens + dp.cfg.n_vision_prompts


def _to_maps(dp: DualPrompt, rows: torch.Tensor, size: torch.Size) -> np.ndarray:
    """Drop class and prompt tokens, lay the patches on the grid, upsample, scale to [0, 1]."""
    grid = dp.backbone.image_grid
    patches = rows[:, _patch_start(dp):]
    if _overwrite(dp):  # the first patches were replaced by the prompts: nothing of them is seen
        patches = torch.cat([patches.new_zeros(rows.shape[0], dp.cfg.n_vision_prompts), patches],
                            dim=1)
    patches = patches.reshape(rows.shape[0], 1, *grid).float()
    maps = F.interpolate(patches, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    maps = torch.where(span > 0, (maps - low) / span.clamp(min=1e-12), torch.zeros_like(maps))
    return maps.detach().cpu().numpy().astype(np.float32)
