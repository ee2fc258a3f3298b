"""The GPU-call boundary: emulated as ZeroGPU imposes it (a forked worker per call, pickled
arguments and results), the CPU fallback when the quota is spent, and the model kept inside."""
from __future__ import annotations

import os
import pickle
import threading
import time

import pytest
import torch

from demo.runtime import gpu, host
from demo.text.messages import UserError


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setenv(gpu.MODE_ENV, gpu.EMULATE)


@gpu.gpu(duration=30)
def where_and_change(items: list) -> tuple[int, bool]:
    items.append("changed in the call")
    return os.getpid(), gpu.computing()


@gpu.gpu(duration=30)
def count_to(n: int, folder: str):
    for i in range(n):
        open(os.path.join(folder, f"{i}"), "w").close()
        yield i
        time.sleep(0.05)


@gpu.gpu(duration=lambda seconds: 3.0 if seconds < 1 else 1.0)
def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


@gpu.gpu(duration=30)
def refuse(key: str):
    raise UserError(key, limit=3, kind="examples")


@gpu.gpu(duration=30)
def on_meta() -> torch.Tensor:
    return torch.empty(2, device="meta")


@gpu.gpu(duration=30)
def the_model_name() -> str:
    return host.model().name


def test_locally_a_call_runs_where_it_is_and_marks_itself_computing(monkeypatch):
    monkeypatch.delenv(gpu.MODE_ENV, raising=False)
    items = []
    pid, inside = where_and_change(items)
    assert pid == os.getpid() and inside and not gpu.computing()
    assert items == ["changed in the call"]


def test_emulated_calls_run_in_another_process_on_pickled_copies(emulated):
    items = ["mine"]
    pid, inside = where_and_change(items)
    assert pid != os.getpid() and inside
    assert items == ["mine"]  # what the worker changed is never seen by the caller


def test_emulated_calls_refuse_what_does_not_pickle(emulated):
    with pytest.raises((pickle.PicklingError, TypeError)):
        where_and_change([threading.Event()])


def test_emulated_results_must_not_hold_tensors_off_the_cpu(emulated):
    with pytest.raises(pickle.PicklingError, match="crossed the GPU-call boundary"):
        on_meta()


def test_errors_cross_the_boundary_with_their_message_keys(emulated):
    with pytest.raises(UserError) as caught:
        refuse("too_many_examples")
    assert caught.value.key == "too_many_examples" and caught.value.values["limit"] == 3
    assert "3" in caught.value.text("ko")


def test_emulated_generators_stream_and_stop_when_closed(emulated, tmp_path):
    assert list(count_to(3, str(tmp_path))) == [0, 1, 2]
    folder = tmp_path / "closed"
    folder.mkdir()
    stream = count_to(1000, str(folder))
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the page went away: the worker ends at its next item
    made = len(os.listdir(folder))
    time.sleep(0.5)
    assert made == len(os.listdir(folder)) and made < 10


def test_a_call_past_its_duration_is_aborted(emulated):
    assert sleep_for(0.1) == "woke up"  # given 3 s
    started = time.monotonic()
    with pytest.raises(gpu.GpuTaskAborted, match="1 s duration"):
        sleep_for(30.0)  # given 1 s
    assert time.monotonic() - started < 10


def test_a_spent_quota_runs_the_call_on_the_cpu_here(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu.MODE_ENV, gpu.EMULATE_NO_QUOTA)
    items = []
    pid, inside = where_and_change(items)
    assert pid == os.getpid() and inside and items == ["changed in the call"]
    assert list(count_to(2, str(tmp_path))) == [0, 1]
    assert not gpu.computing()


def test_the_model_stays_inside_compute_calls(emulated, studio):
    with pytest.raises(gpu.ModelOutsideGpuCall):
        host.model()
    assert the_model_name() == studio.bb.name


def test_an_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv(gpu.MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="emulate"):
        gpu.mode()


def test_the_cpu_path_is_told_once_in_a_while_per_visitor(monkeypatch):
    import gradio as gr
    from gradio.context import LocalContext

    from demo.ui import replies

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message, title=None: shown.append((title, message)))
    monkeypatch.setattr(replies, "_told", {})
    monkeypatch.setattr(gpu, "_listeners", [])
    gpu.when_on_cpu(replies.tell_cpu_path)

    class Visitor:
        headers = {"accept-language": "ko"}

        def __init__(self, who):
            self.session_hash = who

    for who in ("a", "a", "b"):
        token = LocalContext.request.set(Visitor(who))
        try:
            gpu._fall_back(where_and_change, gpu.QuotaSpent("spent"))
        finally:
            LocalContext.request.reset(token)
    assert len(shown) == 2 and "GPU" in shown[0][1] and "CPU" in shown[0][1]


def test_zerogpu_runs_the_versions_its_documentation_lists():
    for torch_version, vision in gpu.ZEROGPU_TORCH.items():
        assert vision.startswith("0.") and torch_version.count(".") == 2
        for python in gpu.ZEROGPU_PYTHONS:
            assert gpu.zerogpu_refuses(torch_version, python) is None
    assert gpu.zerogpu_refuses("2.11.0+cu128", "3.12.1") is None  # a build label, a patch release
    said = gpu.zerogpu_refuses("2.14.1", "3.11.7")
    assert "PyTorch 2.14.1 (it runs 2.8.0, 2.9.1, 2.10.0, 2.11.0)" in said
    assert "Python 3.11.7 (it runs 3.10.13 or 3.12.12)" in said
    assert gpu.ZEROGPU_DOCS in said and gpu.ZEROGPU_READ_ON in said
    assert "Python" not in gpu.zerogpu_refuses("2.7.1", "3.10.13")


def test_the_emulation_refuses_what_zerogpu_refuses(monkeypatch, emulated):
    with pytest.raises(gpu.UnsupportedOnZeroGPU, match="PyTorch 2.14.1"):
        gpu.check_versions("2.14.1", "3.10.13")
    with pytest.raises(gpu.UnsupportedOnZeroGPU, match="Python 3.11"):
        gpu.check_versions("2.11.0", "3.11.7")
    gpu.check_versions("2.11.0", "3.12.12")  # runs
    monkeypatch.setenv(gpu.MODE_ENV, "local")
    gpu.check_versions("2.14.1", "3.11.7")  # only the emulation holds to ZeroGPU's list


def test_an_emulating_app_on_versions_zerogpu_refuses_does_not_start():
    import platform
    import subprocess
    import sys
    from pathlib import Path

    refused = gpu.zerogpu_refuses(torch.__version__, platform.python_version())
    if refused is None:
        gpu.check_versions()  # these versions run on ZeroGPU, and so the emulation starts
        return
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "app.py", "--backbone", "tiny-biomedclip"], cwd=root,
                          env={**os.environ, gpu.MODE_ENV: gpu.EMULATE}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert refused in done.stderr and "Traceback" not in done.stderr
    assert "Running on" not in done.stdout


def test_a_call_asks_for_zerogpus_default_duration_unless_it_says(emulated):
    assert gpu.DEFAULT_DURATION_S == 60

    @gpu.gpu(duration=lambda: None)  # a duration function may leave it to the default
    def nap() -> str:
        time.sleep(1.2)
        return "rested"

    assert nap() == "rested"
    assert gpu._seconds(None, (), {}) == 60 and gpu._seconds(lambda: None, (), {}) == 60
    with pytest.raises(ValueError, match="xlarge"):
        gpu.gpu(size="huge")
    gpu.gpu(duration=None, size="xlarge")(nap.__wrapped__)
