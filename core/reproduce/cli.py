"""`python -m core.reproduce`: the command line."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence


from core.errors import StudioError
from core.features import DEFAULT_STORE_DIR

from core.reproduce.settings import (METHODS, MODES, MethodOptions, PROTOCOLS, SettingsOverride,
                                     Switches)
from core.reproduce.runs import Options
from core.reproduce.sweep import run_sweep

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole "
                                         "numbers") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.reproduce",
                                description="Reproduce the Biomed-DPT paper's tables on data sets "
                                            "in the public layout (see docs/reproduce.md).")
    p.add_argument("--root", type=Path, required=True, help="folder holding one folder per data set")
    p.add_argument("--datasets", type=_names, default=(), help="comma list (default: all under --root)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="few-shot")
    p.add_argument("--shots", type=_ints, default=None,
                   help="comma list of K (default: 1,2,4,8,16 few-shot; 16 base-to-novel)")
    p.add_argument("--seeds", type=_ints, default=(1, 2, 3))
    p.add_argument("--methods", type=_names, default=METHODS, help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--backbone", default="biomedclip")
    p.add_argument("--recipe", choices=("paper", "fast"), default="paper")
    p.add_argument("--epochs", type=int, default=None, help="paper recipe: epochs (default 100 / 50)")
    p.add_argument("--steps", type=int, default=None, help="fast recipe: steps (default 100)")
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_STORE_DIR)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the GPU if present)")
    p.add_argument("--max-test", type=int, default=None, help="cap test images (quick looks)")
    p.add_argument("--batch-size", type=int, default=64, help="images per encoding batch")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("per-task settings (default: METHOD.md's table)")
    g.add_argument("--template", default=None, help="e.g. 'a CT photo of a {} in the liver.'")
    g.add_argument("--ctx-init", default=None, help="context words ('' for a random context)")
    g.add_argument("--n-ctx", type=int, default=None,
                   help="context length; with context words it replaces that many template "
                        "tokens (as the configs' N_CTX), else a random context's length")
    g.add_argument("--lambda1", type=float, default=None)
    g.add_argument("--lambda2", type=float, default=None)
    g = p.add_argument_group(
        "described or released (docs/reproduce.md): --mode sets every switch; each switch "
        "alone overrides it")
    g.add_argument("--mode", choices=MODES, default="described",
                   help="described: METHOD.md; released: the authors' released code")
    for name, allowed in Switches.CHOICES.items():
        flag, text = SWITCH_HELP[name]
        g.add_argument(flag, dest=f"switch_{name}", choices=allowed, default=None, help=text)
    g.add_argument("--teacher-file", type=Path, default=None,
                   help="the authors' trainers/prompt_templates.py (read, never run) or a JSON "
                        "{class: [sentences]}: the teacher's sentences")
    g.add_argument("--teacher-sentences", type=int, default=None,
                   help="sentences per class from the teacher file (released: 50; else all)")
    g.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the sweep's runs on Ray: 'local' (this machine) or a cluster "
                        "address (ray://host:10001)")
    g.add_argument("--ray-workers", type=int, default=None,
                   help="Ray workers (default: one per GPU of the cluster, else one per CPU)")
    g = p.add_argument_group("ablation methods")
    g.add_argument("--vision-prompts", type=int, default=4)
    g.add_argument("--kgcoop-weight", type=float, default=8.0)
    g.add_argument("--biomedcoop-mse", type=float, default=1.0)
    g.add_argument("--biomedcoop-kl", type=float, default=1.0)
    return p


SWITCH_HELP = {  # switch -> (flag, help)
    "layout": ("--layout", "Biomed-DPT's prompt layout: end (METHOD.md) or middle (released, "
                           "name_lens 1)"),
    "vision": ("--vision", "vision prompts inserted (201 tokens) or overwriting four patches "
                           "(197, released)"),
    "n_ctx": ("--n-ctx-from", "Biomed-DPT's context length: the word pieces of the context "
                              "words, or the configs' N_CTX (released)"),
    "schedule": ("--schedule", "paper recipe: 8 cached crops (described) or a fresh crop every "
                               "epoch with Dassl's warm-up recount (released)"),
    "baselines": ("--baselines", "CoOp, KgCoOp, BiomedCoOp, zero-shot with Biomed-DPT's template "
                                 "and settings (described) or their own published ones"),
    "draws": ("--draws", "the K-shot images: nested per seed (described) or those Dassl's "
                         "sampler draws (released)"),
}


def switches_from_args(args: argparse.Namespace) -> Switches:
    changes = {name: getattr(args, f"switch_{name}") for name in Switches.CHOICES}
    return Switches.for_mode(args.mode, teacher_limit=args.teacher_sentences, **changes)


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        root=args.root, out=args.out, datasets=args.datasets, protocol=args.protocol,
        shots=args.shots, seeds=args.seeds, methods=args.methods, backbone=args.backbone,
        recipe=args.recipe, epochs=args.epochs, steps=args.steps, cache_dir=args.cache_dir,
        device=args.device, max_test=args.max_test, force=args.force, batch_size=args.batch_size,
        progress=not args.no_progress,
        override=SettingsOverride(args.template, args.ctx_init, args.n_ctx, args.lambda1,
                                  args.lambda2),
        method_options=MethodOptions(args.vision_prompts, args.kgcoop_weight,
                                     args.biomedcoop_mse, args.biomedcoop_kl),
        switches=switches_from_args(args), teacher_file=args.teacher_file, ray=args.ray,
        ray_workers=args.ray_workers)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        options = options_from_args(args)
        with logging_redirect_tqdm():
            summary = run_sweep(options)
    except StudioError as exc:
        log.error("%s", exc)
        return 2
    print(summary.markdown)
    print(f"{summary.ran} run(s) done, {summary.skipped} skipped; tables in "
          f"{summary.results_md} and {summary.results_csv}")
    return 0


