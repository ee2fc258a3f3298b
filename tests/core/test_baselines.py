"""core.baselines: zero-shot, Tip-Adapter and the zero-shot-initialised linear probe on
features, against hand computations and on features with a planted signal."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.baselines import BASELINES, fit_baseline
from core.errors import TrainingError


def planted(n_per_class=4, classes=3, dim=16, seed=0, noise=0.6):
    """Features clustered around class centres, and text features that only half point at
    them (a weak zero-shot classifier, as on a new task)."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, dim, generator=g), dim=-1)
    labels = [c for c in range(classes) for _ in range(n_per_class)]
    feats = F.normalize(centres[labels] + noise * torch.randn(len(labels), dim, generator=g), dim=-1)
    text = F.normalize(0.5 * centres + torch.randn(classes, dim, generator=g), dim=-1)
    return feats, labels, text, centres


@pytest.mark.parametrize("name", BASELINES)
def test_probabilities_are_rows_summing_to_one(name):
    feats, labels, text, _ = planted()
    clf = fit_baseline(name, feats, labels, text, logit_scale=30.0)
    probs = clf.predict_proba(feats)
    assert isinstance(probs, np.ndarray) and probs.shape == (12, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-12) and (probs >= 0).all()


def test_zero_shot_is_the_text_classifier():
    feats, labels, text, _ = planted()
    clf = fit_baseline("zero-shot", feats, labels, text, logit_scale=30.0)
    expected = (30.0 * feats @ text.T).softmax(-1).numpy()
    assert np.allclose(clf.predict_proba(feats), expected, atol=1e-6)


def test_tip_adapter_adds_the_cache_term_with_the_papers_defaults():
    feats, labels, text, _ = planted()
    clf = fit_baseline("tip-adapter", feats, labels, text, logit_scale=30.0)
    assert (clf.alpha, clf.beta) == (1.0, 5.5)
    query = feats[:2]
    affinity = query @ feats.T
    cache = torch.exp(-5.5 * (1 - affinity)) @ F.one_hot(torch.tensor(labels), 3).float()
    expected = (30.0 * query @ text.T + cache).softmax(-1).numpy()
    assert np.allclose(clf.predict_proba(query), expected, atol=1e-6)


def test_linear_probe_starts_at_zero_shot_and_learns_the_planted_classes():
    feats, labels, text, centres = planted()
    zero = fit_baseline("zero-shot", feats, labels, text, logit_scale=30.0)
    probe = fit_baseline("linear-probe", feats, labels, text, logit_scale=30.0)
    anchored = fit_baseline("linear-probe", feats, labels, text, logit_scale=30.0, reg=1e6)
    y = np.asarray(labels)
    test, test_labels, _, _ = planted(seed=0, n_per_class=20)  # same centres, new draws
    tl = np.asarray(test_labels)
    assert (probe.predict_proba(test).argmax(1) == tl).mean() > \
        (zero.predict_proba(test).argmax(1) == tl).mean()
    assert (probe.predict_proba(feats).argmax(1) == y).mean() == 1.0
    # an infinitely strong anchor is the zero-shot classifier itself
    assert np.allclose(anchored.predict_proba(test), zero.predict_proba(test), atol=1e-3)


def test_one_shot_probe_is_no_worse_than_chance_where_zero_shot_is_good():
    feats, labels, _, centres = planted(n_per_class=1, noise=0.3)
    good_text = centres  # zero-shot knows the classes
    probe = fit_baseline("linear-probe", feats, labels, good_text, logit_scale=30.0)
    test, test_labels, _, _ = planted(seed=0, n_per_class=30, noise=0.3)
    accuracy = (probe.predict_proba(test).argmax(1) == np.asarray(test_labels)).mean()
    assert accuracy > 0.9


def test_bad_input_is_explained():
    feats, labels, text, _ = planted()
    with pytest.raises(TrainingError, match="Unknown baseline"):
        fit_baseline("clip-adapter", feats, labels, text)
    with pytest.raises(TrainingError, match="labels"):
        fit_baseline("tip-adapter", feats, labels[:-1], text)
    with pytest.raises(TrainingError, match="class numbers"):
        fit_baseline("linear-probe", feats, [5] * len(labels), text)
