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
from core.prompts import DualPrompt, PromptConfig




PROTOCOLS = ("few-shot", "base-to-novel")
METHODS = ("zero-shot", "tip-adapter", "linear-probe", "coop", "kgcoop", "biomedcoop",
           "biomed-dpt")
PROMPT_METHODS = ("zero-shot", "coop", "kgcoop", "biomedcoop", "biomed-dpt")
TUNED_METHODS = ("coop", "kgcoop", "biomedcoop", "biomed-dpt")  # prompt tuning
FITTED_BASELINES = ("tip-adapter", "linear-probe")  # on the zero-shot features, no tuning
METHOD_TITLES = {"zero-shot": "BiomedCLIP zero-shot", "tip-adapter": "Tip-Adapter",
                 "linear-probe": "Linear probe (zero-shot init)", "coop": "CoOp",
                 "kgcoop": "KgCoOp-like", "biomedcoop": "BiomedCoOp-like",
                 "biomed-dpt": "Biomed-DPT"}
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
                   n_ctx=override.n_ctx or base.n_ctx, few_shot=fs, base_to_novel=b2n)


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
                  options: MethodOptions) -> PromptConfig:
    """The prompt module's settings that make it `method` on this task (baselines: those of
    the zero-shot classifier they start from)."""
    if method not in METHODS:
        raise ReproduceError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    common = dict(ctx_init=settings.ctx_init,
                  n_ctx=settings.n_ctx if settings.ctx_init == "" else None)
    if method == "biomed-dpt":
        l1, l2 = settings.lambdas(protocol)
        common.update(n_vision_prompts=options.vision_prompts, lambda_l1=l1, lambda_kl=l2)
    elif method == "kgcoop":
        common.update(lambda_kg=options.kgcoop_weight)
    elif method == "biomedcoop":
        common.update(lambda_mse=options.biomedcoop_mse, lambda_kl=options.biomedcoop_kl)
    prompt_method = method if method in PROMPT_METHODS else "zero-shot"
    return PromptConfig.for_method(prompt_method, settings.template, **common)


def build_prompts(method: str, bb: Backbone, classnames: Sequence[str], cfg: PromptConfig,
                  descriptions: Mapping[str, Sequence[str]]) -> DualPrompt:
    """The prompt module of `method`; zero-shot (and the baselines' text classifier) is the
    untrained template classifier. Only the methods whose loss reads them get descriptions."""
    uses = cfg.uses_teacher and method in ("biomed-dpt", "biomedcoop")
    dp = DualPrompt(bb, classnames, cfg, descriptions if uses else None)
    return dp if method in TUNED_METHODS else dp.zero_shot()


