"""The workspace benchmark saves and opens a whole session's work and prints the figures."""
from __future__ import annotations

import json

from benchmarks.workspace import main


def test_workspace_benchmark_saves_and_opens_the_whole_work(capsys):
    result = main(["--backbone", "tiny-biomedclip", "--examples", "8", "--tests", "4",
                   "--repeats", "1"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert (result["examples_kept"], result["tests_kept"]) == (8, 4)  # every picture distinct
    assert result["opened_whole"] is True
    assert result["save_s"] > 0 and result["open_s"] > 0 and result["file_mb"] > 0
