"""Modality, organ and ready-task presets, read from the JSON files in `assets/`.

A modality preset turns (modality, organ) into the paper-style clinical sentence
`a {MODALITY} photo of a {} in the {ORGAN}.` and default loss weights; a task preset is a complete
few-shot task shaped like one of the paper's 11 data sets (classes, template, context words,
lambdas, and a few descriptions per class for the teacher).

Files are read on first use, validated, and cached; nothing happens at import time. Every problem
in a file raises `PromptError` naming the file and what is wrong, so a broken preset is caught when
the app starts rather than halfway through a training run.

About n_ctx: PromptConfig derives the context length from the context words with the tokenizer of
the backbone in use, so the presets leave `n_ctx` unset. The paper's table value is kept as
`paper_n_ctx` for reference; it is the number of space-separated words of the context init (the
CoOp convention `len(ctx_init.split(" "))`), which differs from the word-piece count when a word
splits, e.g. "X-ray" is three word pieces.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from core.errors import PromptError
from core.prompt_config import PromptConfig, class_key

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
MODALITIES_FILE = "modalities.json"
TASKS_DIR = "tasks"
SAMPLES_DIR = "samples"
EXAMPLES_DIR = "examples"
ORGAN_SLOT = "{organ}"
MAX_ORGAN_CHARS = 60
MAX_DESCRIPTIONS_PER_CLASS = 100


@dataclass(frozen=True)
class Modality:
    """One imaging modality: its clinical sentence pattern, typical organs and default lambdas.

    `template` holds `{}` for the class name and, unless the paper's wording for this modality
    has no organ part, `{organ}` for the body region. `organ_lambdas` overrides the default
    lambdas for organs whose closest data set differs (e.g. knee X-rays versus chest X-rays).
    """

    id: str
    name: str
    name_ko: str  # the name the Korean page shows
    description: str
    organs: tuple[str, ...]
    phrase: str
    template: str
    template_without_organ: str
    lambda_l1: float
    lambda_kl: float
    lambdas_from: str
    organ_lambdas: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    colour: bool | None = None  # pictures in colour (True), greyscale (False) or either (None)
    caption: str | None = None  # how figure captions name it (the doctor's zero-shot check)
    aliases: tuple[str, ...] = ()  # other spellings, letters and digits only, lower case

    @property
    def has_organ_slot(self) -> bool:
        return ORGAN_SLOT in self.template

    def lambdas_for(self, organ: str | None) -> tuple[float, float]:
        """(lambda_l1, lambda_kl) for this organ: its override, else the modality default."""
        key = _clean_organ(organ).casefold() if organ else ""
        return self.organ_lambdas.get(key, (self.lambda_l1, self.lambda_kl))


@dataclass(frozen=True)
class TaskPreset:
    """A ready few-shot task shaped like one of the paper's public data sets. Its title and
    description are given in English and Korean; class names and their descriptions are English
    only (they are what the model reads)."""

    id: str
    title: str
    title_ko: str
    description: str
    description_ko: str
    modality: str
    organ: str | None
    template: str
    ctx_init: str | None
    n_ctx: int | None
    paper_n_ctx: int | None
    lambda_l1: float
    lambda_kl: float
    classes: tuple[str, ...]
    descriptions: dict[str, tuple[str, ...]]
    shaped_like: str
    # the paper's settings for the public data set this task is shaped like (core.reproduce)
    paper_base_to_novel: tuple[float, float] | None = None  # (lambda1, lambda2)
    shaped_like_aliases: tuple[str, ...] = ()

    def prompt_config(self, **changes: Any) -> PromptConfig:
        """The task's prompt settings; `changes` override fields (e.g. n_vision_prompts=0)."""
        cfg = PromptConfig(template=self.template, ctx_init=self.ctx_init, n_ctx=self.n_ctx,
                           lambda_l1=float(self.lambda_l1), lambda_kl=float(self.lambda_kl))
        return replace(cfg, **changes) if changes else cfg

    @property
    def credit(self) -> str:
        """One line for the UI saying what the task imitates (no images from it are shipped)."""
        return f"Shaped like the public {self.shaped_like} data set; no images from it are included."


