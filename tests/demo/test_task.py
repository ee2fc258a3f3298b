"""The task's rows, and what changing its classes does to examples already labelled."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from demo.messages import UserError
from demo.task import MAX_CLASSES, follow_classes, parse_class_rows, task_key


def test_rows_give_names_and_one_description_per_line():
    classes, descriptions = parse_class_rows([["  cyst ", "round\n\n  dark  and smooth"],
                                              ["", "ignored"], ["stone", None], [None]])
    assert classes == ["cyst", "stone"]
    assert descriptions == {"cyst": ["round", "dark and smooth"]}
    with pytest.raises(UserError):
        parse_class_rows([[f"c{i}", ""] for i in range(MAX_CLASSES + 1)])


def test_a_renamed_class_keeps_its_examples_and_a_removed_one_drops_them():
    def ex(label, n):
        return SimpleNamespace(label=label, name=f"{label} #{n}")

    examples = [ex("cyst", 1), ex("stone", 1), ex("tumour", 1)]
    tests = [ex("cyst", 1), ex("tumour", 1)]
    change, kept, kept_tests = follow_classes(["cyst", "stone", "tumour"],
                                              ["simple cyst", "stone"], examples, tests)
    assert change.renamed == [("cyst", "simple cyst", 1)] and change.removed == [("tumour", 1)]
    assert [e.name for e in kept] == ["simple cyst #1", "stone #1"]
    assert [e.label for e in kept_tests] == ["simple cyst"]


def test_the_task_key_follows_what_the_text_side_reads():
    a = task_key("a {} photo.", ["x", "y"], {"x": ["one"]})
    assert a == task_key("a {} photo.", ["x", "y"], {"x": ["one"], "z": ["unused"]})
    assert a != task_key("a {} photo.", ["y", "x"], {"x": ["one"]})
    assert a != task_key("a {} photo.", ["x", "y"], {"x": ["two"]})
