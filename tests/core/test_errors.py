"""Errors meant for a person carry a message key and values beside their English text."""
from __future__ import annotations

import pickle

from core.errors import CheckpointError, ScanError, StudioError, quoted


def test_an_error_keeps_its_key_and_values_across_a_process():
    error = ScanError("There is no slice 50: this scan has 10 slices (0 to 9).",
                      key="scan_no_frame", label="slice", index=50, n=10, last=9)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is ScanError and isinstance(back, ValueError)
    assert str(back) == str(error)
    assert back.key == "scan_no_frame" and back.values == {"label": "slice", "index": 50,
                                                           "n": 10, "last": 9}


def test_an_error_without_a_key_is_its_message():
    error = StudioError("Something a person can read.")
    assert error.key is None and error.values == {}
    assert pickle.loads(pickle.dumps(error)).args == ("Something a person can read.",)


def test_a_quoted_error_brings_its_key_along():
    inner = ScanError("inner words", key="scan_damaged")
    outer = CheckpointError(f"outer ({inner})", key="prompt_file_settings", **quoted(inner))
    assert outer.values == {"detail": "inner words", "detail_key": "scan_damaged",
                            "detail_values": {}}
    assert quoted(ValueError("plain"))["detail_key"] is None
