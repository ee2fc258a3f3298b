"""`python -m core.doctor`: can this host run the real model, and do the model, its tokenizer and
our code agree?

Prints library versions, the device (and whether bfloat16 is native there) and whether the
backbone's weights are available. When they are, it runs two real-weights checks on the example
scans in assets/examples (manifest.json: a list of {"file", "modality", "organ", "source",
"licence"}):
- zero-shot modality recognition (X-ray, CT, MRI, ultrasound, fundus, histopathology) through the
  prompt module, which must clearly beat chance; wrong tokenisation, a broken prompt path or
  mismatched weights fall to chance;
- a short tune-then-predict round (fast recipe, a few steps) that must run and give finite
  probabilities.
Exit code 0 when every check that could run passed (checks that cannot run, e.g. without cached
weights, are skipped and say why), 1 when one failed.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from core import presets
from core.backbone import (BIOMEDCLIP_HUB_ID, Backbone, bf16_supported, hub_cache_status,
                           load_backbone, resolve_device)
from core.errors import BackboneUnavailable, StudioError
from core.evaluate import evaluate
from core.prompts import DualPrompt, PromptConfig
from core.train import TrainConfig, fit

log = logging.getLogger(__name__)

DEFAULT_EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
MODALITY_TEMPLATE = "this is a photo of {}."
# Class phrases in the words of biomedical figure captions, the text BiomedCLIP was trained on:
# the modalities' captions in assets/modalities.json (the one modality vocabulary).
MODALITY_PHRASES = {m.id: m.caption for m in presets.load_modalities() if m.caption}
MIN_ACCURACY = 0.5  # and at least twice chance: "clearly beats chance" on a handful of images
LIBRARIES = ("torch", "torchvision", "open_clip_torch", "transformers", "timm", "safetensors",
             "numpy", "pillow", "matplotlib", "gradio", "pydicom", "SimpleITK",
             "huggingface_hub")


def canonical_modality(name: str) -> str | None:
    """The check's name for a manifest's modality ('Chest X-ray' -> 'X-ray'); None for one the
    check has no caption for ('PET')."""
    found = presets.canonical_modality(name)
    return found if found in MODALITY_PHRASES else None


# --------------------------------------------------------------------------------------------
# Report pieces
# --------------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    """One check: status 'passed', 'failed' or 'skipped'; `detail` says why, for a person."""

    name: str
    status: str
    detail: str
    figures: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class DoctorReport:
    versions: dict[str, str]
    device: dict[str, object]
    backbone: dict[str, object]
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(check.failed for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def format(self) -> str:
        lines = ["Biomed-DPT Studio doctor", "", "versions:"]
        lines += [f"  {name}: {value}" for name, value in self.versions.items()]
        lines += ["", "device:"] + [f"  {k}: {v}" for k, v in self.device.items()]
        lines += ["", "backbone:"] + [f"  {k}: {v}" for k, v in self.backbone.items()]
        lines += ["", "checks:"]
        for check in self.checks:
            lines.append(f"  [{check.status.upper()}] {check.name}: {check.detail}")
            for item in check.figures.get("tasks", []):
                mark = "" if item["word_pieces"] == item["paper_n_ctx"] else "   <- differs"
                lines.append(f"      {item['task']}: {item['ctx_init']!r} -> "
                             f"{item['word_pieces']} word pieces {item['pieces']}, paper N_CTX "
                             f"{item['paper_n_ctx']}{mark}")
            for item in check.figures.get("per_image", []):
                lines.append(f"      {item['file']}: {item['modality']} -> {item['predicted']} "
                             f"({item['probability']:.2f})")
        lines += ["", "result: " + ("all checks that could run passed" if self.passed
                                    else "a check FAILED")]
        return "\n".join(lines)


def library_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (nothing heavy is imported)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_report(device: str | None = None) -> dict[str, object]:
    try:
        chosen = resolve_device(device)
    except BackboneUnavailable as exc:
        return {"device": f"unavailable ({exc})"}
    out: dict[str, object] = {"device": str(chosen), "cuda_available": torch.cuda.is_available()}
    if chosen.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(chosen)
    out["cpu_threads"] = torch.get_num_threads()
    out["bf16_native"] = bf16_supported(chosen)
    return out


def biomedclip_cache_status() -> tuple[bool, str]:
    """(cached, explanation) for BiomedCLIP, as the loader sees the cache."""
    return hub_cache_status(BIOMEDCLIP_HUB_ID)


# --------------------------------------------------------------------------------------------
# Real-weights checks
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    path: Path
    modality: str


def read_examples(folder: Path = DEFAULT_EXAMPLES) -> tuple[list[Example], list[str]]:
    """Examples of the six modalities from folder/manifest.json, and notes on entries left out.
    Raises FileNotFoundError when there is no manifest."""
    manifest = Path(folder) / "manifest.json"
    data = json.loads(manifest.read_text())
    entries = data.get("examples", data.get("images")) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{manifest} must hold a list of {{'file', 'modality', ...}} entries.")
    examples, notes = [], []
    for entry in entries:
        if not isinstance(entry, dict) or "file" not in entry or "modality" not in entry:
            notes.append(f"skipped an entry without 'file' and 'modality': {entry!r}")
            continue
        modality = canonical_modality(entry["modality"])
        path = Path(folder) / entry["file"]
        if modality is None:
            notes.append(f"{entry['file']}: modality {entry['modality']!r} is not one of "
                         f"{', '.join(MODALITY_PHRASES)}")
        elif not path.is_file():
            notes.append(f"{entry['file']}: file missing")
        else:
            examples.append(Example(path, modality))
    return examples, notes


def _labelled(examples: Sequence[Example]) -> tuple[list[str], list[Image.Image], list[int]]:
    modalities = [m for m in MODALITY_PHRASES if any(e.modality == m for e in examples)]
    images = []
    for example in examples:
        with Image.open(example.path) as image:
            images.append(image.convert("RGB"))
    return modalities, images, [modalities.index(e.modality) for e in examples]


def modality_check(bb: Backbone, examples: Sequence[Example]) -> CheckResult:
    """Zero-shot modality recognition through the prompt module (context initialised from the
    template, no vision prompts): passes at accuracy >= max(0.5, 2 x chance). Also reports how far
    the prompt path (context embeddings) is from the plain tokenised sentences: at
    initialisation they are the same sentence, so a large gap means our prompt assembly and the
    tokenizer disagree."""
    name = "zero-shot modality recognition"
    modalities, images, labels = _labelled(examples)
    if len(modalities) < 2:
        return CheckResult(name, "skipped", "the examples cover fewer than two modalities")
    cfg = PromptConfig(template=MODALITY_TEMPLATE, n_vision_prompts=0, lambda_l1=0.0,
                       lambda_kl=0.0)
    dp = DualPrompt(bb, [MODALITY_PHRASES[m] for m in modalities], cfg).zero_shot()
    result = evaluate(dp, images, labels, precision="fp32")
    with torch.no_grad():
        gap = float((dp.text_features() - dp.template_features()).abs().max())
    chance = 1 / len(modalities)
    needed = max(MIN_ACCURACY, 2 * chance)
    per_image = [{"file": e.path.name, "modality": e.modality,
                  "predicted": modalities[p], "probability": float(result.probabilities[i, p])}
                 for i, (e, p) in enumerate(zip(examples, result.predictions))]
    figures = {"accuracy": result.accuracy, "chance": chance, "needed": needed,
               "images": len(images), "prompt_path_gap": gap, "per_image": per_image}
    passed = result.accuracy >= needed and gap < 1e-3
    detail = (f"{result.accuracy:.0%} of {len(images)} images (chance {chance:.0%}, needed "
              f"{needed:.0%}); prompt path vs plain sentences: max gap {gap:.1e}")
    return CheckResult(name, "passed" if passed else "failed", detail, figures)


def tune_check(bb: Backbone, examples: Sequence[Example], steps: int = 10) -> CheckResult:
    """A short tune-then-predict round (fast recipe) on the examples, vision prompts and teacher
    on: it must run, change the context, and give finite probabilities that sum to one."""
    name = "tune then predict"
    modalities, images, labels = _labelled(examples)
    if len(modalities) < 2:
        return CheckResult(name, "skipped", "the examples cover fewer than two modalities")
    dp = DualPrompt(bb, [MODALITY_PHRASES[m] for m in modalities],
                    PromptConfig(template=MODALITY_TEMPLATE))
    before = dp.ctx.detach().clone()
    started = time.perf_counter()
    history = fit(dp, images, labels, TrainConfig.fast(steps=steps))
    probs = dp.predict_proba(bb.pixels(images))
    seconds = time.perf_counter() - started
    finite = bool(torch.isfinite(probs).all()) and bool(torch.isfinite(dp.ctx).all())
    sums_to_one = bool(torch.allclose(probs.sum(dim=-1), torch.ones(len(images),
                                                                     device=probs.device),
                                      atol=1e-4))
    changed = not torch.equal(before, dp.ctx.detach())
    accuracy = float((probs.argmax(dim=-1).cpu() == torch.tensor(labels)).float().mean())
    figures = {"steps": len(history.steps), "first_loss": history.steps[0]["loss"],
               "final_loss": history.final["loss"], "train_accuracy": accuracy,
               "seconds": round(seconds, 2)}
    passed = finite and sums_to_one and changed and len(history.steps) == steps
    detail = (f"{len(history.steps)} steps in {seconds:.1f} s, loss {figures['first_loss']:.3f} "
              f"-> {figures['final_loss']:.3f}, training accuracy {accuracy:.0%}"
              + ("" if passed else "; outputs not finite, not normalised, or context unchanged"))
    return CheckResult(name, "passed" if passed else "failed", detail, figures)


# --------------------------------------------------------------------------------------------
# The doctor
# --------------------------------------------------------------------------------------------
def context_check(bb: Backbone) -> CheckResult:
    """Per ready task shaped like a public data set: the word pieces of its context words under
    this model's tokenizer beside the paper's N_CTX (described mode uses the first, released
    mode the second). Information, not a failure: the two modes differ where they differ."""
    rows = []
    for task in presets.load_tasks():
        if task.paper_n_ctx is None or not task.ctx_init:
            continue
        pieces = bb.tokenizer.tokenizer.tokenize(task.ctx_init) if bb.hf_text else \
            [str(i) for i in bb.text_ids([task.ctx_init])[0][1:-1]]
        rows.append({"task": task.shaped_like, "ctx_init": task.ctx_init, "pieces": pieces,
                     "word_pieces": len(pieces), "paper_n_ctx": task.paper_n_ctx})
    differ = [r["task"] for r in rows if r["word_pieces"] != r["paper_n_ctx"]]
    detail = (f"{len(rows)} ready tasks; the context words' word pieces differ from the "
              f"paper's N_CTX for {', '.join(differ)} (described mode uses the pieces, released "
              "mode N_CTX)" if differ else f"{len(rows)} ready tasks; every count equals N_CTX")
    return CheckResult("context length", "passed", detail, {"tasks": rows})


def teacher_check(teacher_file: Path | None = None, root: Path | None = None) -> CheckResult:
    """Classes whose teacher falls back to the template sentence: the ready tasks' classes
    without descriptions, and, given the authors' teacher file and a data root, the data
    sets' classes the file does not name (a warning is logged for each)."""
    fallback = []
    for task in presets.load_tasks():
        for name in task.classes:
            if not task.descriptions.get(name):
                fallback.append(f"ready task {task.id}: {name}")
    if teacher_file is not None and root is not None:
        from core.reproduce.data import load_dataset
        from core.reproduce.data import find_datasets
        from core.reproduce.teachers import RELEASED_SENTENCES, choose_sentences, \
            read_teacher_file

        sentences = read_teacher_file(teacher_file)
        for folder in find_datasets(root, ()):
            ds = load_dataset(folder)
            choice = choose_sentences(sentences, ds.classnames, RELEASED_SENTENCES,
                                      teacher_file.name, ds.name)
            fallback += [f"{ds.name}: {name}" for name in choice.fallback]
    for item in fallback:
        log.warning("teacher falls back to the template sentence: %s", item)
    detail = (f"{len(fallback)} classes fall back to their template sentence: "
              f"{'; '.join(fallback)}" if fallback else "every class has its sentences")
    return CheckResult("teacher sentences", "passed", detail, {"fallback": fallback})


