"""One browser session's work: the task, the labelled scans, the features, the tuned prompts,
the last prediction and evaluation. Plain Python over the core; the Gradio handlers in
`demo/ui/steps/` only translate between widgets and these objects. Images are kept in memory, never
written to disk; the files they came from are the handlers' (and `storage`'s) business.

The fields live here, with the task and the tuned prompts; each other room is a part of its own:
the examples and test set (`demo.work.labelled`), the features and what they give untuned
(`demo.work.encoding`), the prediction (`demo.work.prediction`), the estimate and evaluation
(`demo.work.evaluation`).

A session never holds the model: it keeps plain data (pictures, features, `PromptState`s) and
asks `demo.runtime.compute` for whatever needs the model, so every model use can run in a GPU
worker."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from core.features import FeatureCache
from core.prompts import PromptConfig, PromptState
from core.train import History
from demo.runtime import compute
from demo.runtime.host import ModelInfo
from demo.runtime.runs import BY_CLOSE, Runs
from demo.text.messages import UserError
from demo.work.encoding import Encoding
from demo.work.evaluation import Evaluating
from demo.work.labelled import LabelledScans
from demo.work.pool import Pool
from demo.work.prediction import Predicting, Prediction, VolumePrediction
from demo.work.scans import Example
from demo.work.task import Task, TaskChange, follow_classes
from demo.work.tuning import TunedPrompts, Tuning


@dataclass
class Session(LabelledScans, Pool, Encoding, Predicting, Evaluating):
    """Everything one user has done; lives in a `gr.State`, invisible to other users."""

    task: Task = field(default_factory=Task)
    examples: list[Example] = field(default_factory=list)
    selected: int | None = None  # index into examples, chosen in the gallery
    prompts: TunedPrompts = field(default_factory=TunedPrompts)  # tuned, and the other set
    prediction: Prediction | None = None
    volume: VolumePrediction | None = None  # the last volume predicted slice by slice
    runs: Runs = field(default_factory=Runs)  # long work going on, each with its own stop
    test_set: list[Example] = field(default_factory=list)  # labelled scans for evaluation
    pool: list[Example] = field(default_factory=list)  # scans without a class, to label
    # each estimated run's examples and held-out estimate: is labelling still paying?
    labelling: list[dict] = field(default_factory=list)
    features: FeatureCache = field(default_factory=FeatureCache)  # image features, re-used
    owner: str = ""  # the browser session's id: whose files are whose
    evaluated: tuple | None = None  # (test scans, results) of the last evaluation
    cell_scans: list[Example] = field(default_factory=list)  # the confusion cell shown
    cell_selected: int | None = None
    cell_predicted: str | None = None  # the class the cell's scans were predicted as
    to_predict: list[Example] = field(default_factory=list)  # scans offered in step 4 (a lesson's)
    predict_turn: int = 0  # which of them the next click offers
    gone: bool = False  # the browser session ended (or expired)
    last_used: float = field(default_factory=time.monotonic)  # for idle expiry
    expired: bool = False  # cleared for being idle (not closed): its page is told
    _zero: tuple | None = field(default=None, repr=False)
    _targets: tuple | None = field(default=None, repr=False)  # (task, frozen text targets)
    _baselines: dict = field(default_factory=dict, repr=False)  # fitted, by examples and task

    # ---- the tuned prompts (owned by `prompts`) ---------------------------------------------
    @property
    def tuned(self) -> PromptState | None:
        """The tuned prompts, as plain data (no model)."""
        return self.prompts.current.prompts if self.prompts.current else None

    @property
    def history(self) -> History | None:
        return self.prompts.current.history if self.prompts.current else None

    @property
    def held_out(self) -> dict | None:
        """The held-out estimate of the tuned prompts, once computed."""
        return self.prompts.current.held_out if self.prompts.current else None

    # ---- task ---------------------------------------------------------------------------------
    @property
    def modality(self) -> str | None:
        return self.task.modality

    @property
    def organ(self) -> str | None:
        return self.task.organ

    @property
    def template(self) -> str:
        return self.task.template

    @property
    def classes(self) -> list[str]:
        return list(self.task.classes)

    @property
    def descriptions(self) -> dict[str, list[str]]:
        return dict(self.task.descriptions)

    def set_task(self, info: ModelInfo, template: str, rows: Iterable[Sequence[str]],
                 modality: str | None = None, organ: str | None = None,
                 lambdas: tuple[float, float] | None = None) -> TaskChange:
        """Check and keep a task. Rows are (class name, descriptions with one sentence per
        line). A class whose name changed in its row keeps its examples (a rename); the
        examples of classes that are gone are dropped, and the change says so. Building the
        task's zero-shot classifier is the check, and it is kept for Predict and Evaluate."""
        task = Task.typed(self.task, template, rows, modality, organ, lambdas)
        zero_shot = _zero_shot_of(task)
        change = self._take(task, rename=True)
        self._zero = (task.key, zero_shot)
        return change

    def adopt_prompts(self, state: PromptState) -> TaskChange:
        """Prompts from a file become the session's, with their task (classes, template,
        descriptions, lambdas, and the modality they were tuned for); examples and test scans
        of other classes are dropped, and the change says so."""
        change = self._take(Task.of_prompts(self.task, state), rename=False)
        self.prompts.adopt(Tuning(state))
        return change

    def _take(self, task: Task, rename: bool) -> TaskChange:
        """`task` becomes the session's; the labelled scans follow its classes. Tuned prompts
        of other classes, and the held-out estimate of another task, no longer apply."""
        change, self.examples, self.test_set = follow_classes(
            self.classes, task.classes, self.examples, self.test_set, rename)
        if task.key != self.task.key:
            self._zero = None
            self.prompts.forget_estimates()
        dropped = self.prompts.keep_only(task.classes)
        if dropped is not None:
            change = replace(change, untuned=dropped)
        self.task = task
        self.selected = None
        return change

    def prompt_config(self, **changes) -> PromptConfig:
        return self.task.config(**changes)

    def zero_shot(self, info: ModelInfo) -> PromptState:
        """The plain template classifier of the current task (cached while the task stays)."""
        if self._zero is None or self._zero[0] != self.task.key:
            self._zero = (self.task.key, _zero_shot_of(self.task))
        return self._zero[1]

    def require_task(self) -> None:
        if len(self.classes) < 2:
            raise UserError("need_task")

    # ---- tuning -------------------------------------------------------------------------------
    def tuning_task(self, info: ModelInfo, lambdas: tuple[float, float] | None = None,
                    warm: bool = False) -> PromptState:
        """The prompts to tune for the task (with the given lambdas), reusing the frozen text
        targets of an earlier run on the same task: untrained (a cold start, from the
        template's words), or with `warm` and `can_start_warm`, starting from the current tuned
        prompts' context."""
        task = self.task if lambdas is None else self.task.with_lambdas(lambdas)
        cfg = task.config()
        targets = self._targets[1] if self._targets and self._targets[0] == self.task.key \
            else {}
        state = PromptState.untrained(self.classes, self.descriptions, cfg, info.name,
                                      info.fingerprint, targets)
        if warm and self.can_start_warm(info):
            state = replace(state, ctx=self.tuned.ctx.clone())
        return state

    def can_start_warm(self, info: ModelInfo) -> bool:
        """Whether tuning can continue from the current prompts: there are some, tuned (not
        only loaded) on this model for the same classes, template and prompt layout (the
        lambdas may differ: they weigh the loss, not the context)."""
        tuned = self.tuned
        if tuned is None or tuned.ctx is None or tuned.fingerprint != info.fingerprint:
            return False
        mine = self.task.config()
        same = replace(tuned.cfg, lambda_l1=mine.lambda_l1, lambda_kl=mine.lambda_kl) == mine
        return same and list(tuned.classnames) == list(self.classes)

    def remember_targets(self, state: PromptState) -> None:
        """The frozen text targets a run computed, for the next run on the same task."""
        self._targets = (self.task.key, dict(state.targets))

    def explained(self, info: ModelInfo) -> PromptState:
        """What the maps explain: the tuned prompts, else zero-shot."""
        return self.tuned if self.tuned is not None else self.zero_shot(info)

    # ---- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Forget everything (the browser tab was closed)."""
        self.examples.clear()
        self.test_set.clear()
        self.pool.clear()
        self.labelling = []
        self.features = FeatureCache()
        self.prompts.clear()
        self.prediction = self._zero = self.evaluated = self.volume = None
        self._baselines = {}
        self.cell_scans = []
        self.to_predict = []
        self.gone = True
        self.runs.stop(why=BY_CLOSE)

    def become(self, other: Session) -> None:
        """This session takes `other`'s work (an opened workspace), keeping its owner; the
        work it had is gone (stop its runs first)."""
        owner = self.owner
        self.__dict__.update(other.__dict__)
        self.owner = owner

    def revive(self) -> None:
        """An expired session, empty, made usable again (its page is still open)."""
        self.__dict__.update(Session(owner=self.owner).__dict__)


def _zero_shot_of(task: Task) -> PromptState:
    """The task's plain template classifier (building it is also the task's check)."""
    return compute.zero_shot(list(task.classes), dict(task.descriptions), task.config())
