"""Every use of the model the app makes, as compute calls (`demo.runtime.gpu`): plain CPU-side
data in, plain CPU-side data out, so that on ZeroGPU each can run in a GPU worker process.

Nothing here keeps state between calls or changes what it is given: a call's whole effect is
its result (on ZeroGPU a worker's changes are never seen by the caller). Long calls are
generators that stream their progress (`demo.runtime.events`), and poll their run's stop file
(a path, which a worker process sees as well as the main one): Stop reaches a running worker.

Durations (what ZeroGPU is asked for) follow from the work: the tuning time budget for a run,
the number of images for encoding.
"""
from __future__ import annotations

import os
import threading
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from core.errors import CheckpointError
from core.features import encode_views
from core.prompt_config import PromptConfig
from core.prompts import DualPrompt, PromptState
from demo.runtime import host
from demo.runtime.events import Counted, Finished, Stepped
from demo.runtime.gpu import gpu
from demo.runtime.traffic import TRAFFIC
from demo.runtime.worker import Worker

START_S = 20.0  # a worker's start: moving the model to the GPU, first kernels
PER_IMAGE_S = 0.05  # encoding one image view on a GPU, generously
STEPS_S = 60.0  # a tuning run without a time budget
MAX_S = 290.0


def _stopper(stop: str | None, halt: threading.Event | None, background: bool):
    def stopped() -> bool:
        if background:  # polled between steps: where background work gives way
            TRAFFIC.give_way()
        return (halt is not None and halt.is_set()) or (stop is not None and os.path.exists(stop))
    return stopped


def _streamed(work, stop: str | None, name: str, background: bool):
    """Run `work(emit, stopped)` in a worker thread, yielding what it emits, and return what it
    returns (`result = yield from _streamed(...)`). `stopped()` is true once the stop file
    exists or the stream is closed; closing the stream stops and joins the thread. Background
    work (`background`) gives way to interactive requests each time it polls `stopped()`."""
    halt = threading.Event()
    worker = Worker(lambda emit: work(emit, _stopper(stop, halt, background)), halt.set,
                    name=name)
    try:
        yield from worker
    finally:
        worker.close()
    return worker.result()


def _run_s(cfg) -> float:
    """One tuning run's seconds: its time budget, or a default for a run without one."""
    return cfg.time_budget_s if cfg.time_budget_s is not None else STEPS_S


def _bounded(seconds: float) -> float:
    return float(min(MAX_S, max(START_S, seconds)))


# ---- the task's text side --------------------------------------------------------------------
@gpu(duration=START_S + 10)
def zero_shot(classnames: Sequence[str], descriptions: dict, cfg: PromptConfig) -> PromptState:
    """The task's plain template classifier; building it checks the task against the model
    (token lengths, names)."""
    return DualPrompt(host.model(), classnames, cfg, descriptions).zero_shot().state()


@gpu(duration=START_S + 10)
def load_prompts(path: str) -> PromptState:
    """A saved prompt file, checked against the loaded model. The app inserts its vision
    prompts; prompts tuned with them over the first patches (the released code's layout, in a
    reproduction) would be scored on other features, so they are refused."""
    dp = DualPrompt.load(path, host.model())
    if dp.cfg.vision_mode != "insert" and dp.cfg.n_vision_prompts:
        raise CheckpointError("These prompts were tuned with the vision prompts over the first "
                              "image patches (the released code's layout); this app inserts "
                              "them. Tune the prompts again here.",
                              key="prompts_patch_placement")
    return dp.state()


# ---- images to features ----------------------------------------------------------------------
def _encode_s(pictures, keys, views, *args, **kwargs) -> float:
    return _bounded(START_S + PER_IMAGE_S * len(pictures) * max(1, len(views)))


