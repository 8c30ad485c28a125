"""Outages are loud, bounded and recoverable; the cache never serves another server's answers (issue 11, parts 2–3).

Everything runs against the real OpenAI-compatible loopback server of ``oai_server.py`` (or a closed port), through
the command line where the behaviour is the command's (exit status, one ``error:`` line, the output file).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rubrickit import Judge
from rubrickit.backends.base import RetryableBackendError
from rubrickit.errors import JudgeUnavailableError
from rubrickit.judge.breaker import CircuitBreaker
from rubrickit.judge.cache import CACHE_FILENAME, JudgeCache, endpoint_identity
from rubrickit.judge.journal import Journal
from rubrickit.rubric.files import load_rubric

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import Fault, OAIServer, Reply, default_reply  # noqa: E402
from test_cli_score import run  # noqa: E402  (the CLI through typer's runner, exceptions re-raised)

REPO = Path(__file__).resolve().parents[1]

RUBRIC = """\
rubrickit: 1
id: plain
version: 1.0.0
title: Plain verdict criteria
criteria:
  - id: answers
    text: The response answers the question.
  - id: polite
    text: The response is polite.
  - id: accurate
    text: The response is accurate.
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rubric = tmp_path / "plain.yaml"
    rubric.write_text(RUBRIC)
    data = tmp_path / "data.jsonl"
    rows = [{"id": f"item-{n}", "prompt": f"Question {n}?", "response": f"Answer {n}."} for n in range(6)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"rubric": rubric, "data": data, "out": tmp_path / "out.jsonl", "cache": tmp_path / "cache"}


def score_args(files: dict[str, Path], url: str, *extra: object) -> list[object]:
    return ["score", "-r", files["rubric"], "-d", files["data"], "-o", files["out"], "--judge", "openai:judge",
            "--base-url", url, "--cache-dir", files["cache"], *extra]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------ fatal at once


