"""Data sets in the public split layout, and the protocols' draws."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import DatasetError
from core.prompt_config import class_key


log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Data sets in the public layout
# --------------------------------------------------------------------------------------------

def find_datasets(root: Path, names: Sequence[str]) -> list[Path]:
    """Folders of the named data sets (case-insensitive), or of every data set under root."""
    if not root.is_dir():
        raise DatasetError(f"--root {root} is not a folder; point it at the folder that holds "
                           "one folder per data set.")
    folders = {p.name: p for p in root.iterdir() if p.is_dir()}
    if not names:
        found = [p for n, p in sorted(folders.items()) if any(p.glob("split*.json"))]
        if not found:
            raise DatasetError(f"No data set folders (with a split*.json file) under {root}.")
        return found
    out = []
    for name in names:
        match = folders.get(name) or next(
            (p for n, p in folders.items() if n.casefold() == name.casefold()), None)
        if match is None:
            raise DatasetError(f"There is no folder {name!r} under {root} (found: "
                               f"{', '.join(sorted(folders)) or 'nothing'}).")
        out.append(match)
    return out

@dataclass(frozen=True)
class Item:
    """One image of a split: its path relative to the image folder, its class number, and its
    size in bytes (part of its cache id, so a replaced file is encoded again)."""

    path: str
    label: int
    size: int

    @property
    def id(self) -> str:
        return f"{self.path}|{self.size}"


@dataclass
class Dataset:
    """A data set folder, checked: classes in label order, the train and test splits."""

    name: str
    folder: Path
    image_dir: Path
    split_file: Path
    classnames: list[str]
    train: list[Item]
    test: list[Item]
    descriptions: dict[str, list[str]] = field(default_factory=dict)

    def image(self, item: Item) -> Image.Image:
        path = self.image_dir / item.path
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{path} cannot be read as an image ({exc}); replace it with the "
                               "file from the data set's download.") from exc

    def descriptions_for(self, classnames: Sequence[str]) -> dict[str, list[str]]:
        return {n: self.descriptions[n] for n in classnames if n in self.descriptions}


def load_dataset(folder: str | Path) -> Dataset:
    """Read and check a data set folder; every problem raises DatasetError saying what to fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"There is no data set folder {folder}. --root must hold one folder per "
                           "data set (e.g. ROOT/BTMRI with split_BTMRI.json).")
    split_file = _find_split_file(folder)
    split = _read_json(split_file)
    if not isinstance(split, dict):
        raise DatasetError(f"{split_file} must hold an object with 'train' and 'test' lists.")
    for name in ("train", "test"):
        if not isinstance(split.get(name), list) or not split[name]:
            raise DatasetError(f"{split_file.name} has no '{name}' split (or it is empty); it needs "
                               "'train' and 'test' lists of [relative_path, label, class_name].")
    rows = {name: _parse_rows(split[name], name, split_file) for name in ("train", "test")}
    classnames = _class_table(rows, split_file)
    image_dir = _image_dir(folder, rows["train"][0][0])
    items = {name: _items(rows[name], image_dir, split_file) for name in ("train", "test")}
    descriptions = _read_descriptions(folder / "descriptions.json", classnames)
    return Dataset(folder.name, folder, image_dir, split_file, classnames, items["train"],
                   items["test"], descriptions)


def _find_split_file(folder: Path) -> Path:
    preferred = folder / f"split_{folder.name}.json"
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("split*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"{folder} has no split file. Put the data set's split JSON "
                           f"(split_{folder.name}.json: {{\"train\"|\"val\"|\"test\": "
                           "[[relative_path, label, class_name], ...]}) in it.")
    raise DatasetError(f"{folder} has several split files ({', '.join(f.name for f in found)}); "
                       f"keep one, or name the one to use split_{folder.name}.json.")


def _parse_rows(rows: list, split: str, split_file: Path) -> list[tuple[str, int, str]]:
    out = []
    for i, row in enumerate(rows):
        ok = (isinstance(row, (list, tuple)) and len(row) == 3 and isinstance(row[0], str)
              and isinstance(row[1], int) and not isinstance(row[1], bool)
              and isinstance(row[2], str) and row[1] >= 0 and row[0].strip() and row[2].strip())
        if not ok:
            raise DatasetError(f"Entry {i} of the '{split}' split of {split_file.name} is {row!r}; "
                               "each entry must be [relative_path, label (a whole number >= 0), "
                               "class_name].")
        out.append((row[0].replace("\\", "/"), row[1], " ".join(row[2].split())))
    return out


