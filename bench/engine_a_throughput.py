"""Section a of the engine benchmark: throughput at 100 ms latency, concurrency 50, and where the client's time goes.

It measures 500 calls through ``Judge("openai:…", base_url=…)`` against the scripted server as a ratio of the ideal
wall time (tasks × latency ÷ concurrency), then explains the number: the time each call spends in the client before
and after the server (matched with the server's arrival times), floors without the SDK, the engine or HTTP, what-if
variants patched in this process only, a run at 500 ms latency, and one run under cProfile (:func:`profile_summary`).
:func:`interpret_a` writes the section's interpretation from those numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engine_common import (
    CONCURRENCY,
    LATENCY,
    MODEL,
    N_CRITERIA,
    N_ITEMS,
    Meter,
    Section,
    Server,
    _raw_aiohttp,
    _requests_and_bodies,
    engine_run,
    make_items,
    make_rubric,
    median_of,
    openai_judge,
    run_async,
)

__all__ = ["interpret_a", "profile_summary", "section_a"]


# ------------------------------------------------------------------------------------------------ profile


_PACKAGES = [
    ("/openai/", "openai SDK"), ("/httpx/", "httpx"), ("/httpcore/", "httpx"), ("/aiohttp/", "aiohttp"),
    ("/yarl/", "aiohttp"), ("/multidict/", "aiohttp"), ("/pydantic", "pydantic"), ("/jinja2/", "jinja2"),
    ("/markupsafe/", "jinja2"), ("/rubrickit/backends/", "rubrickit backends"), ("/rubrickit/", "rubrickit engine"),
    ("/asyncio/", "asyncio"), ("selectors.py", "asyncio"), ("/json/", "json"), ("typing.py", "typing"),
    ("/concurrent/", "threads"), ("threading.py", "threads"), ("random.py", "random"),
]

_ENTRY_POINTS = [
    ("openai/_utils/_transform.py", "async_maybe_transform",
     "openai SDK: `async_maybe_transform` of the request params (a recursive TypedDict walk over messages and the "
     "JSON schema)"),
    ("openai/_base_client.py", "_build_request", "openai SDK: `_build_request` (headers, URL, httpx.Request)"),
    ("openai/_legacy_response.py", "parse", "openai SDK: parsing the raw response object"),
    ("rubrickit/backends/_http.py", "handle_async_request",
     "rubrickit aiohttp transport (`handle_async_request`, incl. socket I/O and aiohttp's own work)"),
    ("rubrickit/backends/openai_backend.py", "complete", "rubrickit `OpenAIBackend.complete` (the whole HTTP call)"),
    ("rubrickit/judge/tasks.py", "item_tasks", "rubrickit task building (Jinja2 prompt rendering)"),
    ("rubrickit/judge/cache.py", "key", "rubrickit request hashing for dedup (`JudgeCache.key`)"),
    ("rubrickit/judge/modes.py", "read_reply", "rubrickit reply parsing (`read_reply`)"),
    ("rubrickit/rubric/aggregation.py", "score_record", "rubrickit aggregation (`score_record`)"),
    ("random.py", "__init__", "`random.Random()` seeded from os.urandom once per call (retry.py)"),
]


def profile_summary(profile: cProfile.Profile) -> tuple[str, dict[str, float], int, dict[str, float]]:
    """Markdown tables: profiled time by package (own time) and by entry point (cumulative); plus the shares and
    the number of thread-pool hops (``asyncio.to_thread``/``run_in_executor``)."""
    stats = pstats.Stats(profile)
    raw: dict[tuple[str, int, str], tuple] = stats.stats  # type: ignore[attr-defined]
    raw = {key: value for key, value in raw.items() if "epoll" not in key[2] and "select" not in key[2]}  # idle
    total = sum(tt for (_, _, tt, _, _) in raw.values()) or 1e-9
    groups: dict[str, float] = {}
    for (filename, _, _), (_, _, tt, _, _) in raw.items():
        group = "C builtins" if filename == "~" else next((name for part, name in _PACKAGES if part in filename),
                                                           "other")
        groups[group] = groups.get(group, 0.0) + tt
    lines = ["| package (own time) | share of profiled client time |", "|---|---|"]
    for name, tt in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {tt / total:.0%} |")
    shares: dict[str, float] = {}
    lines += ["", "| entry point (cumulative, includes callees) | calls | share |", "|---|---|---|"]
    for suffix, func, label in _ENTRY_POINTS:
        found = [(nc, ct) for (filename, _, name), (_, nc, _, ct, _) in raw.items()
                 if name == func and filename.endswith(suffix)]
        if not found:
            continue
        calls, cum = sum(nc for nc, _ in found), max(ct for _, ct in found)
        shares[func] = cum / total
        lines.append(f"| {label} | {calls:,} | {cum / total:.0%} |")
    hops = sum(nc for (filename, _, name), (_, nc, _, _, _) in raw.items()
               if name == "run_in_executor" and filename.endswith("asyncio/base_events.py"))
    return "\n".join(lines), shares, hops, {name: tt / total for name, tt in groups.items()}


# ------------------------------------------------------------------------------------------------ section a


async def _backend_direct(url: str, requests: list[Any], concurrency: int) -> dict[str, Any]:
    from rubrickit.backends.openai_backend import OpenAIBackend

    backend = OpenAIBackend(MODEL, base_url=url)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(request: Any) -> None:
        async with semaphore:
            await backend.complete(request)

    try:
        await one(requests[0])
        with Meter() as meter:
            await asyncio.gather(*(one(request) for request in requests))
    finally:
        await backend.aclose()
    return {"wall": meter.wall, "cpu": meter.cpu, "preempted": meter.preempted}


@contextlib.contextmanager
def session_without_trust_env() -> Any:
    """Diagnostic only: every aiohttp session created inside ignores the environment (no netrc/proxy lookups)."""
    import aiohttp

    original = aiohttp.ClientSession.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["trust_env"] = False
        original(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        aiohttp.ClientSession.__init__ = original  # type: ignore[method-assign]


@contextlib.contextmanager
def sdk_without_transform() -> Any:
    """Diagnostic only: the openai SDK sends the chat-completion params without its recursive type transform (the
    params rubrickit sends are plain JSON already, so the body is the same; given-ness is still stripped)."""
    import openai.resources.chat.completions.completions as module
    from openai._utils import is_given

    original = module.async_maybe_transform

    async def passthrough(data: Any, expected_type: Any) -> Any:
        return {k: v for k, v in data.items() if is_given(v)} if isinstance(data, dict) else data

    module.async_maybe_transform = passthrough
    try:
        yield
    finally:
        module.async_maybe_transform = original


@contextlib.contextmanager
def gc_off() -> Any:
    """Diagnostic only: Python's cyclic garbage collector paused during the run."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _digest_of(request: Any) -> str:
    import hashlib

    return hashlib.sha256(request.messages[-1].content.encode()).hexdigest()[:16]


