"""The model host: one backbone per process, described as plain data, handed to compute calls."""
from __future__ import annotations

import pickle

import pytest

from core.errors import StudioError
from demo.runtime import gpu, host
from demo.runtime.host import ModelHost


def test_the_model_is_described_without_touching_it(backbones):
    bb = backbones["tiny-biomedclip"]
    info = host.describe(bb, "fp32")
    assert pickle.loads(pickle.dumps(info)) == info
    assert (info.name, info.fingerprint, info.embed_dim) == (bb.name, bb.fingerprint, bb.embed_dim)
    assert info.logit_scale == pytest.approx(float(bb.logit_scale)) and info.precision == "fp32"
    assert info.device == "cpu" and info.demo
    assert host.describe(bb, "bf16").precision == "bf16"


def test_a_host_that_loaded_a_model_serves_compute_calls(backbones, monkeypatch):
    monkeypatch.delenv(gpu.MODE_ENV, raising=False)
    serving = ModelHost(backbones["tiny-biomedclip"])
    assert host.model() is serving.bb
    ModelHost(None, problem="no weights here")  # a failed host never replaces a working one
    assert host.model() is serving.bb
    assert serving.wait(0.01).fingerprint == serving.bb.fingerprint


def test_a_failed_or_slow_load_is_said_in_words():
    failed = ModelHost(None, problem="The weights are missing.")
    with pytest.raises(StudioError, match="weights are missing"):
        failed.wait(0.01)
    assert "could not be loaded" in failed.status()
    loading = ModelHost()
    with pytest.raises(StudioError, match="still loading"):
        loading.wait(0.01)
    assert loading.status().startswith("⏳")


def test_a_background_load_that_fails_can_fall_back_to_the_demo_model():
    loading = ModelHost()
    loading.load("no-such-backbone", background=True)
    loading._ready.wait(60)
    assert "Unknown backbone" in loading.status()
    loading.load(host.DEMO_SPEC, background=True)
    assert loading.wait(60).name == host.DEMO_SPEC and loading.demo_model
