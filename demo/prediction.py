"""The last scan a session predicted: what the model saw, each classifier's probabilities, the
examples it resembles, and the maps made of it so far (switching the map's class reuses them)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from demo.scans import Example


@dataclass
class Prediction:
    """The last scan predicted, kept so the map can be switched without recomputing."""

    view: Image.Image  # what the model saw (centre crop), for the overlay
    picture: Image.Image  # the scan as kept (longer side at most KEPT_SIDE), for more maps
    tuned: dict[str, float]
    zero_shot: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)  # BASELINE on the examples
    nearest: list[tuple[Example, float]] = field(default_factory=list)  # (example, cosine)
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    classnames: list[str] = field(default_factory=list)
    suggested_modality: str | None = None
    colour_mismatch: str | None = None  # "colour_in_grey" / "grey_in_colour" for the task
    window: str = "auto"  # how the scan was drawn, for the report
    frame: int | None = None
    n_frames: int = 1
    digest: str = ""
    plain: torch.Tensor | None = None  # (D,) its plain BiomedCLIP feature, for the baselines

    @property
    def top(self) -> str:
        """The class ranked first (by the tuned prompts once there are some)."""
        probs = self.tuned or self.zero_shot
        return max(probs, key=probs.get)