def timed_backend(judge: Any) -> dict[str, tuple[float, float]]:
    """Wrap ``judge.backend.complete`` to record when each call starts and returns (``time.time()``, the clock the
    server stamps arrivals with), keyed by a digest of the request's last message."""
    backend, marks = judge.backend, {}
    original = backend.complete

    async def complete(request: Any) -> Any:
        started = time.time()
        try:
            return await original(request)
        finally:
            marks[_digest_of(request)] = (started, time.time())

    backend.complete = complete
    return marks


def queueing(server: Server, marks: dict[str, tuple[float, float]], latency: float) -> dict[str, float]:
    """Median/p90 of the time from the backend call to the server's arrival (pre-send) and from the server's reply
    to the call returning (post-reply), in ms."""
    timeline = server._call("/bench/timeline")  # type: ignore[arg-type]
    first = min((arrived for arrived, _ in timeline), default=None)
    pre, post = [], []
    for arrived, digest in timeline:
        if digest in marks:
            started, returned = marks[digest]
            pre.append((arrived - started) * 1000)
            post.append((returned - arrived - latency) * 1000)
    if len(pre) < 10:
        return {}
    deciles = statistics.quantiles
    return {"pre_p50": statistics.median(pre), "pre_p90": deciles(pre, n=10)[8],
            "post_p50": statistics.median(post), "post_p90": deciles(post, n=10)[8], "first_arrival": first}


