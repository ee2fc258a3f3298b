"""The benchmark runs end to end on a tiny backbone and prints one complete JSON line."""
from __future__ import annotations

import json

from benchmarks.engine import main, synthetic_task


def test_synthetic_task_has_the_requested_shape():
    images, labels = synthetic_task(3, 2, size=32)
    assert len(images) == 6 and labels == [0, 0, 1, 1, 2, 2]
    assert images[0].size == (32, 32)


def test_benchmark_prints_every_figure(capsys):
    result = main(["--backbone", "tiny-clip", "--classes", "2", "--shots", "2",
                   "--paper-epochs", "1", "--repeats", "1", "--precisions", "fp32"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result
    for key in ("encode_s_per_image", "text_step_s", "predict_s", "map_s", "maps_top3_s"):
        assert set(printed[key]) == {"fp32", "bf16"} and all(v > 0 for v in printed[key].values())
    fast, paper = printed["train"]["fast"]["fp32"], printed["train"]["paper"]["fp32"]
    assert 30 <= fast["steps"] <= 100 and paper["steps"] == 1
    assert printed["retune_s"] > 0 and 30 <= printed["retune_steps"] <= 100
    assert printed["baselines_s"] > 0 and printed["cv_s"] > 0
    assert set(printed["cv_accuracy"]) == {"biomed-dpt", "zero-shot", "tip-adapter",
                                           "linear-probe"}
    assert fast["seconds"] >= fast["encode_s"] > 0
    assert printed["peak_rss_mb"] > 0 and printed["classes"] == 2
