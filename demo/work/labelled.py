"""A session's labelled scans: the examples each class is tuned on and the test set it is
evaluated on. Reading uploads into pictures is `demo.work.scans`; what a changed task does to these
sets is `demo.work.task`. Nothing here needs the model."""
from __future__ import annotations

import tempfile
from typing import Sequence

from core.imaging import labelled_zip
from core.prompt_config import class_key
from demo.text.messages import UserError
from demo.work.scans import Example, Problem, new_uid, read_scans


class LabelledScans:
    """The examples and the test set of a `Session` (its fields `examples`, `test_set`,
    `selected`, and its task's classes)."""

    def add_examples(self, files: Sequence[tuple[str, str]], label: str, window=None,
                     index: int | range | None = None, suffix: str = "", volume: int = 0
                     ) -> tuple[int, list[Problem]]:
        """Read each (path, name as uploaded) file; keep the good ones, report the others by
        their name. Only the decoded pictures are kept; the same picture twice is skipped.
        `index`: the slice of each file (None: its middle one), or a range of slices, each an
        example; `volume`: of a 4-D file. `suffix` marks the examples' names (e.g. as sample
        scans)."""
        self.require_task()
        if label not in self.classes:
            raise UserError("choose_class", classes=", ".join(self.classes))
        items = [(label, path, name) for path, name in files]
        return read_scans(
            self.examples, "examples", items, window, index,
            lambda lab, kept: f"{lab} #{sum(e.label == lab for e in kept) + 1}{suffix}", volume)

    def remove_selected(self) -> Example | None:
        if self.selected is None or not 0 <= self.selected < len(self.examples):
            return None
        removed = self.examples.pop(self.selected)
        self.selected = None
        return removed

    def counts(self) -> dict[str, int]:
        return {c: sum(e.label == c for e in self.examples) for c in self.classes}

    def training_set(self) -> tuple[list[Example], list[int]]:
        """The examples as they are now (a snapshot) and their class numbers."""
        self.require_task()
        missing = [c for c, n in self.counts().items() if n == 0]
        if missing:
            raise UserError("need_examples", classes=", ".join(missing))
        index = {c: i for i, c in enumerate(self.classes)}
        return list(self.examples), [index[e.label] for e in self.examples]


    def add_test_files(self, files: Sequence[tuple[str, str]], label: str, window=None,
                       index: int | None = None, volume: int = 0) -> tuple[int, list[Problem]]:
        """Labelled scans for evaluation, given with their class."""
        self.require_task()
        if label not in self.classes:
            raise UserError("choose_test_class", classes=", ".join(self.classes))
        return self._add_test([(label, p, name) for p, name in files], window, index, volume)

    def add_test_zip(self, path: str, window=None, index: int | None = None, volume: int = 0
                     ) -> tuple[int, list[Problem]]:
        """Labelled scans for evaluation from a zip holding one folder per class; each is
        reported by its path inside the zip."""
        self.require_task()
        by_key = {class_key(c): c for c in self.classes}
        with tempfile.TemporaryDirectory(prefix="biomed-dpt-eval-") as folder:
            items, problems = [], []
            for folder_name, member, inside in labelled_zip(path, folder, with_names=True):
                where = "`" + inside.replace("`", "'") + "`"
                label = by_key.get(class_key(folder_name))
                if label is None:
                    problems.append(Problem(where, UserError(
                        "zip_folder", folder=repr(folder_name or "(none)"))))
                else:
                    items.append((label, str(member), where))
            added, unreadable = self._add_test(items, window, index, volume)
        return added, problems + unreadable

    def _add_test(self, items, window, index, volume: int = 0) -> tuple[int, list[Problem]]:
        return read_scans(self.test_set, "test scans", items, window, index,
                          lambda label, kept: f"{label} (test)", volume)

    def overlap(self) -> int:
        """Test scans that are also training examples (the same picture)."""
        training = {e.digest for e in self.examples}
        return sum(e.digest in training for e in self.test_set)

    def test_counts(self) -> dict[str, int]:
        return {c: sum(e.label == c for e in self.test_set) for c in self.classes}

    def promote(self, example: Example) -> Example:
        """Move a test scan into the examples under its true class (it no longer counts as a
        test scan: a scan must not be both)."""
        self.test_set = [e for e in self.test_set if e is not example]
        n = sum(e.label == example.label for e in self.examples) + 1
        moved = Example(new_uid(), example.label, example.image, example.thumbnail,
                        f"{example.label} #{n}", example.digest)
        if any(e.digest == moved.digest for e in self.examples):
            raise UserError("duplicate_of", other=next(
                e.name for e in self.examples if e.digest == moved.digest))
        self.examples.append(moved)
        return moved

