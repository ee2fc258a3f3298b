"""Evaluation: metric functions against hand-computed values, evaluate() on tiny backbones,
feature caching in memory and on disk, the confusion figure."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch

from core.errors import DatasetError
from core.evaluate import (FeatureCache, FeatureStore, StoreKey, accuracy, balanced_accuracy,
                           compare, confusion_figure, confusion_matrix, encode_images, evaluate,
                           macro_f1, precision_recall_f1, result_from_probabilities, summary_rows)
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
    both = compare(dp, x, y, feature_cache=cache)  # zero-shot has no vision prompts: new features
    assert len(cache) == 8 and set(both) == {"zero-shot", "tuned"}
    coop = DualPrompt(bb, BRAIN_CLASSES, PromptConfig.coop(BRAIN_TEMPLATE))
    evaluate(coop, x, y, feature_cache=cache)  # same image tower as zero-shot: all hits
    assert len(cache) == 8


def test_feature_cache_drops_the_least_recently_used():
    cache = FeatureCache(max_items=2)
    for key in "abc":
        cache.put(key, torch.ones(3))
    assert cache.get("a") is None and cache.get("c") is not None and len(cache) == 2


def test_encoding_the_same_images_is_deterministic(backbones):
    dp = make(backbones["tiny-clip"]).eval()
    x, _ = tinted_pixels(3, 1, seed=5)
    first = encode_images(dp, x, batch_size=2)
    assert torch.equal(first, encode_images(dp, x, batch_size=2))
    assert torch.allclose(first, encode_images(dp, x, batch_size=8), atol=1e-5)


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


# ---- the disk store -----------------------------------------------------------------------
def key(view="eval", n_vision_prompts=4) -> StoreKey:
    return StoreKey("fp", n_vision_prompts, view, "fp32", "TOY/test")


def fake_encoder(log: list):
    def encode(indices):
        log.append(list(indices))
        return torch.stack([torch.full((3,), float(i)) for i in indices])
    return encode


def test_store_encodes_only_missing_images_and_survives_a_restart(tmp_path):
    calls: list = []
    store = FeatureStore(tmp_path)
    a = store.features(key(), ["x", "y"], fake_encoder(calls))
    assert calls == [[0, 1]] and a[:, 0].tolist() == [0.0, 1.0]
    b = store.features(key(), ["y", "z", "x"], fake_encoder(calls))
    assert calls[-1] == [1]  # only z, at position 1 of the request
    assert b[:, 0].tolist() == [1.0, 1.0, 0.0]  # y and x from the store, z freshly encoded
    fresh = FeatureStore(tmp_path)  # a new process reads the file
    again = fresh.features(key(), ["z", "x", "y"], fake_encoder(calls))
    assert len(calls) == 2 and fresh.encoded == 0
    assert again[:, 0].tolist() == [1.0, 0.0, 1.0]
    other = fresh.features(key(n_vision_prompts=0), ["x"], fake_encoder(calls))
    assert len(calls) == 3 and other.shape == (1, 3)  # other settings: another file
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_a_damaged_store_file_is_rebuilt(tmp_path, caplog):
    store = FeatureStore(tmp_path)
    store.features(key(), ["x"], fake_encoder([]))
    store.path(key()).write_bytes(b"not a safetensors file")
    calls: list = []
    with caplog.at_level(logging.WARNING):
        out = FeatureStore(tmp_path).features(key(), ["x"], fake_encoder(calls))
    assert calls == [[0]] and out.shape == (1, 3)
    assert "damaged feature cache" in caplog.text
