"""Which unlabelled scans to label next: the pool ranked by what a label would teach.

    ranked = rank_pool(probs, features, others=[probe_probs, zero_probs], k=8)
    ranked[0].index, ranked[0].reason     # the pool scan to label first, and why

A scan teaches most where the classifier is least sure of it (a small margin between its two
most probable classes) and where classifiers disagree about it (the tuned prompts, a linear
probe and zero-shot: the total variation distance between their probabilities). Those scores
alone would suggest the same case eight times over when the pool holds near-copies of it (the
neighbouring slices of one volume, one lesion photographed twice), so the suggestions are picked
farthest-first among the most uncertain: each next one is the candidate farthest (in image
feature space) from those already picked, ties going to the more uncertain, and a candidate that
is a near-duplicate of a pick is never picked. `random_order` is the baseline a teacher shows
beside it.

Everything here works on probabilities and features already computed: ranking 300 scans costs
milliseconds and no model call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

CANDIDATES_PER_PICK = 3  # farthest-first runs among the k x this most uncertain
NEAR_DUPLICATE = 0.05  # of the candidates' median feature distance: closer is a near-duplicate
DISAGREEMENT_WEIGHT = 0.5


@dataclass(frozen=True)
class Suggestion:
    """A pool scan to label: its position in the pool, its guess (the class the classifier
    ranks first) and why it is suggested (`reason`: "unsure", "disagree" or "random")."""

    index: int
    guess: int
    margin: float  # between the two most probable classes, 0 (a coin toss) to 1 (certain)
    disagreement: float  # mean total variation distance to the other classifiers, 0 to 1
    score: float
    reason: str
    runner_up: int | None = None  # the second most probable class
    disagreeing: int | None = None  # which of `others` disagrees most (its top class differs)


def margins(probs: torch.Tensor) -> torch.Tensor:
    """(N,) the margin between each row's two most probable classes."""
    top = torch.topk(probs.float(), k=min(2, probs.shape[1]), dim=1).values
    return top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0.0)


def disagreements(probs: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N,) the mean total variation distance between `probs` and each of `others`."""
    if not others:
        return torch.zeros(len(probs))
    probs = probs.float()
    return torch.stack([0.5 * (probs - o.float()).abs().sum(dim=1) for o in others]).mean(dim=0)


def rank_pool(probs: torch.Tensor, features: torch.Tensor,
              others: Sequence[torch.Tensor] = (), k: int = 8) -> list[Suggestion]:
    """Up to `k` pool scans to label next, the most useful first.

    `probs` (N, C): the classifier's probabilities (the tuned prompts; zero-shot before any
    tuning); `features` (N, D): the scans' image features (any scale: they are normalised
    here); `others`: other classifiers' probabilities (N, C) over the same classes, for their
    disagreement. Fewer than `k` come back when the pool has fewer scans that are not
    near-duplicates of one another."""
    n = len(probs)
    if n == 0 or k <= 0:
        return []
    if features.shape[0] != n or any(o.shape != probs.shape for o in others):
        raise ValueError("probs, features and others must describe the same pool scans")
    margin = margins(probs)
    disagree = disagreements(probs, others)
    score = (1.0 - margin) + DISAGREEMENT_WEIGHT * disagree
    order = torch.argsort(score, descending=True, stable=True)
    feats = torch.nn.functional.normalize(features.float(), dim=1)
    distance = (1.0 - feats @ feats.T).clamp_min(0.0)
    candidates = order[:max(k * CANDIDATES_PER_PICK, k)].tolist()
    near = _near(distance, candidates)
    picked = _farthest_first(candidates, distance, score, near, k)
    if len(picked) < k:  # the candidates ran out of distinct scans: look further down
        rest = [i for i in order.tolist() if i not in picked]
        picked = _farthest_first(picked + rest, distance, score, near, k, start=picked)
    return [_suggestion(i, probs, margin, disagree, score, others) for i in picked]


def random_order(n: int, k: int = 8, seed: int = 0) -> list[int]:
    """`k` pool positions in a random order (seeded): the baseline beside the ranking."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:k].tolist()


def _near(distance: torch.Tensor, candidates: list[int]) -> float:
    """How close two scans must be to count as near-duplicates: a share of the candidates'
    median distance (feature scales differ from one backbone to another), and never above
    what separates identical pictures from different ones."""
    if len(candidates) < 2:
        return 0.0
    sub = distance[candidates][:, candidates]
    pairs = sub[torch.triu(torch.ones_like(sub, dtype=torch.bool), diagonal=1)]
    return float(NEAR_DUPLICATE * pairs.median())


def _farthest_first(pool: list[int], distance: torch.Tensor, score: torch.Tensor, near: float,
                    k: int, start: Sequence[int] = ()) -> list[int]:
    """Greedy farthest-first over `pool` (in order of preference), starting from `start` (or
    the first of `pool`): each next pick is the one farthest from every pick so far, ties to
    the higher score; one within `near` of a pick is never picked."""
    picked = list(start) or pool[:1]
    left = [i for i in pool if i not in picked]
    while left and len(picked) < k:
        gap = distance[left][:, picked].min(dim=1).values
        usable = gap > near
        if not usable.any():
            break
        # farthest first; among (nearly) equal distances, the more uncertain
        value = torch.where(usable, gap + 1e-6 * score[left], torch.tensor(-1.0))
        best = left[int(torch.argmax(value))]
        picked.append(best)
        left = [i for i, ok in zip(left, usable.tolist()) if ok and i != best]
    return picked[:k]


def _suggestion(i: int, probs: torch.Tensor, margin: torch.Tensor, disagree: torch.Tensor,
                score: torch.Tensor, others: Sequence[torch.Tensor]) -> Suggestion:
    row = probs[i].float()
    top = torch.topk(row, k=min(2, len(row))).indices.tolist()
    guess = top[0]
    disagreeing = None
    for j, other in enumerate(others):
        if int(other[i].argmax()) != guess:
            disagreeing = j
            break
    reason = "disagree" if disagreeing is not None else "unsure"
    return Suggestion(i, guess, float(margin[i]), float(disagree[i]), float(score[i]), reason,
                      top[1] if len(top) > 1 else None, disagreeing)
