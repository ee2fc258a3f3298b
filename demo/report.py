"""Pictures the app hands out: the one-page PNG report of a prediction, and the live training
curve. Both are matplotlib `Figure`s without pyplot's global state, so they are safe in a web
server. No patient data: the report shows the scan as the model saw it, never a file's name or
DICOM fields."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.overlay import colorize, figure_fonts
from demo.messages import modality_name, text

figure_fonts()  # Korean labels on the curve and the report

if TYPE_CHECKING:
    from demo.session import Prediction

LOSS_COLOUR = "#1f5fbf"
ACCURACY_COLOUR = "#e07b00"


@dataclass(frozen=True)
class ReportContext:
    """What the report says about how the prediction was made."""

    model: str
    demo_model: bool
    modality: str
    organ: str | None
    classes: Sequence[str]
    template: str
    explained: str
    alpha: float
    cmap: str = "jet"
    lang: str = "en"


def report_name(ctx: ReportContext, when: datetime) -> str:
    """A file name that says what the file is: the app, the task, the class explained, when."""
    task = "-".join(filter(None, [ctx.modality, ctx.organ]))
    return (f"biomed-dpt-report_{_slug(task)}_{_slug(ctx.explained)}_"
            f"{when.strftime('%Y-%m-%d_%H%M%S')}.png")


def write_report(folder: Path, prediction: Prediction, heat: np.ndarray, ctx: ReportContext,
                 when: datetime | None = None) -> Path:
    """Write the report into `folder` and return its path. The PNG also carries its facts as
    text metadata (`biomed-dpt-report`, JSON), so that what it shows can be checked."""
    when = when or datetime.now().astimezone()
    lang = ctx.lang
    facts = report_facts(prediction, ctx, when)
    fig = Figure(figsize=(12, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    view = np.asarray(prediction.view)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.3]})
    axes[0].imshow(view)
    axes[0].set_title(text(lang, "report_scan"), fontsize=10)
    axes[1].imshow(view)
    axes[1].imshow(colorize(heat, ctx.cmap), alpha=ctx.alpha)
    axes[1].set_title(text(lang, "report_map", name=ctx.explained), fontsize=10)
    for ax in axes[:2]:
        ax.set_axis_off()
    _probability_bars(axes[2], prediction, lang)
    lines = [text(lang, "report_title") + " · " + text(lang, "report_made", when=facts["made"]),
             text(lang, "report_model", name=ctx.model)]
    if ctx.demo_model:
        lines.append(text(lang, "report_demo"))
    lines += [facts["task_line"], text(lang, "report_template", template=ctx.template),
              facts["view_line"]]
    for i, line in enumerate(lines):
        fig.text(0.01, 0.985 - 0.035 * i, line, fontsize=9.5, va="top",
                 color="#b00000" if line == text(lang, "report_demo") else "black",
                 weight="bold" if i == 0 else "normal")
    fig.text(0.01, 0.012, text(lang, "report_disclaimer"), fontsize=8.5, color="#a00")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.70, bottom=0.10, wspace=0.35)
    path = Path(folder) / report_name(ctx, when)
    public = {k: v for k, v in facts.items() if not k.endswith("_line")}
    fig.savefig(path, format="png", metadata={"biomed-dpt-report": json.dumps(public)})
    return path


def report_facts(prediction: Prediction, ctx: ReportContext, when: datetime) -> dict:
    lang = ctx.lang
    organ = f", {ctx.organ}" if ctx.organ else ""
    if prediction.frame is None and prediction.n_frames <= 1:
        where = text(lang, "report_single")
    else:
        index = prediction.frame if prediction.frame is not None else prediction.n_frames // 2
        where = text(lang, "report_slice", index=index, frames=prediction.n_frames)
    return {
        "model": ctx.model, "demo_model": ctx.demo_model, "modality": ctx.modality,
        "organ": ctx.organ, "classes": list(ctx.classes), "template": ctx.template,
        "window": prediction.window, "frame": prediction.frame,
        "frames": prediction.n_frames, "explained": ctx.explained,
        "tuned": {k: round(v, 6) for k, v in prediction.tuned.items()},
        "zero_shot": {k: round(v, 6) for k, v in prediction.zero_shot.items()},
        "made": when.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "scan": prediction.digest[:12],
        "task_line": text(lang, "report_task", modality=modality_name(lang, ctx.modality),
                          organ=organ, classes=", ".join(ctx.classes)),
        "view_line": text(lang, "report_view", window=prediction.window, slice=where),
    }


def _probability_bars(ax, prediction: Prediction, lang: str) -> None:
    names = prediction.classnames
    y = np.arange(len(names))
    tuned = [prediction.tuned.get(n, 0.0) for n in names]
    zero = [prediction.zero_shot.get(n, 0.0) for n in names]
    bars = []
    if prediction.tuned:
        bars.append(ax.barh(y - 0.2, tuned, height=0.4, label=text(lang, "report_tuned"),
                            color="#1f77b4"))
    bars.append(ax.barh(y + (0.2 if prediction.tuned else 0.0), zero, height=0.4,
                        label=text(lang, "report_zero"), color="#a8a8a8"))
    for group in bars:
        ax.bar_label(group, labels=[f"{v.get_width():.1%}" for v in group], fontsize=7.5,
                     padding=2)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.18)
    ax.set_xlabel(text(lang, "report_probability"), fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(text(lang, "report_probs"), fontsize=10)


def training_curve(points: Sequence[dict], total_steps: int, lang: str = "en") -> Figure:
    """Loss (left axis) and training accuracy (right axis, %) against the step, on numeric
    axes that span the whole run from the first step, so the line grows as tuning goes."""
    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    right = ax.twinx()
    ax.set_xlim(0, max(1, total_steps))
    ax.set_xlabel(text(lang, "curve_step"))
    ax.set_ylabel(text(lang, "curve_loss"), color=LOSS_COLOUR)
    right.set_ylabel(text(lang, "curve_accuracy") + " (%)", color=ACCURACY_COLOUR)
    right.set_ylim(0, 105)
    if points:
        steps = [p["step"] for p in points]
        losses = [p["loss"] for p in points]
        ax.plot(steps, losses, color=LOSS_COLOUR, linewidth=2, label=text(lang, "curve_loss"))
        right.plot(steps, [100 * p["accuracy"] for p in points], color=ACCURACY_COLOUR,
                   linewidth=2, label=text(lang, "curve_accuracy"))
        top = max(losses)
        ax.set_ylim(0, top * 1.1 if np.isfinite(top) and top > 0 else 1)
    else:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, text(lang, "curve_empty"), ha="center", va="center",
                transform=ax.transAxes, color="#777")
    ax.grid(alpha=0.3)
    return fig


def _slug(value: str) -> str:
    kept = "".join(ch if ch.isalnum() else "-" for ch in value.strip().lower())
    return "-".join(filter(None, kept.split("-")))[:40] or "scan"
