"""A one-page PNG report of a prediction: the scan as the model saw it, the attention map, the
class probabilities (tuned and zero-shot), the task, and the disclaimer. No patient data."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.explain import colorize
from demo.session import Prediction

DISCLAIMER = ("For research and teaching only. Not a medical device: not for diagnosis or "
              "treatment.")


def write_report(path: Path, prediction: Prediction, task: str, explained: str,
                 heat: np.ndarray, alpha: float) -> Path:
    fig = Figure(figsize=(11, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    view = np.asarray(prediction.view)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.3]})
    axes[0].imshow(view)
    axes[0].set_title("Scan (model's view)", fontsize=10)
    axes[1].imshow(view)
    axes[1].imshow(colorize(heat), alpha=alpha)
    axes[1].set_title(f"Attention map: {explained}", fontsize=10)
    for ax in axes[:2]:
        ax.set_axis_off()
    _probability_bars(axes[2], prediction)
    fig.suptitle(task, fontsize=11)
    fig.text(0.01, 0.015, f"{DISCLAIMER}  Biomed-DPT Studio, {date.today().isoformat()}.",
             fontsize=8, color="#a00")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.12, wspace=0.35)
    fig.savefig(path, format="png")
    return path


def _probability_bars(ax, prediction: Prediction) -> None:
    names = prediction.classnames
    y = np.arange(len(names))
    tuned = [prediction.tuned.get(n, 0.0) for n in names]
    zero = [prediction.zero_shot.get(n, 0.0) for n in names]
    if prediction.tuned:
        ax.barh(y - 0.2, tuned, height=0.4, label="tuned prompts", color="#1f77b4")
    ax.barh(y + (0.2 if prediction.tuned else 0.0), zero, height=0.4, label="zero-shot",
            color="#bbbbbb")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Class probabilities", fontsize=10)
