"""The model host: loads the one shared backbone (in the background, or at import on ZeroGPU),
says how far it is, retries, and hands the model to compute calls only.

Handlers and sessions never hold the model. They see `ModelInfo` (plain data: name, weights
fingerprint, sizes, logit scale, the precision compute calls use) and call `demo.runtime.compute`,
whose functions get the model from `model()`. On a ZeroGPU Space the backbone is loaded on the
CPU in the main process and moved to the GPU inside each GPU worker (the main process keeps a
working CPU copy: it is what runs when a visitor's GPU quota is spent).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from core.errors import BackboneUnavailable
from demo.runtime import gpu
from demo.text.messages import UserError, text

log = logging.getLogger(__name__)

WAIT_FOR_MODEL_S = 120.0
DEMO_SPEC = "tiny-biomedclip"


@dataclass(frozen=True)
class ModelInfo:
    """What the app knows of the loaded model without touching it."""

    name: str
    fingerprint: str
    embed_dim: int
    image_size: int
    logit_scale: float
    precision: str  # "fp32" or "bf16": what compute calls run the towers in
    device: str  # where compute calls run: "cpu", "cuda" or "zerogpu"

    @property
    def demo(self) -> bool:
        return self.name.startswith(("tiny-", "random-"))


class ModelHost:
    """One backbone for the whole process, loaded once, shared read-only."""

    current: ModelHost | None = None  # the host that loaded a model last: compute calls use it

    def __init__(self, backbone=None, problem: str | None = None, precision: str = "auto",
                 device: str | None = None, on_loaded: Callable[[], None] | None = None) -> None:
        """`on_loaded`: called in the loader's thread once a model is loaded (the app imports
        there what its handlers import lazily)."""
        self.bb = backbone
        self.on_loaded = on_loaded
        self.problem = problem
        self.precision = precision
        self.device = device
        self.spec: str | None = getattr(backbone, "name", None)
        self.info: ModelInfo | None = None
        self._ready = threading.Event()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        if backbone is not None:
            self.info = describe(backbone, precision)
            ModelHost.current = self
        if backbone is not None or problem is not None:
            self._ready.set()

    def load(self, spec: str, background: bool = True) -> None:
        """Load `spec` (in a thread when `background`); a failure is kept as `problem`, so the
        page can say why and offer a retry or the demo model."""
        with self._lock:
            if not self._ready.is_set() and self.spec is not None:
                return  # a load is under way
            self.spec, self.problem, self.bb, self.info = spec, None, None, None
            self._ready.clear()
            self._started = time.monotonic()

        def run() -> None:
            try:
                from core.backbone import load_backbone

                device = "cpu" if gpu.mode() == "zerogpu" else self.device
                bb = load_backbone(spec, device)
                self.info = describe(bb, self.precision)
                self.bb = bb
                ModelHost.current = self
                if self.on_loaded is not None:
                    self.on_loaded()
            except BackboneUnavailable as exc:
                log.warning("backbone %s unavailable: %s", spec, exc)
                self.problem = str(exc)
            except Exception as exc:  # a broken install must still leave a working page
                log.exception("loading backbone %s failed", spec)
                self.problem = f"Loading it failed unexpectedly ({type(exc).__name__})."
            finally:
                self._ready.set()

        if background:
            threading.Thread(target=run, daemon=True, name="load-model").start()
        else:
            run()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def demo_model(self) -> bool:
        return self.info is not None and self.info.demo

    def wait(self, wait_s: float = WAIT_FOR_MODEL_S) -> ModelInfo:
        """The model's description once it has loaded; a message the user understands while
        it loads or when it could not be loaded."""
        if not self._ready.wait(timeout=wait_s):
            raise UserError("still_loading", seconds=time.monotonic() - self._started)
        if self.bb is None or self.info is None:
            raise UserError("not_loaded", problem=self.problem)
        return self.info

    def status(self, lang: str = "en") -> str:
        if not self.ready:
            return text(lang, "loading", seconds=time.monotonic() - self._started)
        if self.bb is None:
            return (text(lang, "model_failed", problem=self.problem) + "\n\n"
                    + text(lang, "model_failed_actions"))
        if self.demo_model:
            return text(lang, "demo_model", name=self.info.name)
        device = "ZeroGPU" if self.info.device == "zerogpu" else self.info.device.upper()
        return text(lang, "model_ready", name=self.info.name, device=device)


def describe(bb, precision: str = "auto") -> ModelInfo:
    from core.backbone import PRECISION_ENV, resolve_precision

    if gpu.mode() == "zerogpu":  # pragma: no cover - the GPU is only seen inside its worker
        device = "zerogpu"  # every GPU ZeroGPU lends has native bf16
        forced = os.environ.get(PRECISION_ENV, "").strip().lower()
        resolved = forced or ("bf16" if precision == "auto" else precision)
    else:
        device = bb.device.type
        resolved = resolve_precision(precision, bb.device)
    return ModelInfo(name=bb.name, fingerprint=bb.fingerprint, embed_dim=bb.embed_dim,
                     image_size=bb.image_size, logit_scale=float(bb.logit_scale),
                     precision=resolved, device=device)


def model():
    """The backbone, for compute calls only (checked while calls are isolated); inside a
    ZeroGPU worker it is first moved to the GPU (the worker's own copy)."""
    gpu.check_model_use()
    host = ModelHost.current
    if host is None or host.bb is None:
        raise UserError("not_loaded", problem=getattr(host, "problem", None))
    bb = host.bb
    if gpu.on_accelerator() and bb.device.type != "cuda":  # pragma: no cover - ZeroGPU only
        import torch

        bb.model.to("cuda")
        bb.device = torch.device("cuda")
    return bb

