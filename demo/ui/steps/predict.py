"""Step 4, prediction: probabilities, the map, the report made after them."""
from __future__ import annotations

from typing import Any

import gradio as gr

from demo.runtime import storage
from demo.text.messages import UserError, language, text
from demo.ui.replies import COLOUR_MAPS, answers, slice_value, uploads_of, window_value
from demo.work.prediction import scan_notes

KEEP_REPORTS = 3


def _empty_panels_notes(session: Any, lang: str) -> list[str]:
    """Why the linear-probe panel (and, with no examples at all, the nearest-examples panel)
    is empty: the probe is fitted on examples of every class, which loaded prompts do not
    bring."""
    missing = [c for c, n in session.counts().items() if n == 0]
    if not missing:
        return []
    if len(missing) == len(session.classes):
        return [text(lang, "predict_no_examples")]
    return [text(lang, "predict_no_probe", classes=", ".join(missing))]


PREDICT_OUTPUTS = ("session", "tuned_label", "zero_label", "scan_view", "heat", "map_class",
                   "predict_status", "baseline_label", "nearest")


class PredictStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    @answers(PREDICT_OUTPUTS, status="predict_status", interactive=True)
    def predict(self, session: Any, file, window: str, level=None, width=None, index=-1,
                alpha: float = 0.45, cmap: str = "jet", request: gr.Request = None) -> dict:
        lang = language(request)
        session = self._session(session, request)
        uploads = uploads_of([file] if file else [])
        self._keep(session, [p for p, _ in uploads])
        if not uploads:
            raise UserError("choose_scan")
        info = self.model_info()
        session.predict(info, uploads[0][0], window_value(window, level, width),
                        slice_value(index), self.precision)
        return self.prediction_view(session, info, lang, alpha, cmap)

    def prediction_view(self, session, info, lang: str, alpha: float = 0.45,
                        cmap: str = "jet") -> dict:
        """Step 4 showing the session's last prediction: its probabilities, the scan and the
        map of its top class, what to know about it, and the nearest examples."""
        p = session.prediction
        top = p.top
        notes = [text(lang, "predicted", top=top, p=(p.tuned or p.zero_shot)[top])]
        if session.tuned is None:
            notes.append(text(lang, "zero_shot_only"))
        notes += scan_notes(p, session.modality, lang)
        if not p.baseline:
            notes += _empty_panels_notes(session, lang)
        cmap = cmap if cmap in COLOUR_MAPS else "jet"
        heat = session.overlay_for(info, top, alpha, cmap)
        nearest = [(self._picture(session.owner, e.thumbnail, f"thumb-{e.uid}"),
                    text(lang, "nearest_caption", name=e.name, similarity=sim))
                   for e, sim in p.nearest]
        return {"session": session, "tuned_label": p.tuned or None, "zero_label": p.zero_shot,
                "scan_view": self._picture(session.owner, p.view, "scan"),
                "heat": self._picture(session.owner, heat, "map"),
                "map_class": gr.update(choices=p.classnames, value=top),
                "predict_status": " ".join(notes), "baseline_label": p.baseline or None,
                "nearest": nearest}

    @answers(2, interactive=True)
    def change_map(self, session: Any, class_name: str, alpha: float, cmap: str = "jet",
                   request: gr.Request = None):
        if session is None or session.prediction is None or not class_name:
            return session, gr.skip()
        info = self.model_info()
        cmap = cmap if cmap in COLOUR_MAPS else "jet"
        heat = session.overlay_for(info, class_name, alpha, cmap)
        return session, self._picture(session.owner, heat, "map")

    @staticmethod
    def report_pending():
        """The report button while the report of a new prediction or map is being made: no
        click can download the previous scan's report."""
        return gr.update(value=None, interactive=False)

    @staticmethod
    def report_ready():
        return gr.update(interactive=True)

    @answers(1)
    def report(self, session: Any, class_name: str, alpha: float, cmap: str = "jet",
               request: gr.Request = None):
        """The report of the prediction and map on screen, made after they are shown (its
        figure is the slowest part of a prediction, and nobody waits to see it)."""
        if session is None or session.prediction is None:
            return None
        classes = session.prediction.classnames
        class_name = class_name if class_name in classes else session.prediction.top
        cmap = cmap if cmap in COLOUR_MAPS else "jet"
        return self._report(session, self.model_info(), class_name, alpha, cmap,
                            language(request))

    def _report(self, session, info, class_name: str, alpha: float, cmap: str, lang: str) -> str:
        from demo.work.report import ReportContext, write_report

        ctx = ReportContext(model=info.name, demo_model=self.demo_model, modality=session.modality,
                            organ=session.organ, classes=list(session.classes),
                            template=session.template, explained=class_name,
                            alpha=float(alpha), cmap=cmap, lang=lang)
        folder = self.files.downloads(session.owner)
        path = write_report(folder, session.prediction, session.map_for(info, class_name), ctx)
        # keep the last few (a click may be fetching the previous one), delete older ones
        older = sorted(folder.glob("biomed-dpt-report_*.png"), key=lambda p: p.stat().st_mtime)
        for stale in older[:-KEEP_REPORTS]:
            storage.delete_file(stale)
        return str(path)
