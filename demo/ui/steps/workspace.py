"""Step 6, the workspace file: the whole work saved as one file, and opened again (in a new
session, another browser, after a restart or on another machine)."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from core import presets
from demo.runtime import storage
from demo.runtime.pages import KEEP_KEYS
from demo.runtime.storage import FRESH_S
from demo.text.messages import UserError, core_text, language, task_title, text
from demo.ui.replies import answers, class_table
from demo.ui.steps.evaluate import CELL_OUTPUTS, EVALUATE_OUTPUTS, _test_counts
from demo.ui.steps.predict import PREDICT_OUTPUTS, no_volume
from demo.ui.steps.prompts import PROMPTS_OUTPUTS

log = logging.getLogger(__name__)

APP_VERSION = "biomed-dpt-studio/1"
LESSONS_ENV = "BIOMED_DPT_LESSONS"  # lesson files, separated by os.pathsep (e.g. on a Space)
SAVE_WORKSPACE_OUTPUTS = ("workspace_file", "workspace_status")
OPEN_WORKSPACE_OUTPUTS = tuple(dict.fromkeys(
    ("session", "workspace_status", "workspace_file", "open_workspace", "gallery", "counts",
     "test_counts", "map_class", *PROMPTS_OUTPUTS, *EVALUATE_OUTPUTS, *PREDICT_OUTPUTS,
     *CELL_OUTPUTS)))
LESSON_OUTPUTS = (*OPEN_WORKSPACE_OUTPUTS, "task_status")
SAMPLE_OUTPUTS = (*LESSON_OUTPUTS, "example_status")
DELETE_OUTPUTS = LESSON_OUTPUTS
PAGE_WORK_OUTPUTS = ("work_keys", "work_notice", "take_over", *OPEN_WORKSPACE_OUTPUTS)
NO_PREDICTION = {"tuned_label": None, "zero_label": None, "scan_view": None, "heat": None,
                 "predict_status": "", "baseline_label": None, "nearest": []}


class WorkspaceStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    _lessons_lock = threading.Lock()  # one sample lesson is made at a time

    @answers(SAVE_WORKSPACE_OUTPUTS, status="workspace_status")
    def save_workspace(self, session: Any, request: gr.Request = None) -> dict:
        """The session's work as one file to download."""
        from demo.work.workspace import write_workspace

        lang = language(request)
        session = self._session(session, request)
        path = write_workspace(session, self.model_info(), self.files.downloads(session.owner),
                               APP_VERSION)
        held = [text(lang, "ws_task"), text(lang, "ws_examples", n=len(session.examples))]
        if session.test_set:
            held.append(text(lang, "ws_tests", n=len(session.test_set)))
        if session.tuned is not None:
            held.append(text(lang, "ws_prompts"))
        if session.evaluated is not None:
            held.append(text(lang, "ws_evaluation"))
        return {"workspace_file": str(path),
                "workspace_status": text(lang, "workspace_saved", name=path.name,
                                         held=", ".join(held))}

    @answers(OPEN_WORKSPACE_OUTPUTS, status="workspace_status")
    def open_workspace(self, session: Any, file, request: gr.Request = None) -> dict:
        """A saved workspace becomes this session's work. Work there was is first saved as a
        file offered beside the message (opening it brings that work back); a file that cannot
        be opened changes nothing."""
        lang = language(request)
        session = self._session(session, request)
        path = self._uploaded(session, file, "choose_workspace")
        return self._open(session, path, _shown_name(file, path), lang)

    def offer_lessons(self, paths) -> list[str]:
        """Workspace files the page offers as lessons (beside the sample scans); each student
        who picks one works on their own copy. A file that is not a workspace is left out and
        said in the log. Returns the problems."""
        from demo.work.workspace import check_lesson, lesson_title

        problems = []
        for path in paths:
            try:
                check_lesson(path)
            except UserError as exc:
                problems.append(exc.text("en"))
                log.warning("the lesson %s is not offered: %s", path, exc.text("en"))
                continue
            self.lessons[lesson_title(path)] = str(path)
        return problems

    @answers(LESSON_OUTPUTS, status="task_status")
    def open_lesson(self, session: Any, lesson: str | None, request: gr.Request = None) -> dict:
        """A lesson (a workspace the teacher prepared) becomes this student's own work."""
        lang = language(request)
        session = self._session(session, request)
        if lesson not in self.lessons:
            raise UserError("choose_lesson", lessons=", ".join(self.lessons) or "-")
        reply = self._open(session, self.lessons[lesson], lesson, lang)
        reply["task_status"] = text(lang, "lesson_opened", lesson=lesson) + "\n\n" + \
            reply["workspace_status"]
        return reply

    @answers(SAMPLE_OUTPUTS, status="task_status")
    def use_samples(self, session: Any, sample_id: str | None, request: gr.Request = None
                    ) -> dict:
        """A sample set (a ready task with its licensed sample scans, and scans to predict):
        a lesson built from the app's own pictures, opened as this user's own copy. The
        whole workflow in a minute, no files needed."""
        lang = language(request)
        session = self._session(session, request)
        sample = presets.sample_set(sample_id or presets.load_samples()[0].id)
        reply = self._open(session, str(self._sample_lesson(sample, lang)),
                           task_title(lang, sample), lang)
        counts = ", ".join(f"{c} {n}" for c, n in session.counts().items())
        message = "\n\n".join([text(lang, "task_set_ready", n=len(session.classes),
                                     classes=", ".join(session.classes)),
                                text(lang, "samples_added", counts=counts)])
        before = reply.get("workspace_file")
        return {**reply, "task_status": message, "example_status": message,
                "workspace_status": text(lang, "workspace_before_kept",
                                         name=Path(before).name) if before else ""}

    def _sample_lesson(self, sample, lang: str) -> Path:
        """The sample set's lesson file for this model and language, made at its first use
        (in the private folder: gone when the server stops)."""
        from demo.work.lessons import sample_lesson
        from demo.work.workspace import SUFFIX

        info = self.model_info()
        folder = storage.folder() / "lessons" / info.fingerprint[:16] / lang
        path = folder / f"{sample.id}{SUFFIX}"
        with self._lessons_lock:
            if not path.exists():
                sample_lesson(sample, info, folder, APP_VERSION, text(lang, "sample_suffix"))
        return path

    def _open(self, session, path: str, shown_name: str, lang: str) -> dict:
        from demo.runtime.runs import BY_NEW_RUN, EVALUATE, TUNE
        from demo.work.workspace import read_workspace, write_workspace

        if session.runs.going(TUNE, EVALUATE):  # its result would land in the opened work
            raise UserError("workspace_wait_for_run")
        info = self.model_info()
        opened = read_workspace(path, info, session.owner, shown_name)
        before = None
        if session.classes or session.examples or session.test_set:
            before = write_workspace(session, info, self.files.downloads(session.owner),
                                     APP_VERSION)
        session.runs.stop(why=BY_NEW_RUN)
        session.become(opened.session)
        lines = [text(lang, "workspace_opened", examples=len(session.examples),
                      tests=len(session.test_set),
                      prompts=text(lang, "workspace_with_prompts" if session.tuned is not None
                                   else "workspace_without_prompts"))]
        lines += [n.text(lang) if isinstance(n, UserError) else core_text(lang, n)
                  for n in opened.notes]
        if before is not None:
            lines.append(text(lang, "workspace_before_kept", name=before.name))
        return {**self.work_view(session, lang), "workspace_status": "\n\n".join(lines),
                "workspace_file": str(before) if before is not None else None}

    @answers(PAGE_WORK_OUTPUTS, status="work_notice")
    def arrive(self, keys=None, request: gr.Request = None) -> dict:
        """The page opened (or was reloaded) with its browser's keys: it shows the work it
        finds on the server as it was left, or says why there is none (cleared for being
        idle; open in another tab, which it offers to take over)."""
        lang = language(request)
        page = getattr(request, "session_hash", None)
        if not page:
            return {"work_keys": gr.skip()}
        came = self.pages.arrive(page, keys if isinstance(keys, list) else [])
        notice = ""
        if came.elsewhere:
            notice = text(lang, "work_open_elsewhere")
        elif came.cleared:
            notice = text(lang, "work_cleared_idle", minutes=round(self.idle_s / 60))
        reply = {"work_keys": came.keys, "work_notice": notice,
                 "take_over": gr.update(visible=came.elsewhere is not None)}
        if came.work is not None and not came.work.gone:
            reply.update(self.work_view(came.work, lang))
        return reply

    @answers(PAGE_WORK_OUTPUTS, status="work_notice")
    def take_over(self, session: Any, keys=None, request: gr.Request = None) -> dict:
        """This page takes over the work its browser has open in another tab; the work this
        page had, if any, is offered as a workspace file first."""
        from demo.work.workspace import write_workspace

        lang = language(request)
        page = getattr(request, "session_hash", None)
        own = self.pages.key_of(page)
        keys = [k for k in (keys if isinstance(keys, list) else []) if k != own]
        wanted = next((k for k in keys if k in self.sessions), None)
        if not page or wanted is None:
            return {"work_notice": text(lang, "work_gone"), "take_over": gr.update(visible=False)}
        mine = self.sessions.get(own) if own else None
        before = None
        if mine is not None and (mine.classes or mine.examples or mine.test_set):
            before = write_workspace(mine, self.model_info(), self.files.downloads(wanted),
                                     APP_VERSION)
        work = self.pages.take_over(page, wanted)
        if work is None:
            return {"work_notice": text(lang, "work_gone"), "take_over": gr.update(visible=False)}
        if mine is not None and mine is not work:
            self.end_work(mine)
        elif own:
            self.files.close(own)
        work.last_used = time.monotonic()
        notice = text(lang, "work_taken")
        if before is not None:
            notice += " " + text(lang, "work_taken_before", name=before.name)
        kept = list(dict.fromkeys([wanted, *keys]))[:KEEP_KEYS]
        return {**self.work_view(work, lang), "work_keys": kept, "work_notice": notice, "take_over": gr.update(visible=False),
                "workspace_file": str(before) if before is not None else None}

    def work_view(self, session, lang: str) -> dict:
        """The page showing the session's work as it is now, in every step, the last
        prediction included (after the work was replaced or deleted, or the page came back)."""
        reply = {**self.prompts_view(session, lang), "session": session,
                 "open_workspace": None, **self.task_widgets(session, lang),
                 "table": class_table(lang, session.task.rows()),
                 **self._examples_view(session, lang), "test_counts": _test_counts(session),
                 "prompts_status": ""}
        if session.tuned is None:  # no prompts file of the work there was is offered
            reply["save"] = None
        reply.update({"cell_gallery": [], "cell_status": "", "promote": gr.update(visible=False)})
        if session.evaluated is not None:
            reply.update(self.evaluation_view(session, session.evaluated[1], lang))
            first = reply["cell"].get("value")
            if first:  # the cell the page offers first, with its scans
                reply.update(self.cell_view(session, first, lang))
        else:
            reply.update({"eval_status": "", "metrics": gr.update(value=None, visible=False),
                          "confusion_zero": None, "confusion_tuned": None,
                          "cell": gr.update(choices=[], value=None, visible=False)})
        if session.prediction is not None:
            reply.update(self.prediction_view(session, self.model_info(), lang))
        else:
            reply.update({**NO_PREDICTION, **no_volume()})
        return reply

    @answers(DELETE_OUTPUTS, status="task_status")
    def delete_my_work(self, session: Any, request: gr.Request = None) -> dict:
        """Delete this session's work and its files now (runs stopped, pictures, features,
        prompts, uploads and downloads); the page starts again from step 1."""
        from demo.runtime.runs import BY_CLOSE
        from demo.work.session import Session

        lang = language(request)
        session = self._session(session, request)
        session.runs.stop(why=BY_CLOSE)
        session.close()
        session.become(Session())
        session.gone = False
        self.files.close(session.owner)
        message = text(lang, "work_deleted", seconds=round(FRESH_S))
        gr.Info(message, title=text(lang, "toast_done"), duration=8)
        return {**self.work_view(session, lang), "workspace_file": None,
                "workspace_status": "", "task_status": message}


def _shown_name(file, path: str) -> str:
    """The file's name as the user uploaded it."""
    name = getattr(file, "orig_name", None) or (file.get("orig_name") if isinstance(file, dict)
                                                 else None)
    from pathlib import Path

    return str(name or Path(path).name)
