"""`python -m demo.runtime.space --zerogpu OUT` or `--cpu OUT`: a folder to push as a Hugging
Face Space.

It holds the app's files (`app.py`, `core/`, `demo/`, `assets/`), a README whose front matter
names the Gradio SDK this checkout pins, a Python the hardware runs and the weights to preload,
a `requirements.txt` whose torch and torchvision are a pair that hardware runs, and a
`packages.txt` (Debian packages; none are needed: every dependency comes as a wheel).

- ZeroGPU: a PyTorch release ZeroGPU lists (the newest by default, `--torch` for another) with
  the torchvision built for it, from PyPI (CUDA builds, as ZeroGPU needs), and a Python it runs
  (3.12.12: ZeroGPU's other Python, 3.10.13, is older than the requirements allow). What
  ZeroGPU lists is `demo.runtime.gpu.ZEROGPU_TORCH` and `ZEROGPU_PYTHONS`; anything else is
  refused here rather than at the Space's first build.
- CPU: the torch and torchvision this checkout pins, as PyTorch's CPU-only builds from its own
  index (about 0.2 GB instead of PyPI's 6 GB CUDA build), on this checkout's Python.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from demo.runtime import gpu

ROOT = Path(__file__).resolve().parents[2]
APP_FILES = ("app.py", "core", "demo", "assets")
LEFT_OUT = ("__pycache__", "*.pyc")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_PACKAGES = ("torch", "torchvision")
FRONT_MATTER = re.compile(r"---\n(.*?)\n---\n", re.S)
# the oldest Python every pinned requirement installs on (transformers 5.24.0 needs 3.11; seen
# when pip refused it on ZeroGPU's 3.10.13): of ZeroGPU's Pythons, only 3.12.12 runs the app
MIN_PYTHON = (3, 11)


class SpaceError(ValueError):
    """A Space that the hardware would refuse, or a folder that is not free to write."""


@dataclass(frozen=True)
class Target:
    """What one kind of Space runs."""
    hardware: str  # "zerogpu" or "cpu"
    python: str
    torch: str
    torchvision: str
    index: str | None = None  # an extra package index for torch and torchvision
    local: str = ""  # the builds' local label on that index ("+cpu")


def front_matter(readme: str) -> tuple[dict, str]:
    """The README's front matter, and the text after it."""
    match = FRONT_MATTER.match(readme)
    if not match:
        raise SpaceError("README.md does not start with a Space's front matter.")
    return yaml.safe_load(match.group(1)), readme[match.end():]


def pins(requirements: str) -> dict[str, str]:
    """Each `name==version` of a requirements file, by its lower-case name."""
    out = {}
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            out[name.split("[", 1)[0].strip().lower()] = version.strip()
    return out


def target(hardware: str, python: str | None = None, torch: str | None = None,
           root: Path = ROOT) -> Target:
    """The versions a Space of `hardware` runs; refuses those the hardware does not."""
    pinned = pins((root / "requirements.txt").read_text())
    if python is not None and tuple(int(p) for p in python.split(".")[:2]) < MIN_PYTHON:
        raise SpaceError(f"The app's requirements need Python {'.'.join(map(str, MIN_PYTHON))}"
                         f" or later (transformers {pinned['transformers']} does), not {python}.")
    if hardware == "cpu":
        if torch not in (None, pinned["torch"]):  # the one pair whose torchvision is known
            raise SpaceError(f"A CPU Space takes the pair pinned here: torch {pinned['torch']}"
                             f" with torchvision {pinned['torchvision']}, not torch {torch}.")
        checkout_python = str(front_matter((root / "README.md").read_text())[0]["python_version"])
        return Target("cpu", python or checkout_python, pinned["torch"], pinned["torchvision"],
                      index=CPU_INDEX, local="+cpu")
    if hardware != "zerogpu":
        raise SpaceError(f"hardware must be 'zerogpu' or 'cpu', not {hardware!r}")
    torch = torch or list(gpu.ZEROGPU_TORCH)[-1]
    python = python or gpu.ZEROGPU_PYTHONS[-1]
    refused = gpu.zerogpu_refuses(torch, python)
    if refused:
        raise SpaceError(refused)
    if python not in gpu.ZEROGPU_PYTHONS:  # a Space names the release itself
        raise SpaceError(f"ZeroGPU runs Python {' or '.join(gpu.ZEROGPU_PYTHONS)}; "
                         f"name one of them, not {python}.")
    return Target("zerogpu", python, torch, gpu.ZEROGPU_TORCH[torch])


