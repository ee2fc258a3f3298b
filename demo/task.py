"""The task: its classes with their descriptions, typed as table rows, and what changing them
does to the examples already labelled. Shared by setting a task and loading a prompts file."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from demo.messages import UserError

MAX_CLASSES = 20


@dataclass(frozen=True)
class TaskChange:
    """What setting a task did to the examples: classes renamed (examples kept) or removed."""

    renamed: list[tuple[str, str, int]]
    removed: list[tuple[str, int]]


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


def follow_classes(old: Sequence[str], classes: Sequence[str], examples: list, test_set: list
                   ) -> tuple[TaskChange, list, list]:
    """A task's classes changed from `old` to `classes`: the examples and test scans of a
    renamed class (same row, new name) are relabelled, those of removed classes dropped.
    Returns the change and the sets that remain."""
    renames = {}
    for i, name in enumerate(old):
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
