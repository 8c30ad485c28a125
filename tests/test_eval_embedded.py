"""``rubrickit eval`` end to end on the real embedded model (SmolLM2-135M): one-token A/B judgments with P(A)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rubrickit.errors import MissingDependencyError


def test_embedded_judge_one_token_eval_end_to_end(tmp_path: Path) -> None:
    from rubrickit.backends.embedded import locate_embedded_gguf
    from rubrickit.eval import evaluate

    try:
        locate_embedded_gguf()
    except MissingDependencyError as error:
        pytest.skip(str(error))
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"id": "q1", "prompt": "What is 2 + 2?", "response_a": "2 + 2 = 4.",
                                "response_b": "2 + 2 = 5.", "label": "A", "subset": "math"}) + "\n")
    result = evaluate([data], mode="logprob", probes=["position"],
                      records=tmp_path / "r.jsonl", report=tmp_path / "r.html")
    m = result.metrics
    assert m["n"] == 1 and m["coverage"] == 1.0 and m["errors"] == 0
    assert m["details"]["accounting"]["calls"] == 2  # one token per order, both orders
    row = result.runs[0].rows[0]
    assert 0.0 <= row["p_a"] <= 1.0 and row["winner_ab"] in ("A", "B") and row["winner_ba"] in ("A", "B")
    assert m["calibration"]["n"] == 1 and m["probes"]["position"]["n"] == 1
    assert (tmp_path / "r.html").read_text().count("<svg") >= 1
