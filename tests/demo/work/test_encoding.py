"""The examples' own measure of an outlier: each example's similarity to its nearest other."""
from __future__ import annotations

import math

import pytest
import torch

from demo.work.encoding import least_typical_similarity


def _unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_the_floor_is_the_least_typical_examples_nearest_neighbour():
    # two tight pairs at right angles; the second pair is the looser one
    tight = math.radians(10)
    loose = math.radians(40)
    feats = _unit([1, 0, 0], [math.cos(tight), math.sin(tight), 0],
                  [0, 0, 1], [0, math.sin(loose), math.cos(loose)])
    assert least_typical_similarity(feats) == pytest.approx(math.cos(loose), abs=1e-6)
    # a scan between the pairs is farther from every example than any example from its own
    # nearest; one close to an example is not
    between = _unit([1, 0, 1])[0]
    near = _unit([1, 0.05, 0])[0]
    assert float((feats @ between).max()) < least_typical_similarity(feats)
    assert float((feats @ near).max()) > least_typical_similarity(feats)


def test_no_floor_without_two_examples():
    assert least_typical_similarity(_unit([1, 0])) is None
    assert least_typical_similarity(torch.zeros(0, 4)) is None
