"""Preference data loading shared by every generation method: all shapes, grouping, errors, provenance hash."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from rubrickit.data.preferences import file_digest, groups_from_pairs, load_groups, prompt_text
from rubrickit.errors import RubricError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_unified_pairs_group_by_prompt_and_orient_labels(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"id": "p1", "prompt": "Q1", "response_a": "good", "response_b": "bad", "label": "A", "subset": "s"},
        {"id": "p2", "prompt": "Q1", "response_a": "worse", "response_b": "good", "label": "B"},
        {"id": "p3", "prompt": "Q2", "response_a": "x", "response_b": "y", "label": "tie"},
    ])
    groups = load_groups(path)
    assert [g.text for g in groups] == ["Q1", "Q2"]
    q1 = groups[0]
    assert q1.responses == ["good", "bad", "worse"]  # "good" appears twice but is one response
    assert q1.pairs() == [("p1", "good", "bad"), ("p2", "good", "worse")]
    assert q1.subset == "s" and q1.row_ids == ["p1", "p2"]
    # A tie keeps its responses but induces no labelled pair.
    assert groups[1].responses == ["x", "y"] and groups[1].comparisons == []


def test_chosen_rejected_columns_including_chats(tmp_path):
    chat = [{"role": "user", "content": "Hi?"}]
    path = write_jsonl(tmp_path / "cr.jsonl", [
        {"prompt": "Q", "chosen": "yes", "rejected": "no"},
        {"chosen": chat + [{"role": "assistant", "content": "Hello!"}],
         "rejected": chat + [{"role": "assistant", "content": "Go away."}]},
    ])
    groups = load_groups(path)
    assert groups[0].pairs()[0][1:] == ("yes", "no")
    assert prompt_text(groups[1].prompt) == "user: Hi?"
    assert groups[1].pairs()[0][1:] == ("Hello!", "Go away.")


def test_ranked_list_induces_all_pairs_best_first(tmp_path):
    path = write_jsonl(tmp_path / "ranked.jsonl", [
        {"id": "r", "prompt": "Q", "responses": ["mid", "best", "worst"], "ranking": [1, 0, 2]},
        {"prompt": "Q2", "responses": ["a", "b", "c"], "ranked": True},
        {"prompt": "Q3", "responses": ["u", "v"]},
    ])
    ranked, flagged, pool = load_groups(path)
    assert ranked.responses == ["best", "mid", "worst"]
    assert [(p[1], p[2]) for p in ranked.pairs()] == [("best", "mid"), ("best", "worst"), ("mid", "worst")]
    assert len(flagged.comparisons) == 3
    assert pool.responses == ["u", "v"] and pool.comparisons == []  # an unranked pool has no labels


def test_prompt_with_reference_only(tmp_path):
    path = write_jsonl(tmp_path / "ref.jsonl", [{"id": "q1", "prompt": "What is 2+2?", "reference": "4"}])
    (group,) = load_groups(path)
    assert group.id == "q1" and group.reference == "4" and group.responses == []


def test_csv_and_column_mapping(tmp_path):
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["question", "good", "bad"])
        writer.writeheader()
        writer.writerow({"question": "Q", "good": "g", "bad": "b"})
    (group,) = load_groups(path, mapping={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert group.pairs()[0][1:] == ("g", "b")


def test_hugging_face_dataset_on_disk(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the dev extra installs datasets")
    folder = tmp_path / "hf"
    datasets.Dataset.from_list([{"instruction": "Q", "chosen": "g", "rejected": "b"}]).save_to_disk(str(folder))
    (group,) = load_groups(folder, mapping={"prompt": "instruction"})
    assert group.text == "Q" and group.pairs()[0][1:] == ("g", "b")
    assert file_digest(folder).startswith("sha256:")


def test_limit_keeps_first_groups(tmp_path):
    rows = [{"prompt": f"Q{i}", "response_a": "a", "response_b": "b", "label": "A"} for i in range(5)]
    assert [g.text for g in load_groups(write_jsonl(tmp_path / "p.jsonl", rows), limit=2)] == ["Q0", "Q1"]


def test_errors_name_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "Q", "response_a": "a", "response_b": "b", "label": "A"},
        {"prompt": "Q", "responses": ["a", 3]},
        {"prompt": "Q", "responses": ["a", "b"], "ranking": [0, 0]},
        {"prompt": "Q", "answer": "x"},
    ])
    with pytest.raises(RubricError) as info:
        load_groups(path)
    message = str(info.value)
    assert "bad.jsonl:2: responses: must be a list of non-empty strings" in message
    assert "bad.jsonl:3: ranking:" in message
    assert "bad.jsonl:4:" in message and "--map" in message
    with pytest.raises(RubricError, match="no such file"):
        load_groups(tmp_path / "missing.jsonl")


def test_pairs_given_in_code_and_file_digest_changes_with_content(tmp_path):
    groups = groups_from_pairs([{"prompt": "Q", "response_a": "a", "response_b": "b", "label": "B"}])
    assert groups[0].pairs()[0][1:] == ("b", "a")
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(gzip.compress(b"{}\n"))
    first = file_digest(path)
    path.write_bytes(gzip.compress(b"{}\n{}\n"))
    assert file_digest(path) != first


@pytest.mark.shared_data
def test_shared_pairs_files_load(shared_data):
    groups = load_groups(shared_data / "pairs" / "llmbar.jsonl.gz")
    assert sum(len(g.row_ids) for g in groups) == 884
    labelled = sum(len(g.comparisons) for g in groups)
    assert 0 < labelled <= 884
