"""Step 3, tuning: the tuning line, the run streamed to the page, the held-out estimate."""
from __future__ import annotations

import time
from contextlib import closing
from datetime import datetime
from typing import Any

import gradio as gr

from demo.messages import language, text
from demo.replies import answers

LINE_POLL_S = 1.0



class TuneStep:
    """`Studio`'s handlers of this step (a mixin: `Studio` holds the model host, the
    sessions and their files)."""

    def training_config(self, recipe: str, steps, epochs, seed):
        from core.train import TrainConfig

        common = dict(seed=int(seed), time_budget_s=self.time_budget_s)
        if recipe == "paper":
            return TrainConfig.paper(epochs=int(epochs), **common)
        return TrainConfig.fast(steps=int(steps), precision=self.precision, **common)

    @answers(5, status=1)
    def tune(self, session: Any, recipe: str, lambda_l1: float, lambda_kl: float, steps,
             epochs, seed, request: gr.Request = None, progress=gr.Progress()):
        lang = language(request)
        session = self._session(session, request)
        info = self.model_info()
        examples, labels = session.training_set()
        cfg = self.training_config(recipe, steps, epochs, seed)
        session.stop.clear()
        ticket = self.line.join()
        try:
            while not self.line.wait_turn(ticket, LINE_POLL_S):
                if session.stop.is_set():
                    key = "stopped_early_kept" if session.tuned is not None else "stopped_early_none"
                    yield session, text(lang, key), gr.skip(), gr.skip(), gr.skip()
                    return
                place = self.line.position(ticket)
                yield (session, text(lang, "line_wait", position=place,
                                     seconds=self.line.estimate_s(place)),
                       gr.skip(), gr.skip(), gr.skip())
            yield from self._tune_now(session, info, examples, labels, cfg,
                                      (lambda_l1, lambda_kl), lang, progress)
        except GeneratorExit:  # the page went away: the run stops, wherever it runs
            session.stop.set()
            raise
        finally:
            self.line.leave(ticket)

    def _tune_now(self, session, info, examples, labels, cfg, lambdas, lang, progress):
        """Encode what is missing of the views the recipe needs, then tune in one compute call
        (streamed: the curve grows as it runs), then the held-out estimate."""
        from core import train
        from demo import compute
        from demo.report import training_curve

        task = session.tuning_task(info, lambdas)
        started = time.perf_counter()
        features = None
        for event in session.feature_stream(info, examples, task.cfg.n_vision_prompts,
                                            cfg.precision, cfg.view_names, background=True):
            if event[0] == "progress":
                step = train.Progress("encode", event[1], event[2], time.perf_counter() - started)
                yield session, _progress_text(step, progress, lang), gr.skip(), gr.skip(), gr.skip()
            else:
                features = event[1]
        encode_s = time.perf_counter() - started
        if features is not None and len(cfg.view_names) == 1:
            features = features[0]
        history, tuned, points, total = None, None, [], 1
        if features is not None and not session.stop.is_set():
            stream = compute.tune(task, features, labels, cfg, session.stop.path)
            with closing(stream):
                for event in stream:
                    if event[0] == "done":
                        _, history, tuned = event
                        continue
                    step = event[1]
                    message = _progress_text(step, progress, lang)
                    total = step.total
                    points.append({"step": step.done, "loss": step.loss, "accuracy": step.accuracy})
                    if step.done % 5 and step.done != step.total:
                        continue  # redraw every few steps: the plot, not the model, is the cost
                    yield (session, message, training_curve(points, total, lang), gr.skip(),
                           gr.skip())
        if history is None or not history.steps:  # stopped before any step: keep what was
            key = "stopped_early_kept" if session.tuned is not None else "stopped_early_none"
            yield session, text(lang, key), gr.skip(), gr.skip(), gr.skip()
            return
        history.encode_s = encode_s
        history.total_s += encode_s
        session.keep_tuned(tuned, history)
        saved = self._prompts_file(session, tuned)
        summary = _summary(history, tuned, lang)
        if history.stopped == "converged":  # the curve's axis ends where tuning did
            total = len(history.steps)
        curve = training_curve(points, total, lang)
        yield session, summary, curve, gr.update(choices=tuned.classnames), saved
        if session.stop.is_set():
            return
        yield from self._estimate(session, info, task, cfg, summary, lang,
                                  (curve, gr.update(choices=tuned.classnames), saved))

    def _estimate(self, session, info, task, cfg, summary: str, lang: str, results: tuple):
        """The held-out estimate after tuning, streamed into the status line below the
        summary; Stop ends it. The last update repeats the tuning's `results` (curve, classes,
        prompts file): an API client receives the last update only."""
        from demo.evaluation import COMPARED, FOLDS

        n = len(session.examples)
        yield (session, summary + "\n\n" + text(lang, "estimating", folds=FOLDS, done=0,
                                                 total=1 + len(COMPARED)),
               gr.skip(), gr.skip(), gr.skip())
        held_out = None
        for event in session.estimate(info, task, cfg, self.precision):
            if event[0] == "done":
                held_out = event[1]
                continue
            yield (session, summary + "\n\n" + text(lang, "estimating", folds=FOLDS,
                                                     done=event[1], total=event[2]),
                   gr.skip(), gr.skip(), gr.skip())
        yield (session, summary + "\n\n" + estimate_text(lang, held_out, n), *results)

    def _prompts_file(self, session, dp) -> str:
        """The tuned prompts as the file the download button offers (made with the result it
        belongs to, so one click downloads these prompts)."""
        from demo.report import _slug

        info = {"recipe": session.history.config.recipe if session.history else None,
                "examples": len(session.examples), "modality": session.modality,
                "organ": session.organ}
        task = "-".join(filter(None, [session.modality, session.organ]))
        when = datetime.now().strftime("%Y-%m-%d_%H%M%S")
        path = (self.files.downloads(session.owner)
                / f"biomed-dpt-prompts_{_slug(task)}_{when}.safetensors")
        dp.save(path, info=info)
        return str(path)

    def stop(self, session: Any, request: gr.Request = None):
        if session is not None:
            session.stop.set()
        return text(language(request), "stopping")


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
    return text(lang, "summary", how=text(lang, how[history.stopped]), steps=len(history.steps),
                seconds=history.total_s, precision=history.precision,
                accuracy=final.get("accuracy", 0.0), loss=final.get("loss", float("nan")),
                classes=", ".join(dp.classnames)) + " " + text(lang, "train_accuracy_note")


def estimate_text(lang: str, held_out: dict | None, n: int) -> str:
    """The held-out estimate as a small table, with its warnings."""
    if held_out is None:
        return text(lang, "estimate_stopped")
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
