"""How the prompts of a task are built: `PromptConfig`, a small self-validating dataclass.

Kept apart from `core.prompts` (which needs torch) so that presets and the app's interface can
check templates and settings without loading the deep-learning stack.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields

from core.errors import CheckpointError, PromptError
from core.methods import TUNED, ZERO_SHOT, names

MAX_VISION_PROMPTS = 64
KL_TEACHERS = ("mean", "pruned", "batch")
CLASS_POSITIONS = ("end", "middle")
VISION_MODES = ("insert", "overwrite")
def class_key(name: str) -> str:
    """What makes two class names the same class: case and repeated spaces do not count
    ("Normal  brain" is "normal brain"). The one comparison of class names in the project."""
    return " ".join(str(name).split()).casefold()


_NO_TERMS = dict(lambda_l1=0.0, lambda_kl=0.0, lambda_kg=0.0, lambda_mse=0.0, kl_teacher="mean")
# The prompt methods (core.methods: zero-shot and the tuned ones), as settings of one module
# (the loss terms are in core.losses)
METHOD_SETTINGS = {
    "zero-shot": dict(_NO_TERMS, n_vision_prompts=0),
    "coop": dict(_NO_TERMS, n_vision_prompts=0),
    "kgcoop": dict(_NO_TERMS, n_vision_prompts=0, lambda_kg=8.0),  # KgCoOp's default weight
    "biomedcoop": dict(_NO_TERMS, n_vision_prompts=0, lambda_mse=1.0, lambda_kl=1.0,
                       kl_teacher="pruned"),
    "biomed-dpt": dict(_NO_TERMS, n_vision_prompts=4, lambda_l1=12.5, lambda_kl=0.25),
}
METHODS = names(ZERO_SHOT, TUNED)


@dataclass(frozen=True)
class PromptConfig:
    """How the prompts are built. Validates itself; every error says how to fix it.

    template: the clinical sentence with `{}` where the class name goes.
    ctx_init: the words the learnable context starts from and replaces. None: the template's text
        before `{}`. "": no words, a random context of `n_ctx` vectors placed before the template.
    n_ctx: the context length. For a random context, its length (default 4). With context
        words, None (the default) makes the context exactly their word pieces; a number makes it
        replace the template's first `n_ctx` tokens whatever they are, starting from the first
        `n_ctx` token embeddings of the context words (the released code's N_CTX: cut short, or
        continued with the end-of-text and padding embeddings).
    class_position: "end" (METHOD.md: the context, then the rest of the template) or "middle"
        (the released code's layout: the one token after the context moves between its halves,
        e.g. `[CLS] c c glioma c c c tumor in the brain . [SEP]`).
    vision_mode: "insert" (the prompts go after the class token: 1 + P + 196 tokens) or
        "overwrite" (the released code: they replace the first P patch tokens before every block).
    The weights of the loss terms (see `core.losses`): lambda_l1 and lambda_kl (Biomed-DPT's
    L1 and KL to the teacher), lambda_kg (KgCoOp's cosine to the template), lambda_mse
    (BiomedCoOp's MSE to the description means); kl_teacher: "mean" (every description),
    "pruned" (BiomedCoOp's outliers dropped once) or "batch" (BiomedCoOp's released pruning,
    per batch, of the sentences scoring more than `prune_tau` standard deviations from the mean).
    """

    template: str = "a photo of a {}."
    ctx_init: str | None = None
    n_ctx: int | None = None
    n_vision_prompts: int = 4
    lambda_l1: float = 12.5
    lambda_kl: float = 0.25
    init_seed: int = 0
    lambda_kg: float = 0.0
    lambda_mse: float = 0.0
    kl_teacher: str = "mean"
    class_position: str = "end"
    vision_mode: str = "insert"
    prune_tau: float = 1.5

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or self.template.count("{}") != 1:
            raise PromptError(f"The template {self.template!r} must contain exactly one '{{}}' "
                              "where the class name goes, e.g. 'a MR photo of a {} in the brain.'",
                              key="template_one_slot", template=repr(self.template))
        if re.search(r"\{[^}]|[^{]\}|\{\{|\}\}", self.template.replace("{}", "")):
            raise PromptError(f"The template {self.template!r} has stray braces; keep only one '{{}}'.")
        prefix = self.template_prefix
        if self.ctx_init:
            init = " ".join(self.ctx_init.split())
            if not prefix.startswith(init):
                if len(init) > len(prefix):
                    raise PromptError(
                        f"The context words {self.ctx_init!r} are longer than the part of the "
                        f"template before the class name ({prefix!r}); they must be its start.")
                raise PromptError(f"The context words {self.ctx_init!r} must be the start of the "
                                  f"template's text before the class name ({prefix!r}).")
            if len(init) < len(prefix) and prefix[len(init)] != " ":
                raise PromptError(f"The context words {self.ctx_init!r} must end at a word "
                                  f"boundary of the template ({prefix!r}).")
        if self.n_ctx is not None and (not isinstance(self.n_ctx, int) or not 1 <= self.n_ctx <= 64):
            raise PromptError(f"n_ctx must be a whole number from 1 to 64, not {self.n_ctx!r}.")
        if not isinstance(self.n_vision_prompts, int) or not 0 <= self.n_vision_prompts <= MAX_VISION_PROMPTS:
            raise PromptError(f"n_vision_prompts must be a whole number from 0 to "
                              f"{MAX_VISION_PROMPTS}, not {self.n_vision_prompts!r}.")
        if self.class_position not in CLASS_POSITIONS:
            raise PromptError(f"class_position must be one of {', '.join(CLASS_POSITIONS)}, not "
                              f"{self.class_position!r}.")
        if self.vision_mode not in VISION_MODES:
            raise PromptError(f"vision_mode must be one of {', '.join(VISION_MODES)}, not "
                              f"{self.vision_mode!r}.")
        if not isinstance(self.prune_tau, (int, float)) or not self.prune_tau > 0:
            raise PromptError(f"prune_tau must be a number > 0, not {self.prune_tau!r}.")
        if self.kl_teacher not in KL_TEACHERS:
            raise PromptError(f"kl_teacher must be one of {', '.join(KL_TEACHERS)}, not "
                              f"{self.kl_teacher!r}.")
        for name in ("lambda_l1", "lambda_kl", "lambda_kg", "lambda_mse"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PromptError(f"{name} must be a number >= 0, not {value!r}.")

    @property
    def template_prefix(self) -> str:
        """The template's words before the class name."""
        return " ".join(self.template.split("{}")[0].split())

    @property
    def context_words(self) -> str:
        """The words the context is initialised from ('' for a random context)."""
        return self.template_prefix if self.ctx_init is None else " ".join(self.ctx_init.split())

    @property
    def uses_teacher(self) -> bool:
        """Whether a loss term needs the class descriptions' features."""
        return self.lambda_l1 > 0 or self.lambda_kl > 0 or self.lambda_mse > 0

    @classmethod
    def coop(cls, template: str, **changes) -> PromptConfig:
        """CoOp: learnable text context only; no vision prompts, no teacher."""
        return cls.for_method("coop", template, **changes)

    @classmethod
    def for_method(cls, method: str, template: str, **changes) -> PromptConfig:
        """The prompt module's settings that make it `method` (one of METHODS). Zero-shot is
        the plain template classifier: nothing is learned, no vision prompts."""
        if method not in METHOD_SETTINGS:
            raise PromptError(f"Unknown method {method!r} for the prompt module; choose from "
                              f"{', '.join(METHODS)}.")
        return cls(template=template, **{**METHOD_SETTINGS[method], **changes})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PromptConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"Unknown prompt settings {sorted(unknown)}: the file was made by "
                                  "a newer version of the app.")
        return cls(**data)