def run_doctor(backbone: str = "biomedclip", device: str | None = None,
               examples: Path = DEFAULT_EXAMPLES, tune_steps: int = 10,
               loaded: Backbone | None = None, teacher_file: Path | None = None,
               root: Path | None = None) -> DoctorReport:
    report = DoctorReport(versions=library_versions(), device=device_report(device),
                          backbone={"spec": backbone})
    if backbone == "biomedclip" and loaded is None:
        report.backbone["cache"] = biomedclip_cache_status()[1]
    bb = loaded
    if bb is None:
        started = time.perf_counter()
        try:
            bb = load_backbone(backbone, device)
        except BackboneUnavailable as exc:
            report.backbone["status"] = "not available"
            report.backbone["detail"] = str(exc)
            report.checks.append(CheckResult("real-weights checks", "skipped",
                                             "the backbone cannot be loaded (see above)"))
            return report
        report.backbone["load_s"] = round(time.perf_counter() - started, 2)
    report.backbone.update(status="loaded", name=bb.name, fingerprint=bb.fingerprint,
                           device=str(bb.device))
    report.checks.append(context_check(bb))
    try:
        report.checks.append(teacher_check(teacher_file, root))
    except StudioError as exc:
        report.checks.append(CheckResult("teacher sentences", "failed", str(exc)))
    try:
        found, notes = read_examples(examples)
    except FileNotFoundError:
        report.checks.append(CheckResult("example checks", "skipped",
                                         f"no manifest.json in {examples}"))
        return report
    except (OSError, ValueError) as exc:
        report.checks.append(CheckResult("example checks", "failed",
                                         f"the examples' manifest cannot be read ({exc})"))
        return report
    for note in notes:
        log.warning("examples: %s", note)
    for check in (lambda: modality_check(bb, found), lambda: tune_check(bb, found, tune_steps)):
        try:
            report.checks.append(check())
        except (StudioError, RuntimeError, OSError) as exc:
            report.checks.append(CheckResult("example check", "failed",
                                             f"{type(exc).__name__}: {exc}"))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.doctor",
        description="Check versions, device and cached weights; with the weights, check that the "
                    "real model, its tokenizer and this code agree on the example scans.")
    parser.add_argument("--backbone", default="biomedclip")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: the GPU if present)")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES,
                        help="folder with manifest.json and the example scans")
    parser.add_argument("--tune-steps", type=int, default=10)
    parser.add_argument("--teacher-file", type=Path, default=None,
                        help="the authors' prompt_templates.py (or JSON): with --root, warn for "
                             "every data set class it has no sentences for")
    parser.add_argument("--root", type=Path, default=None,
                        help="data sets in the public layout (see docs/reproduce.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run_doctor(args.backbone, args.device, args.examples, args.tune_steps,
                        teacher_file=args.teacher_file, root=args.root)
    print(report.format())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
