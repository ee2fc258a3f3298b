"""The results tables, rebuilt from every run file."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.methods import REGISTRY
from core.reproduce.runs import _harmonic, _read_run
from core.reproduce.settings import (DEFAULT_SHOTS, METHOD_TITLES, METHODS, PAPER_TASKS,
                                     PUBLISHED_BASE_TO_NOVEL, PUBLISHED_FEW_SHOT, paper_settings)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def collect_runs(out: Path) -> list[dict]:
    """Every finished run file under out/runs."""
    runs = []
    for path in sorted((out / "runs").glob("*/*/*/k*_seed*.json")):
        data = _read_run(path)
        if data is not None:
            runs.append(data)
    return runs


def _dataset_order(names: set[str]) -> list[str]:
    def key(name: str):
        task = paper_settings(name)
        return (0, list(PAPER_TASKS).index(task.name), name) if task else (1, 0, name)
    return sorted(names, key=key)


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (0 for one value), in percent."""
    arr = 100 * np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std, len(arr)


@dataclass
class Tables:
    """Cell statistics of both protocols, built from run files."""

    few_shot: dict[tuple[str, str, int], tuple[float, float, int]] = field(default_factory=dict)
    base_to_novel: dict[tuple[str, str], dict] = field(default_factory=dict)
    shots: list[int] = field(default_factory=list)
    datasets: dict[str, list[str]] = field(default_factory=dict)  # protocol -> data sets
    recipes: set[str] = field(default_factory=set)
    modes: set[str] = field(default_factory=set)


def build_tables(runs: Sequence[dict]) -> Tables:
    few: dict[tuple[str, str, int], list[float]] = {}
    zero: dict[str, float] = {}
    b2n: dict[tuple[str, str], list[tuple[float, float]]] = {}
    tables = Tables()
    for run in runs:
        cfg = run["config"]
        name, method = cfg["dataset"], cfg["method"]
        if cfg["train"]:
            recipe = cfg["train"]["recipe"]
            length = cfg["train"]["epochs"] or cfg["train"]["steps"]
            unit = "epochs" if cfg["train"]["epochs"] else "steps"
            tables.recipes.add(f"{recipe} ({length} {unit}, {cfg['precision']})")
        tables.modes.add(cfg.get("mode", "described"))
        tables.datasets.setdefault(cfg["protocol"], [])
        if name not in tables.datasets[cfg["protocol"]]:
            tables.datasets[cfg["protocol"]].append(name)
        if cfg["protocol"] == "few-shot":
            if method == "zero-shot":
                zero[name] = run["metrics"]["accuracy"]
            else:
                few.setdefault((name, method, cfg["shots"]), []).append(run["metrics"]["accuracy"])
        else:
            b2n.setdefault((name, method), []).append((run["metrics"]["base"],
                                                      run["metrics"]["novel"]))
    tables.shots = sorted({k for (_, _, k) in few}) or list(DEFAULT_SHOTS["few-shot"])
    for key, values in few.items():
        tables.few_shot[key] = _mean_std(values)
    for name, value in zero.items():  # no training images: the same figure under every K
        for k in tables.shots:
            tables.few_shot[(name, "zero-shot", k)] = (100 * value, 0.0, 1)
    for key, pairs in b2n.items():
        base = _mean_std([p[0] for p in pairs])
        novel = _mean_std([p[1] for p in pairs])
        tables.base_to_novel[key] = {"base": base, "novel": novel, "n": len(pairs)}
    for protocol in tables.datasets:
        tables.datasets[protocol] = _dataset_order(set(tables.datasets[protocol]))
    return tables


def _fmt(cell: tuple[float, float, int] | None, with_std: bool = True) -> str:
    if cell is None:
        return "—"
    mean, std, n = cell
    return f"{mean:.2f} ± {std:.2f}" if with_std and n > 1 else f"{mean:.2f}"


