"""Why a held-out estimate may mislead (demo/work/evaluation.py)."""
from __future__ import annotations

from demo.work.evaluation import estimate_warnings


def _method(accuracy: float, std: float) -> dict:
    return {"accuracy": accuracy, "std": std}


def test_few_or_unbalanced_examples_are_warned_about():
    assert estimate_warnings([4, 4], {}) == []
    assert estimate_warnings([3, 5], {}) == [("few_per_class", {"n": 3})]
    assert estimate_warnings([4, 13], {}) == [("unbalanced", {"most": 13, "least": 4})]


def test_a_spread_wider_than_the_gap_to_the_best_baseline_is_warned_about():
    close = {"tuned": _method(0.80, 0.10), "zero-shot": _method(0.50, 0.0),
             "linear-probe": _method(0.75, 0.02)}
    (key, values), = estimate_warnings([8, 8], close)
    assert key == "spread_wide" and values["spread"] == 0.10
    assert abs(values["gap"] - 0.05) < 1e-12  # against the best baseline, not the first
    apart = {**close, "linear-probe": _method(0.60, 0.05)}
    assert estimate_warnings([8, 8], apart) == []


def test_the_app_compares_and_names_the_registrys_baselines():
    from core import methods
    from demo.text.messages import EN, KO
    from demo.ui.tools import FEW_SHOT_METHODS
    from demo.work.evaluation import COMPARED

    assert COMPARED == methods.names(methods.ZERO_SHOT, methods.FITTED)
    assert set(FEW_SHOT_METHODS) == set(methods.names(in_app=True))
    for name in COMPARED:
        assert f"method_{name}" in EN and f"method_{name}" in KO, name
