"""Shared fixtures: the offline tiny backbones, one of each tower family."""
from __future__ import annotations

import pytest

from core.backbone import load_backbone
from tests.helpers import FAMILIES


@pytest.fixture(scope="session")
def backbones():
    return {spec: load_backbone(spec, "cpu") for spec in FAMILIES}


@pytest.fixture(params=FAMILIES)
def bb(request, backbones):
    """Each test using `bb` runs once per tower family."""
    return backbones[request.param]
