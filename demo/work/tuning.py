"""Tuned prompts as values: what one tuning run gives (`Tuning`), the session's prompts and the
other set it can go back to (`TunedPrompts`), and the one tuning run that the page and the
few-shot tool both use (`tuning_run`).

Prompts are replaced only by a run that finished (the replaced ones stay restorable) or by a
stopped run's prompts that the user accepts; a run stopped by the user keeps the prompts there
were and offers its own beside them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

from demo.runtime.events import Counted, Finished, Stepped

PREVIOUS = "previous"  # the prompts a finished run replaced
STOPPED = "stopped"  # a run the user stopped, offered beside the kept prompts
REPLACED = "replaced"  # the prompts the user went back from


@dataclass(frozen=True)
class Tuning:
    """Tuned prompts (`core.prompts.PromptState`), how they were learned (`core.train.History`,
    None for prompts from a file) and, once computed, their held-out estimate."""

    prompts: Any
    history: Any = None
    held_out: dict | None = None

    @property
    def steps(self) -> int:
        return len(self.history.steps) if self.history is not None else 0


class TunedPrompts:
    """The session's tuned prompts (`current`) and one other set (`other`, with why it is
    there: `PREVIOUS`, `STOPPED` or `REPLACED`)."""

    def __init__(self) -> None:
        self.current: Tuning | None = None
        self.other: Tuning | None = None
        self.other_is: str | None = None

    def finished(self, tuning: Tuning) -> None:
        """A run that ended by itself: its prompts become the session's; the ones it replaced
        stay restorable."""
        self._set(tuning, self.current, PREVIOUS)

    def stopped(self, tuning: Tuning) -> bool:
        """A run the user stopped: its prompts become the session's only when there were none;
        else they are offered beside them. True when they were taken."""
        if self.current is None:
            self._set(tuning, None, None)
            return True
        self.other, self.other_is = tuning, STOPPED
        return False

    def adopt(self, tuning: Tuning) -> None:
        """Prompts from a file: they become the session's; the ones before stay restorable."""
        self._set(tuning, self.current, PREVIOUS)

    def swap(self) -> Tuning | None:
        """Go to the other prompts (restore the previous ones, or take the stopped run's); the
        ones left behind can be taken back the same way. Returns the new current prompts."""
        if self.other is None:
            return None
        self._set(self.other, self.current, REPLACED if self.other_is == PREVIOUS else PREVIOUS)
        return self.current

    def estimated(self, tuning: Tuning, held_out: dict | None) -> bool:
        """Attach a held-out estimate to the prompts it was computed for, if they are still
        the session's (or its other set); True when attached."""
        if self.current is tuning:
            self.current = replace(tuning, held_out=held_out)
            return True
        if self.other is tuning:
            self.other = replace(tuning, held_out=held_out)
            return True
        return False

    def forget_estimates(self) -> None:
        """The task changed: the estimates were of another task."""
        self.current = self.current and replace(self.current, held_out=None)
        self.other = self.other and replace(self.other, held_out=None)

    def keep_only(self, classnames) -> tuple[str, ...] | None:
        """Drop prompts tuned for other classes; the class names of the dropped current
        prompts, if any."""
        if self.other is not None and list(self.other.prompts.classnames) != list(classnames):
            self.other = self.other_is = None
        current = self.current
        if current is not None and list(current.prompts.classnames) != list(classnames):
            self.current = None
            return tuple(current.prompts.classnames)
        return None

    def clear(self) -> None:
        self.current = self.other = self.other_is = None

    def restore(self, current: Tuning | None, other: Tuning | None, other_is: str | None
                ) -> None:
        """Prompts as they were saved (a workspace file): a stopped run's offer without
        prompts beside it becomes the prompts."""
        if current is None and other_is == STOPPED:
            current, other = other, None
        self._set(current, other, other_is or (PREVIOUS if other is not None else None))

    def _set(self, current: Tuning | None, other: Tuning | None, other_is: str | None) -> None:
        self.current, self.other = current, other
        self.other_is = other_is if other is not None else None


def tuning_run(session, info, cfg, lambdas, run, warm: bool = False
               ) -> Iterator[Stepped | Finished]:
    """One tuning run of `session`'s examples: encode what is missing of the views the recipe
    needs (through the session's feature cache), then tune in one compute call. With `warm`
    (and the task unchanged: `Session.can_start_warm`), it starts from the current prompts
    and may stop sooner (`core.train.warm_config`); its history says so. Yields `Stepped`
    (encoding batches, then steps), then `Finished(Tuning)`, or `Finished(None)` when it was
    stopped before its first step. `run` (`demo.runtime.runs.Run`) is its stop."""
    from core.train import Progress, warm_config
    from demo.runtime import compute

    examples, labels = session.training_set()
    warm = warm and session.can_start_warm(info)
    task = session.tuning_task(info, lambdas, warm)
    if warm:
        cfg = warm_config(cfg)
    started = time.perf_counter()
    features = None
    for event in session.feature_stream(info, examples, task.cfg.n_vision_prompts,
                                        cfg.precision, cfg.view_names, stop=run.stop_path,
                                        background=True):
        if isinstance(event, Counted):
            yield Stepped(Progress("encode", event.done, event.total,
                                   time.perf_counter() - started))
        else:
            features = event.value
    encode_s = time.perf_counter() - started
    if features is None or run.stopped:
        yield Finished(None)
        return
    if len(cfg.view_names) == 1:
        features = features[0]
    result = None
    for event in compute.tune(task, features, labels, cfg, run.stop_path):
        if isinstance(event, Finished):
            result = event.value
        else:
            yield event
    history, prompts = result
    if not history.steps:
        yield Finished(None)
        return
    history.encode_s = encode_s
    history.total_s += encode_s
    history.warm = warm
    session.remember_targets(prompts)
    yield Finished(Tuning(prompts, history))
