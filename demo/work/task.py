"""The task: what a session classifies (modality, organ, template, classes with their
descriptions, the tuning's lambdas), typed as table rows or read from a prompts file, and what
changing it does to the examples already labelled. Shared by setting a task and loading a
prompts file."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

from core.prompts import PromptConfig, PromptState
from demo.text.messages import UserError

MAX_CLASSES = 20


@dataclass(frozen=True)
class Task:
    """A task as one value: a session swaps it whole, never edits it in place."""

    modality: str | None = "MRI"
    organ: str | None = None
    template: str = "a MR photo of a {} in the brain."
    classes: tuple[str, ...] = ()
    descriptions: Mapping[str, list[str]] = field(default_factory=dict)
    lambda_l1: float = 12.5
    lambda_kl: float = 0.25

    @classmethod
    def typed(cls, before: "Task", template: str, rows: Iterable[Sequence[str]],
              modality: str | None = None, organ: str | None = None,
              lambdas: tuple[float, float] | None = None) -> "Task":
        """The task typed in step 1: table rows of (class name, one description per line);
        what is not given (no modality, no lambdas) stays as `before` had it."""
        classes, descriptions = parse_class_rows(rows)
        l1, kl = lambdas if lambdas is not None else (before.lambda_l1, before.lambda_kl)
        return cls(modality=modality or before.modality,
                   organ=organ if modality else before.organ,
                   template=(template or "").strip(),
                   classes=tuple(classes),
                   descriptions=descriptions,
                   lambda_l1=float(l1), lambda_kl=float(kl))

    @classmethod
    def of_prompts(cls, before: "Task", state: PromptState) -> "Task":
        """The task a prompts file was tuned on (its modality too, when the file says)."""
        modality = state.info.get("modality")
        return cls(modality=modality or before.modality,
                   organ=state.info.get("organ") if modality else before.organ,
                   template=state.cfg.template, classes=tuple(state.classnames),
                   descriptions={c: list(d) for c, d in state.descriptions.items()},
                   lambda_l1=state.cfg.lambda_l1, lambda_kl=state.cfg.lambda_kl)

    @property
    def key(self) -> tuple:
        """What the task's text side depends on (its zero-shot classifier is kept while the
        key stays)."""
        return task_key(self.template, self.classes, self.descriptions)

    def config(self, **changes) -> PromptConfig:
        """The prompt settings of this task (`changes` overrides, e.g. other lambdas)."""
        settings = dict(template=self.template, lambda_l1=self.lambda_l1,
                        lambda_kl=self.lambda_kl)
        settings.update(changes)
        return PromptConfig(**settings)

    def with_lambdas(self, lambdas: tuple[float, float]) -> "Task":
        return replace(self, lambda_l1=float(lambdas[0]), lambda_kl=float(lambdas[1]))

    def rows(self) -> list[list[str]]:
        """The task as the class table shows it."""
        return class_rows(self.classes, self.descriptions)


def class_rows(classes: Sequence[str], descriptions: Mapping[str, Sequence[str]]
               ) -> list[list[str]]:
    """Class names and descriptions -> the class table's rows (one sentence per line)."""
    return [[c, "\n".join(descriptions.get(c, ()))] for c in classes]


@dataclass(frozen=True)
class TaskChange:
    """What setting a task did: classes renamed (examples kept) or removed (with their
    examples), and the tuned prompts' classes when they no longer apply."""

    renamed: list[tuple[str, str, int]]
    removed: list[tuple[str, int]]
    untuned: tuple[str, ...] = ()


def parse_class_rows(rows: Iterable[Sequence[str]]) -> tuple[list[str], dict[str, list[str]]]:
    """Table rows -> class names and their descriptions; blank rows are ignored."""
    classes, descriptions = [], {}
    for row in rows or []:
        cells = [("" if c is None else str(c)) for c in (list(row) + ["", ""])[:2]]
        name = " ".join(cells[0].split())
        if not name:
            continue
        classes.append(name)
        lines = [" ".join(line.split()) for line in cells[1].splitlines() if line.strip()]
        if lines:
            descriptions[name] = lines
    if len(classes) > MAX_CLASSES:
        raise UserError("too_many_classes", n=len(classes), limit=MAX_CLASSES)
    return classes, descriptions


def follow_classes(old: Sequence[str], classes: Sequence[str], examples: list, test_set: list,
                   rename: bool = True) -> tuple[TaskChange, list, list]:
    """A task's classes changed from `old` to `classes`: the examples and test scans of a
    renamed class (same row, new name; only when `rename`, i.e. typed in the table) are
    relabelled, those of removed classes dropped. Returns the change and the sets that
    remain."""
    renames = {}
    for i, name in enumerate(old if rename else ()):
        if name not in classes and i < len(classes) and classes[i] not in old:
            renames[name] = classes[i]
    renamed = []
    for before, after in renames.items():
        n = 0
        for example in examples + test_set:
            if example.label == before:
                example.label = after
                example.name = after + example.name[len(before):]
                n += any(example is e for e in examples)
        renamed.append((before, after, n))
    removed = [(c, sum(e.label == c for e in examples)) for c in old
               if c not in classes and c not in renames]
    return (TaskChange(renamed, removed), [e for e in examples if e.label in classes],
            [e for e in test_set if e.label in classes])


def task_key(template: str, classes: Sequence[str], descriptions: dict) -> tuple:
    """What a task's text side depends on: its zero-shot classifier is kept while it stays."""
    return (template, tuple(classes),
            tuple((c, tuple(descriptions.get(c, ()))) for c in classes))