@dataclass(frozen=True)
class SampleSet:
    """A ready task that brings its own licensed sample scans (assets/samples/*.json, pictures
    in assets/examples/, sources and licences in assets/examples/SOURCES.md), so a teacher
    can show the whole workflow without bringing files."""

    id: str
    title: str
    title_ko: str
    description: str
    modality: str
    organ: str | None
    template: str
    lambda_l1: float
    lambda_kl: float
    classes: tuple[str, ...]
    descriptions: dict[str, tuple[str, ...]]
    files: dict[str, tuple[Path, ...]]  # class -> sample pictures
    to_predict: tuple[Path, ...] = ()  # sample scans to predict, none of them an example


def load_samples(assets_dir: str | Path | None = None) -> list[SampleSet]:
    return list(_samples(_assets(assets_dir)))


def sample_set(sample_id: str, assets_dir: str | Path | None = None) -> SampleSet:
    for found in _samples(_assets(assets_dir)):
        if found.id == sample_id:
            return found
    raise PromptError(f"There is no sample set {sample_id!r}.")


@lru_cache(maxsize=8)
def _samples(assets_dir: Path) -> tuple[SampleSet, ...]:
    modality_ids = {m.id for m in _modalities(assets_dir)}
    out = []
    for path in sorted((assets_dir / SAMPLES_DIR).glob("*.json")):
        data, where = _read_json(path), _where(path)
        _require(data, where, ["id", "title", "title_ko", "description", "modality", "organ",
                               "template", "lambda_l1", "lambda_kl", "classes", "descriptions",
                               "files"])
        if data["modality"] not in modality_ids:
            raise PromptError(f"{where}: unknown modality {data['modality']!r}.")
        classes = _text_list(data["classes"], where, "classes")
        _checked_config(where, "template", data["template"])
        files = {}
        for name in classes:
            listed = _text_list(data["files"].get(name, []), where, f"files of {name}")
            paths = tuple(assets_dir / EXAMPLES_DIR / f for f in listed)
            missing = [p.name for p in paths if not p.is_file()]
            if not paths or missing:
                raise PromptError(f"{where}: class {name!r} needs sample files that exist in "
                                  f"{EXAMPLES_DIR}/ (missing: {missing or 'all'}).")
            files[name] = paths
        to_predict = tuple(assets_dir / EXAMPLES_DIR / f
                           for f in _text_list(data.get("predict", []), where, "predict"))
        examples = {p for paths in files.values() for p in paths}
        wrong = [p.name for p in to_predict if not p.is_file() or p in examples]
        if wrong:
            raise PromptError(f"{where}: scans to predict must exist in {EXAMPLES_DIR}/ and not "
                              f"be examples ({wrong}).")
        out.append(SampleSet(
            id=data["id"], title=data["title"], title_ko=data["title_ko"],
            description=data["description"], modality=data["modality"], organ=data["organ"],
            template=data["template"], lambda_l1=_weight(data["lambda_l1"], where, "lambda_l1"),
            lambda_kl=_weight(data["lambda_kl"], where, "lambda_kl"), classes=classes,
            descriptions=_descriptions(data["descriptions"], classes, where), files=files,
            to_predict=to_predict))
    return tuple(out)


# ---- modalities -------------------------------------------------------------------------------
def load_modalities(assets_dir: str | Path | None = None) -> list[Modality]:
    """Every modality preset, in the file's order."""
    return list(_modalities(_assets(assets_dir)))


def modality(modality_id: str, assets_dir: str | Path | None = None) -> Modality:
    """The modality with this id (e.g. "MRI"); the error lists the valid ids."""
    found = {m.id: m for m in _modalities(_assets(assets_dir))}
    if modality_id not in found:
        raise PromptError(f"Unknown modality {modality_id!r}; choose one of: "
                          f"{', '.join(found)}.")
    return found[modality_id]


def template_for(modality_id: str, organ: str | None = None,
                 assets_dir: str | Path | None = None) -> str:
    """The clinical sentence for a modality and an optional organ, with `{}` for the class name.

    Modalities whose paper wording has no organ part (fundus, OCT, histopathology) ignore it.
    """
    mod = modality(modality_id, assets_dir)
    organ_text = _clean_organ(organ) if organ else ""
    if not organ_text:
        return mod.template_without_organ
    if not mod.has_organ_slot:
        log.debug("Modality %s has no organ in its template; ignoring organ %r.", mod.id, organ_text)
        return mod.template
    return mod.template.replace(ORGAN_SLOT, organ_text)