def _few_shot_rows(tables: Tables, names: list[str]) -> dict[str, dict]:
    """Per method: per K the cell over `names` (one data set: its cell; several: the mean of
    their means, only when every data set has it) and the mean over K."""
    rows = {}
    for method in METHODS:
        cells = {}
        for k in tables.shots:
            found = [tables.few_shot.get((n, method, k)) for n in names]
            if any(c is None for c in found):
                cells[k] = None
            elif len(names) == 1:
                cells[k] = found[0]
            else:
                cells[k] = (float(np.mean([c[0] for c in found])), 0.0, 1)
        if all(c is None for c in cells.values()):
            continue
        complete = all(c is not None for c in cells.values())
        mean = (float(np.mean([c[0] for c in cells.values()])), 0.0, 1) if complete else None
        rows[method] = {"cells": cells, "mean": mean}
    return rows


def _b2n_cell(tables: Tables, names: list[str], method: str) -> dict | None:
    found = [tables.base_to_novel.get((n, method)) for n in names]
    if not found or any(c is None for c in found):
        return None
    if len(names) == 1:
        cell = found[0]
    else:
        cell = {"base": (float(np.mean([c["base"][0] for c in found])), 0.0, 1),
                "novel": (float(np.mean([c["novel"][0] for c in found])), 0.0, 1), "n": 1}
    b, n = cell["base"][0], cell["novel"][0]
    return {**cell, "mean": (b + n) / 2, "harmonic_mean": _harmonic(b, n)}


# the methods of METHOD.md's published averages
PUBLISHED_NAMES = {m.name: m.published for m in REGISTRY if m.published}
BUSI_NOTE = ("With BUSI the novel half is one class (normal), 100 % by construction. The paper "
             "does not say whether its average includes BUSI: the authors' RUN.md lists ten "
             "data sets without it, their show.py averages all eleven; both averages are given.")


def _groups(names: list[str], protocol: str) -> list[tuple[str, list[str]]]:
    """Each data set, the average over all, and for base-to-novel the average without BUSI."""
    groups = [(n, [n]) for n in names]
    if len(names) > 1:
        groups.append((f"Average over {len(names)} data sets", names))
        busi = [n for n in names if _is_busi(n)]
        if protocol == "base-to-novel" and busi and len(names) > 2:
            rest = [n for n in names if n not in busi]
            groups.append((f"Average over {len(rest)} data sets, without BUSI", rest))
    return groups


def _is_busi(name: str) -> bool:
    task = paper_settings(name)
    return task is not None and task.name == "BUSI"


def _published_few_shot(method: str, shots: list[int]) -> list[float | None] | None:
    values = PUBLISHED_FEW_SHOT.get(PUBLISHED_NAMES.get(method, ""))
    if values is None:
        return None
    by_k = dict(zip(DEFAULT_SHOTS["few-shot"], values))
    return [by_k.get(k) for k in shots]


def render_markdown(tables: Tables) -> str:
    lines = ["# Results", ""]
    if tables.modes:
        lines += [f"Mode: {', '.join(sorted(tables.modes))} (docs/reproduce.md: described "
                  "follows METHOD.md, released the authors' released code).", ""]
    if tables.recipes:
        lines += [f"Recipe: {'; '.join(sorted(tables.recipes))}. Accuracy in %, mean ± sample "
                  "standard deviation over seeds.", ""]
    if "few-shot" in tables.datasets:
        lines += _few_shot_markdown(tables)
    if "base-to-novel" in tables.datasets:
        lines += _b2n_markdown(tables)
    return "\n".join(lines).rstrip() + "\n"


