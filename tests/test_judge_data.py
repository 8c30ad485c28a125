"""Loading data rows and pairs: formats, column mapping, stable ids, and errors that name file, line and field."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from rubrickit.data.items import ChatMessage, DataItem, PairItem, load_items, load_pairs, stable_id
from rubrickit.errors import RubricError


def _jsonl(path: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_rows_load_with_chat_prompts_and_extra_columns(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "data.jsonl", [
        {"id": "a", "prompt": "Q?", "response": "A.", "reference": "R", "prompt_id": "p1", "model": "m1"},
        {"id": 7, "prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
         "response": "x"},
    ])
    first, second = load_items(path)
    assert first == DataItem(id="a", prompt="Q?", response="A.", reference="R", prompt_id="p1", meta={"model": "m1"})
    assert second.id == "7"
    assert second.prompt == [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="yo")]


def test_gzip_json_array_and_csv_load_alike(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "Q?", "response": "A."}, {"id": "b", "prompt": "Q2", "response": "B."}]
    gz = load_items(_jsonl(tmp_path / "d.jsonl.gz", rows))
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    array = load_items(tmp_path / "d.json")
    with open(tmp_path / "d.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "prompt", "response"])
        writer.writeheader()
        writer.writerows(rows)
    assert gz == array == load_items(tmp_path / "d.csv")


def test_csv_cells_may_hold_json_chats_and_multiline_text(tmp_path: Path) -> None:
    chat = json.dumps([{"role": "user", "content": "hello"}])
    with open(tmp_path / "d.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "prompt", "response", "reference"])
        writer.writerow(["a", chat, "line one\nline two", ""])
        writer.writerow(["b", "[not json", "r", "ref"])
    a, b = load_items(tmp_path / "d.csv")
    assert a.prompt == [ChatMessage(role="user", content="hello")]
    assert a.response == "line one\nline two" and a.reference is None
    assert b.prompt == "[not json" and b.reference == "ref"


def test_mapping_reads_other_column_names(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"uid": "u1", "question": "Q", "output": "O"}])
    (item,) = load_items(path, mapping={"id": "uid", "prompt": "question", "response": "output"})
    assert (item.id, item.prompt, item.response) == ("u1", "Q", "O")


def test_rows_without_id_get_a_stable_hash_id(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"prompt": "Q", "response": "A"}, {"prompt": "Q", "response": "B"}])
    first, second = load_items(path)
    assert first.id == stable_id("Q", "A") and first.id.startswith("sha256:") and len(first.id) == 23
    assert first.id != second.id
    assert load_items(path)[0].id == first.id  # the same on every run, so --resume works
    assert DataItem(prompt="Q", response="A").id == first.id


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "data.jsonl", [
        {"id": "a", "prompt": "Q", "response": "A"},
        {"id": "b", "prompt": "Q"},
        {"id": "c", "prompt": [{"role": "robot", "content": "x"}], "response": "A"},
        {"id": "d", "prompt": "Q", "response": 5},
    ])
    with pytest.raises(RubricError) as info:
        load_items(path)
    problems = info.value.problems
    assert any(p.startswith(f"{path}:2: response: missing required field") and "--map response=" in p
               for p in problems)
    assert any(p.startswith(f"{path}:3: prompt") and "role" in p for p in problems)
    assert any(p.startswith(f"{path}:4: response: expected a string") for p in problems)


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a", "prompt": "Q", "response": "A"}\n{oops\n', encoding="utf-8")
    with pytest.raises(RubricError, match=r"data.jsonl:2: invalid JSON"):
        load_items(path)


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "data.jsonl", [{"id": "x", "prompt": "Q", "response": "A"},
                                            {"id": "y", "prompt": "Q", "response": "A"},
                                            {"id": "x", "prompt": "Q", "response": "B"}])
    with pytest.raises(RubricError, match=r"data.jsonl:3: id: 'x' already appears on line 1"):
        load_items(path)


def test_missing_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(RubricError, match="no such file"):
        load_items(tmp_path / "nope.jsonl")


def test_pairs_load_with_labels_and_subsets(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "pairs.jsonl", [
        {"id": "p1", "source": "llmbar", "subset": "natural", "prompt": "Q", "response_a": "A", "response_b": "B",
         "label": "b", "label_kind": "human"},
    ])
    (pair,) = load_pairs(path)
    assert (pair.label, pair.subset, pair.meta) == ("B", "natural", {"source": "llmbar", "label_kind": "human"})


def test_chosen_rejected_columns_become_a_labelled_pair(tmp_path: Path) -> None:
    chat_chosen = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}]
    chat_rejected = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]
    path = _jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Q", "chosen": "good", "rejected": "bad"},
        {"chosen": chat_chosen, "rejected": chat_rejected},
    ])
    plain, chat = load_pairs(path)
    assert (plain.response_a, plain.response_b, plain.label) == ("good", "bad", "A")
    assert (chat.response_a, chat.response_b) == ("good", "bad")
    assert chat.prompt == [ChatMessage(role="user", content="Q")]
    assert plain.id == stable_id("Q", "good", "bad")


def test_pair_errors_name_the_missing_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "pairs.jsonl", [{"id": "p", "prompt": "Q", "response_a": "A", "label": "C"}])
    with pytest.raises(RubricError) as info:
        load_pairs(path)
    text = str(info.value)
    assert f"{path}:1: response_b: missing required field" in text
    assert f"{path}:1: label: expected one of" in text


def test_items_given_in_code_validate_the_same_way() -> None:
    item = DataItem.model_validate({"prompt": "Q", "response": "A", "source": "x"})
    assert item.meta == {"source": "x"}
    pair = PairItem.model_validate({"prompt": "Q", "response_a": "a", "response_b": "b", "label": "tie"})
    assert pair.label == "tie" and pair.id.startswith("sha256:")


@pytest.mark.shared_data
def test_shared_pair_files_load(shared_data: Path) -> None:
    pairs = load_pairs(shared_data / "pairs" / "llmbar.jsonl.gz")
    assert len(pairs) == 884
    assert {p.label for p in pairs} <= {"A", "B", "tie"}
    assert all(p.id.startswith("llmbar/") and p.subset for p in pairs)
