"""The teacher's sentences of the published runs, read from a file the user gives.

The authors' released code builds each class's teacher from the first 50 GPT-4 sentences of the
class in `BIOMEDDPT_TEMPLATES` (BiomedCoOp's runs: `BIOMEDCOOP_TEMPLATES`), two dictionaries of
class name -> sentences in their `trainers/prompt_templates.py`. No sentences ship with this
project: the user points at their clone of the authors' repository. The file is parsed as Python
source and only the dictionary's literal is evaluated (`ast.literal_eval`): it is never imported
or run. A JSON file `{class name: [sentence, ...]}` is read as it is.

A class the file does not name falls back to its template sentence, which changes what the L1
and KL terms pull towards; each fallback is logged as a warning, class by class, and recorded in
the run file.
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from core.errors import DatasetError

log = logging.getLogger(__name__)

DPT_NAME = "BIOMEDDPT_TEMPLATES"
COOP_NAME = "BIOMEDCOOP_TEMPLATES"
RELEASED_SENTENCES = 50  # the released code's N_PROMPTS
MAX_TEACHER_BYTES = 64 * 1024 * 1024


def read_teacher_file(path: str | Path, name: str = DPT_NAME) -> dict[str, list[str]]:
    """{class name: sentences} from the authors' `prompt_templates.py` (the dictionary `name`,
    evaluated as a literal, never run) or from a JSON file of the same shape."""
    path = Path(path).expanduser()
    try:
        if path.stat().st_size > MAX_TEACHER_BYTES:
            raise DatasetError(f"{path} is larger than a file of sentences can be.")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"The teacher file {path} cannot be read ({exc}).") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DatasetError(f"{path.name} is not valid JSON ({exc}).") from exc
    else:
        data = _python_literal(text, name, path)
    return _checked(data, path, name)


def _python_literal(text: str, name: str, path: Path):
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise DatasetError(f"{path.name} is not Python source that can be parsed (line "
                           f"{exc.lineno}: {exc.msg}); give the authors' prompt_templates.py "
                           "or a JSON file.") from exc
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value:
            try:
                return ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
                raise DatasetError(f"{name} in {path.name} is not a plain literal of strings "
                                   f"({exc}); it is read, never run.") from exc
    raise DatasetError(f"{path.name} has no {name} = {{...}}; give the authors' "
                       "trainers/prompt_templates.py or a JSON file {class: [sentences]}.")


def _checked(data, path: Path, name: str) -> dict[str, list[str]]:
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{name} in {path.name} must be a dictionary of class name -> "
                           "sentences.")
    out = {}
    for key, sentences in data.items():
        if not isinstance(key, str) or not isinstance(sentences, (list, tuple)) or not all(
                isinstance(s, str) for s in sentences):
            raise DatasetError(f"{name} in {path.name}: the entry {key!r} must map a class name "
                               "to a list of sentences.")
        out[key] = [s for s in sentences if s.strip()]
    return out


def _key(name: str) -> str:
    return " ".join(re.sub(r"[_\s]+", " ", name).split()).casefold()


@dataclass
class TeacherChoice:
    """The sentences of one task's classes, and the classes that fell back."""

    descriptions: dict[str, list[str]]
    fallback: list[str] = field(default_factory=list)
    source: str = ""

    def record(self) -> dict:
        """What the run file keeps: where the sentences came from, their digest, the
        fallbacks."""
        digest = hashlib.sha256(json.dumps(self.descriptions, sort_keys=True).encode())
        return {"source": self.source, "sha256": digest.hexdigest()[:16],
                "sentences": {c: len(s) for c, s in self.descriptions.items()},
                "fallback": list(self.fallback)}


def choose_sentences(sentences: Mapping[str, Sequence[str]], classnames: Sequence[str],
                     limit: int | None, source: str, dataset: str) -> TeacherChoice:
    """The first `limit` sentences (all when None) of each class, found by its name (exactly,
    else ignoring case, spacing and underscores); a class not found falls back to its template
    sentence, with a warning that names it."""
    exact = dict(sentences)
    loose = {_key(k): k for k in sentences}
    chosen, fallback = {}, []
    for name in classnames:
        key = name if name in exact else loose.get(_key(name))
        found = list(exact[key])[:limit] if key is not None else []
        if not found:
            fallback.append(name)
            log.warning("TEACHER FALLBACK: %s: %s has no sentences for the class %r; its "
                        "teacher is its template sentence (the published runs averaged %d GPT-4 "
                        "sentences per class).", dataset, source, name, RELEASED_SENTENCES)
            continue
        if limit is not None and len(found) < limit:
            log.warning("%s: %s has %d sentences for %r, fewer than the %d the released code "
                        "reads; all are used.", dataset, source, len(found), name, limit)
        chosen[name] = found
    return TeacherChoice(chosen, fallback, source)
