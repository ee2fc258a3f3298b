"""Right of way: background steps wait while interactive requests are in flight, never longer
than their patience, and never in a worker process."""
from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from demo.runtime.traffic import TRAFFIC, Traffic
from demo.ui.handlers import Studio
from demo.ui.replies import answers


def test_no_interactive_work_means_no_wait():
    traffic = Traffic(patience_s=5)
    started = time.monotonic()
    assert traffic.give_way() == 0.0 and time.monotonic() - started < 0.5


def test_a_background_step_waits_until_the_interactive_request_ends():
    traffic = Traffic(patience_s=10)
    released = threading.Event()

    def request():
        with traffic.interactive():
            released.wait()

    thread = threading.Thread(target=request)
    thread.start()
    while traffic.in_flight == 0:
        time.sleep(0.01)
    threading.Timer(0.3, released.set).start()
    waited = traffic.give_way()
    thread.join()
    assert 0.2 < waited < 5 and traffic.in_flight == 0 and traffic.waited_s == waited


def test_a_stream_of_requests_slows_background_work_but_never_stops_it():
    traffic = Traffic(patience_s=0.2)
    with traffic.interactive():
        waited = traffic.give_way()
        assert 0.15 < waited < 2


def _child_gives_way(queue):
    queue.put(TRAFFIC.give_way())


def test_a_worker_process_gives_way_to_nobody():
    """Forked while a request is in flight, a GPU worker's loop does not wait for a count it
    cannot see change."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    patience = TRAFFIC.patience_s
    TRAFFIC.patience_s = 30
    try:
        with TRAFFIC.interactive():
            child = ctx.Process(target=_child_gives_way, args=(queue,))
            child.start()
            assert queue.get(timeout=20) == 0.0
            child.join(20)
    finally:
        TRAFFIC.patience_s = patience


def test_interactive_handlers_count_while_they_run():
    seen = []

    @answers(1, interactive=True)
    def shown(x):
        seen.append(TRAFFIC.in_flight)
        return x

    @answers(1)
    def background(x):
        seen.append(TRAFFIC.in_flight)
        return x

    assert shown(1) == 1 and background(2) == 2
    assert seen == [1, 0] and TRAFFIC.in_flight == 0


@pytest.mark.parametrize("name, interactive", [
    ("predict", True), ("change_map", True), ("evaluate", True), ("show_cell", True),
    ("preview", True), ("set_task", True), ("report", False)])
def test_what_a_user_waits_to_see_has_the_right_of_way(name, interactive):
    assert getattr(Studio, name).interactive is interactive
