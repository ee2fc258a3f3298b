"""Small labelled tasks for tests."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

FAMILIES = ["tiny-biomedclip", "tiny-clip"]
BRAIN_TEMPLATE = "a MR photo of a {} in the brain."
BRAIN_CLASSES = ["glioma", "meningioma", "pituitary tumor", "normal brain"]


def tinted_pixels(n_classes: int, per_class: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Preprocessed-pixel tensors with a class-dependent tint plus noise: a planted signal the
    tiny random image towers separate, so text-side training has something to learn."""
    g = torch.Generator().manual_seed(seed)
    labels = [c for c in range(n_classes) for _ in range(per_class)]
    tints = torch.randn(n_classes, 3, 1, 1, generator=g) * 1.5
    noise = 0.5 * torch.randn(len(labels), 3, 224, 224, generator=g)
    return tints[labels] + noise, labels


def tinted_images(n_classes: int, per_class: int, seed: int = 0, size: int = 96
                  ) -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(seed)
    tints = rng.uniform(30, 225, size=(n_classes, 3))
    images, labels = [], []
    for c in range(n_classes):
        for _ in range(per_class):
            arr = np.clip(tints[c] + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            images.append(Image.fromarray(arr))
            labels.append(c)
    return images, labels