@gpu(duration=_encode_s)
def encode(pictures: Sequence[Image.Image], keys: Sequence[str], views: Sequence[str],
           vision_prompts: int, precision: str, stop: str | None = None,
           background: bool = False) -> Iterator[tuple]:
    """Features of every view of every picture: yields `Counted` as batches finish, then
    `Finished` with the features (V, N, D), CPU float32, or None when stopped. `background`:
    work nobody waits to see (examples encoded as they arrive, before tuning), which gives
    way to interactive requests between batches."""
    bb = host.model()
    out = yield from _streamed(lambda emit, stopped: encode_views(
        bb, list(pictures), list(views), vision_prompts=vision_prompts, precision=precision,
        keys=list(keys), progress=lambda done, total: emit(Counted(done, total)),
        should_stop=stopped), stop, "encode", background)
    yield Finished(out)


# ---- tuning ---------------------------------------------------------------------------------
def _tune_s(task, features, labels, cfg, *args, **kwargs) -> float:
    return _bounded(START_S + _run_s(cfg))


@gpu(duration=_tune_s)
def tune(task: PromptState, features: torch.Tensor, labels: Sequence[int], cfg,
         stop: str | None = None) -> Iterator[tuple]:
    """Tune the task's prompts (`task`: `PromptState.untrained`, with the targets known so
    far) on cached features (N, D) or (V, N, D). Yields `Stepped` per step, then
    `Finished((History, PromptState of the tuned module))`."""
    from core.train import fit_features

    bb = host.model()
    dp = DualPrompt.from_state(bb, task).train()
    history = yield from _streamed(lambda emit, stopped: fit_features(
        dp, features, list(labels), cfg, on_step=lambda p: emit(Stepped(p)),
        should_stop=stopped), stop, "tune", background=True)
    yield Finished((history, dp.state()))


def _estimate_s(task, features, labels, folds, seed, cfg, *args, **kwargs) -> float:
    return _bounded(START_S + folds * _run_s(cfg) / 2)


@gpu(duration=_estimate_s)
def cross_validate_prompts(task: PromptState, features: torch.Tensor, labels: Sequence[int],
                           folds: int, seed: int, cfg, stop: str | None = None
                           ) -> Iterator[tuple]:
    """The held-out estimate of prompt tuning: each fold re-tuned from the untrained `task` on
    the other folds' features. Yields `Counted` folds, then `Finished` (None when stopped)."""
    from core.evaluate import cross_validate

    fresh = DualPrompt.from_state(host.model(), task)
    out = yield from _streamed(lambda emit, stopped: cross_validate(
        "biomed-dpt", features, list(labels), folds, seed, prompts=fresh, train=cfg,
        should_stop=stopped, on_fold=lambda d, t: emit(Counted(d, t))), stop, "estimate",
        background=True)
    yield Finished(out)


# ---- one scan: features and maps ------------------------------------------------------------
@gpu(duration=START_S + 10)
def look(picture: Image.Image, key: str, vision_prompts: Sequence[int], precision: str,
         explained: PromptState, explained_prompts: int) -> tuple[dict, int, np.ndarray]:
    """One scan seen once per image tower: its features by number of vision prompts, the
    class `explained` ranks first (scored on the features with `explained_prompts`), and that
    class's relevance map."""
    from core.explain import relevance_maps
    from core.features import encode as encode_images

    bb = host.model()
    feats = {vp: encode_images(bb, [picture], vision_prompts=vp, precision=precision,
                               keys=[key])[0] for vp in sorted(set(vision_prompts))}
    top = int(explained.logits(feats[explained_prompts][None]).argmax())
    dp = DualPrompt.from_state(bb, explained)
    heat = relevance_maps(dp, bb.pixels([picture]), [top])[0]
    return feats, top, heat


@gpu(duration=START_S + 10)
def maps(explained: PromptState, pictures: Sequence[Image.Image], classes: Sequence[int]
         ) -> list[np.ndarray]:
    """The relevance map of class `classes[i]` on `pictures[i]`, for each i."""
    from core.explain import relevance_maps

    bb = host.model()
    dp = DualPrompt.from_state(bb, explained)
    return [relevance_maps(dp, bb.pixels([p]), [int(k)])[0] for p, k in zip(pictures, classes)]
