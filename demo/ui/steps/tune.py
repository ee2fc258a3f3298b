"""Step 3, tuning: a run in its turn in the tuning line, streamed to the page; its held-out
estimate (an event of its own, after the run); Stop; going back to the other prompts.

Replies are dicts keyed by output name (`TUNE_OUTPUTS`, `ESTIMATE_OUTPUTS`): the wiring maps
names to components, and a name left out is left as it is on the page."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import gradio as gr

from demo.runtime.events import Finished
from demo.runtime.runs import BY_NEW_RUN, ESTIMATE, STEP_3, TUNE
from demo.text.messages import language, text
from demo.ui.replies import answers

LINE_POLL_S = 1.0
TUNE_OUTPUTS = ("session", "tune_status", "curve", "map_class", "save", "swap",
                "estimate_status")
ESTIMATE_OUTPUTS = ("estimate_status",)
STOP_OUTPUTS = ("tune_status", "estimate_status")


class TuneStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    def training_config(self, recipe: str, steps, epochs, seed):
        from core.train import TrainConfig

        common = dict(seed=int(seed), time_budget_s=self.time_budget_s)
        if recipe == "paper":
            return TrainConfig.paper(epochs=int(epochs), **common)
        return TrainConfig.fast(steps=int(steps), precision=self.precision, **common)

    @answers(TUNE_OUTPUTS, status="tune_status")
    def tune(self, session: Any, recipe: str, lambda_l1: float, lambda_kl: float, steps,
             epochs, seed, cold: bool = False, request: gr.Request = None,
             progress=gr.Progress()):
        """A tuning run in its turn. With prompts tuned before for the same classes, it starts
        from them (a warm start, which stops as soon as the loss settles); `cold` starts from
        the template's words instead, as a first run does."""
        lang = language(request)
        session = self._session(session, request)
        if session.runs.busy(TUNE):  # a second click while a run goes: said, nothing changes
            gr.Info(text(lang, "tuning_going"), title=text(lang, "toast_wait"), duration=6)
            yield {"tune_status": gr.skip()}
            return
        info = self.model_info()
        session.training_set()  # examples of every class, or the reason why not
        cfg = self.training_config(recipe, steps, epochs, seed)
        session.runs.stop(ESTIMATE, why=BY_NEW_RUN)  # the estimate of the prompts being replaced
        with session.runs.run(TUNE) as run:
            yield {"estimate_status": ""}
            waited = yield from self._wait_in_line(run, lang, "tune_status", session)
            if waited is None:
                return
            try:
                yield from self._tune_now(session, info, cfg, (lambda_l1, lambda_kl), lang,
                                          progress, run, warm=not cold)
            finally:
                self.line.leave(waited)

    def _wait_in_line(self, run, lang: str, status: str, session) -> Iterator[dict]:
        """Take a turn in the tuning line (one run at a time on a small machine), telling the
        user their place; returns the ticket once it is this run's turn (then `line.leave` it),
        or None when the run was stopped while waiting."""
        ticket = self.line.join()
        try:
            while not self.line.wait_turn(ticket, LINE_POLL_S):
                if run.stopped:
                    self.line.leave(ticket)
                    yield {status: self._stopped_waiting(lang, run, session)}
                    return None
                place = self.line.position(ticket)
                yield {status: text(lang, "line_wait", position=place,
                                    seconds=self.line.estimate_s(place))}
        except BaseException:
            self.line.leave(ticket)
            raise
        return ticket

    @staticmethod
    def _stopped_waiting(lang: str, run, session) -> str:
        if run.kind == ESTIMATE:
            return text(lang, "estimate_replaced" if run.stopped_by == BY_NEW_RUN
                        else "estimate_stopped")
        return text(lang, "stopped_early_kept" if session.tuned is not None
                    else "stopped_early_none")

    def _tune_now(self, session, info, cfg, lambdas, lang, progress, run, warm: bool = False
                  ) -> Iterator[dict]:
        """The run (`demo.work.tuning.tuning_run`), its curve growing as it goes; then its prompts
        are kept, or (stopped by the user, with prompts already tuned) offered beside them."""
        from demo.work.report import training_curve
        from demo.work.tuning import tuning_run

        total, tuning = 1, None
        points: list[dict] = []
        try:
            for event in tuning_run(session, info, cfg, lambdas, run, warm):
                if isinstance(event, Finished):
                    tuning = event.value
                    continue
                step = event.progress
                message = _progress_text(step, progress, lang)
                if step.phase == "encode":
                    yield {"tune_status": message}
                    continue
                total = step.total
                points.append({"step": step.done, "loss": step.loss, "accuracy": step.accuracy})
                if step.done % 5 and step.done != step.total:  # the status line and the bar
                    yield {"tune_status": message}  # say the same step; the plot, the cost,
                    continue  # is redrawn every few steps
                yield {"tune_status": message, "curve": training_curve(points, total, lang)}
        except GeneratorExit:  # the page went away: the run stops, wherever it runs
            run.stop()
            raise
        if tuning is None:  # stopped before any step: keep what was
            yield {"tune_status": self._stopped_waiting(lang, run, session)}
            return
        if tuning.history.stopped == "user" and not session.prompts.stopped(tuning):
            yield {"tune_status": text(lang, "stopped_offered", steps=tuning.steps,
                                       kept=session.prompts.current.steps),
                   "curve": self.curve_of(tuning, lang), **self._swap_view(session, lang)}
            return
        if tuning.history.stopped != "user":
            session.prompts.finished(tuning)
        yield self.prompts_view(session, lang)

    def prompts_view(self, session, lang: str) -> dict:
        """What the step shows of the session's current prompts: their summary and curve, the
        class choices of the map, the file the Save button offers, the way back."""
        current = session.prompts.current
        if current is None or current.history is None:  # none, or from a file
            return {"tune_status": "" if current is None else text(lang, "from_file_tuned"),
                    "curve": self.curve_of(None, lang), "estimate_status": "",
                    **self._swap_view(session, lang)}
        tuned = current.prompts
        return {"session": session, "tune_status": _summary(current.history, tuned, lang),
                "curve": self.curve_of(current, lang),
                "map_class": gr.update(choices=tuned.classnames),
                "save": self._prompts_file(session, tuned),
                "estimate_status": estimate_text(lang, current.held_out, len(session.examples))
                if current.held_out is not None else "",
                **self._swap_view(session, lang)}

    @staticmethod
    def curve_of(tuning, lang: str):
        from demo.work.report import training_curve

        if tuning is None or tuning.history is None:
            return training_curve([], 1, lang)
        return training_curve(tuning.history.steps, max(1, tuning.steps), lang,
                              final=tuning.history.final.get("accuracy"))

    @staticmethod
    def _swap_view(session, lang: str) -> dict:
        other, why = session.prompts.other, session.prompts.other_is
        if other is None:
            return {"swap": gr.update(visible=False)}
        key = {"previous": "swap_previous", "stopped": "swap_stopped",
               "replaced": "swap_replaced"}[why]
        what = (text(lang, "n_steps", steps=other.steps) if other.history is not None
                else text(lang, "from_file"))
        return {"swap": gr.update(visible=True, value=text(lang, key, what=what))}

    @answers(TUNE_OUTPUTS, status="tune_status")
    def swap_prompts(self, session: Any, request: gr.Request = None) -> dict:
        """Go back to the previous prompts, or take the stopped run's: the ones left behind
        stay one click away."""
        lang = language(request)
        session = self._session(session, request)
        if session.runs.busy(TUNE):
            gr.Info(text(lang, "tuning_going"), title=text(lang, "toast_wait"), duration=6)
            return {}
        if session.prompts.swap() is None:
            return {"tune_status": text(lang, "nothing_to_swap"), **self._swap_view(session, lang)}
        session.runs.stop(ESTIMATE, why=BY_NEW_RUN)
        view = self.prompts_view(session, lang)
        view["tune_status"] = "\n\n".join(filter(None, [text(lang, "swapped"),
                                                       view["tune_status"]]))
        return view

    @answers(ESTIMATE_OUTPUTS, status="estimate_status")
    def estimate(self, session: Any, request: gr.Request = None):
        """The held-out estimate of the prompts just tuned, in its own line below the summary
        (Stop ends it; a new Tune replaces it). An API client receives the last update."""
        from demo.work.evaluation import COMPARED, FOLDS

        lang = language(request)
        tuning = getattr(getattr(session, "prompts", None), "current", None)
        if tuning is None or tuning.history is None or session.runs.busy(TUNE):
            yield {}  # nothing to estimate: none tuned, loaded from a file, or replaced meanwhile
            return
        if tuning.held_out is not None:  # kept (a run was stopped, or these were restored)
            yield {"estimate_status": estimate_text(lang, tuning.held_out, len(session.examples))}
            return
        session = self._session(session, request)
        info = self.model_info()
        counts = list(session.counts().values())
        folds = max(2, min([FOLDS, *counts]))
        total = 1 + len(COMPARED)
        with session.runs.run(ESTIMATE) as run:
            ticket = yield from self._wait_in_line(run, lang, "estimate_status", session)
            if ticket is None:
                return
            try:
                yield {"estimate_status": text(lang, "estimating", folds=folds, done=0,
                                               total=total)}
                held_out = None
                lambdas = (tuning.prompts.cfg.lambda_l1, tuning.prompts.cfg.lambda_kl)
                task = session.tuning_task(info, lambdas)
                for event in session.estimate(info, task, tuning.history.config,
                                              self.precision, run.stop_path):
                    if isinstance(event, Finished):
                        held_out = event.value
                    else:
                        yield {"estimate_status": text(lang, "estimating", folds=folds,
                                                       done=event.done, total=event.total)}
            except GeneratorExit:
                run.stop()
                raise
            finally:
                self.line.leave(ticket)
        if held_out is not None:
            from demo.work.evaluation import paying_point

            session.prompts.estimated(tuning, held_out)
            point = paying_point(session.counts(), held_out, tuning.history.warm)
            if point is not None:
                session.labelling.append(point)
        reason = "estimate_replaced" if run.stopped_by == BY_NEW_RUN else "estimate_stopped"
        yield {"estimate_status": estimate_text(lang, held_out, len(session.examples), reason)}

    @staticmethod
    def paying_plot(session: Any, request: gr.Request = None):
        """"Is labelling still paying?": each estimated run's held-out accuracy against its
        number of examples, for the tuned prompts and the best baseline (hidden before the
        first estimate)."""
        from demo.work.report import labelling_plot

        points = list(getattr(session, "labelling", None) or [])
        if not points:
            return gr.update(value=None, visible=False)
        return gr.update(value=labelling_plot(points, language(request)), visible=True)

    def _prompts_file(self, session, dp) -> str:
        """The tuned prompts as the file the download button offers (made with the result it
        belongs to, so one click downloads these prompts)."""
        from demo.work.report import _slug

        info = {"recipe": session.history.config.recipe if session.history else None,
                "examples": len(session.examples), "modality": session.modality,
                "organ": session.organ}
        task = "-".join(filter(None, [session.modality, session.organ]))
        when = datetime.now().strftime("%Y-%m-%d_%H%M%S")
        path = (self.files.downloads(session.owner)
                / f"biomed-dpt-prompts_{_slug(task)}_{when}.safetensors")
        dp.save(path, info=info)
        return str(path)

    @answers(STOP_OUTPUTS)
    def stop(self, session: Any, request: gr.Request = None) -> dict:
        """Stop what this step runs (a tuning run, or its held-out estimate), nothing else;
        with nothing running, say so and change nothing."""
        lang = language(request)
        runs = session.runs.stop(*STEP_3) if session is not None else []
        if not runs:
            gr.Info(text(lang, "nothing_running"), title=text(lang, "toast_wait"), duration=6)
            return {}
        where = {TUNE: "tune_status", ESTIMATE: "estimate_status"}
        return {where[run.kind]: text(lang, "stopping") for run in runs}


