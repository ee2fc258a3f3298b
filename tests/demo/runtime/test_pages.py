"""Which page holds which work: the browser's keys, reloads, two tabs, taking over, clearing."""
from __future__ import annotations

from types import SimpleNamespace

from demo.runtime.pages import KEEP_KEYS, TAKEN, Pages, new_key


def work(last_used: float = 0.0):
    return SimpleNamespace(last_used=last_used)


def test_a_new_browser_gets_a_fresh_random_key_and_no_work():
    pages = Pages()
    came = pages.arrive("tab-1", [])
    assert came.work is None and came.keys == [came.key] and len(came.key) >= 24
    assert pages.key_of("tab-1") == came.key
    assert pages.arrive("tab-2", []).key != came.key  # keys are never guessed or shared


def test_a_reload_finds_the_work_again_and_junk_keys_are_ignored():
    pages = Pages()
    key = pages.arrive("tab-1", []).key
    pages.works[key] = mine = work()
    assert pages.leave("tab-1") == key and key in pages.works  # the work stays
    came = pages.arrive("tab-1b", ["../etc/passwd", 42, None, key, key])
    assert came.key == key and came.work is mine and came.keys == [key]
    assert not came.elsewhere and not came.cleared


def test_a_second_tab_gets_its_own_work_and_is_offered_the_first_ones():
    pages = Pages()
    first = pages.arrive("tab-1", [])
    pages.works[first.key] = mine = work()
    second = pages.arrive("tab-2", first.keys)
    assert second.key != first.key and second.work is None
    assert second.elsewhere == first.key and second.keys == [second.key, first.key]
    # it takes the work over: the first tab is told, and a reload there gets a work of its own
    assert pages.take_over("tab-2", first.key) is mine
    assert pages.key_of("tab-2") == first.key and pages.key_of("tab-1") == TAKEN
    assert pages.leave("tab-1") is None  # closing the tab that lost its work frees nothing
    again = pages.arrive("tab-1", second.keys)
    assert again.key not in (first.key, second.key) and again.elsewhere == first.key


def test_each_tab_reloading_finds_its_own_work_and_the_most_recent_comes_first():
    pages = Pages()
    one = pages.arrive("a", [])
    pages.works[one.key] = work(1.0)
    two = pages.arrive("b", one.keys)
    pages.works[two.key] = work(2.0)
    pages.leave("a")
    assert pages.arrive("a2", two.keys).key == one.key  # "b" still holds its own
    pages.leave("a2")
    pages.leave("b")
    assert pages.arrive("c", two.keys).key == two.key  # the most recently used
    keys = [new_key() for _ in range(10)]
    for k in keys:
        pages.works[k] = work()
    assert len(pages.arrive("d", keys).keys) == KEEP_KEYS


def test_work_cleared_for_being_idle_is_said_once_and_deleted_work_is_not():
    pages = Pages()
    idle = pages.arrive("a", []).key
    pages.works[idle] = work()
    pages.leave("a")
    assert pages.clear(idle) is not None and idle not in pages.works
    came = pages.arrive("a2", [idle])
    assert came.cleared and came.work is None and came.key != idle
    assert not pages.arrive("a3", [idle]).cleared  # said once
    deleted = pages.arrive("b", []).key
    pages.works[deleted] = work()
    pages.clear(deleted, idle=False)
    assert not pages.arrive("b2", [deleted]).cleared
    assert pages.take_over("b2", deleted) is None  # gone: nothing to take
