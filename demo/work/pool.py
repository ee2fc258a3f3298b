"""A session's unlabelled pool: scans uploaded without a class, ranked by what labelling each
would teach (`core.active`), and moved into a class when the user labels them.

The pool is kept as the examples are (the decoded pictures the model sees, never the files)
and encoded in the background with them; it never takes part in tuning, in the held-out
estimate or in evaluation until a scan of it is labelled and becomes an example."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from core import active
from demo.runtime.host import ModelInfo
from demo.text.messages import UserError
from demo.work.encoding import BASELINE
from demo.work.scans import Example, Problem, read_scans

RANKED, RANDOM = "ranked", "random"
ORDERS = (RANKED, RANDOM)
SUGGESTIONS = 8


@dataclass(frozen=True)
class PoolSuggestion:
    """A pool scan to label next: the scan, the model's guess with its probability, the
    runner-up, and why it is suggested (`reason`: "unsure", "disagree" or "random";
    `disagreeing`: the classifier whose top class differs, for "disagree")."""

    example: Example
    guess: str
    probability: float
    runner_up: str | None
    runner_up_probability: float | None
    reason: str
    classifier: str  # "tuned" or "zero-shot": whose guess it is
    disagreeing: str | None = None
    disagreeing_guess: str | None = None


class Pool:
    """The pool side of a `Session` (its fields `pool`, `examples` and the task)."""

    def add_to_pool(self, files: Sequence[tuple[str, str]], window=None, index=None,
                    volume: int = 0) -> tuple[int, list[Problem]]:
        """Unlabelled scans (each a (path, name as uploaded) file; `index`: a slice, or a
        range of slices, each its own scan), kept as the examples are; a picture already in
        the pool or among the examples is skipped."""
        self.require_task()
        items = [("", path, name) for path, name in files]
        return read_scans(self.pool, "unlabelled scans", items, window, index,
                          lambda _, kept: f"unlabelled #{len(kept) + 1}", volume,
                          also=self.examples)

    def suggestions(self, info: ModelInfo, order: str = RANKED, k: int = SUGGESTIONS,
                    precision: str = "auto", seed: int = 0) -> list[PoolSuggestion] | None:
        """The pool scans to label next, `k` at most: ranked by uncertainty, disagreement and
        diversity (`core.active.rank_pool`), or in a random order; each with the current
        guess (the tuned prompts', zero-shot's before any tuning). None when the encoding
        was stopped."""
        if order not in ORDERS:
            raise UserError("unknown_order", order=repr(order), orders=", ".join(ORDERS))
        self.require_task()
        if not self.pool:
            return []
        plain = self.features_of(info, self.pool, 0, precision)
        if plain is None:
            return None
        zero = self.zero_shot(info)
        zero_probs = zero.proba(plain).float()
        tuned = self.tuned
        if tuned is not None:
            seen = self.features_of(info, self.pool, tuned.cfg.n_vision_prompts, precision)
            if seen is None:
                return None
            probs, classifier = tuned.proba(seen).float(), "tuned"
            others = {"zero-shot": zero_probs}
        else:
            probs, classifier, others = zero_probs, "zero-shot", {}
        probe = self.baseline(info, BASELINE, precision)
        if probe is not None:
            others = {BASELINE: torch.from_numpy(probe.predict_proba(plain)).float(), **others}
        names = list(zero.classnames)
        if order == RANDOM:
            picks = [(i, "random", None) for i in active.random_order(len(self.pool), k, seed)]
        else:
            ranked = active.rank_pool(probs, plain, list(others.values()), k)
            picks = [(s.index, s.reason, s.disagreeing) for s in ranked]
        out = []
        for i, reason, which in picks:
            row = probs[i]
            top = torch.topk(row, k=min(2, len(row)))
            first, second = top.indices.tolist()[0], (top.indices.tolist() + [None])[1]
            other = list(others)[which] if which is not None else None
            out.append(PoolSuggestion(
                self.pool[i], names[first], float(row[first]),
                names[second] if second is not None else None,
                float(row[second]) if second is not None else None, reason, classifier, other,
                names[int(others[other][i].argmax())] if other is not None else None))
        return out

    def label_pool_scan(self, uid: int, label: str) -> Example:
        """Move the pool scan `uid` into class `label`, as an example named like the class's
        others; returns it."""
        self.require_task()
        if label not in self.classes:
            raise UserError("choose_class", classes=", ".join(self.classes))
        for i, scan in enumerate(self.pool):
            if scan.uid == uid:
                break
        else:
            raise UserError("pool_scan_gone")
        scan = self.pool.pop(i)
        name = f"{label} #{sum(e.label == label for e in self.examples) + 1}"
        example = Example(scan.uid, label, scan.image, scan.thumbnail, name, scan.digest)
        self.examples.append(example)
        return example

    def feature_map(self, info: ModelInfo, lang: str = "en", precision: str = "auto"):
        """The map of the examples (`demo.work.feature_map.draw_map`): every example, test
        and pool scan by its plain image features, the scan last predicted marked. None when
        the encoding was stopped."""
        from demo.work.feature_map import draw_map

        groups = [("example", list(self.examples)), ("test", list(self.test_set)),
                  ("pool", list(self.pool))]
        scans = [e for _, group in groups for e in group]
        if not scans:
            raise UserError("map_empty")
        feats = self.features_of(info, scans, 0, precision)
        if feats is None:
            return None
        shown = self.prediction.plain if self.prediction is not None else None
        return draw_map(groups, feats, list(self.classes), lang, shown)
