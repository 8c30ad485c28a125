"""``rubrickit serve --workers N``: several worker processes on one listening socket, the judge cache shared.

Real processes (the CLI started as a subprocess, its workers spawned by it), real concurrent HTTP clients on
127.0.0.1 sending OpenRLHF's requests, and the loopback OpenAI-compatible judge server; never the embedded model.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from typer.testing import CliRunner

from rubrickit.cli import app
from rubrickit.integrations.server import BackgroundServer, ServeOptions, build_scorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import OAIServer  # noqa: E402
from test_integrations_server import RUBRIC, make_samples, post_like_openrlhf  # noqa: E402

SECRET = "sk-test-SECRETKEY-0123456789abcdef"
READY = re.compile(r"worker (\d+) ready \(pid (\d+)\)")


@pytest.fixture
def rubric_path(tmp_path: Path) -> Path:
    path = tmp_path / "rl-support.yaml"
    path.write_text(RUBRIC)
    return path


class Served:
    """A ``rubrickit serve`` process and its log (stderr, read on a thread)."""

    def __init__(self, proc: subprocess.Popen[str], lines: list[str]):
        self.proc = proc
        self.lines = lines
        self.url = ""

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def ready_pids(self) -> dict[int, list[int]]:
        """worker index → the pids it had, in order (a restarted worker has several)."""
        pids: dict[int, list[int]] = {}
        for match in READY.finditer(self.log):
            pids.setdefault(int(match[1]), []).append(int(match[2]))
        return pids

    def wait_for(self, predicate: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) waiting for {what}:\n{self.log}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:g} s:\n{self.log}"
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextmanager
def serve(rubric: Path, judge: OAIServer, *args: str, workers: int = 2) -> Iterator[Served]:
    """``rubrickit serve --workers N --port 0`` against ``judge``; stopped (SIGTERM, then killed) on the way out."""
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "RUBRICKIT_SERVE_WORKERS": str(workers)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from rubrickit.cli import main; main()", "serve", "--rubric", str(rubric),
         "--judge", "openai:judge-model", "--base-url", judge.url, "--port", "0", *args],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    served = Served(proc, lines)
    try:
        served.wait_for(lambda: "listening on" in served.log, "'listening on' line")
        served.url = served.log.split("listening on ")[1].split()[0]
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pids in served.ready_pids().values():  # never leave a worker behind, whatever failed
            for pid in pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        reader.join(timeout=5)
        proc.stderr.close()


def post_all(url: str, samples: list[dict[str, Any]]) -> list[tuple[int, dict, dict]]:
    async def clients() -> list[tuple[int, dict, dict]]:
        return await asyncio.gather(*(post_like_openrlhf(url, sample) for sample in samples))

    return asyncio.run(clients())


def health_pids(url: str, tries: int = 64) -> dict[int, int]:
    """worker index → pid, from ``tries`` concurrent ``GET /health`` on fresh connections."""
    async def one(session_timeout: aiohttp.ClientTimeout) -> dict:
        async with aiohttp.ClientSession(timeout=session_timeout) as session:
            async with session.get(url + "/health") as response:
                return await response.json()

    async def clients() -> list[dict]:
        return await asyncio.gather(*(one(aiohttp.ClientTimeout(total=30)) for _ in range(tries)))

    return {body["worker"]: body["pid"] for body in asyncio.run(clients())}


def rewards(answers: list[tuple[int, dict, dict]]) -> list[float]:
    for status, body, _ in answers:
        assert status == 200 and isinstance(body["rewards"][0], float), body
    return [body["rewards"][0] for _, body, _ in answers]


# --------------------------------------------------------------------------- serving


def test_two_workers_answer_concurrent_clients_as_one_process_does(rubric_path: Path, tmp_path: Path) -> None:
    samples = make_samples(40)
    with OAIServer(latency=0.05) as judge:
        scorer = build_scorer(rubric_path, judge="openai:judge-model", base_url=judge.url, use_cache=False,
                              concurrency=16)
        with BackgroundServer(scorer, ServeOptions(port=0)) as single:
            expected = rewards(post_all(single.url + "/get_reward", samples))
        with serve(rubric_path, judge, "--cache-dir", str(tmp_path / "cache")) as server:
            answers = post_all(server.url + "/get_reward", samples)
            pids = health_pids(server.url)
            health = httpx.get(server.url + "/health").json()
            ready = server.ready_pids()
    assert rewards(answers) == pytest.approx(expected)
    assert len(set(pids.values())) == 2 and set(pids) == {0, 1}, pids  # the kernel spread the connections
    assert {index: [pid] for index, pid in pids.items()} == ready
    assert health["status"] == "ok" and health["judge"] == "openai:judge-model" and "requests" in health
    log = server.log
    assert log.count("listening on") == 1 and "with 2 workers" in log
    assert server.proc.returncode == 0 and "all 2 workers stopped" in log
    assert SECRET not in log


def answered_by(log: str) -> dict[int, int]:
    """worker index → requests it answered 200, from the log lines."""
    counts: dict[int, int] = {}
    for match in re.finditer(r"\[worker (\d+), pid \d+\]: POST /get_reward 200", log):
        counts[int(match[1])] = counts.get(int(match[1]), 0) + 1
    return counts


def test_repeated_samples_are_answered_from_the_shared_cache_by_every_worker(rubric_path: Path,
                                                                              tmp_path: Path) -> None:
    samples = make_samples(32)
    with OAIServer(latency=0.02) as judge, \
            serve(rubric_path, judge, "--cache-dir", str(tmp_path / "cache")) as server:
        first = rewards(post_all(server.url + "/get_reward", samples))
        calls = len(judge.requests)
        assert calls == 32 * 3  # one per criterion: nothing was asked twice
        mark = len(server.lines)
        for _ in range(8):  # the kernel picks the worker: repeat until both answered repeats (almost always once)
            again = rewards(post_all(server.url + "/get_reward", samples[::-1]))
            assert again == first[::-1]
            assert len(judge.requests) == calls  # every answer came from the one cache file, whichever worker
            if len(answered_by("".join(server.lines[mark:]))) == 2:
                break
        repeats = answered_by("".join(server.lines[mark:]))
    assert set(repeats) == {0, 1}, repeats  # so some repeats were answered from the other worker's entries
    assert list((tmp_path / "cache").glob("judge-cache.sqlite3"))
    assert "unusable" not in server.log  # the cache was never turned off


# --------------------------------------------------------------------------- shutdown and restarts


def test_sigterm_drains_every_worker_and_exits_0(rubric_path: Path) -> None:
    samples = make_samples(9)
    with OAIServer(latency=1.0) as judge, serve(rubric_path, judge, "--no-cache", "-c", "32") as server:
        endpoint = server.url + "/get_reward"
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post_all, endpoint, samples[:8])
            server.wait_for(lambda: len(judge.requests) >= 8 * 3, "judge calls for the 8 samples")
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            try:  # new requests are refused: 503 while the socket closes, then connection refused
                late = httpx.post(endpoint, json={"query": [samples[8]["query"]],
                                                  "prompts": [samples[8]["prompt"]], "labels": [None]})
                assert late.status_code == 503 and "shutting down" in late.json()["detail"]
            except httpx.TransportError:
                pass
            answers = pending.result(timeout=30)
        assert server.proc.wait(timeout=30) == 0
        pids = [pid for found in server.ready_pids().values() for pid in found]
    assert len(rewards(answers)) == 8  # every admitted request answered
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    log = server.log
    assert "received SIGTERM: forwarding it to 2 worker(s)" in log
    assert log.count("received SIGTERM: refusing new requests") == 2 and log.count("stopped: ") == 2
    assert "all 2 workers stopped" in log


def test_a_killed_worker_is_restarted_and_the_server_keeps_answering(rubric_path: Path, tmp_path: Path) -> None:
    samples = make_samples(16)
    with OAIServer(latency=0.02) as judge, \
            serve(rubric_path, judge, "--cache-dir", str(tmp_path / "cache")) as server:
        (victim,) = server.ready_pids()[0]
        os.kill(victim, signal.SIGKILL)
        during = rewards(post_all(server.url + "/get_reward", samples[:8]))  # the other worker answers meanwhile
        server.wait_for(lambda: len(server.ready_pids()[0]) == 2, "worker 0 restarted")
        replacement = server.ready_pids()[0][1]
        after = rewards(post_all(server.url + "/get_reward", samples))
        pids = health_pids(server.url)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    assert len(during) == 8 and after[:8] == during
    assert replacement != victim and pids.get(0) in (replacement, None) and victim not in pids.values()
    assert re.search(rf"worker 0 \(pid {victim}\) exited unexpectedly with status -9: restarting it "
                     r"\(restart 1 of at most 10\)", server.log), server.log
    assert not alive(victim) and not alive(replacement)


def test_workers_must_be_at_least_1() -> None:
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    for args, env in ((["--workers", "0"], {}), (["--workers", "-2"], {}), ([], {"RUBRICKIT_SERVE_WORKERS": "0"})):
        result = runner.invoke(app, ["serve", *args], env=env)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--workers'" in result.output, result.output
        assert "greater than or equal to 1" in result.output, result.output


# --------------------------------------------------------------------------- the cache file, many processes


WRITER = """
import sys, time
from pathlib import Path
from rubrickit.backends.base import Completion
from rubrickit.judge.cache import JudgeCache

directory, name, start = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cache = JudgeCache(directory)
while not start.exists():
    time.sleep(0.005)
for i in range(150):
    cache.put(f"{name}-{i}", Completion(text=f"{name} answer {i}"))
    assert cache.get(f"{name}-{i}") is not None
found = sum(cache.get(f"{other}-{i}") is not None for other in "abcdef" for i in range(150))
print(cache.disabled, found)
"""


def test_the_cache_file_takes_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    start = tmp_path / "start"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "cache"), name, str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "abcdef"]
    time.sleep(0.5)  # all import, then create the fresh file and write at once
    start.touch()
    outputs = [writer.communicate(timeout=60) for writer in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0 and "unusable" not in err, err
        disabled, found = out.split()
        assert disabled == "False" and int(found) >= 150, out
