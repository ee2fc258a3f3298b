"""The paper's settings: protocols, methods, per-data-set templates and lambdas, and the
methods as settings of one prompt module (or baselines on cached features)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from core import presets
from core.backbone import Backbone
from core.errors import DatasetError, StudioError
from core.methods import (FITTED, METHODS, REGISTRY,  # noqa: F401 - METHODS is part of this API
                          TUNED, ZERO_SHOT, names)
from core.prompts import DualPrompt, PromptConfig
from core.reproduce.teachers import RELEASED_SENTENCES

PROTOCOLS = ("few-shot", "base-to-novel")
# the methods (core.methods), grouped as the protocols use them
PROMPT_METHODS = names(ZERO_SHOT, TUNED)
TUNED_METHODS = names(TUNED)  # prompt tuning
FITTED_BASELINES = names(FITTED)  # on the zero-shot features, no tuning
METHOD_TITLES = {m.name: m.title for m in REGISTRY}
DEFAULT_SHOTS = {"few-shot": (1, 2, 4, 8, 16), "base-to-novel": (16,)}
RUN_FORMAT = "biomed-dpt-run/1"


class ReproduceError(StudioError, ValueError):
    """The sweep's settings or its results folder cannot be used as asked."""


# --------------------------------------------------------------------------------------------
# Per-task settings of the paper (METHOD.md)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSettings:
    """One task's prompt settings. `n_ctx` is the paper's figure (it counts the words of
    `ctx_init`); with a text initialisation the context length is the word-piece count of
    `ctx_init`, which is what replaces the prefix (METHOD.md). It is used only for a random
    context (`ctx_init=""`)."""

    name: str
    template: str
    ctx_init: str | None
    n_ctx: int
    few_shot: tuple[float, float]  # (lambda1, lambda2)
    base_to_novel: tuple[float, float]
    aliases: tuple[str, ...] = ()
    n_ctx_given: bool = False  # --n-ctx: the context replaces that many template tokens

    def __post_init__(self) -> None:
        if self.n_ctx < 1:
            raise ReproduceError(f"n_ctx of {self.name} must be at least 1.")
        for pair in (self.few_shot, self.base_to_novel):
            if len(pair) != 2 or any(not math.isfinite(v) or v < 0 for v in pair):
                raise ReproduceError(f"The lambdas of {self.name} must be two numbers >= 0.")

    def lambdas(self, protocol: str) -> tuple[float, float]:
        return self.few_shot if protocol == "few-shot" else self.base_to_novel


def _paper_tasks() -> dict[str, TaskSettings]:
    """The paper's per-data-set settings, read from the ready tasks (assets/tasks, the one task
    table): each is shaped like one public data set and carries the paper's template (as in the
    authors' released code), context init, N_CTX and both protocols' lambdas."""
    out = {}
    for preset in presets.load_tasks():
        if preset.paper_base_to_novel is None or preset.paper_n_ctx is None:
            continue
        out[preset.shaped_like] = TaskSettings(
            preset.shaped_like, preset.template, preset.ctx_init, preset.paper_n_ctx,
            (preset.lambda_l1, preset.lambda_kl), preset.paper_base_to_novel,
            preset.shaped_like_aliases)
    return out


PAPER_TASKS: dict[str, TaskSettings] = _paper_tasks()

# METHOD.md's published averages over the 11 data sets (3 seeds), for the results file.
PUBLISHED_FEW_SHOT = {"CoOp": (50.18, 54.17, 59.77, 65.85, 69.72),
                      "CoCoOp": (48.53, 51.28, 54.69, 61.09, 65.10),
                      "KgCoOp": (52.16, 54.24, 59.21, 63.87, 64.85),
                      "ProGrad": (51.37, 54.40, 60.61, 65.50, 67.03),
                      "BiomedCoOp": (56.69, 58.58, 64.45, 68.84, 72.13),
                      "Biomed-DPT": (59.03, 61.27, 66.12, 70.76, 73.51)}
