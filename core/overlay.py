"""Pictures of maps: the model's view of an image, colour maps, overlays and a legend.

Pure numpy / Pillow / matplotlib (no torch), separate from how maps are computed
(`core.explain`), so the interface can draw its legend without loading the model's stack.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

CJK_FAMILIES = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "Noto Sans CJK JP",
                "Source Han Sans KR")


def figure_fonts() -> list[str]:
    """Let figures draw Korean: matplotlib's default font first, then the first installed font
    with Hangul as its fallback (Debian's fonts-noto-cjk; on Spaces, packages.txt). Without
    one, nothing changes. Returns the font families in use."""
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans"] + [f for f in CJK_FAMILIES if f in installed][:1]
    matplotlib.rcParams["font.family"] = families
    return families


# --------------------------------------------------------------------------------------------
def model_view(image: Image.Image, size: int = 224) -> Image.Image:
    """The part of `image` the model sees (shorter side resized to `size`, centre crop), in RGB:
    the picture a map at the model's resolution lines up with."""
    image = image.convert("RGB")
    scale = size / min(image.size)
    resized = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                           Image.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def colorize(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours of a matplotlib colormap."""
    import matplotlib

    colours = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(heat), 0.0, 1.0))[..., :3]
    return (colours * 255).round().astype(np.uint8)


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet"
            ) -> Image.Image:
    """`image` with the map laid over it in colour (resized to the image), as RGB."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}.")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"A map is two-dimensional, not of shape {heat.shape}.")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    sized = Image.fromarray(np.clip(np.nan_to_num(heat), 0, 1) * 255).resize(image.size,
                                                                            Image.BILINEAR)
    colours = colorize(np.asarray(sized, dtype=np.float32) / 255, cmap).astype(np.float32)
    blended = (1 - alpha) * base + alpha * colours
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8), "RGB")


def colorbar(cmap: str = "jet", width: int = 256, height: int = 44,
             labels: tuple[str, str] = ("low relevance", "high relevance")) -> Image.Image:
    """A small legend: the colour ramp with its two ends named."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.45, 0.96, 0.5))
    ax.imshow(np.linspace(0, 1, 256)[None, :], aspect="auto", cmap=cmap)
    ax.set_axis_off()
    fig.text(0.02, 0.05, labels[0], fontsize=7, ha="left")
    fig.text(0.98, 0.05, labels[1], fontsize=7, ha="right")
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy(), "RGB")
