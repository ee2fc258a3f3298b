"""Benchmark: `python -m benchmarks.labelling` prints the labelling loop's figures, one JSON line
last.

1. **Which scans to label** (`ranked`, `random`): simulated labelling on the tiny backbone, with
   its prompts tuned as the app tunes them (the fast recipe, warm after the first run). Each
   task has cluster structure built so that uncertainty matters: each of two classes has a
   large, plain cluster (a clear tint) and a small one near the other class (a tint close to
   the boundary, differing in texture), and the pool holds mostly the plain ones. The user
   starts from two labelled scans per class (from the plain clusters); each round labels 4 pool
   scans (the oracle gives their class), chosen by `core.active.rank_pool` from the tuned
   prompts', the linear probe's and zero-shot's probabilities, or at random; then tunes again.
   Printed: the held-out accuracy (a set balanced over the four clusters) after k = 4, 8, 16
   labels, the mean over the seeds, for both orders.
2. **Warm re-tune** (`warm`, `cold`): BiomedCLIP's full architecture at random weights (compute
   cost does not depend on weight values; convergence does), 4 classes x 16 shots tuned, then 4
   examples added (one per class); the re-tune from the tuned prompts (`core.train.warm_config`)
   against one from the template's words: steps, seconds and final training loss of each.
3. **Ranking 300 pool scans** (`rank_300_s`) from cached features: the three classifiers'
   probabilities and the ranking.
"""
from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import torch
from PIL import Image

from benchmarks.engine import CLASSNAMES, TEMPLATE, best_of, cpu_name, synthetic_task
from core.active import random_order, rank_pool
from core.backbone import bf16_supported, load_backbone
from core.baselines import fit_baseline
from core.features import FeatureCache, encode
from core.prompts import DualPrompt, PromptConfig
from core.train import TrainConfig, fit_features, warm_config

KS = (4, 8, 16)
ROUND = 4  # scans labelled between two tunes
START_PER_CLASS = 2