def _few_shot_markdown(tables: Tables) -> list[str]:
    names = tables.datasets["few-shot"]
    header = "| method | " + " | ".join(f"K={k}" for k in tables.shots) + " | mean |"
    rule = "|---|" + "---|" * (len(tables.shots) + 1)
    lines = ["## Few-shot accuracy (%)", ""]
    for title, group in _groups(names, "few-shot"):
        lines += [f"### {title}", "", header, rule]
        compare = len(group) > 1
        for method, row in _few_shot_rows(tables, group).items():
            cells = [_fmt(row["cells"][k]) for k in tables.shots]
            lines.append(f"| {METHOD_TITLES[method]} | " + " | ".join(cells)
                         + f" | {_fmt(row['mean'])} |")
            published = _published_few_shot(method, tables.shots) if compare else None
            if published is not None:
                lines += _published_rows(method, [row["cells"][k] for k in tables.shots],
                                         published)
        lines.append("")
        if compare:
            lines += [f"Published: METHOD.md's average over the 11 data sets; this average "
                      f"covers {len(group)}.", ""]
    if any(method == "zero-shot" for (_, method, _) in tables.few_shot):
        lines += ["Zero-shot uses no training images: the same figure under every K.", ""]
    lines += ["### Published (METHOD.md: average over the 11 data sets, 3 seeds)", "",
              "| method | K=1 | K=2 | K=4 | K=8 | K=16 | mean |", "|---|---|---|---|---|---|---|"]
    for method, values in PUBLISHED_FEW_SHOT.items():
        lines.append(f"| {method} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {np.mean(values):.2f} |")
    return lines + [""]


def _published_rows(method: str, cells: list, published: list[float | None]) -> list[str]:
    """The published figures of `method` under its measured row, and measured minus published."""
    shown = ["—" if v is None else f"{v:.2f}" for v in published]
    differences = ["—" if v is None or c is None else f"{c[0] - v:+.2f}"
                   for c, v in zip(cells, published)]
    title = PUBLISHED_NAMES[method]
    return [f"| {title} (published) | " + " | ".join(shown) + " | |",
            f"| {title} (measured − published) | " + " | ".join(differences) + " | |"]


def _b2n_markdown(tables: Tables) -> list[str]:
    names = tables.datasets["base-to-novel"]
    lines = ["## Base-to-novel accuracy (%)", "",
             "Mean is (base + novel) / 2, which the paper's tables label HM; the true harmonic "
             "mean 2·base·novel / (base + novel) is given beside it.", "",
             "| data set | method | base | novel | mean (paper's \"HM\") | harmonic mean |",
             "|---|---|---|---|---|---|"]
    for title, group in _groups(names, "base-to-novel"):
        for method in METHODS:
            cell = _b2n_cell(tables, group, method)
            if cell is None:
                continue
            lines.append(f"| {title} | {METHOD_TITLES[method]} | {_fmt(cell['base'])} | "
                         f"{_fmt(cell['novel'])} | {cell['mean']:.2f} | "
                         f"{cell['harmonic_mean']:.2f} |")
            published = PUBLISHED_BASE_TO_NOVEL.get(PUBLISHED_NAMES.get(method, ""))
            if published is not None and len(group) > 1:
                b, n = published
                lines.append(f"| {title} | {PUBLISHED_NAMES[method]} (published) | {b:.2f} | "
                             f"{n:.2f} | {(b + n) / 2:.2f} | {_harmonic(b, n):.2f} |")
                lines.append(f"| {title} | {PUBLISHED_NAMES[method]} (measured − published) | "
                             f"{cell['base'][0] - b:+.2f} | {cell['novel'][0] - n:+.2f} | "
                             f"{cell['mean'] - (b + n) / 2:+.2f} | |")
    if any(_is_busi(n) for n in names):
        lines += ["", BUSI_NOTE]
    lines += ["", "### Published (METHOD.md: average over the data sets, 3 seeds)", "",
              "| method | base | novel | mean (paper's \"HM\") | harmonic mean |",
              "|---|---|---|---|---|"]
    for method, (b, n) in PUBLISHED_BASE_TO_NOVEL.items():
        lines.append(f"| {method} | {b:.2f} | {n:.2f} | {(b + n) / 2:.2f} | "
                     f"{_harmonic(b, n):.2f} |")
    return lines + [""]


