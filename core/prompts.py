"""The dual-modality prompt module of Biomed-DPT (see METHOD.md), and the methods it generalises.

Text side: one learnable context `ctx` (n_ctx, text width) shared by every class, initialised from
the word embeddings of the clinical template's prefix, replacing that prefix in each class prompt:
    [start] ctx_1 .. ctx_n  <rest of the template with the class name>  [end]
Vision side: `n_vision_prompts` zero tokens inserted after the class token and reset to zero before
every block of the frozen image tower; never trained.
Teacher: per-class averages of the frozen text features of the class descriptions.
Loss: CE + lambda_l1 * L1(student text, teacher) + lambda_kl * KL(teacher logits || student logits).

Zero-shot, CoOp, KgCoOp, BiomedCoOp and Biomed-DPT are settings of this one module
(`PromptConfig.for_method`); the loss terms are the pure functions of `core.losses`. The
zero-shot classifier (`zero_shot()`) is always the plain template: its text features are the
template sentences', whatever the context settings.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import losses
from core.backbone import Backbone, full_precision
from core.errors import CheckpointError, PromptError, quoted
from core.prompt_config import (MAX_VISION_PROMPTS, METHOD_SETTINGS, METHODS,  # noqa: F401
                                PromptConfig, class_key)

CHECKPOINT_FORMAT = "biomed-dpt-prompts"
CHECKPOINT_VERSION = 1
MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024
MAX_CLASSES = 100
_TEXT_BATCH = 32


class DualPrompt(nn.Module):
    """Learnable text context + zero vision prompts + teacher, over a frozen backbone."""

    def __init__(self, backbone: Backbone, classnames: Sequence[str],
                 cfg: PromptConfig | None = None,
                 descriptions: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__()
        self.backbone = backbone  # not a submodule: frozen, shared, never saved with the prompts
        self.cfg = cfg or PromptConfig()
        self.classnames = _checked_classnames(classnames)
        self.descriptions = _checked_descriptions(descriptions, self.classnames)

        context_ids = self._content_ids(self.cfg.context_words) if self.cfg.context_words else []
        # a fixed span: the context replaces the template's first n_ctx tokens (released N_CTX)
        fixed = bool(context_ids) and self.cfg.n_ctx is not None
        n_ctx = self.cfg.n_ctx if fixed else (len(context_ids) or (self.cfg.n_ctx or 4))
        ids, lengths = self._prompt_ids(n_ctx, fixed)
        device = backbone.device
        self.register_buffer("token_ids", ids.to(device), persistent=False)
        self.register_buffer("lengths", lengths.to(device), persistent=False)
        with torch.no_grad():
            self.register_buffer("token_embeds", backbone.embed_tokens(self.token_ids).clone(),
                                 persistent=False)
            if fixed:  # the first n_ctx tokens of the context words as the tokenizer pads them
                start, end = backbone.special_ids
                padded = [start, *context_ids, end]
                padded += [backbone.pad_id] * max(0, n_ctx + 1 - len(padded))
                words = torch.tensor([padded[:n_ctx + 1]], device=device)
                init = backbone.embed_tokens(words)[0, 1:].clone()
            elif context_ids:
                init = self.token_embeds[0, 1:1 + n_ctx].clone()
            else:
                gen = torch.Generator().manual_seed(self.cfg.init_seed)
                init = torch.randn(n_ctx, backbone.text_width, generator=gen).mul_(0.02).to(device)
        self.ctx = nn.Parameter(init)
        self.register_buffer("vision_prompts",
                             torch.zeros(self.cfg.n_vision_prompts, backbone.image_width, device=device),
                             persistent=False)
        self.plain = False  # the zero-shot classifier: text features are the template's
        self._sentences: tuple[torch.Tensor, list[int]] | None = None
        self._targets: dict[str, torch.Tensor] = {}
        self._text_cache: tuple[tuple, torch.Tensor] | None = None

    # ---- prompt construction ----------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.ctx.shape[0]

    def prompts(self) -> list[str]:
        """The plain template sentence of each class (what ctx equals at initialisation)."""
        return [self.cfg.template.format(name) for name in self.classnames]

    def _content_ids(self, text: str) -> list[int]:
        return self.backbone.text_ids([text])[0][1:-1]

    def _prompt_ids(self, n_ctx: int, fixed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """[start] ctx-placeholders rest-of-template [end] per class, padded; and real lengths.
        `fixed`: the placeholders are the template's own first `n_ctx` tokens."""
        bb = self.backbone
        start, end = bb.special_ids
        words = self.cfg.context_words.split()
        matched = re.match(r"\s*" + r"\s+".join(map(re.escape, words)), self.cfg.template)
        rest_template = self.cfg.template[matched.end():] if words else self.cfg.template
        context_ids = self._content_ids(self.cfg.context_words) if words else []
        rows = []
        for name in self.classnames:
            if fixed:
                row = bb.text_ids([self.cfg.template.format(name)])[0]
                if len(row) < n_ctx + 2:
                    raise PromptError(
                        f"The prompt for {name!r} is {len(row)} tokens; a context of {n_ctx} "
                        f"replaces its first {n_ctx} and needs at least one more. Lower n_ctx.")
            else:
                rest = rest_template.format(name).strip()
                rest_ids = self._content_ids(rest) if rest else []
                row = [start] + (context_ids or [start] * n_ctx) + rest_ids + [end]
            if len(row) > bb.context_length:
                raise PromptError(
                    f"The prompt for {name!r} is {len(row)} tokens; the model reads at most "
                    f"{bb.context_length}. Shorten the template, the class name or the context.")
            if context_ids and not fixed and row != bb.text_ids([self.cfg.template.format(name)])[0]:
                raise PromptError(f"The template cannot be split into context words and the rest "
                                  f"for class {name!r}; put a space after the context words.")
            rows.append(row)
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), bb.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, torch.tensor([len(r) for r in rows])

    # ---- features ---------------------------------------------------------------------------
    def text_features(self, dropout: bool = False) -> torch.Tensor:
        """(C, D) L2-normalised features of the learned prompts. Cached while ctx is unchanged
        and no gradient is being recorded. `dropout`: the text tower's dropout active (training
        as the released code does)."""
        if self.plain:
            return self.template_features()
        caching = not torch.is_grad_enabled() and not dropout
        key = (self.ctx._version, torch.is_autocast_enabled(self.ctx.device.type))
        if caching and self._text_cache is not None and self._text_cache[0] == key:
            return self._text_cache[1]
        embeds = self.prompt_embeds()
        feats = F.normalize(self.backbone.encode_text_embeds(embeds, self.lengths, dropout).float(),
                            dim=-1)
        if caching:
            self._text_cache = (key, feats)
        return feats

    def prompt_embeds(self) -> torch.Tensor:
        """(C, L, width) token embeddings of the class prompts with the context in place:
        [start] ctx rest [end] ("end"), or [start] ctx[:n//2] <the token after the context>
        ctx[n//2:] rest [end] ("middle", the released layout)."""
        n = self.n_ctx
        embeds = self.token_embeds
        ctx = self.ctx.to(embeds.dtype).unsqueeze(0).expand(embeds.shape[0], -1, -1)
        if self.cfg.class_position == "middle":
            half = n // 2
            return torch.cat([embeds[:, :1], ctx[:, :half], embeds[:, 1 + n:2 + n],
                              ctx[:, half:], embeds[:, 2 + n:]], dim=1)
        return torch.cat([embeds[:, :1], ctx, embeds[:, 1 + n:]], dim=1)

    def teacher_features(self) -> torch.Tensor:
        """(C, D) L2-normalised teacher: per class, the mean of its normalised description
        features (its template sentence when it has none), normalised again."""
        return self._target("teacher")

    def pruned_teacher_features(self) -> torch.Tensor:
        """(C, D) the teacher after BiomedCoOp's outlier pruning of the descriptions."""
        return self._target("pruned")

    @torch.no_grad()
    def batch_pruned_teacher(self, image_feats: torch.Tensor) -> torch.Tensor:
        """(C, D) BiomedCoOp's teacher as its released code makes it for each batch: the
        description sentences (by their rank within each class) whose scores on these images
        are within `prune_tau` standard deviations of the mean are averaged."""
        feats, owner = self._description_features()
        sentences = losses.ranked_sentences(feats, owner, len(self.classnames))
        return losses.batch_pruned_means(sentences, image_feats.float(),
                                         float(self.backbone.logit_scale), self.cfg.prune_tau)

    def template_features(self) -> torch.Tensor:
        """(C, D) L2-normalised features of the plain template sentences (the zero-shot
        classifier; KgCoOp's anchor)."""
        return self._target("template")

    def _target(self, which: str) -> torch.Tensor:
        """The frozen text targets, each computed once per module."""
        if which not in self._targets:
            if which == "template":
                self._targets[which] = self.encode_sentences(self.prompts())
            else:
                feats, owner = self._description_features()
                n = len(self.classnames)
                self._targets[which] = (losses.class_means(feats, owner, n) if which == "teacher"
                                        else losses.pruned_means(feats, owner, n)[0])
        return self._targets[which]

    def _description_features(self) -> tuple[torch.Tensor, list[int]]:
        if self._sentences is None:
            sentences, owner = [], []
            for c, name in enumerate(self.classnames):
                texts = self.descriptions.get(name) or [self.cfg.template.format(name)]
                sentences += texts
                owner += [c] * len(texts)
            self._sentences = (self.encode_sentences(sentences), owner)
        return self._sentences

    @torch.no_grad()
    def encode_sentences(self, sentences: Sequence[str]) -> torch.Tensor:
        """(N, D) L2-normalised frozen-tower features of plain sentences, each truncated to its
        real tokens (identical to padding to the full context)."""
        bb = self.backbone
        ids = bb.text_ids(list(sentences))
        out = []
        for i in range(0, len(ids), _TEXT_BATCH):
            chunk = ids[i:i + _TEXT_BATCH]
            length = max(len(r) for r in chunk)
            batch = torch.full((len(chunk), length), bb.pad_id, dtype=torch.long)
            for j, row in enumerate(chunk):
                batch[j, : len(row)] = torch.tensor(row)
            batch = batch.to(bb.device)
            lengths = torch.tensor([len(r) for r in chunk], device=bb.device)
            out.append(bb.encode_text_embeds(bb.embed_tokens(batch), lengths).float())
        return F.normalize(torch.cat(out), dim=-1)

    def image_features(self, pixels: torch.Tensor, precision: str | None = None) -> torch.Tensor:
        """(B, 3, H, W) preprocessed pixels -> (B, D) L2-normalised on the device, this
        module's vision prompts applied (through `core.features.encode`); `precision` None:
        the caller's autocast context."""
        from core.features import encode

        feats = encode(self.backbone, pixels, vision_prompts=self.cfg.n_vision_prompts,
                       precision=precision, vision_mode=self.cfg.vision_mode)
        return feats.to(self.backbone.device)

    def logits(self, image_feats: torch.Tensor, text_feats: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) = logit_scale * f @ t.T with the learned prompts (or the given text features),
        always in fp32: the towers may run under bf16 autocast, the scores never do."""
        text = self.text_features() if text_feats is None else text_feats
        with full_precision(image_feats.device):
            return self.backbone.logit_scale.float() * image_feats.float() @ text.float().T

    @torch.no_grad()
    def predict_proba(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C) class probabilities (fp32) for preprocessed pixels."""
        logits = self.logits(self.image_features(pixels))
        with full_precision(logits.device):
            return logits.softmax(dim=-1)

    # ---- loss -------------------------------------------------------------------------------
    def loss(self, image_feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """L = CE + lambda_l1 * L1 + lambda_kl * KL; returns (total, parts as floats)."""
        total, parts, _ = self.loss_and_logits(image_feats, labels)
        return total, parts

    def loss_and_logits(self, image_feats: torch.Tensor, labels: torch.Tensor,
                        dropout: bool = False
                        ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """The loss of this module's method (fp32 whatever the towers' precision), its parts
        and the logits. The terms with zero weight are neither computed nor reported, except
        Biomed-DPT's l1 and kl, always reported (0.0 when unused)."""
        cfg = self.cfg
        text = self.text_features(dropout)
        logits = self.logits(image_feats, text)
        with full_precision(logits.device):
            ce = losses.cross_entropy(logits, labels)
            total = ce
            parts = {"ce": ce, "l1": torch.zeros(()), "kl": torch.zeros(())}
            if cfg.lambda_l1 > 0:
                parts["l1"] = losses.l1_to(text, self.teacher_features())
                total = total + cfg.lambda_l1 * parts["l1"]
            if cfg.lambda_kl > 0:
                if cfg.kl_teacher == "batch":
                    teacher = self.batch_pruned_teacher(image_feats)
                elif cfg.kl_teacher == "pruned":
                    teacher = self.pruned_teacher_features()
                else:
                    teacher = self.teacher_features()
                parts["kl"] = losses.kl_to_teacher(logits, self.logits(image_feats, teacher))
                total = total + cfg.lambda_kl * parts["kl"]
            if cfg.lambda_kg > 0:
                parts["kg"] = losses.cosine_gap(text, self.template_features())
                total = total + cfg.lambda_kg * parts["kg"]
            if cfg.lambda_mse > 0:
                parts["mse"] = losses.mse_to(text, self.teacher_features())
                total = total + cfg.lambda_mse * parts["mse"]
        return total, {k: float(v.item()) for k, v in parts.items()}, logits

    # ---- variants ---------------------------------------------------------------------------
    def with_classes(self, classnames: Sequence[str],
                     descriptions: Mapping[str, Sequence[str]] | None = None) -> DualPrompt:
        """The same learned context over other class names (e.g. novel classes)."""
        other = DualPrompt(self.backbone, classnames, self.cfg, descriptions)
        if other.n_ctx != self.n_ctx:
            raise PromptError("The new classes need a different context length.")
        with torch.no_grad():
            other.ctx.copy_(self.ctx)
        other.plain = self.plain
        return other.train(self.training)

    def copy(self) -> DualPrompt:
        """An independent module with the same classes, settings and context, sharing the
        frozen text targets already computed (they never change)."""
        other = self.with_classes(self.classnames, self.descriptions)
        other._sentences, other._targets = self._sentences, dict(self._targets)
        return other

    def zero_shot(self) -> DualPrompt:
        """The plain BiomedCLIP classifier for the same task: the template sentences' features,
        no vision prompts, nothing learned (also when the template starts with the class name
        or the context is random)."""
        cfg = replace(self.cfg, **{k: v for k, v in METHOD_SETTINGS["zero-shot"].items()})
        dp = DualPrompt(self.backbone, self.classnames, cfg, self.descriptions)
        dp.plain = True
        return dp.eval()

    # ---- checkpoints ------------------------------------------------------------------------
    def save(self, path: str | Path, info: Mapping[str, object] | None = None) -> Path:
        """Write the learned context as safetensors, with everything needed to rebuild the
        module as JSON metadata. `info` (JSON-serialisable) is stored alongside, e.g. how it
        was trained."""
        return write_prompts(path, self.ctx, self.classnames, self.cfg, self.descriptions,
                             self.backbone.name, self.backbone.fingerprint, info)

    # ---- as plain data ----------------------------------------------------------------------
    @torch.no_grad()
    def state(self) -> PromptState:
        """This module as plain CPU data: what a session keeps and what crosses a process
        boundary. Holds its classifier's text features and the frozen targets computed so far."""
        return PromptState(
            classnames=list(self.classnames), descriptions=dict(self.descriptions), cfg=self.cfg,
            ctx=self.ctx.detach().to("cpu", torch.float32).clone(), plain=self.plain,
            text=self.text_features().detach().to("cpu", torch.float32).clone(),
            logit_scale=float(self.backbone.logit_scale), backbone=self.backbone.name,
            fingerprint=self.backbone.fingerprint,
            targets={k: v.detach().to("cpu", torch.float32) for k, v in self._targets.items()},
            info=dict(getattr(self, "info", {}) or {}))

    @classmethod
    def from_state(cls, backbone: Backbone, state: PromptState) -> DualPrompt:
        """The module a `state` describes, over `backbone` (which must be the one it was made
        on), with its frozen targets already computed."""
        if state.fingerprint != backbone.fingerprint:
            raise CheckpointError(
                f"These prompts were made on another model ({state.backbone}); the loaded model "
                f"is {backbone.name}.", key="prompts_other_model", other=state.backbone,
                model=backbone.name)
        dp = cls(backbone, state.classnames, state.cfg, state.descriptions)
        if state.ctx is not None:
            with torch.no_grad():
                dp.ctx.copy_(state.ctx.to(dp.ctx.device))
        dp.plain = state.plain
        dp._targets = {k: v.to(backbone.device) for k, v in state.targets.items()}
        dp.info = dict(state.info)
        return dp.eval()

    @classmethod
    def load(cls, path: str | Path, backbone: Backbone) -> DualPrompt:
        """Rebuild a module saved by `save`. Strict: the file must be a prompt file of this
        format, made for this backbone, holding exactly the expected tensor."""
        tensors, meta = read_checkpoint(path)
        if meta["backbone_fingerprint"] != backbone.fingerprint:
            raise CheckpointError(
                f"These prompts were tuned on another model ({meta['backbone']}); the loaded model "
                f"is {backbone.name}. Start the app with that model to use them.",
                key="prompts_other_model", other=meta["backbone"], model=backbone.name)
        try:
            cfg = PromptConfig.from_json(meta["config"])
            classnames = json.loads(meta["classnames"])
            descriptions = json.loads(meta["descriptions"])
            dp = cls(backbone, classnames, cfg, descriptions)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"The prompt file's settings are not valid ({exc}).",
                                  key="prompt_file_settings", **quoted(exc)) from exc
        ctx = tensors["ctx"]
        if tuple(ctx.shape) != tuple(dp.ctx.shape):
            raise CheckpointError(f"The prompt file's context has shape {tuple(ctx.shape)}; this "
                                  f"model and template need {tuple(dp.ctx.shape)}.",
                                  key="prompt_file_shape", found=str(tuple(ctx.shape)),
                                  need=str(tuple(dp.ctx.shape)))
        with torch.no_grad():
            dp.ctx.copy_(ctx.to(dp.ctx.device))
        dp.info = json.loads(meta.get("info") or "{}")
        return dp.eval()


@dataclass
class PromptState:
    """A prompt module as plain CPU data (no model): classes, settings, the learned context,
    the classifier's text features (C, D) and the frozen targets. Scores, saves and pickles
    without the backbone; `DualPrompt.from_state` rebuilds the module where the model is.
    `untrained` describes a module still to be tuned (no context yet, no text features)."""

    classnames: list[str]
    descriptions: dict[str, list[str]]
    cfg: PromptConfig
    ctx: torch.Tensor | None
    plain: bool
    text: torch.Tensor | None
    logit_scale: float
    backbone: str
    fingerprint: str
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @classmethod
    def untrained(cls, classnames: Sequence[str], descriptions: Mapping[str, Sequence[str]],
                  cfg: PromptConfig, backbone: str, fingerprint: str,
                  targets: Mapping[str, torch.Tensor] | None = None) -> PromptState:
        """A module to tune: its context starts as `DualPrompt` initialises it; `targets`
        (frozen text targets computed before for the same task) are reused."""
        return cls(list(classnames), {k: list(v) for k, v in descriptions.items()}, cfg, None,
                   False, None, 0.0, backbone, fingerprint, dict(targets or {}))

    def logits(self, image_feats: torch.Tensor) -> torch.Tensor:
        """(B, C) scores of L2-normalised image features, in fp32."""
        return self.logit_scale * image_feats.float().cpu() @ self.text.T

    def proba(self, image_feats: torch.Tensor) -> torch.Tensor:
        return self.logits(image_feats).softmax(dim=-1)

    def save(self, path: str | Path, info: Mapping[str, object] | None = None) -> Path:
        """The same prompt file as `DualPrompt.save`."""
        return write_prompts(path, self.ctx, self.classnames, self.cfg, self.descriptions,
                             self.backbone, self.fingerprint, info)


def write_prompts(path: str | Path, ctx: torch.Tensor, classnames: Sequence[str],
                  cfg: PromptConfig, descriptions: Mapping[str, Sequence[str]], backbone: str,
                  fingerprint: str, info: Mapping[str, object] | None = None) -> Path:
    """A prompt file: the context as safetensors, the rest as JSON metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_VERSION),
        "backbone": backbone,
        "backbone_fingerprint": fingerprint,
        "classnames": json.dumps(list(classnames)),
        "config": cfg.to_json(),
        "descriptions": json.dumps(dict(descriptions)),
        "info": json.dumps(dict(info or {})),
    }
    save_file({"ctx": ctx.detach().to("cpu", torch.float32).contiguous()}, str(path),
              metadata=metadata)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a prompt file, checked; never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"The prompt file {path.name} cannot be read ({exc}).",
                              key="prompt_file_unreadable", name=path.name) from exc
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name} is {size / 2**20:.0f} MB; a prompt file is a few "
                              "kilobytes. Choose the .safetensors file the app saved.",
                              key="prompt_file_too_big", name=path.name, mb=f"{size / 2**20:.0f}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name} is not a prompt file saved by this app (it must be a "
                              ".safetensors file).", key="prompt_file_not_safetensors",
                              name=path.name) from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path.name} is a safetensors file but not a prompt file saved by "
                              "this app.", key="prompt_file_foreign", name=path.name)
    if meta.get("format_version") != str(CHECKPOINT_VERSION):
        raise CheckpointError(f"{path.name} has prompt-file version {meta.get('format_version')}; "
                              f"this app reads version {CHECKPOINT_VERSION}.",
                              key="prompt_file_version", name=path.name,
                              found=str(meta.get("format_version")), version=CHECKPOINT_VERSION)
    missing = {"backbone", "backbone_fingerprint", "classnames", "config", "descriptions"} - set(meta)
    if missing:
        raise CheckpointError(f"{path.name} lacks {sorted(missing)}; it is incomplete.",
                              key="prompt_file_incomplete", name=path.name, keys=str(sorted(missing)))
    if set(tensors) != {"ctx"}:
        raise CheckpointError(f"{path.name} holds tensors {sorted(tensors)}; a prompt file holds "
                              "exactly one, 'ctx'.", key="prompt_file_tensors", name=path.name,
                              tensors=str(sorted(tensors)))
    ctx = tensors["ctx"]
    if ctx.dtype != torch.float32 or ctx.dim() != 2 or not torch.isfinite(ctx).all():
        raise CheckpointError(f"{path.name} has a damaged context tensor.",
                              key="prompt_file_damaged_ctx", name=path.name)
    return tensors, meta


def _checked_classnames(classnames: Sequence[str]) -> list[str]:
    if isinstance(classnames, str):
        raise PromptError("Give the class names as a list, one name per class.")
    names = [" ".join(str(n).split()) for n in (classnames or [])]
    if len(names) < 2:
        raise PromptError("A task needs at least two classes; add the classes to tell apart.",
                          key="task_two_classes")
    if len(names) > MAX_CLASSES:
        raise PromptError(f"{len(names)} classes is more than the {MAX_CLASSES} this app handles.")
    if any(not n for n in names):
        raise PromptError("A class has an empty name; give every class a name.")
    seen: dict[str, str] = {}
    for name in names:
        key = class_key(name)
        if key in seen:
            raise PromptError(f"The class name {name!r} is given twice; each class needs its own "
                              "name.", key="task_class_twice", name=repr(name))
        seen[key] = name
    return names


def _checked_descriptions(descriptions: Mapping[str, Sequence[str]] | None,
                          classnames: list[str]) -> dict[str, list[str]]:
    if not descriptions:
        return {}
    by_key = {class_key(n): n for n in classnames}
    out: dict[str, list[str]] = {}
    for name, texts in descriptions.items():
        key = class_key(name)
        if key not in by_key:
            raise PromptError(f"Descriptions are given for {name!r}, which is not one of the "
                              f"classes ({', '.join(classnames)}).")
        if isinstance(texts, str):
            texts = texts.splitlines()
        kept = [" ".join(t.split()) for t in texts if str(t).strip()]
        if kept:
            out[by_key[key]] = kept
    return out