def requirements_for(spec: Target, requirements: str) -> str:
    """The checkout's requirements with torch and torchvision replaced by the target's pair
    (and the index they come from first, where it is not PyPI)."""
    lines = []
    if spec.index:
        lines += [f"# torch and torchvision: PyTorch's {spec.hardware.upper()}-only builds",
                  f"--extra-index-url {spec.index}"]
    pair = {"torch": spec.torch, "torchvision": spec.torchvision}
    for line in requirements.splitlines():
        name = re.split(r"[=<>!~\[ ;]", line.strip(), maxsplit=1)[0].lower()
        if name in pair:
            comment = ("  # a release ZeroGPU runs" if spec.hardware == "zerogpu" and
                       name == "torch" else "")
            lines.append(f"{name}=={pair[name]}{spec.local}{comment}")
        elif line.startswith("# torch/torchvision are pinned"):
            lines.append(f"# torch/torchvision: the pair a {describe(spec)} Space runs.")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def describe(spec: Target) -> str:
    return "ZeroGPU" if spec.hardware == "zerogpu" else "CPU"


def write_space(out: Path, spec: Target, root: Path = ROOT) -> list[Path]:
    """Write the Space for `spec` into `out` (new or empty); returns the files written at its
    top level."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpaceError(f"{out} is not an empty folder; name a new one.")
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise SpaceError(f"{out} is inside this checkout; name a folder outside it.")
    out.mkdir(parents=True, exist_ok=True)
    meta, body = front_matter((root / "README.md").read_text())
    meta["python_version"] = spec.python
    if spec.hardware == "cpu":
        meta["suggested_hardware"] = "cpu-basic"
    written = []
    for name in APP_FILES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=shutil.ignore_patterns(*LEFT_OUT))
        else:
            shutil.copy2(source, out / name)
        written.append(out / name)
    readme = out / "README.md"
    readme.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True,
                                               width=1000) + "---\n" + body)
    requirements = out / "requirements.txt"
    requirements.write_text(requirements_for(spec, (root / "requirements.txt").read_text()))
    packages = out / "packages.txt"
    packages.write_text("")  # Debian packages: none (every dependency is a wheel)
    return [*written, readme, requirements, packages]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo.runtime.space", description="Write a folder to push as a Hugging "
        "Face Space: the app, its front matter, and requirements the hardware runs.")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--zerogpu", metavar="OUT", help="a ZeroGPU Space (Gradio SDK)")
    kind.add_argument("--cpu", metavar="OUT", help="a CPU Space (CPU basic or better)")
    parser.add_argument("--python", help="the Space's Python (ZeroGPU: 3.12.12, the default; "
                        "CPU: this checkout's)")
    parser.add_argument("--torch", help="the Space's PyTorch release (ZeroGPU: "
                        f"{', '.join(gpu.ZEROGPU_TORCH)}, default the newest)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    hardware, out = ("zerogpu", args.zerogpu) if args.zerogpu else ("cpu", args.cpu)
    try:
        spec = target(hardware, args.python, args.torch)
        write_space(Path(out), spec)
    except SpaceError as refused:
        print(refused, file=sys.stderr)
        return 2
    print(f"A {describe(spec)} Space in {out}: Python {spec.python}, torch {spec.torch}"
          f"{spec.local}, torchvision {spec.torchvision}{spec.local}.")
    if hardware == "zerogpu":
        print(f"(ZeroGPU as listed on {gpu.ZEROGPU_READ_ON}: {gpu.ZEROGPU_DOCS})")
        print("Create a Gradio Space, choose ZeroGPU under its hardware, then push this folder.")
    else:
        print("Create a Gradio Space on CPU basic (or better), then push this folder.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
