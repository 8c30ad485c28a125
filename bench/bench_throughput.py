#!/usr/bin/env python
"""Throughput at the physical limit: rubrickit (lean transport, SDK transport) vs AutoRubric, same server, one run.

    .venv/bin/python bench/bench_throughput.py                  # writes bench/RESULTS-throughput.md
    .venv/bin/python bench/bench_throughput.py --reps 1 --only 100ms

Two workloads against ``bench/_server.py`` (the loopback OpenAI-compatible server, in its own process, sharing the
machine's cores with the client):

- **100 ms × 50**: 100 items × 10 criteria = 1,000 calls, 100 ms per call, 50 in flight (ideal 2.0 s);
- **1 s × 512**: 512 items × 10 criteria = 5,120 calls, 1 s per call, 512 in flight (ideal 10.0 s);
- **0 ms × 64**: 300 items × 10 criteria = 3,000 calls answered at once, 64 in flight: no latency to hide, so the
  throughput is what the client's CPU (and the server's, on the same cores) allows;
- **1 s × 1024** (``--only 1s-1024``, not in the default set): 1,024 items × 10 criteria = 10,240 calls, 1,024 in
  flight (ideal 10.0 s).

Each workload runs rubrickit's engine with the ``lean`` transport (the default), with ``--transport sdk``, and
AutoRubric's ``CriterionGrader`` (litellm → openai SDK) at the same concurrency, alternating, ``--reps`` times;
caches off on every side. Reported per side: wall time (median), ideal ÷ wall, throughput, and client CPU per call
(this process's CPU over the run ÷ calls). A transport-only measurement (``OpenAIBackend.complete`` at 50 in flight,
no engine) isolates the HTTP client's CPU per request, lean vs SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm (autorubric) must never fetch its price map
os.environ.setdefault("LITELLM_TELEMETRY", "False")

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import bench_engine as be  # noqa: E402

WORKLOADS = {"100ms": (0.1, 50, 100), "1s": (1.0, 512, 512), "0ms": (0.0, 64, 300), "1s-1024": (1.0, 1024, 1024)}
"""Name → (latency s, concurrency, items); every item is judged on 10 criteria."""


def rubrickit_side(server: be.Server, items: list[dict[str, Any]], concurrency: int, transport: str) -> dict:
    judge = be.openai_judge(server, concurrency=concurrency, transport=transport)
    try:
        return be.run_async(lambda: be.engine_run(judge, be.make_rubric(), items), 600)
    finally:
        judge.close()


def autorubric_side(server: be.Server, items: list[dict[str, Any]], concurrency: int) -> dict:
    return be._autorubric_run(server, items, concurrency, timeout=900)


async def transport_only(url: str, requests: list[Any], transport: str, concurrency: int) -> dict[str, Any]:
    """``OpenAIBackend.complete`` alone (no engine): the HTTP client's CPU per request."""
    from rubrickit.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(be.MODEL, base_url=url, transport=transport)  # type: ignore[arg-type]
    semaphore = asyncio.Semaphore(concurrency)

    async def one(request: Any) -> None:
        async with semaphore:
            await backend.complete(request)

    try:
        await asyncio.gather(*(one(r) for r in requests[:concurrency]))  # open the connections first
        with be.Meter() as meter:
            await asyncio.gather(*(one(r) for r in requests))
    finally:
        await backend.aclose()
    return {"wall": meter.wall, "cpu": meter.cpu}


def requests_for(items: list[dict[str, Any]]) -> list[Any]:
    from rubrickit.data.items import coerce_items
    from rubrickit.judge.engine import Judge

    judge = Judge("fake:x", use_cache=False)
    rubric = be.make_rubric()
    return [call.request for item in coerce_items(items) for task in judge.builder.item_tasks(rubric, item)
            for call in task.calls]


def measure(server: be.Server, name: str, reps: int, sides: list[str]) -> dict[str, Any]:
    latency, concurrency, n_items = WORKLOADS[name]
    calls = n_items * be.N_CRITERIA
    ideal = latency * calls / concurrency
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    warm = be.make_items(2, seed=99)
    for side in sides:  # warm-up: imports, first connections, litellm's lazy setup
        server.reset(latency=0.0)
        run_side(server, side, warm, concurrency)
    for rep in range(reps):
        for side in sides:  # alternate, so a burst of load on the machine hits every side alike
            items = be.make_items(n_items, seed=1000 * rep + 7)
            server.reset(latency=latency)
            result = run_side(server, side, items, concurrency)
            stats = server.stats()
            result.update(served=stats["chat_requests"], max_in_flight=stats["max_in_flight"],
                          server_cpu=stats["cpu_s"])
            runs[side].append(result)
            print(f"  {name} {side} rep {rep + 1}: wall {result['wall']:.2f} s (ideal {ideal:.2f}), "
                  f"CPU {result['cpu'] / calls * 1e6:.0f} µs/call, {stats['chat_requests']} requests, "
                  f"{stats['max_in_flight']} in flight at most", file=sys.stderr, flush=True)
    return {"latency": latency, "concurrency": concurrency, "calls": calls, "ideal": ideal, "runs": runs}


