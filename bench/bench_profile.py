#!/usr/bin/env python
"""Where one judgment's client-side CPU goes in rubrickit, split into phases (issue 15, part 5).

    .venv/bin/python bench/bench_profile.py                                   # 300 items × 10 criteria, table on stdout
    .venv/bin/python bench/bench_profile.py --label after --out /tmp/profile-after.md
    .venv/bin/python bench/bench_profile.py --judge-option http_transport=httpx --label httpx
    cd ../before && PYTHONPATH=$PWD ../main/.venv/bin/python bench/bench_profile.py --label before  # another worktree

The workload is bench_engine.py's (its ``Server``, ``make_items``, ``make_rubric``, ``openai_judge`` and
``engine_run`` are imported, not copied): the ``openai:`` backend against the loopback OpenAI-compatible server
(``bench/_server.py``, its own process) at zero latency, per_criterion mode, concurrency 64, and the judge cache ON in
a temporary folder, so its SQLite lookups and stores are part of the cost. Each run uses fresh items (another seed),
so every lookup misses and every judgment is a real HTTP call that is then stored: the script checks that the server
got one request per judgment and the cache answered none.

1. One warm-up run (imports, lazy set-up, the capabilities file), not measured.
2. ``--reps`` runs without the profiler: wall time, this process's CPU time (``time.process_time``) and the main
   thread's (``time.thread_time``) per judgment. The median process CPU per judgment is the headline.
3. One run under cProfile with a CPU-time timer (``time.thread_time``, so waiting in ``epoll`` costs nothing;
   ``--timer wall`` uses ``perf_counter`` and leaves the poll out instead). Every function's *self* time is given to a
   phase by :data:`RULES` (its file, or for C functions its name). Generic code — json, pydantic, typing, re, copy,
   C builtins and other stdlib helpers — has no phase of its own: its self time goes to its callers' phases, in
   proportion to the time spent under each caller, walking up until a caller has a phase. The profiled shares are then
   applied to the *unprofiled* main-thread CPU per judgment (the profiler inflates call-heavy code, so treat the
   split as a few percentage points either way: deterministic profiling over-weights call-heavy Python code such
   as httpx's header objects and under-weights C-heavy work such as sqlite3, socket calls and SHA-256); the CPU of
   other threads (thread-pool hops; not profiled) is its own row. The unprofiled runs also time the cyclic garbage
   collector (``gc.callbacks``); its time is inside the phases, wherever an allocation triggered it.

Phases: render (prompt templates, task building), hash (cache/dedup keys), cache (SQLite lookups and stores),
transport (the openai SDK, httpx, aiohttp, sockets, building the request and reading the response), parse (verdict
parsing), aggregate (score records), engine (engine.py, limits, breaker, retries, accounting, asyncio scheduling),
other (what maps nowhere: the bench's own loop, unresolved callers).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_engine as be  # noqa: E402  (puts this checkout's root on sys.path too)

PHASES = {
    "render": "prompt rendering: Jinja2 templates, judge/prompts.py, cli/render*.py, task building (judge/tasks.py)",
    "hash": "cache/dedup keys (JudgeCache.key, Judge.cache_key: request.model_dump + canonical JSON + SHA-256) and "
            "rubric/criterion fingerprints (rubric/model.py)",
    "cache": "judge cache lookups and stores: judge/cache.py, sqlite3 (incl. Completion JSON in and out)",
    "transport": "the HTTP call: backends/openai_*.py, openai SDK, httpx, aiohttp, yarl, multidict, sockets, "
                 "selectors/epoll, reading the response into a Completion",
    "parse": "verdict parsing: judge/parse.py, judge/modes.py",
    "aggregate": "score records: aggregate.py (and the pydantic models it builds)",
    "engine": "engine.py, limits, breaker, retry, accounting, data, asyncio event loop and tasks",
    "other": "the bench's own loop, callers that map nowhere",
}

RULES: list[tuple[str, str, str | None]] = [
    # (phase, substring of the file name — "~" for C functions —, the function's name or None; for C functions a
    # substring of the name)
    # Python functions first (first match wins).
    ("hash", "rubrickit/judge/cache.py", "key"),
    ("hash", "rubrickit/judge/cache.py", "cache_identity"),
    ("hash", "rubrickit/judge/cache.py", "templates_hash"),
    ("hash", "rubrickit/judge/engine.py", "cache_key"),
    *[("hash", "rubrickit/rubric/model.py", name) for name in (
        "_digest", "fingerprint", "criterion_fingerprint", "rubric_fingerprint")],
    ("hash", "hashlib.py", None),
    ("cache", "rubrickit/judge/cache.py", None),
    ("cache", "/sqlite3/", None),
    ("render", "rubrickit/judge/prompts.py", None),
    ("render", "rubrickit/judge/tasks.py", None),
    ("render", "rubrickit/cli/render", None),
    ("render", "/jinja2/", None),
    ("render", "/markupsafe/", None),
    ("render", ".j2", None),  # compiled Jinja2 templates carry the template's file name
    ("render", "<template>", None),
    ("parse", "rubrickit/judge/parse.py", None),
    ("parse", "rubrickit/judge/modes.py", None),
    ("aggregate", "rubrickit/rubric/aggregation.py", None),
    ("transport/rubrickit backend", "rubrickit/backends/openai_", None),  # openai_backend and its parts
    ("transport/rubrickit backend", "rubrickit/backends/_", None),  # _redact, _grammar
    ("transport/rubrickit backend", "rubrickit/backends/registry.py", None),
    ("transport/openai SDK", "/openai/", None),
    ("transport/openai SDK", "/distro/", None),
    *[("transport/httpx", f"/{package}/", None) for package in (
        "httpx", "httpcore", "h11", "anyio", "sniffio", "certifi", "idna")],
    *[("transport/aiohttp", f"/{package}/", None) for package in (
        "aiohttp", "yarl", "multidict", "propcache", "frozenlist", "aiosignal", "aiohappyeyeballs")],
    ("transport/aiohttp", "http/cookies.py", None),
    ("transport/aiohttp", "http/cookiejar.py", None),
    ("transport/aiohttp", "/netrc.py", None),
    *[("transport/sockets, selectors", where, None) for where in (
        "/ssl.py", "/socket.py", "/selectors.py", "asyncio/selector_events.py", "asyncio/streams.py",
        "asyncio/sslproto.py", "asyncio/transports.py")],
    *[("engine/rubrickit", f"rubrickit/judge/{name}.py", None) for name in (
        "engine", "loop", "streaming", "options", "limits", "breaker", "retry", "accounting", "progress", "data")],
    ("engine/asyncio", "/asyncio/", None),
    ("engine/asyncio", "/concurrent/", None),
    ("engine/asyncio", "/threading.py", None),
    ("other", "/bench/", None),
    # C functions (file "~"), by name.
    ("cache", "~", "sqlite3"),
    ("hash", "~", "_hashlib"),
    ("transport/sockets, selectors", "~", "_socket"),
    ("transport/sockets, selectors", "~", "_ssl"),
    ("transport/sockets, selectors", "~", "epoll"),
    ("transport/sockets, selectors", "~", "select."),
    *[("transport/aiohttp", "~", name) for name in ("aiohttp", "multidict", "yarl", "propcache", "frozenlist")],
    ("engine/asyncio", "~", "_asyncio"),
]
"""Which phase (``phase/layer`` for the layers of transport and engine) a function's self time belongs to. Anything
that matches no rule (json, pydantic, typing, re, copy, functools, C builtins, rubrickit/rubric.py, backends/base.py,
…) is attributed to its callers' phases."""

