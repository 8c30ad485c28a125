"""The embedded model writes a valid rubric file end to end on a shared LLMBar pair (issue 4's end-to-end run).

SmolLM2-135M rarely writes the JSON asked for; contrastive's tolerant reader takes its plain list of hard rules, the
same model checks label consistency in logprob mode, and ``--keep-inconsistent`` keeps the (marked) attempt, so a
file is written with greedy decoding. The rubric's quality is not the point: the whole pipeline runs on real weights
and what it writes validates and says how it was made.
"""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.rubric import load_rubric_set

pytestmark = pytest.mark.shared_data


def test_contrastive_on_the_embedded_model_writes_a_valid_marked_rubric_set(shared_data, tmp_path):
    pytest.importorskip("transformers")
    with gzip.open(shared_data / "pairs" / "llmbar.jsonl.gz", "rt", encoding="utf-8") as handle:
        row = next(r for r in map(json.loads, handle) if r["id"] == "llmbar/Adversarial/Neighbor/0035")
    data = tmp_path / "pair.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    out = tmp_path / "out.rubrics.jsonl"
    result = CliRunner().invoke(app, [
        "generate", "contrastive", "-d", str(data), "-o", str(out), "--keep-inconsistent", "--max-tries", "1",
        "--temperature", "0", "--compare", "pointwise", "--judge-mode", "logprob", "--max-tokens", "160",
        "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    (rubric,) = load_rubric_set(out)
    # Pairs are grouped by prompt (a prompt's pairs share one rubric): the prompt id is the prompt's stable hash.
    assert rubric.scope == "prompt" and rubric.prompt_id.startswith("sha256:") and rubric.prompt == row["prompt"]
    stats = rubric.provenance.stats
    assert stats["generating_pair"] == row["id"]
    assert rubric.provenance.method == "contrastive" and rubric.provenance.generator.startswith("embedded")
    assert stats["tries"] == 1 and isinstance(stats["consistent"], bool) and stats["pairs_checked"] == 1
    assert rubric.provenance.source.endswith(tuple("0123456789abcdef")) and "#sha256:" in rubric.provenance.source
