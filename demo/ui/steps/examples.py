"""Step 2, the examples: reading them, the viewer, the class cards, features as they arrive."""
from __future__ import annotations

from typing import Any

import gradio as gr

from core.errors import StudioError
from demo.text.messages import UserError, core_text, language, text
from demo.ui.replies import (answers, problems_text, slice_range, slice_value, uploads_of,
                             volume_value, window_value)

ADD_OUTPUTS = ("session", "files", "example_status", "gallery", "counts")
REMOVE_OUTPUTS = ("session", "example_status", "gallery", "counts")
FEATURES_OUTPUTS = ("session", "features_status")
# the viewer: the picture, what it is, and for a volume its slider, its strip of slices, the
# choice of its 4-D volume and of a range of slices to add
VIEW_OUTPUTS = ("preview", "preview_text", "frame", "strip", "strip_slices", "volume",
                "range_row")
RANGE_OUTPUTS = ("range_first", "range_last", "range_note")


def single_view() -> dict:
    """The viewer's volume controls hidden (a picture of one frame; new updates each time:
    Gradio consumes them)."""
    return {"frame": gr.update(visible=False), "strip": gr.update(value=None, visible=False),
            "strip_slices": None, "volume": gr.update(visible=False),
            "range_row": gr.update(visible=False)}


class ExamplesStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    def _examples_view(self, session, lang: str) -> dict:
        """The examples (for the API's gallery) and their count per class."""
        gallery = [(self._picture(session.owner, e.thumbnail, f"thumb-{e.uid}"), e.name)
                   for e in session.examples]
        counts = (" · ".join(f"**{c}**: {n}" for c, n in session.counts().items())
                  or text(lang, "counts_none"))
        return {"gallery": gallery, "counts": counts}

    @answers(ADD_OUTPUTS, status="example_status")
    def add_examples(self, session: Any, files, label: str, window: str, level=None,
                     width=None, index=-1, volume=0, every_slice: bool = False, first=0,
                     last=0, request: gr.Request = None, toast: bool = False) -> dict:
        """Add scans to a class: of each file its chosen slice (`index`, -1: the middle one),
        or with `every_slice` each slice from `first` to `last`, each an example; of a 4-D
        file, volume `volume`. Files that could not be added are also said in a toast (the
        status line may be out of view); with `toast`, so is the whole result."""
        lang = language(request)
        session = self._session(session, request)
        uploads = self._chosen_files(session, files)
        chosen = slice_range(first, last) if every_slice else slice_value(index)
        added, problems = session.add_examples(uploads, label, window_value(window, level, width),
                                               chosen, volume=volume_value(volume))
        key = "added_example" if added == 1 else "added_examples"
        message = text(lang, key, n=added, label=label) + problems_text(lang, problems,
                                                                         "not_added")
        if any(not p.added for p in problems):
            gr.Warning(message, title=text(lang, "toast_problem"))
        elif toast:
            gr.Info(message, title=text(lang, "toast_done"), duration=4)
        return {"session": session, "files": None, "example_status": message,
                **self._examples_view(session, lang)}

    def _chosen_files(self, session, files) -> list[tuple[str, str]]:
        """The uploaded files (path, name as uploaded), kept as the session's; or the reason
        there are none."""
        uploads = uploads_of(files)
        self._keep(session, [p for p, _ in uploads])
        if not uploads:
            raise UserError("choose_files")
        return uploads

    @answers(FEATURES_OUTPUTS, status="features_status")
    def prepare_features(self, session: Any, request: gr.Request = None):
        """After examples arrive: encode those not yet encoded (with its own progress line in
        the step), so that tuning costs only the text steps. Closing the page stops it; a tune
        started meanwhile encodes whatever is still missing."""
        lang = language(request)
        if session is None or not getattr(session, "examples", None):
            yield {}
            return
        from demo.runtime.events import Finished
        from demo.runtime.runs import ENCODE

        info = self.model_info()
        ready = False
        with session.runs.run(ENCODE) as run:
            for event in session.encode_examples(info, self.precision, run.stop_path):
                if isinstance(event, Finished):
                    ready = event.value
                elif event.done < event.total:
                    yield {"features_status": text(lang, "encoding", done=event.done,
                                                   total=event.total)}
        yield {"session": session,
               "features_status": text(lang, "features_ready" if ready else "features_stopped")}

    @answers(VIEW_OUTPUTS, status="preview_text", interactive=True)
    def preview(self, files, window: str, level=None, width=None, index=-1, volume=0,
                request: gr.Request = None) -> dict:
        """The scan viewer: the first chosen file as the model will see it, with its size,
        its frames or slices (a slider, and a strip of them to pick one by looking) and, of a
        4-D file, which volume. Reads the file; needs no model, but waits for its load (the
        imports)."""
        self.model_info()
        from core.imaging import load_scan, load_series
        from core.overlay import model_view
        from demo.work.scans import frame_used, paired, scan_picture

        lang = language(request)
        uploads = uploads_of(files if isinstance(files, list) else [files] if files else [])
        if not uploads:
            return {"preview": None, "preview_text": "", **single_view()}
        _, path, name = paired([("", p, n) for p, n in uploads])[0]  # a pair is one scan
        try:
            volume = volume_value(volume)
            scan = (load_series(path, volume=volume) if isinstance(path, tuple)
                    else load_scan(path, volume=volume))
            picture, note = scan_picture(scan, window_value(window, level, width),
                                         slice_value(index))
        except StudioError as exc:
            detail = exc.text(lang) if isinstance(exc, UserError) else core_text(lang, exc)
            reply = {"preview": None,
                     "preview_text": name + ": " + text(lang, "preview_failed", detail=detail)}
            # a frame or volume that is not there: the controls stay, to pick one that is
            return reply if slice_value(index) is not None or volume_value(volume) else {
                **reply, **single_view()}
        frames, view = "", single_view()
        owner = self._owner(request)
        if scan.n_frames > 1:
            shown = frame_used(scan, slice_value(index))
            shown = scan.n_frames // 2 if shown is None else shown
            frames = text(lang, "preview_frames", label=scan.frame_label, index=shown,
                          last=scan.n_frames - 1)
            view.update(self._volume_view(owner, scan, window_value(window, level, width), shown))
        if scan.volumes > 1:
            frames += text(lang, "preview_volume", volume=scan.volume, last=scan.volumes - 1)
            view["volume"] = gr.update(visible=True, maximum=scan.volumes - 1)
        kind = scan.modality or scan.source_format
        about = name + ": " + text(lang, "preview", kind=kind, rows=scan.rows,
                                   columns=scan.columns, frames=frames)
        if note is not None:
            about += " " + note.text(lang)
        if owner:
            self.files.remember(owner, list(path) if isinstance(path, tuple) else [path])
        return {"preview": self._picture(owner, model_view(picture), "preview"),
                "preview_text": about, **view}

    def _volume_view(self, owner: str | None, scan, window, shown: int) -> dict:
        """The viewer's controls for a scan of several frames or slices: the slider on the
        one shown, the strip of evenly spaced ones (their numbers kept, for a click), and
        the choice of a range of slices."""
        strip, slices = self._strip(owner, scan, window)
        return {"frame": gr.update(visible=True, minimum=0, maximum=scan.n_frames - 1,
                                   value=shown),
                "strip": strip, "strip_slices": slices, "range_row": gr.update(visible=True)}

    def _strip(self, owner: str | None, scan, window) -> tuple[dict, dict]:
        """A volume's strip of evenly spaced slices, each captioned with its number, and
        what a click on one needs: their numbers (and the volume's count)."""
        from demo.work.scans import strip_of

        strip = [(self._picture(owner, picture, f"strip-{i}"), str(i))
                 for i, picture in strip_of(scan, window)]
        return (gr.update(value=strip, visible=True, selected_index=None),
                {"slices": [int(c) for _, c in strip], "frames": scan.n_frames})

    def preview_new_files(self, files, window: str, level=None, width=None,
                          request: gr.Request = None) -> dict:
        """The viewer after other files were chosen (or the box was emptied): the first one's
        middle frame or slice of its first volume, and the slice box back to "middle"."""
        shown = self.preview(files, window, level, width, -1, 0, request)
        return {**shown, "volume": {**shown.get("volume", gr.update()), "value": 0}, "index": -1,
                "every_slice": False, "range_first": gr.update(value=-1, visible=False),
                "range_last": gr.update(value=-1, visible=False), "range_note": ""}

    @staticmethod
    def strip_clicked(strip_slices, evt: gr.SelectData):
        """A click on the strip's `evt.index`-th thumbnail chooses that slice."""
        slices = (strip_slices or {}).get("slices", [])
        return slices[evt.index] if 0 <= evt.index < len(slices) else gr.skip()

    @staticmethod
    def range_said(every_slice: bool, first, last, index, strip_slices,
                   request: gr.Request = None) -> dict:
        """When every slice from … to … is chosen: its ends (at first around the slice shown)
        and, before anything is added, how many examples it makes."""
        lang = language(request)
        if not every_slice:
            return {"range_first": gr.update(visible=False), "range_last": gr.update(
                visible=False), "range_note": ""}
        frames = int((strip_slices or {}).get("frames", 1))
        shown = slice_value(index)
        shown = frames // 2 if shown is None else min(shown, frames - 1)
        first = int(first) if first is not None and first >= 0 else max(0, shown - 4)
        last = int(last) if last is not None and last >= 0 else min(frames - 1, shown + 4)
        n = max(0, last - first + 1)
        note = text(lang, "range_note", first=first, last=last, n=n)
        return {"range_first": gr.update(value=first, visible=True, maximum=frames - 1),
                "range_last": gr.update(value=last, visible=True, maximum=frames - 1),
                "range_note": note}

    def class_cards(self, session) -> list[dict]:
        """What each class's card shows: name, descriptions, count, its thumbnails."""
        if session is None or not getattr(session, "classes", None):
            return []
        cards = []
        for c in session.classes:
            mine = [i for i, e in enumerate(session.examples) if e.label == c]
            cards.append({
                "name": c, "descriptions": list(session.descriptions.get(c, [])),
                "thumbnails": [(self._picture(session.owner, session.examples[i].thumbnail,
                                              f"thumb-{session.examples[i].uid}"),
                                session.examples[i].name) for i in mine],
                # the highlight is the session's selection, or none (never a neighbour's)
                "selected": mine.index(session.selected) if session.selected in mine else None,
                "uids": [session.examples[i].uid for i in mine]})
        return cards

    def select_in_class(self, session: Any, label: str, index: int, request=None):
        """A click on the `index`-th thumbnail of a class's card selects that example."""
        lang = language(request)
        mine = [i for i, e in enumerate(getattr(session, "examples", [])) if e.label == label]
        if not 0 <= index < len(mine):
            return session, text(lang, "select_first")
        session.selected = mine[index]
        return session, text(lang, "selected", name=session.examples[mine[index]].name)

    @answers(REMOVE_OUTPUTS, status="example_status")
    def remove_selected(self, session: Any, request: gr.Request = None,
                        label: str | None = None) -> dict:
        """Remove the selected example; from a class's card (`label`), only one of its own."""
        lang = language(request)
        session = self._session(session, request)
        chosen = session.selected
        if (label is not None and chosen is not None and 0 <= chosen < len(session.examples)
                and session.examples[chosen].label != label):
            return {"session": session, "example_status": text(lang, "select_in_card",
                                                                 label=label),
                    **self._examples_view(session, lang)}
        removed = session.remove_selected()
        message = (text(lang, "removed", name=removed.name) if removed
                   else text(lang, "select_first"))
        return {"session": session, "example_status": message,
                **self._examples_view(session, lang)}
