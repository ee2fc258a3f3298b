"""Compute calls: plain data in and out, the same numbers as the engine called directly."""
from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from core.explain import relevance_maps
from core.features import encode as engine_encode
from core.prompts import DualPrompt, PromptConfig, PromptState
from core.train import TrainConfig
from demo.runtime import compute, gpu
from demo.runtime.events import Counted, Finished, Stepped
from demo.runtime.host import ModelHost

CLASSES = ["cyst", "stone"]
CFG = PromptConfig(template="a CT photo of a {} in the kidney.")


@pytest.fixture(autouse=True)
def serving(backbones, monkeypatch):
    monkeypatch.delenv(gpu.MODE_ENV, raising=False)
    return ModelHost(backbones["tiny-biomedclip"]).bb


def pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)) for _ in range(n)]


def test_zero_shot_is_the_plain_template_classifier_as_data(serving):
    state = compute.zero_shot(CLASSES, {"cyst": ["round and dark"]}, CFG)
    expected = DualPrompt(serving, CLASSES, CFG).zero_shot()
    with torch.no_grad():
        assert torch.allclose(state.text, expected.text_features(), atol=1e-6)
    assert state.plain and state.classnames == CLASSES and "template" in state.targets


def test_encoding_streams_progress_and_equals_the_engine(serving, tmp_path):
    images = pictures(5)
    events = list(compute.encode(images, [f"k{i}" for i in range(5)], ["eval", "rrc0.5-1#0"],
                                 4, "fp32"))
    assert events[0] == Counted(0, 10) and isinstance(events[-1], Finished)
    feats = events[-1].value
    assert feats.shape == (2, 5, serving.embed_dim)
    direct = engine_encode(serving, images, vision_prompts=4, precision="fp32")
    assert torch.allclose(feats[0], direct, atol=1e-6)
    stop = tmp_path / "stop"
    stop.touch()
    assert list(compute.encode(images, ["a"] * 5, ["eval"], 4, "fp32", str(stop)))[-1] == \
        Finished(None)


def test_tuning_streams_steps_and_returns_plain_results(serving, tmp_path):
    images = pictures(6)
    labels = [0, 1, 0, 1, 0, 1]
    feats = engine_encode(serving, images, vision_prompts=4, precision="fp32")
    task = PromptState.untrained(CLASSES, {}, CFG, serving.name, serving.fingerprint)
    events = list(compute.tune(task, feats, labels, TrainConfig.fast(steps=8, precision="fp32")))
    steps = [e.progress for e in events if isinstance(e, Stepped)]
    assert [s.done for s in steps] == list(range(1, 9))
    history, tuned = events[-1].value
    assert len(history.steps) == 8 and tuned.ctx is not None and tuned.text.shape == (2, 64)
    assert set(tuned.targets) >= {"teacher"}
    pickle.dumps((history, tuned))  # results cross a process boundary
    stop = tmp_path / "stop"
    stop.touch()
    stopped = list(compute.tune(task, feats, labels, TrainConfig.fast(steps=50), str(stop)))
    history = stopped[-1].value[0]
    assert history.stopped == "user" and len(history.steps) <= 1


def test_a_scan_is_seen_once_per_tower_with_the_map_of_its_top_class(serving):
    picture = pictures(1)[0]
    zero = compute.zero_shot(CLASSES, {}, CFG)
    feats, top, heat = compute.look(picture, "key", (0, 4), "fp32", zero, 0)
    assert set(feats) == {0, 4} and feats[0].shape == (serving.embed_dim,)
    assert top == int(zero.logits(feats[0][None]).argmax())
    dp = DualPrompt.from_state(serving, zero)
    expected = relevance_maps(dp, serving.pixels([picture]), [top])[0]
    assert heat.shape == (224, 224) and np.allclose(heat, expected, atol=1e-5)
    again = compute.maps(zero, [picture, picture], [top, 1 - top])
    assert np.allclose(again[0], heat, atol=1e-5) and not np.allclose(again[1], heat)


def test_durations_follow_the_work():
    cfg = TrainConfig.fast(time_budget_s=90)
    assert compute._tune_s(None, None, None, cfg) == pytest.approx(compute.START_S + 90)
    assert compute._tune_s(None, None, None, TrainConfig.fast(time_budget_s=10_000)) == \
        compute.MAX_S
    few = compute._encode_s([0] * 4, [], ["eval"])
    many = compute._encode_s([0] * 400, [], ["eval"] * 9)
    assert few == pytest.approx(compute.START_S + 4 * compute.PER_IMAGE_S)
    assert few < many <= compute.MAX_S


def test_tuning_gives_way_to_interactive_requests_and_ends_the_same(serving, monkeypatch):
    from demo.runtime.traffic import TRAFFIC

    images = pictures(6)
    labels = [0, 1, 0, 1, 0, 1]
    feats = engine_encode(serving, images, vision_prompts=4, precision="fp32")
    task = PromptState.untrained(CLASSES, {}, CFG, serving.name, serving.fingerprint)
    cfg = TrainConfig.fast(steps=6, precision="fp32")
    alone = list(compute.tune(task, feats, labels, cfg))[-1].value[1]
    monkeypatch.setattr(TRAFFIC, "patience_s", 30.0)
    events, done = [], threading.Event()

    def run():
        events.extend(compute.tune(task, feats, labels, cfg))
        done.set()

    with TRAFFIC.interactive():  # a prediction in flight: no tuning step runs meanwhile
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(1.0)
        assert not events and not done.is_set()
    assert done.wait(60)
    assert [e.progress.done for e in events if isinstance(e, Stepped)] == list(range(1, 7))
    assert torch.equal(events[-1].value[1].ctx, alone.ctx)


def test_prompts_tuned_over_the_first_patches_are_refused_with_a_reason(serving, tmp_path):
    """A reproduction's prompts in the released vision layout would meet the app's inserted
    prompts' features; the app says so instead of scoring them."""
    from core.errors import CheckpointError

    released = DualPrompt(serving, CLASSES, PromptConfig(template=CFG.template,
                                                         vision_mode="overwrite",
                                                         class_position="middle"))
    path = released.save(tmp_path / "released.safetensors")
    with pytest.raises(CheckpointError, match="Tune the prompts again here"):
        compute.load_prompts(str(path))
    middle = DualPrompt(serving, CLASSES, PromptConfig(template=CFG.template,
                                                       class_position="middle"))
    state = compute.load_prompts(str(middle.save(tmp_path / "middle.safetensors")))
    assert state.cfg.class_position == "middle"  # the text side's layout travels with the file
    with torch.no_grad():
        assert torch.allclose(state.text, middle.text_features(), atol=1e-6)
