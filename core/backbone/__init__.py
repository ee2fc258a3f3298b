"""The frozen vision-language backbone: loading, and the tower stages the prompts plug into.

This is the only package that knows open_clip, timm and transformers internals. Everything above it
talks to a `Backbone` through five stages:

- `text_ids(texts)`: token ids with the tokenizer's own start/end tokens, unpadded;
- `embed_tokens(ids)`: word embeddings, the space the learnable text context lives in;
- `encode_text_embeds(embeds, lengths)`: embeddings -> projected text features;
- `encode_image(pixels, prompts)`: pixels -> projected image features, with optional deep visual
  prompt tokens inserted after the class token and reset before every block;
- `logit_scale`, widths and lengths read from the model.

Two tower families are supported: BiomedCLIP's (timm ViT + Hugging Face BERT) and open_clip's
native ViT + causal text transformer.

The package's rooms: `devices` (device, CPU threads, precision, autocast), `towers` (the
`Backbone` and its stages), `loading` (`load_backbone`: spec -> frozen `Backbone`, local folders),
`hub` (the Hugging Face cache and hub), `offline` (the random-weight backbones), `staging` (files
on disk -> an open_clip model). This module is the whole API.
"""
from core.backbone.devices import (PRECISION_ENV, autocast, bf16_supported, configure_cpu_threads,
                                   full_precision, resolve_device, resolve_precision)
from core.backbone.hub import BIOMEDCLIP_HUB_ID, hub_cache_status
from core.backbone.loading import DEFAULT_SPEC, load_backbone
from core.backbone.offline import OFFLINE_SPECS
from core.backbone.towers import CLIP_MEAN, CLIP_STD, Backbone
from core.errors import BackboneUnavailable

__all__ = ["BIOMEDCLIP_HUB_ID", "Backbone", "BackboneUnavailable", "CLIP_MEAN", "CLIP_STD",
           "DEFAULT_SPEC", "OFFLINE_SPECS", "PRECISION_ENV", "autocast", "bf16_supported",
           "configure_cpu_threads", "full_precision", "hub_cache_status", "load_backbone",
           "resolve_device", "resolve_precision"]
