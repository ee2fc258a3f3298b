"""Pictures the app hands out: the one-page PNG report of a prediction (drawn with Pillow), and
the live training curve (a matplotlib `Figure` without pyplot's global state, safe in a web
server). No patient data: the report shows the scan as the model saw it, never a file's name or
DICOM fields."""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from core.overlay import figure_fonts, hangul_font_file, overlay
from demo.text.messages import modality_name, text, window_label
from demo.work.prediction import Prediction, scan_notes

figure_fonts()  # Korean labels on the curve and the report

LOSS_COLOUR = "#1f5fbf"
TUNED_COLOUR = "#1f77b4"
ZERO_COLOUR = "#a8a8a8"
WARNING_COLOUR = "#b00000"
REPORT_SIZE = (1200, 560)
NOTE_LINES = 2  # what fits between the header and the panels
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


def report_name(ctx: ReportContext, top: str, when: datetime) -> str:
    """A file name that says what the file is: the app, the task, the class predicted (`top`,
    whichever class the map explains), when."""
    task = "-".join(filter(None, [ctx.modality, ctx.organ]))
    return (f"biomed-dpt-report_{_slug(task)}_{_slug(top)}_"
            f"{when.strftime('%Y-%m-%d_%H%M%S')}.png")


def write_report(folder: Path, prediction: Prediction, heat: np.ndarray, ctx: ReportContext,
                 when: datetime | None = None, volume=None) -> Path:
    """Write the report into `folder` and return its path: the task and how the scan was drawn,
    the scan as the model saw it beside the map on screen (the same overlay), and the class
    probabilities; of a volume predicted slice by slice (`volume`), also its plot along the
    slices. The PNG also carries its facts as text metadata (`biomed-dpt-report`, JSON), so
    that what it shows can be checked. Drawn with Pillow: a report follows every prediction,
    and a figure library's layout engine would cost more than the prediction (the plot of a
    volume, which a person asked for, is the one figure)."""
    when = when or datetime.now().astimezone()
    lang = ctx.lang
    facts = report_facts(prediction, ctx, when)
    plot = _plot_picture(volume, prediction, lang) if volume is not None else None
    height = REPORT_SIZE[1] + (plot.height + 8 if plot is not None else 0)
    page = Image.new("RGB", (REPORT_SIZE[0], height), "white")
    draw = ImageDraw.Draw(page)
    lines = [text(lang, "report_title") + " · " + text(lang, "report_made", when=facts["made"]),
             text(lang, "report_model", name=ctx.model)]
    if ctx.demo_model:
        lines.append(text(lang, "report_demo"))
    lines += [facts["task_line"], text(lang, "report_template", template=ctx.template),
              facts["view_line"]]
    for i, line in enumerate(lines):
        colour = WARNING_COLOUR if line == text(lang, "report_demo") else "black"
        _write(draw, (12, 8 + 20 * i), _fit(line, 14, 1176, bold=i == 0), 14, colour,
               bold=i == 0)
    for j, line in enumerate(_wrap(facts["note"] or "", 13, 1176, NOTE_LINES)):
        _write(draw, (12, 8 + 20 * len(lines) + 17 * j), line, 13, WARNING_COLOUR)
    side, top = 300, 200
    view = prediction.view.convert("RGB")
    panels = [(text(lang, "report_scan"), view),
              (text(lang, "report_map", name=ctx.explained),
               overlay(view, heat, alpha=float(ctx.alpha), cmap=ctx.cmap))]
    for k, (title, picture) in enumerate(panels):
        left = 24 + k * (side + 40)
        _write(draw, (left + side // 2, top - 24), _fit(title, 14, side + 30), 14, anchor="ma")
        page.paste(picture.resize((side, side), Image.BICUBIC), (left, top))
    _probability_bars(draw, prediction, lang, box=(690, 170, 1180, 540))
    if plot is not None:
        page.paste(plot, (12, REPORT_SIZE[1] - 16))
    _write(draw, (12, height - 24), text(lang, "report_disclaimer"), 13, WARNING_COLOUR)
    path = Path(folder) / report_name(ctx, prediction.top, when)
    public = {k: v for k, v in facts.items() if not k.endswith("_line")}
    if volume is not None:  # what the plot shows, slice by slice
        public.update(best_slice=volume.best, slice_step=volume.step,
                      slice_classifier=volume.classifier,
                      slices=[{"slice": r["slice"], "probabilities": {
                          k: round(v, 6) for k, v in r["probabilities"].items()}}
                          for r in volume.rows()])
    info = PngImagePlugin.PngInfo()
    info.add_text("biomed-dpt-report", json.dumps(public))
    page.save(path, format="PNG", pnginfo=info, compress_level=1)  # fast; ~1 MB at most
    return path


@functools.lru_cache(maxsize=8)
def _font(size: int, bold: bool = False, cjk: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (matplotlib's own), or for text beyond Latin the Hangul font the figures
    use (`core.overlay.hangul_font_file`: NanumGothic from pip where no other is installed)."""
    from matplotlib import font_manager

    hangul = hangul_font_file(bold) if cjk else None
    if hangul is not None:
        path, index = hangul
        return ImageFont.truetype(path, size, index=index)
    prop = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return ImageFont.truetype(font_manager.findfont(prop, fallback_to_default=True), size)


def _needs_cjk(value: str) -> bool:
    return any(ord(ch) > 0x24F and not 0x2000 <= ord(ch) <= 0x22FF for ch in value)


def _write(draw: ImageDraw.ImageDraw, xy, value: str, size: int, fill="black",
           bold: bool = False, anchor: str = "la") -> None:
    draw.text(xy, value, fill=fill, font=_font(size, bold, _needs_cjk(value)), anchor=anchor)


def _fit(value: str, size: int, width: int, bold: bool = False) -> str:
    """`value`, cut with an ellipsis where it would be wider than `width` pixels."""
    font = _font(size, bold, _needs_cjk(value))
    if font.getlength(value) <= width:
        return value
    while value and font.getlength(value + "…") > width:
        value = value[:-1]
    return value + "…"


def _wrap(value: str, size: int, width: int, max_lines: int) -> list[str]:
    """`value` in lines no wider than `width` pixels, broken between words, at most
    `max_lines` (the last one cut with an ellipsis where the rest does not fit)."""
    font = _font(size, False, _needs_cjk(value))
    lines: list[str] = []
    for word in value.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines[max_lines - 1:] = [" ".join(lines[max_lines - 1:])]
    return [_fit(line, size, width) for line in lines]


def report_facts(prediction: Prediction, ctx: ReportContext, when: datetime) -> dict:
    lang = ctx.lang
    organ = f", {ctx.organ}" if ctx.organ else ""
    if prediction.frame is None and prediction.n_frames <= 1:
        where = text(lang, "report_single")
    else:
        index = prediction.frame if prediction.frame is not None else prediction.n_frames // 2
        where = text(lang, "report_slice", index=index, last=prediction.n_frames - 1)
    if prediction.volumes > 1:
        where += text(lang, "preview_volume", volume=prediction.volume,
                      last=prediction.volumes - 1)
    return {
        "model": ctx.model, "demo_model": ctx.demo_model, "modality": ctx.modality,
        "organ": ctx.organ, "classes": list(ctx.classes), "template": ctx.template,
        "window": prediction.window, "frame": prediction.frame,
        "frames": prediction.n_frames, "volume": prediction.volume,
        "volumes": prediction.volumes, "top": prediction.top, "explained": ctx.explained,
        "opacity": round(float(ctx.alpha), 3), "colour_map": ctx.cmap,
        "tuned": {k: round(v, 6) for k, v in prediction.tuned.items()},
        "zero_shot": {k: round(v, 6) for k, v in prediction.zero_shot.items()},
        "made": when.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "scan": prediction.digest[:12],
        "note": " ".join(scan_notes(prediction, ctx.modality, lang)) or None,
        "task_line": text(lang, "report_task", modality=modality_name(lang, ctx.modality),
                          organ=organ, classes=", ".join(ctx.classes)),
        "view_line": text(lang, "report_view", window=window_text(lang, prediction.window),
                          slice=where),
    }


def window_text(lang: str, window: str) -> str:
    """How the scan was drawn, in `lang`: the window's label ("auto", a CT preset), or the
    level and width set by hand (`demo.work.scans.window_name` writes them in English)."""
    manual = re.fullmatch(r"level (?P<level>\S+), width (?P<width>\S+)", window)
    if manual:
        return text(lang, "report_window_manual", **manual.groupdict())
    return window_label(lang, window)


def _probability_bars(draw: ImageDraw.ImageDraw, prediction: Prediction, lang: str,
                      box: tuple[int, int, int, int]) -> None:
    """Horizontal bars, per class the tuned prompts' probability above zero-shot's, each
    labelled with its percentage, on a 0-100 % axis."""
    left, top, right, bottom = box
    _write(draw, ((left + right) // 2, top), text(lang, "report_probs"), 14, anchor="ma")
    names = prediction.classnames
    groups = ([(text(lang, "report_tuned"), TUNED_COLOUR, prediction.tuned)]
              if prediction.tuned else []) + [(text(lang, "report_zero"), ZERO_COLOUR,
                                               prediction.zero_shot)]
    label_w, axis_top, axis_bottom = 170, top + 52, bottom - 50
    x0, x1 = left + label_w + 8, right - 56  # the axis: 0 % to 100 %
    draw.rectangle((x0, axis_top, x1 + 48, axis_bottom), outline="#444")
    row = (axis_bottom - axis_top) / max(1, len(names))
    bar = max(3.0, min(28.0, 0.8 * row / len(groups)))
    for i, name in enumerate(names):
        centre = axis_top + (i + 0.5) * row
        _write(draw, (x0 - 6, centre), _fit(name, 12, label_w), 12, anchor="rm")
        for g, (_, colour, probs) in enumerate(groups):
            y = centre + (g - len(groups) / 2) * bar
            p = float(probs.get(name, 0.0))
            draw.rectangle((x0, y, x0 + max(1.0, p * (x1 - x0)), y + bar - 1), fill=colour)
            if bar >= 9:
                _write(draw, (x0 + p * (x1 - x0) + 4, y + bar / 2), f"{p:.1%}", 11, anchor="lm")
    for tick in range(0, 11, 2):
        x = x0 + tick / 10 * (x1 - x0)
        draw.line((x, axis_bottom, x, axis_bottom + 4), fill="#444")
        _write(draw, (x, axis_bottom + 6), f"{tick / 10:.1f}", 12, anchor="ma")
    _write(draw, ((x0 + x1) // 2, axis_bottom + 24), text(lang, "report_probability"), 13,
           anchor="ma")
    x = x0
    for label, colour, _ in groups:  # the legend, in one line between the title and the axis
        draw.rectangle((x, top + 27, x + 18, top + 37), fill=colour)
        _write(draw, (x + 24, top + 32), label, 12, anchor="lm")
        x += 24 + int(_font(12, False, _needs_cjk(label)).getlength(label)) + 24


def training_curve(points: Sequence[dict], total_steps: int, lang: str = "en",
                   final: float | None = None) -> Figure:
    """Loss (left axis) and training accuracy of each step's batch (right axis, %) against the
    step, on numeric axes that span the whole run from the first step, so the line grows as
    tuning goes. `final`: the accuracy over every example after tuning (the summary's figure),
    marked at the last step."""
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
        if final is not None:
            right.plot([steps[-1]], [100 * final], marker="D", markersize=8, linestyle="none",
                       color=ACCURACY_COLOUR, markeredgecolor="black",
                       label=text(lang, "curve_final", accuracy=final))
            right.legend(loc="lower right", fontsize=8, frameon=False)
        top = max(losses)
        ax.set_ylim(0, top * 1.1 if np.isfinite(top) and top > 0 else 1)
    else:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, text(lang, "curve_empty"), ha="center", va="center",
                transform=ax.transAxes, color="#777")
    ax.grid(alpha=0.3)
    return fig


PLOT_COLOURS = ("#1f5fbf", "#d97706", "#059669", "#be185d", "#6d28d9", "#0e7490", "#65a30d",
                "#9f1239")  # one per class, told apart in colour and order


def _plot_picture(volume, prediction: Prediction, lang: str) -> Image.Image:
    """The volume's plot as the report shows it, across the page, the slice of the report
    marked."""
    shown = prediction.frame if prediction.frame is not None else volume.n_frames // 2
    fig = slice_plot(volume, shown, lang, size=(11.76, 3.2))
    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")


def labelling_plot(points: Sequence[dict], lang: str = "en") -> Figure:
    """Is labelling still paying? The held-out accuracy (%) of each estimated run against its
    number of examples, with its spread over the folds, for the tuned prompts and the best
    baseline of each run: a line still climbing says more labels help."""
    fig = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    order = sorted(range(len(points)), key=lambda i: (points[i]["examples"], i))
    xs = [points[i]["examples"] for i in order]
    for key, colour, label in (("tuned", TUNED_COLOUR, text(lang, "paying_tuned")),
                               ("baseline_accuracy", ACCURACY_COLOUR,
                                text(lang, "paying_baseline"))):
        std = "tuned_std" if key == "tuned" else "baseline_std"
        ys = [points[i][key] for i in order]
        kept = [(x, 100 * y, 100 * (points[i][std] or 0)) for x, y, i in zip(xs, ys, order)
                if y is not None]
        if kept:
            ax.errorbar([k[0] for k in kept], [k[1] for k in kept], yerr=[k[2] for k in kept],
                        color=colour, marker="o", linewidth=2, capsize=4, label=label)
    ax.set_xlabel(text(lang, "paying_examples"))
    ax.set_ylabel(text(lang, "paying_accuracy") + " (%)")
    ax.set_ylim(0, 105)
    low, high = min(xs), max(xs)
    ax.set_xlim(low - max(1, (high - low) * 0.08), high + max(1, (high - low) * 0.08))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8,
              frameon=False)
    ax.grid(alpha=0.3)
    return fig


def slice_plot(volume, shown: int | None, lang: str = "en",
               size: tuple[float, float] = (8, 3.6)) -> Figure:
    """A volume's probabilities slice by slice: the slice on the x axis, one line per class,
    the slice shown marked, and the one the model is most confident about named."""
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    label = text(lang, "frame_word" if volume.frame_label == "frame" else "slice_word")
    ax.set_xlabel(label)
    ax.set_ylabel(text(lang, "volume_probability") + " (%)")
    ax.set_xlim(-0.5, max(0.5, volume.n_frames - 0.5))
    ax.set_ylim(0, 102)
    classes = list(volume.probabilities[0]) if volume.probabilities else []
    for k, name in enumerate(classes):
        ax.plot(volume.slices, [100 * p[name] for p in volume.probabilities], linewidth=2,
                marker="o" if len(volume.slices) <= 24 else None, markersize=3,
                color=PLOT_COLOURS[k % len(PLOT_COLOURS)], label=name)
    if shown is not None:
        ax.axvline(shown, color="black", linestyle="--", linewidth=1,
                   label=text(lang, "volume_shown", label=label, index=shown))
    ax.axvline(volume.best, color="#b45309", linestyle=":", linewidth=1.5,
               label=text(lang, "volume_best", label=label, index=volume.best))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8,
              frameon=False)  # below the plot: the plot keeps its width on a phone
    ax.grid(alpha=0.3)
    return fig


def _slug(value: str) -> str:
    kept = "".join(ch if ch.isalnum() else "-" for ch in value.strip().lower())
    return "-".join(filter(None, kept.split("-")))[:40] or "scan"