PUBLISHED_BASE_TO_NOVEL = {"BiomedCLIP zero-shot": (47.84, 65.42), "CoOp": (74.28, 67.93),
                           "BiomedCoOp": (76.16, 73.09), "Biomed-DPT": (78.06, 75.97)}


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def paper_settings(dataset: str) -> TaskSettings | None:
    """The built-in settings of a data set, by folder name (case, '-' and '_' ignored)."""
    key = _name_key(dataset)
    for task in PAPER_TASKS.values():
        if key in {_name_key(n) for n in (task.name, *task.aliases)}:
            return task
    return None


@dataclass(frozen=True)
class SettingsOverride:
    """Command-line replacements of the built-in per-task settings (None: keep)."""

    template: str | None = None
    ctx_init: str | None = None
    n_ctx: int | None = None
    lambda1: float | None = None
    lambda2: float | None = None


def task_settings(dataset: str, override: SettingsOverride = SettingsOverride()) -> TaskSettings:
    """Built-in settings with the overrides applied; a data set without built-in settings needs
    at least a template."""
    base = paper_settings(dataset)
    if base is None and override.template is None:
        raise DatasetError(f"There are no built-in settings for the data set {dataset!r} (known: "
                           f"{', '.join(PAPER_TASKS)}). Pass --template 'a CT photo of a {{}} in "
                           "the liver.' and, if you like, --ctx-init, --lambda1 and --lambda2.")
    if base is None:
        base = TaskSettings(dataset, override.template, None, 4, (12.5, 0.25), (12.5, 0.25))
    template = override.template or base.template
    ctx_init = base.ctx_init if override.template is None else None
    if override.ctx_init is not None:
        ctx_init = override.ctx_init
    fs, b2n = base.few_shot, base.base_to_novel
    if override.lambda1 is not None:
        fs, b2n = (override.lambda1, fs[1]), (override.lambda1, b2n[1])
    if override.lambda2 is not None:
        fs, b2n = (fs[0], override.lambda2), (b2n[0], override.lambda2)
    return replace(base, name=dataset, template=template, ctx_init=ctx_init,
                   n_ctx=override.n_ctx or base.n_ctx, few_shot=fs, base_to_novel=b2n,
                   n_ctx_given=override.n_ctx is not None)


# --------------------------------------------------------------------------------------------
# Described or released: how closely a sweep follows the authors' released code
# --------------------------------------------------------------------------------------------
MODES = ("described", "released")


@dataclass(frozen=True)
class Switches:
    """What differs between the method as METHOD.md describes it and the authors' released
    code (docs/reproduce.md). `--mode` sets them all; each can be set on its own (ablations).

    layout: "end" (context, then the rest of the template) or "middle" (the released code's
        layout, name_lens 1). Biomed-DPT only.
    vision: "insert" (201 tokens) or "overwrite" (197: the released code drops four patches).
    n_ctx: "words" (the word pieces of the context words) or "config" (the configs' N_CTX).
    schedule: "described" (8 cached crops, cosine from epoch 1) or "dassl" (a fresh crop every
        epoch, Dassl's warm-up recount).
    baselines: "described" (Biomed-DPT's template and settings) or "published" (each
        baseline's own released configuration).
    draws: "nested" (seeded per class, the K-shot sets of a seed nested) or "dassl" (the
        images Dassl's sampler draws for the seed; in base-to-novel over every class, then the
        base half kept, as the released code does).
    teacher_limit: sentences per class taken from a teacher file (the released code reads 50).
    """

    layout: str = "end"
    vision: str = "insert"
    n_ctx: str = "words"
    schedule: str = "described"
    baselines: str = "described"
    draws: str = "nested"
    teacher_limit: int | None = None

    CHOICES = {"layout": ("end", "middle"), "vision": ("insert", "overwrite"),
               "n_ctx": ("words", "config"), "schedule": ("described", "dassl"),
               "baselines": ("described", "published"), "draws": ("nested", "dassl")}

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ReproduceError(f"{name} must be one of {', '.join(allowed)}, not "
                                     f"{getattr(self, name)!r}.")
        if self.teacher_limit is not None and self.teacher_limit < 1:
            raise ReproduceError("The teacher's sentences per class must be at least 1.")

    @classmethod
    def for_mode(cls, mode: str, **changes) -> Switches:
        """Every switch of `mode`, then `changes` (None: keep the mode's)."""
        if mode not in MODES:
            raise ReproduceError(f"Unknown mode {mode!r}; use {' or '.join(MODES)}.")
        released = dict(layout="middle", vision="overwrite", n_ctx="config", schedule="dassl",
                        baselines="published", draws="dassl", teacher_limit=RELEASED_SENTENCES)
        settings = released if mode == "released" else {}
        return cls(**{**settings, **{k: v for k, v in changes.items() if v is not None}})

    @property
    def mode(self) -> str:
        """'described', 'released', or 'mixed' when the switches are of both."""
        for mode in MODES:
            if self == Switches.for_mode(mode):
                return mode
        return "mixed"

    def to_dict(self) -> dict:
        return {"layout": self.layout, "vision": self.vision, "n_ctx": self.n_ctx,
                "schedule": self.schedule, "baselines": self.baselines, "draws": self.draws,
                "teacher_limit": self.teacher_limit}


