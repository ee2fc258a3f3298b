"""Evaluation: metric functions against hand-computed values, evaluate() on tiny backbones,
the cross-validated estimate, the confusion figure."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from core.errors import DatasetError
from core.evaluate import (accuracy, balanced_accuracy, confusion_figure,
                           confusion_matrix, evaluate, macro_f1, precision_recall_f1,
                           result_from_probabilities, summary_rows)
from core.features import FeatureCache
from core.prompts import DualPrompt, PromptConfig
from tests.helpers import BRAIN_CLASSES, BRAIN_TEMPLATE, tinted_images, tinted_pixels


# ---- metrics, by hand ---------------------------------------------------------------------
# labels      0 0 0 1 1 2
# predictions 0 0 1 1 2 2
#            predicted
# true    [[2, 1, 0],      precision = [2/2, 1/2, 1/2]   (column sums 2, 2, 2)
#          [0, 1, 1],      recall    = [2/3, 1/2, 1/1]   (row sums 3, 2, 1)
#          [0, 0, 1]]      F1        = [0.8, 0.5, 2/3]   (2pr / (p + r))
LABELS = [0, 0, 0, 1, 1, 2]
PREDICTIONS = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(LABELS, PREDICTIONS, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.dtype == np.int64


def test_metrics_match_hand_computed_values():
    cm = confusion_matrix(LABELS, PREDICTIONS, 3)
    precision, recall, f1, support = precision_recall_f1(cm)
    assert precision == pytest.approx([1.0, 0.5, 0.5])
    assert recall == pytest.approx([2 / 3, 0.5, 1.0])
    assert f1 == pytest.approx([0.8, 0.5, 2 / 3])
    assert support.tolist() == [3, 2, 1]
    assert accuracy(cm) == pytest.approx(4 / 6)
    assert balanced_accuracy(cm) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # 13/18
    assert macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_undefined_quantities_are_zero_and_absent_classes_are_left_out():
    # class 1 is never predicted (precision 0/0), class 3 has no images and no predictions
    cm = confusion_matrix([0, 1, 2], [0, 0, 2], 4)
    precision, recall, f1, support = precision_recall_f1(cm)
    assert precision == pytest.approx([0.5, 0.0, 1.0, 0.0])
    assert recall == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert f1 == pytest.approx([2 / 3, 0.0, 1.0, 0.0])
    assert not np.isnan(precision).any() and not np.isnan(f1).any()
    assert balanced_accuracy(cm) == pytest.approx(2 / 3)  # mean over classes 0, 1, 2
    assert macro_f1(cm) == pytest.approx(5 / 9)
    empty = np.zeros((3, 3), dtype=np.int64)
    assert accuracy(empty) == balanced_accuracy(empty) == macro_f1(empty) == 0.0


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="labels but"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 2], [0, 1], 2)


def test_result_from_probabilities_uses_the_arg_max():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    result = result_from_probabilities([0, 1, 2, 1], probs, ["a", "b", "c"])
    assert result.predictions == [0, 1, 2, 0]
    assert result.accuracy == pytest.approx(0.75)
    assert result.per_class["b"].recall == pytest.approx(0.5)
    assert result.per_class["a"].precision == pytest.approx(0.5)
    assert result.per_class["b"].support == 2
    assert result.confusion == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    as_dict = result.to_dict()
    assert as_dict["per_class"]["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert "probabilities" not in as_dict and len(result.to_dict(True)["probabilities"]) == 4


# ---- evaluate on tiny backbones -----------------------------------------------------------
def make(bb, n_vision_prompts=4) -> DualPrompt:
    return DualPrompt(bb, BRAIN_CLASSES, PromptConfig(template=BRAIN_TEMPLATE,
                                                      n_vision_prompts=n_vision_prompts))


def test_evaluate_returns_consistent_metrics(bb):
    dp = make(bb)
    x, y = tinted_pixels(4, 2)
    result = evaluate(dp, x, y)
    assert result.probabilities.shape == (8, 4)
    assert np.allclose(result.probabilities.sum(axis=1), 1, atol=1e-5)
    assert result.predictions == result.probabilities.argmax(axis=1).tolist()
    assert result.accuracy == pytest.approx(np.mean(np.array(result.predictions) == np.array(y)))
    assert np.asarray(result.confusion).sum() == 8
    assert list(result.per_class) == BRAIN_CLASSES
    assert all(m.support == 2 for m in result.per_class.values())
    assert 0.0 <= result.balanced_accuracy <= 1.0


def test_labels_by_name_pil_images_and_batch_size_agree(backbones):
    bb = backbones["tiny-biomedclip"]
    dp = make(bb)
    images, labels = tinted_images(4, 1)
    names = [BRAIN_CLASSES[c].upper() + "  " for c in labels]  # case and spacing are forgiven
    from_pil = evaluate(dp, images, labels, batch_size=3)
    from_names = evaluate(dp, images, names, batch_size=32)
    from_pixels = evaluate(dp, bb.pixels(images).cpu(), labels)
    assert from_pil.labels == from_names.labels == labels
    assert np.allclose(from_pil.probabilities, from_names.probabilities, atol=1e-5)
    assert np.allclose(from_pil.probabilities, from_pixels.probabilities, atol=1e-5)


def test_memory_cache_encodes_each_image_once_per_image_tower(backbones):
    bb = backbones["tiny-biomedclip"]
    x, y = tinted_pixels(4, 1, seed=3)
    cache = FeatureCache()
    dp = make(bb)
    first = evaluate(dp, x, y, feature_cache=cache)
    assert (cache.misses, cache.hits, len(cache)) == (4, 0, 4)
    second = evaluate(dp, x, y, feature_cache=cache)
    assert cache.hits == 4 and len(cache) == 4
    assert np.array_equal(first.probabilities, second.probabilities)
    evaluate(dp.zero_shot(), x, y, feature_cache=cache)  # no vision prompts: new features
    assert len(cache) == 8
    coop = DualPrompt(bb, BRAIN_CLASSES, PromptConfig.coop(BRAIN_TEMPLATE))
    evaluate(coop, x, y, feature_cache=cache)  # same image tower as zero-shot: all hits
    assert len(cache) == 8


@pytest.mark.parametrize("labels, message", [
    ([0, 1], "4 images but 2 labels"),
    (["glioma", "astrocytoma", "glioma", "glioma"], "'astrocytoma' is not one of the classes"),
    ([0, 1, 2, 9], "class number from 0 to 3"),
])
def test_bad_labels_are_explained(backbones, labels, message):
    x, _ = tinted_pixels(4, 1)
    with pytest.raises(DatasetError, match=message):
        evaluate(make(backbones["tiny-biomedclip"]), x, labels)


def test_nothing_to_evaluate_is_explained(backbones):
    with pytest.raises(DatasetError, match="no labelled images"):
        evaluate(make(backbones["tiny-biomedclip"]), [], [])


def test_summary_rows_put_results_side_by_side():
    a = result_from_probabilities([0, 1], np.array([[0.9, 0.1], [0.6, 0.4]]), ["x", "y"])
    b = result_from_probabilities([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]), ["x", "y"])
    header, rows = summary_rows({"zero-shot": a, "tuned": b})
    assert header == ["metric", "zero-shot", "tuned"]
    assert rows[0] == ["accuracy", 50.0, 100.0]
    assert [r[0] for r in rows] == ["accuracy", "balanced accuracy", "macro F1",
                                    "precision: x", "precision: y", "recall: x", "recall: y",
                                    "F1: x", "F1: y"]
    # zero-shot predicts x for both: precision of x is 1/2, of y 0 (never predicted)
    assert rows[3] == ["precision: x", 50.0, 100.0] and rows[4] == ["precision: y", 0.0, 100.0]
    _, named = summary_rows({"a": a}, {"precision": "정밀도: {name}"})
    assert named[3][0] == "정밀도: x"


# ---- the figure ---------------------------------------------------------------------------
def test_confusion_figure_shows_counts_without_pyplot_state():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    cm_probs = np.eye(3)[PREDICTIONS]
    result = result_from_probabilities(LABELS, cm_probs, ["glioma", "meningioma", "normal"])
    before = plt.get_fignums()
    fig = confusion_figure(result)
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    ax = fig.axes[0]
    counts = sorted(t.get_text() for t in ax.texts)
    assert counts == sorted(str(v) for row in result.confusion for v in row)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["glioma", "meningioma", "normal"]
    assert ax.images[0].get_array().max() == pytest.approx(1.0)  # row-normalised colours
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


# ---- the held-out estimate ----------------------------------------------------------------
def test_folds_are_stratified_cover_every_example_once_and_are_seeded():
    from core.evaluate import stratified_folds

    labels = [0] * 8 + [1] * 4 + [2] * 6
    folds = stratified_folds(labels, 4, seed=1)
    assert len(folds) == 4
    assert sorted(np.concatenate(folds).tolist()) == list(range(18))
    for fold in folds:
        counts = np.bincount(np.asarray(labels)[fold], minlength=3)
        assert counts[0] == 2 and counts[1] == 1 and counts[2] in (1, 2)
    assert all(np.array_equal(a, b) for a, b in zip(folds, stratified_folds(labels, 4, seed=1)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, stratified_folds(labels, 4, 2)))
    assert len(stratified_folds([0, 0, 1, 1, 1], 4)) == 2  # capped at the smallest class
    with pytest.raises(DatasetError, match="at least two examples of every class"):
        stratified_folds([0, 0, 1], 4)


def test_cross_validation_predicts_each_example_without_having_seen_it():
    from core.baselines import fit_baseline
    from core.evaluate import cross_validate, stratified_folds

    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=-1)
    labels = [c for c in range(3) for _ in range(6)]
    feats = torch.nn.functional.normalize(centres[labels] + 0.5 * torch.randn(18, 16, generator=g),
                                          dim=-1)
    text = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=-1)
    out = cross_validate("tip-adapter", feats, labels, folds=3, seed=1, text_features=text,
                         logit_scale=30.0)
    assert out["folds"] == 3 and out["n"] == 18 and len(out["per_fold"]) == 3
    # by hand: each fold's probabilities come from a cache without that fold
    for test in stratified_folds(labels, 3, 1):
        train = np.setdiff1d(np.arange(18), test)
        clf = fit_baseline("tip-adapter", feats[train], np.asarray(labels)[train].tolist(), text,
                           logit_scale=30.0)
        assert np.allclose(out["probabilities"][test], clf.predict_proba(feats[test]), atol=1e-6)
    pooled = result_from_probabilities(labels, out["probabilities"], ["a", "b", "c"])
    assert out["accuracy"] == pytest.approx(pooled.accuracy)
    assert out["balanced_accuracy"] == pytest.approx(pooled.balanced_accuracy)
    assert out["std"] == pytest.approx(np.std([f["accuracy"] for f in out["per_fold"]]))
    assert cross_validate("tip-adapter", feats, labels, text_features=text,
                          should_stop=lambda: True) is None


def test_cross_validating_prompt_tuning_starts_every_fold_afresh(backbones):
    from core.evaluate import cross_validate
    from core.features import encode
    from core.train import TrainConfig

    bb = backbones["tiny-clip"]
    x, y = tinted_pixels(4, 3, seed=2)
    feats = encode(bb, x, precision="fp32")
    dp = make(bb)
    before = dp.ctx.detach().clone()
    cfg = TrainConfig.fast(steps=3, precision="fp32")
    out = cross_validate("biomed-dpt", feats, y, folds=3, seed=1, prompts=dp, train=cfg)
    again = cross_validate("biomed-dpt", feats, y, folds=3, seed=1, prompts=dp, train=cfg)
    assert torch.equal(dp.ctx, before)  # the given module is only copied
    assert out["folds"] == 3 and np.allclose(out["probabilities"], again["probabilities"])
    assert np.allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
