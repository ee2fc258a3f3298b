"""A session's work as one file, and back: `write_workspace` saves the task, every example and
test scan (as the picture the model sees, PNG), their image features (safetensors, keyed by
picture digest and model fingerprint), the tuned prompts with the other set to go back to
(today's prompt files), their training history and held-out estimate, and the last
evaluation; `read_workspace` makes a new session of it.

The file is a zip (`<task>_<date>.biomed-dpt.zip`) with a versioned JSON manifest; nothing in
it is pickled, and no DICOM field or uploaded file name enters it (examples keep the names the
app gave them). A workspace file is an upload like any other: read by name, each member
bounded before it is read, every picture checked against its digest, and a bad file changes
nothing.

Under another model (its fingerprint differs) the pictures, task, test set and training
history come back; the features are computed again (the cache simply has none for this
model), and the tuned prompts and the evaluation, which belong to the other model, are left
out with the reason."""
from __future__ import annotations

import io
import json
import logging
import math
import re
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.errors import CheckpointError, StudioError
from core.evaluate import result_from_probabilities
from core.prompts import MAX_CHECKPOINT_BYTES
from core.train import History
from demo.runtime.host import ModelInfo
from demo.text.messages import EN, UserError
from demo.work.evaluation import COMPARED
from demo.work.scans import KEPT_SIDE, MAX_EXAMPLES, Example, new_uid, picture_digest, thumbnail
from demo.work.session import Session
from demo.work.tuning import PREVIOUS, REPLACED, STOPPED, Tuning

FORMAT = "biomed-dpt-workspace"
VERSION = 1
SUFFIX = ".biomed-dpt.zip"
MANIFEST = "manifest.json"
FEATURES = "features.safetensors"
PROMPT_FILES = {"current": "prompts/current.safetensors", "other": "prompts/other.safetensors"}
PICTURE = re.compile(r"pictures/([0-9a-f]{64})\.png")
MAX_FILE_BYTES = 768 * 2**20  # two full sets of 400 kept pictures, with room to spare
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_PICTURE_BYTES = 2 * 2**20  # a kept picture is at most 448 x 448 RGB (0.6 MB raw)
MAX_FEATURES_BYTES = 256 * 2**20
MAX_NAME = 200
MAX_TO_PREDICT = 40  # scans a workspace offers to predict
PNG_LEVEL = 1
PNG_THREADS = 2
log = logging.getLogger(__name__)


@dataclass
class Opened:
    """A workspace made into a session, and what could not come back, as messages (each a
    `UserError`, or a core error quoting the reason)."""

    session: Session
    notes: list[StudioError] = field(default_factory=list)


# ---- saving -----------------------------------------------------------------------------------
def workspace_name(session: Session, when: datetime | None = None) -> str:
    """`<task>_<date>.biomed-dpt.zip`: the task is its modality and organ, or its first
    classes where the modality says little ("other")."""
    from demo.work.report import _slug

    if session.modality in (None, "other"):
        task = "-".join(session.classes[:2])[:40]
    else:
        task = "-".join(filter(None, [session.modality, session.organ]))
    return f"{_slug(task) or 'workspace'}_{(when or datetime.now()):%Y-%m-%d_%H%M%S}{SUFFIX}"


def write_workspace(session: Session, info: ModelInfo, folder: Path, app_version: str = "",
                    name: str | None = None) -> Path:
    """The session's work as one file in `folder` (written whole, then moved into place),
    named `name` (with the suffix) or for its task and the time."""
    if not session.classes and not session.examples and not session.test_set:
        raise UserError("workspace_empty")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name + SUFFIX if name else workspace_name(session))
    to_predict = offered_scans(session)
    pictures: dict[str, Image.Image] = {}
    for e in [*session.examples, *session.test_set, *session.pool, *to_predict]:
        pictures.setdefault(e.digest, e.image)
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "app_version": app_version,
        "saved": datetime.now().isoformat(timespec="seconds"),
        "model": {"name": info.name, "fingerprint": info.fingerprint},
        "task": _task_dict(session),
        "examples": [_scan_dict(e) for e in session.examples],
        "test_set": [_scan_dict(e) for e in session.test_set],
        "to_predict": [{"name": e.name, "digest": e.digest} for e in to_predict],
        "pool": [_scan_dict(e) for e in session.pool],
        "labelling": _jsonable(session.labelling),
        "prompts": {}, "evaluation": _evaluation_dict(session),
    }
    with tempfile.TemporaryDirectory(prefix="workspace-") as scratch, \
            tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
            for which, tuning in (("current", session.prompts.current),
                                  ("other", session.prompts.other)):
                if tuning is None:
                    continue
                prompt_file = Path(scratch) / f"{which}.safetensors"
                tuning.prompts.save(prompt_file, info=dict(tuning.prompts.info))
                zf.write(prompt_file, PROMPT_FILES[which])
                manifest["prompts"][which] = {
                    "history": tuning.history.to_dict() if tuning.history is not None else None,
                    "held_out": _jsonable(tuning.held_out)}
            if session.prompts.other is not None:
                manifest["prompts"]["other_is"] = session.prompts.other_is
            features = _features_file(session, set(pictures), Path(scratch) / FEATURES)
            if features is not None:
                zf.write(features, FEATURES)
                manifest["features"] = FEATURES
            with ThreadPoolExecutor(max_workers=PNG_THREADS) as pool:  # encoding frees the GIL
                for digest, data in zip(pictures, pool.map(_png, pictures.values())):
                    zf.writestr(zipfile.ZipInfo(f"pictures/{digest}.png"), data,
                                compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))
    Path(part.name).replace(path)
    return path