def test_dead_server_stops_the_run_with_exit_4_not_an_all_error_output(files: dict[str, Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    code, output = run(*score_args(files, url, "--max-outage", "1"))
    assert code == 4, output
    assert time.monotonic() - started < 30  # not 6 attempts × backoff × every call
    (line,) = error_lines(output)
    assert "unreachable" in line and "--resume" in line and "Traceback" not in output
    assert not files["out"].exists() or records(files["out"]) == []  # never a file of error verdicts


@pytest.mark.parametrize(("server_options", "expect"), [
    ({"api_key": "the-right-key"}, "HTTP 401"),
    ({"models": ["another-model"]}, "HTTP 404"),
])
def test_auth_and_unknown_model_are_fatal_for_the_whole_run(files: dict[str, Path], server_options: dict,
                                                            expect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "a-wrong-key-123456")
    with OAIServer(**server_options) as server:
        code, output = run(*score_args(files, server.url, "-c", "2"))
        calls = len(server.chat_bodies)
    assert code == 4, output
    (line,) = error_lines(output)
    assert expect in line and "The run stopped" in line and "--resume" in line
    assert "a-wrong-key-123456" not in output
    assert calls <= 4  # the calls in flight when the first answer came back; no retries, no other items


def test_provider_message_and_hint_are_in_the_fatal_error(files: dict[str, Path]) -> None:
    fault = Fault.http_error(404, "The model `judge` does not exist.", code="model_not_found")
    with OAIServer(fault) as server:
        code, output = run(*score_args(files, server.url))
    assert code == 4
    assert "The model `judge` does not exist." in output and "check the model name" in output


# ------------------------------------------------------------------------------------------------ time-outs


def test_timeout_and_max_retries_bound_a_server_that_never_answers(files: dict[str, Path]) -> None:
    with OAIServer(Fault.timeout(30)) as server:
        started = time.monotonic()
        code, output = run(*score_args(files, server.url, "--timeout", "0.3", "--max-retries", "1",
                                       "--max-outage", "2"))
        elapsed = time.monotonic() - started
    assert code == 4, output  # every call timed out: an outage, stopped by the breaker
    assert elapsed < 20
    assert "timed out" in output or "TimeoutError" in output


def test_timeout_comes_from_the_environment_too(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICKIT_TIMEOUT", "0.3")
    monkeypatch.setenv("RUBRICKIT_MAX_RETRIES", "0")
    slow_first = {"n": 0}

    def reply(body: dict) -> object:
        slow_first["n"] += 1
        return Reply(default_reply(body).text, delay=5) if "Question 0" in json.dumps(body) else default_reply(body)

    with OAIServer(reply) as server:
        started = time.monotonic()
        code, output = run(*score_args(files, server.url, "--max-error-rate", "0.5"))
    assert time.monotonic() - started < 10
    assert code == 0, output
    item0 = next(r for r in records(files["out"]) if r["item_id"] == "item-0")
    assert {v["verdict"] for v in item0["verdicts"]} == {"error"}
    assert all("timeout" in v["error"] for v in item0["verdicts"])


# ------------------------------------------------------------------------------------------------ circuit breaker


def test_breaker_pauses_probes_and_recovers_without_error_verdicts(files: dict[str, Path]) -> None:
    down_until = time.monotonic() + 1.5

    def reply(body: dict) -> object:
        return Fault.drop() if time.monotonic() < down_until else default_reply(body)

    rubric = load_rubric(files["rubric"])
    rows = [json.loads(line) for line in files["data"].read_text().splitlines()]
    with OAIServer(reply) as server:
        with Judge("openai:judge", base_url=server.url, concurrency=4, use_cache=False, max_outage=30) as judge:
            judge.breaker.probe_interval = 0.2
            result = list(judge.score_many(rubric, rows))
            openings = judge.breaker.openings
    assert openings >= 1
    assert len(result) == 6 and all(r.errors == 0 for r in result)


def test_breaker_unit_opens_probes_and_trips() -> None:
    now = [0.0]
    breaker = CircuitBreaker(spec="openai:x", max_outage=10, window=10, min_calls=5, threshold=0.8,
                             probe_interval=1.0, clock=lambda: now[0])
    outage = RetryableBackendError("connection failed")
    busy = RetryableBackendError("HTTP 429", status=429)

    async def scenario() -> None:
        for _ in range(10):
            breaker.record(busy)  # rate limits are not an outage
        assert not breaker.is_open
        for _ in range(5):
            assert await breaker.admit() is False
            breaker.record(outage)
        assert breaker.is_open
        now[0] = 1.0
        assert await breaker.admit() is True  # the probe
        breaker.record(outage, probe=True)
        assert breaker.is_open
        now[0] = 3.0
        assert await breaker.admit() is True  # the next probe, after a doubled interval
        breaker.record(None, probe=True)
        assert not breaker.is_open
        for _ in range(5):
            breaker.record(outage)
        now[0] = 20.0
        with pytest.raises(JudgeUnavailableError, match="unreachable"):
            await breaker.admit()
        with pytest.raises(JudgeUnavailableError):  # every later attempt too
            await breaker.admit()

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------------ exit status


def test_error_verdicts_give_exit_3_with_counts_unless_allowed(files: dict[str, Path]) -> None:
    def reply(body: dict) -> object:
        return "no verdict here" if "polite" in json.dumps(body) else default_reply(body)

    with OAIServer(reply) as server:
        code, output = run(*score_args(files, server.url))
        assert code == 3, output
        (line,) = error_lines(output)
        assert "6 of 6 items ended with error verdicts" in line and "parse 6" in line and "--resume" in line
        code, output = run(*score_args(files, server.url, "--force", "--max-error-rate", "1"))
        assert code == 0, output


# ------------------------------------------------------------------------------------------------ resume


def test_resume_rejudges_error_records_and_keeps_one_record_per_item(files: dict[str, Path]) -> None:
    broken = {"on": True}

    def reply(body: dict) -> object:
        if broken["on"] and "Answer 2" in json.dumps(body):
            return Fault.server_error(503)
        return default_reply(body)

    with OAIServer(reply) as server:
        code, output = run(*score_args(files, server.url, "--max-retries", "0"))
        assert code == 3, output
        first = records(files["out"])
        assert [r["item_id"] for r in first if r["errors"]] == ["item-2"]
        broken["on"] = False
        calls = len(server.chat_bodies)
        code, output = run(*score_args(files, server.url, "--resume"))
        assert code == 0, output
        assert len(server.chat_bodies) - calls == 3  # only item-2's three criteria were asked again
    final = records(files["out"])
    assert sorted(r["item_id"] for r in final) == [f"item-{n}" for n in range(6)]
    assert all(r["errors"] == 0 for r in final)
    assert "judged again" in output


def test_resume_refuses_records_of_another_judge_or_rubric_version(files: dict[str, Path]) -> None:
    with OAIServer() as server:
        assert run(*score_args(files, server.url))[0] == 0
        before = files["out"].read_bytes()
        code, output = run("score", "-r", files["rubric"], "-d", files["data"], "-o", files["out"], "--judge",
                           "openai:other-judge", "--base-url", server.url, "--cache-dir", files["cache"], "--resume")
        assert code == 1 and "made with judge 'openai:judge'" in output and "--force" in output
        files["rubric"].write_text(RUBRIC.replace("is polite", "is courteous"))
        code, output = run(*score_args(files, server.url, "--resume"))
        assert code == 1 and "rubric 'plain' changed" in output
    assert files["out"].read_bytes() == before  # refused before anything was touched


def test_journal_redo_rewrites_atomically_and_check_runs_first(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    rows = [{"item_id": "a", "rubric_id": "r", "errors": 0}, {"item_id": "b", "rubric_id": "r", "errors": 2},
            {"item_id": "c", "rubric_id": "r", "errors": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def refuse(record: dict, number: int) -> None:
        raise JudgeUnavailableError(f"line {number}")

    with pytest.raises(JudgeUnavailableError, match="line 1"):
        Journal(path, resume=True, check=refuse, redo=lambda r: bool(r["errors"]))
    assert len(path.read_text().splitlines()) == 3
    with Journal(path, resume=True, redo=lambda r: bool(r["errors"])) as journal:
        assert journal.redone == 1 and ("b", "r", 0) not in journal.done and ("a", "r", 0) in journal.done
        journal.append({"item_id": "b", "rubric_id": "r", "errors": 0})
    assert [json.loads(line)["item_id"] for line in path.read_text().splitlines()] == ["a", "c", "b"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_prints_how_to_resume_and_no_traceback(files: dict[str, Path]) -> None:
    with OAIServer(latency=0.5) as server:
        env = {**os.environ, "COLUMNS": "200"}
        command = [sys.executable, "-m", "rubrickit.cli", *map(str, score_args(files, server.url, "-c", "1"))]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (files["out"].exists() and files["out"].read_text().strip()):
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert all(r["errors"] == 0 for r in records(files["out"]))  # what was finished is whole


# ------------------------------------------------------------------------------------------------ cache identity


def test_two_servers_with_one_model_name_never_share_cached_answers(files: dict[str, Path]) -> None:
    def verdict(value: str):  # noqa: ANN202
        return lambda body: json.dumps({"rationale": "scripted", "verdict": value})

    with OAIServer(verdict("met")) as first, OAIServer(verdict("unmet")) as second:
        assert run(*score_args(files, first.url))[0] == 0
        assert {v["verdict"] for r in records(files["out"]) for v in r["verdicts"]} == {"met"}
        code, output = run(*score_args(files, second.url, "--force"))
        assert code == 0, output
        assert len(second.chat_bodies) == 18  # asked, not served from the first server's answers
    assert {v["verdict"] for r in records(files["out"]) for v in r["verdicts"]} == {"unmet"}


def test_endpoint_identity_drops_credentials() -> None:
    same = endpoint_identity("http://user:pw@127.0.0.1:8000/v1/?api_key=SECRET&api-version=2")
    assert same == endpoint_identity("http://127.0.0.1:8000/v1?api-version=2")
    assert "SECRET" not in same and "pw" not in same
    assert endpoint_identity("http://127.0.0.1:8000/v1") != endpoint_identity("http://127.0.0.1:8001/v1")


def test_credentials_in_the_base_url_never_reach_the_cache(files: dict[str, Path]) -> None:
    with OAIServer() as server:
        code, output = run(*score_args(files, server.url.replace("http://", "http://user:hunter2pass@")))
        assert code == 1 and "carries credentials" in output and "hunter2pass" not in output  # at once, not an outage
        code, output = run(*score_args(files, server.url + "?api_key=SECRET-IN-QUERY-123"))
    blob = b"".join(p.read_bytes() for p in files["cache"].iterdir())
    assert blob and b"SECRET-IN-QUERY-123" not in blob


def test_an_older_cache_format_is_emptied_not_served(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    old = sqlite3.connect(tmp_path / CACHE_FILENAME)
    old.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, spec TEXT NOT NULL, completion TEXT NOT NULL, "
                "created REAL NOT NULL)")
    old.execute("INSERT INTO completions VALUES ('k', 'openai:m', '{\"text\": \"met\"}', 0)")
    old.commit()
    old.close()
    with JudgeCache(tmp_path) as cache:
        assert cache.get("k") is None
    rows = sqlite3.connect(tmp_path / CACHE_FILENAME).execute("SELECT COUNT(*) FROM completions").fetchone()
    assert rows == (0,)


def test_judge_options_read_the_environment_for_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from rubrickit.errors import RubrickitError
    from rubrickit.judge.engine import JudgeOptions

    monkeypatch.setenv("RUBRICKIT_TIMEOUT", "2.5")
    monkeypatch.setenv("RUBRICKIT_MAX_RETRIES", "1")
    monkeypatch.setenv("RUBRICKIT_MAX_OUTAGE", "9")
    options = JudgeOptions()
    assert (options.timeout, options.max_retries, options.max_outage) == (2.5, 1, 9.0)
    assert JudgeOptions(timeout=7).timeout == 7  # an explicit value wins
    monkeypatch.setenv("RUBRICKIT_TIMEOUT", "soon")
    with pytest.raises(RubrickitError, match="RUBRICKIT_TIMEOUT"):
        JudgeOptions()


def test_eval_against_a_dead_server_stops_with_exit_4(tmp_path: Path) -> None:
    pairs = REPO / "examples" / "support-pairs.jsonl"
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, output = run("eval", "--data", pairs, "--judge", "openai:judge", "--base-url", url, "--max-outage", "1",
                       "--cache-dir", tmp_path / "cache", "--timeout", "1")
    assert code == 4, output
    assert len(error_lines(output)) == 1 and "unreachable" in output and "Traceback" not in output


def test_resume_asks_again_after_unreadable_replies_instead_of_reading_them_from_the_cache(
        files: dict[str, Path]) -> None:
    garbage = {"on": True}

    def reply(body: dict) -> object:
        text = json.dumps(body)
        if garbage["on"] and "Answer 4" in text and "polite" in text:
            return "I cannot decide."
        return default_reply(body)

    with OAIServer(reply) as server:
        code, output = run(*score_args(files, server.url))
        assert code == 3 and "parse" in output, output
        garbage["on"] = False
        calls = len(server.chat_bodies)
        code, output = run(*score_args(files, server.url, "--resume"))
        assert code == 0, output
        assert len(server.chat_bodies) > calls  # the unreadable replies were not cached
    assert all(r["errors"] == 0 for r in records(files["out"]))


def test_an_answer_read_only_after_a_reask_is_not_asked_again_on_resume(files: dict[str, Path]) -> None:
    phase = {"first": True}

    def reply(body: dict) -> object:
        text, reask = json.dumps(body), len(body["messages"]) > 2
        if "Answer 4" in text and "polite" in text and not reask:
            return "Hmm."  # readable only when re-asked
        if phase["first"] and "Answer 4" in text and "accurate" in text:
            return "No idea."  # unreadable in the first run: the item ends with an error verdict
        return default_reply(body)

    with OAIServer(reply) as server:
        assert run(*score_args(files, server.url))[0] == 3
        phase["first"] = False
        before = len(server.chat_bodies)
        code, output = run(*score_args(files, server.url, "--resume"))
        asked = [json.dumps(body) for body in server.chat_bodies[before:]]
    assert code == 0, output
    assert asked and not any("polite" in body for body in asked)  # read from the cache, under the first request


def test_breaker_cancelled_probe_keeps_it_open_and_lets_another_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(spec="openai:x", max_outage=100, window=10, min_calls=5, threshold=0.8,
                             probe_interval=1.0, clock=lambda: now[0])
    outage = RetryableBackendError("connection failed")

    async def scenario() -> None:
        for _ in range(5):
            breaker.record(outage)
        assert breaker.is_open
        now[0] = 1.0
        assert await breaker.admit() is True  # the probe goes, then its run is cancelled
        breaker.release_probe()
        assert breaker.is_open  # a cancelled probe proved nothing: the judge is still presumed down
        assert await breaker.admit() is True  # and the next attempt may probe at once

    asyncio.run(scenario())
