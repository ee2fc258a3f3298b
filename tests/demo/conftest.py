"""Fixtures for the app: a Studio over the tiny backbone, real scans from pydicom's test data."""
from __future__ import annotations

import shutil

import pytest

from demo.ui.handlers import Studio

CT_FILES = ["CT_small.dcm", "693_UNCR.dcm", "explicit_VR-UN.dcm"]
MR_FILES = ["MR_small.dcm", "MR2_UNCR.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"]
ROWS = [["computed tomography", "cross-sectional x-ray attenuation image\nbone is bright"],
        ["magnetic resonance", "soft tissue contrast image"]]


def real_scan(name: str, folder) -> str:
    """A copy of one of pydicom's real test files (uploads are deleted once read)."""
    from pydicom.data import get_testdata_file

    target = folder / name.replace(".dcm", "")  # DICOM without an extension, as users bring them
    shutil.copy(get_testdata_file(name), target)
    return str(target)


def class_zip(path, members: dict[str, list[str]], top: str = "") -> str:
    """A zip of class folders (`top/label/name`) holding pydicom's test files `members`."""
    import zipfile

    from pydicom.data import get_testdata_file

    with zipfile.ZipFile(path, "w") as z:
        for label, names in members.items():
            for name in names:
                z.write(get_testdata_file(name), "/".join(filter(None, [top, label, name])))
    return str(path)


@pytest.fixture(scope="session")
def studio(backbones):
    return Studio(backbones["tiny-biomedclip"], time_budget_s=120)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_log(tmp_path_factory):
    return tmp_path_factory.mktemp("app") / "app.log"


def start_app(log, *flags: str):
    """`python app.py --backbone tiny-biomedclip` (and `flags`) started as a user would, on a
    free port; yields its URL and stops it afterwards."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--backbone", "tiny-biomedclip", "--port", str(port),
             *flags], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the app did not start:\n" + Path(log).read_text()[-3000:])
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def app_url(app_log):
    yield from start_app(app_log)
