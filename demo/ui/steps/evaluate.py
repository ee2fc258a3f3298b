"""Step 5, evaluation: the test set, metrics, confusion cells and their scans."""
from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from demo.text.messages import UserError, language, text
from demo.ui.replies import (answers, problems_text, slice_value, upload_path, uploads_of,
                             window_value)

TEST_OUTPUTS = ("session", "test_zip", "test_files", "test_status", "test_counts")
EVALUATE_OUTPUTS = ("session", "eval_status", "metrics", "confusion_zero", "confusion_tuned",
                    "cell")
CELL_OUTPUTS = ("session", "cell_gallery", "cell_status", "promote")
PROMOTE_OUTPUTS = ("session", "cell_status", "gallery", "counts", "test_counts", "cell_gallery")


def _test_counts(session) -> str:
    return " · ".join(f"**{c}**: {n}" for c, n in session.test_counts().items())


class EvaluateStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    @answers(TEST_OUTPUTS, status="test_status")
    def add_test_scans(self, session: Any, zipped, files, label: str, window: str, level=None,
                       width=None, index=-1, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        zip_path = upload_path(zipped)
        uploads = uploads_of(files)
        self._keep(session, [p for p, _ in uploads] + ([zip_path] if zip_path else []))
        if zip_path is None and not uploads:
            raise UserError("choose_test")
        spec, where = window_value(window, level, width), slice_value(index)
        added, problems = 0, []
        if zip_path is not None:
            n, bad = session.add_test_zip(zip_path, spec, where)
            added, problems = added + n, problems + bad
        if uploads:
            n, bad = session.add_test_files(uploads, label, spec, where)
            added, problems = added + n, problems + bad
        key = "added_test" if added == 1 else "added_tests"
        message = text(lang, key, n=added) + problems_text(lang, problems, "tests_not_added")
        return {"session": session, "test_zip": None, "test_files": None,
                "test_status": message, "test_counts": _test_counts(session)}

    @answers(EVALUATE_OUTPUTS, status="eval_status", interactive=True)
    def evaluate(self, session: Any, request: gr.Request = None):
        lang = language(request)
        session = self._session(session, request)
        from demo.runtime.runs import EVALUATE

        with session.runs.run(EVALUATE) as run:
            results = session.evaluate(self.model_info(), self.precision, run.stop_path)
        return {"session": session, **self.evaluation_view(session, results, lang)}

    def evaluation_view(self, session, results, lang: str) -> dict:
        """What the step shows of an evaluation: the message, the table, the confusion
        matrices, and the cells to look into."""
        from core.evaluate import confusion_figure, summary_rows

        names = {"zero-shot": text(lang, "col_zero"), "tuned": text(lang, "col_tuned"),
                 "tip-adapter": text(lang, "col_tip-adapter"),
                 "linear-probe": text(lang, "col_linear-probe")}
        labels = {"accuracy": text(lang, "m_accuracy"),
                  "balanced_accuracy": text(lang, "m_balanced"),
                  "macro_f1": text(lang, "m_macro_f1"), "precision": text(lang, "m_precision"),
                  "recall": text(lang, "m_recall"), "f1": text(lang, "m_f1")}
        headers, rows = summary_rows(results, labels)
        headers = [text(lang, "col_metric")] + [names[h] for h in headers[1:]]
        axes = (text(lang, "predicted_class"), text(lang, "true_class"))
        figures = {name: confusion_figure(
            result, title=text(lang, "confusion_title", which=names[name],
                               accuracy=result.accuracy), axis_labels=axes,
            colour_label=text(lang, "fraction_true"))
            for name, result in results.items() if name in ("zero-shot", "tuned")}
        best = results.get("tuned", results["zero-shot"])
        which = text(lang, "which_tuned" if "tuned" in results else "which_zero")
        message = text(lang, "evaluated", n=best.n, accuracy=best.accuracy,
                       balanced=best.balanced_accuracy, which=which)
        overlap = session.overlap()
        if overlap:
            message += "\n\n" + text(lang, "overlap", n=overlap)
        table = gr.update(value=pd.DataFrame(rows, columns=headers), visible=True)
        return {"eval_status": message, "metrics": table,
                "confusion_zero": figures["zero-shot"], "confusion_tuned": figures.get("tuned"),
                "cell": self._cells(best, lang)}

    def _cells(self, result, lang: str):
        """The confusion matrix's non-empty cells as choices, the mistakes first."""
        names = result.classnames
        cells = [(t, p, n) for t, row in enumerate(result.confusion) for p, n in enumerate(row)
                 if n]
        cells.sort(key=lambda c: (c[0] == c[1], -c[2]))
        choices = [(text(lang, "cell_choice", true=names[t], predicted=names[p], n=n),
                    f"{t},{p}") for t, p, n in cells]
        return gr.update(choices=choices, value=choices[0][1] if choices else None,
                         visible=bool(choices))

    @answers(CELL_OUTPUTS, status="cell_status", interactive=True)
    def show_cell(self, session: Any, cell: str | None, request: gr.Request = None):
        """Lead back from the matrix to the scans: the test scans of one cell with the maps of
        the class they were predicted as."""
        lang = language(request)
        session = self._session(session, request)
        if session.evaluated is None or not cell:
            raise UserError("evaluate_first")
        return self.cell_view(session, cell, lang)

    def cell_view(self, session, cell: str, lang: str) -> dict:
        """One cell's test scans, each with the map of the class it was predicted as."""
        _, results = session.evaluated
        result = results.get("tuned", results["zero-shot"])
        t, p = (result.classnames[int(k)] for k in cell.split(","))
        info = self.model_info()
        scans = session.cell(t, p)
        session.cell_scans, session.cell_selected, session.cell_predicted = scans, None, p
        which = text(lang, "which_tuned" if "tuned" in results else "which_zero")
        return {"session": session, "cell_gallery": self._cell_gallery(session, info),
                "cell_status": text(lang, "cell_shown", n=len(scans), true=t, predicted=p,
                                    which=which),
                "promote": gr.update(visible=bool(scans))}

    def select_cell_scan(self, session: Any, event: gr.SelectData, request: gr.Request = None):
        lang = language(request)
        scans = getattr(session, "cell_scans", None) or []
        if event is None or not 0 <= event.index < len(scans):
            return session, text(lang, "cell_select_first")
        session.cell_selected = event.index
        return session, text(lang, "cell_selected", true=scans[event.index].label)

    @answers(PROMOTE_OUTPUTS, status="cell_status")
    def promote_cell_scan(self, session: Any, request: gr.Request = None):
        """Add the selected test scan to the examples under its true class."""
        lang = language(request)
        session = self._session(session, request)
        k = session.cell_selected
        if k is None or not 0 <= k < len(session.cell_scans):
            raise UserError("cell_select_first")
        moved = session.promote(session.cell_scans.pop(k))
        session.cell_selected = None
        message = text(lang, "cell_promoted", name=moved.name, n=len(session.cell_scans))
        return {"session": session, "cell_status": message, **self._examples_view(session, lang),
                "test_counts": _test_counts(session),
                "cell_gallery": self._cell_gallery(session, self.model_info())}

    def _cell_gallery(self, session, info) -> list[tuple[str, str]]:
        """The cell's test scans, each with the map of the class they were predicted as."""
        scans = session.cell_scans
        pictures = session.cell_maps(info, scans, session.cell_predicted) if scans else []
        return [(self._picture(session.owner, pic, f"cell-{e.uid}"), e.name)
                for pic, e in zip(pictures, scans)]