def csv_rows(tables: Tables) -> tuple[list[str], list[list]]:
    """(header, rows): one row per data set (and the average) and method, columns of the
    paper's tables as numbers; columns of a protocol appear only when it has runs."""
    header = ["protocol", "dataset", "method"]
    few = "few-shot" in tables.datasets
    b2n = "base-to-novel" in tables.datasets
    if few:
        header += [f"K={k} {s}" for k in tables.shots for s in ("mean", "std")] + ["mean over K"]
    if b2n:
        header += ["base mean", "base std", "novel mean", "novel std", "mean (paper HM)",
                   "harmonic mean"]
    header.append("seeds")
    rows: list[list] = []

    def blank(n: int) -> list:
        return [""] * n

    n_few = 2 * len(tables.shots) + 1 if few else 0
    n_b2n = 6 if b2n else 0
    for protocol, names in tables.datasets.items():
        for title, group in _groups(names, protocol):
            if protocol == "few-shot":
                for method, row in _few_shot_rows(tables, group).items():
                    values = []
                    for k in tables.shots:
                        c = row["cells"][k]
                        values += ["", ""] if c is None else [round(c[0], 4), round(c[1], 4)]
                    values.append("" if row["mean"] is None else round(row["mean"][0], 4))
                    seeds = max((c[2] for c in row["cells"].values() if c), default=0)
                    rows.append([protocol, title, METHOD_TITLES[method]] + values + blank(n_b2n)
                                + [seeds if len(group) == 1 else ""])
                    published = _published_few_shot(method, tables.shots)
                    if published is not None and len(group) > 1:
                        cells = [row["cells"][k] for k in tables.shots]
                        shown = [x for v in published for x in ("" if v is None else v, "")]
                        differences = [x for c, v in zip(cells, published) for x in (
                            "" if c is None or v is None else round(c[0] - v, 4), "")]
                        name = PUBLISHED_NAMES[method]
                        rows.append([protocol, title, f"{name} (published)"] + shown + [""]
                                    + blank(n_b2n) + [""])
                        rows.append([protocol, title, f"{name} (measured - published)"]
                                    + differences + [""] + blank(n_b2n) + [""])
            else:
                for method in METHODS:
                    cell = _b2n_cell(tables, group, method)
                    if cell is None:
                        continue
                    values = [round(cell["base"][0], 4), round(cell["base"][1], 4),
                              round(cell["novel"][0], 4), round(cell["novel"][1], 4),
                              round(cell["mean"], 4), round(cell["harmonic_mean"], 4)]
                    rows.append([protocol, title, METHOD_TITLES[method]] + blank(n_few) + values
                                + [cell["n"] if len(group) == 1 else ""])
                    published = PUBLISHED_BASE_TO_NOVEL.get(PUBLISHED_NAMES.get(method, ""))
                    if published is not None and len(group) > 1:
                        b, n = published
                        name = PUBLISHED_NAMES[method]
                        rows.append([protocol, title, f"{name} (published)"] + blank(n_few)
                                    + [b, "", n, "", round((b + n) / 2, 4),
                                       round(_harmonic(b, n), 4), ""])
                        rows.append([protocol, title, f"{name} (measured - published)"]
                                    + blank(n_few)
                                    + [round(cell["base"][0] - b, 4), "",
                                       round(cell["novel"][0] - n, 4), "",
                                       round(cell["mean"] - (b + n) / 2, 4), "", ""])
    return header, rows


def write_tables(out: Path) -> tuple[Path, Path, str]:
    tables = build_tables(collect_runs(out))
    markdown = render_markdown(tables)
    md_path, csv_path = out / "results.md", out / "results.csv"
    md_path.write_text(markdown)
    header, rows = csv_rows(tables)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    csv_path.write_text(buffer.getvalue())
    return md_path, csv_path, markdown


