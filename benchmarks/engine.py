"""Benchmark: `python -m benchmarks.engine` prints one JSON line of figures.

Builds the offline `random-biomedclip` (BiomedCLIP's full architecture at random weights: compute
cost does not depend on weight values), makes a synthetic few-shot task (classes x shots images with
a class-dependent tint, so training has a signal), and times: image encoding, one text step,
predicting one image, one relevance map and the maps of three classes, the probabilities of
every slice of a 64-slice volume, and end-to-end training with each recipe (image caching
included), plus the
process's peak resident memory. Figures are seconds unless named otherwise.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image

from core.backbone import autocast, bf16_supported, load_backbone
from core.baselines import fit_baseline
from core.evaluate import cross_validate
from core.explain import relevance_map, relevance_maps
from core.features import FeatureCache, encode
from core.prompts import DualPrompt, PromptConfig
from core.train import TrainConfig, fit, fit_features

TEMPLATE = "a MR photo of a {} in the brain."
CLASSNAMES = ["glioma", "meningioma", "pituitary tumor", "normal brain", "metastasis",
              "abscess", "cyst", "infarct"]


def synthetic_task(n_classes: int, shots: int, seed: int = 0, size: int = 320
                   ) -> tuple[list[Image.Image], list[int]]:
    """Greyscale-ish noisy images whose mean tint depends on the class."""
    rng = np.random.default_rng(seed)
    tints = rng.uniform(40, 215, size=(n_classes, 3))
    images, labels = [], []
    for c in range(n_classes):
        for _ in range(shots):
            noise = rng.normal(0, 35, size=(size, size, 1))
            pixels = np.clip(tints[c] + noise, 0, 255).astype(np.uint8)
            images.append(Image.fromarray(pixels))
            labels.append(c)
    return images, labels


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocation and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def features_first(bb, dp: DualPrompt, names: list[str], images, labels, folds: int) -> dict:
    """What the app does once the examples' features are cached (default precision): a
    re-tune (text steps only), both baselines fitted and predicting, the cross-validated
    estimate of Biomed-DPT, zero-shot and the baselines."""
    cache = FeatureCache()
    prompted = encode(bb, images, vision_prompts=dp.cfg.n_vision_prompts, cache=cache)
    plain = encode(bb, images, vision_prompts=0, cache=cache)
    cfg = TrainConfig.fast()
    started = time.perf_counter()
    history = fit_features(dp.with_classes(names), prompted, labels, cfg)
    retune_s = time.perf_counter() - started
    with torch.no_grad():
        text = dp.zero_shot().text_features().cpu()
    scale = float(bb.logit_scale)

    def baselines() -> None:
        for name in ("tip-adapter", "linear-probe"):
            fit_baseline(name, plain, labels, text, logit_scale=scale).predict_proba(plain)

    baselines_s = best_of(baselines, 3)
    started = time.perf_counter()
    estimate = {"biomed-dpt": cross_validate("biomed-dpt", prompted, labels, folds,
                                             prompts=dp.with_classes(names), train=cfg)}
    for name in ("zero-shot", "tip-adapter", "linear-probe"):
        estimate[name] = cross_validate(name, plain, labels, folds, text_features=text,
                                        logit_scale=scale)
    cv_s = time.perf_counter() - started
    return {"retune_s": round(retune_s, 2), "retune_steps": len(history.steps),
            "baselines_s": round(baselines_s, 4), "cv_s": round(cv_s, 2),
            "cv_accuracy": {k: round(v["accuracy"], 4) for k, v in estimate.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="random-biomedclip")
    parser.add_argument("--device", default=None)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--recipes", default="fast,paper",
                        help="comma list of fast, paper; 'none' for the per-step figures only")
    parser.add_argument("--precisions", default="auto",
                        help="comma list of fp32, bf16 for training; 'auto': fp32, plus bf16 "
                             "where it is native")
    parser.add_argument("--paper-epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    started = time.perf_counter()
    bb = load_backbone(args.backbone, args.device)
    load_s = time.perf_counter() - started
    native_bf16 = bf16_supported(bb.device)
    precisions = (["fp32", "bf16"] if native_bf16 else ["fp32"]) if args.precisions == "auto" \
        else args.precisions.split(",")
    names = CLASSNAMES[: args.classes] + [f"class {i}" for i in range(len(CLASSNAMES), args.classes)]
    images, labels = synthetic_task(args.classes, args.shots)
    dp = DualPrompt(bb, names, PromptConfig(template=TEMPLATE))
    batch = bb.pixels(images[:16])
    one = bb.pixels(images[:1])
    feats = dp.image_features(batch[:8]).detach()
    targets = torch.tensor(labels[:8], device=bb.device)

    def text_step() -> None:
        loss, _ = dp.loss(feats, targets)
        loss.backward()
        dp.ctx.grad = None

    figures: dict = {"encode_s_per_image": {}, "text_step_s": {}, "predict_s": {}, "map_s": {},
                     "maps_top3_s": {}, "volume_64_slices_s": {}}
    volume = [images[i % len(images)] for i in range(64)]  # a volume predicted slice by slice
    for precision in ("fp32", "bf16"):
        with autocast(bb.device, precision):
            with torch.no_grad():
                figures["encode_s_per_image"][precision] = best_of(
                    lambda: dp.image_features(batch), args.repeats) / len(batch)
                figures["predict_s"][precision] = best_of(
                    lambda: dp.predict_proba(bb.pixels(images[:1])), args.repeats)
            figures["text_step_s"][precision] = best_of(text_step, args.repeats)
            figures["map_s"][precision] = best_of(lambda: relevance_map(dp, one, 0), args.repeats)
            figures["maps_top3_s"][precision] = best_of(
                lambda: relevance_maps(dp, one, [0, 1, 2][: args.classes]), args.repeats)
            with torch.no_grad():  # every slice's probabilities, as "Predict every slice" does
                figures["volume_64_slices_s"][precision] = best_of(
                    lambda: dp.predict_proba(bb.pixels(volume)), 1)

    train: dict = {}
    recipes = {"fast": TrainConfig.fast, "paper": lambda **kw: TrainConfig.paper(
        epochs=args.paper_epochs, **kw)}
    for recipe in [r for r in args.recipes.split(",") if r and r != "none"]:
        for precision in precisions:
            if recipe == "paper" and precision != "fp32":
                continue  # the paper's recipe is fp32 by definition
            cfg = recipes[recipe](precision=precision)
            run = dp.with_classes(names)
            history = fit(run, images, labels, cfg)
            train.setdefault(recipe, {})[precision] = {
                "seconds": round(history.total_s, 2), "encode_s": round(history.encode_s, 2),
                "train_s": round(history.train_s, 2), "steps": len(history.steps),
                "first_loss": round(history.steps[0]["loss"], 4),
                "final_loss": round(history.final["loss"], 4),
                "final_accuracy": round(history.final["accuracy"], 4)}

    features = features_first(bb, dp, names, images, labels, args.folds)

    result = {
        "backbone": args.backbone, "device": str(bb.device), "cpu": cpu_name(),
        "threads": torch.get_num_threads(), "bf16_native": native_bf16,
        "torch": torch.__version__, "classes": args.classes, "shots": args.shots,
        "load_s": round(load_s, 2),
        **{k: {p: round(v, 4) for p, v in d.items()} for k, d in figures.items()},
        "train": train, **features, "peak_rss_mb": round(peak_rss_mb()),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
