"""`python -m core.reproduce`: the paper's protocols on data sets in the public layout.

Data sets (the layout of the BiomedCoOp / Biomed-DPT releases): ROOT/<name>/split_<name>.json,
`{"train"|"val"|"test": [[relative_path, label, class_name], ...]}`, with the images under
ROOT/<name>/<name>/ or directly under ROOT/<name>/; optionally ROOT/<name>/descriptions.json,
`{class_name: [sentence, ...]}`, the teacher's descriptions (else each class's template sentence).

Protocols (METHOD.md): few-shot (K images per class drawn per seed from train; the full test split)
and base-to-novel (16-shot on the first ceil(C/2) classes; test on them, then on the rest with the
same context). Methods: zero-shot, Tip-Adapter and a zero-shot-initialised linear probe on cached
features, and CoOp, KgCoOp-like, BiomedCoOp-like and Biomed-DPT as settings of one prompt module.
Each run writes runs/<data set>/<protocol>/<method>/k<K>_seed<S>.json under --out; finished runs
are skipped, so a sweep resumes where it stopped. Image features are
cached on disk per backbone, data set, split and view (core.features.FeatureStore): a sweep encodes
each image once per view. results.md and results.csv are rebuilt from every run in --out.

Two modes (`--mode`): described (METHOD.md) and released (what the authors' released code runs),
each switch of which can be set alone (settings.Switches; docs/reproduce.md).

The package's rooms: `settings` (protocols, methods, the paper's per-data-set settings, read from
assets/tasks through core.presets; the modes' switches and the baselines' published settings),
`data` (the split layout and the draws), `teachers` (the authors' sentence file, read as a
literal), `runs` (one run and its result file), `tables` (results.md / results.csv), `sweep`
(resuming and running), `distributed` (the runs on Ray), `cli`.
"""
from core.reproduce.cli import main, options_from_args, parser
from core.reproduce.data import (Dataset, Item, base_novel_split, capped, few_shot_indices,
                                 find_datasets, load_dataset)
from core.reproduce.runs import Encoder, Options, RunSpec, Summary, Sweep
from core.reproduce.settings import (DEFAULT_SHOTS, FITTED_BASELINES, METHOD_TITLES, METHODS,
                                     PAPER_TASKS, PROMPT_METHODS, PROTOCOLS, TUNED_METHODS,
                                     MethodOptions, ReproduceError, SettingsOverride,
                                     TaskSettings, build_prompts, paper_settings, prompt_config,
                                     task_settings)
from core.reproduce.sweep import run_sweep
from core.reproduce.tables import build_tables, collect_runs, render_markdown, write_tables

__all__ = ["DEFAULT_SHOTS", "FITTED_BASELINES", "METHOD_TITLES", "METHODS", "PAPER_TASKS",
           "PROMPT_METHODS", "PROTOCOLS", "TUNED_METHODS", "Dataset", "Encoder", "Item",
           "MethodOptions", "Options", "ReproduceError", "RunSpec", "SettingsOverride", "Summary",
           "Sweep", "TaskSettings", "base_novel_split", "build_prompts", "build_tables", "capped",
           "collect_runs", "few_shot_indices", "find_datasets", "load_dataset", "main",
           "options_from_args", "paper_settings", "parser", "prompt_config", "render_markdown",
           "run_sweep", "task_settings", "write_tables"]