def _progress_text(event, progress, lang: str) -> str:
    if event.phase == "encode":
        message = text(lang, "reading", done=event.done, total=event.total)
        progress((event.done, event.total), desc=message)
        return message
    message = text(lang, "step", done=event.done, total=event.total, loss=event.loss,
                   ce=event.parts["ce"], l1=event.parts["l1"], kl=event.parts["kl"],
                   accuracy=event.accuracy)
    progress((event.done, event.total), desc=message.split(" · ")[0])
    return message


def _summary(history, dp, lang: str) -> str:
    final = history.final
    how = {None: "how_finished", "user": "how_user", "time budget": "how_budget",
           "converged": "how_converged"}
    said = text(lang, "summary", how=text(lang, how[history.stopped]), steps=len(history.steps),
                seconds=history.total_s, precision=history.precision,
                accuracy=final.get("accuracy", 0.0), loss=final.get("loss", float("nan")),
                classes=", ".join(dp.classnames)) + " " + text(lang, "train_accuracy_note")
    return said + (" " + text(lang, "warm_started") if getattr(history, "warm", False) else "")


def estimate_text(lang: str, held_out: dict | None, n: int,
                  stopped: str = "estimate_stopped") -> str:
    """The held-out estimate as a small table, with its warnings (`stopped`: what to say when
    there is none)."""
    if held_out is None:
        return text(lang, stopped)
    lines = []
    methods = held_out["methods"]
    if methods:
        recipe = text(lang, "estimate_fast") if held_out.get("refit_fast") else ""
        lines += [text(lang, "estimate_title", folds=held_out["folds"], n=n, recipe=recipe), "",
                  text(lang, "estimate_head"), "|---|---|---|---|"]
        for name, out in methods.items():
            lines.append(text(lang, "estimate_row", method=text(lang, f"method_{name}"),
                              accuracy=out["accuracy"], balanced=out["balanced_accuracy"],
                              std=out["std"]))
    warnings = [text(lang, key, **values) for key, values in held_out["warnings"]]
    return "\n".join(lines + ([""] if lines and warnings else []) + warnings)
