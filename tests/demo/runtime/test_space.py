"""`python -m demo.runtime.space`: the folder it writes is a Space its hardware runs, and the
app starts from it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from core.backbone import BIOMEDCLIP_HUB_ID
from demo.runtime import space
from demo.runtime import gpu

ROOT = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, *flags: str) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path / "space"
    done = subprocess.run([sys.executable, "-m", "demo.runtime.space", *flags, str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    return out, done


def read(out: Path) -> tuple[dict, dict[str, Requirement], list[str], list[str]]:
    """The written Space's front matter, its requirements by name, its requirement-file options,
    and its Debian packages: each parsed as the hub's build parses it."""
    meta, body = space.front_matter((out / "README.md").read_text())
    assert "# Biomed-DPT Studio" in body
    requirements, options = {}, []
    for line in (out / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-"):
            options.append(line)
        elif line:
            requirement = Requirement(line)
            requirements[requirement.name.lower()] = requirement
    packages = (out / "packages.txt").read_text().split()
    return meta, requirements, options, packages


def pinned(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "=="
    return spec.version


def test_a_zerogpu_space_runs_versions_zerogpu_lists(tmp_path):
    out, done = write(tmp_path, "--zerogpu")
    assert done.returncode == 0, done.stderr
    meta, requirements, options, packages = read(out)
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert str(meta["sdk_version"]) == pinned(requirements["gradio"])
    assert meta["python_version"] == "3.12.12" and meta["python_version"] in gpu.ZEROGPU_PYTHONS
    assert BIOMEDCLIP_HUB_ID in [entry.split()[0] for entry in meta["preload_from_hub"]]
    torch, vision = pinned(requirements["torch"]), pinned(requirements["torchvision"])
    assert torch == "2.11.0" and gpu.ZEROGPU_TORCH[torch] == vision == "0.26.0"
    assert gpu.zerogpu_refuses(torch, meta["python_version"]) is None
    assert options == [] and packages == []  # PyPI's CUDA builds; no Debian packages
    # every other requirement is the checkout's own, pins and all
    checkout = space.pins((ROOT / "requirements.txt").read_text())
    assert {n: pinned(r) for n, r in requirements.items() if r.specifier and
            n not in space.TORCH_PACKAGES} == {n: v for n, v in checkout.items()
                                                if n not in space.TORCH_PACKAGES}
    assert (out / "demo" / "runtime" / "gpu.py").is_file() and (out / "assets").is_dir()
    assert not list(out.rglob("__pycache__"))
    assert "2.11.0" in done.stdout and gpu.ZEROGPU_READ_ON in done.stdout


def test_the_app_starts_from_the_written_space(tmp_path):
    out, done = write(tmp_path, "--zerogpu")
    assert done.returncode == 0
    ran = subprocess.run([sys.executable, "app.py", "--help"], cwd=out, capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "--backbone" in ran.stdout and "--time-budget" in ran.stdout
    assert "Traceback" not in ran.stderr


def test_a_cpu_space_takes_pytorchs_cpu_builds_of_the_checkouts_pair(tmp_path):
    out, done = write(tmp_path, "--cpu")
    assert done.returncode == 0, done.stderr
    meta, requirements, options, packages = read(out)
    checkout_meta = space.front_matter((ROOT / "README.md").read_text())[0]
    assert meta["python_version"] == str(checkout_meta["python_version"])
    assert meta["suggested_hardware"] == "cpu-basic"
    assert options == [f"--extra-index-url {space.CPU_INDEX}"]
    checkout = space.pins((ROOT / "requirements.txt").read_text())
    assert pinned(requirements["torch"]) == checkout["torch"] + "+cpu"
    assert pinned(requirements["torchvision"]) == checkout["torchvision"] + "+cpu"
    assert packages == []


@pytest.mark.parametrize("flags, said", [
    (["--torch", "2.14.1"], "ZeroGPU does not run PyTorch 2.14.1"),
    (["--python", "3.11.7"], "ZeroGPU does not run Python 3.11.7"),
    (["--python", "3.12.1"], "name one of them, not 3.12.1"),
    (["--python", "3.10.13"], "need Python 3.11 or later (transformers"),
])
def test_versions_zerogpu_refuses_are_refused_before_anything_is_written(tmp_path, flags, said):
    out, done = write(tmp_path, *flags, "--zerogpu")
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_a_cpu_space_keeps_the_pair_whose_torchvision_is_known(tmp_path):
    out, done = write(tmp_path, "--torch", "2.13.0", "--cpu")
    assert done.returncode == 2 and "takes the pair pinned here" in done.stderr
    assert not out.exists()


def test_a_folder_in_use_is_left_as_it_is(tmp_path):
    out = tmp_path / "space"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    again, done = write(tmp_path, "--cpu")
    assert done.returncode == 2 and "not an empty folder" in done.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(space.SpaceError, match="inside this checkout"):
        space.write_space(ROOT / "out" / "space-here", space.target("cpu"))