def _class_table(rows: Mapping[str, list[tuple[str, int, str]]], split_file: Path) -> list[str]:
    """Class names in label order, from train; test may use only those classes."""
    names: dict[int, str] = {}
    for _, label, name in rows["train"]:
        if names.setdefault(label, name) != name:
            raise DatasetError(f"In {split_file.name}, label {label} is given two class names "
                               f"({names[label]!r} and {name!r}); each label needs one name.")
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        raise DatasetError(f"The 'train' split of {split_file.name} has no images of label(s) "
                           f"{missing}; labels must run from 0 to the number of classes - 1, "
                           "each with training images.")
    classnames = [names[i] for i in range(len(names))]
    for path, label, name in rows["test"]:
        if names.get(label) != name:
            raise DatasetError(f"The 'test' split of {split_file.name} has an unknown class: "
                               f"{path} is labelled {label} {name!r}, but the training classes "
                               f"are {dict(enumerate(classnames))}. Fix the split file.")
    if len({class_key(n) for n in classnames}) != len(classnames):
        raise DatasetError(f"{split_file.name} gives the same class name to two labels.")
    return classnames


def _image_dir(folder: Path, first_path: str) -> Path:
    nested = folder / folder.name
    if nested.is_dir() and (nested / first_path).exists():
        return nested
    if (folder / first_path).exists() or not nested.is_dir():
        return folder
    return nested


def _items(rows: list[tuple[str, int, str]], image_dir: Path, split_file: Path) -> list[Item]:
    items, missing = [], []
    for path, label, _ in rows:
        try:
            items.append(Item(path, label, (image_dir / path).stat().st_size))
        except OSError:
            missing.append(path)
    if missing:
        raise DatasetError(f"{len(missing)} image(s) listed in {split_file.name} are missing "
                           f"under {image_dir}, e.g. {', '.join(missing[:3])}. Download the "
                           "complete data set, or fix the paths in the split file.")
    return items


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc}).") from exc


def _read_descriptions(path: Path, classnames: list[str]) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path.name} must map class names to lists of sentences.")
    by_key = {class_key(n): n for n in classnames}
    out = {}
    for name, texts in data.items():
        key = class_key(name)
        if key not in by_key:
            raise DatasetError(f"{path.name} describes an unknown class {name!r}; the classes are "
                               f"{', '.join(classnames)}.")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DatasetError(f"{path.name}: the descriptions of {name!r} must be a list of "
                               "sentences.")
        kept = [" ".join(t.split()) for t in texts if t.strip()]
        if kept:
            out[by_key[key]] = kept
    return out


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------
def few_shot_indices(labels: Sequence[int], shots: int, seed: int) -> list[int]:
    """Positions of `shots` images per class, drawn with a generator seeded by (seed, class).
    The draws are nested (the 4-shot set of a seed holds its 2-shot set), so a sweep over K
    shares cached features and K-to-K differences are not drawing noise. A class with fewer
    images gives all it has."""
    labels = np.asarray(labels)
    chosen: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            log.warning("Class %d has %d training images, fewer than %d shots: using all.",
                        c, len(members), shots)
        order = np.random.default_rng([seed, int(c)]).permutation(len(members))
        chosen += members[order[:shots]].tolist()
    return sorted(chosen)


def dassl_few_shot_indices(labels: Sequence[int], shots: int, seed: int) -> list[int]:
    """Positions of the images Dassl's `generate_fewshot_dataset` draws, as the released code
    runs it: Python's `random` seeded with the run's seed, then `random.sample(items, shots)`
    per class in the order the classes first appear in the split (all of a class's images when
    it has fewer). The draws of different K are not nested."""
    import random

    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    chosen: list[int] = []
    for members in by_class.values():
        chosen += rng.sample(members, shots) if len(members) >= shots else members
    return sorted(chosen)


def base_novel_split(classnames: Sequence[str]) -> tuple[list[str], list[str]]:
    """Classes in label order: base = the first ceil(C/2), novel = the rest."""
    m = math.ceil(len(classnames) / 2)
    return list(classnames[:m]), list(classnames[m:])


def capped(items: list[Item], max_items: int | None) -> list[Item]:
    """At most `max_items` items, a fixed (seed 0) random subset in split order."""
    if max_items is None or len(items) <= max_items:
        return items
    keep = np.sort(np.random.default_rng(0).permutation(len(items))[:max_items])
    return [items[i] for i in keep]