def section_a(server: Server, reps: int) -> Section:
    s = Section("a")
    rubric, items = make_rubric(), make_items(N_ITEMS)
    tasks = N_ITEMS * N_CRITERIA
    ideal = tasks * LATENCY / CONCURRENCY
    s.row("workload", f"{N_ITEMS} items × {N_CRITERIA} criteria = {tasks} calls", "",
          f"`openai:{MODEL}` + base_url, per_criterion, cache off, latency {LATENCY * 1000:.0f} ms, "
          f"concurrency {CONCURRENCY}")
    s.row("ideal wall time (tasks × latency / concurrency)", ideal, "s")

    def full(reps_: int, latency: float = LATENCY, timing: bool = False) -> list[dict[str, Any]]:
        runs = []
        for _ in range(reps_):
            server.reset(latency)
            judge = openai_judge(server)
            marks = timed_backend(judge) if timing else None
            try:
                run = run_async(lambda judge=judge: engine_run(judge, rubric, items), 120)
            finally:
                judge.close()
            run["server"] = server.stats()
            if marks is not None:
                run["queueing"] = queueing(server, marks, latency)
                if run["queueing"].get("first_arrival"):
                    run["queueing"]["startup"] = (run["queueing"]["first_arrival"] - run["started_at"]) * 1000
            runs.append(run)
        return runs

    s.attempt("warm-up", lambda: full(1))  # lazy imports and first connections, not measured
    runs = s.attempt("engine + openai backend", lambda: full(reps, timing=True)) or []
    wall = cpu = 0.0
    waits: dict[str, float] = {}
    if runs:
        wall, cpu = median_of(runs, "wall"), median_of(runs, "cpu")
        served = runs[-1]["server"]
        waits = runs[-1].get("queueing") or {}
        s.row(f"rubrickit engine + `openai:` backend, median of {len(runs)}", wall, "s",
              "runs: " + ", ".join(f"{r['wall']:.2f}" for r in runs))
        s.row("  client CPU time (this process)", cpu, "s", f"{cpu / tasks * 1000:.2f} ms per call; "
              f"{cpu / wall:.0%} of the wall time")
        s.row("  server: requests received / most in flight", f"{served['chat_requests']} / {served['max_in_flight']}",
              "", f"average in flight {tasks * LATENCY / wall:.1f} of {CONCURRENCY}")
        s.row("  a slot's time per call (wall × concurrency ÷ calls)", wall * CONCURRENCY / tasks * 1000, "ms",
              f"of which {LATENCY * 1000:.0f} ms at the server")
        if waits.get("startup") is not None:
            s.row("  run start → first request at the server", waits["startup"], "ms",
                  f"the engine renders the prompts of its first window ({2 * CONCURRENCY} items) before sending")
        if waits:
            s.row("  backend call → request at the server (p50 / p90)",
                  f"{waits['pre_p50']:.1f} / {waits['pre_p90']:.1f}", "ms", "client-side time before sending")
            s.row("  server reply → backend call returns (p50 / p90)",
                  f"{waits['post_p50']:.1f} / {waits['post_p90']:.1f}", "ms", "client-side time after the reply")
        s.row("  involuntary context switches (client preempted)", int(median_of(runs, "preempted")), "")
        s.row("  error verdicts", runs[-1]["errors"], "")
        best = min(r["wall"] for r in runs)
        s.ratio = {"label": "ideal ÷ measured wall time (median)", "value": ideal / wall, "target": "≥ 0.9",
                   "best": ideal / best}
        s.row("**ratio to ideal** (median / best run)", f"{ideal / wall:.2f} / {ideal / best:.2f}", "",
              "target ≥ 0.9")

    # Where the time goes: the same 500 requests without the SDK, without the engine, without HTTP.
    floors: dict[str, dict[str, Any]] = {}

    def floor(name: str, factory: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        results = []
        for _ in range(reps):
            server.reset(LATENCY)
            results.append(run_async(factory, 60))
        floors[name] = {"wall": median_of(results, "wall"), "cpu": median_of(results, "cpu")}

    def startup_parts() -> dict[str, float]:
        from rubrickit.backends.fake import FakeBackend
        from rubrickit.data.items import coerce_items
        from rubrickit.judge import Judge
        from rubrickit.judge.cache import JudgeCache

        judge = Judge(FakeBackend(), use_cache=False, progress=False)
        data = coerce_items(items)
        renders, hashes = [], []
        for _ in range(3):
            with Meter() as meter:
                built = [task.call.request for item in data for task in judge.builder.item_tasks(rubric, item)
                         if task.call is not None]
            renders.append(meter.wall)
            with Meter() as meter:
                for request in built:
                    JudgeCache.key(f"openai:{MODEL}", request)
            hashes.append(meter.wall)
        judge.close()
        return {"render_ms": min(renders) * 1000, "hash_ms": min(hashes) * 1000}

    parts = s.attempt("startup parts", startup_parts)
    if parts and waits:
        waits.update(parts)
    built = s.attempt("building the requests", lambda: _requests_and_bodies(server, rubric, items))
    if built:
        requests, bodies = built
        s.attempt("raw aiohttp", lambda: floor("raw aiohttp, `trust_env=False`", lambda: _raw_aiohttp(
            server.url, bodies, CONCURRENCY, False)))
        s.attempt("raw aiohttp trust_env", lambda: floor("raw aiohttp, `trust_env=True`",
                                                         lambda: _raw_aiohttp(server.url, bodies, CONCURRENCY, True)))
        s.attempt("backend direct", lambda: floor("`OpenAIBackend.complete` alone, no engine (openai SDK + aiohttp "
                                                  "transport)", lambda: _backend_direct(server.url, requests,
                                                                                        CONCURRENCY)))

    def fake_floor() -> None:
        from rubrickit.backends.fake import FakeBackend
        from rubrickit.judge import Judge

        results = []
        for _ in range(reps):
            judge = Judge(FakeBackend(latency=LATENCY), concurrency=CONCURRENCY, use_cache=False, progress=False)
            try:
                results.append(run_async(lambda judge=judge: engine_run(judge, rubric, items), 60))
            finally:
                judge.close()
        floors["rubrickit engine + FakeBackend (asyncio.sleep latency, no HTTP)"] = {
            "wall": median_of(results, "wall"), "cpu": median_of(results, "cpu")}

    s.attempt("engine + fake", fake_floor)

    # One profiled run: which code the client's CPU time goes to.
    def profiled() -> tuple[str, dict[str, float], int, dict[str, float]]:
        server.reset(LATENCY)
        judge = openai_judge(server)
        profile = cProfile.Profile()
        try:
            profile.enable()
            run_async(lambda: engine_run(judge, rubric, items), 120)
            profile.disable()
        finally:
            judge.close()
        return profile_summary(profile)

    prof = s.attempt("profile", profiled)
    shares: dict[str, float] = {}
    groups: dict[str, float] = {}
    hops = 0
    profile_table = ""
    if prof:
        table, shares, hops, groups = prof
        profile_table = ("One run under cProfile, busy time only (the wait in `epoll` is left out; the profiler "
                         "inflates every time, the shares are what matter):\n\n" + table
                         + f"\n\nThread-pool hops (`run_in_executor`) during the run: {hops:,} "
                         f"({hops / tasks:.1f} per call).")
    # What-if variants of the full run, patched in this process only (the engine's code is not changed).
    variants: dict[str, dict[str, Any]] = {}

    def variant(name: str, *patches: Callable[[], Any]) -> None:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch())
            found = full(reps)
        wrong = [(r["errors"], r["server"]["chat_requests"]) for r in found
                 if r["errors"] or r["server"]["chat_requests"] != tasks]
        if wrong:
            raise RuntimeError(f"the patched runs are not like for like (error verdicts, requests): {wrong}")
        variants[name] = {"wall": median_of(found, "wall"), "cpu": median_of(found, "cpu")}

    # Only the patches that touch the code path the profile shows in use (the backend may already avoid them).
    hopping = prof is None or hops >= tasks
    transforming = prof is None or "async_maybe_transform" in shares
    if hopping:
        s.attempt("variant trust_env", lambda: variant("full run, backend session with `trust_env=False`",
                                                       session_without_trust_env))
    if transforming:
        s.attempt("variant transform", lambda: variant("full run, SDK param transform skipped",
                                                       sdk_without_transform))
    if hopping and transforming:
        s.attempt("variant both", lambda: variant("full run, both of the above", session_without_trust_env,
                                                  sdk_without_transform))
    s.attempt("variant gc", lambda: variant("full run, cyclic GC paused", gc_off))
    slow = s.attempt("latency 500 ms", lambda: full(1, latency=0.5))

    lines = ["| the same 500 calls through … | wall (median) | ratio to ideal | client CPU | CPU per call |",
             "|---|---|---|---|---|"]
    for name, value in floors.items():
        lines.append(f"| {name} | {value['wall']:.2f} s | {ideal / value['wall']:.2f} | {value['cpu']:.2f} s | "
                     f"{value['cpu'] / tasks * 1000:.2f} ms |")
    if runs:
        lines.append(f"| **rubrickit engine + `openai:` backend (the measurement above)** | {wall:.2f} s | "
                     f"{ideal / wall:.2f} | {cpu:.2f} s | {cpu / tasks * 1000:.2f} ms |")
    for name, value in variants.items():
        lines.append(f"| diagnostic: {name} | {value['wall']:.2f} s | {ideal / value['wall']:.2f} | "
                     f"{value['cpu']:.2f} s | {value['cpu'] / tasks * 1000:.2f} ms |")
    if slow:
        slow_ideal = tasks * 0.5 / CONCURRENCY
        lines.append(f"| full run at 500 ms latency (ideal {slow_ideal:.0f} s; one run) | {slow[0]['wall']:.2f} s | "
                     f"{slow_ideal / slow[0]['wall']:.2f} | {slow[0]['cpu']:.2f} s | "
                     f"{slow[0]['cpu'] / tasks * 1000:.2f} ms |")
    if len(lines) > 2:
        s.tables.append("Where the time goes (medians of the same number of runs; diagnostic rows patch the "
                        "library in the bench process only, to measure what a change would buy):\n\n"
                        + "\n".join(lines))
    if profile_table:
        s.tables.append(profile_table)

    s.interpretation = interpret_a(ideal, tasks, runs, waits, floors, variants, slow, shares, hops, groups)
    return s


