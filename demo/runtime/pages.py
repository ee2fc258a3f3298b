"""Which page holds which work.

A browser keeps only opaque random keys (in its own storage); each user's work stays on the
server under its key while a page uses it, and after that until it has been unused for the idle
period. A reload, a closed and reopened tab or a dropped connection finds the work again by its
key. One work is held by one page at a time: a second tab of the same browser starts work of
its own and may take the first one's over, after which the first tab's steps are refused with
the reason (they would otherwise write into work shown elsewhere).

Plain Python, thread-safe; the work itself is any object with a `last_used` time.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

TAKEN = ""  # what a page holds once another tab took its work over
KEEP_KEYS = 4  # keys a browser keeps (its tabs' work, most recent first)
REMEMBER_CLEARED_S = 24 * 3600.0  # how long a page is told that its work was cleared
KEY_BYTES = 24


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def _valid(key: Any) -> bool:
    return isinstance(key, str) and 16 <= len(key) <= 64 and key.replace("-", "").replace(
        "_", "").isalnum()


@dataclass(frozen=True)
class Arrival:
    """What a page finds when it opens: the key of the work it now holds (its work, when there
    is some on the server), the keys its browser should keep, the key of work of this browser
    that another page holds (offered to take over), and whether work it had was cleared for
    being idle."""

    key: str
    work: Any
    keys: list[str]
    elsewhere: str | None = None
    cleared: bool = False


class Pages:
    """The works by key, and which page (by its session id) holds which."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.works: dict[str, Any] = {}  # key -> work
        self._held: dict[str, str] = {}  # page -> key of the work it holds (TAKEN: taken over)
        self._cleared: dict[str, float] = {}  # key -> when its work was cleared for being idle

    def arrive(self, page: str, keys: Iterable[Any]) -> Arrival:
        """A page opened with its browser's keys: it holds the most recently used of this
        browser's works that no other page holds, else new (empty) work under a new key."""
        keys = [k for k in dict.fromkeys(keys or ()) if _valid(k)]
        with self._lock:
            self._held.pop(page, None)
            held = set(self._held.values())
            free = [k for k in keys if k in self.works and k not in held]
            busy = [k for k in keys if k in self.works and k in held]
            if free:
                key = max(free, key=lambda k: getattr(self.works[k], "last_used", 0.0))
            else:
                key = new_key()
            self._held[page] = key
            cleared = not free and any(k in self._cleared for k in keys)
            for k in keys:
                self._cleared.pop(k, None)  # said once
            kept = [key] + [k for k in keys if k != key and k in self.works]
            return Arrival(key, self.works.get(key), kept[:KEEP_KEYS],
                           busy[0] if busy and not free else None, cleared)

    def key_of(self, page: str | None) -> str | None:
        """The key of the work `page` holds; TAKEN when another page took it over; None for a
        page that never opened (an API client)."""
        if not page:
            return None
        with self._lock:
            return self._held.get(page)

    def holder(self, key: str) -> str | None:
        with self._lock:
            return next((p for p, k in self._held.items() if k == key), None)

    def take_over(self, page: str, key: str) -> Any:
        """`page` now holds the work under `key` (from the page that held it, which is told at
        its next step); returns the work, or None when there is none (any more)."""
        with self._lock:
            work = self.works.get(key)
            if work is None or not _valid(key):
                return None
            other = self.holder(key)
            if other is not None and other != page:
                self._held[other] = TAKEN
            self._held[page] = key
            return work

    def leave(self, page: str | None) -> str | None:
        """The page closed (or reloads); its work stays for the idle period."""
        if not page:
            return None
        with self._lock:
            return self._held.pop(page, None) or None

    def clear(self, key: str, idle: bool = True) -> Any:
        """The work under `key` is gone (cleared for being idle, or deleted by its user);
        returns it."""
        with self._lock:
            work = self.works.pop(key, None)
            now = time.monotonic()
            if idle and work is not None:
                self._cleared[key] = now
            for old, when in list(self._cleared.items()):
                if now - when > REMEMBER_CLEARED_S:
                    del self._cleared[old]
            return work