def _png(picture: Image.Image) -> bytes:
    """A kept picture as PNG, without loss: a grey one (its three channels equal) as one
    channel, a third of the bytes to compress (it is made RGB again when read). Fast
    compression: it costs a tenth more bytes than the default and a third of the time."""
    pixels = np.asarray(picture)
    if pixels.ndim == 3 and (pixels[..., 0] == pixels[..., 1]).all() \
            and (pixels[..., 0] == pixels[..., 2]).all():
        picture = Image.fromarray(np.ascontiguousarray(pixels[..., 0]), "L")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def offered_scans(session: Session) -> list[Example]:
    """The scans a workspace offers to predict: those the session was offered (a lesson's),
    then the last scan it predicted (as the picture the model saw), each once."""
    out = list(session.to_predict[:MAX_TO_PREDICT])
    last = session.prediction
    if last is not None and last.digest and all(e.digest != last.digest for e in out):
        out.append(Example(new_uid(), "", last.picture, thumbnail(last.picture),
                           EN["last_predicted_name"], last.digest))
    return out[:MAX_TO_PREDICT]


def _task_dict(session: Session) -> dict:
    task = session.task
    return {"modality": task.modality, "organ": task.organ, "template": task.template,
            "classes": list(task.classes),
            "descriptions": {c: list(task.descriptions.get(c, [])) for c in task.classes},
            "lambda_l1": task.lambda_l1, "lambda_kl": task.lambda_kl}


def _scan_dict(e: Example) -> dict:
    return {"name": e.name, "label": e.label, "digest": e.digest}


def _evaluation_dict(session: Session) -> dict | None:
    if session.evaluated is None:
        return None
    scans, results = session.evaluated
    order = {id(e): i for i, e in enumerate(session.test_set)}
    if any(id(e) not in order for e in scans):  # the test set changed since: not kept
        return None
    return {"scans": [order[id(e)] for e in scans],
            "results": {name: {"classnames": list(r.classnames), "labels": list(r.labels),
                               "probabilities": r.probabilities.tolist()}
                        for name, r in results.items()}}


def _features_file(session: Session, digests: set[str], path: Path) -> Path | None:
    from safetensors.torch import save_file

    kept = {key: value for key, value in session.features.items()
            if key.rsplit("|", 1)[-1] in digests}
    if not kept:
        return None
    keys = sorted(kept)
    save_file({str(i): kept[k].contiguous() for i, k in enumerate(keys)}, str(path),
              metadata={"format": FORMAT, "keys": json.dumps(keys)})
    return path


