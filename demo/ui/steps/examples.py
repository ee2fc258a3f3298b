"""Step 2, the examples: reading them, the viewer, the class cards, features as they arrive."""
from __future__ import annotations

from typing import Any

import gradio as gr

from core.errors import StudioError
from demo.text.messages import UserError, core_text, language, text
from demo.ui.replies import answers, problems_text, slice_value, uploads_of, window_value

ADD_OUTPUTS = ("session", "files", "example_status", "gallery", "counts")
REMOVE_OUTPUTS = ("session", "example_status", "gallery", "counts")
FEATURES_OUTPUTS = ("session", "features_status")


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
                     width=None, index=-1, request: gr.Request = None, toast: bool = False
                     ) -> dict:
        """Add scans to a class. Files that could not be added are also said in a toast (the
        status line may be out of view); with `toast`, so is the whole result."""
        lang = language(request)
        session = self._session(session, request)
        uploads = uploads_of(files)
        self._keep(session, [p for p, _ in uploads])
        if not uploads:
            raise UserError("choose_files")
        added, problems = session.add_examples(uploads, label, window_value(window, level, width),
                                               slice_value(index))
        key = "added_example" if added == 1 else "added_examples"
        message = text(lang, key, n=added, label=label) + problems_text(lang, problems,
                                                                         "not_added")
        if any(not p.added for p in problems):
            gr.Warning(message, title=text(lang, "toast_problem"))
        elif toast:
            gr.Info(message, title=text(lang, "toast_done"), duration=4)
        return {"session": session, "files": None, "example_status": message,
                **self._examples_view(session, lang)}

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

    @answers(3, interactive=True)
    def preview(self, files, window: str, level=None, width=None, index=-1,
                request: gr.Request = None):
        """The scan viewer: the first chosen file as the model will see it, with its size and
        frames. Reads the file; needs no model, but waits for its load (the imports)."""
        self.model_info()
        from core.imaging import load_scan, load_series
        from core.overlay import model_view
        from demo.work.scans import frame_used, paired, scan_picture

        lang = language(request)
        uploads = uploads_of(files if isinstance(files, list) else [files] if files else [])
        hidden = gr.update(visible=False)
        if not uploads:
            return None, "", hidden
        _, path, name = paired([("", p, n) for p, n in uploads])[0]  # a pair is one scan
        try:
            scan = load_series(path) if isinstance(path, tuple) else load_scan(path)
            picture, note = scan_picture(scan, window_value(window, level, width),
                                         slice_value(index))
        except StudioError as exc:
            detail = exc.text(lang) if isinstance(exc, UserError) else core_text(lang, exc)
            # a frame that is not there: the slider stays, to pick one that is
            slider = gr.skip() if slice_value(index) is not None else hidden
            return None, name + ": " + text(lang, "preview_failed", detail=detail), slider
        frames, slider = "", hidden
        if scan.n_frames > 1:
            shown = frame_used(scan, slice_value(index))
            shown = scan.n_frames // 2 if shown is None else shown
            frames = text(lang, "preview_frames", label=scan.frame_label, index=shown,
                          last=scan.n_frames - 1)
            slider = gr.update(visible=True, minimum=0, maximum=scan.n_frames - 1, value=shown)
        kind = scan.modality or scan.source_format
        about = name + ": " + text(lang, "preview", kind=kind, rows=scan.rows,
                                   columns=scan.columns, frames=frames)
        if note is not None:
            about += " " + note.text(lang)
        owner = self._owner(request)
        if owner:
            self.files.remember(owner, list(path) if isinstance(path, tuple) else [path])
        return self._picture(owner, model_view(picture), "preview"), about, slider

    def preview_new_files(self, files, window: str, level=None, width=None,
                          request: gr.Request = None) -> dict:
        """The viewer after other files were chosen (or the box was emptied): the first one's
        middle frame or slice, and the slice box back to "middle"."""
        picture, about, slider = self.preview(files, window, level, width, -1, request)
        return {"preview": picture, "preview_text": about, "frame": slider, "index": -1}

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