PUBLISHED_TEMPLATE = "a photo of a {}."  # the baselines' own template (CoOp, KgCoOp, BiomedCoOp)
PUBLISHED_CTX_INIT = "a photo of a"
# The baselines' per-data-set settings in their released configs (BiomedCoOp's repository):
# KgCoOp's weight W in few-shot runs (8.0 in every base-to-novel run), and BiomedCoOp's
# (SCCM: the MSE weight, KDSP: the KL weight, TAU: the pruning threshold) per protocol. BUSI
# has no base-to-novel configuration there; its few-shot values stand in.
RELEASED_KGCOOP_W = {"BTMRI": 2.0, "BUSI": 10.0, "CHMNIST": 1.0, "COVID-QU-Ex": 1.0,
                     "CTKidney": 8.0, "DermaMNIST": 8.0, "KneeXray": 4.0, "Kvasir": 6.0,
                     "LC25000": 8.0, "OCTMNIST": 1.0, "RETINA": 1.0}
RELEASED_KGCOOP_W_B2N = 8.0
RELEASED_BIOMEDCOOP = {
    "few-shot": {"BTMRI": (0.5, 0.25, 1.5), "BUSI": (0.75, 0.75, 1.5),
                 "CHMNIST": (0.25, 0.25, 1.5), "COVID-QU-Ex": (0.5, 2.0, 1.5),
                 "CTKidney": (1.0, 0.5, 1.5), "DermaMNIST": (5.0, 20.0, 1.5),
                 "KneeXray": (5.0, 20.0, 1.75), "Kvasir": (0.75, 0.75, 1.5),
                 "LC25000": (0.5, 0.5, 1.5), "OCTMNIST": (1.0, 0.75, 1.5),
                 "RETINA": (0.25, 0.25, 1.5)},
    "base-to-novel": {"BTMRI": (0.5, 0.5, 1.25), "BUSI": (0.75, 0.75, 1.5),
                      "CHMNIST": (10.0, 1.0, 1.5), "COVID-QU-Ex": (20.0, 1.0, 1.25),
                      "CTKidney": (10.0, 0.25, 1.25), "DermaMNIST": (2.0, 0.5, 1.5),
                      "KneeXray": (0.25, 3.0, 1.25), "Kvasir": (1.0, 1.0, 1.25),
                      "LC25000": (0.25, 0.75, 1.25), "OCTMNIST": (0.75, 0.5, 1.5),
                      "RETINA": (5.0, 1.0, 2.0)},
}
# The baselines' own training settings (batch, lr, text dropout) where they differ from the
# paper's recipe; BiomedCoOp trains as Biomed-DPT does.
RELEASED_TRAINING = {"coop": dict(batch_size=32, lr=0.002, text_dropout=False),
                     "kgcoop": dict(batch_size=128, lr=0.002, text_dropout=False)}


