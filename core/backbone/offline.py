"""Offline random-weight backbones (tests, CI, benchmarks, trying the UI).

'tiny-biomedclip' and 'random-biomedclip' have BiomedCLIP's structure (timm ViT + Hugging Face
BERT, tiny or full size); 'tiny-clip' has open_clip's native ViT + text transformer. Each is built
from a generated config (and, for BERT, a generated config and vocabulary) with seeded random
weights, without any download.
"""
from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path

import torch

from core.backbone.staging import create_model
from core.backbone.towers import CLIP_MEAN, CLIP_STD

OFFLINE_SPECS = ("tiny-biomedclip", "tiny-clip", "random-biomedclip")
_RANDOM_SEED = 20250508

_BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, vocab_size=30522, initializer_range=0.02)
# BERT's usual 0.02 init makes a 2-layer, 64-wide random tower blind to its input (every class
# prompt gets the same feature to 1e-4); a wider init gives the tiny tower input-dependent
# features, so tests of learning have something to learn.
_BERT_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=128, vocab_size=2048, initializer_range=0.3)


def build_random(spec: str):
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
        for library in ("open_clip", "timm", "transformers"):
            importlib.import_module(library)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_RANDOM_SEED)
            return create_model(folder, has_weights=False)


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
