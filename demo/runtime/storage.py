"""Where uploaded and generated files live, and when they go.

The server keeps every file of this process (Gradio's uploads and our downloads) in one private
folder, `GRADIO_TEMP_DIR`, made when the app starts (mode 0700) and deleted when it stops, also
on SIGTERM; a folder left by a process that was killed is deleted at the next start. Within it,
each browser session's files are remembered by the session's id and deleted when the page is
closed (`close`): uploads by reference count (identical uploads of two sessions share one cached
file), downloads in one folder per session. Gradio's own sweep deletes anything older than
`MAX_AGE_S` (files sent through the API, whose clients never close a page). No file name is ever
logged. This module does not import gradio: the folder must be set before gradio reads it.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "biomed-dpt-studio-"
OWNER_FILE = ".pid"
SWEEP_EVERY_S = 300
MAX_AGE_S = 3300
FRESH_S = 30.0  # an upload this recent may be another session's copy of the same file
LEFTOVER_AGE_S = 10.0  # with the sweep every 5 minutes: nothing is older than an hour
_lock = threading.Lock()
_folder: Path | None = None


def start() -> Path:
    """Make this process's private folder and point Gradio at it; idempotent."""
    global _folder
    with _lock:
        if _folder is not None:
            return _folder
        remove_abandoned(Path(tempfile.gettempdir()))
        _folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        (_folder / OWNER_FILE).write_text(str(os.getpid()))
        os.environ["GRADIO_TEMP_DIR"] = str(_folder)
        atexit.register(stop)
        if threading.current_thread() is threading.main_thread():
            _exit_cleanly_on_sigterm()
        return _folder


def stop() -> None:
    """Delete the folder and everything in it (the server is stopping)."""
    global _folder
    with _lock:
        folder, _folder = _folder, None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def folder() -> Path:
    """The folder Gradio stores files in (ours once `start` ran)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def remove_abandoned(parent: Path) -> int:
    """Delete folders of earlier processes of this app that are no longer running."""
    removed = 0
    for candidate in parent.glob(PREFIX + "*"):
        try:
            pid = int((candidate / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(candidate, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (how servers and containers are stopped) ends the server like Ctrl-C, so that
    `atexit` runs and the folder is deleted."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread of the main interpreter
        pass


class SessionFiles:
    """The files of each browser session, by session id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uploads: dict[str, set[str]] = {}
        self._holders: dict[str, int] = {}

    def remember(self, owner: str, paths) -> None:
        with self._lock:
            mine = self._uploads.setdefault(owner, set())
            for path in paths:
                path = str(path)
                if path and path not in mine:
                    mine.add(path)
                    self._holders[path] = self._holders.get(path, 0) + 1

    def owned(self, owner: str) -> set[str]:
        with self._lock:
            return set(self._uploads.get(owner, ()))

    def downloads(self, owner: str) -> Path:
        """This session's folder for files it offers for download."""
        target = folder() / f"session-{_safe(owner)}"
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        return target

    def close(self, owner: str) -> int:
        """Delete the session's uploads (unless another open session holds the same cached
        file) and its downloads; returns how many files went. Gradio keeps one file per
        content and name, so a file written in the last `FRESH_S` seconds may be someone
        else's upload of the same scan, not yet seen by a handler: it is deleted after that
        window unless a session has taken it up by then."""
        with self._lock:
            mine = self._uploads.pop(owner, set())
            gone, later = [], []
            for path in mine:
                self._holders[path] -= 1
                if self._holders[path] <= 0:
                    del self._holders[path]
                    (later if _fresh(path) else gone).append(path)
        for path in gone:
            delete_file(path)
        if later:
            wait = threading.Timer(FRESH_S, self._delete_unheld, args=(later,))
            wait.daemon = True
            wait.start()
        remove_upload_leftovers()
        later = threading.Timer(LEFTOVER_AGE_S + 5, remove_upload_leftovers)
        later.daemon = True
        later.start()  # staging files of uploads still in flight when the page closed
        downloads = folder() / f"session-{_safe(owner)}"
        count = len(gone)
        if downloads.exists():
            count += sum(1 for p in downloads.iterdir() if p.is_file())
            shutil.rmtree(downloads, ignore_errors=True)
        return count


    def _delete_unheld(self, paths: list[str]) -> None:
        with self._lock:
            unheld = [p for p in paths if p not in self._holders]
        for path in unheld:
            if not _fresh(path):  # written again meanwhile: its new uploader's, for now
                delete_file(path)


def _fresh(path: str) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime < FRESH_S
    except OSError:
        return False


def remove_upload_leftovers(min_age_s: float | None = None) -> int:
    """Delete the staging files Gradio's upload parser leaves at the top of the folder
    (`tmp*`, never handed to anyone: uploads are served from their per-file folders) once they
    are older than an upload in flight could be."""
    removed = 0
    now = time.time()
    min_age_s = LEFTOVER_AGE_S if min_age_s is None else min_age_s
    for path in folder().glob("tmp*"):
        try:
            if path.is_file() and now - path.stat().st_mtime > min_age_s:
                path.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def delete_file(path: str | os.PathLike) -> None:
    """Delete a file, and its folder when that was Gradio's per-file cache folder, now empty."""
    path = Path(path)
    try:
        path.unlink()
    except OSError:
        return
    parent = path.parent
    try:
        if parent != folder() and parent.parent == folder() and not any(parent.iterdir()):
            parent.rmdir()
    except OSError:
        pass


def _safe(owner: str) -> str:
    return "".join(ch for ch in owner if ch.isalnum() or ch in "-_")[:64] or "anonymous"
