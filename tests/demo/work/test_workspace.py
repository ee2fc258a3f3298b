"""A session's work as one file and back (demo/work/workspace.py), with the tiny backbone and
real DICOM files: what comes back, what another model's file gives, and files that are not
workspaces, are damaged or hostile."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import CheckpointError
from core.features import EVAL_VIEW, feature_key
from core.prompts import DualPrompt, PromptConfig
from demo.text.messages import UserError
from demo.work.workspace import (FEATURES, MANIFEST, PROMPT_FILES, SUFFIX, read_workspace,
                                 write_workspace)
from tests.demo.conftest import CT_FILES, MR_FILES, real_scan
from tests.demo.ui.test_handlers import ready_session, tuned


@pytest.fixture(scope="module")
def worked(studio, tmp_path_factory):
    """A session with examples, tuned prompts (twice: the first set restorable), their
    estimate, a test set and its evaluation; and its workspace file."""
    folder = tmp_path_factory.mktemp("work")
    session = ready_session(studio, folder, tune=False)
    tuned(studio, session, "fast", 12.5, 0.25, 8, 1, 1, estimate=False)
    tuned(studio, session, "fast", 12.5, 0.25, 12, 1, 2)
    info = studio.model_info()
    session.add_test_files([(real_scan(n, folder), n) for n in CT_FILES[:2]],
                           session.classes[0])
    session.add_test_files([(real_scan(n, folder), n) for n in MR_FILES[:2]],
                           session.classes[1])
    session.evaluate(info)
    path = write_workspace(session, info, folder / "saved", app_version="test")
    return session, path


def test_the_file_is_named_for_its_task_and_holds_no_pickle(worked):
    session, path = worked
    assert path.name.endswith(SUFFIX) and path.name.startswith("ct-abdomen_")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read(MANIFEST))
    assert MANIFEST in names and FEATURES in names and set(PROMPT_FILES.values()) <= set(names)
    assert not any(n.endswith((".pkl", ".pt", ".bin", ".pickle")) for n in names)
    assert manifest["version"] == 1 and manifest["task"]["classes"] == session.classes
    shown = {e["name"] for e in manifest["examples"] + manifest["test_set"]}
    assert not any(n in "".join(shown) for n in CT_FILES + MR_FILES)  # app names only
    assert manifest["prompts"]["other_is"] == "previous"


def test_everything_comes_back_and_predicts_the_same(studio, worked):
    session, path = worked
    info = studio.model_info()
    opened = read_workspace(path, info, owner="someone-else")
    back = opened.session
    assert opened.notes == [] and back.owner == "someone-else"
    assert back.task == session.task
    for mine, theirs in ((session.examples, back.examples), (session.test_set, back.test_set)):
        assert [(e.label, e.name, e.digest) for e in theirs] == \
            [(e.label, e.name, e.digest) for e in mine]
        assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image))
                   for a, b in zip(mine, theirs))
    # the tuned prompts, the set to go back to, their histories and the estimate
    assert torch.equal(back.tuned.ctx, session.tuned.ctx)
    assert back.history == session.history and back.held_out == _listed(session.held_out)
    assert torch.equal(back.prompts.other.prompts.ctx, session.prompts.other.prompts.ctx)
    assert back.prompts.other_is == session.prompts.other_is
    # the features come back: nothing is encoded again, and predictions are the same
    pictures = [*session.examples, *session.test_set]
    keys = [feature_key(info, e.digest, EVAL_VIEW, n, info.precision)
            for e in pictures for n in (0, session.tuned.cfg.n_vision_prompts)]
    assert all(k in back.features for k in keys)
    before = session.features_of(info, session.test_set, session.tuned.cfg.n_vision_prompts)
    after = back.features_of(info, back.test_set, back.tuned.cfg.n_vision_prompts)
    assert torch.allclose(session.tuned.proba(before), back.tuned.proba(after), atol=1e-6)
    # the evaluation, as it was
    scans, results = back.evaluated
    assert [e.digest for e in scans] == [e.digest for e in session.test_set]
    for name, result in session.evaluated[1].items():
        assert results[name].accuracy == result.accuracy
        assert np.allclose(results[name].probabilities, result.probabilities, atol=1e-7)
    assert back.cell(session.classes[0], session.classes[0]) is not None  # cells work


def _listed(value):
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist")
                                 else list(v)))


def test_the_same_work_saved_again_gives_the_same_manifest(studio, worked, tmp_path):
    _, path = worked
    info = studio.model_info()
    again = write_workspace(read_workspace(path, info).session, info, tmp_path, "test")
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(again) as b:
        first, second = json.loads(a.read(MANIFEST)), json.loads(b.read(MANIFEST))
        assert sorted(a.namelist()) == sorted(b.namelist())
    first.pop("saved"), second.pop("saved")
    assert first == second


def _rewritten(path: Path, target: Path, change=None, add: dict | None = None,
               drop: tuple = ()) -> Path:
    """A copy of the workspace with members changed (`change(name, bytes) -> bytes`), added
    or dropped."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w") as out:
        for name in src.namelist():
            if name in drop:
                continue
            data = src.read(name)
            out.writestr(name, change(name, data) if change else data)
        for name, data in (add or {}).items():
            out.writestr(name, data)
    return target


