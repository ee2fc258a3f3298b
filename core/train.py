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
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import v2

from core.backbone import autocast, resolve_precision
from core.errors import TrainingError
from core.prompts import DualPrompt

log = logging.getLogger(__name__)

ENCODE_BATCH = 16


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
    seed: int = 1
    time_budget_s: float | None = None  # stop (keeping what was learned) after this long

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
    def fast(cls, **changes) -> TrainConfig:
        """The interactive recipe: seconds on a CPU."""
        return cls(**{**dict(recipe="fast", optimizer="adamw", lr=0.1, lr_relative=True,
                             weight_decay=0.0, steps=100, batch_size=None, warmup=0, eval_view=True,
                             augment_views=0, crop_scale=(0.5, 1.0), precision="auto",
                             text_dropout=False, seed=1), **changes})

    def to_dict(self) -> dict:
        return asdict(self)


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
    stopped: str | None = None  # None, "user" or "time budget"
    precision: str = "fp32"
    encode_s: float = 0.0
    train_s: float = 0.0
    total_s: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["config"] = self.config.to_dict()
        return out


def fit(dp: DualPrompt, images: Sequence[Image.Image] | torch.Tensor | None, labels: Sequence[int],
        cfg: TrainConfig | None = None, on_step: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None, *,
        view_features: torch.Tensor | None = None) -> History:
    """Tune `dp.ctx` on labelled images; returns the History. `images` are PIL images (views
    are made from the originals) or preprocessed pixels (N, 3, H, W). `should_stop` is polled
    before every step and encoding batch; when it answers True training ends after at most one
    step, keeping what was learned.

    `view_features` (V, N, D), optional: the prompted image features encoded beforehand (a sweep
    over shots and seeds caches them on disk, so each image is encoded once), the evaluation view
    first, then `cfg.augment_views` augmented views (V = 1 + cfg.augment_views). When given,
    nothing is encoded and `images` may be None."""
    cfg = cfg or TrainConfig.fast()
    bb = dp.backbone
    device = bb.device
    if view_features is not None and (view_features.dim() != 3
                                      or view_features.shape[0] != 1 + cfg.augment_views):
        raise TrainingError(f"view_features must be (1 + {cfg.augment_views} views, images, dim), "
                            f"the evaluation view first; got {tuple(view_features.shape)}.")
    n_images = len(images) if view_features is None else view_features.shape[1]
    labels_t = _checked_labels(labels, n_images, dp.classnames)
    precision = resolve_precision(cfg.precision, device)
    history = History(config=cfg, precision=precision)
    started = time.perf_counter()
    emit = on_step or (lambda progress: None)
    stop_requested = should_stop or (lambda: False)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        dp.eval()
        if view_features is None:
            view_feats = _encode_views(dp, images, cfg, precision, emit, stop_requested, started)
        else:
            given = view_features.to(device=device, dtype=torch.float32)
            view_feats = given if cfg.eval_view else given[1:]
        history.encode_s = time.perf_counter() - started
        if view_feats is None:
            history.stopped = "user"
            history.total_s = time.perf_counter() - started
            return history
        eval_feats = view_feats[0] if cfg.eval_view else None
        if dp.cfg.uses_teacher:
            with autocast(device, precision):
                dp.teacher_features()

        train_started = time.perf_counter()
        history.stopped = _train_loop(dp, view_feats, labels_t.to(device), cfg, precision,
                                      generator, history, emit, stop_requested, started)
        history.train_s = time.perf_counter() - train_started
        dp.eval()
        if eval_feats is None and view_features is not None:
            eval_feats = view_features[0].to(device=device, dtype=torch.float32)
        if eval_feats is None:
            eval_feats = _encode_views(dp, images, replace(cfg, eval_view=True, augment_views=0),
                                       precision, lambda p: None, lambda: False, started)[0]
        history.final = _final_fit(dp, eval_feats, labels_t.to(device), precision)
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


def _view_transforms(dp: DualPrompt, cfg: TrainConfig, from_pixels: bool) -> list[Callable]:
    bb = dp.backbone
    crop = v2.RandomResizedCrop(bb.image_size, scale=cfg.crop_scale,
                                interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    if from_pixels:
        views = [lambda x: x] if cfg.eval_view else []
        return views + [crop] * cfg.augment_views
    augmented = v2.Compose([v2.ToImage(), crop, v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(mean=list(bb.mean), std=list(bb.std))])
    views = [bb.preprocess] if cfg.eval_view else []
    return views + [augmented] * cfg.augment_views


@torch.no_grad()
def _encode_views(dp: DualPrompt, images, cfg: TrainConfig, precision: str,
                  emit: Callable[[Progress], None], stop_requested: Callable[[], bool],
                  started: float) -> torch.Tensor | None:
    """(V, N, D) prompted image features of every view of every image; None if stopped."""
    bb = dp.backbone
    from_pixels = isinstance(images, torch.Tensor)
    if not from_pixels:
        images = [image.convert("RGB") for image in images]
    transforms = _view_transforms(dp, cfg, from_pixels)
    n = len(images)
    total = n * len(transforms)
    feats = []
    done = 0
    for transform in transforms:
        view = []
        for i in range(0, n, ENCODE_BATCH):
            if stop_requested():
                return None
            chunk = images[i:i + ENCODE_BATCH]
            pixels = torch.stack([transform(x) for x in chunk]).to(bb.device)
            with autocast(bb.device, precision):
                view.append(dp.image_features(pixels))
            done += len(chunk)
            emit(Progress("encode", done, total, time.perf_counter() - started))
        feats.append(torch.cat(view))
    return torch.stack(feats)


def _lr_at(cfg: TrainConfig, unit: int, total_units: int, scale: float = 1.0) -> float:
    """Constant warm-up at `warmup_lr`, then cosine from `lr` (per epoch or per step); times
    `scale` (the embedding RMS when the learning rate is relative)."""
    if unit < cfg.warmup:
        return cfg.warmup_lr * scale
    return 0.5 * cfg.lr * scale * (1 + math.cos(math.pi * unit / total_units))


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
    dp.train()
    for unit in range(units):
        lr = _lr_at(cfg, unit, units, scale)
        for group in opt.param_groups:
            group["lr"] = lr
        view_of = torch.randint(n_views, (n,), generator=generator)
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
    return None


@torch.no_grad()
def _final_fit(dp: DualPrompt, feats: torch.Tensor, labels: torch.Tensor, precision: str) -> dict:
    """Loss and accuracy over every training image's evaluation view, in evaluation mode."""
    with autocast(dp.backbone.device, precision):
        loss, parts, logits = dp.loss_and_logits(feats, labels)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    return {"loss": loss.item(), **parts, "accuracy": accuracy}