GENERIC = [("/json/", "json"), ("json", "json"), ("/pydantic", "pydantic"), ("pydantic_core", "pydantic"),
           ("typing", "typing"), ("/re/", "re"), ("_sre", "re"), ("rubrickit/", "rubrickit (shared models)")]
"""Labels of the generic code whose time is attributed by caller (for the table that shows where it landed)."""

MODEL = be.MODEL


def classify(func: tuple[str, int, str]) -> str | None:
    filename, _, name = func
    filename = filename.replace("\\", "/")
    for phase, where, what in RULES:
        if (where == "~") != (filename == "~"):
            continue
        if where != "~" and where not in filename:
            continue
        if what is not None and (what not in name if where == "~" else what != name):
            continue
        return phase
    return None


def generic_label(func: tuple[str, int, str]) -> str:
    text = f"{func[0]} {func[2]}"
    for part, label in GENERIC:
        if part in text:
            return label
    return "C builtins" if func[0] == "~" else "other stdlib/libraries"


def attribute(stats: dict[tuple, tuple]) -> tuple[dict[str, float], dict[tuple, dict[str, float]],
                                                  dict[str, dict[str, float]]]:
    """Self time per phase label (``phase/layer`` where the rules name one); each function's distribution over those
    labels; the generic code's time by its label and (top-level) phase."""
    memo: dict[tuple, dict[str, float]] = {}

    def resolve(func: tuple, seen: frozenset) -> tuple[dict[str, float], bool]:
        """(phase → share, whether complete): a path back into ``seen`` (recursion) carries no weight, and a result
        cut that way is not remembered, since it depends on where the walk came from."""
        if func in memo:
            return memo[func], True
        phase = classify(func)
        if phase is not None:
            memo[func] = {phase: 1.0}
            return memo[func], True
        if func in seen or len(seen) > 60:
            return {}, False
        callers = {c: edge for c, edge in stats[func][4].items() if c != func and c in stats}
        if not callers:
            memo[func] = {"other": 1.0}
            return memo[func], True
        weights = {c: edge[2] for c, edge in callers.items()}
        if sum(weights.values()) <= 0:
            weights = {c: float(edge[0]) for c, edge in callers.items()}
        dist: dict[str, float] = {}
        complete = True
        for caller, weight in weights.items():
            found, whole = resolve(caller, seen | {func})
            complete = complete and whole
            for p, share in found.items():
                dist[p] = dist.get(p, 0.0) + weight * share
        norm = sum(dist.values())
        dist = {p: v / norm for p, v in dist.items()} if norm > 0 else {}
        if complete:
            memo[func] = dist or {"other": 1.0}
        return dist, complete

    labels: dict[str, float] = {}
    dists: dict[tuple, dict[str, float]] = {}
    generic: dict[str, dict[str, float]] = {}
    for func, (_, _, tt, _, _) in stats.items():
        dist = resolve(func, frozenset())[0] or {"other": 1.0}
        dists[func] = dist
        for phase, share in dist.items():
            labels[phase] = labels.get(phase, 0.0) + tt * share
        if classify(func) is None:
            split = generic.setdefault(generic_label(func), {})
            for phase, share in dist.items():
                top = phase.split("/")[0]
                split[top] = split.get(top, 0.0) + tt * share
    return labels, dists, generic


