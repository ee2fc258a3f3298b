"""A map of the examples: the scans' plain image features projected to two dimensions (PCA),
the examples coloured by class, the test and pool scans in grey, the scan on screen marked. It
answers "does this scan look like my examples at all?" at a glance; a click on a point finds
the scan it stands for.

PCA rather than UMAP: with a few dozen to a few hundred points, its two axes are the directions
the features vary most, it is deterministic, and it needs no package beyond torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from demo.text.messages import text
from demo.work.report import PLOT_COLOURS
from demo.work.scans import Example

GREY = "#9ca3af"
SHOWN = "#111827"
CLICK_PX = 24  # a click this close to a point picks it


@dataclass(frozen=True)
class MapPoint:
    """One scan on the map: where it is drawn (pixels of the map's picture), what it is
    ("example", "test", "pool" or "shown") and its class ("" when it has none)."""

    x: float
    y: float
    kind: str
    label: str
    name: str
    uid: int


def project(features: torch.Tensor) -> np.ndarray:
    """(N, 2) coordinates: the features centred and projected on their two main directions
    (fewer than three points: on the first one, or at the origin)."""
    feats = features.float()
    if len(feats) == 0:
        return np.zeros((0, 2))
    centred = feats - feats.mean(dim=0, keepdim=True)
    if len(feats) < 2 or float(centred.abs().max()) == 0:
        return np.zeros((len(feats), 2))
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    coords = (centred @ v[:2].T).numpy()
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 1))])
    # the sign of a principal direction is arbitrary: fix it so that the same scans give the
    # same picture (the largest coordinate positive)
    for k in range(2):
        if coords[np.abs(coords[:, k]).argmax(), k] < 0:
            coords[:, k] *= -1
    return coords


def draw_map(groups: Sequence[tuple[str, Sequence[Example]]], features: torch.Tensor,
             classes: Sequence[str], lang: str = "en", shown: torch.Tensor | None = None
             ) -> tuple[Image.Image, list[MapPoint]]:
    """The map's picture and its points. `groups`: ("example" | "test" | "pool", scans) in
    the order of `features`' rows (the plain features of every scan of every group);
    `shown`: the plain feature of the scan on screen (step 4), marked."""
    every = features if shown is None else torch.cat([features, shown.float()[None]])
    coords = project(every)
    fig = Figure(figsize=(8, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    kinds: list[tuple[str, Example | None]] = [(kind, e) for kind, scans in groups
                                               for e in scans]
    if shown is not None:
        kinds.append(("shown", None))
    colour_of = {c: PLOT_COLOURS[i % len(PLOT_COLOURS)] for i, c in enumerate(classes)}
    for c in classes:
        mine = [i for i, (kind, e) in enumerate(kinds) if kind == "example" and e.label == c]
        if mine:
            ax.scatter(coords[mine, 0], coords[mine, 1], s=46, color=colour_of[c],
                       edgecolors="white", linewidths=0.6, label=c, zorder=3)
    for kind, marker, key in (("test", "s", "map_test"), ("pool", "^", "map_pool")):
        mine = [i for i, (k, _) in enumerate(kinds) if k == kind]
        if mine:
            ax.scatter(coords[mine, 0], coords[mine, 1], s=34, color=GREY, marker=marker,
                       label=text(lang, key), zorder=2)
    if shown is not None:
        ax.scatter(coords[-1:, 0], coords[-1:, 1], s=260, marker="*", color="#facc15",
                   edgecolors=SHOWN, linewidths=1.4, label=text(lang, "map_shown"), zorder=4)
    ax.set_xlabel(text(lang, "map_axis", k=1))
    ax.set_ylabel(text(lang, "map_axis", k=2))
    ax.grid(alpha=0.3)
    if len(coords):
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize=8,
                  frameon=False)
    fig.canvas.draw()
    picture = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    height = picture.height
    points = []
    for (kind, e), xy in zip(kinds, ax.transData.transform(coords) if len(coords) else []):
        points.append(MapPoint(float(xy[0]), float(height - xy[1]), kind,
                               e.label if e is not None else "",
                               e.name if e is not None else "", e.uid if e is not None else 0))
    return picture, points


def nearest_point(points: Sequence[MapPoint], x: float, y: float,
                  within: float = CLICK_PX) -> MapPoint | None:
    """The point drawn nearest to a click at (x, y) on the map's picture, if one is close."""
    if not points:
        return None
    best = min(points, key=lambda p: (p.x - x) ** 2 + (p.y - y) ** 2)
    return best if (best.x - x) ** 2 + (best.y - y) ** 2 <= within ** 2 else None