def clustered_task(seed: int, pool: int = 80, held_out: int = 24, size: int = 64):
    """Pictures of two classes, each a plain cluster (most of the pool) and a small one near
    the boundary: (pool pictures, their classes, their clusters, held-out pictures, classes).
    The held-out set is balanced over the four clusters."""
    rng = np.random.default_rng(seed)
    low, high = 70.0, 190.0
    middle = (low + high) / 2
    # cluster: (class, tint, stripe period: the texture that tells the near clusters apart)
    clusters = [(0, low, 0), (0, middle - 6, 6), (1, high, 0), (1, middle + 6, 14)]
    share = [0.42, 0.08, 0.42, 0.08]

    def picture(cluster: int) -> Image.Image:
        label, tint, period = clusters[cluster]
        pixels = tint + rng.normal(0, 18, size=(size, size))
        if period:
            pixels += 30 * np.sign(np.sin(np.arange(size) * 2 * np.pi / period))[None, :]
        grey = np.clip(pixels, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1))

    which = rng.choice(4, size=pool, p=share)
    pool_pictures = [picture(int(c)) for c in which]
    pool_labels = [clusters[int(c)][0] for c in which]
    test_clusters = np.repeat(np.arange(4), held_out // 4)
    test_pictures = [picture(int(c)) for c in test_clusters]
    test_labels = [clusters[int(c)][0] for c in test_clusters]
    return pool_pictures, pool_labels, which.tolist(), test_pictures, test_labels


def simulate(bb, seed: int, order: str, names: list[str], pool: int = 80) -> dict[int, float]:
    """One labelling session: held-out accuracy after each k of `KS` labels."""
    pool_pictures, pool_labels, clusters, tests, test_labels = clustered_task(seed, pool)
    cache = FeatureCache()
    dp = DualPrompt(bb, names, PromptConfig(template="a photo of a {}."))
    vp = dp.cfg.n_vision_prompts
    seen = encode(bb, pool_pictures, vision_prompts=vp, cache=cache)
    plain = encode(bb, pool_pictures, vision_prompts=0, cache=cache)
    test_seen = encode(bb, tests, vision_prompts=vp, cache=cache)
    with torch.no_grad():
        zero_text = dp.zero_shot().text_features().float().cpu()
    scale = float(bb.logit_scale)
    rng = np.random.default_rng(seed)
    labelled = []
    for c in range(2):  # a start the user would make: plain examples of each class
        plain_ones = [i for i, k in enumerate(clusters) if k == 2 * c]
        labelled += rng.choice(plain_ones, START_PER_CLASS, replace=False).tolist()
    cfg = TrainConfig.fast(steps=100)
    state = None
    accuracy = {}
    done = 0
    while done < max(KS):
        state = tune(dp, seen, pool_labels, labelled, cfg, state)
        left = [i for i in range(len(pool_pictures)) if i not in labelled]
        if order == "random":
            picks = [left[j] for j in random_order(len(left), ROUND, seed + len(labelled))]
        else:
            probs = state.proba(seen[left])
            probe = fit_baseline("linear-probe", plain[labelled],
                                 [pool_labels[i] for i in labelled], zero_text,
                                 logit_scale=scale)
            others = [torch.from_numpy(probe.predict_proba(plain[left])).float(),
                      (scale * plain[left].float() @ zero_text.T).softmax(dim=-1)]
            picks = [left[s.index] for s in rank_pool(probs, plain[left], others, ROUND)]
        if not picks:
            break
        # a round may bring fewer than 4 (the rest near-copies of those shown): the figure of
        # k is taken once at least k are labelled
        before, done = done, len(labelled) + len(picks) - 2 * START_PER_CLASS
        labelled += picks
        reached = [k for k in KS if before < k <= done]
        if reached:
            state = tune(dp, seen, pool_labels, labelled, cfg, state)
            predicted = state.proba(test_seen).argmax(dim=1)
            for k in reached:
                accuracy[k] = float((predicted == torch.tensor(test_labels)).float().mean())
    return accuracy


def tune(dp: DualPrompt, feats, labels, labelled, cfg, state):
    """Tune on the labelled scans: cold the first time, then warm from `state` (the last
    run's `PromptState`), as the app does; the tuned prompts' state."""
    run = dp.with_classes(dp.classnames)
    if state is not None:
        with torch.no_grad():
            run.ctx.copy_(state.ctx)
        cfg = warm_config(cfg)
    fit_features(run, feats[labelled], [labels[i] for i in labelled], cfg)
    return run.state()


def warm_against_cold(bb, classes: int, shots: int, added: int = 1) -> dict:
    """4 classes x 16 shots tuned; `added` examples per class more; the re-tune warm and
    cold."""
    names = CLASSNAMES[:classes]
    images, labels = synthetic_task(classes, shots + added, seed=0)
    first = [i for i, _ in enumerate(images) if i % (shots + added) < shots]
    cache = FeatureCache()
    dp = DualPrompt(bb, names, PromptConfig(template=TEMPLATE))
    feats = encode(bb, images, vision_prompts=dp.cfg.n_vision_prompts, cache=cache)
    cfg = TrainConfig.fast()
    tuned = dp.with_classes(names)
    fit_features(tuned, feats[first], [labels[i] for i in first], cfg)
    out = {}
    for start in ("cold", "warm"):
        run = dp.with_classes(names)
        run_cfg = cfg
        if start == "warm":
            with torch.no_grad():
                run.ctx.copy_(tuned.ctx)
            run_cfg = warm_config(cfg)
        history = fit_features(run, feats, labels, run_cfg)
        out[start] = {"steps": len(history.steps), "seconds": round(history.total_s, 3),
                      "final_loss": round(history.final["loss"], 4),
                      "final_accuracy": round(history.final["accuracy"], 4),
                      "precision": history.precision}
    out["warm_steps_share"] = round(out["warm"]["steps"] / out["cold"]["steps"], 3)
    out["warm_loss_over_cold"] = round(out["warm"]["final_loss"] / out["cold"]["final_loss"]
                                       - 1, 4)
    return out


def rank_300(repeats: int = 5, n: int = 300, classes: int = 4, dim: int = 512) -> float:
    """Seconds to rank `n` pool scans from cached features: the tuned prompts', the linear
    probe's and zero-shot's probabilities, then `rank_pool`."""
    generator = torch.Generator().manual_seed(0)
    plain = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    seen = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    tuned_text = torch.nn.functional.normalize(torch.randn(classes, dim, generator=generator),
                                               dim=1)
    zero_text = torch.nn.functional.normalize(torch.randn(classes, dim, generator=generator),
                                              dim=1)
    examples = torch.nn.functional.normalize(torch.randn(64, dim, generator=generator), dim=1)
    probe = fit_baseline("linear-probe", examples, [i % classes for i in range(64)], zero_text,
                         logit_scale=100.0)

    def rank() -> None:
        probs = (100 * seen @ tuned_text.T).softmax(dim=-1)
        others = [torch.from_numpy(probe.predict_proba(plain)).float(),
                  (100 * plain @ zero_text.T).softmax(dim=-1)]
        rank_pool(probs, plain, others, 8)

    return best_of(rank, repeats)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulated-backbone", default="tiny-biomedclip")
    parser.add_argument("--backbone", default="random-biomedclip",
                        help="the warm re-tune's model (BiomedCLIP's full architecture)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=80, help="pool scans per simulated task")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--shots", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    small = load_backbone(args.simulated_backbone, "cpu")
    names = ["plain", "striped"]
    curves = {"ranked": {}, "random": {}}
    for order in curves:
        runs = [simulate(small, seed, order, names, args.pool) for seed in range(args.seeds)]
        curves[order] = {str(k): round(float(np.mean([r[k] for r in runs])), 4) for k in KS}
    bb = load_backbone(args.backbone, None)
    result = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "bf16_native": bf16_supported(bb.device), "seeds": args.seeds,
        "simulated_backbone": args.simulated_backbone, "backbone": args.backbone,
        "ranked": curves["ranked"], "random": curves["random"],
        "ranked_minus_random": {str(k): round(curves["ranked"][str(k)]
                                              - curves["random"][str(k)], 4) for k in KS},
        **warm_against_cold(bb, args.classes, args.shots),
        "rank_300_s": round(rank_300(), 5),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
