"""The results journal: fsync'd appends, resume, torn-line recovery, refusal to overwrite, kill-safety."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rubrickit.errors import OutputExistsError, RubricError, RubrickitError
from rubrickit.judge.journal import PAIR_KEY_FIELDS, Journal, read_records, record_key
from rubrickit.rubric import ScoreRecord

REPO = Path(__file__).resolve().parents[1]


def rec(i: int, repeat: int | None = 0, **extra) -> dict:
    record = {"item_id": f"item-{i}", "rubric_id": "support", "reward": i / 10}
    if repeat is not None:
        record["repeat"] = repeat
    record.update(extra)
    return record


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_no_path_keeps_no_journal_but_tracks_keys(tmp_path: Path):
    with Journal(None) as journal:
        assert journal.append(rec(1)) is True
        assert journal.append(rec(1)) is False
        assert journal.done == {("item-1", "support", 0)}
    assert list(tmp_path.iterdir()) == []


def test_append_writes_one_line_per_record_and_fsyncs_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    path = tmp_path / "out" / "scores.jsonl"
    with Journal(path) as journal:
        assert path.exists()  # created at once, so a concurrent run sees it
        for i in range(3):
            journal.append(rec(i))
            # Visible to another reader immediately: nothing sits in a user-space buffer.
            assert len(lines(path)) == i + 1
    assert len(synced) == 3
    assert [json.loads(line) for line in lines(path)] == [rec(0), rec(1), rec(2)]


def test_fsync_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    with Journal(tmp_path / "s.jsonl", fsync=False) as journal:
        journal.append(rec(0))
    assert synced == []


def test_pydantic_records_are_written_as_their_json(tmp_path: Path):
    record = ScoreRecord(
        item_id="a", rubric_id="support", rubric_fingerprint="sha256:0123456789abcdef", reward=0.5, coverage=1.0
    )
    path = tmp_path / "s.jsonl"
    with Journal(path) as journal:
        journal.append(record)
        assert journal.done == {("a", "support", 0)}
    assert lines(path) == [record.model_dump_json()]
    assert ScoreRecord.model_validate(read_records(path)[0]) == record


def test_existing_file_is_not_overwritten_without_a_flag(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n")
    with pytest.raises(OutputExistsError, match="--resume to continue it or --force to start over"):
        Journal(path)
    assert lines(path) == [json.dumps(rec(0))]


def test_existing_empty_file_needs_no_flag(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.touch()
    with Journal(path) as journal:
        journal.append(rec(0))
    assert len(lines(path)) == 1


def test_overwrite_starts_over(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n" + json.dumps(rec(1)) + "\n")
    with Journal(path, overwrite=True) as journal:
        assert journal.done == set()
        journal.append(rec(5))
    assert [json.loads(line)["item_id"] for line in lines(path)] == ["item-5"]


def test_resume_and_overwrite_together_are_refused(tmp_path: Path):
    with pytest.raises(RubrickitError, match="not both"):
        Journal(tmp_path / "s.jsonl", resume=True, overwrite=True)


def test_gzip_output_is_refused_with_a_next_step(tmp_path: Path):
    with pytest.raises(RubrickitError, match="compress it afterwards"):
        Journal(tmp_path / "s.jsonl.gz")


def test_resume_of_a_missing_file_starts_fresh(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    with Journal(path, resume=True) as journal:
        assert journal.done == set() and journal.resumed_records == []
        journal.append(rec(0))
    assert len(lines(path)) == 1


def test_resume_skips_finished_tasks_and_appends_the_rest(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    with Journal(path) as journal:
        journal.append(rec(0))
        journal.append(rec(1, repeat=1))
    with Journal(path, resume=True) as journal:
        assert journal.done == {("item-0", "support", 0), ("item-1", "support", 1)}
        assert journal.resumed_records == [rec(0), rec(1, repeat=1)]
        todo = [r for r in (rec(0), rec(1), rec(1, repeat=1), rec(2)) if journal.key(r) not in journal.done]
        assert [journal.key(r) for r in todo] == [("item-1", "support", 0), ("item-2", "support", 0)]
        for r in todo:
            journal.append(r)
    keys = [record_key(r) for r in read_records(path)]
    assert len(keys) == len(set(keys)) == 4


def test_appending_a_finished_key_again_writes_nothing(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    with Journal(path) as journal:
        assert journal.append(rec(0)) is True
        assert journal.append(rec(0, reward=0.9)) is False
        assert journal.written == 1
    assert len(lines(path)) == 1


def test_torn_last_line_is_truncated_on_resume(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "s.jsonl"
    whole = json.dumps(rec(0)) + "\n" + json.dumps(rec(1)) + "\n"
    torn = json.dumps(rec(2))[:17]  # a writer killed half-way through its line
    path.write_text(whole + torn)
    with caplog.at_level(logging.WARNING, logger="rubrickit.judge.journal"):
        journal = Journal(path, resume=True)
    assert journal.truncated_bytes == len(torn.encode())
    assert journal.done == {("item-0", "support", 0), ("item-1", "support", 0)}
    assert path.read_text() == whole
    assert f"({len(torn)} bytes)" in caplog.text
    journal.append(rec(2))
    journal.close()
    assert [r["item_id"] for r in read_records(path)] == ["item-0", "item-1", "item-2"]


def test_complete_record_missing_only_its_newline_is_kept(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n" + json.dumps(rec(1)))
    with Journal(path, resume=True) as journal:
        assert journal.truncated_bytes == 0
        assert ("item-1", "support", 0) in journal.done
        journal.append(rec(2))
    assert [r["item_id"] for r in read_records(path)] == ["item-0", "item-1", "item-2"]


def test_invalid_line_before_the_end_names_file_and_line(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n{not json\n" + json.dumps(rec(1)) + "\n")
    with pytest.raises(RubricError, match=rf"{path.name}:2: not valid JSON") as info:
        Journal(path, resume=True)
    assert "--force" in str(info.value)
    assert path.read_text().count("\n") == 3  # nothing was cut


def test_non_object_line_is_an_error(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n[1, 2]\n")
    with pytest.raises(RubricError, match=r":2: expected a JSON object, got list"):
        Journal(path, resume=True)


def test_record_missing_a_key_field_is_an_error_naming_it(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"rubric_id": "r"}) + "\n")
    with pytest.raises(RubricError, match=r":1: record has no 'item_id'"):
        Journal(path, resume=True)


def test_blank_lines_are_skipped(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n\n  \n" + json.dumps(rec(1)) + "\n")
    with Journal(path, resume=True) as journal:
        assert len(journal.done) == 2


def test_pairwise_key_fields_and_missing_repeat_counts_as_zero(tmp_path: Path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        json.dumps({"pair_id": "p1", "rubric_id": "r", "winner": "A"})
        + "\n"
        + json.dumps({"pair_id": "p1", "rubric_id": "r", "repeat": 1, "winner": "B"})
        + "\n"
    )
    with Journal(path, resume=True, key_fields=PAIR_KEY_FIELDS) as journal:
        assert journal.done == {("p1", "r", 0), ("p1", "r", 1)}
        assert journal.append({"pair_id": "p1", "rubric_id": "r", "repeat": 0}) is False
        assert journal.append({"pair_id": "p2", "rubric_id": "r"}) is True
        assert ("p2", "r", 0) in journal.done


def test_record_key_normalises_values():
    assert record_key({"item_id": 7, "rubric_id": "r", "repeat": "2"}) == ("7", "r", 2)
    assert record_key({"item_id": "a", "rubric_id": "r"}) == ("a", "r", 0)
    with pytest.raises(ValueError, match="repeat"):
        record_key({"item_id": "a", "rubric_id": "r", "repeat": 1.5})
    with pytest.raises(ValueError, match="'rubric_id'"):
        record_key({"item_id": "a"})


def test_second_writer_on_the_same_file_is_refused(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    with Journal(path) as journal:
        journal.append(rec(0))
        with pytest.raises(RubrickitError, match="another run is writing"):
            Journal(path, resume=True)
    with Journal(path, resume=True) as again:  # the lock went with close()
        assert len(again.done) == 1


def test_append_after_close_is_an_error(tmp_path: Path):
    journal = Journal(tmp_path / "s.jsonl")
    journal.close()
    journal.close()
    with pytest.raises(ValueError, match="closed"):
        journal.append(rec(0))


def test_read_records_reads_gzip_and_ignores_a_torn_tail(tmp_path: Path):
    plain = tmp_path / "s.jsonl"
    plain.write_text(json.dumps(rec(0)) + "\n" + json.dumps(rec(1))[:9])
    assert read_records(plain) == [rec(0)]
    zipped = tmp_path / "s.jsonl.gz"
    zipped.write_bytes(gzip.compress((json.dumps(rec(0)) + "\n\n" + json.dumps(rec(1)) + "\n").encode()))
    assert read_records(zipped) == [rec(0), rec(1)]


def test_read_records_reports_a_bad_line(tmp_path: Path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(0)) + "\nnope\n" + json.dumps(rec(1)) + "\n")
    with pytest.raises(RubricError, match=r"s.jsonl:2: not valid JSON"):
        read_records(path)


WRITER = """
import sys
from rubrickit.judge.journal import Journal