def test_under_another_model_the_work_comes_back_but_its_prompts_and_evaluation_do_not(
        studio, backbones, worked, tmp_path):
    session, path = worked
    elsewhere = DualPrompt(backbones["tiny-clip"], session.classes,
                           PromptConfig(template=session.template)).save(tmp_path / "p.safetensors")

    def other_model(name: str, data: bytes) -> bytes:
        if name == MANIFEST:
            manifest = json.loads(data)
            manifest["model"] = {"name": "tiny-clip", "fingerprint": "0" * 16}
            return json.dumps(manifest).encode()
        if name in PROMPT_FILES.values():
            return elsewhere.read_bytes()
        if name == FEATURES:  # features keyed by the other model's fingerprint
            from safetensors.torch import load, save

            tensors = load(data)
            keys = ["0" * 16 + "|" + k.split("|", 1)[1]
                    for k in json.loads(_metadata(data)["keys"])]
            return save(tensors, metadata={"format": "biomed-dpt-workspace",
                                           "keys": json.dumps(keys)})
        return data

    moved = _rewritten(path, tmp_path / f"moved{SUFFIX}", other_model)
    opened = read_workspace(moved, studio.model_info())
    back = opened.session
    keys = [n.key for n in opened.notes if isinstance(n, UserError)]
    assert keys == ["workspace_features_again", "workspace_prompts_left_out",
                    "workspace_evaluate_again"]
    refused = [n for n in opened.notes if isinstance(n, CheckpointError)]
    assert len(refused) == 1 and refused[0].key == "prompts_other_model"
    assert back.tuned is None and back.prompts.other is None and back.evaluated is None
    assert len(back.features) == 0  # computed again, for this model, as they are needed
    assert [e.digest for e in back.examples] == [e.digest for e in session.examples]
    assert [e.digest for e in back.test_set] == [e.digest for e in session.test_set]
    assert back.history is None and back.task == session.task


