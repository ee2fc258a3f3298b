"""Classifiers on cached image features that need no prompt tuning: what tuning is measured
against. Each costs milliseconds on the features the app already holds.

- `"zero-shot"`: the plain template classifier, `scale * f @ t.T`.
- `"tip-adapter"` (Zhang et al., ECCV 2022), training-free: a cache model whose keys are the
  training features and values their one-hot labels, added to the zero-shot logits:
  `scale * f @ t.T + alpha * exp(-beta * (1 - f @ K.T)) @ L`, with the paper's defaults
  alpha = 1, beta = 5.5.
- `"linear-probe"`: a linear classifier on the features initialised from the zero-shot text
  classifier and kept near it (as CLAP and LP++ do): full-batch L-BFGS on
  `CE + reg * sum_c ||w_c - t_c||^2`. Starting from, and anchored to, the zero-shot classifier,
  one shot per class does not fall below it the way a probe from random weights does.

Features are L2-normalised image features without vision prompts (`core.features.encode(...,
vision_prompts=0)`); text features the zero-shot classifier's (`dp.zero_shot().text_features()`).
Everything runs in fp32 on the CPU; probabilities are numpy rows summing to 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import TrainingError
from core.methods import FITTED, ZERO_SHOT, names

BASELINES = names(ZERO_SHOT, FITTED)  # core.methods
TIP_ALPHA, TIP_BETA = 1.0, 5.5
PROBE_REG = 1.0
PROBE_ITERATIONS = 60


@dataclass
class Classifier:
    """A fitted linear-plus-cache classifier: logits = scale * f @ weight.T + bias, plus the
    Tip-Adapter cache term when it has keys."""

    name: str
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    scale: float
    keys: torch.Tensor | None = None  # (N, D) training features
    values: torch.Tensor | None = None  # (N, C) one-hot labels
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def n_classes(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        f = _features(features)
        out = self.scale * f @ self.weight.T + self.bias
        if self.keys is not None:
            affinity = f @ self.keys.T
            out = out + self.alpha * torch.exp(-self.beta * (1 - affinity)) @ self.values
        return out

    def predict_proba(self, features: torch.Tensor) -> np.ndarray:
        """(N, C) class probabilities, rows summing to 1."""
        probs = self.logits(features).double().softmax(dim=-1).numpy()
        return probs / probs.sum(axis=1, keepdims=True)


def fit_baseline(name: str, features: torch.Tensor, labels: Sequence[int],
                 text_features: torch.Tensor, *, logit_scale: float = 100.0,
                 alpha: float = TIP_ALPHA, beta: float = TIP_BETA, reg: float = PROBE_REG,
                 iterations: int = PROBE_ITERATIONS) -> Classifier:
    """Fit baseline `name` (one of BASELINES) on (N, D) training features and their class
    numbers, given the (C, D) zero-shot text features."""
    text = _features(text_features)
    f = _features(features)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    n_classes = text.shape[0]
    if f.shape[0] != len(y):
        raise TrainingError(f"{f.shape[0]} feature rows but {len(y)} labels.")
    if f.shape[1] != text.shape[1]:
        raise TrainingError(f"Image features have {f.shape[1]} dimensions, the text features "
                            f"{text.shape[1]}.")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise TrainingError(f"Labels must be class numbers from 0 to {n_classes - 1}.")
    zero = Classifier(name, text, torch.zeros(n_classes), float(logit_scale))
    if name == "zero-shot":
        return zero
    if name == "tip-adapter":
        values = F.one_hot(y, n_classes).float()
        return Classifier(name, text, torch.zeros(n_classes), float(logit_scale), keys=f,
                          values=values, alpha=float(alpha), beta=float(beta))
    if name == "linear-probe":
        return _linear_probe(f, y, text, float(logit_scale), float(reg), int(iterations))
    raise TrainingError(f"Unknown baseline {name!r}; choose from {', '.join(BASELINES)}.")


def _linear_probe(f: torch.Tensor, y: torch.Tensor, text: torch.Tensor, scale: float,
                  reg: float, iterations: int) -> Classifier:
    weight = text.clone().requires_grad_(True)
    bias = torch.zeros(text.shape[0], requires_grad=True)
    if len(y) == 0:
        return Classifier("linear-probe", text, torch.zeros(text.shape[0]), scale)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(scale * f @ weight.T + bias, y)
        loss = loss + reg * (weight - text).pow(2).sum() + reg * bias.pow(2).sum() / scale
        loss.backward()
        return loss

    with torch.enable_grad(), torch.autocast("cpu", enabled=False):
        opt.step(closure)
    return Classifier("linear-probe", weight.detach(), bias.detach(), scale)


def _features(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(torch.as_tensor(x).detach().to("cpu", torch.float32), dim=-1)
