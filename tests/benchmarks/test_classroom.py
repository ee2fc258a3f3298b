"""The classroom load test, shortened: three students on the running app, one tuning in a loop
while the others predict. Behaviour only: no errors, nothing leaks between sessions, every
figure measured (never a wall-clock bound)."""
from __future__ import annotations

import math

from benchmarks import classroom


def test_a_small_classroom_shares_the_server_without_errors_or_leaks():
    figures = classroom.main(["--clients", "3", "--rounds", "1"])
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["sessions_checked"] == 3 and figures["sessions_differing_from_alone"] == 0
    assert figures["predicts_while_tuning"] == 2 * len(classroom.QUERIES)
    assert figures["tune_runs_while_predicting"] >= 1
    assert 0 < figures["predict_p50_s"] <= figures["predict_p95_s"] < math.inf
