"""`load_backbone(spec)`: find the model a spec names, build it, and freeze it into a `Backbone`.

Sources: the Hugging Face Hub (`hub`), an open_clip folder on disk (here), or an offline
random-weight backbone (`offline`). Whatever the source, the model ends fp32, in evaluation mode,
with no parameter that requires gradients.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from core.backbone.devices import configure_cpu_threads, resolve_device
from core.backbone.hub import BIOMEDCLIP_HUB_ID, cached_text_files, load_from_hub
from core.backbone.offline import OFFLINE_SPECS, build_random
from core.backbone.staging import WEIGHT_FILES, load_staged, read_config
from core.backbone.towers import Backbone
from core.errors import BackboneUnavailable

DEFAULT_SPEC = "biomedclip"


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
        model, tokenizer, preprocess = build_random(spec)
    elif spec.startswith("hf-hub:"):
        model, tokenizer, preprocess = load_from_hub(spec[len("hf-hub:"):])
    elif spec.startswith("local-dir:"):
        model, tokenizer, preprocess = _load_from_dir(Path(spec[len("local-dir:"):]).expanduser())
    else:
        raise BackboneUnavailable(
            f"Unknown backbone {spec!r}. Use 'biomedclip', 'hf-hub:ORG/NAME', 'local-dir:PATH', "
            f"or one of {', '.join(OFFLINE_SPECS)}.")
    return _freeze(model, tokenizer, preprocess, device, spec)


def _load_from_dir(folder: Path):
    """An open_clip folder on disk: open_clip_config.json and weights. The text tower's config and
    tokenizer are read from the folder itself, from a local folder the config names, or from the
    Hugging Face cache; never from the network."""
    if not folder.is_dir():
        raise BackboneUnavailable(f"The folder {folder} does not exist.")
    config = read_config(folder / "open_clip_config.json")
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise BackboneUnavailable(
            f"{folder} holds no weights file ({' or '.join(WEIGHT_FILES)}).")
    text_name = config["model_cfg"].get("text_cfg", {}).get("hf_model_name")
    text_dir = None
    if text_name:
        if (folder / "config.json").is_file() and (folder / "vocab.txt").is_file():
            text_dir = folder
        elif Path(text_name).expanduser().is_dir():
            text_dir = Path(text_name).expanduser()
        else:
            text_dir = cached_text_files(text_name, allow_download=False)
    return load_staged(config, text_dir, weights)


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
