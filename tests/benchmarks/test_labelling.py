"""The labelling benchmark runs small and prints its figures as one JSON line last."""
from __future__ import annotations

import json

from benchmarks.labelling import KS, clustered_task, main


def test_the_simulated_task_has_rare_clusters_near_the_boundary():
    pool, labels, clusters, tests, test_labels = clustered_task(0, pool=200)
    share = [clusters.count(c) / len(clusters) for c in range(4)]
    assert share[0] > 0.3 and share[2] > 0.3 and share[1] < 0.15 and share[3] < 0.15
    assert all(label == (cluster >= 2) for label, cluster in zip(labels, clusters))
    assert sorted(set(test_labels)) == [0, 1] and len(tests) == 24


def test_the_labelling_benchmark_prints_both_curves_and_the_warm_retune(capsys):
    result = main(["--seeds", "1", "--pool", "40", "--backbone", "tiny-biomedclip",
                   "--classes", "2", "--shots", "4"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    for order in ("ranked", "random"):
        assert set(result[order]) == {str(k) for k in KS}
        assert all(0 <= v <= 1 for v in result[order].values())
    for start in ("warm", "cold"):
        assert {"steps", "seconds", "final_loss"} <= set(result[start])
    assert result["warm"]["steps"] <= result["cold"]["steps"] and result["rank_300_s"] > 0
