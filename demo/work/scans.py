"""Scans into pictures: reading uploaded files (DICOM, NIfTI, PNG, JPEG) into the labelled
pictures a session keeps (its examples and its test scans), windowed, on the chosen slice,
reduced and hashed; and what a picture's colour says about its modality.

Only decoded pictures are kept, never the files or their DICOM fields; a file is named, when a
problem is reported, as the user uploaded it, to that user only."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from core import presets
from core.errors import ScanError, StudioError
from core.features import image_digest
from core.imaging import WINDOW_PRESETS, Scan, frame_index, load_scan, load_series, to_rgb
from demo.text.messages import UserError

MAX_EXAMPLES = 400  # per set: the examples, and the test scans
THUMBNAIL = 160
KEPT_SIDE = 448  # a kept picture's longer side: twice the model's view, <= 0.6 MB in RGB
# Modalities whose pictures are in colour, and those in greyscale (assets/modalities.json;
# ultrasound may carry a little colour Doppler, far below the threshold of `looks_coloured`).
COLOUR_MODALITIES = frozenset(m.id for m in presets.load_modalities() if m.colour is True)
GREY_MODALITIES = frozenset(m.id for m in presets.load_modalities() if m.colour is False)
_ids = itertools.count(1)


def new_uid() -> int:
    """A number no other picture of this server has had (galleries tell pictures apart by it)."""
    return next(_ids)


@dataclass
class Example:
    """One labelled example: the picture the model sees and a small thumbnail."""

    uid: int
    label: str
    image: Image.Image  # RGB, windowed, the chosen slice, longer side at most KEPT_SIDE
    thumbnail: Image.Image
    name: str  # a display name; never the uploaded file's own name
    digest: str = ""  # of the picture's pixels: finds the same scan uploaded twice


@dataclass(frozen=True)
class Problem:
    """A file that was not added (or was added with a note), named as the user uploaded it.
    Shown to that user only; never logged or kept beyond the reply."""

    where: str
    error: StudioError
    added: bool = False


def read_scans(target: list[Example], kind: str, items, window, index,
               name: Callable[[str, list[Example]], str], volume: int = 0,
               also: Sequence[Example] = ()) -> tuple[int, list[Problem]]:
    """Read (class, path, where) items into `target` (the examples, or the test scans): only
    the decoded pictures are kept, the same picture twice is skipped, and a file that cannot
    be read is reported by `where` and loses nothing else. `index`: the frame or slice (None:
    the middle one), or a `range` of them, each its own picture (of a file with several;
    a single picture is itself); `volume`: of a 4-D file. `name(label, target)` names each
    new one; a picture in `also` (another set) counts as there already. Returns how many were
    added, and the problems."""
    added, problems = 0, []
    seen = {e.digest: e for e in [*also, *target]}
    for label, path, where in paired(items):
        try:
            if len(target) >= MAX_EXAMPLES:
                raise UserError("too_many_examples", limit=MAX_EXAMPLES, kind=kind)
            scan = (load_series(path, volume=volume) if isinstance(path, tuple)
                    else load_scan(path, volume=volume))
            numbers = slices_chosen(scan, index)
            if len(target) + len(numbers) > MAX_EXAMPLES:
                raise UserError("too_many_slices", n=len(numbers), limit=MAX_EXAMPLES, kind=kind,
                                room=MAX_EXAMPLES - len(target))
            repeated, note = 0, None
            for i in numbers:
                picture, note = scan_picture(scan, window, i)
                picture = kept_picture(picture)
                digest = picture_digest(picture)
                if digest in seen:
                    if len(numbers) == 1:
                        raise UserError("duplicate_of", other=seen[digest].name)
                    repeated += 1  # a range's blank or repeated slices: said once, below
                    continue
                example = Example(new_uid(), label, picture, thumbnail(picture),
                                  name(label, target), digest)
                target.append(example)
                seen[digest] = example
                added += 1
            if repeated:
                problems.append(Problem(where, UserError("slices_repeated", n=repeated,
                                                         total=len(numbers)), added=True))
            if note is not None:
                problems.append(Problem(where, note, added=True))
        except StudioError as exc:
            problems.append(Problem(where, exc))
    return added, problems


def slices_chosen(scan: Scan, index) -> list[int | None]:
    """The frames or slices to read: the one chosen (None: the middle one), or each of a
    `range` (both ends checked). A single picture is itself, whatever was chosen."""
    if not isinstance(index, range) or scan.n_frames <= 1:
        return [None if isinstance(index, range) else index]
    if len(index) == 0:
        raise UserError("empty_range", first=index.start, last=index.stop - 1)
    frame_index(scan, index.start)
    frame_index(scan, index[-1])
    return list(index)


def paired(items) -> list:
    """(class, path, where) items with each Analyze or NIfTI pair uploaded together (`x.hdr`
    and `x.img` of one class) made one item, whose path is the two files' (header first)."""
    items = list(items)

    def part(where: str) -> tuple[str, str]:
        name = where.strip("`").lower()  # `where` may be quoted for the page
        return name[:-4], name[-4:]

    images = {(label, part(where)[0]): path for label, path, where in items
              if part(where)[1] == ".img"}
    headers = {(label, part(where)[0]) for label, _, where in items if part(where)[1] == ".hdr"}
    out = []
    for label, path, where in items:
        stem, suffix = part(where)
        if suffix == ".hdr" and (label, stem) in images:
            out.append((label, (path, images[(label, stem)]), where))
        elif not (suffix == ".img" and (label, stem) in headers):
            out.append((label, path, where))
    return out


