"""The text-step batching measurement: one pass over several sessions' prompts gives each
session the gradient its own step gives."""
from __future__ import annotations

from benchmarks import text_batching


def test_batched_steps_give_each_session_its_own_gradient():
    for backbone in ("tiny-biomedclip", "tiny-clip"):
        out = text_batching.main(["--backbone", backbone, "--sessions", "1,3", "--repeats", "1",
                                  "--precision", "fp32", "--classes", "3"])
        for row in out["steps"].values():
            assert row["grad_rel_diff"] < 1e-4 and row["separate_s"] > 0 and row["batched_s"] > 0