path, total = sys.argv[1], int(sys.argv[2])
with Journal(path, resume=True) as journal:
    for i in range(total):
        record = {"item_id": f"item-{i}", "rubric_id": "support", "repeat": 0, "padding": "x" * 20000}
        if journal.key(record) in journal.done:
            continue
        journal.append(record)
        print(i, flush=True)  # only after append returned: this record is finished
"""


def _run_writer_until(path: Path, total: int, confirmations: int | None) -> list[int]:
    """Start a writer; SIGKILL it after ``confirmations`` finished records (None: let it finish)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(total)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    finished: list[int] = []
    assert process.stdout is not None
    if confirmations is not None:
        deadline = time.monotonic() + 60
        while len(finished) < confirmations and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            finished.append(int(line))
        process.send_signal(signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    finished.extend(int(line) for line in out.split())
    if confirmations is None:
        assert process.returncode == 0, err
    else:
        assert process.returncode == -signal.SIGKILL, err
    return finished


def test_sigkilled_writer_loses_and_duplicates_nothing_on_resume(tmp_path: Path):
    path = tmp_path / "scores.jsonl"
    total = 400
    confirmed: set[int] = set()
    for round_, stop_after in enumerate((60, 90, 75)):
        finished = _run_writer_until(path, total, stop_after)
        assert len(finished) >= stop_after, f"round {round_}: writer confirmed only {len(finished)}"
        confirmed.update(finished)
        # Every record the writer reported finished is on disk, even though it was killed.
        with Journal(path, resume=True) as journal:
            on_disk = {int(key[0].split("-")[1]) for key in journal.done}
        assert confirmed <= on_disk
    confirmed.update(_run_writer_until(path, total, None))
    records = read_records(path)
    ids = [int(r["item_id"].split("-")[1]) for r in records]
    assert sorted(ids) == list(range(total))  # all there, none twice
    # Records written just before a kill but never confirmed are kept too, not written twice.
    assert confirmed <= set(ids)
    assert path.read_bytes().endswith(b"\n")