def _jsonable(value):
    """A held-out estimate as JSON (tuples as lists, numbers as Python numbers)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist")
                                 else list(v)))


def lesson_title(path: str | Path) -> str:
    """A workspace file offered as a lesson, by name: its file name without the suffix."""
    name = Path(path).name
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else Path(name).stem


def check_lesson(path: str | Path) -> None:
    """A lesson file is a workspace this app can open (its manifest read; its pictures are
    checked when a student opens it)."""
    path = Path(path)
    with _zip_of(path, path.name) as zf:
        _Reader(zf, path.name).manifest()


# ---- opening ----------------------------------------------------------------------------------
def read_workspace(path: str | Path, info: ModelInfo, owner: str = "", shown_name: str = ""
                   ) -> Opened:
    """A new session holding the work saved in `path`; `shown_name` names the file in
    messages (as the user uploaded it). A file that is not a workspace, is damaged, too large
    or of a newer version is refused with a message, and nothing is made."""
    path = Path(path)
    name = shown_name or path.name
    with _zip_of(path, name) as zf, tempfile.TemporaryDirectory(prefix="workspace-") as scratch:
        reader = _Reader(zf, name)
        manifest = reader.manifest()
        return _session_of(manifest, reader, info, owner, Path(scratch))


def _zip_of(path: Path, name: str) -> zipfile.ZipFile:
    """The workspace file opened as a zip, once it is known to be one of a size the app
    opens; else the message that says what it is (`name`: the file as the user calls it)."""
    try:
        size = path.stat().st_size
    except OSError:
        raise UserError("workspace_damaged", name=name, detail="it cannot be read") from None
    if size > MAX_FILE_BYTES:
        raise UserError("workspace_too_big", name=name, mb=math.ceil(size / 2**20),
                        limit=MAX_FILE_BYTES // 2**20)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        with open(path, "rb") as f:  # a zip cut short still starts as one
            cut = f.read(4) == b"PK\x03\x04"
        raise UserError("workspace_damaged" if cut else "workspace_not_zip", name=name,
                        detail="it is cut short") from None


class _Reader:
    """A workspace zip read member by member, by name, each bounded."""

    def __init__(self, zf: zipfile.ZipFile, name: str) -> None:
        self.zf, self.name = zf, name
        allowed = {MANIFEST, FEATURES, *PROMPT_FILES.values()}
        names = zf.namelist()
        if MANIFEST not in names:  # a zip, but of something else
            raise UserError("workspace_not_zip", name=name)
        if len(names) > 2 * MAX_EXAMPLES + MAX_TO_PREDICT + len(allowed) \
                or len(set(names)) != len(names):
            self.damaged("it holds more files than a workspace does")
        strange = [n for n in names if n not in allowed and not PICTURE.fullmatch(n)]
        if strange:
            self.damaged("it holds files a workspace does not")
        if sum(i.file_size for i in zf.infolist()) > MAX_FILE_BYTES * 2:
            raise UserError("workspace_too_big", name=name,
                            mb=math.ceil(sum(i.file_size for i in zf.infolist()) / 2**20),
                            limit=MAX_FILE_BYTES // 2**20)

    def damaged(self, detail: str):
        """Refuse the file; what is wrong with it goes to the log (it holds no patient data),
        the user is told it cannot be opened."""
        log.info("a workspace file was refused: %s", detail)
        raise UserError("workspace_damaged", name=self.name, detail=detail)

    def has(self, member: str) -> bool:
        return member in self.zf.NameToInfo

    def read(self, member: str, limit: int) -> bytes:
        if not self.has(member):
            self.damaged(f"{member} is missing")
        if self.zf.getinfo(member).file_size > limit:
            self.damaged(f"{member} is larger than it can be")
        try:
            with self.zf.open(member) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError):
            self.damaged(f"{member} cannot be read")
        if len(data) > limit:
            self.damaged(f"{member} is larger than it can be")
        return data

    def manifest(self) -> dict:
        try:
            manifest = json.loads(self.read(MANIFEST, MAX_MANIFEST_BYTES))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.damaged("its manifest is not JSON")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError("workspace_not_zip", name=self.name)
        version = manifest.get("version")
        if not isinstance(version, int) or version > VERSION or version < 1:
            raise UserError("workspace_version", name=self.name, found=repr(version),
                            version=VERSION)
        return manifest

    def picture(self, digest: str) -> Image.Image:
        data = self.read(f"pictures/{digest}.png", MAX_PICTURE_BYTES)
        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                if max(image.size) > KEPT_SIDE or image.mode not in ("RGB", "L"):
                    self.damaged(f"a picture is not one the app keeps ({digest[:12]})")
                image.load()
                picture = image.convert("RGB")  # a grey picture is kept as one channel
        except (OSError, ValueError, Image.DecompressionBombError):
            self.damaged(f"a picture cannot be read ({digest[:12]})")
        if picture_digest(picture) != digest:
            self.damaged(f"a picture does not match its digest ({digest[:12]})")
        return picture


def _session_of(manifest: dict, reader: _Reader, info: ModelInfo, owner: str,
                scratch: Path) -> Opened:
    session = Session(owner=owner)
    opened = Opened(session)
    task = _field(manifest, "task", dict, reader)
    classes = _field(task, "classes", list, reader)
    descriptions = task.get("descriptions") or {}
    if not isinstance(descriptions, dict):
        reader.damaged("its task is not one the app wrote")
    rows = [(str(c), "\n".join(map(str, descriptions.get(c, []) or []))) for c in classes]
    lambdas = (task.get("lambda_l1"), task.get("lambda_kl"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lambdas):
        reader.damaged("its task is not one the app wrote")
    session.set_task(info, str(task.get("template") or ""), rows, task.get("modality"),
                     task.get("organ"), lambdas)
    if list(session.classes) != [str(c) for c in classes]:
        reader.damaged("its classes are not one the app wrote")
    session.examples = _scans(manifest, "examples", reader, session.classes)
    session.test_set = _scans(manifest, "test_set", reader, session.classes)
    session.to_predict = _offered(manifest, reader)
    if "pool" in manifest:  # files that predate the pool have none
        session.pool = _scans(manifest, "pool", reader, [""])
    session.labelling = _labelling(manifest.get("labelling") or [], reader)
    same_model = (manifest.get("model") or {}).get("fingerprint") == info.fingerprint
    other_model = str((manifest.get("model") or {}).get("name") or "?")
    if reader.has(FEATURES):
        found = _read_features(reader, scratch, info, {e.digest for e in [
            *session.examples, *session.test_set, *session.pool]})
        for key, value in found.items():
            session.features.put(key, value)
        if not found and not same_model:
            opened.notes.append(UserError("workspace_features_again", other=other_model,
                                          model=info.name))
    _prompts(manifest, reader, session, opened, scratch)
    evaluation = manifest.get("evaluation")
    if evaluation is not None:
        if same_model:
            session.evaluated = _evaluation(evaluation, session, reader)
        else:
            opened.notes.append(UserError("workspace_evaluate_again"))
    return opened


def _field(data: Any, key: str, kind: type, reader: _Reader):
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        reader.damaged(f"its {key.replace('_', ' ')} is not one the app wrote")
    return value


def _scans(manifest: dict, key: str, reader: _Reader, classes: list[str]) -> list[Example]:
    entries = _field(manifest, key, list, reader)
    if len(entries) > MAX_EXAMPLES:
        reader.damaged(f"it holds more {key.replace('_', ' ')} than the app keeps")
    out, seen = [], set()
    for entry in entries:
        if not isinstance(entry, dict):
            reader.damaged(f"its {key.replace('_', ' ')} are not ones the app wrote")
        label, digest, shown = entry.get("label"), entry.get("digest"), entry.get("name")
        if (label not in classes or not isinstance(digest, str) or not re.fullmatch(
                "[0-9a-f]{64}", digest) or not isinstance(shown, str) or digest in seen):
            reader.damaged(f"its {key.replace('_', ' ')} are not ones the app wrote")
        seen.add(digest)
        picture = reader.picture(digest)
        out.append(Example(new_uid(), label, picture, thumbnail(picture), shown[:MAX_NAME],
                           digest))
    return out


def _labelling(points: Any, reader: _Reader) -> list[dict]:
    """The "is labelling still paying?" points, checked: numbers where numbers are."""
    if not isinstance(points, list) or len(points) > MAX_EXAMPLES:
        reader.damaged("its labelling record is not one the app wrote")
    out = []
    for point in points:
        numbers = [point.get(k) for k in ("examples", "tuned", "tuned_std")] \
            if isinstance(point, dict) else [None]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            reader.damaged("its labelling record is not one the app wrote")
        out.append(dict(point))
    return out


def _offered(manifest: dict, reader: _Reader) -> list[Example]:
    """The scans the workspace offers to predict (none in files that predate them)."""
    entries = manifest.get("to_predict") or []
    if not isinstance(entries, list) or len(entries) > MAX_TO_PREDICT:
        reader.damaged("its scans to predict are not ones the app wrote")
    out = []
    for entry in entries:
        digest, shown = (entry.get("digest"), entry.get("name")) if isinstance(entry, dict) \
            else (None, None)
        if not isinstance(digest, str) or not re.fullmatch("[0-9a-f]{64}", digest) \
                or not isinstance(shown, str) or any(e.digest == digest for e in out):
            reader.damaged("its scans to predict are not ones the app wrote")
        picture = reader.picture(digest)
        out.append(Example(new_uid(), "", picture, thumbnail(picture), shown[:MAX_NAME], digest))
    return out


def _read_features(reader: _Reader, scratch: Path, info: ModelInfo, digests: set[str]
                   ) -> dict[str, torch.Tensor]:
    """The saved features of this model's pictures that are in the workspace."""
    from safetensors import SafetensorError, safe_open

    path = scratch / FEATURES
    path.write_bytes(reader.read(FEATURES, MAX_FEATURES_BYTES))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = json.loads(meta.get("keys", "[]"))
            if meta.get("format") != FORMAT or not isinstance(keys, list) \
                    or set(f.keys()) != {str(i) for i in range(len(keys))}:
                reader.damaged("its features are not ones the app wrote")
            found = {}
            for i, key in enumerate(keys):
                if not isinstance(key, str) or not key.startswith(f"{info.fingerprint}|") \
                        or key.rsplit("|", 1)[-1] not in digests:
                    continue
                value = f.get_tensor(str(i))
                if value.dtype != torch.float32 or tuple(value.shape) != (info.embed_dim,) \
                        or not torch.isfinite(value).all():
                    reader.damaged("its features are not ones the app wrote")
                found[key] = value
            return found
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError):
        reader.damaged("its features cannot be read")


