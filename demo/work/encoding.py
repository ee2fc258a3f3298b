"""A session's image features: the examples' and test scans' features through the session's
content-keyed cache (the missing ones encoded in one compute call), and what they give without
tuning: the baselines fitted on the examples and the examples nearest to a scan."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from core.baselines import Classifier, fit_baseline
from core.features import EVAL_VIEW, feature_key
from demo.runtime import compute
from demo.runtime.events import Counted, Finished
from demo.runtime.host import ModelInfo
from demo.work.scans import Example

BASELINE = "linear-probe"  # the baseline shown beside the tuned prompts in Predict
NEAREST = 3


class Encoding:
    """The feature side of a `Session` (its fields `features`, `examples`, `_baselines`)."""

    def feature_stream(self, info: ModelInfo, pictures: Sequence[Example],
                       vision_prompts: int, precision: str = "auto",
                       views: Sequence[str] = (EVAL_VIEW,), stop: str | None = None,
                       background: bool = False) -> Iterator[Counted | Finished]:
        """Features (V, N, D) of the examples' views through the session's cache: the ones
        missing are encoded in one compute call. Yields `Counted` encodings, then `Finished`
        with the features (None when stopped: `stop` is the run's stop file). `background`:
        encoding nobody waits to see, which gives way to interactive requests
        (`demo.runtime.traffic`)."""
        precision = resolved_precision(info, precision)
        views = list(views)

        def key(e: Example, view: str) -> str:
            return feature_key(info, e.digest, view, vision_prompts, precision)

        missing = [e for e in pictures if any(key(e, v) not in self.features for v in views)]
        if missing:
            fresh = None
            for event in compute.encode([e.image for e in missing], [e.digest for e in missing],
                                        views, vision_prompts, precision, stop, background):
                if isinstance(event, Finished):
                    fresh = event.value
                else:
                    yield event
            if fresh is None:
                yield Finished(None)
                return
            for v, view in enumerate(views):
                for e, feature in zip(missing, fresh[v]):
                    self.features.put(key(e, view), feature)
        found = [[self.features.get(key(e, v)) for e in pictures] for v in views]
        if any(f is None for row in found for f in row):  # evicted meanwhile: encode again
            yield from self.feature_stream(info, pictures, vision_prompts, precision, views, stop,
                                           background)
            return
        if not pictures:
            yield Finished(torch.zeros(len(views), 0, info.embed_dim))
            return
        yield Finished(torch.stack([torch.stack(row) for row in found]))

    def features_of(self, info: ModelInfo, pictures: Sequence[Example], vision_prompts: int,
                    precision: str = "auto", progress=None, stop: str | None = None
                    ) -> torch.Tensor | None:
        """(N, D) evaluation-view features of examples (None if stopped: `stop` is the run's
        stop file); `progress(done, total)` counts the encodings."""
        out = None
        for event in self.feature_stream(info, pictures, vision_prompts, precision, stop=stop):
            if isinstance(event, Finished):
                out = event.value
            elif progress is not None:
                progress(event.done, event.total)
        return None if out is None else out[0]

    def encode_examples(self, info: ModelInfo, precision: str = "auto", stop: str | None = None
                        ) -> Iterator[Counted | Finished]:
        """Encode every example and unlabelled pool scan not yet cached, with and without the
        vision prompts (tuning and the tuned prompts' guesses use the first; zero-shot, the
        baselines, the nearest examples and the pool's ranking the second). Yields `Counted`
        over both, then `Finished(False)` if stopped (`stop`: the run's stop file), else
        `Finished(True)`."""
        examples = list(self.examples) + list(getattr(self, "pool", []))
        n = len(examples)
        for k, prompts in enumerate((self.prompt_config().n_vision_prompts, 0)):
            for event in self.feature_stream(info, examples, prompts, precision, stop=stop,
                                             background=True):
                if isinstance(event, Counted):
                    yield Counted(k * n + event.done, 2 * n)
                elif event.stopped:
                    yield Finished(False)
                    return
        yield Finished(True)

    def baseline(self, info: ModelInfo, name: str = BASELINE, precision: str = "auto"
                 ) -> Classifier | None:
        """Baseline `name` fitted on the examples' features (milliseconds; kept while the
        examples and the task stay the same); None until every class has an example."""
        if len(self.classes) < 2 or any(n == 0 for n in self.counts().values()):
            return None
        key = (name, self.template, tuple(self.classes), tuple(e.digest for e in self.examples),
               tuple(e.label for e in self.examples))
        if key not in self._baselines:
            examples, labels = self.training_set()
            feats = self.features_of(info, examples, 0, precision)
            if feats is None:
                return None
            text = self.zero_shot(info).text
            self._baselines = {k: v for k, v in self._baselines.items() if k[1:] == key[1:]}
            self._baselines[key] = fit_baseline(name, feats, labels, text,
                                                logit_scale=info.logit_scale)
        return self._baselines[key]


    def nearest(self, info: ModelInfo, feature: torch.Tensor, precision: str = "auto",
                k: int = NEAREST) -> list[tuple[Example, float]]:
        """The `k` examples closest to an image feature (cosine, plain BiomedCLIP features):
        what the scan resembles, whatever any classifier makes of it."""
        if not self.examples:
            return []
        feats = self.features_of(info, self.examples, 0, precision)
        if feats is None:
            return []
        similarity = feats @ feature.float()
        order = torch.argsort(similarity, descending=True)[:k]
        return [(self.examples[int(i)], float(similarity[i])) for i in order]

    def similarity_floor(self, info: ModelInfo, precision: str = "auto") -> float | None:
        """`least_typical_similarity` of the examples' plain BiomedCLIP features (the space
        `nearest` measures in); None with fewer than two examples."""
        if len(self.examples) < 2:
            return None
        feats = self.features_of(info, self.examples, 0, precision)
        return None if feats is None else least_typical_similarity(feats)


def least_typical_similarity(features: torch.Tensor) -> float | None:
    """The lowest, over the examples' L2-normalised features (N, D), of each one's cosine
    similarity to its nearest other example; None with fewer than two.

    A scan whose nearest example is less similar than this is farther from the examples than
    any of them is from the rest: an outlier by the examples' own measure. The examples set
    the bar because cosines differ in scale from one backbone to another (BiomedCLIP's, a
    random-weight model's), so no fixed threshold would hold for both; the least typical
    example rather than a typical one, so that a task whose classes look unalike (the
    examples of one class far from the others') is not flagged for every scan."""
    if len(features) < 2:
        return None
    similarity = features.float() @ features.float().T
    similarity.fill_diagonal_(float("-inf"))
    return float(similarity.max(dim=1).values.min())


def resolved_precision(info: ModelInfo, precision: str) -> str:
    """'auto' -> the precision the model host's compute calls use."""
    return info.precision if precision == "auto" else precision
