"""The app benchmark runs every interaction on the tiny backbone and prints the figures."""
from __future__ import annotations

import json

from benchmarks.app import main


def test_app_benchmark_times_every_interaction(capsys):
    result = main(["--skip-start"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    steps = result["handler_s"]
    assert {"set_task", "predict_with_map", "report", "switch_map_class", "change_opacity",
            "load_prompts", "tune_fast_100_steps", "tune_held_out_estimate"} <= set(steps)
    assert all(v >= 0 for v in steps.values())
    assert result["slowest_non_training_s"] == max(v for k, v in steps.items()
                                                   if not k.startswith("tune"))
