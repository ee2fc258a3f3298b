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
MAP_OUTPUTS = ("feature_map", "map_points", "map_status", "map_pick")
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

    @answers(MAP_OUTPUTS, status="map_status", interactive=True)
    def draw_feature_map(self, session: Any, request: gr.Request = None) -> dict:
        """The map of the examples: each scan by its plain image features (PCA), the
        examples by class, test and pool scans in grey, the scan predicted in step 4 marked."""
        from dataclasses import asdict

        lang = language(request)
        session = self._session(session, request)
        drawn = session.feature_map(self.model_info(), lang, self.precision)
        if drawn is None:
            return {"map_status": text(lang, "features_stopped")}
        picture, points = drawn
        counts = {kind: sum(p.kind == kind for p in points) for kind in ("example", "test",
                                                                          "pool")}
        said = text(lang, "map_drawn", examples=counts["example"], tests=counts["test"],
                    pool=counts["pool"])
        if any(p.kind == "shown" for p in points):
            said += " " + text(lang, "map_with_shown")
        return {"feature_map": self._picture(session.owner, picture, "map-of-examples"),
                "map_points": [asdict(p) for p in points], "map_status": said,
                "map_pick": None}

    def map_again(self, session: Any, points, request: gr.Request = None) -> dict:
        """The map drawn again after the examples changed, if it was drawn (it follows the
        labelling); nothing otherwise."""
        return self.draw_feature_map(session, request) if points else {}

    @answers(("map_status", "map_pick"), status="map_status")
    def map_clicked(self, session: Any, points, evt: gr.SelectData,
                    request: gr.Request = None) -> dict:
        """A click on the map: the scan of the point nearest to it, with what it is."""
        from demo.work.feature_map import MapPoint, nearest_point

        lang = language(request)
        x, y = (evt.index or [0, 0])[:2]
        point = nearest_point([MapPoint(**p) for p in points or []], float(x), float(y))
        if point is None:
            return {"map_status": text(lang, "map_nothing"), "map_pick": None}
        if point.kind == "shown":
            picture = session.prediction.view if session.prediction is not None else None
            return {"map_status": text(lang, "map_is_shown"),
                    "map_pick": self._picture(session.owner, picture, "map-pick")}
        scans = {"example": session.examples, "test": session.test_set,
                 "pool": session.pool}[point.kind]
        found = next((e for e in scans if e.uid == point.uid), None)
        if found is None:
            return {"map_status": text(lang, "map_gone"), "map_pick": None}
        what = {"example": text(lang, "map_is_example", label=found.label),
                "test": text(lang, "map_is_test", label=found.label),
                "pool": text(lang, "map_is_pool")}[point.kind]
        return {"map_status": f"**{found.name}**: {what}",
                "map_pick": self._picture(session.owner, found.thumbnail, f"thumb-{found.uid}")}
