"""`rubrickit score` and `rubrickit compare` end to end against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.rubric.files import load_rubric

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import OAIServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUBRIC = REPO / "rubrics" / "support-reply.yaml"
runner = CliRunner(env={"COLUMNS": "160"})


def run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def server() -> OAIServer:
    with OAIServer() as srv:
        yield srv


def judge_args(server: OAIServer, tmp_path: Path) -> list[object]:
    return ["--judge", "openai:judge-model", "--base-url", server.url, "--cache-dir", tmp_path / "cache"]


def test_score_writes_records_and_rerun_is_served_from_cache(server: OAIServer, tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    data = REPO / "examples" / "support-tickets.jsonl"
    code, output = run("score", "-r", RUBRIC, "-d", data, "-o", out, *judge_args(server, tmp_path))
    # The scripted server answers the scale criterion with a verdict, not a level: every item has an error verdict,
    # so the run says so and exits 3 (--max-error-rate defaults to 0).
    assert code == 3, output
    assert "3 of 3 items ended with error verdicts" in output and "--resume" in output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["item_id"] for r in records) == ["ticket-1", "ticket-2", "ticket-3"]
    fingerprint = load_rubric(RUBRIC).fingerprint
    assert all(r["rubric_fingerprint"] == fingerprint and r["judge"] == "openai:judge-model" for r in records)
    calls = len(server.chat_bodies)
    assert calls >= 3 * 7  # 9 criteria, 2 decided by checks without a call
    # The scripted server answers the scale criterion with a verdict, not a level: counted as an error, never 0.
    tone = [v for r in records for v in r["verdicts"] if v["criterion_id"] == "tone"]
    assert all(v["verdict"] == "error" and v["level"] is None for v in tone)
    code, output = run("score", "-r", RUBRIC, "-d", data, "-o", out, "--force", "--max-error-rate", "1",
                       *judge_args(server, tmp_path))
    assert code == 0, output
    # The re-run asked only the scale criterion again: its unreadable replies were never cached as answers.
    again = server.chat_bodies[calls:]
    assert again and all("How warm and professional" in json.dumps(body) for body in again)
    assert "judge usage" in output


def test_score_refuses_existing_output_without_resume_or_force(server: OAIServer, tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    out.write_text('{"item_id": "x", "rubric_id": "y"}\n')
    code, output = run("score", "-r", RUBRIC, "-d", REPO / "examples" / "support-tickets.jsonl", "-o", out,
                       *judge_args(server, tmp_path))
    assert code == 1 and "--resume" in output and "--force" in output
    assert out.read_text() == '{"item_id": "x", "rubric_id": "y"}\n'


def test_score_dry_run_calls_nothing(server: OAIServer, tmp_path: Path) -> None:
    code, output = run("score", "-r", RUBRIC, "-d", REPO / "examples" / "support-tickets.jsonl", "--dry-run",
                       *judge_args(server, tmp_path))
    assert code == 0, output
    assert "plan (nothing was called)" in output
    assert server.chat_bodies == []


def test_score_logprob_mode_over_http(server: OAIServer, tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    code, output = run("score", "-r", RUBRIC, "-d", REPO / "examples" / "support-tickets.jsonl", "-o", out,
                       "--mode", "logprob", "--max-error-rate", "1", *judge_args(server, tmp_path))
    assert code == 0, output
    verdicts = [v for line in out.read_text().splitlines() for v in json.loads(line)["verdicts"]]
    judged = [v for v in verdicts if v["criterion_id"] in ("answers-question", "invents-policy")]
    assert judged and all(v["p_met"] is not None for v in judged)


def test_compare_with_rubric_and_direct(server: OAIServer, tmp_path: Path) -> None:
    pairs = REPO / "examples" / "support-pairs.jsonl"
    out = tmp_path / "pairs.jsonl"
    code, output = run("compare", "-d", pairs, "-r", RUBRIC, "-o", out, "--max-error-rate", "1",
                       *judge_args(server, tmp_path))
    assert code == 0, output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["pair_id"] for r in records} == {"pair-1", "pair-2"}
    assert all(r["label"] in ("A", "B") for r in records)
    assert "comparisons" in output
    code, output = run("compare", "-d", pairs, "-o", tmp_path / "direct.jsonl", *judge_args(server, tmp_path))
    # The scripted server answers a verdict where the direct judgment asks for a winner: every pair failed, and
    # the run says so with exit status 3 instead of 0.
    assert code == 3 and "2 of 2 items ended with error verdicts" in output, output


def test_bad_judge_spec_is_one_clear_error(tmp_path: Path) -> None:
    code, output = run("score", "-r", RUBRIC, "-d", REPO / "examples" / "support-tickets.jsonl",
                       "--judge", "openia:gpt-4o", "--dry-run")
    assert code == 1 and "Did you mean 'openai'" in output and "Traceback" not in output


def test_api_key_never_reaches_cache_journal_output_trace_or_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from rubrickit import score_files

    secret = "sk-test-SECRET-4b1d7c9e"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with OAIServer(api_key=secret) as server:
        result = score_files(RUBRIC, REPO / "examples" / "support-tickets.jsonl", judge="openai:judge-model",
                             base_url=server.url, out=tmp_path / "out" / "scores.jsonl", cache_dir=tmp_path / "cache",
                             trace_path=tmp_path / "out" / "trace.jsonl")
        # The key did authenticate every call (the server refuses others) ...
        assert server.chat_bodies and result.records
        assert all(v["verdict"] != "error" for r in result.records for v in r.model_dump()["verdicts"]
                   if v["criterion_id"] != "tone")
    # ... and is nowhere on disk or in the logs.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "trace.jsonl" for p in written) and any(p.suffix == ".sqlite3" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text
    assert secret not in repr(result.accounting)


@pytest.mark.parametrize("transport", ["lean", "sdk"])
def test_credentials_in_the_base_url_never_reach_errors_output_trace_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    import logging

    from oai_server import Fault

    from rubrickit import score_files
    from rubrickit.errors import RubrickitError

    secret = "SECRET-IN-QUERY-7f3a"
    caplog.set_level(logging.DEBUG)
    with OAIServer() as server:
        # The server answers 404 quoting the whole path (the SDK appends the path after the query, so a real server
        # does): the credential travels through the server's error message, the run's error, the trace and the logs.
        server.script(lambda body: Fault.http_error(404, f"Unknown path {server.requests[-1].path}"))
        with pytest.raises(RubrickitError) as stopped:
            score_files(RUBRIC, REPO / "examples" / "support-tickets.jsonl", judge="openai:judge-model",
                        base_url=f"{server.url}?api_key={secret}&sig={secret}", out=tmp_path / "out" / "scores.jsonl",
                        cache_dir=tmp_path / "cache", trace_path=tmp_path / "out" / "trace.jsonl",
                        transport=transport)
        assert any(secret in r.path for r in server.requests)  # it did reach the server, and only there
    assert "404" in str(stopped.value) and secret not in str(stopped.value)
    assert any(p.suffix == ".sqlite3" for p in tmp_path.rglob("*"))
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text


@pytest.mark.parametrize(("flag", "agent"), [((), "rubrickit/"), (("--transport", "sdk"), "AsyncOpenAI/"),
                                             (("--transport", "lean"), "rubrickit/")])
def test_score_transport_flag_picks_the_http_client(server: OAIServer, tmp_path: Path, flag: tuple[str, ...],
                                                     agent: str) -> None:
    out = tmp_path / "scores.jsonl"
    data = REPO / "examples" / "support-tickets.jsonl"
    code, output = run("score", "-r", RUBRIC, "-d", data, "-o", out, "--no-cache", "--max-error-rate", "1", *flag,
                       *judge_args(server, tmp_path))
    assert code == 0, output
    agents = {request.headers["user-agent"].split("/")[0] + "/" for request in server.requests}
    assert agents == {agent}
    assert len(out.read_text().splitlines()) == 3


def test_score_refuses_an_unknown_transport(server: OAIServer, tmp_path: Path) -> None:
    code, output = run("score", "-r", RUBRIC, "-d", REPO / "examples" / "support-tickets.jsonl", "--transport", "h3",
                       *judge_args(server, tmp_path))
    assert code != 0 and "--transport 'h3': use lean or sdk" in output
    assert not server.requests
