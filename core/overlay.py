"""Pictures of maps: the model's view of an image, colour maps, overlays and a legend; and the
font with Hangul that figures and pictures draw Korean with.

Pure numpy / Pillow / matplotlib (no torch), separate from how maps are computed
(`core.explain`), so the interface can draw its legend without loading the model's stack.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# Font families with Hangul, in order of preference: Debian's fonts-noto-cjk where installed,
# else NanumGothic, which pip installs with koreanize-matplotlib (OFL) on every machine.
CJK_FAMILIES = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "Noto Sans CJK JP",
                "Source Han Sans KR")
BUNDLED_PACKAGE = "koreanize_matplotlib"
BUNDLED_FONTS = ("NanumGothic.ttf", "NanumGothicBold.ttf")


def bundled_font_files() -> list[Path]:
    """NanumGothic (regular and bold) as installed by koreanize-matplotlib, found from where the
    package lies without importing it: its import sets matplotlib's font for the whole process
    (and fails on Pythons without distutils). Empty where the package is not installed."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "fonts"
    return [folder / name for name in BUNDLED_FONTS if (folder / name).is_file()]


def hangul_family() -> str | None:
    """The preferred font family with Hangul that matplotlib knows. The bundled NanumGothic is
    added to matplotlib's font list in memory first, so no font cache needs rebuilding. None
    only where koreanize-matplotlib is missing and no Hangul font is installed."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    known = {entry.fname for entry in manager.ttflist}
    for path in bundled_font_files():
        if str(path) not in known:
            manager.addfont(path)
    installed = {entry.name for entry in manager.ttflist}
    return next((family for family in CJK_FAMILIES if family in installed), None)


def hangul_font_file(bold: bool = False) -> tuple[str, int] | None:
    """(file, face index) of the Hangul family nearest the regular or bold weight: what Pillow
    needs to draw the same font (the index picks the Korean face of a font collection)."""
    from matplotlib import font_manager

    family = hangul_family()
    if family is None:
        return None
    wanted = 700 if bold else 400
    faces = [e for e in font_manager.fontManager.ttflist
             if e.name == family and e.style == "normal"]
    best = min(faces, key=lambda e: abs(_weight(e.weight) - wanted))
    return best.fname, best.index


def _weight(value: int | str) -> int:
    from matplotlib import font_manager

    return value if isinstance(value, int) else font_manager.weight_dict.get(value, 400)


def figure_fonts() -> list[str]:
    """Let figures draw Korean: matplotlib's default font first, then the Hangul family as its
    fallback for the glyphs DejaVu Sans lacks. Returns the font families in use."""
    import matplotlib

    family = hangul_family()
    if family is None:
        log.warning("No font with Hangul: Korean labels in figures will be empty boxes. "
                    "Install koreanize-matplotlib (requirements.txt).")
    families = ["DejaVu Sans"] + ([family] if family else [])
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
