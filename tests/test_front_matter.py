"""The Space's front matter (README.md) against what the app needs and pins."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    block = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert block, "README.md must start with the Space's front matter"
    return yaml.safe_load(block.group(1))


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.split("[", 1)[0].strip().lower()] = version.strip()
    return out


def test_the_space_runs_the_pinned_gradio_on_a_python_the_code_runs_on():
    meta, pinned = front_matter(), pins()
    assert meta["sdk"] == "gradio" and str(meta["sdk_version"]) == pinned["gradio"]
    assert (ROOT / meta["app_file"]).is_file()
    major, minor = (int(p) for p in str(meta["python_version"]).split(".")[:2])
    assert (major, minor) >= (3, 10)  # gradio 6 needs 3.10; the suite runs on what CI has


def test_the_space_preloads_the_weights_the_app_loads():
    from core.backbone import BIOMEDCLIP_HUB_ID

    preloaded = [entry.split()[0] for entry in front_matter()["preload_from_hub"]]
    assert BIOMEDCLIP_HUB_ID in preloaded


def _python(version: str) -> str | None:
    """An interpreter of `version` that runs, if this machine has one."""
    import glob
    import shutil

    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}*/bin/python")))
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.startswith(f"Python {version}"):
            return candidate
    return None


@pytest.mark.parametrize("release", ["3.12.12"])
def test_the_code_compiles_on_the_python_zerogpu_runs(release):
    """A ZeroGPU Space runs Python 3.12.12 (its other Python, 3.10.13, is older than the
    requirements allow); where this machine has a 3.12, every module of the app compiles on it."""
    from demo.runtime import gpu

    assert release in gpu.ZEROGPU_PYTHONS
    minor = release.rsplit(".", 1)[0]
    python = _python(minor)
    if python is None:
        pytest.skip(f"no Python {minor} on this machine")
    files = [str(p) for d in ("core", "demo", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    done = subprocess.run([python, "-m", "py_compile", *files, str(ROOT / "app.py")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