def scan_picture(scan: Scan, window=None, index: int | None = None
                 ) -> tuple[Image.Image, StudioError | None]:
    """The RGB picture of one frame or slice, windowed, and a note when the window asked for
    does not apply (a CT window on a file that is not in Hounsfield units: its own is used).
    A frame or slice number past the last one is an error, never silently moved."""
    note = None
    if not window_applies(scan, window):
        note = UserError("ct_window_on_other", window=str(window))
        window = None
    frame = frame_used(scan, index)
    return to_rgb(scan, window=window or None, index=frame), note


STRIP = 12  # the viewer's strip: at most this many slices of a volume, evenly spaced
STRIP_SIDE = 96


def strip_of(scan: Scan, window=None, most: int = STRIP) -> list[tuple[int, Image.Image]]:
    """Small pictures of evenly spaced frames or slices (the first and the last among them),
    in `window`, each with its number: a volume seen whole, to pick a slice by looking."""
    window = window if window_applies(scan, window) else None
    numbers = sorted({int(round(k)) for k in np.linspace(0, scan.n_frames - 1,
                                                          min(most, scan.n_frames))})
    out = []
    for i in numbers:
        small = to_rgb(scan, window=window or None, index=i)
        small.thumbnail((STRIP_SIDE, STRIP_SIDE))
        out.append((i, small))
    return out


def frame_used(scan: Scan, index: int | None) -> int | None:
    """The frame drawn: the one asked for in a multi-frame scan (checked), else None (the
    middle one; a single image has only one)."""
    if index is None or scan.n_frames <= 1:
        return None
    return frame_index(scan, int(index))


def window_applies(scan: Scan, window) -> bool:
    """A CT preset applies to Hounsfield units only."""
    return not (isinstance(window, str) and window in WINDOW_PRESETS and scan.units != "HU")


def window_name(window) -> str:
    if window is None:
        return "auto"
    if isinstance(window, tuple):
        return f"level {window[0]:g}, width {window[1]:g}"
    return str(window)


def picture_digest(picture: Image.Image) -> str:
    """The picture's content hash: finds duplicates, and keys its features in the cache."""
    return image_digest(picture)


def colour_mismatch(picture: Image.Image, modality: str | None) -> str | None:
    """'colour_in_grey' when a colour picture is given to a greyscale modality's task,
    'grey_in_colour' for the reverse, else None."""
    coloured = looks_coloured(picture)
    if coloured and modality in GREY_MODALITIES:
        return "colour_in_grey"
    if not coloured and modality in COLOUR_MODALITIES:
        return "grey_in_colour"
    return None


def looks_coloured(picture: Image.Image, chroma: int = 24, share: float = 0.2) -> bool:
    """Whether more than `share` of the pixels are clearly coloured (max - min channel above
    `chroma` of 255)."""
    small = np.asarray(picture.convert("RGB").resize((96, 96)), dtype=np.int16)
    spread = small.max(axis=2) - small.min(axis=2)
    return float((spread > chroma).mean()) > share


def kept_picture(picture: Image.Image) -> Image.Image:
    """The picture an example keeps: the full-resolution one reduced so that its longer side
    is at most KEPT_SIDE (twice the model's view: the evaluation view and the paper recipe's
    crops are made from it), so a 2000 x 2000 radiograph keeps 0.6 MB, not 12."""
    if max(picture.size) <= KEPT_SIDE:
        return picture
    small = picture.copy()
    small.thumbnail((KEPT_SIDE, KEPT_SIDE), Image.Resampling.LANCZOS)
    return small


def thumbnail(picture: Image.Image) -> Image.Image:
    small = picture.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    return small
