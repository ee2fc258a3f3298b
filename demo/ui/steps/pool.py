"""Step 2's unlabelled pool: scans added without a class, the ones to label next (ranked by
what a label would teach, or at random), and one click to label a suggestion."""
from __future__ import annotations

from typing import Any

import gradio as gr

from demo.text.messages import UserError, language, text
from demo.ui.replies import answers, problems_text, slice_value, volume_value, window_value
from demo.work.pool import SUGGESTIONS

POOL_OUTPUTS = ("session", "pool_files", "pool_status")
SUGGEST_OUTPUTS = ("session", "suggestions", "pool_status")
LABEL_OUTPUTS = ("session", "suggestions", "pool_status", "example_status", "counts", "gallery")


class PoolStep:
    """`Studio`'s handlers of the pool (a mixin: `Studio` holds the model host, the sessions
    and their files)."""

    @answers(POOL_OUTPUTS, status="pool_status")
    def add_to_pool(self, session: Any, files, window: str = "auto", level=None, width=None,
                    index=-1, volume=0, request: gr.Request = None) -> dict:
        """Scans without a class into the pool (of each file its chosen slice, -1: the middle
        one; of a 4-D file, volume `volume`); their features are prepared in the background,
        as the examples' are."""
        lang = language(request)
        session = self._session(session, request)
        uploads = self._chosen_files(session, files)
        added, problems = session.add_to_pool(uploads, window_value(window, level, width),
                                              slice_value(index), volume_value(volume))
        message = text(lang, "pool_added", n=added, total=len(session.pool)) + problems_text(
            lang, problems, "not_added")
        return {"session": session, "pool_files": None, "pool_status": message}

    @answers(SUGGEST_OUTPUTS, status="pool_status", interactive=True)
    def suggest(self, session: Any, order: str = "ranked", request: gr.Request = None) -> dict:
        """The pool scans to label next (8 at most), each with the model's guess and why it is
        suggested: `order` "ranked" (by what a label would teach) or "random"."""
        lang = language(request)
        session = self._session(session, request)
        if not session.pool:
            raise UserError("pool_empty")
        info = self.model_info()
        found = session.suggestions(info, order, precision=self.precision)
        rows = [self._suggestion_row(session, s, lang) for s in found or []]
        key = "pool_ranked" if order == "ranked" else "pool_random"
        said = text(lang, key, n=len(rows), total=len(session.pool))
        alike = min(SUGGESTIONS, len(session.pool)) - len(rows)
        if order == "ranked" and alike > 0:  # the rest are near-copies of those suggested
            said += " " + text(lang, "pool_alike", n=len(session.pool) - len(rows))
        return {"session": session, "suggestions": rows, "pool_status": said}

    @answers(LABEL_OUTPUTS, status="pool_status", interactive=True)
    def label_pool_scan(self, session: Any, uid, label: str, suggestions=None,
                        request: gr.Request = None) -> dict:
        """Label pool scan `uid` as class `label`: it leaves the pool (and the suggestions
        shown) and becomes one of the class's examples."""
        lang = language(request)
        session = self._session(session, request)
        example = session.label_pool_scan(int(uid), label)
        left = [row for row in suggestions or [] if int(row.get("uid", -1)) != int(uid)]
        message = text(lang, "pool_labelled", name=example.name, label=label,
                       left=len(session.pool))
        return {"session": session, "suggestions": left, "pool_status": message,
                "example_status": message, **self._examples_view(session, lang)}

    def _suggestion_row(self, session, suggestion, lang: str) -> dict:
        """One suggestion as the page and the API show it."""
        s = suggestion
        names = {"tuned": text(lang, "pool_by_tuned"), "zero-shot": text(lang, "pool_by_zero"),
                 "linear-probe": text(lang, "pool_by_probe")}
        if s.reason == "disagree":
            why = text(lang, "pool_why_disagree", who=names[s.classifier], guess=s.guess,
                       other=names[s.disagreeing], other_guess=s.disagreeing_guess)
        elif s.reason == "unsure" and s.runner_up is not None:
            why = text(lang, "pool_why_unsure", guess=s.guess, p=s.probability,
                       runner_up=s.runner_up, q=s.runner_up_probability)
        else:
            why = text(lang, "pool_why_random", guess=s.guess, p=s.probability)
        return {"uid": s.example.uid, "name": s.example.name, "guess": s.guess,
                "probability": round(s.probability, 6), "runner_up": s.runner_up,
                "reason": s.reason, "classifier": s.classifier, "why": why,
                "picture": self._picture(session.owner, s.example.thumbnail,
                                         f"thumb-{s.example.uid}")}