def interpret_a(ideal: float, tasks: int, runs: list[dict[str, Any]], waits: dict[str, float],
                floors: dict[str, dict[str, Any]], variants: dict[str, dict[str, Any]],
                slow: list[dict[str, Any]] | None, shares: dict[str, float], hops: int,
                groups: dict[str, float]) -> list[str]:
    if not runs:
        return ["The main measurement failed; see the failures below."]
    wall, cpu = median_of(runs, "wall"), median_of(runs, "cpu")
    ratio = ideal / wall
    slot = wall * CONCURRENCY / tasks * 1000
    out = [f"rubrickit reaches **{ratio:.2f}** of the ideal throughput ({tasks / wall:.0f} judgments/s against an "
           f"ideal {tasks / ideal:.0f}/s); " + ("that meets the 0.9 target." if ratio >= 0.9 else
                                                 "that is **below the 0.9 target**.")]
    out.append(f"The server held all {CONCURRENCY} requests at once, but on average a concurrency slot was busy "
               f"{slot:.0f} ms per call for a {LATENCY * 1000:.0f} ms reply: the other {slot - LATENCY * 1000:.0f} ms "
               "are spent in the client, inside the slot (the engine holds its semaphore around the whole backend "
               "call, `judge/engine.py` `_fetch`).")
    if waits:
        out.append(f"Measured per call: {waits['pre_p50']:.0f} ms (p50; p90 {waits['pre_p90']:.0f}) between the "
                   f"engine calling the backend and the request reaching the server, and {waits['post_p50']:.0f} ms "
                   f"(p90 {waits['post_p90']:.0f}) between the reply and the call returning. Each call needs only "
                   f"{cpu / tasks * 1000:.2f} ms of CPU; the rest is waiting its turn on the one event loop behind "
                   "the other calls' CPU work: every await inside the SDK and the transport hands the loop to the "
                   "other 49 calls, so each call's latency grows with everyone's CPU time.")
    if waits.get("startup") is not None:
        sdk_hops = hops if shares and hops < tasks else 0  # without per-request hops, these are all of them
        out.append(
            f"The first request reaches the server {waits['startup']:.0f} ms after the run starts "
            f"({waits['startup'] / 10 / ideal:.0f}% of this 1-second ideal), a one-off cost per run. asyncio runs "
            "every ready task before it polls the sockets, and the engine starts a window of "
            f"{2 * CONCURRENCY} items at once (`judge/streaming.py` `stream_jobs`), each rendering all its prompts "
            "(`_score` → `TaskBuilder.item_tasks`) and hashing each request for dedup (`send`) before waiting for a "
            "concurrency slot"
            + (f": measured apart, rendering this run's 500 prompts takes {waits['render_ms']:.0f} ms and hashing "
               f"them {waits['hash_ms']:.0f} ms" if "render_ms" in waits else "")
            + ". A fresh `openai` client also opens its 50 connections, and its first concurrent calls each look "
              "up the platform headers in a worker thread (`openai/_base_client.py`, `asyncify(get_platform)`, "
              "cached only after the first returns"
            + (f"; the {sdk_hops} thread-pool hops of the profiled run are these" if sdk_hops else "") + ").")
    if waits:
        out.append(f"The gap between the p50 ({waits['pre_p50']:.0f} ms) and the p90 ({waits['pre_p90']:.0f} ms) "
                   "before sending points to a convoy for the rest: the calls move through the SDK's awaits "
                   "together, so a clump of replies is processed step by step in turn and each call in it waits for "
                   "the whole clump's CPU work before its next request leaves; the clump re-forms every cycle "
                   "because the server answers each request exactly 100 ms after it arrives.")
    fake = next((v for k, v in floors.items() if "FakeBackend" in k), None)
    direct = next((v for k, v in floors.items() if "OpenAIBackend" in k), None)
    raw = next((v for k, v in floors.items() if "trust_env=False" in k), None)
    raw_env = next((v for k, v in floors.items() if "trust_env=True" in k), None)
    if fake:
        out.append(f"The engine is not the bottleneck: with the FakeBackend sleeping {LATENCY * 1000:.0f} ms it "
                   f"reaches {ideal / fake['wall']:.2f} on {fake['cpu'] / tasks * 1000:.2f} ms CPU per judgment "
                   "(scheduling, prompt rendering, dedup hashing, parsing, aggregation).")
    if raw:
        out.append(f"Nor are the server and the loopback network: plain aiohttp posting the same bodies reaches "
                   f"{ideal / raw['wall']:.2f}. Nor the connection pool: the backend's aiohttp connector has no limit "
                   f"(`TCPConnector(limit=0)`) and the server held {runs[-1]['server']['max_in_flight']} requests at "
                   "once.")
    if direct:
        out.append(f"The backend alone, without the engine, reaches only {ideal / direct['wall']:.2f} "
                   f"({direct['cpu'] / tasks * 1000:.2f} ms CPU per call): the limit is the `openai:` backend's "
                   "per-request path.")
    env = variants.get("full run, backend session with `trust_env=False`")
    skip = variants.get("full run, SDK param transform skipped")
    both = variants.get("full run, both of the above")
    transform = shares.get("async_maybe_transform")
    per_call_hops = hops / tasks if shares else None
    causes = []
    if per_call_hops is not None and per_call_hops >= 1:
        causes.append(
            "`backends/openai_backend.py` opens its aiohttp session with `trust_env=True`; aiohttp then reads "
            "`~/.netrc` (`run_in_executor`) and the proxy environment (`asyncio.to_thread`) on **every** request — "
            f"{per_call_hops:.1f} thread-pool hops per call in the profiled run. Each hop sends the call to the back "
            "of the loop's queue and needs the GIL from the busy loop thread"
            + (f"; plain aiohttp with `trust_env=True` costs {(raw_env['cpu'] - raw['cpu']) / tasks * 1000:.2f} ms "
               "CPU more per call" if raw and raw_env else "")
            + (f"; the full run with the session's `trust_env` off reaches {ideal / env['wall']:.2f} instead of "
               f"{ratio:.2f}" if env else "") + ".")
    if transform or skip:
        causes.append(
            "the openai SDK's own per-request work: "
            + (f"its `async_maybe_transform` of the request params takes {transform:.0%} of the client's busy "
               "time, walking every message and the JSON schema through `typing` introspection on every call"
               if transform else "its request-param transform")
            + (f"; skipping it (diagnostic row) gives {ideal / skip['wall']:.2f} on "
               f"{skip['cpu'] / tasks * 1000:.2f} ms CPU per call" if skip else "")
            + ". The rest is the SDK's other per-call work (building the httpx request and headers, the response "
            "object).")
    if groups and not transform:
        top = sorted(((share, name) for name, share in groups.items() if name not in ("C builtins", "other")),
                     reverse=True)[:4]
        sdk = shares.get("_build_request")
        compare = (f"; plain aiohttp needs {raw['cpu'] / tasks * 1000:.2f} ms of CPU per call where the backend "
                   f"needs {direct['cpu'] / tasks * 1000:.2f}" if raw and direct else "")
        causes.append(
            "the client's per-call CPU in the HTTP stack: the backend already posts through the SDK's low-level "
            "`post` (no param transform in the profile), and the busy time goes mostly to "
            + ", ".join(f"{name} {share:.0%}" for share, name in top)
            + (f" (the SDK's `_build_request` alone {sdk:.0%})" if sdk else "") + compare + ".")
    if len(causes) > 1:
        out.append("Two causes in it. " + " ".join(f"({i}) {c[0].upper()}{c[1:]}" for i, c in enumerate(causes, 1)))
    elif causes:
        out.append("What limits it is " + causes[0])
    if per_call_hops is not None and per_call_hops < 1:
        out.append("The backend's aiohttp session does not trust the environment here (no proxy is configured), so "
                   "aiohttp makes no per-request netrc/proxy thread hops"
                   + (f"; with `trust_env=True` plain aiohttp costs {(raw_env['cpu'] - raw['cpu']) / tasks * 1000:.2f} "
                      "ms CPU more per call" if raw and raw_env else "") + ".")
    if both and per_call_hops is not None and per_call_hops >= 1:
        out.append(f"With both removed the full run reaches {ideal / both['wall']:.2f} on "
                   f"{both['cpu'] / tasks * 1000:.2f} ms CPU per call.")
    paused = variants.get("full run, cyclic GC paused")
    if paused:
        out.append(f"Pausing Python's cyclic GC during the run gives {ideal / paused['wall']:.2f}.")
    if slow:
        slow_ideal = tasks * 0.5 / CONCURRENCY
        out.append(f"At a more API-like 500 ms latency (100 calls/s) the same run reaches "
                   f"{slow_ideal / slow[0]['wall']:.2f} of its ideal: the per-call client cost matters in proportion "
                   "to the call rate, and 500 calls/s on one core is where it shows.")
    preempted = median_of(runs, "preempted")
    out.append(f"The machine has 2 cores shared with other processes (load average in the header); the client was "
               f"preempted {preempted:.0f} times in a run"
               + (", which lengthens the waits above." if preempted > 300 else "."))
    return out
