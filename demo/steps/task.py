"""Step 1, the task: modality, organ, template and classes; presets and sample sets."""
from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core import presets
from demo.messages import TASK_TITLES_KO, language, text
from demo.replies import (AUTO_WINDOW, COLOUR_MAPS, answers, class_choices, problems_text,
                          window_choices)
from demo.task import class_rows


class TaskStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    def modality_changed(self, modality: str):
        organs = presets.modality(modality).organs
        organ = organs[0] if organs else None
        return gr.update(choices=list(organs), value=organ), presets.template_for(modality, organ)

    def organ_changed(self, modality: str, organ: str | None):
        return presets.template_for(modality, organ)

    def preset_chosen(self, task_id: str | None, request: gr.Request = None):
        if not task_id:
            return (gr.skip(),) * 7
        lang = language(request)
        task = presets.task(task_id)
        rows = class_rows(task.classes, task.descriptions)
        organs = list(presets.modality(task.modality).organs)
        if task.organ and task.organ not in organs:
            organs.append(task.organ)
        from demo.tasks_ko import TASK_DESCRIPTIONS_KO

        if lang == "ko":
            about = text(lang, "task_chosen", title=TASK_TITLES_KO.get(task.id, task.title),
                         description=TASK_DESCRIPTIONS_KO.get(task.id, task.description))
        else:
            about = text(lang, "task_chosen", title=task.title, description=task.description)
        return (task.modality, gr.update(choices=organs, value=task.organ), task.template,
                rows, task.lambda_l1, task.lambda_kl, about)

    @answers(10, status=1, interactive=True)
    def set_task(self, session: Any, modality: str, organ: str | None, template: str,
                 rows, lambda_l1: float, lambda_kl: float, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        change = session.set_task(self.model_info(), template or "", _rows(rows), modality, organ,
                                  (lambda_l1, lambda_kl))
        classes = session.classes
        lines = [text(lang, "task_set", n=len(classes), classes=", ".join(classes))]
        lines += [text(lang, "renamed", old=a, new=b, n=n) for a, b, n in change.renamed]
        lines += [text(lang, "class_removed", name=c, n=n) for c, n in change.removed if n]
        if change.untuned:
            lines.append(text(lang, "untuned", classes=", ".join(change.untuned)))
        windows = self._windows(lang, session.modality)
        # the Save button offers the session's prompts: none once they no longer apply
        saved = gr.update(value=None) if change.untuned else gr.skip()
        return (session, "\n\n".join(lines), *class_choices(classes),
                *self._examples_view(session, lang), *windows, saved)

    @answers(17, status=1)
    def use_samples(self, session: Any, sample_id: str | None, request: gr.Request = None):
        """A ready task with its licensed sample scans added as examples: the whole workflow
        in a minute, no files needed."""
        lang = language(request)
        samples = presets.sample_set(sample_id or presets.load_samples()[0].id)
        rows = class_rows(samples.classes, samples.descriptions)
        out = self.set_task(session, samples.modality, samples.organ, samples.template, rows,
                            samples.lambda_l1, samples.lambda_kl, request)
        session = out[0]
        if not hasattr(session, "examples"):  # the task was refused: its message is in out[1]
            return (*out[:9], *(gr.skip(),) * 7, out[9])
        problems = []
        for label, paths in samples.files.items():
            _, bad = session.add_examples([(str(p), p.name) for p in paths], label,
                                          suffix=text(lang, "sample_suffix"))
            problems += bad
        counts = ", ".join(f"{c} {n}" for c, n in session.counts().items())
        message = (out[1] + "\n\n" + text(lang, "samples_added", counts=counts)
                   + problems_text(lang, problems, "not_added"))
        organs = list(presets.modality(samples.modality).organs)
        return (session, message, *out[2:4], *self._examples_view(session, lang), *out[6:9],
                samples.modality, gr.update(choices=organs, value=samples.organ),
                samples.template, rows, samples.lambda_l1, samples.lambda_kl, message, out[9])

    def legend(self, cmap: str = "jet", request: gr.Request = None):
        """The map's colour legend in the user's language."""
        from core.overlay import colorbar

        lang = language(request)
        return colorbar(cmap if cmap in COLOUR_MAPS else "jet", width=360,
                        labels=(text(lang, "legend_low"), text(lang, "legend_high")))

    def _windows(self, lang: str, modality: str | None):
        # one update per output: Gradio consumes an update dict when it applies it
        return tuple(gr.update(choices=window_choices(lang, modality), value=AUTO_WINDOW)
                     for _ in range(3))


def _rows(rows) -> list[list[str]]:
    if isinstance(rows, pd.DataFrame):
        return rows.astype(str).values.tolist()
    if isinstance(rows, dict):  # the API's {"headers": [...], "data": [...]}
        return rows.get("data") or []
    return rows or []
