"""The sample sets of `assets/` as lessons: each is made into a workspace file (its task, its
licensed sample pictures as examples, and its scans to predict) and opened like any lesson, so
a sample set and a teacher's lesson are one thing to the app."""
from __future__ import annotations

from pathlib import Path

from core.imaging import load_scan
from core.presets import SampleSet
from demo.runtime.host import ModelInfo
from demo.work.scans import Example, kept_picture, new_uid, picture_digest, scan_picture, \
    thumbnail
from demo.work.session import Session
from demo.work.task import class_rows
from demo.work.workspace import write_workspace


def sample_lesson(sample: SampleSet, info: ModelInfo, folder: Path, app_version: str,
                  suffix: str = "") -> Path:
    """The workspace file of a sample set (examples named with `suffix`, e.g. " (sample)" in
    the student's language), written into `folder` as `<id>.biomed-dpt.zip`."""
    session = Session()
    session.set_task(info, sample.template, class_rows(sample.classes, sample.descriptions),
                     sample.modality, sample.organ, (sample.lambda_l1, sample.lambda_kl))
    for label, paths in sample.files.items():
        _, problems = session.add_examples([(str(p), p.name) for p in paths], label,
                                           suffix=suffix)
        if any(not p.added for p in problems):  # the app's own pictures always load
            raise RuntimeError(f"the sample set {sample.id} has pictures that do not load")
    session.to_predict = [_offered(path) for path in sample.to_predict]
    return write_workspace(session, info, folder, app_version, name=sample.id)


def _offered(path: Path) -> Example:
    picture = kept_picture(scan_picture(load_scan(path))[0])
    return Example(new_uid(), "", picture, thumbnail(picture), path.stem,
                   picture_digest(picture))
