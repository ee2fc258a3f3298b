"""The one registry of methods: every list of methods in the project is read from it."""
from __future__ import annotations

import pytest

from core import methods
from core.errors import PromptError


def test_the_registry_names_each_method_once_with_a_known_kind():
    assert len(set(methods.METHODS)) == len(methods.REGISTRY)
    assert {m.kind for m in methods.REGISTRY} == set(methods.KINDS)
    assert methods.method("biomed-dpt").kind == methods.TUNED
    with pytest.raises(PromptError, match="Unknown method 'magic'"):
        methods.method("magic")
    with pytest.raises(ValueError, match="kinds"):
        methods.names("learned")


def test_every_list_of_methods_comes_from_the_registry():
    from core.baselines import BASELINES
    from core.prompt_config import METHOD_SETTINGS, METHODS as PROMPT_METHODS
    from core.reproduce import settings, tables

    zero_and_tuned = methods.names(methods.ZERO_SHOT, methods.TUNED)
    assert set(METHOD_SETTINGS) == set(PROMPT_METHODS) == set(zero_and_tuned)
    assert BASELINES == ("zero-shot", "tip-adapter", "linear-probe")
    assert settings.METHODS == methods.METHODS and settings.PROMPT_METHODS == zero_and_tuned
    assert settings.TUNED_METHODS == ("coop", "kgcoop", "biomedcoop", "biomed-dpt")
    assert settings.FITTED_BASELINES == ("tip-adapter", "linear-probe")
    assert set(settings.METHOD_TITLES) == set(methods.METHODS)
    assert set(tables.PUBLISHED_NAMES) <= set(methods.METHODS)
