"""Step 1, the task: modality, organ, template and classes; presets and sample sets."""
from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core import presets
from demo.text.messages import language, task_title, text
from demo.ui.replies import AUTO_WINDOW, COLOUR_MAPS, answers, class_choices, window_choices
from demo.work.task import class_rows

WINDOWS = ("window", "predict_window", "test_window")
TASK_OUTPUTS = ("session", "task_status", "example_class", "test_class", "gallery", "counts",
                *WINDOWS, "save")
PRESET_OUTPUTS = ("modality", "organ", "template", "table", "lambda_l1", "lambda_kl",
                  "task_status")


class TaskStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    def modality_changed(self, modality: str):
        organs = presets.modality(modality).organs
        organ = organs[0] if organs else None
        return gr.update(choices=list(organs), value=organ), presets.template_for(modality, organ)

    def organ_changed(self, modality: str, organ: str | None):
        return presets.template_for(modality, organ)

    def preset_chosen(self, task_id: str | None, request: gr.Request = None) -> dict:
        """A ready task fills the task's controls (set it with "Use this task")."""
        if not task_id:
            return {}
        lang = language(request)
        task = presets.task(task_id)
        rows = class_rows(task.classes, task.descriptions)
        organs = list(presets.modality(task.modality).organs)
        if task.organ and task.organ not in organs:
            organs.append(task.organ)
        about = text(lang, "task_chosen", title=task_title(lang, task),
                     description=task.description_ko if lang == "ko" else task.description)
        return {"modality": task.modality, "organ": gr.update(choices=organs, value=task.organ),
                "template": task.template, "table": rows, "lambda_l1": task.lambda_l1,
                "lambda_kl": task.lambda_kl, "task_status": about}

    @answers(TASK_OUTPUTS, status="task_status", interactive=True)
    def set_task(self, session: Any, modality: str, organ: str | None, template: str,
                 rows, lambda_l1: float, lambda_kl: float, request: gr.Request = None) -> dict:
        lang = language(request)
        session = self._session(session, request)
        return self._task_view(session, self._take_task(session, modality, organ, template,
                                                        rows, (lambda_l1, lambda_kl)), lang)

    def _take_task(self, session, modality, organ, template, rows, lambdas):
        return session.set_task(self.model_info(), template or "", _rows(rows), modality, organ,
                                lambdas)

    def _task_view(self, session, change, lang: str) -> dict:
        """What setting a task changes on the page: what happened to the classes, their
        choices, the examples' view, the windows that fit the modality, and the Save button
        (empty once the tuned prompts no longer apply)."""
        classes = session.classes
        ready = bool(session.examples) and all(session.counts().values())
        lines = [text(lang, "task_set_ready" if ready else "task_set", n=len(classes),
                      classes=", ".join(classes))]
        lines += [text(lang, "renamed", old=a, new=b, n=n) for a, b, n in change.renamed]
        lines += [text(lang, "class_removed", name=c, n=n) for c, n in change.removed if n]
        if change.untuned:
            lines.append(text(lang, "untuned", classes=", ".join(change.untuned)))
        return {"session": session, "task_status": "\n\n".join(lines),
                **class_choices(classes), **self._examples_view(session, lang),
                **self._windows(lang, session.modality),
                "save": gr.update(value=None) if change.untuned else gr.skip()}

    def legend(self, cmap: str = "jet", request: gr.Request = None):
        """The map's colour legend in the user's language."""
        from core.overlay import colorbar

        lang = language(request)
        return colorbar(cmap if cmap in COLOUR_MAPS else "jet", width=360,
                        labels=(text(lang, "legend_low"), text(lang, "legend_high")))

    def _windows(self, lang: str, modality: str | None) -> dict:
        """The three steps' window controls, with the choices that fit the modality."""
        # one update per output: Gradio consumes an update dict when it applies it
        return {name: gr.update(choices=window_choices(lang, modality), value=AUTO_WINDOW)
                for name in WINDOWS}


def _rows(rows) -> list[list[str]]:
    if isinstance(rows, pd.DataFrame):
        return rows.astype(str).values.tolist()
    if isinstance(rows, dict):  # the API's {"headers": [...], "data": [...]}
        return rows.get("data") or []
    return rows or []
