"""The judge cache: keys over everything that can change an answer, persistence, concurrency, graceful failure."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from rubrickit.backends.base import Completion, CompletionRequest, Message, TokenLogprob, Usage
from rubrickit.judge.cache import CACHE_FILENAME, JudgeCache, default_cache_dir

SPEC = "openai:gpt-4.1-mini"


def request(**changes) -> CompletionRequest:
    base = {
        "messages": (
            Message(role="system", content="You are a strict grader."),
            Message(role="user", content="Response: Paris.\nCriterion: names the capital of France."),
        ),
        "max_tokens": 256,
        "temperature": 0.0,
    }
    base.update(changes)
    return CompletionRequest(**base)


def completion(text: str = '{"rationale": "ok", "verdict": "met"}') -> Completion:
    return Completion(
        text=text,
        usage=Usage(input_tokens=120, output_tokens=14, cached_tokens=64),
        cost=0.00012,
        finish_reason="stop",
        model="gpt-4.1-mini-2025-04-14",
        logprobs=(TokenLogprob(token="Yes", logprob=-0.01, top={"Yes": -0.01, "No": -4.6}),),
    )


def test_key_is_stable_sha256_hex():
    key = JudgeCache.key(SPEC, request())
    assert key == JudgeCache.key(SPEC, request())
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"max_tokens": 257},
        {"temperature": 0.7},
        {"seed": 1},
        {"json_schema": {"type": "object"}},
        {"choices": ("Yes", "No")},
        {"logprobs": True},
        {"top_logprobs": 5},
        {"messages": (Message(role="user", content="Response: Lyon.\nCriterion: names the capital of France."),)},
        {
            "messages": (
                Message(role="system", content="You are a strict grader!"),
                Message(role="user", content="Response: Paris.\nCriterion: names the capital of France."),
            )
        },
    ],
)
def test_key_changes_with_every_request_field(changes: dict):
    assert JudgeCache.key(SPEC, request(**changes)) != JudgeCache.key(SPEC, request())


def test_key_changes_with_spec_and_salt():
    base = JudgeCache.key(SPEC, request())
    assert JudgeCache.key("openai:gpt-4.1", request()) != base
    assert JudgeCache.key("litellm:openai/gpt-4.1-mini", request()) != base
    assert JudgeCache.key(SPEC, request(), salt="repeat=1") != base
    assert JudgeCache.key(SPEC, request(), salt="repeat=1") != JudgeCache.key(SPEC, request(), salt="repeat=2")


def test_miss_then_hit_round_trips_the_whole_completion(tmp_path: Path):
    cache = JudgeCache(tmp_path)
    key = JudgeCache.key(SPEC, request())
    assert cache.get(key) is None
    cache.put(key, completion(), spec=SPEC)
    assert cache.get(key) == completion()
    assert (cache.hits, cache.misses) == (1, 1)
    cache.close()


def test_directory_and_file_are_created_on_first_use_only(tmp_path: Path):
    directory = tmp_path / "nested" / "cache"
    cache = JudgeCache(directory)
    assert not directory.exists()
    cache.get("k")
    assert (directory / CACHE_FILENAME).is_file()
    cache.close()


def test_entries_persist_across_instances(tmp_path: Path):
    key = JudgeCache.key(SPEC, request())
    with JudgeCache(tmp_path) as first:
        first.put(key, completion("persisted"), spec=SPEC)
    with JudgeCache(tmp_path) as second:
        got = second.get(key)
    assert got is not None and got.text == "persisted"


def test_database_uses_wal_and_stores_only_key_spec_and_completion(tmp_path: Path):
    key = JudgeCache.key(SPEC, request())
    with JudgeCache(tmp_path) as cache:
        cache.put(key, completion(), spec=SPEC)
    connection = sqlite3.connect(tmp_path / CACHE_FILENAME)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in connection.execute("PRAGMA table_info(completions)")]
        assert columns == ["key", "spec", "completion", "created"]
        rows = connection.execute("SELECT key, spec FROM completions").fetchall()
    finally:
        connection.close()
    assert rows == [(key, SPEC)]


def test_put_replaces_an_existing_entry(tmp_path: Path):
    with JudgeCache(tmp_path) as cache:
        cache.put("k", completion("old"))
        cache.put("k", completion("new"))
        assert cache.get("k").text == "new"


def test_clear_empties_the_cache(tmp_path: Path):
    with JudgeCache(tmp_path) as cache:
        for i in range(3):
            cache.put(f"k{i}", completion())
        assert cache.clear() == 3
        assert cache.get("k0") is None


def test_planted_api_key_never_reaches_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    secret = "sk-planted-4f8a1c9e2b7d6a5f3e0c1b2a"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret + "-anthropic")
    cache = JudgeCache(tmp_path)
    for i in range(20):
        req = request(seed=i)
        cache.put(JudgeCache.key(SPEC, req), completion(f"answer {i}"), spec=SPEC)
        cache.get(JudgeCache.key(SPEC, req))
    cache.close()
    files = list(tmp_path.iterdir())
    assert files
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data
        assert b"sk-planted" not in data


def test_prompt_text_is_not_stored(tmp_path: Path):
    with JudgeCache(tmp_path) as cache:
        cache.put(JudgeCache.key(SPEC, request()), completion(), spec=SPEC)
    for path in tmp_path.iterdir():
        assert b"names the capital of France" not in path.read_bytes()


def test_concurrent_async_use_from_one_loop(tmp_path: Path):
    cache = JudgeCache(tmp_path)

    async def task(i: int) -> Completion | None:
        key = JudgeCache.key(SPEC, request(seed=i % 25))
        if cache.get(key) is None:
            await asyncio.sleep(0)
            cache.put(key, completion(f"seed {i % 25}"), spec=SPEC)
        await asyncio.sleep(0)
        return cache.get(key)

    async def main() -> list[Completion | None]:
        return await asyncio.gather(*(task(i) for i in range(200)))

    results = asyncio.run(main())
    assert [r.text for r in results] == [f"seed {i % 25}" for i in range(200)]
    cache.close()


def test_concurrent_use_from_threads(tmp_path: Path):
    cache = JudgeCache(tmp_path)
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                key = f"t{n}-{i}"
                cache.put(key, completion(key))
                assert cache.get(key).text == key
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert cache.hits == 400 and not cache.disabled
    cache.close()


def test_two_instances_share_one_file(tmp_path: Path):
    with JudgeCache(tmp_path) as a, JudgeCache(tmp_path) as b:
        a.put("k", completion("from a"))
        assert b.get("k").text == "from a"


def test_corrupt_database_degrades_to_no_cache_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / CACHE_FILENAME).write_bytes(b"this is not a sqlite database at all " * 200)
    cache = JudgeCache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="rubrickit.judge.cache"):
        assert cache.get("k") is None
        cache.put("k", completion())
        assert cache.get("k") is None
        cache.clear()
    assert cache.disabled
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "continuing without caching" in warnings[0].getMessage()
    assert str(tmp_path / CACHE_FILENAME) in warnings[0].getMessage()
    assert cache.misses == 2
    cache.close()


def test_locked_database_degrades_instead_of_hanging(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with JudgeCache(tmp_path) as setup:
        setup.put("k", completion())
    holder = sqlite3.connect(tmp_path / CACHE_FILENAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        cache = JudgeCache(tmp_path, timeout=0.05)
        with caplog.at_level(logging.WARNING, logger="rubrickit.judge.cache"):
            cache.put("k2", completion())
            cache.put("k3", completion())
        assert cache.disabled
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        cache.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_unreadable_entry_from_another_version_is_a_miss(tmp_path: Path):
    with JudgeCache(tmp_path) as cache:
        cache.put("k", completion())
    connection = sqlite3.connect(tmp_path / CACHE_FILENAME, isolation_level=None)
    connection.execute("UPDATE completions SET completion = ?", ('{"unexpected": true}',))
    connection.close()
    with JudgeCache(tmp_path) as cache:
        assert cache.get("k") is None
        assert cache.misses == 1 and not cache.disabled


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("RUBRICKIT_CACHE_DIR", raising=False)  # conftest points every test at a session folder
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "rubrickit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rubrickit"
    monkeypatch.setenv("RUBRICKIT_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"


def test_two_processes_migrating_an_old_cache_never_delete_each_others_fresh_entries(tmp_path: Path):
    """The old-format clean-up reads the format under the write lock: a process that opened the file while another
    was migrating it sees the new format and deletes nothing (before, it read format 1 first, waited for the lock,
    then deleted the fresh entries the other had just written)."""
    path = tmp_path / CACHE_FILENAME
    setup = sqlite3.connect(path, isolation_level=None)
    setup.executescript("CREATE TABLE completions (key TEXT PRIMARY KEY, spec TEXT NOT NULL, completion TEXT NOT "
                        "NULL, created REAL NOT NULL); CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT "
                        "NULL); PRAGMA journal_mode=WAL;")
    setup.execute("INSERT INTO completions VALUES ('old', 'x', '{}', 0)")  # format 1: no meta row
    setup.close()

    migrating = sqlite3.connect(path, isolation_level=None)  # another process, in the middle of its migration
    migrating.execute("BEGIN IMMEDIATE")
    migrating.execute("DELETE FROM completions")
    migrating.execute("INSERT INTO meta (name, value) VALUES ('format', '2')")
    fresh = Completion(text="fresh", usage=Usage(input_tokens=1, output_tokens=1))
    migrating.execute("INSERT INTO completions VALUES ('fresh', 'x', ?, 1)", (fresh.model_dump_json(),))

    found: list[Completion | None] = []
    opener = threading.Thread(target=lambda: found.append(JudgeCache(tmp_path, timeout=10).get("fresh")))
    opener.start()
    opener.join(timeout=0.5)  # it reads the file while the other holds the write lock
    migrating.execute("COMMIT")
    migrating.close()
    opener.join(timeout=15)
    assert found and found[0] is not None and found[0].text == "fresh"
