"""Step 4, prediction: probabilities, the map, the report made after them."""
from __future__ import annotations

from typing import Any

import gradio as gr

from demo.runtime import storage
from demo.text.messages import UserError, language, text
from demo.ui.replies import (COLOUR_MAPS, answers, slice_value, uploads_of, volume_value,
                             window_value)
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
                   "predict_status", "baseline_label", "nearest", "volume_plot", "volume_slice")
# the API's /predict_volume answers first with one entry per slice
VOLUME_OUTPUTS = ("volume_rows", *PREDICT_OUTPUTS, "predict_index")
SLICE_OUTPUTS = (*PREDICT_OUTPUTS, "predict_index")
# a scan chosen: of a volume, its strip of slices (their numbers kept) and its 4-D volume's box
STRIP_OUTPUTS = ("predict_strip", "predict_strip_slices", "predict_volume_of")


def no_volume() -> dict:
    """The volume's plot and slider hidden (new updates each time: Gradio consumes them)."""
    return {"volume_plot": gr.update(value=None, visible=False),
            "volume_slice": gr.update(visible=False)}


class PredictStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    @answers(PREDICT_OUTPUTS, status="predict_status", interactive=True)
    def predict(self, session: Any, file, window: str, level=None, width=None, index=-1,
                alpha: float = 0.45, cmap: str = "jet", volume=0, request: gr.Request = None
                ) -> dict:
        """One scan predicted: its slice `index` (-1: the middle one) of volume `volume` (of
        a 4-D file)."""
        lang = language(request)
        session = self._session(session, request)
        path = self._scan_file(session, file)
        info = self.model_info()
        session.predict(info, path, window_value(window, level, width), slice_value(index),
                        self.precision, volume=volume_value(volume))
        session.volume = None  # one scan now: the volume's plot no longer applies
        return self.prediction_view(session, info, lang, alpha, cmap)

    @answers(STRIP_OUTPUTS)
    def predict_strip(self, file, window: str, level=None, width=None, volume=0,
                      request: gr.Request = None) -> dict:
        """The scan chosen to predict, seen whole when it is a volume: a strip of its slices
        to pick one by looking, and of a 4-D file the choice of its volume."""
        from core.imaging import load_scan

        uploads = uploads_of([file] if file else [])
        hidden = {"predict_strip": gr.update(value=None, visible=False),
                  "predict_strip_slices": None, "predict_volume_of": gr.update(visible=False)}
        if not uploads:
            return hidden
        self.model_info()  # the imports
        scan = load_scan(uploads[0][0], volume=volume_value(volume))
        owner = self._owner(request)
        reply = dict(hidden)
        if scan.n_frames > 1:
            reply["predict_strip"], reply["predict_strip_slices"] = self._strip(
                owner, scan, window_value(window, level, width))
        if scan.volumes > 1:
            reply["predict_volume_of"] = gr.update(visible=True, maximum=scan.volumes - 1)
        return reply

    def predict_new_scan(self, file, window: str, level=None, width=None,
                         request: gr.Request = None) -> dict:
        """Another scan chosen: its strip, on its middle slice of its first volume (never the
        numbers left from the scan before)."""
        shown = self.predict_strip(file, window, level, width, 0, request)
        return {**shown, "predict_volume_of": {**shown.get("predict_volume_of", gr.update()),
                                               "value": 0}, "predict_index": -1}

    def _scan_file(self, session, file) -> str:
        """The scan to predict, kept as the session's file; or the reason there is none."""
        uploads = uploads_of([file] if file else [])
        self._keep(session, [p for p, _ in uploads])
        if not uploads:
            raise UserError("choose_scan")
        return uploads[0][0]

    @answers(VOLUME_OUTPUTS, status="predict_status", interactive=True)
    def predict_volume(self, session: Any, file, window: str, level=None, width=None, step=0,
                       alpha: float = 0.45, cmap: str = "jet", volume=0,
                       request: gr.Request = None, progress=gr.Progress()) -> dict:
        """Every slice of a volume (of a 4-D file, of volume `volume`) classified (every
        `step`-th; 0: every slice up to 64, then evenly spaced ones), its probabilities
        plotted slice by slice, and the slice the model is most confident about shown with
        its map."""
        from demo.work.prediction import MAX_SLICES

        lang = language(request)
        session = self._session(session, request)
        path = self._scan_file(session, file)
        info = self.model_info()
        word = text(lang, "slice_word")

        def counted(done: int, total: int) -> None:
            progress(done / max(1, total), desc=text(lang, "volume_progress", label=word,
                                                     done=done, total=total))

        volume = session.predict_volume(info, path, window_value(window, level, width),
                                        int(step or 0) or None, self.precision,
                                        progress=counted, volume=volume_value(volume))
        reply = self.prediction_view(session, info, lang, alpha, cmap)
        if volume.n_frames == 1:
            said = text(lang, "volume_single")
        else:
            top = session.prediction.top
            every = text(lang, "volume_every", step=volume.step, label=word, most=MAX_SLICES) \
                if volume.step > 1 else ""
            said = text(lang, "volume_predicted", n=len(volume.slices), total=volume.n_frames,
                        label=word, which=text(lang, "volume_with_tuned" if volume.classifier
                                               == "tuned" else "volume_with_zero"),
                        every=every, best=volume.best, top=top,
                        p=volume.probabilities[volume.slices.index(volume.best)][top])
        return {**reply, "volume_rows": volume.rows(), "predict_index": volume.best,
                "predict_status": said + "\n\n" + reply["predict_status"]}

    @answers(SLICE_OUTPUTS, status="predict_status", interactive=True)
    def show_slice(self, session: Any, file, window: str, level=None, width=None, index=0,
                   alpha: float = 0.45, cmap: str = "jet", volume=0, request: gr.Request = None
                   ) -> dict:
        """Another slice of the volume predicted slice by slice: its prediction and map, marked
        on the plot (of a 4-D file, in the volume predicted)."""
        lang = language(request)
        session = self._session(session, request)
        path = self._scan_file(session, file if session.volume is not None else None)
        info = self.model_info()
        session.predict(info, path, window_value(window, level, width), int(index),
                        self.precision, volume=session.volume.volume)
        reply = self.prediction_view(session, info, lang, alpha, cmap)
        where = text(lang, "volume_slice_shown", label=text(lang, "slice_word"), index=int(index),
                     last=session.volume.n_frames - 1, best=session.volume.best)
        return {**reply, "predict_index": int(index),
                "predict_status": where + " " + reply["predict_status"]}

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
        reply = {"session": session, "tuned_label": p.tuned or None, "zero_label": p.zero_shot,
                 "scan_view": self._picture(session.owner, p.view, "scan"),
                 "heat": self._picture(session.owner, heat, "map"),
                 "map_class": gr.update(choices=p.classnames, value=top),
                 "predict_status": " ".join(notes), "baseline_label": p.baseline or None,
                 "nearest": nearest, **no_volume()}
        volume = getattr(session, "volume", None)
        if volume is not None and volume.n_frames > 1:  # the plot, this slice marked
            from demo.work.report import slice_plot

            shown = p.frame if p.frame is not None else volume.n_frames // 2
            reply["volume_plot"] = gr.update(value=slice_plot(volume, shown, lang), visible=True)
            reply["volume_slice"] = gr.update(visible=True, minimum=0,
                                              maximum=volume.n_frames - 1, value=shown)
        return reply

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
        volume = session.volume if session.volume is not None and \
            session.volume.n_frames > 1 else None  # the plot of the volume predicted
        path = write_report(folder, session.prediction, session.map_for(info, class_name), ctx,
                            volume=volume)
        # keep the last few (a click may be fetching the previous one), delete older ones
        older = sorted(folder.glob("biomed-dpt-report_*.png"), key=lambda p: p.stat().st_mtime)
        for stale in older[:-KEEP_REPORTS]:
            storage.delete_file(stale)
        return str(path)
