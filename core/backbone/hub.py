"""Models from the Hugging Face Hub: the local cache first, a download only when the hub answers.

`hub_cache_status` tells, without the network, whether the loader would find a model in the cache;
every failure says how to get the model onto the machine.
"""
from __future__ import annotations

import concurrent.futures
import socket
from pathlib import Path
from urllib.parse import urlparse

from core.backbone.staging import TEXT_TOKENIZER_FILES, WEIGHT_FILES, load_staged, read_config
from core.errors import BackboneUnavailable

BIOMEDCLIP_HUB_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
_HUB_PROBE_TIMEOUT_S = 3.0


def load_from_hub(repo_id: str):
    """A Hugging Face Hub model: from the local cache when it is there (no network), else a
    download, but only after a quick check that the hub can be reached at all."""
    try:
        folder, config = _cached_hub_model(repo_id, allow_download=False)
    except _NotCached:
        _check_hub_reachable(repo_id)
        folder, config = _cached_hub_model(repo_id, allow_download=True)
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    text_name = config["model_cfg"].get("text_cfg", {}).get("hf_model_name")
    text_dir = None
    if text_name:
        try:
            text_dir = cached_text_files(text_name, allow_download=False)
        except _NotCached:
            _check_hub_reachable(text_name)
            text_dir = cached_text_files(text_name, allow_download=True)
    return load_staged(config, text_dir, weights)


class _NotCached(BackboneUnavailable):
    pass


def _fix_hint(repo_id: str) -> str:
    return (f"Load it once on a machine with internet access (`python -c \"from core.backbone "
            f"import load_backbone; load_backbone('hf-hub:{repo_id}')\"`) so that it is in the "
            f"Hugging Face cache, or pass --backbone local-dir:/path/to/folder with the model "
            f"files. To try the app without the real model, use --backbone tiny-biomedclip.")


def _hub_file(repo_id: str, filename: str, allow_download: bool) -> Path | None:
    """Local path of one file of a hub repository; None when the repository has no such file or,
    without download, when the cache does not hold it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=not allow_download))
    except LocalEntryNotFoundError:
        if allow_download:
            raise BackboneUnavailable(f"Could not download {repo_id}. " + _fix_hint(repo_id)) from None
        return None
    except EntryNotFoundError:
        return None
    except Exception as exc:  # network and hub errors of every kind
        raise BackboneUnavailable(f"Could not fetch {filename} of {repo_id} ({exc}). "
                                  + _fix_hint(repo_id)) from exc


def _required_hub_file(repo_id: str, filename: str, allow_download: bool) -> Path:
    path = _hub_file(repo_id, filename, allow_download)
    if path is not None:
        return path
    if not allow_download:
        raise _NotCached(f"{repo_id} is not in the local cache. " + _fix_hint(repo_id))
    raise BackboneUnavailable(f"{repo_id} has no file {filename}; it is not a usable model.")


def _cached_hub_model(repo_id: str, allow_download: bool) -> tuple[Path, dict]:
    config = read_config(_required_hub_file(repo_id, "open_clip_config.json", allow_download))
    weights = [_hub_file(repo_id, name, allow_download) for name in WEIGHT_FILES]
    if not any(weights):
        _required_hub_file(repo_id, WEIGHT_FILES[-1], allow_download)
    folder = next(w for w in weights if w is not None).parent
    return folder, config


def cached_text_files(repo_id: str, allow_download: bool) -> Path:
    """The text tower's config and tokenizer files (no weights: the CLIP checkpoint holds them)."""
    config = _required_hub_file(repo_id, "config.json", allow_download)
    _required_hub_file(repo_id, "vocab.txt", allow_download)
    for name in TEXT_TOKENIZER_FILES[1:]:
        _hub_file(repo_id, name, allow_download)
    return config.parent


def hub_cache_status(repo_id: str = BIOMEDCLIP_HUB_ID) -> tuple[bool, str]:
    """(cached, explanation): whether a hub model's weights and config, and its text tower's
    config and vocabulary, are all in the Hugging Face cache, as the loader looks for them;
    checked without the network."""
    try:
        _, config = _cached_hub_model(repo_id, allow_download=False)
    except _NotCached:
        return False, f"{repo_id} is not in the Hugging Face cache"
    except BackboneUnavailable as exc:
        return False, str(exc)
    text = config.get("model_cfg", {}).get("text_cfg", {}).get("hf_model_name")
    if text and not Path(str(text)).is_dir():
        try:
            cached_text_files(text, allow_download=False)
        except BackboneUnavailable:
            return False, f"the text tower {text} lacks config.json or vocab.txt in the cache"
    return True, f"{repo_id} and its text tower's files are cached"


def _check_hub_reachable(repo_id: str) -> None:
    """Fail in seconds, not after the hub client's retries, when there is no network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise BackboneUnavailable(f"{repo_id} is not in the local cache and HF_HUB_OFFLINE is set. "
                                  + _fix_hint(repo_id))
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)

    def connect() -> None:
        with socket.create_connection((host, port), timeout=_HUB_PROBE_TIMEOUT_S):
            pass

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=_HUB_PROBE_TIMEOUT_S + 1)
    except Exception:
        raise BackboneUnavailable(f"{repo_id} is not in the local cache and {host} cannot be "
                                  f"reached from this machine. " + _fix_hint(repo_id)) from None
    finally:
        pool.shutdown(wait=False)  # a DNS lookup that hangs must not hold the caller