def prompt_config_for(modality_id: str, organ: str | None = None,
                      assets_dir: str | Path | None = None, **changes: Any) -> PromptConfig:
    """Prompt settings for a new task on this modality and organ: the clinical sentence, its
    words before the class name as the context init, and the closest data set's lambdas."""
    template = template_for(modality_id, organ, assets_dir)
    lambda_l1, lambda_kl = modality(modality_id, assets_dir).lambdas_for(organ)
    cfg = PromptConfig(template=template, ctx_init=None, lambda_l1=float(lambda_l1),
                       lambda_kl=float(lambda_kl))
    cfg = replace(cfg, ctx_init=cfg.template_prefix)  # explicit, so saved settings read plainly
    return replace(cfg, **changes) if changes else cfg


# ---- tasks ------------------------------------------------------------------------------------
def load_tasks(assets_dir: str | Path | None = None) -> list[TaskPreset]:
    """Every task preset in `assets/tasks/`, sorted by file name."""
    return list(_tasks(_assets(assets_dir)))


def task(task_id: str, assets_dir: str | Path | None = None) -> TaskPreset:
    """The task with this id; the error lists the valid ids."""
    found = {t.id: t for t in _tasks(_assets(assets_dir))}
    if task_id not in found:
        raise PromptError(f"Unknown task {task_id!r}; choose one of: {', '.join(found)}.")
    return found[task_id]


# ---- reading and checking ---------------------------------------------------------------------
def _assets(assets_dir: str | Path | None) -> Path:
    return ASSETS_DIR if assets_dir is None else Path(assets_dir).resolve()


@lru_cache(maxsize=8)
def _modalities(assets_dir: Path) -> tuple[Modality, ...]:
    path = assets_dir / MODALITIES_FILE
    data = _read_json(path)
    entries = data.get("modalities") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PromptError(f"{_where(path)}: expected an object with a non-empty 'modalities' list.")
    out: dict[str, Modality] = {}
    for i, entry in enumerate(entries):
        mod = _modality_from(entry, f"{_where(path)}, modality #{i + 1}")
        if mod.id in out:
            raise PromptError(f"{_where(path)}: the modality id {mod.id!r} is given twice.")
        out[mod.id] = mod
    log.debug("Loaded %d modality presets from %s", len(out), path)
    return tuple(out.values())


def _modality_from(entry: Any, where: str) -> Modality:
    _require(entry, where, ["id", "name", "name_ko", "description", "organs", "phrase",
                            "template", "template_without_organ", "lambda_l1", "lambda_kl",
                            "lambdas_from"])
    where = f"{where} ({entry['id']!r})"
    for key in ("id", "name", "name_ko", "description", "template", "template_without_organ"):
        _text(entry[key], where, key)
    if not isinstance(entry["phrase"], str):
        raise PromptError(f"{where}: 'phrase' must be text (it may be empty).")
    organs = _text_list(entry["organs"], where, "organs")
    template, bare = entry["template"], entry["template_without_organ"]
    if template.count(ORGAN_SLOT) > 1 or ORGAN_SLOT in bare:
        raise PromptError(f"{where}: '{ORGAN_SLOT}' may appear once in 'template' and never in "
                          "'template_without_organ'.")
    for key, text in (("template", template.replace(ORGAN_SLOT, organs[0] if organs else "body")),
                      ("template_without_organ", bare)):
        _checked_config(where, key, text)
        if entry["phrase"] and entry["phrase"] not in text:
            raise PromptError(f"{where}: '{key}' does not contain the modality phrase "
                              f"{entry['phrase']!r}.")
    overrides = entry.get("organ_lambdas") or {}
    if not isinstance(overrides, dict):
        raise PromptError(f"{where}: 'organ_lambdas' must map organ names to lambdas.")
    organ_lambdas = {}
    for organ, values in overrides.items():
        _require(values, f"{where}, organ_lambdas[{organ!r}]", ["lambda_l1", "lambda_kl"])
        organ_lambdas[str(organ).casefold()] = (
            _weight(values["lambda_l1"], where, f"organ_lambdas[{organ!r}].lambda_l1"),
            _weight(values["lambda_kl"], where, f"organ_lambdas[{organ!r}].lambda_kl"))
    return Modality(id=entry["id"], name=entry["name"], name_ko=entry["name_ko"],
                    description=entry["description"],
                    organs=organs, phrase=entry["phrase"], template=template,
                    template_without_organ=bare,
                    lambda_l1=_weight(entry["lambda_l1"], where, "lambda_l1"),
                    lambda_kl=_weight(entry["lambda_kl"], where, "lambda_kl"),
                    lambdas_from=str(entry["lambdas_from"]), organ_lambdas=organ_lambdas,
                    colour=_optional_flag(entry.get("colour"), where, "colour"),
                    caption=entry.get("caption") or None,
                    aliases=tuple(str(a) for a in entry.get("aliases") or ()))