# ------------------------------------------------------------------------------------------------ running


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--judge-option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def one_run(server: be.Server, args: argparse.Namespace, items: list[dict[str, Any]], cache_dir: Path,
            profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """Score ``items`` once (fresh Judge, shared cache folder); CPU and wall time of the scoring only (not the
    judge's creation, nor closing it)."""
    server.reset(0.0)
    served_before = server.stats()
    judge = be.openai_judge(server, concurrency=args.concurrency, mode="per_criterion", use_cache=True,
                            cache_dir=cache_dir, backend_options=dict(args.backend_options))
    rubric = be.make_rubric(args.criteria)
    collector: dict[str, float] = {"seconds": 0.0, "runs": 0, "started": 0.0, "gen2": 0.0, "gen2_runs": 0}

    def on_gc(phase: str, info: dict[str, Any]) -> None:  # the cyclic GC's CPU time, wherever it triggers
        if phase == "start":
            collector["started"] = time.thread_time()
        else:
            spent = time.thread_time() - collector["started"]
            collector["seconds"] += spent
            collector["runs"] += 1
            if info.get("generation") == 2:
                collector["gen2"] += spent
                collector["gen2_runs"] += 1

    async def measured() -> dict[str, Any]:
        # The judge is closed in the loop that opened its connections (the httpx transport cannot close them from
        # another loop), after the measurement.
        try:
            wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
            if profile is not None:
                profile.enable()
            try:
                run = await be.engine_run(judge, rubric, items)
            finally:
                if profile is not None:
                    profile.disable()
            run["wall"] = time.perf_counter() - wall
            run["cpu"] = time.process_time() - cpu
            run["thread"] = time.thread_time() - thread
            return run
        finally:
            await judge.aclose()

    if profile is None:
        gc.callbacks.append(on_gc)
    try:
        run = be.run_async(measured, args.timeout)
    finally:
        if on_gc in gc.callbacks:
            gc.callbacks.remove(on_gc)
        judge.close()  # a no-op once closed in the loop
    run["gc"], run["gc_runs"] = collector["seconds"], collector["runs"]
    run["gc2"], run["gc2_runs"] = collector["gen2"], collector["gen2_runs"]
    served = server.stats()
    judgments = len(items) * args.criteria
    run["judgments"] = judgments
    run["server_requests"] = served["chat_requests"]
    run["server_cpu"] = served["cpu_s"] - served_before["cpu_s"]
    summary = run["summary"]
    hits = summary.get("cache_hits", 0)
    problems = []
    if run["errors"]:
        problems.append(f"{run['errors']} error verdicts")
    if served["chat_requests"] != judgments:
        problems.append(f"the server got {served['chat_requests']} requests for {judgments} judgments")
    if hits:
        problems.append(f"{hits} cache hits")
    if problems:
        raise RuntimeError("the run is not one HTTP call per judgment: " + "; ".join(problems)
                           + f" (summary {summary})")
    return run


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=be.ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=be.ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return "?"
    return (head or "?") + (" + uncommitted changes" if dirty else "")


def short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name.replace("|", "\\|")
    path = filename.replace("\\", "/")
    if "/site-packages/" in path:
        path = path.split("/site-packages/", 1)[1]
    elif "/rubrickit/" in path:
        path = "rubrickit/" + path.split("/rubrickit/", 1)[1]
    elif "/lib/python" in path:
        path = "stdlib " + path.split("/lib/python", 1)[1].partition("/")[2]
    elif "/bench/" in path:
        path = "bench/" + path.split("/bench/", 1)[1]
    return f"`{name}` ({path}:{line})"


def report(args: argparse.Namespace, runs: list[dict[str, Any]], profile_run: dict[str, Any],
           stats: dict[tuple, tuple], command: str, started: _dt.datetime, load: tuple[str, str]) -> str:
    import rubrickit

    judgments = runs[0]["judgments"]
    per = 1e6 / judgments  # seconds per run → µs per judgment
    cpu = statistics.median(r["cpu"] for r in runs) * per
    thread = statistics.median(r["thread"] for r in runs) * per
    threads_other = max(0.0, cpu - thread)
    wall = statistics.median(r["wall"] for r in runs)
    gc_time, gc_runs = statistics.median(r["gc"] for r in runs) * per, statistics.median(r["gc_runs"] for r in runs)
    gc2_time, gc2_runs = statistics.median(r["gc2"] for r in runs) * per, statistics.median(r["gc2_runs"] for r in runs)
    labels, dists, generic = attribute(stats)
    phases = dict.fromkeys(PHASES, 0.0)
    for label, value in labels.items():
        phases[label.split("/")[0]] += value
    profiled = sum(v[2] for v in stats.values()) or 1e-12
    scale = thread / profiled  # profiled seconds → unprofiled µs per judgment (main thread)
    cpu_name = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    options = ", ".join(f"{k}={v!r}" for k, v in args.backend_options.items()) or "none (defaults)"
    lines = [
        f"## Client CPU per judgment, by phase — {args.label}", "",
        f"- **Command:** `{command}`",
        f"- **Code:** rubrickit from `{Path(rubrickit.__file__).parent}` (commit {git_commit()}); "
        f"{started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()}",
        f"- **Machine:** {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} "
        f"cores ({cpu_name}), Python {platform.python_version()}; load average {load[0]} at the start, {load[1]} "
        "at the end",
        f"- **Workload:** {args.items} items × {args.criteria} criteria = {judgments:,} judgments per run, "
        f"`openai:{MODEL}` → loopback server (`bench/_server.py`, own process, latency 0), per_criterion, "
        f"concurrency {args.concurrency}, judge cache ON (temp folder; fresh items each run: every lookup misses, "
        f"every answer is stored); backend options: {options}",
        f"- **Unprofiled runs ({len(runs)}):** wall " + ", ".join(f"{r['wall']:.2f}" for r in runs)
        + f" s ({judgments / wall:,.0f} judgments/s median); process CPU/judgment "
        + ", ".join(f"{r['cpu'] * per:,.0f}" for r in runs) + " µs; server CPU/request "
        + f"{statistics.median(r['server_cpu'] for r in runs) * per:,.0f} µs (its own process, not counted)",
        f"- **Headline: {cpu:,.0f} µs of client CPU per judgment** (median; main thread {thread:,.0f} µs, other "
        f"threads {threads_other:,.0f} µs); of it, the cyclic garbage collector {gc_time:,.0f} µs ({gc_runs:,.0f} "
        f"collections per run, {gc2_runs:,.0f} of them full ones taking {gc2_time:,.0f} µs; counted below in "
        "whichever phase's allocation triggered them)",
        f"- **Profiled run:** timer `{args.timer}`, {profile_run['wall']:.2f} s wall, {profiled * per:,.0f} µs "
        f"profiled per judgment (×{profiled * per / max(thread, 1e-9):.2f} the unprofiled main thread; shares below "
        "are applied to the unprofiled time)", "",
        "| phase | µs CPU / judgment | share | what |", "|---|---:|---:|---|",
    ]
    for phase, what in PHASES.items():
        value = phases.get(phase, 0.0) * scale
        lines.append(f"| {phase} | {value:,.1f} | {value / cpu:.1%} | {what} |")
    if threads_other > 0:
        lines.append(f"| other threads | {threads_other:,.1f} | {threads_other / cpu:.1%} | CPU of threads other "
                     "than the event loop's (thread-pool hops, …); not profiled |")
    lines.append(f"| **total** | **{cpu:,.1f}** | 100% | process CPU per judgment, unprofiled |")

    lines += ["", "Layers of transport and engine (generic code attributed by caller, as above):", "",
              "| layer | µs CPU / judgment | share |", "|---|---:|---:|"]
    for label, value in sorted(labels.items(), key=lambda kv: (list(PHASES).index(kv[0].split("/")[0]), -kv[1])):
        if "/" in label:
            lines.append(f"| {label.replace('/', ': ', 1)} | {value * scale:,.1f} | {value * scale / cpu:.1%} |")

    lines += ["", f"Top {args.top} functions by self time (µs/judgment scaled like the table; a generic function's "
              "phase is where its time was attributed):", "",
              "| # | function | calls / judgment | self µs / judgment | share | phase |",
              "|---:|---|---:|---:|---:|---|"]
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][2])[: args.top]
    for rank, (func, (_, nc, tt, _, _)) in enumerate(ranked, 1):
        dist = dists[func]
        where = ", ".join(f"{p} {s:.0%}" for p, s in sorted(dist.items(), key=lambda kv: -kv[1]) if s >= 0.05)
        if classify(func) is None:
            where = f"*by caller:* {where}"
        lines.append(f"| {rank} | {short(func)} | {nc / judgments:.2f} | {tt * scale:,.1f} | {tt / profiled:.1%} | "
                     f"{where} |")

    lines += ["", "Generic code attributed by caller (µs / judgment that landed in each phase):", "",
              "| code | total | " + " | ".join(PHASES) + " |", "|---|---:|" + "---:|" * len(PHASES)]
    for label, split in sorted(generic.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(split.values()) * scale
        if total < 0.05:
            continue
        cells = " | ".join(f"{split.get(p, 0.0) * scale:,.1f}" if split.get(p, 0.0) * scale >= 0.05 else ""
                           for p in PHASES)
        lines.append(f"| {label} | {total:,.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300, help="items per run (default 300)")
    parser.add_argument("--criteria", type=int, default=10, choices=range(1, len(be.CRITERIA) + 1), metavar="N",
                        help=f"criteria in the rubric, 1–{len(be.CRITERIA)} (default 10)")
    parser.add_argument("--concurrency", type=int, default=64, help="judge concurrency (default 64)")
    parser.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a backend option (VALUE as JSON, else a string), e.g. http_transport=httpx; repeatable")
    parser.add_argument("--label", default="current", help="a name for this measurement (in the heading)")
    parser.add_argument("--reps", type=int, default=3, help="unprofiled runs; the median is reported (default 3)")
    parser.add_argument("--timer", choices=("cpu", "wall"), default="cpu",
                        help="profiler clock: cpu = time.thread_time (default), wall = perf_counter, epoll left out")
    parser.add_argument("--top", type=int, default=15, help="functions in the self-time table (default 15)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--save-profile", type=Path, help="also dump the raw profile here (pstats format)")
    args = parser.parse_args(argv)
    args.backend_options = parse_options(args.judge_option)

    import rubrickit

    print(f"rubrickit imported from {rubrickit.__file__}", file=sys.stderr, flush=True)
    command = shlex.join([os.path.relpath(sys.executable) if sys.executable.startswith(str(be.ROOT)) else
                          sys.executable, os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))
    started, load_start = _dt.datetime.now().astimezone(), be.loadavg()
    process, server = be.Server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="rubrickit-profile-") as folder:
            cache_dir = Path(folder)
            seed = 1000

            def items() -> list[dict[str, Any]]:
                nonlocal seed
                seed += 1
                return be.make_items(args.items, seed=seed)

            print("warm-up run …", file=sys.stderr, flush=True)
            one_run(server, args, items(), cache_dir)
            runs = []
            for rep in range(max(1, args.reps)):
                run = one_run(server, args, items(), cache_dir)
                runs.append(run)
                print(f"run {rep + 1}: {run['wall']:.2f} s wall, {run['cpu'] / run['judgments'] * 1e6:,.0f} µs CPU/"
                      f"judgment", file=sys.stderr, flush=True)
            timer = time.thread_time if args.timer == "cpu" else time.perf_counter
            profile = cProfile.Profile(timer)
            print("profiled run …", file=sys.stderr, flush=True)
            profile_run = one_run(server, args, items(), cache_dir, profile)
    finally:
        be.stop_server(process)
    profile.create_stats()
    if args.save_profile is not None:
        profile.dump_stats(args.save_profile)
    stats = dict(profile.stats)  # type: ignore[attr-defined]
    if args.timer == "wall":  # the wait for sockets is not CPU
        stats = {k: v for k, v in stats.items() if not (k[0] == "~" and ("epoll" in k[2] or "select." in k[2]))}
    text = report(args, runs, profile_run, stats, command, started, (load_start, be.loadavg()))
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
