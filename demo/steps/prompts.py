"""Step 6, the prompts file: loading one (saving is part of tuning)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from core import presets
from demo.messages import UserError, language, modality_name, text
from demo.replies import answers, class_choices, upload_path


class PromptsStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    @answers(12, status=1)
    def load_prompts(self, session: Any, file, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        path = upload_path(file)
        if path is None:
            raise UserError("choose_prompts")
        self._keep(session, [path])
        from demo import compute

        self.model_info()
        dp = compute.load_prompts(path)
        change = session.adopt_prompts(dp)
        lines = [text(lang, "loaded", classes=", ".join(dp.classnames),
                      modality=modality_name(lang, session.modality))]
        lines += [text(lang, "class_removed", name=c, n=n) for c, n in change.removed if n]
        message = "\n\n".join(lines)
        organs = list(presets.modality(session.modality).organs) if session.modality else []
        if session.organ and session.organ not in organs:
            organs.append(session.organ)
        return (session, message, session.modality, gr.update(choices=organs, value=session.organ),
                dp.cfg.template, session.task.rows(), *class_choices(dp.classnames),
                self._prompts_file(session, dp),
                *self._windows(lang, session.modality))
