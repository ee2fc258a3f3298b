"""Recipes and the training loop.

Nothing on the vision side is trained, so the prompted image feature of each image view is a
constant: views are encoded once, cached, and every step costs only the class prompts' pass through
the text tower. Two recipes:

- `TrainConfig.paper()`: the paper's recipe item by item (SGD, lr 0.0025, momentum 0.9, weight
  decay 5e-4, one constant warm-up epoch at 1e-5 then cosine, batch 4 with the last incomplete batch
  dropped, 100 epochs, fp32, random-resized-crop views with scale 0.08-1, text dropout on). The
  paper re-augments every image every epoch; here each image has `augment_views` random crops
  encoded once, and each epoch draws one of them per image (see README).
- `TrainConfig.fast()`: the interactive recipe: 100 full-batch AdamW steps whatever the number of
  shots, on the evaluation view of each image, bf16 where the hardware runs it natively. Its
  learning rate is relative: 0.1 of the word embeddings' RMS per step, so the context moves by the
  same fraction of a typical token embedding whatever the backbone's embedding scale.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Sequence

import torch
from PIL import Image

from core import features as feature_views
from core.backbone import autocast, resolve_precision
from core.errors import TrainingError
from core.prompts import DualPrompt

log = logging.getLogger(__name__)

CROPS_PER_SEED = 1_000_000  # crop numbers of fresh crops start at seed * this


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe. Exactly one of `epochs` (epoch-based) and `steps` (step-based)."""

    recipe: str = "custom"
    optimizer: str = "adamw"  # "sgd" or "adamw"
    lr: float = 2e-3
    lr_relative: bool = False  # lr (and warmup_lr) in units of the word embeddings' RMS
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int | None = None
    steps: int | None = None
    batch_size: int | None = None  # None: every cached example in every step
    warmup: int = 0  # epochs (epoch-based) or steps (step-based) at constant `warmup_lr`
    warmup_lr: float = 1e-5
    eval_view: bool = True  # the evaluation view (resize + centre crop) is a training view
    augment_views: int = 0  # random-resized-crop views cached per image
    crop_scale: tuple[float, float] = (0.08, 1.0)
    precision: str = "auto"  # "auto" (bf16 where native), "fp32", "bf16"
    text_dropout: bool = False
    # Dassl's warm-up recount (the released code): the cosine starts after the warm-up, so
    # epoch e >= 1 runs at 0.5 lr (1 + cos(pi (e - 1) / epochs)); off: cos(pi e / epochs)
    warmup_recount: bool = False
    # a fresh random crop of every image in every epoch (view e in epoch e, seeded by the run's
    # seed) instead of one of `augment_views` crops drawn again each epoch
    fresh_crops: bool = False
    seed: int = 1
    time_budget_s: float | None = None  # stop (keeping what was learned) after this long
    # stop once converged (step-based, full batch): when the loss, improving at the rate of the
    # last `converge_window` steps for every step left, would gain less than `converge_tol` of
    # itself (the rate only falls as the cosine schedule cools, so this is an upper bound), after
    # at least `converge_min` steps; None trains every step
    converge_tol: float | None = None
    converge_window: int = 10
    converge_min: int = 30

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise TrainingError("Set either a number of epochs or a number of steps, not both.")
        if (self.epochs or self.steps or 0) < 1:
            raise TrainingError("Training needs at least one epoch or step.")
        if self.optimizer not in ("sgd", "adamw"):
            raise TrainingError(f"Unknown optimizer {self.optimizer!r}; use 'sgd' or 'adamw'.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainingError(f"The learning rate must be a positive number, not {self.lr!r}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise TrainingError("The batch size must be at least 1.")
        if not self.eval_view and self.augment_views < 1:
            raise TrainingError("Training needs at least one image view: keep the evaluation "
                                "view or add augmented views.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise TrainingError(f"precision must be 'auto', 'fp32' or 'bf16', not {self.precision!r}.")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise TrainingError(f"crop_scale must satisfy 0 < low <= high <= 1, not {self.crop_scale}.")
        if self.fresh_crops and (self.epochs is None or self.augment_views != self.epochs):
            raise TrainingError("Fresh crops every epoch need one crop view per epoch "
                                "(augment_views equal to epochs).")
        if self.converge_tol is not None and not (self.converge_tol >= 0
                                                  and self.converge_window >= 1):
            raise TrainingError("converge_tol must be >= 0 and converge_window at least 1.")

    @property
    def view_names(self) -> list[str]:
        """Every view `fit_features` takes, in order: the evaluation view first (always given:
        the final fit is measured on it), then the augmented crops."""
        start = self.seed * CROPS_PER_SEED if self.fresh_crops else 0
        return [feature_views.EVAL_VIEW] + feature_views.crop_views(self.augment_views,
                                                                    self.crop_scale, start)

    @property
    def views(self) -> int:
        return int(self.eval_view) + self.augment_views

    @classmethod
    def paper(cls, epochs: int = 100, **changes) -> TrainConfig:
        """The paper's recipe (100 epochs few-shot; 50 for base-to-novel)."""
        return cls(**{**dict(recipe="paper", optimizer="sgd", lr=0.0025, momentum=0.9,
                             weight_decay=5e-4, epochs=epochs, batch_size=4, warmup=1,
                             warmup_lr=1e-5, eval_view=False, augment_views=8,
                             crop_scale=(0.08, 1.0), precision="fp32", text_dropout=True,
                             seed=1), **changes})

    @classmethod
    def released(cls, epochs: int = 100, **changes) -> TrainConfig:
        """The paper's recipe as the released code runs it: a fresh random crop of every image
        every epoch (seeded per run) and Dassl's learning-rate schedule (warm-up recount)."""
        return cls.paper(epochs=epochs, **{**dict(recipe="released", augment_views=epochs,
                                                  fresh_crops=True, warmup_recount=True),
                                           **changes})

    @classmethod
    def fast(cls, **changes) -> TrainConfig:
        """The interactive recipe: seconds on a CPU."""
        return cls(**{**dict(recipe="fast", optimizer="adamw", lr=0.1, lr_relative=True,
                             weight_decay=0.0, steps=100, batch_size=None, warmup=0, eval_view=True,
                             augment_views=0, crop_scale=(0.5, 1.0), precision="auto",
                             text_dropout=False, seed=1, converge_tol=0.02, converge_window=5,
                             converge_min=30), **changes})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The recipe `to_dict` wrote (read back from JSON: lists become tuples); unknown or
        wrong settings are a `TrainingError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TrainingError(f"Unknown training settings {sorted(unknown)}.")
        values = dict(data)
        if isinstance(values.get("crop_scale"), list):
            values["crop_scale"] = tuple(values["crop_scale"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise TrainingError(f"The training settings are not valid ({exc}).") from exc


@dataclass
class Progress:
    """What `on_step` receives: an encoding batch done, or a training step done."""

    phase: str  # "encode" or "train"
    done: int
    total: int
    elapsed_s: float
    loss: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None
    lr: float | None = None
    epoch: int | None = None


@dataclass
class History:
    """What `fit` returns: per-step records, the final fit on the evaluation view, timings."""

    config: TrainConfig
    steps: list[dict] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    stopped: str | None = None  # None, "user", "time budget" or "converged"
    precision: str = "fp32"
    encode_s: float = 0.0
    train_s: float = 0.0
    total_s: float = 0.0
    warm: bool = False  # started from prompts tuned before (`warm_config`), not the template

    def to_dict(self) -> dict:
        out = asdict(self)
        out["config"] = self.config.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The history `to_dict` wrote (e.g. read back from a JSON file)."""
        values = dict(data)
        known = {f.name for f in fields(cls)}
        if set(values) - known or "config" not in values:
            raise TrainingError("This training history is not one the app wrote.")
        values["config"] = TrainConfig.from_dict(values["config"])
        return cls(**values)


WARM_CONVERGE_MIN = 8  # a warm start is near its end already: it may stop this early
WARM_LR = 0.5  # of the recipe's learning rate: steps from a good start, not a kick
WARM_STEPS = 0.2  # of the recipe's steps, at most: a warm run's budget


def warm_config(cfg: TrainConfig) -> TrainConfig:
    """The recipe for a warm start (tuning continued from prompts tuned before, on examples
    that changed a little): half the learning rate (a fresh optimiser at the full rate would
    first throw the context away from where it was) and, for a step-based recipe, a fifth of
    its steps (at least twice `WARM_CONVERGE_MIN`), its convergence rule free to stop it
    after `WARM_CONVERGE_MIN`: it starts near where a cold start ends. An epoch-based recipe
    keeps its epochs."""
    warm = replace(cfg, lr=cfg.lr * WARM_LR, warmup_lr=cfg.warmup_lr * WARM_LR)
    if cfg.steps is None:
        return warm
    steps = min(cfg.steps, max(2 * WARM_CONVERGE_MIN, round(cfg.steps * WARM_STEPS)))
    return replace(warm, steps=steps, converge_min=min(cfg.converge_min, WARM_CONVERGE_MIN))


def fit(dp: DualPrompt, images: Sequence[Image.Image] | torch.Tensor, labels: Sequence[int],
        cfg: TrainConfig | None = None, on_step: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        cache: feature_views.FeatureCache | None = None,
        keys: Sequence[str] | None = None) -> History:
    """Tune `dp.ctx` on labelled images: encode every view the recipe needs once (through
    `core.features`, with `cache` and the images' content `keys` when given), then
    `fit_features`. `images` are PIL images, or
    preprocessed pixels (N, 3, H, W) for a recipe without crops. `should_stop` is polled before
    every encoding batch and step; training then ends after at most one step, keeping what was
    learned."""
    cfg = cfg or TrainConfig.fast()
    bb = dp.backbone
    _checked_labels(labels, len(images), dp.classnames)
    precision = resolve_precision(cfg.precision, bb.device)
    started = time.perf_counter()
    emit = on_step or (lambda progress: None)

    def progress(done: int, total: int) -> None:
        emit(Progress("encode", done, total, time.perf_counter() - started))

    views = feature_views.encode_views(bb, images, cfg.view_names,
                                       vision_prompts=dp.cfg.n_vision_prompts, cache=cache,
                                       vision_mode=dp.cfg.vision_mode,
                                       precision=precision, keys=keys, progress=progress,
                                       should_stop=should_stop)
    encode_s = time.perf_counter() - started
    if views is None:
        return History(config=cfg, precision=precision, stopped="user", encode_s=encode_s,
                       total_s=encode_s)
    history = fit_features(dp, views, labels, cfg, on_step, should_stop)
    history.encode_s = encode_s
    history.total_s += encode_s
    return history


def fit_features(dp: DualPrompt, features: torch.Tensor, labels: Sequence[int],
                 cfg: TrainConfig | None = None, on_step: Callable[[Progress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> History:
    """Tune `dp.ctx` on image features encoded beforehand (`core.features.encode` with this
    module's vision prompts): (N, D) for a recipe on the evaluation view only, or (V, N, D) with
    the views of `cfg.view_names` (the evaluation view first). Only the text steps run; a
    re-tune with other lambdas, steps or seeds costs nothing on the image side."""
    cfg = cfg or TrainConfig.fast()
    bb = dp.backbone
    device = bb.device
    if features.dim() == 2:
        features = features.unsqueeze(0)
    wanted = len(cfg.view_names)
    if features.dim() != 3 or features.shape[0] != wanted:
        raise TrainingError(f"The features must be ({wanted} views, images, dim), the evaluation "
                            f"view first (views {cfg.view_names}); got {tuple(features.shape)}.")
    labels_t = _checked_labels(labels, features.shape[1], dp.classnames).to(device)
    precision = resolve_precision(cfg.precision, device)
    history = History(config=cfg, precision=precision)
    started = time.perf_counter()
    emit = on_step or (lambda progress: None)
    stop_requested = should_stop or (lambda: False)
    features = features.to(device=device, dtype=torch.float32)
    train_feats = features if cfg.eval_view else features[1:]

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        dp.eval()
        history.stopped = _train_loop(dp, train_feats, labels_t, cfg, precision, generator,
                                      history, emit, stop_requested, started)
        history.train_s = time.perf_counter() - started
        dp.eval()
        history.final = _final_fit(dp, features[0], labels_t, precision)
    history.total_s = time.perf_counter() - started
    return history


def _checked_labels(labels: Sequence[int], n_images: int, classnames: list[str]) -> torch.Tensor:
    if n_images == 0:
        raise TrainingError("Add labelled example images before tuning.")
    if len(labels) != n_images:
        raise TrainingError(f"{n_images} images but {len(labels)} labels; give one label per image.")
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    if labels_t.min() < 0 or labels_t.max() >= len(classnames):
        raise TrainingError(f"Labels must be class numbers from 0 to {len(classnames) - 1}.")
    counts = torch.bincount(labels_t, minlength=len(classnames))
    empty = [classnames[i] for i in range(len(classnames)) if counts[i] == 0]
    if empty:
        raise TrainingError(f"No examples for {', '.join(empty)}: add at least one image for "
                            "every class.")
    return labels_t


def _lr_at(cfg: TrainConfig, unit: int, total_units: int, scale: float = 1.0) -> float:
    """Constant warm-up at `warmup_lr`, then cosine from `lr` (per epoch or per step); times
    `scale` (the embedding RMS when the learning rate is relative)."""
    if unit < cfg.warmup:
        return cfg.warmup_lr * scale
    counted = unit - cfg.warmup if cfg.warmup_recount else unit
    return 0.5 * cfg.lr * scale * (1 + math.cos(math.pi * counted / total_units))


def _batches_per_epoch(n: int, cfg: TrainConfig) -> int:
    """Full batches of an epoch (the last incomplete one is dropped); one when the batch holds
    every example, or more than there are."""
    if cfg.batch_size is None or cfg.batch_size >= n:
        return 1
    return n // cfg.batch_size


def _batches(n: int, cfg: TrainConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of one epoch (or one step when step-based)."""
    order = torch.randperm(n, generator=generator)
    size = n if cfg.batch_size is None else min(cfg.batch_size, n)
    return [order[b * size:(b + 1) * size] for b in range(_batches_per_epoch(n, cfg))]


def _train_loop(dp: DualPrompt, view_feats: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                precision: str, generator: torch.Generator, history: History,
                emit: Callable[[Progress], None], stop_requested: Callable[[], bool],
                started: float) -> str | None:
    bb = dp.backbone
    n_views, n, _ = view_feats.shape
    params = [dp.ctx]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch_based = cfg.epochs is not None
    units = cfg.epochs if epoch_based else cfg.steps
    per_unit = _batches_per_epoch(n, cfg) if epoch_based else 1
    total_steps = units * per_unit
    scale = bb.word_embedding_rms if cfg.lr_relative else 1.0
    step = 0
    watch = _Convergence(cfg) if cfg.converge_tol is not None and not epoch_based else None
    dp.train()
    for unit in range(units):
        lr = _lr_at(cfg, unit, units, scale)
        for group in opt.param_groups:
            group["lr"] = lr
        view_of = torch.randint(n_views, (n,), generator=generator)
        if cfg.fresh_crops:  # this epoch's own crop of every image
            view_of = torch.full((n,), unit + int(cfg.eval_view))
        batches = _batches(n, cfg, generator)
        for batch in batches if epoch_based else batches[:1]:
            if stop_requested():
                return "user"
            if cfg.time_budget_s is not None and time.perf_counter() - started > cfg.time_budget_s:
                return "time budget"
            feats = view_feats[view_of[batch], batch]
            with autocast(bb.device, precision):
                loss, parts, logits = dp.loss_and_logits(feats, labels[batch],
                                                         dropout=cfg.text_dropout)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            accuracy = (logits.argmax(dim=-1) == labels[batch]).float().mean().item()
            record = {"step": step, "epoch": unit if epoch_based else None,
                      "loss": loss.item(), **parts, "accuracy": accuracy, "lr": lr,
                      "elapsed_s": time.perf_counter() - started}
            history.steps.append(record)
            emit(Progress("train", step, total_steps, record["elapsed_s"], loss.item(), parts,
                          accuracy, lr, record["epoch"]))
            if watch is not None and watch.converged(record["loss"]):
                return "converged"
    return None


class _Convergence:
    """The stopping rule of `TrainConfig.converge_tol` (full-batch losses, one per step)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.losses: list[float] = []

    def converged(self, loss: float) -> bool:
        self.losses.append(loss)
        w, n = self.cfg.converge_window, len(self.losses)
        if n < max(self.cfg.converge_min, w + 1) or n >= self.cfg.steps:
            return False
        before, recent = min(self.losses[:-w]), min(self.losses[-w:])
        rate = max(before - recent, 0.0) / w
        return rate * (self.cfg.steps - n) < self.cfg.converge_tol * abs(recent)


@torch.no_grad()
def _final_fit(dp: DualPrompt, feats: torch.Tensor, labels: torch.Tensor, precision: str) -> dict:
    """Loss and accuracy over every training image's evaluation view, in evaluation mode."""
    with autocast(dp.backbone.device, precision):
        loss, parts, logits = dp.loss_and_logits(feats, labels)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    return {"loss": loss.item(), **parts, "accuracy": accuracy}
