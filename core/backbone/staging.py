"""From files on disk to an open_clip model, through open_clip's own constructor.

Every source (a local folder, the Hugging Face cache, a generated offline folder) ends here: its
config, weights and text tower files are laid out as one self-contained open_clip folder, and
open_clip reads everything from that folder.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from core.errors import BackboneUnavailable

TEXT_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                        "tokenizer.json")
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class _DropRandomInitNotes(logging.Filter):
    """open_clip warns on the root logger that a model without weights is random: for the
    offline random backbones that is the point, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname or record.levelno >= logging.ERROR


def create_model(folder: Path, has_weights: bool):
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
        for name in ("config.json",) + TEXT_TOKENIZER_FILES:
            if (text_dir / name).is_file():
                (stage / name).symlink_to((text_dir / name).resolve())
    if weights is not None:
        (stage / weights.name).symlink_to(weights.resolve())
    (stage / "open_clip_config.json").write_text(json.dumps(config))
    return stage


def load_staged(config: dict, text_dir: Path | None, weights: Path | None):
    with tempfile.TemporaryDirectory(prefix="biomed-dpt-backbone-") as tmp:
        return create_model(_stage(config, text_dir, weights, Path(tmp)), weights is not None)


def read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackboneUnavailable(f"{path} is not a readable open_clip config ({exc}).") from exc
    if "model_cfg" not in config:
        raise BackboneUnavailable(f"{path} has no 'model_cfg': it is not an open_clip config.")
    return config