def _prompts(manifest: dict, reader: _Reader, session: Session, opened: Opened,
             scratch: Path) -> None:
    """The tuned prompts and the other set, with their histories and estimates; prompts of
    another model (or other classes) are left out with the reason."""
    from demo.runtime import compute

    saved = manifest.get("prompts") or {}
    if not isinstance(saved, dict):
        reader.damaged("its prompts are not ones the app wrote")
    tunings = {}
    for which, member in PROMPT_FILES.items():
        if which not in saved:
            continue
        entry = saved[which]
        if not isinstance(entry, dict):
            reader.damaged("its prompts are not ones the app wrote")
        prompt_file = scratch / f"{which}.safetensors"
        prompt_file.write_bytes(reader.read(member, MAX_CHECKPOINT_BYTES))
        try:
            state = compute.load_prompts(str(prompt_file))
        except CheckpointError as exc:
            if not any(isinstance(n, CheckpointError) for n in opened.notes):
                opened.notes += [UserError("workspace_prompts_left_out"), exc]
            continue
        if list(state.classnames) != list(session.classes):
            reader.damaged("its prompts are for other classes than its task")
        history = None
        if entry.get("history") is not None:
            try:
                history = History.from_dict(entry["history"])
            except (StudioError, TypeError, ValueError, AttributeError):
                reader.damaged("its training history is not one the app wrote")
        held_out = entry.get("held_out")
        if held_out is not None and not _estimate_is_ours(held_out):
            reader.damaged("its held-out estimate is not one the app wrote")
        tunings[which] = Tuning(state, history, held_out)
    other_is = saved.get("other_is")
    if other_is not in (None, PREVIOUS, STOPPED, REPLACED):
        reader.damaged("its prompts are not ones the app wrote")
    session.prompts.restore(tunings.get("current"), tunings.get("other"), other_is)


