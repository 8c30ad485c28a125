#!/usr/bin/env python
"""The reward server benchmark: ``rubrickit serve`` under OpenRLHF's load against the engine's own throughput.

    .venv/bin/python bench/bench_reward_server.py                      # 2,000 requests, 64 clients, 100 ms judge
    .venv/bin/python bench/bench_reward_server.py --requests 500 --reps 1 --out /tmp/server.md

Three processes on 127.0.0.1: the judge (``bench/_server.py``: ``tests/oai_server.py`` with a control API, a fixed
latency per call), the reward server (``rubrickit serve`` as a subprocess, cache off, judge concurrency ``-c``), and
this one. Each repetition runs, in alternating order:

- **direct**: ``RewardScorer.ascore`` on all N samples in one batch (same judge, same concurrency, cache off) — the
  engine's own throughput, the ceiling;
- **server**: N one-sample requests from ``--clients`` concurrent clients, each exactly as OpenRLHF sends it
  (``{"query": [q], "prompts": [p], "labels": [l]}``, a ChatML-rendered query with special tokens, a new aiohttp
  session per request, as ``openrlhf/utils/agent.py`` does).

Reported: samples per second of each, the ratio server ÷ direct (target ≥ 0.8), request latency p50/p99, the batch
sizes the coalescing reached (from ``/health``), the judge's most requests in flight, and whether every reward of the
server equals the direct one. The section for ``bench/RESULTS.md`` is printed (and written to ``--out``). The exit
status is 1 when a reward differs or a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from bench_engine import loadavg, machine_facts  # noqa: E402

from rubrickit.rewards import RewardScorer  # noqa: E402

RUBRIC = """\
rubrickit: 1
id: bench-support
criteria:
- {id: addresses, text: The response addresses the customer's specific problem., weight: 3}
- {id: next-step, text: The response gives the customer a concrete next step., weight: 2}
- {id: tone, text: The response is polite and acknowledges the inconvenience., weight: 1}
"""


def samples(n: int) -> list[dict[str, Any]]:
    """n distinct support tickets and replies, rendered with the ChatML template (Qwen) as OpenRLHF decodes them."""
    out = []
    for i in range(n):
        ticket = (f"Ticket {i}: I ordered a pair of headphones (order #{100000 + i}) two weeks ago and the left side "
                  f"stopped working after {i % 9 + 1} days. I need them for work. Can you help?")
        reply = (f"I'm sorry the headphones from order #{100000 + i} failed so soon. Please reply with a photo of the "
                 f"serial number and we will ship a replacement within {i % 4 + 2} business days, free of charge.")
        prompt = f"<|im_start|>user\n{ticket}<|im_end|>\n<|im_start|>assistant\n"
        out.append({"query": prompt + reply + "<|im_end|>", "prompt": prompt, "label": None,
                    "sample": {"prompt": ticket, "response": reply}})
    return out


class Judge:
    """``bench/_server.py`` in its own process."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "_server.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("URL "):
            raise RuntimeError(f"the judge server did not start: {line!r}")
        self.url = line.split()[1]
        self.origin = self.url.rsplit("/v1", 1)[0]
        self._post("/bench/config", {"latency": latency})

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(self.origin + path, data=json.dumps(body or {}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.origin + "/bench/stats", timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self._post("/bench/reset")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


async def direct(judge: Judge, rubric: Path, data: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    scorer = RewardScorer(rubric, judge="openai:bench-judge", base_url=judge.url, use_cache=False,
                          concurrency=concurrency)
    try:
        started = time.perf_counter()
        batch = await scorer.ascore([d["sample"] for d in data])
        wall = time.perf_counter() - started
    finally:
        await scorer.aclose()
    return {"wall": wall, "rewards": batch.rewards, "unscored": batch.stats.unscored}


class Server:
    """``rubrickit serve`` as a subprocess (its log in a file)."""

    def __init__(self, judge: Judge, rubric: Path, concurrency: int, log: Path, extra: list[str]):
        self.log = log
        self.command = [sys.executable, "-c", "from rubrickit.cli import main; main()", "serve", "--rubric",
                        str(rubric), "--judge", "openai:bench-judge", "--base-url", judge.url, "--port", "0",
                        "--no-cache", "-c", str(concurrency), *extra]
        self._log = log.open("w")
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 60
        while True:
            text = log.read_text()
            if "listening on " in text:
                self.url = text.split("listening on ")[1].split()[0]
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rubrickit serve did not start:\n{text}")
            time.sleep(0.05)

    def health(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/health", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._log.close()
        return code


async def clients(url: str, data: list[dict[str, Any]], n_clients: int) -> dict[str, Any]:
    """``n_clients`` workers, each sending one request at a time exactly as OpenRLHF's rollout does."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(data)):
        queue.put_nowait(index)
    rewards: list[Any] = [None] * len(data)
    latencies: list[float] = []
    failures: list[str] = []
    timeout = aiohttp.ClientTimeout(total=180)

    async def worker() -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            item = data[index]
            payload = {"query": [item["query"]], "prompts": [item["prompt"]], "labels": [item["label"]]}
            sent = time.perf_counter()
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url + "/get_reward", json=payload) as response:
                    body = await response.json()
                    if response.status != 200:
                        failures.append(f"{response.status}: {body}")
                        continue
            latencies.append(time.perf_counter() - sent)
            rewards[index] = body["rewards"][0]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(n_clients)))
    return {"wall": time.perf_counter() - started, "rewards": rewards, "latencies": latencies, "failures": failures}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="judge seconds per call")
    parser.add_argument("--concurrency", type=int, default=64, help="judge calls in flight (both ways)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--serve-arg", action="append", default=[], help="extra rubrickit serve argument")
    parser.add_argument("--out", type=Path, help="also write the section here")
    args = parser.parse_args()
    command = "python " + shlex.join(["bench/bench_reward_server.py", *sys.argv[1:]])
    started_at = _dt.datetime.now().astimezone()
    facts, load_start = machine_facts(), loadavg()
    data = samples(args.requests)
    tmp = Path(tempfile.mkdtemp(prefix="rubrickit-bench-server-"))
    rubric = tmp / "rubric.yaml"
    rubric.write_text(RUBRIC)
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key-000000")
    judge = Judge(args.latency)
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(args.reps):
            order = ("direct", "server") if rep % 2 == 0 else ("server", "direct")
            run: dict[str, Any] = {}
            for way in order:
                judge.reset()
                if way == "direct":
                    run["direct"] = asyncio.run(direct(judge, rubric, data, args.concurrency))
                    run["direct"]["judge"] = judge.stats()
                else:
                    server = Server(judge, rubric, args.concurrency, tmp / f"serve-{rep}.log", args.serve_arg)
                    try:
                        run["server"] = asyncio.run(clients(server.url, data, args.clients))
                        run["server"]["health"] = server.health()
                        run["server"]["judge"] = judge.stats()
                    finally:
                        run["server"]["exit"] = server.stop()
            d, s = run["direct"], run["server"]
            run["ratio"] = d["wall"] / s["wall"]
            run["mismatches"] = sum(1 for a, b in zip(d["rewards"], s["rewards"], strict=True) if a != b)
            print(f"rep {rep + 1}: direct {args.requests / d['wall']:.1f}/s, server {args.requests / s['wall']:.1f}/s,"
                  f" ratio {run['ratio']:.3f}, batches {s['health']['batches']['count']} (mean "
                  f"{s['health']['batches']['mean_size']:.1f}), mismatches {run['mismatches']}, failures "
                  f"{len(s['failures'])}", file=sys.stderr, flush=True)
            runs.append(run)
    finally:
        judge.close()
    section = render(runs, args, command, started_at, facts, (load_start, loadavg()))
    print(section)
    if args.out:
        args.out.write_text(section)
    bad = any(r["mismatches"] or r["server"]["failures"] or r["server"]["exit"] != 0 for r in runs)
    return 1 if bad else 0


def render(runs: list[dict[str, Any]], args: argparse.Namespace, command: str, started: _dt.datetime,
           facts: dict[str, str], loads: tuple[str, str]) -> str:
    n = args.requests
    direct_rates = [n / r["direct"]["wall"] for r in runs]
    server_rates = [n / r["server"]["wall"] for r in runs]
    ratios = [r["ratio"] for r in runs]
    median = sorted(range(len(runs)), key=lambda i: ratios[i])[len(runs) // 2]
    mid = runs[median]
    latencies = mid["server"]["latencies"]
    batches = mid["server"]["health"]["batches"]
    sizes = {int(k): v for k, v in batches["sizes"].items()}
    buckets: dict[str, int] = {}
    if len(sizes) <= 12:  # every size
        buckets = {str(k): v for k, v in sorted(sizes.items())}
    else:
        for low, high in ((1, 1), (2, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 10**9)):
            count = sum(v for k, v in sizes.items() if low <= k <= high)
            if count:
                buckets[f"{low}" if low == high else (f"{low}–{high}" if high < 10**9 else f"≥{low}")] = count
    calls = args.requests * 3
    ideal = calls * args.latency / args.concurrency
    mismatches = sum(r["mismatches"] for r in runs)
    failures = sum(len(r["server"]["failures"]) for r in runs)
    unscored = sum(r["direct"]["unscored"] for r in runs)
    batching = mid["server"]["health"]["batching"]
    lines = [
        "## Reward server (`rubrickit serve`) under OpenRLHF's load",
        "",
        f"Command: `{command}`, {started.strftime('%Y-%m-%d')} ({facts['nproc']} cores, load average {loads[0]} at "
        f"the start and {loads[1]} at the end; rubrickit {facts['rubrickit']}, aiohttp {facts['aiohttp']}): "
        f"{n:,} one-sample requests from {args.clients} concurrent clients, each exactly OpenRLHF's body "
        "(a ChatML query with special tokens, a new aiohttp session per request), against `rubrickit serve` "
        f"(a subprocess; `--no-cache -c {args.concurrency}"
        f"{' ' + ' '.join(args.serve_arg) if args.serve_arg else ''}`; batches of up to {batching['max_batch']} "
        f"samples, {batching['window_ms']:g} ms window, {batching['max_batches']} in flight); the judge is "
        f"`bench/_server.py` in its own process at {args.latency * 1000:.0f} ms per call. "
        f"Compared, alternating, with `RewardScorer.ascore` on the same {n:,} samples in one batch (same judge, "
        f"concurrency {args.concurrency}, cache off). Rubric: 3 LLM criteria, per_criterion ({calls:,} calls per "
        f"run; ideal {ideal:.2f} s). {len(runs)} repetitions; the ratio is the median repetition's.",
        "",
        "| measure | value | detail |",
        "|---|---|---|",
        f"| server ÷ direct throughput | **{ratios[median]:.2f}** | target ≥ 0.8; per repetition "
        f"{', '.join(f'{x:.2f}' for x in ratios)} |",
        f"| direct (engine) | {direct_rates[median]:.0f} samples/s | {mid['direct']['wall']:.2f} s; judge at most "
        f"{mid['direct']['judge']['max_in_flight']} requests in flight; ideal ÷ wall "
        f"{ideal / mid['direct']['wall']:.2f} |",
        f"| server | {server_rates[median]:.0f} samples/s | {mid['server']['wall']:.2f} s; judge at most "
        f"{mid['server']['judge']['max_in_flight']} requests in flight; ideal ÷ wall "
        f"{ideal / mid['server']['wall']:.2f} |",
        f"| request latency p50 / p99 | {percentile(latencies, 0.5) * 1000:.0f} ms / "
        f"{percentile(latencies, 0.99) * 1000:.0f} ms | max {max(latencies) * 1000:.0f} ms; one sample = 3 judge "
        f"calls of {args.latency * 1000:.0f} ms in parallel |",
        f"| batch sizes | min {min(sizes)} / mean {batches['mean_size']:.1f} / max {batches['max_size']} | "
        f"{batches['count']} batches; size: count {', '.join(f'{k}: {v}' for k, v in buckets.items())} |",
        f"| rewards server = direct | {n * len(runs) - mismatches:,} of {n * len(runs):,} | failed requests "
        f"{failures}; unscored samples {unscored}; server exit status after SIGTERM "
        f"{', '.join(str(r['server']['exit']) for r in runs)} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
