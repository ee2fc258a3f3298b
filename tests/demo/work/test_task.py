"""The task's rows, and what changing its classes does to examples already labelled."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.prompts import PromptConfig
from demo.text.messages import UserError
from demo.work.task import MAX_CLASSES, Task, follow_classes, parse_class_rows, task_key


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


def test_a_typed_task_keeps_what_was_not_given():
    before = Task(modality="CT", organ="kidney", lambda_l1=5.0, lambda_kl=1.0)
    typed = Task.typed(before, "  a {} photo. ", [["cyst", "round"], ["stone", ""]])
    assert (typed.modality, typed.organ, typed.lambda_l1, typed.lambda_kl) == (
        "CT", "kidney", 5.0, 1.0)
    assert typed.template == "a {} photo." and typed.classes == ("cyst", "stone")
    assert typed.rows() == [["cyst", "round"], ["stone", ""]]
    moved = Task.typed(typed, typed.template, typed.rows(), "MRI", None, (10, 0.5))
    assert (moved.modality, moved.organ, moved.lambda_l1) == ("MRI", None, 10.0)
    assert moved.key == typed.key  # the text side did not change
    assert moved.config() == PromptConfig(template="a {} photo.", lambda_l1=10.0,
                                          lambda_kl=0.5)
    assert moved.config(lambda_kl=0.0).lambda_kl == 0.0


def test_a_prompts_file_brings_its_task():
    state = SimpleNamespace(info={"modality": "X-ray", "organ": "chest"}, classnames=["a", "b"],
                            descriptions={"a": ("one", "two")},
                            cfg=PromptConfig(template="an X-ray of {}.", lambda_l1=3.0))
    task = Task.of_prompts(Task(modality="CT", organ="kidney"), state)
    assert (task.modality, task.organ, task.template) == ("X-ray", "chest", "an X-ray of {}.")
    assert task.classes == ("a", "b") and task.descriptions == {"a": ["one", "two"]}
    assert task.lambda_l1 == 3.0
    unsaid = Task.of_prompts(Task(modality="CT", organ="kidney"),
                             SimpleNamespace(**{**vars(state), "info": {}}))
    assert (unsaid.modality, unsaid.organ) == ("CT", "kidney")


def test_a_file_load_never_renames_by_position():
    examples = [SimpleNamespace(label="cyst", name="cyst #1")]
    change, kept, _ = follow_classes(["cyst", "stone"], ["tumour", "stone"], examples, [],
                                     rename=False)
    assert change.renamed == [] and change.removed == [("cyst", 1)] and kept == []