def _estimate_is_ours(held_out: Any) -> bool:
    """A held-out estimate as the app writes it: methods' numbers, and warnings that are
    message keys with plain values."""
    if not isinstance(held_out, dict) or not isinstance(held_out.get("methods", {}), dict):
        return False
    for warning in held_out.get("warnings", []):
        if (not isinstance(warning, list) or len(warning) != 2 or warning[0] not in EN
                or not isinstance(warning[1], dict) or not all(
                    isinstance(v, (str, int, float)) for v in warning[1].values())):
            return False
    return True


def _evaluation(evaluation: Any, session: Session, reader: _Reader) -> tuple | None:
    results = {}
    try:
        scans = [session.test_set[i] for i in evaluation["scans"]
                 if isinstance(i, int) and 0 <= i < len(session.test_set)]
        if len(scans) != len(evaluation["scans"]):
            raise ValueError("a scan that is not in the test set")
        allowed = {"tuned", *COMPARED}
        for name, r in evaluation["results"].items():
            classnames = [str(c) for c in r["classnames"]]
            probabilities = np.asarray(r["probabilities"], dtype=np.float32)
            labels = [int(y) for y in r["labels"]]
            if (name not in allowed or classnames != session.classes
                    or probabilities.shape != (len(scans), len(classnames))
                    or len(labels) != len(scans)
                    or any(not 0 <= y < len(classnames) for y in labels)):
                raise ValueError("not an evaluation of this test set")
            results[name] = result_from_probabilities(labels, probabilities, classnames)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        reader.damaged("its evaluation is not one the app wrote")
    if "tuned" in results and session.tuned is None:
        del results["tuned"]
    return (scans, results) if "zero-shot" in results else None
