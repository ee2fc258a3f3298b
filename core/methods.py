"""The classification methods the project knows, in one registry: each one's name (the key used
everywhere: settings, results, the API, the message catalogs), its kind and its titles.

Kinds:
- "zero-shot": the template's words alone, nothing learned;
- "fitted": a classifier fitted on the zero-shot image features (no prompt is tuned);
- "tuned": prompt tuning (the text context, and for Biomed-DPT the vision prompts too).

The app offers Biomed-DPT and the baselines; the reproduction runs every method. (A relevance
map's kind, "relevance" or "rollout", is not a method: see `core.explain.MAP_KINDS`.)
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import PromptError

ZERO_SHOT, FITTED, TUNED = "zero-shot", "fitted", "tuned"
KINDS = (ZERO_SHOT, FITTED, TUNED)


@dataclass(frozen=True)
class Method:
    name: str
    kind: str
    title: str  # as tables and the reproduction's results name it
    published: str | None = None  # its name in METHOD.md's published averages, if it has one
    in_app: bool = False  # offered by the app (evaluation, the few-shot tool)


REGISTRY: tuple[Method, ...] = (
    Method("zero-shot", ZERO_SHOT, "BiomedCLIP zero-shot", "BiomedCLIP zero-shot", in_app=True),
    Method("tip-adapter", FITTED, "Tip-Adapter", in_app=True),
    Method("linear-probe", FITTED, "Linear probe (zero-shot init)", in_app=True),
    Method("coop", TUNED, "CoOp", "CoOp"),
    Method("kgcoop", TUNED, "KgCoOp-like", "KgCoOp"),
    Method("biomedcoop", TUNED, "BiomedCoOp-like", "BiomedCoOp"),
    Method("biomed-dpt", TUNED, "Biomed-DPT", "Biomed-DPT", in_app=True),
)
METHODS = tuple(m.name for m in REGISTRY)


def names(*kinds: str, in_app: bool | None = None) -> tuple[str, ...]:
    """The methods of these kinds (all kinds when none is given), in the registry's order;
    with `in_app`, only those the app offers (or does not)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"Unknown method kinds {sorted(unknown)}; use {', '.join(KINDS)}.")
    return tuple(m.name for m in REGISTRY if (not kinds or m.kind in kinds)
                 and (in_app is None or m.in_app == in_app))


def method(name: str) -> Method:
    """The method with this name; the error lists the names."""
    for m in REGISTRY:
        if m.name == name:
            return m
    raise PromptError(f"Unknown method {name!r}; choose from {', '.join(METHODS)}.")
