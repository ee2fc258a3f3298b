"""Images become features here, and only here: the views, the one batched encoder, the caches.

Nothing on the vision side of Biomed-DPT is trained (its vision prompts are zeros, reset before
every block), so the image feature of one view of one image is a constant for a given backbone,
number of vision prompts and precision. Every method (zero-shot, the baselines, prompt tuning,
cross-validation, prediction, evaluation, the paper's protocols) works on features encoded once:

- views: `"eval"` (the backbone's resize + centre crop) and `"rrc{low}-{high}#{i}"`, the i-th
  random-resized crop with scale in [low, high], drawn from a generator seeded by the image's
  key and i, so the same image always gets the same i-th crop;
- `encode(bb, images, view=..., vision_prompts=..., cache=...)`: (N, D) L2-normalised features
  (CPU, float32), in batches, only the images the cache has not seen;
- `FeatureCache` (memory, least recently used first out) keys a feature by the image's content
  hash, the view, the backbone's weights fingerprint, the vision prompts and the precision;
- `FeatureStore` (disk, safetensors) keys rows by image id within a named collection, for sweeps.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from core.backbone import Backbone, autocast, resolve_precision
from core.errors import DatasetError

log = logging.getLogger(__name__)

EVAL_VIEW = "eval"
ENCODE_BATCH = 16
STORE_FORMAT = "biomed-dpt-features"
STORE_VERSION = "1"
DEFAULT_STORE_DIR = Path("~/.cache/biomed-dpt-studio/features")

ProgressCallback = Callable[[int, int], None]  # (images done, images in all)
_CROP = re.compile(r"rrc([0-9.e-]+)-([0-9.e-]+)#(\d+)")


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------
def crop_views(n: int, scale: tuple[float, float], start: int = 0) -> list[str]:
    """The names of `n` random-resized-crop views with the given scale range, numbered from
    `start` (another start draws other crops of the same images)."""
    low, high = scale
    return [f"rrc{low:g}-{high:g}#{i}" for i in range(start, start + n)]


def view_transform(bb: Backbone, view: str) -> Callable[[Image.Image, str], torch.Tensor]:
    """`transform(image, key) -> (3, H, W)` pixels of one view of a picture (or of
    preprocessed pixels, which are only cropped). The evaluation view ignores the key; a crop
    view draws its crop from a generator seeded by (key, crop number)."""
    if view == EVAL_VIEW:
        return lambda image, key: image if isinstance(image, torch.Tensor) else bb.preprocess(image)
    match = _CROP.fullmatch(view)
    if match is None:
        raise ValueError(f"Unknown image view {view!r}: use 'eval' or 'rrcLOW-HIGH#I'.")
    from torchvision.transforms import v2

    low, high, index = float(match[1]), float(match[2]), int(match[3])
    if not 0 < low <= high <= 1:
        raise ValueError(f"The crop scale of view {view!r} must satisfy 0 < low <= high <= 1.")
    resized_crop = v2.RandomResizedCrop(bb.image_size, scale=(low, high), antialias=True,
                                        interpolation=v2.InterpolationMode.BICUBIC)
    crop = v2.Compose([v2.ToImage(), resized_crop, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean=list(bb.mean), std=list(bb.std))])

    def transform(image: Image.Image | torch.Tensor, key: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(f"{key}#{index}".encode()).digest()[:8], "big")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % 2**63)
            # preprocessed pixels (already normalised) are only cropped
            return resized_crop(image) if isinstance(image, torch.Tensor) else crop(image)

    return transform


def image_digest(image: Image.Image | torch.Tensor) -> str:
    """Content hash of a picture (mode, size and pixels) or of a pixel tensor."""
    if isinstance(image, torch.Tensor):
        digest = hashlib.sha256(f"pixels|{tuple(image.shape)}|".encode())
        digest.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()
    digest = hashlib.sha256(f"{image.mode}|{image.size}|".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def prompt_tokens(bb: Backbone, vision_prompts: int) -> torch.Tensor | None:
    """The zero vision prompts (P, width) inserted into the image tower, or None."""
    if vision_prompts < 0:
        raise ValueError("The number of vision prompts cannot be negative.")
    return torch.zeros(vision_prompts, bb.image_width, device=bb.device) if vision_prompts else None


# --------------------------------------------------------------------------------------------
# The cache and the encoder
# --------------------------------------------------------------------------------------------
class FeatureCache:
    """Image features in memory, keyed by `feature_key`. Least recently used entries are
    dropped beyond `max_items`. Safe to use from several threads (a session may read examples
    while it tunes). One per session in the app: a cache is never shared between users."""

    def __init__(self, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError("A feature cache holds at least one item.")
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __deepcopy__(self, memo) -> FeatureCache:
        """A copy with its own lock (Gradio copies a session's initial state per user)."""
        other = FeatureCache(self.max_items)
        with self._lock:
            other._items = OrderedDict(self._items)
        return other

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """A snapshot of (key, feature) pairs, least recently used first."""
        with self._lock:
            return list(self._items.items())

    def put(self, key: str, feature: torch.Tensor) -> None:
        feature = feature.detach().to("cpu", torch.float32)
        with self._lock:
            self._items[key] = feature
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


def feature_key(bb: Backbone, key: str, view: str, vision_prompts: int, precision: str,
                vision_mode: str = "insert") -> str:
    """What one cached feature depends on: the image (its content key), the view, the
    backbone's weights, the vision prompts (and how they enter the tower) and the precision."""
    prompts = vision_prompts if vision_mode == "insert" or not vision_prompts else \
        f"{vision_prompts}{vision_mode}"
    return f"{bb.fingerprint}|{prompts}|{precision}|{view}|{key}"


@torch.no_grad()
def encode(bb: Backbone, images: Sequence[Image.Image] | torch.Tensor, *, view: str = EVAL_VIEW,
           vision_prompts: int = 4, cache: FeatureCache | None = None,
           precision: str | None = "auto",
           keys: Sequence[str] | None = None, batch_size: int = ENCODE_BATCH,
           progress: ProgressCallback | None = None,
           should_stop: Callable[[], bool] | None = None,
           vision_mode: str = "insert") -> torch.Tensor | None:
    """(N, D) L2-normalised image features (CPU, float32) of one view of PIL images, or of
    preprocessed pixels (N, 3, H, W), with `vision_prompts` zero prompts
    in the image tower (inserted, or with `vision_mode="overwrite"` over the first patches). `keys` name the images, for the cache and the crop seeds; by default
    their content hash (`image_digest`). A caller that already holds content hashes passes them
    and skips the hashing; with a cache, a key must change whenever the content does. With a
    cache only images it has not seen are encoded. `precision` None: as the caller's
    autocast context. `should_stop` is polled before each batch; when it answers True, None is
    returned."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    if vision_mode not in ("insert", "overwrite"):
        raise ValueError(f"vision_mode must be 'insert' or 'overwrite', not {vision_mode!r}.")
    from_pixels = isinstance(images, torch.Tensor)
    if not from_pixels:
        images = [_rgb(image) for image in images]
    n = len(images)
    if keys is not None and len(keys) != n:
        raise ValueError(f"{n} images but {len(keys)} keys.")
    if precision is None:
        ambient = torch.is_autocast_enabled(bb.device.type)
        precision, apply = ("bf16" if ambient else "fp32"), contextlib.nullcontext
    else:
        precision = resolve_precision(precision, bb.device)
        apply = lambda: autocast(bb.device, precision)  # noqa: E731
    transform = view_transform(bb, view)
    prompts = prompt_tokens(bb, vision_prompts)
    if keys is None and (cache is not None or view != EVAL_VIEW):
        keys = [image_digest(image) for image in images]
    found: list[torch.Tensor | None] = [None] * n
    if cache is not None:
        found = [cache.get(feature_key(bb, k, view, vision_prompts, precision, vision_mode))
                 for k in keys]
    missing = [i for i in range(n) if found[i] is None]
    done = n - len(missing)
    if progress is not None:
        progress(done, n)
    for start in range(0, len(missing), batch_size):
        if should_stop is not None and should_stop():
            return None
        chunk = missing[start:start + batch_size]
        pixels = torch.stack([transform(images[i].float() if from_pixels else images[i],
                                        keys[i] if keys is not None else "") for i in chunk])
        with apply():
            fresh = bb.encode_image(pixels.to(bb.device), prompts,
                                    overwrite=vision_mode == "overwrite")
        fresh = F.normalize(fresh.float(), dim=-1).cpu()
        for i, feature in zip(chunk, fresh):
            found[i] = feature
            if cache is not None:
                cache.put(feature_key(bb, keys[i], view, vision_prompts, precision, vision_mode),
                          feature)
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    if not n:
        return torch.zeros(0, bb.embed_dim)
    return torch.stack(found)


def encode_views(bb: Backbone, images: Sequence[Image.Image] | torch.Tensor, views: Sequence[str],
                 *, vision_prompts: int = 4, cache: FeatureCache | None = None,
                 precision: str = "auto", keys: Sequence[str] | None = None,
                 progress: ProgressCallback | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 vision_mode: str = "insert") -> torch.Tensor | None:
    """(V, N, D) features of every view of every image; None if stopped. `progress` counts
    image views over all of them; `keys` as for `encode` (hashed once here when not given)."""
    n, out = len(images), []
    if keys is None and (cache is not None or any(v != EVAL_VIEW for v in views)):
        keys = [image_digest(image if isinstance(images, torch.Tensor) else _rgb(image))
                for image in images]
    for v, view in enumerate(views):
        def counted(done: int, total: int, v=v) -> None:
            if progress is not None:
                progress(v * n + done, len(views) * n)

        feats = encode(bb, images, view=view, vision_prompts=vision_prompts, cache=cache,
                       precision=precision, keys=keys, progress=counted,
                       should_stop=should_stop, vision_mode=vision_mode)
        if feats is None:
            return None
        out.append(feats)
    return torch.stack(out) if out else torch.zeros(0, n, bb.embed_dim)


def _rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise DatasetError(f"Expected PIL images or a pixel tensor, got {type(image).__name__}.")
    return image if image.mode == "RGB" else image.convert("RGB")


# --------------------------------------------------------------------------------------------
# Disk store for sweeps
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreKey:
    """What a stored feature depends on. `collection` names the image set (e.g. 'BTMRI/test');
    `view` the transform ('eval' or a crop view such as 'rrc0.08-1#3')."""

    fingerprint: str
    n_vision_prompts: int
    view: str
    precision: str
    collection: str
    vision_mode: str = "insert"

    def digest(self) -> str:
        fields = asdict(self)
        if self.vision_mode == "insert":  # the stores written before the mode existed
            del fields["vision_mode"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


class FeatureStore:
    """Image features on disk, one safetensors file per `StoreKey` holding one row per image id
    (for a data set: its relative path and file size). Rows are keyed by id, not by the list of
    ids, so the K-shot draws of a sweep share every image they have in common. Files are written
    atomically after every chunk, so an interrupted encoding keeps what it finished. Never
    unpickles: a damaged file is ignored (with a warning) and rebuilt."""

    def __init__(self, root: str | Path = DEFAULT_STORE_DIR) -> None:
        self.root = Path(root).expanduser()
        self._loaded: dict[str, tuple[dict[str, int], torch.Tensor | None]] = {}
        self.encoded = 0  # images encoded by this store since it was made (tests, logs)

    def path(self, key: StoreKey) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.collection)
        return self.root / f"{safe}-{key.digest()}.safetensors"

    def features(self, key: StoreKey, ids: Sequence[str],
                 encode: Callable[[list[int]], torch.Tensor], chunk: int = 1024,
                 progress: ProgressCallback | None = None) -> torch.Tensor:
        """(N, D) features of `ids` (CPU float32); `encode(indices)` makes the missing ones,
        given as positions in `ids`, and returns them as (len(indices), D)."""
        index, table = self._load(key)
        missing = [i for i, item in enumerate(ids) if item not in index]
        done = len(ids) - len(missing)
        if progress is not None:
            progress(done, len(ids))
        for start in range(0, len(missing), chunk):
            part = missing[start:start + chunk]
            fresh = encode(part).detach().to("cpu", torch.float32)
            if fresh.shape[0] != len(part):
                raise RuntimeError(f"encode returned {fresh.shape[0]} features for {len(part)} images")
            for i in part:
                index[ids[i]] = len(index)
            table = fresh if table is None else torch.cat([table, fresh])
            self._loaded[key.digest()] = (index, table)
            self._save(key, index, table)
            self.encoded += len(part)
            done += len(part)
            if progress is not None:
                progress(done, len(ids))
        if not ids:
            return torch.zeros(0, 0 if table is None else table.shape[1])
        return table[torch.tensor([index[item] for item in ids])]

    def _load(self, key: StoreKey) -> tuple[dict[str, int], torch.Tensor | None]:
        digest = key.digest()
        if digest in self._loaded:
            return self._loaded[digest]
        found: tuple[dict[str, int], torch.Tensor | None] = ({}, None)
        path = self.path(key)
        if path.is_file():
            try:
                found = _read_store(path, key)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                log.warning("Ignoring the damaged feature cache %s (%s); it will be rebuilt.",
                            path, exc)
        self._loaded[digest] = found
        return found

    def _save(self, key: StoreKey, index: dict[str, int], table: torch.Tensor) -> None:
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        ids = sorted(index, key=index.get)
        metadata = {"format": STORE_FORMAT, "version": STORE_VERSION,
                    "key": json.dumps(asdict(key), sort_keys=True), "ids": json.dumps(ids)}
        handle, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(handle)
        try:
            save_file({"features": table.contiguous()}, tmp, metadata=metadata)
            os.replace(tmp, self.path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _read_store(path: Path, key: StoreKey) -> tuple[dict[str, int], torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            table = f.get_tensor("features")
    except SafetensorError as exc:
        raise ValueError(str(exc)) from exc
    if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
        raise ValueError("not a feature file of this version")
    if json.loads(meta["key"]) != asdict(key):
        raise ValueError("made for other settings")
    ids = json.loads(meta["ids"])
    if table.dim() != 2 or table.shape[0] != len(ids) or not torch.isfinite(table).all():
        raise ValueError("its table does not match its ids")
    return {item: i for i, item in enumerate(ids)}, table.float()
