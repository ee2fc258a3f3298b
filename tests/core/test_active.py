"""core/active.py: the pool ranked by what a label would teach, on hand-built numbers."""
from __future__ import annotations

import pytest
import torch

from core.active import disagreements, margins, random_order, rank_pool


def probs_with_margins(values) -> torch.Tensor:
    """Two-class probabilities whose margins are `values`."""
    m = torch.tensor(values, dtype=torch.float32)
    return torch.stack([(1 + m) / 2, (1 - m) / 2], dim=1)


def test_margins_and_disagreements_are_what_they_say():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.34, 0.33, 0.33]])
    assert margins(probs).tolist() == pytest.approx([0.5, 0.01], abs=1e-6)
    other = torch.tensor([[0.1, 0.2, 0.7], [0.34, 0.33, 0.33]])
    assert disagreements(probs, [other]).tolist() == pytest.approx([0.6, 0.0], abs=1e-6)
    assert disagreements(probs, []).tolist() == [0.0, 0.0]


def test_the_most_uncertain_come_first_when_every_scan_differs():
    """Orthogonal features: no two alike, so the order is the uncertainty's."""
    values = [0.9, 0.05, 0.6, 0.2, 0.0, 0.75]
    ranked = rank_pool(probs_with_margins(values), torch.eye(6), k=4)
    assert [s.index for s in ranked] == [4, 1, 3, 2]
    assert ranked[0].margin == pytest.approx(0.0) and ranked[0].reason == "unsure"
    assert ranked[1].guess == 0 and ranked[1].runner_up == 1


def test_near_duplicates_are_never_both_suggested():
    """Scans 0 and 1 are the two most uncertain but nearly the same picture (neighbouring
    slices): one is suggested, then the next most uncertain scan unlike it."""
    feats = torch.eye(6)
    feats[1] = feats[0] + 1e-4 * torch.randn(6, generator=torch.Generator().manual_seed(0))
    values = [0.01, 0.02, 0.3, 0.5, 0.7, 0.9]
    ranked = [s.index for s in rank_pool(probs_with_margins(values), feats, k=3)]
    assert ranked == [0, 2, 3]
    everything = [s.index for s in rank_pool(probs_with_margins(values), feats, k=6)]
    assert sorted(everything) == [0, 2, 3, 4, 5]  # fewer than asked: 1 is 0's near-copy


def test_among_the_uncertain_the_pick_spreads_over_the_feature_space():
    """Three uncertain scans in one cluster, three slightly less uncertain in another: after
    the most uncertain, the next pick comes from the other cluster."""
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    noise = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)) * 0.05
    feats = torch.stack([a, a, a, b, b, b]) + noise
    values = [0.00, 0.01, 0.02, 0.05, 0.06, 0.07]
    ranked = [s.index for s in rank_pool(probs_with_margins(values), feats, k=2)]
    assert ranked[0] == 0 and ranked[1] in (3, 4, 5)


def test_disagreement_between_classifiers_raises_a_scan_and_is_its_reason():
    probs = probs_with_margins([0.5, 0.5, 0.5])
    probe = probs.clone()
    probe[2] = torch.tensor([0.1, 0.9])  # the probe thinks otherwise about scan 2
    ranked = rank_pool(probs, torch.eye(3), others=[probe], k=3)
    assert ranked[0].index == 2 and ranked[0].reason == "disagree"
    assert ranked[0].disagreeing == 0 and ranked[0].disagreement == pytest.approx(0.65)
    assert ranked[1].reason == "unsure"


def test_random_order_is_a_seeded_choice_of_distinct_scans():
    first = random_order(300, 8, seed=3)
    assert first == random_order(300, 8, seed=3) and len(set(first)) == 8
    assert first != random_order(300, 8, seed=4) and all(0 <= i < 300 for i in first)
    assert sorted(random_order(5, 8)) == [0, 1, 2, 3, 4]


def test_bad_shapes_and_empty_pools():
    assert rank_pool(torch.zeros(0, 2), torch.zeros(0, 4)) == []
    with pytest.raises(ValueError):
        rank_pool(probs_with_margins([0.1, 0.2]), torch.eye(3))


def test_a_pool_of_300_gives_8_distinct_suggestions_in_the_order_of_their_picking():
    """(Its time is measured in `benchmarks.labelling`, not here.)"""
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(300, 4, generator=generator), dim=1)
    others = [torch.softmax(torch.randn(300, 4, generator=generator), dim=1) for _ in range(2)]
    feats = torch.randn(300, 512, generator=generator)
    ranked = rank_pool(probs, feats, others, k=8)
    assert len(ranked) == 8 and len({s.index for s in ranked}) == 8
    assert ranked[0].score == max(float(s) for s in (1 - margins(probs)) + 0.5 * disagreements(
        probs, others))  # the first pick is the most uncertain of all