def _metadata(data: bytes) -> dict:
    """A safetensors file's metadata, from its JSON header."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size])["__metadata__"]


def _refused(path, studio, key: str) -> UserError:
    with pytest.raises(UserError) as caught:
        read_workspace(path, studio.model_info(), shown_name="mine.biomed-dpt.zip")
    assert caught.value.key == key, caught.value
    assert "mine.biomed-dpt.zip" in str(caught.value)
    return caught.value


def test_files_that_are_not_workspaces_are_named_and_refused(studio, worked, tmp_path):
    _, path = worked
    notes = tmp_path / "notes.zip"
    notes.write_text("not a zip at all")
    _refused(notes, studio, "workspace_not_zip")
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("scan.dcm", b"DICM")
    _refused(other_zip, studio, "workspace_not_zip")
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(truncated, studio, "workspace_damaged")


def test_damaged_or_forged_workspaces_change_nothing(studio, worked, tmp_path, monkeypatch):
    _, path = worked
    manifest = json.loads(zipfile.ZipFile(path).read(MANIFEST))
    first = manifest["examples"][0]["digest"]

    def with_manifest(change):
        def edit(name, data):
            if name != MANIFEST:
                return data
            value = json.loads(data)
            change(value)
            return json.dumps(value).encode()
        return edit

    cases = {
        "newer": (with_manifest(lambda m: m.update(version=2)), None, (), "workspace_version"),
        "climbing": (None, {"../../etc/evil.txt": b"x"}, (), "workspace_damaged"),
        "a picture missing": (None, None, (f"pictures/{first}.png",), "workspace_damaged"),
        "another picture": (lambda n, d: _other_png() if n == f"pictures/{first}.png" else d,
                            None, (), "workspace_damaged"),
        "a strange warning": (with_manifest(lambda m: m["prompts"]["current"]["held_out"][
            "warnings"].append(["no_such_message", {}])), None, (), "workspace_damaged"),
        "an unknown class": (with_manifest(lambda m: m["examples"][0].update(label="liver")),
                             None, (), "workspace_damaged"),
        "not json": (lambda n, d: b"{" if n == MANIFEST else d, None, (), "workspace_damaged"),
        "evaluation of more": (with_manifest(lambda m: m["evaluation"]["scans"].append(99)),
                               None, (), "workspace_damaged"),
    }
    for case, (change, add, drop, key) in cases.items():
        bad = _rewritten(path, tmp_path / f"{case}{SUFFIX}", change, add, drop)
        assert _refused(bad, studio, key).key == key, case
    # a picture that inflates far past a kept picture's size is refused, not read whole
    bomb = tmp_path / f"bomb{SUFFIX}"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            out.writestr(name, b"\0" * (40 * 2**20) if name == f"pictures/{first}.png"
                         else src.read(name))
    assert bomb.stat().st_size < path.stat().st_size + 2**20
    _refused(bomb, studio, "workspace_damaged")
    monkeypatch.setattr("demo.work.workspace.MAX_FILE_BYTES", 1000)
    assert _refused(path, studio, "workspace_too_big").values["limit"] == 0


def _other_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_empty_session_has_nothing_to_save(studio, tmp_path):
    from demo.work.session import Session

    with pytest.raises(UserError) as caught:
        write_workspace(Session(), studio.model_info(), tmp_path)
    assert caught.value.key == "workspace_empty" and not list(tmp_path.iterdir())


def test_grey_pictures_are_stored_as_one_channel_and_come_back_exactly(studio, worked):
    """A grey picture (its three channels equal) is written as a one-channel PNG, a colour
    one as RGB; both come back pixel for pixel (their digests are checked when read)."""
    from PIL import Image

    session, path = worked
    with zipfile.ZipFile(path) as zf:
        modes = {Image.open(io.BytesIO(zf.read(f"pictures/{e.digest}.png"))).mode
                 for e in session.examples}
    assert modes == {"L"}  # the DICOM examples are grey
    colour = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    from demo.work.workspace import _png

    back = Image.open(io.BytesIO(_png(colour)))
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), np.asarray(colour))


def test_the_last_predicted_scan_and_a_lessons_scans_are_offered_again(studio, worked,
                                                                      tmp_path):
    """A workspace offers to predict the scans its lesson offered and the last scan predicted
    (as the picture the model saw): predicting that again after opening gives the same
    probabilities."""
    session, path = worked
    info = studio.model_info()
    work = read_workspace(path, info).session
    assert work.to_predict == []  # saved before any prediction
    scan = real_scan("MR_small_padded.dcm", tmp_path)
    before = work.predict(info, scan)
    saved = write_workspace(work, info, tmp_path / "again", "test")
    opened = read_workspace(saved, info).session
    assert [(e.name, e.digest) for e in opened.to_predict] == \
        [("last predicted scan", before.digest)]
    again = tmp_path / "offered.png"
    opened.to_predict[0].image.save(again)
    after = opened.predict(info, str(again))
    assert after.digest == before.digest
    assert after.tuned == pytest.approx(before.tuned, abs=1e-6)
    with zipfile.ZipFile(saved) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    assert "MR_small" not in json.dumps(manifest)  # the uploaded file's name never enters it


def test_the_pool_and_the_labelling_record_come_back(studio, tmp_path):
    """The unlabelled pool (its pictures, and their features) and the "is labelling still
    paying?" points are part of the work; a forged record is refused."""
    session = ready_session(studio, tmp_path, tune=False)
    tuned(studio, session, "fast", 12.5, 0.25, 8, 1, 1)
    session.add_to_pool([(real_scan(n, tmp_path), n) for n in ("JPEG2000.dcm", "SC_rgb.dcm")])
    info = studio.model_info()
    before = session.suggestions(info)
    path = write_workspace(session, info, tmp_path / "saved")
    opened = read_workspace(path, info).session
    assert [e.digest for e in opened.pool] == [e.digest for e in session.pool]
    assert all(e.label == "" for e in opened.pool)
    assert opened.labelling == session.labelling and len(opened.labelling) == 1
    key = feature_key(info, opened.pool[0].digest, EVAL_VIEW, 0, info.precision)
    assert key in opened.features  # no encoding needed to rank them again
    again = opened.suggestions(info)
    assert [s.example.digest for s in again] == [s.example.digest for s in before]
    assert [s.probability for s in again] == pytest.approx([s.probability for s in before],
                                                           abs=1e-6)
    def forge(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        manifest = json.loads(data)
        manifest["labelling"] = [{"examples": "many"}]
        return json.dumps(manifest).encode()

    _refused(_rewritten(path, tmp_path / "forged.zip", change=forge), studio, "workspace_damaged")
