"""Step 6, the prompts file: loading one (saving is part of tuning)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from core import presets
from demo.text.messages import UserError, language, modality_name, text
from demo.ui.replies import answers, class_choices, upload_path
from demo.ui.steps.task import WINDOWS

PROMPTS_OUTPUTS = ("session", "prompts_status", "modality", "organ", "template", "table",
                   "lambda_l1", "lambda_kl", "example_class", "test_class", "save", *WINDOWS,
                   "tune_status", "curve", "estimate_status", "swap")


class PromptsStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    def save_clicked(self, session: Any, request: gr.Request = None) -> None:
        """The Save button downloads the prompts it holds; with none tuned it says why."""
        if getattr(session, "tuned", None) is None:
            lang = language(request)
            gr.Info(text(lang, "tune_first"), title=text(lang, "toast_wait"), duration=6)

    @answers(PROMPTS_OUTPUTS, status="prompts_status")
    def load_prompts(self, session: Any, file, request: gr.Request = None) -> dict:
        """Prompts from a file become the session's, with their task; the prompts there were
        stay one click away in step 3."""
        lang = language(request)
        session = self._session(session, request)
        path = self._uploaded(session, file, "choose_prompts")
        from demo.runtime import compute

        self.model_info()
        dp = compute.load_prompts(path)
        change = session.adopt_prompts(dp)
        lines = [text(lang, "loaded", classes=", ".join(dp.classnames),
                      modality=modality_name(lang, session.modality))]
        lines += [text(lang, "class_removed", name=c, n=n) for c, n in change.removed if n]
        return {**self.prompts_view(session, lang), "session": session,
                "prompts_status": "\n\n".join(lines), **self.task_widgets(session, lang),
                "save": self._prompts_file(session, dp)}

    def _uploaded(self, session, file, missing: str) -> str:
        """The path of an uploaded file, kept with the session's files (deleted with them);
        `missing`: the message key when none was given."""
        path = upload_path(file)
        if path is None:
            raise UserError(missing)
        self._keep(session, [path])
        return path

    def task_widgets(self, session, lang: str) -> dict:
        """Step 1's widgets showing the session's task, and the class and window choices
        that follow from it."""
        organs = list(presets.modality(session.modality).organs) if session.modality else []
        if session.organ and session.organ not in organs:
            organs.append(session.organ)
        return {"modality": session.modality,
                "organ": gr.update(choices=organs, value=session.organ),
                "template": session.template, "table": session.task.rows(),
                "lambda_l1": session.task.lambda_l1, "lambda_kl": session.task.lambda_kl,
                **class_choices(session.classes), **self._windows(lang, session.modality)}
