"""A session's measures of how well its classifiers do: the held-out estimate on the examples
alone (cross-validated), the evaluation on a labelled test set, and from the evaluation back
to the scans (a confusion cell, its maps)."""
from __future__ import annotations

import os
from typing import Iterator, Sequence

from PIL import Image

from core.evaluate import EvaluationResult, cross_validate, result_from_probabilities
from core.methods import FITTED, ZERO_SHOT, names
from core.overlay import model_view, overlay
from core.prompts import PromptState
from core.train import TrainConfig
from demo.runtime import compute
from demo.runtime.events import Counted, Finished
from demo.runtime.host import ModelInfo
from demo.text.messages import UserError
from demo.work.scans import Example

COMPARED = names(ZERO_SHOT, FITTED)  # baselines in Evaluate and the estimate
FOLDS = 4


def paying_point(counts: dict[str, int], held_out: dict, warm: bool = False) -> dict | None:
    """One point of "is labelling still paying?": the examples a tuning run had (in all and
    per class) and its held-out estimate (accuracy and spread over the folds) for the tuned
    prompts and the best baseline. None when the estimate has no figures (too few examples)."""
    methods = held_out.get("methods") or {}
    if "tuned" not in methods:
        return None
    others = {k: v for k, v in methods.items() if k != "tuned"}
    best = max(others, key=lambda k: others[k]["accuracy"]) if others else None
    return {"examples": int(sum(counts.values())), "per_class": dict(counts), "warm": warm,
            "tuned": round(float(methods["tuned"]["accuracy"]), 6),
            "tuned_std": round(float(methods["tuned"]["std"]), 6),
            "baseline": best,
            "baseline_accuracy": round(float(others[best]["accuracy"]), 6) if best else None,
            "baseline_std": round(float(others[best]["std"]), 6) if best else None}


class Evaluating:
    """Estimate and evaluation of a `Session` (its examples, test set, tuned prompts)."""

    def estimate(self, info: ModelInfo, task: PromptState, cfg: TrainConfig,
                 precision: str = "auto", stop: str | None = None
                 ) -> Iterator[Counted | Finished]:
        """The held-out estimate on the examples alone: stratified k-fold cross-validated
        accuracy and balanced accuracy, with its spread, for the tuned method (re-tuned per
        fold from the cached features, with the fast recipe when it was tuned with the paper's)
        and the baselines; warnings when it is unreliable. Yields `Counted` methods, then
        `Finished` with the estimate (None when stopped: `stop` is the run's stop file)."""
        examples, labels = self.training_set()
        counts = list(self.counts().values())
        if min(counts) < 2:
            yield Finished({"methods": {}, "warnings": [("too_few_to_estimate", {})]})
            return
        fast = cfg if cfg.augment_views == 0 else TrainConfig.fast(seed=cfg.seed,
                                                                    precision=precision)
        prompted = self.features_of(info, examples, task.cfg.n_vision_prompts, fast.precision,
                                    stop=stop)
        plain = self.features_of(info, examples, 0, precision, stop=stop)
        if prompted is None or plain is None:
            yield Finished(None)
            return
        text = self.zero_shot(info).text
        methods, total = {}, 1 + len(COMPARED)
        out = None
        for event in compute.cross_validate_prompts(task, prompted, labels, FOLDS, cfg.seed, fast,
                                                    stop):
            if isinstance(event, Finished):
                out = event.value
        if out is None:
            yield Finished(None)
            return
        methods["tuned"] = out
        yield Counted(1, total)
        for k, name in enumerate(COMPARED):
            if stop is not None and os.path.exists(stop):
                yield Finished(None)
                return
            methods[name] = cross_validate(name, plain, labels, FOLDS, cfg.seed,
                                           text_features=text, logit_scale=info.logit_scale)
            yield Counted(k + 2, total)
        yield Finished({"methods": methods, "warnings": estimate_warnings(counts, methods),
                        "refit_fast": fast is not cfg, "folds": methods["tuned"]["folds"]})

    def evaluate(self, info: ModelInfo, precision: str = "auto", stop: str | None = None
                 ) -> dict[str, EvaluationResult]:
        """Zero-shot, the baselines (once every class has examples) and (when tuned) the tuned
        prompts on the test set, side by side; each test scan is encoded once per image tower."""
        self.require_task()
        if not self.test_set:
            raise UserError("need_tests")
        tests = list(self.test_set)
        index = {c: i for i, c in enumerate(self.classes)}
        labels = [index[e.label] for e in tests]
        plain = self.features_of(info, tests, 0, precision, stop=stop)
        if plain is None:
            raise UserError("stopped_evaluation")
        zero = self.zero_shot(info)
        results = {"zero-shot": result_from_probabilities(labels, zero.proba(plain).numpy(),
                                                          zero.classnames)}
        for name in COMPARED[1:]:
            clf = self.baseline(info, name, precision)
            if clf is not None:
                results[name] = result_from_probabilities(labels, clf.predict_proba(plain),
                                                          self.classes)
        if self.tuned is not None:
            prompted = self.features_of(info, tests, self.tuned.cfg.n_vision_prompts, precision,
                                        stop=stop)
            if prompted is None:
                raise UserError("stopped_evaluation")
            results["tuned"] = result_from_probabilities(
                labels, self.tuned.proba(prompted).numpy(), self.tuned.classnames)
        self.evaluated = (tests, results)
        return results

    # ---- from the evaluation back to the scans --------------------------------------------
    def cell(self, true: str, predicted: str) -> list[Example]:
        """The test scans of true class `true` that the last evaluation (tuned, else zero-shot)
        predicted as `predicted`."""
        if self.evaluated is None:
            raise UserError("evaluate_first")
        scans, results = self.evaluated
        result = results.get("tuned", results["zero-shot"])
        names = result.classnames
        return [e for e, t, p in zip(scans, result.labels, result.predictions)
                if names[t] == true and names[p] == predicted
                and any(e is kept for kept in self.test_set)]

    def cell_maps(self, info: ModelInfo, scans: Sequence[Example], predicted: str,
                  limit: int = 12) -> list[Image.Image]:
        """Each scan with the map of the class it was predicted as."""
        explained = self.explained(info)
        k = explained.classnames.index(predicted)
        shown = list(scans[:limit])
        heats = compute.maps(explained, [e.image for e in shown], [k] * len(shown))
        return [overlay(model_view(e.image, info.image_size), heat)
                for e, heat in zip(shown, heats)]


def estimate_warnings(counts: Sequence[int], methods: dict) -> list[tuple[str, dict]]:
    """Why a held-out estimate may mislead: (message key, values) pairs."""
    out = []
    if min(counts) < 4:
        out.append(("few_per_class", {"n": min(counts)}))
    if min(counts) and max(counts) > 3 * min(counts):
        out.append(("unbalanced", {"most": max(counts), "least": min(counts)}))
    tuned = methods.get("tuned")
    if tuned is not None:
        others = [m for name, m in methods.items() if name != "tuned"]
        best_other = max(others, key=lambda m: m["accuracy"]) if others else None
        if best_other is not None:
            gap = abs(tuned["accuracy"] - best_other["accuracy"])
            if max(tuned["std"], best_other["std"]) > gap:
                out.append(("spread_wide", {"spread": max(tuned["std"], best_other["std"]),
                                            "gap": gap}))
    return out