def _optional_flag(value: Any, where: str, key: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise PromptError(f"{where}: '{key}' must be true, false or null.")
    return value


def modality_ids(assets_dir: str | Path | None = None) -> tuple[str, ...]:
    """The app's modality names: the one vocabulary (imaging, the app and the doctor use it)."""
    return tuple(m.id for m in load_modalities(assets_dir))


def canonical_modality(name: str, assets_dir: str | Path | None = None) -> str | None:
    """The modality a free-text name means ('Chest X-ray' -> 'X-ray', 'PET' -> None), by its
    id or aliases, ignoring case, spaces and punctuation."""
    key = re.sub(r"[^a-z0-9]", "", str(name).casefold())
    for m in load_modalities(assets_dir):
        if key == re.sub(r"[^a-z0-9]", "", m.id.casefold()) or key in m.aliases:
            return m.id
    return None


@lru_cache(maxsize=8)
def _tasks(assets_dir: Path) -> tuple[TaskPreset, ...]:
    folder = assets_dir / TASKS_DIR
    if not folder.is_dir():
        raise PromptError(f"The task presets folder {_where(folder)} is missing.")
    modality_ids = {m.id for m in _modalities(assets_dir)}
    out: dict[str, TaskPreset] = {}
    for path in sorted(folder.glob("*.json")):
        preset = _task_from(_read_json(path), path, modality_ids)
        if preset.id in out:
            raise PromptError(f"{_where(path)}: the task id {preset.id!r} is already used.")
        out[preset.id] = preset
    log.debug("Loaded %d task presets from %s", len(out), folder)
    return tuple(out.values())


def _task_from(data: Any, path: Path, modality_ids: set[str]) -> TaskPreset:
    where = _where(path)
    _require(data, where, ["id", "title", "title_ko", "description", "description_ko",
                           "shaped_like", "modality", "organ", "template", "ctx_init",
                           "lambda_l1", "lambda_kl", "classes", "descriptions"])
    for key in ("id", "title", "title_ko", "description", "description_ko", "shaped_like",
                "modality", "template"):
        _text(data[key], where, key)
    if data["id"] != path.stem:
        raise PromptError(f"{where}: the id {data['id']!r} must match the file name {path.stem!r}.")
    if data["modality"] not in modality_ids:
        raise PromptError(f"{where}: unknown modality {data['modality']!r}; use one of "
                          f"{', '.join(sorted(modality_ids))}.")
    for key in ("organ", "ctx_init"):
        if data[key] is not None and not isinstance(data[key], str):
            raise PromptError(f"{where}: '{key}' must be text or null.")
    for key in ("n_ctx", "paper_n_ctx"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise PromptError(f"{where}: '{key}' must be a whole number or null, not {value!r}.")
    classes = _text_list(data["classes"], where, "classes")
    if len(classes) < 2:
        raise PromptError(f"{where}: a task needs at least two classes.")
    if len({class_key(c) for c in classes}) != len(classes):
        raise PromptError(f"{where}: a class name is given twice in 'classes'.")
    descriptions = _descriptions(data["descriptions"], classes, where)
    lambda_l1 = _weight(data["lambda_l1"], where, "lambda_l1")
    lambda_kl = _weight(data["lambda_kl"], where, "lambda_kl")
    _checked_config(where, "template", data["template"], ctx_init=data["ctx_init"],
                    n_ctx=data.get("n_ctx"))
    b2n = data.get("paper_base_to_novel")
    if b2n is not None:
        if not isinstance(b2n, list) or len(b2n) != 2:
            raise PromptError(f"{where}: 'paper_base_to_novel' must be [lambda1, lambda2].")
        b2n = (_weight(b2n[0], where, "paper_base_to_novel"),
               _weight(b2n[1], where, "paper_base_to_novel"))
    aliases = _text_list(data.get("shaped_like_aliases", []), where, "shaped_like_aliases") \
        if data.get("shaped_like_aliases") else ()
    return TaskPreset(id=data["id"], title=data["title"], title_ko=data["title_ko"],
                      description=data["description"], description_ko=data["description_ko"],
                      modality=data["modality"], organ=data["organ"], template=data["template"],
                      ctx_init=data["ctx_init"], n_ctx=data.get("n_ctx"),
                      paper_n_ctx=data.get("paper_n_ctx"), lambda_l1=lambda_l1,
                      lambda_kl=lambda_kl, classes=classes, descriptions=descriptions,
                      shaped_like=data["shaped_like"], paper_base_to_novel=b2n,
                      shaped_like_aliases=aliases)


def _descriptions(value: Any, classes: tuple[str, ...], where: str) -> dict[str, tuple[str, ...]]:
    """Every class must have its own list of sentences, and only the task's classes may."""
    if not isinstance(value, dict):
        raise PromptError(f"{where}: 'descriptions' must map each class name to a list of sentences.")
    unknown = [k for k in value if k not in classes]
    if unknown:
        raise PromptError(f"{where}: descriptions are given for {unknown}, which are not among "
                          f"the classes {list(classes)}.")
    missing = [c for c in classes if c not in value]
    if missing:
        raise PromptError(f"{where}: the classes {missing} have no descriptions.")
    out = {}
    for name in classes:
        sentences = _text_list(value[name], where, f"descriptions[{name!r}]")
        if not 1 <= len(sentences) <= MAX_DESCRIPTIONS_PER_CLASS:
            raise PromptError(f"{where}: class {name!r} needs 1 to {MAX_DESCRIPTIONS_PER_CLASS} "
                              f"description sentences, not {len(sentences)}.")
        out[name] = sentences
    return out


def _checked_config(where: str, key: str, template: str, **settings: Any) -> PromptConfig:
    """Let PromptConfig judge the template (one '{}', context words at its start), naming the file."""
    try:
        return PromptConfig(template=template, **settings)
    except PromptError as exc:
        raise PromptError(f"{where}: '{key}' is not usable. {exc}") from exc


def _clean_organ(organ: str | None) -> str:
    """The organ text as it goes into the sentence; braces or very long text would break it."""
    if not isinstance(organ, str):
        raise PromptError(f"The organ must be text, not {organ!r}.")
    text = " ".join(organ.split())
    if "{" in text or "}" in text:
        raise PromptError(f"The organ {organ!r} may not contain braces; write it as plain words.")
    if len(text) > MAX_ORGAN_CHARS:
        raise PromptError(f"The organ name is {len(text)} characters; keep it under "
                          f"{MAX_ORGAN_CHARS}, e.g. 'knee' or 'left kidney'.")
    return text


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptError(f"The preset file {_where(path)} cannot be read ({exc.strerror}).") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"{_where(path)} is not valid JSON (line {exc.lineno}, column "
                          f"{exc.colno}: {exc.msg}).") from exc


def _where(path: Path) -> str:
    """The file as a person finds it: relative to the assets folder's parent when possible."""
    try:
        return str(path.relative_to(path.parents[2] if path.parent.name == TASKS_DIR
                                    else path.parents[1]))
    except (ValueError, IndexError):
        return str(path)


def _require(entry: Any, where: str, keys: list[str]) -> None:
    if not isinstance(entry, dict):
        raise PromptError(f"{where}: expected a JSON object, found {type(entry).__name__}.")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise PromptError(f"{where}: missing field(s) {', '.join(missing)}.")


def _text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PromptError(f"{where}: '{key}' must be non-empty text.")
    return value


def _text_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PromptError(f"{where}: '{key}' must be a list of non-empty texts.")
    return tuple(" ".join(v.split()) for v in value)


def _weight(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise PromptError(f"{where}: '{key}' must be a number >= 0, not {value!r}.")
    return float(value)