def run_side(server: be.Server, side: str, items: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    if side == "autorubric":
        return autorubric_side(server, items, concurrency)
    return rubrickit_side(server, items, concurrency, transport=side.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="100ms,1s,0ms", help="workloads: 100ms, 1s, 0ms, 1s-1024 (comma-separated)")
    parser.add_argument("--no-autorubric", action="store_true", help="leave AutoRubric out")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS-throughput.md")
    args = parser.parse_args(argv)
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    sides = ["rubrickit lean", "rubrickit sdk"] + ([] if args.no_autorubric else ["autorubric"])
    command = " ".join(["bench/bench_throughput.py", *(argv if argv is not None else sys.argv[1:])])
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = be.loadavg()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "rubrickit"], cwd=ROOT, capture_output=True,
                               text=True, check=False).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    process, server = be.Server.start()
    results: dict[str, Any] = {}
    transport: dict[str, dict[str, Any]] = {}
    try:
        requests = requests_for(be.make_items(100, seed=5))
        for side in ("lean", "sdk"):
            server.reset(latency=0.1)
            found = [be.run_async(lambda s=side: transport_only(server.url, requests, s, 50), 120)
                     for _ in range(max(1, args.reps))]
            transport[side] = {"cpu": statistics.median(r["cpu"] for r in found) / len(requests),
                               "wall": statistics.median(r["wall"] for r in found)}
        for name in [w.strip() for w in args.only.split(",") if w.strip()]:
            results[name] = measure(server, name, args.reps, sides)
    finally:
        be.stop_server(process)
    lines = render(results, transport, sides, command=command, started=started, load=(load_start, be.loadavg()),
                   code=f"{commit}{' + uncommitted changes' if dirty else ''}")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.write_text(report, encoding="utf-8")
    return 0


def render(results: dict[str, Any], transport: dict[str, dict[str, Any]], sides: list[str], *, command: str,
           started: _dt.datetime, load: tuple[str, str], code: str) -> list[str]:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("aiohttp", "openai", "httpx", "litellm", "autorubric"))
    lines = [
        "# Throughput at the physical limit: rubrickit vs AutoRubric, lean vs SDK transport",
        "",
        f"- **Command:** `.venv/bin/python {command}`",
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC; rubrickit commit {code}; {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {versions}",
        f"- **Load average:** {load[0]} at the start, {load[1]} at the end (the loopback server shares the cores)",
        "- **Workload:** `bench/_server.py` (own process); 10-criterion rubric, per_criterion, one call per item × "
        "criterion, caches off; sides alternate; CPU = the client process's CPU over the run ÷ calls",
        "",
        "| workload | side | calls served | wall (median) | ideal ÷ wall | calls/s | client CPU / call | runs |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results.values():
        ideal, calls = result["ideal"], result["calls"]
        label = f"{result['latency'] * 1000:.0f} ms × {result['concurrency']}"
        for side in sides:
            runs = result["runs"][side]
            wall = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs) / calls
            bound = f"**{ideal / wall:.2f}**" if ideal else "— (no latency)"
            lines.append(f"| {label} (ideal {ideal:.1f} s) | {side} | {runs[-1]['served']:,} | {wall:.2f} s | "
                         f"{bound} | {calls / wall:,.0f} | {cpu * 1e6:,.0f} µs | "
                         + ", ".join(f"{r['wall']:.2f}" for r in runs) + " |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    for result in results.values():
        label = f"{result['latency'] * 1000:.0f} ms × {result['concurrency']}"
        walls = {side: statistics.median(r["wall"] for r in result["runs"][side]) for side in sides}
        if "autorubric" in walls:
            lines.append(f"| {label}: rubrickit (lean) throughput ÷ AutoRubric's | "
                         f"**{walls['autorubric'] / walls['rubrickit lean']:.2f}×** |")
        lines.append(f"| {label}: lean ÷ SDK transport throughput | "
                     f"{walls['rubrickit sdk'] / walls['rubrickit lean']:.2f}× |")
    if transport:
        lean, sdk = transport["lean"]["cpu"], transport["sdk"]["cpu"]
        lines += ["", "HTTP client alone (`OpenAIBackend.complete`, 1,000 requests, 100 ms × 50, no engine):", "",
                  "| transport | client CPU / request |", "|---|---:|",
                  f"| lean (aiohttp, plain JSON) | {lean * 1e6:,.0f} µs |",
                  f"| sdk (openai SDK over rubrickit's aiohttp adapter) | {sdk * 1e6:,.0f} µs |",
                  f"| **SDK ÷ lean** | **{sdk / lean:.2f}×** |"]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