# --------------------------------------------------------------------------------------------
# Methods: settings of one prompt module, and the baselines on cached features
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodOptions:
    """Settings of the methods that METHOD.md's table does not give."""

    vision_prompts: int = 4
    kgcoop_weight: float = 8.0  # KgCoOp's default
    biomedcoop_mse: float = 1.0
    biomedcoop_kl: float = 1.0

    def __post_init__(self) -> None:
        for name in ("kgcoop_weight", "biomedcoop_mse", "biomedcoop_kl"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ReproduceError(f"{name} must be a number >= 0, not {value!r}.")

    def relevant(self, method: str) -> dict:
        """The options that change `method`'s results (recorded in its run file)."""
        return {"biomed-dpt": {"vision_prompts": self.vision_prompts},
                "kgcoop": {"kgcoop_weight": self.kgcoop_weight},
                "biomedcoop": {"biomedcoop_mse": self.biomedcoop_mse,
                               "biomedcoop_kl": self.biomedcoop_kl}}.get(method, {})


def prompt_config(method: str, settings: TaskSettings, protocol: str,
                  options: MethodOptions, switches: Switches = Switches()) -> PromptConfig:
    """The prompt module's settings that make it `method` on this task (baselines: those of
    the zero-shot classifier they start from). With published baselines every method but
    Biomed-DPT takes its own released configuration."""
    if method not in METHODS:
        raise ReproduceError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    prompt_method = method if method in PROMPT_METHODS else "zero-shot"
    if method != "biomed-dpt" and switches.baselines == "published":
        return _published_config(prompt_method, settings.name, protocol, options)
    fixed = settings.ctx_init == "" or settings.n_ctx_given
    common = dict(ctx_init=settings.ctx_init, n_ctx=settings.n_ctx if fixed else None)
    if method == "biomed-dpt":
        l1, l2 = settings.lambdas(protocol)
        common.update(n_vision_prompts=options.vision_prompts, lambda_l1=l1, lambda_kl=l2,
                      class_position=switches.layout, vision_mode=switches.vision)
        if switches.n_ctx == "config" and settings.ctx_init != "":
            common["n_ctx"] = settings.n_ctx
    elif method == "kgcoop":
        common.update(lambda_kg=options.kgcoop_weight)
    elif method == "biomedcoop":
        common.update(lambda_mse=options.biomedcoop_mse, lambda_kl=options.biomedcoop_kl)
    return PromptConfig.for_method(prompt_method, settings.template, **common)


def _published_config(method: str, dataset: str, protocol: str,
                      options: MethodOptions) -> PromptConfig:
    """A baseline as its own released code runs it: 'a photo of a {}.' with the context
    'a photo of a' (4 tokens), KgCoOp's and BiomedCoOp's per-data-set weights."""
    task = paper_settings(dataset)
    name = task.name if task else dataset
    common = dict(ctx_init=PUBLISHED_CTX_INIT)
    if method == "kgcoop":
        weight = RELEASED_KGCOOP_W_B2N if protocol == "base-to-novel" else \
            RELEASED_KGCOOP_W.get(name, options.kgcoop_weight)
        common.update(lambda_kg=weight)
    elif method == "biomedcoop":
        mse, kl, tau = RELEASED_BIOMEDCOOP[protocol].get(
            name, (options.biomedcoop_mse, options.biomedcoop_kl, 1.5))
        common.update(lambda_mse=mse, lambda_kl=kl, kl_teacher="batch", prune_tau=tau)
    return PromptConfig.for_method(method, PUBLISHED_TEMPLATE, **common)


def build_prompts(method: str, bb: Backbone, classnames: Sequence[str], cfg: PromptConfig,
                  descriptions: Mapping[str, Sequence[str]]) -> DualPrompt:
    """The prompt module of `method`; zero-shot (and the baselines' text classifier) is the
    untrained template classifier. Only the methods whose loss reads them get descriptions."""
    uses = cfg.uses_teacher and method in ("biomed-dpt", "biomedcoop")
    dp = DualPrompt(bb, classnames, cfg, descriptions if uses else None)
    return dp if method in TUNED_METHODS else dp.zero_shot()


