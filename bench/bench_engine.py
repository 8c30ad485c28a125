#!/usr/bin/env python
"""Benchmarks of the judge engine (DESIGN §5, §11): every comparison side by side in one run, reported as ratios.

    .venv/bin/python bench/bench_engine.py                 # every section, writes bench/RESULTS-engine.md
    .venv/bin/python bench/bench_engine.py --only a,b      # some sections
    make bench                                             # the same as the first line, after setting up .venv

Sections (see bench/README.md for what each one measures and why):

  a  throughput against a local OpenAI-compatible server at 100 ms latency, concurrency 50, as a ratio of the
     ideal (tasks × latency / concurrency), with a breakdown of where the client's time goes
  b  engine overhead at zero latency (judgments/s), through HTTP and through the FakeBackend
  c  input tokens per response, per_response vs per_criterion mode, 10-criterion rubric
  d  re-run of a finished job from the cache: calls made (must be 0) and seconds, vs the first run
  e  the hf backend (embedded SmolLM2-135M) in logprob mode: prefix reuse vs raw batched forwards vs naive
  f  the same 10-criterion workload through rubrickit and through the autorubric library, wall-time ratio

The server (``tests/oai_server.py``) runs in its own process (``bench/_server.py``) so its CPU work does not
compete for the client's GIL; each section runs in a child process of its own with a time limit, so one that fails
or hangs is reported and the others still run. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as _dt
import gc
import json
import os
import platform
import pstats
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm (autorubric) must never fetch its price map
os.environ.setdefault("LITELLM_TELEMETRY", "False")

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

SECTIONS = {
    "a": ("Throughput at 100 ms latency, concurrency 50", 150),
    "b": ("Engine overhead at zero latency", 120),
    "c": ("Input tokens: per_response vs per_criterion", 90),
    "d": ("Re-run of a finished job from the cache", 90),
    "e": ("hf backend, logprob mode: prefix reuse vs raw batched forward vs naive", 480),
    "f": ("rubrickit vs autorubric, same workload", 240),
}
"""Section letter → (title, time limit in seconds for its child process)."""

MODEL = "bench-judge"
LATENCY = 0.1
CONCURRENCY = 50
N_ITEMS = 50
N_CRITERIA = 10


# ------------------------------------------------------------------------------------------------ workload


CRITERIA = [
    ("answers-question", "The response directly addresses the specific problem the customer describes in the ticket.",
     3.0),
    ("next-step", "The response tells the customer the concrete next step to resolve the problem.", 2.0),
    ("asks-missing-info", "The response asks for the specific information that is missing to resolve the ticket, "
     "such as an order number or the account email.", 2.0),
    ("acknowledges-impact", "The response acknowledges the inconvenience the problem causes the customer.", 1.0),
    ("invents-policy", "The response states a refund, warranty or compensation policy that the ticket does not "
     "mention.", -5.0),
    ("blames-customer", "The response blames the customer for the problem.", -3.0),
    ("accurate-steps", "Every troubleshooting step the response gives is technically correct for the product the "
     "customer describes.", 2.0),
    ("concise", "The response avoids repetition and filler and stays under 200 words.", 1.0),
    ("timeline", "The response gives a realistic time frame for when the problem will be resolved.", 1.0),
    ("professional-tone", "The response keeps a courteous, professional tone throughout.", 1.0),
]

_PRODUCTS = ["wireless router", "smart thermostat", "laptop dock", "noise-cancelling headset", "robot vacuum",
             "e-reader", "fitness tracker", "mesh Wi-Fi kit", "security camera", "espresso machine"]
_PROBLEMS = ["stops responding after a few minutes", "will not pair with my phone", "arrived with a cracked casing",
             "keeps restarting overnight", "shows an error light that never goes away", "loses its settings after "
             "every update", "charges very slowly", "makes a grinding noise", "drops the connection every hour",
             "was charged twice on my card"]
_TICKET = [
    "I have already tried turning it off and on again, and I unplugged it for ten minutes.",
    "This is the second time this month and I rely on it for work.",
    "I bought it from your online store about three weeks ago.",
    "The manual does not say anything about this and the app just shows a spinning wheel.",
    "My neighbour has the same model and theirs works fine on the same network.",
    "Please tell me what I should do, because I am running out of patience.",
    "I would like to know whether this is a known problem with this batch.",
]
_REPLY = [
    "I'm sorry to hear about the trouble with your {product}; I understand how frustrating this is.",
    "Thank you for the details you included, they help a lot.",
    "First, open the companion app, go to Settings, then Device, and choose Check for firmware updates.",
    "If an update is offered, install it and keep the {product} plugged in until the light turns solid white.",
    "Next, hold the reset button on the back for about ten seconds until the light blinks amber, then set it up "
    "again from the app.",
    "If the problem continues after the reset, it is most likely a hardware fault rather than a setting.",
    "In that case I can arrange a replacement unit; it usually ships within two business days.",
    "Could you reply with your order number and the email address on the account so I can look up the purchase?",
    "You do not need to return the original unit until the replacement has arrived.",
    "I have added a note to your case so any colleague who picks it up will have the full history.",
    "Many customers find that moving the {product} away from a microwave or cordless phone base also helps.",
    "Please let me know how it goes after these steps, and I will follow up within 24 hours either way.",
    "I have also checked our system and I do not see any outage in your area at the moment.",
]


def make_items(n: int, *, seed: int = 7, reply_sentences: int = 10) -> list[dict[str, Any]]:
    """``n`` distinct support tickets with replies (prompt ~60 words, response ~150–200 words)."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        product, problem = rng.choice(_PRODUCTS), rng.choice(_PROBLEMS)
        ticket = " ".join([f"Hello, my {product} (order #{48000 + i}) {problem}."] + rng.sample(_TICKET, 3))
        reply = " ".join(s.format(product=product) for s in rng.sample(_REPLY, reply_sentences))
        items.append({"id": f"ticket-{i:04d}", "prompt": ticket, "response": f"Hi there,\n\n{reply}\n\nBest regards,\n"
                      f"Sam from the support team (case {i:04d})"})
    return items


def make_rubric(n: int = N_CRITERIA) -> Any:
    from rubrickit.rubric import Criterion, Rubric

    criteria = [Criterion(id=cid, text=text, weight=weight) for cid, text, weight in CRITERIA[:n]]
    return Rubric(id="bench-support", title="Support reply (benchmark)", criteria=criteria)


# ------------------------------------------------------------------------------------------------ the server


class Server:
    """The control side of ``bench/_server.py`` (a child process of the parent bench run)."""

    def __init__(self, origin: str):
        self.origin = origin.rstrip("/")
        self.url = f"{self.origin}/v1"

    def _call(self, path: str, data: dict | None = None) -> dict[str, Any]:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(self.origin + path, data=body, method="POST" if body else "GET",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("/bench/stats")

    def reset(self, latency: float | None = None) -> None:
        if latency is not None:
            self._call("/bench/config", {"latency": latency})
        self._call("/bench/reset", {})

    @staticmethod
    def start() -> tuple[subprocess.Popen, Server]:
        process = subprocess.Popen([sys.executable, str(BENCH / "_server.py")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "URL":
            process.kill()
            raise RuntimeError(f"bench/_server.py did not start (printed {line!r})")
        return process, Server(line[1][: -len("/v1")])


def stop_server(process: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        assert process.stdin is not None
        process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()  # the child we started, by its own handle
        process.wait(timeout=5)


# ------------------------------------------------------------------------------------------------ measuring


class Meter:
    """Wall time, this process's CPU time and involuntary context switches over a block."""

    def __enter__(self) -> Meter:
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.preempted = usage.ru_nivcsw - self._usage.ru_nivcsw


def run_async(factory: Callable[[], Awaitable[Any]], timeout: float) -> Any:
    """Run a coroutine in a fresh event loop, failing with a clear message after ``timeout`` seconds."""

    async def guarded() -> Any:
        try:
            return await asyncio.wait_for(factory(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"did not finish within {timeout:g} s") from None

    return asyncio.run(guarded())


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


async def engine_run(judge: Any, rubric: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Score ``items`` with ``judge`` (a rubrickit Judge) and measure it."""
    records = []
    started_at = time.time()  # the clock the server stamps arrivals with
    with Meter() as meter:
        async for record in judge.ascore_many(rubric, items):
            records.append(record)
    summary = judge.summary()
    return {"wall": meter.wall, "cpu": meter.cpu, "preempted": meter.preempted, "records": len(records),
            "errors": sum(r.errors for r in records), "summary": summary, "started_at": started_at}


def openai_judge(server: Server, **options: Any) -> Any:
    from rubrickit.judge import Judge

    options = {"concurrency": CONCURRENCY, "use_cache": False, "progress": False, **options}
    return Judge(f"openai:{MODEL}", base_url=server.url, **options)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        size = abs(value)
        if size >= 100:
            return f"{value:,.0f}"
        return f"{value:.1f}" if size >= 10 else f"{value:.2f}" if size >= 1 else f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Section:
    """What one section reports: rows of numbers, its headline ratio, an interpretation and failures."""

    checkpoint: Path | None = None
    """Where each finished measurement is saved at once, so a section stopped by its time limit still reports."""

    def __init__(self, key: str):
        self.key = key
        self.title = SECTIONS[key][0]
        self.rows: list[dict[str, Any]] = []
        self.ratio: dict[str, Any] | None = None
        self.interpretation: list[str] = []
        self.tables: list[str] = []
        self.errors: list[str] = []

    def row(self, label: str, value: Any, unit: str = "", detail: str = "") -> None:
        self.rows.append({"label": label, "value": value, "unit": unit, "detail": detail})

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement; a failure is recorded with its reason and the section goes on."""
        print(f"  [{self.key}] {what} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            return fn()
        except Exception as error:  # one failing measurement must not sink the section
            message = f"{what}: {type(error).__name__}: {error}"
            self.errors.append(message)
            print(f"  [{self.key}] FAILED {message}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return None
        finally:
            print(f"  [{self.key}] {what}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            self.save()

    def save(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.write_text(json.dumps(self.as_dict(), default=str))

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "rows": self.rows, "ratio": self.ratio,
                "interpretation": self.interpretation, "tables": self.tables, "errors": self.errors}


def median_of(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(run[field] for run in runs)


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
    ("rubrickit/backends/openai_backend.py", "handle_async_request",
     "rubrickit aiohttp transport (`handle_async_request`, incl. socket I/O and aiohttp's own work)"),
    ("rubrickit/backends/openai_backend.py", "complete", "rubrickit `OpenAIBackend.complete` (the whole HTTP call)"),
    ("rubrickit/judge/tasks.py", "item_tasks", "rubrickit task building (Jinja2 prompt rendering)"),
    ("rubrickit/judge/cache.py", "key", "rubrickit request hashing for dedup (`JudgeCache.key`)"),
    ("rubrickit/judge/modes.py", "read_reply", "rubrickit reply parsing (`read_reply`)"),
    ("rubrickit/aggregate.py", "score_record", "rubrickit aggregation (`score_record`)"),
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


async def _raw_aiohttp(url: str, bodies: list[bytes], concurrency: int, trust_env: bool) -> dict[str, Any]:
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=trust_env) as session:

        async def one(body: bytes) -> None:
            async with semaphore, session.post(f"{url}/chat/completions", data=body,
                                               headers={"Content-Type": "application/json"}) as response:
                json.loads(await response.read())

        await one(bodies[0])  # open the first connection outside the measurement
        with Meter() as meter:
            await asyncio.gather(*(one(body) for body in bodies))
    return {"wall": meter.wall, "cpu": meter.cpu, "preempted": meter.preempted}


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


def _requests_and_bodies(server: Server, rubric: Any, items: list[dict[str, Any]]) -> tuple[list[Any], list[bytes]]:
    from rubrickit.data.items import coerce_items

    judge = openai_judge(server)
    try:
        requests = [task.call.request for item in coerce_items(items)
                    for task in judge.builder.item_tasks(rubric, item) if task.call is not None]
        bodies = []
        for request in requests:
            params = judge.backend.request_params(request)
            params.update(params.pop("extra_body", {}))
            bodies.append(json.dumps(params).encode())
    finally:
        judge.close()
    return requests, bodies


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
            f"{2 * CONCURRENCY} items at once (`judge/engine.py` `_stream`), each rendering all its prompts "
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


# ------------------------------------------------------------------------------------------------ section b


def section_b(server: Server, reps: int) -> Section:
    from rubrickit.backends.fake import FakeBackend
    from rubrickit.judge import Judge

    s = Section("b")
    n_items = 100
    rubric, items = make_rubric(), make_items(n_items, seed=11)
    judgments = n_items * N_CRITERIA
    s.row("workload", f"{n_items} items × {N_CRITERIA} criteria = {judgments} judgments", "",
          f"per_criterion, cache off, concurrency {CONCURRENCY}, zero latency")
    rates: dict[str, dict[str, float]] = {}

    def measure(name: str, make_judge: Callable[[], Any], uses_server: bool) -> None:
        walls, cpus = [], []
        for rep in range(reps + 1):  # the first run warms up imports and connections
            if uses_server:
                server.reset(0.0)
            judge = make_judge()
            try:
                run = run_async(lambda judge=judge: engine_run(judge, rubric, items), 90)
            finally:
                judge.close()
            if run["errors"]:
                raise RuntimeError(f"{run['errors']} error verdicts")
            if rep:
                walls.append(run["wall"])
                cpus.append(run["cpu"])
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        rates[name] = {"wall": wall, "cpu": cpu, "rate": judgments / wall}
        s.row(name, judgments / wall, "judgments/s",
              f"median of {reps}: {wall:.2f} s wall, {cpu:.2f} s CPU = {cpu / judgments * 1000:.2f} ms CPU/judgment")

    s.attempt("openai backend", lambda: measure("engine + `openai:` backend → local server (HTTP)",
                                                lambda: openai_judge(server), True))
    s.attempt("fake backend", lambda: measure("engine + FakeBackend (no HTTP)", lambda: Judge(
        FakeBackend(), concurrency=CONCURRENCY, use_cache=False, progress=False), False))
    def raw_floor() -> None:
        _, bodies = _requests_and_bodies(server, rubric, items)
        walls = []
        for _ in range(reps):
            server.reset(0.0)
            walls.append(run_async(lambda: _raw_aiohttp(server.url, bodies, CONCURRENCY, False), 60)["wall"])
        wall = statistics.median(walls)
        rates["raw"] = {"wall": wall, "rate": judgments / wall}
        s.row("plain aiohttp → local server, same bodies (no SDK, no engine)", judgments / wall, "requests/s",
              f"median of {reps}: {wall:.2f} s; the server and loopback floor")

    s.attempt("raw aiohttp floor", raw_floor)
    http = rates.get("engine + `openai:` backend → local server (HTTP)")
    fake = rates.get("engine + FakeBackend (no HTTP)")
    raw = rates.get("raw")
    if http and fake:
        engine_ms = fake["wall"] / judgments * 1000
        http_ms = http["wall"] / judgments * 1000 - engine_ms
        s.row("engine's share of the time per judgment", engine_ms, "ms", "FakeBackend wall per judgment")
        s.row("HTTP path's share (openai SDK, transport, server)", http_ms, "ms", "the difference")
        s.ratio = {"label": "FakeBackend rate ÷ HTTP rate (how much the HTTP path slows the engine)",
                   "value": fake["rate"] / http["rate"], "target": "—"}
        s.interpretation = [
            f"On this 2-core machine the engine alone runs **{fake['rate']:,.0f} judgments/s** "
            f"({engine_ms:.2f} ms each, including prompt rendering, dedup hashing, parsing and aggregation). "
            f"Through the openai SDK to a zero-latency local server it runs **{http['rate']:,.0f}/s**: each "
            f"judgment costs {http_ms:.2f} ms more in the HTTP path, {http_ms / engine_ms:.0f}× the engine's own "
            "work."
            + (f" The server and loopback alone handle {raw['rate']:,.0f} requests/s (plain aiohttp), so most of "
               "that difference is the client's HTTP stack, the openai SDK above all (see section a)."
               if raw else "")
            + f" The engine's overhead is small; the `openai:` backend's per-request cost caps one process at about "
            f"{http['rate']:,.0f} calls/s ({http['rate'] * 60:,.0f} per minute) on this machine: more than most "
            "API rate limits allow, but it is what keeps section a below its ideal."]
    return s


# ------------------------------------------------------------------------------------------------ section c


def section_c(server: Server) -> Section:
    s = Section("c")
    n_items = 10
    rubric, items = make_rubric(), make_items(n_items, seed=23)
    s.row("workload", f"{n_items} items × {N_CRITERIA} criteria", "", "zero latency, cache off; tokens as the "
          "server reports them in `usage` (its word-level count), which the engine's accounting records")
    found: dict[str, dict[str, Any]] = {}
    for mode in ("per_criterion", "per_response"):
        def one(mode: str = mode) -> None:
            server.reset(0.0)
            judge = openai_judge(server, mode=mode)
            try:
                run = run_async(lambda judge=judge: engine_run(judge, rubric, items), 60)
            finally:
                judge.close()
            served = server.stats()
            summary = run["summary"]
            found[mode] = {"calls": served["chat_requests"], "server_in": served["prompt_tokens"],
                           "engine_in": summary["input_tokens"], "cached": summary["cached_tokens"],
                           "out": summary["output_tokens"], "errors": run["errors"]}
            s.row(f"{mode}: input tokens per response", served["prompt_tokens"] / n_items, "tokens",
                  f"{served['chat_requests']} calls; engine accounting {summary['input_tokens'] / n_items:,.0f}/"
                  f"response; of which served from the (emulated) prefix cache "
                  f"{summary['cached_tokens'] / max(1, summary['input_tokens']):.0%}; output "
                  f"{summary['output_tokens'] / n_items:,.0f}/response; {run['errors']} errors")

        s.attempt(mode, one)
    pc, pr = found.get("per_criterion"), found.get("per_response")
    if pc and pr:
        ratio = pc["server_in"] / pr["server_in"]
        uncached = (pc["engine_in"] - pc["cached"]) / max(1, pr["engine_in"] - pr["cached"])
        s.ratio = {"label": "per_criterion ÷ per_response input tokens per response", "value": ratio,
                   "target": "—"}
        s.row("**ratio** per_criterion ÷ per_response (input tokens)", ratio, "×",
              f"uncached input tokens only: {uncached:.2f}×")
        s.interpretation = [
            f"per_criterion sends the instructions, conversation and response once per criterion, so a response costs "
            f"**{ratio:.1f}×** the input tokens of per_response ({pc['server_in'] / n_items:,.0f} vs "
            f"{pr['server_in'] / n_items:,.0f}) and {pc['calls'] // max(1, pr['calls'])}× the calls. Because the "
            "prompt puts the criterion last, everything before it is a shared prefix: with a provider's prompt "
            f"caching (emulated here by the server in 64-character blocks) {pc['cached'] / max(1, pc['engine_in']):.0%}"
            f" of per_criterion's input is a cache hit, and the uncached input is {uncached:.1f}× per_response's. "
            "per_response also asks for every criterion's rationale in one reply, so it is the cheaper mode; "
            "per_criterion buys independent judgments (criteria cannot influence each other) at that price."]
    return s


# ------------------------------------------------------------------------------------------------ section d


def section_d(server: Server) -> Section:
    s = Section("d")
    rubric, items = make_rubric(), make_items(N_ITEMS, seed=31)
    tasks = N_ITEMS * N_CRITERIA
    s.row("workload", f"{N_ITEMS} items × {N_CRITERIA} criteria = {tasks} calls", "",
          f"latency {LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY}, cache on in a fresh folder")
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rubrickit-bench-cache-") as folder:
        for name in ("first run", "re-run"):
            def one(name: str = name) -> None:
                server.reset(LATENCY)
                judge = openai_judge(server, use_cache=True, cache_dir=Path(folder))
                try:
                    run = run_async(lambda judge=judge: engine_run(judge, rubric, items), 60)
                finally:
                    judge.close()
                run["server_calls"] = server.stats()["chat_requests"]
                runs[name] = run
                summary = run["summary"]
                s.row(f"{name}: wall time", run["wall"], "s",
                      f"server received {run['server_calls']} requests; engine: {summary['calls']} calls, "
                      f"{summary['cache_hits']} cache hits, {run['errors']} errors")

            s.attempt(name, one)
    first, again = runs.get("first run"), runs.get("re-run")
    if first and again:
        s.row("**re-run: calls made**", again["server_calls"], "", "must be 0")
        s.ratio = {"label": "re-run wall ÷ first run wall", "value": again["wall"] / first["wall"],
                   "target": "calls = 0"}
        s.row("**ratio** re-run ÷ first run (wall time)", again["wall"] / first["wall"], "×",
              f"{first['wall'] / again['wall']:.0f}× faster")
        verdict = ("made **no** backend call" if again["server_calls"] == 0 and again["summary"]["calls"] == 0
                   else f"made **{again['server_calls']}** backend calls — the contract is broken")
        s.interpretation = [
            f"The re-run {verdict}: all {again['summary']['cache_hits']} requests were answered from the SQLite "
            f"cache, in {again['wall']:.2f} s instead of {first['wall']:.2f} s "
            f"({again['wall'] / tasks * 1000:.2f} ms per judgment: rendering the prompt, hashing it and one SQLite "
            "lookup)."]
    return s


# ------------------------------------------------------------------------------------------------ section e


def section_e(reps: int) -> Section:
    s = Section("e")
    rounds = min(reps, 3)
    import torch
    import transformers

    from rubrickit.backends.embedded import prepare_embedded_model
    from rubrickit.backends.hf import HFBackend
    from rubrickit.data.items import coerce_items
    from rubrickit.judge import Judge

    n_items = 5
    rubric, items = make_rubric(), make_items(n_items, seed=43, reply_sentences=5)  # replies of ~100 words
    path = prepare_embedded_model()
    backend = HFBackend(path)
    with Meter() as load:
        backend.load()
    builder_judge = Judge(backend, mode="logprob", use_cache=False, progress=False)
    groups: list[list[Any]] = []
    choices: tuple[str, ...] = ("Yes", "No")
    for item in coerce_items(items):
        calls = [t.call for t in builder_judge.builder.item_tasks(rubric, item) if t.call is not None]
        if not calls or any(c.reader != "yes_no" for c in calls):
            raise RuntimeError("the engine did not build one-token Yes/No requests for logprob mode")
        choices = calls[0].choices or choices
        groups.append([c.request for c in calls])
    n = sum(map(len, groups))
    texts = [backend.render_prompt(r) for group in groups for r in group]
    lengths = [len(backend._encode_text(t)) for t in texts]  # noqa: SLF001 - token counts for the report
    s.row("workload", f"{n_items} responses × {N_CRITERIA} criteria = {n} judgments", "",
          f"SmolLM2-135M-Instruct (embedded), float32, CPU, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch_size {backend.batch_size}; model loaded in {load.wall:.2f} s")
    shared = []
    for start in range(0, n, N_CRITERIA):
        ids = [backend._encode_text(t) for t in texts[start:start + N_CRITERIA]]  # noqa: SLF001
        common = min(map(len, ids))
        for other in ids[1:]:
            common = next((i for i in range(common) if other[i] != ids[0][i]), common)
        shared.append(common)
    s.row("prompt length", statistics.mean(lengths), "tokens",
          f"min {min(lengths)}, max {max(lengths)}; token prefix shared by a response's {N_CRITERIA} prompts "
          f"{statistics.mean(shared):.0f} ({statistics.mean(shared) / statistics.mean(lengths):.0%})")

    def clear() -> None:
        store = getattr(backend, "_store", None)  # cross-call prefix caches: each timed run starts cold
        if store is not None:
            store.clear()

    def reuse(subset: list[list[Any]], prefix: bool) -> list[Any]:
        async def go() -> list[Any]:
            out = []
            for group in subset:
                out.extend(await backend.score_choices(group, list(choices), reuse_prefix=prefix))
            return out

        results = run_async(go, 300)
        bad = [r for r in results if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(results)} requests failed: {bad[0]}")
        return results

    def engine() -> None:
        async def go() -> dict[str, Any]:
            judge = Judge(backend, mode="logprob", use_cache=False, progress=False)
            try:
                return await engine_run(judge, rubric, items)
            finally:
                await judge.aclose()

        run = run_async(go, 300)
        if run["errors"]:
            raise RuntimeError(f"{run['errors']} error verdicts")

    # The baselines compute every prompt in full, ~8× the work of prefix reuse: they run on the first two responses
    # (20 judgments) and are compared per judgment. The four ways run in rounds, one after the other, so a burst of
    # load from other processes hits all of them; the best round of each is reported (interference only ever adds
    # time to CPU-bound work), and the per-round ratios show the spread.
    base = groups[:2]
    base_n = sum(map(len, base))
    base_texts = texts[:base_n]
    ways = {
        "reuse": ("`score_choices` with prefix reuse (what logprob mode uses)", n, lambda: reuse(groups, True)),
        "raw": ("`raw_next_token_logits`: plain batched forward over the full prompts", base_n,
                lambda: backend.raw_next_token_logits(base_texts)),
        "naive": ("`score_choices(..., reuse_prefix=False)`: one full forward per criterion", base_n,
                  lambda: reuse(base, False)),
        "engine": ("the same as the first row through `Judge(mode=\"logprob\")` (engine + backend)", n, engine),
    }
    per: dict[str, list[float]] = {key: [] for key in ways}  # seconds per judgment, one entry per round
    tokens: dict[str, float] = {}  # tokens forwarded per judgment
    answers: dict[str, list[Any]] = {}
    loads: list[str] = []

    def round_(number: int) -> None:
        loads.append(loadavg().split()[0])
        for key, (_, count, fn) in ways.items():
            clear()
            before = backend.stats.forward_tokens
            gc.collect()
            with Meter() as meter:
                result = fn()
            per[key].append(meter.wall / count)
            tokens[key] = (backend.stats.forward_tokens - before) / count
            if isinstance(result, list) and key in ("reuse", "naive"):
                answers[key] = [r["Yes"] for r in result]
            print(f"  [e] round {number}: {key} {meter.wall:.1f} s", file=sys.stderr, flush=True)

    s.attempt("warm-up", lambda: run_async(lambda: backend.score_choices(groups[0][:3], list(choices)), 120))
    for number in range(1, rounds + 1):
        s.attempt(f"round {number} of {rounds}", lambda number=number: round_(number))
    best = {key: min(values) for key, values in per.items() if values}
    for key, (label, count, _) in ways.items():
        if key not in best:
            continue
        spread = ", ".join(f"{1 / v:.2f}" for v in per[key])
        forwarded = f"; {tokens[key]:.0f} tokens forwarded per judgment" if tokens.get(key) else ""
        s.row(label, 1 / best[key], "judgments/s", f"best of {len(per[key])} rounds ({spread}) over {count} "
              f"judgments{forwarded}")
    if "reuse" in answers and "naive" in answers:
        diff = max(abs(a - b) for a, b in zip(answers["reuse"], answers["naive"], strict=False))
        s.row("max |P(Yes) reuse − P(Yes) naive|", diff, "", "prefix reuse must not change the answer")
    r, raw, naive, eng = (best.get(k) for k in ("reuse", "raw", "naive", "engine"))
    paired = [b / a for a, b in zip(per["reuse"], per["raw"], strict=False)]
    if r and raw:
        s.ratio = {"label": "prefix-reuse throughput ÷ raw batched forward throughput", "value": raw / r,
                   "target": "> 1"}
        s.row("**ratio** prefix reuse ÷ raw batched forward (throughput)", raw / r, "×",
              "per round: " + ", ".join(f"{x:.2f}" for x in paired))
    efficiency = None
    if r and raw and tokens.get("reuse") and tokens.get("raw"):
        efficiency = (tokens["reuse"] / r) / (tokens["raw"] / raw)
        s.row("tokens computed per second, prefix reuse ÷ raw batched forward", efficiency, "×",
              f"{tokens['reuse'] / r:,.0f} vs {tokens['raw'] / raw:,.0f} tokens/s: how close the reuse path runs to "
              "the model's raw forward speed on the tokens it does compute")
    if r and naive:
        s.row("**speed-up** prefix reuse vs naive per-criterion forwards", naive / r, "×",
              "per round: " + ", ".join(f"{b / a:.2f}" for a, b in zip(per["reuse"], per["naive"], strict=False)))
    if r and eng:
        s.row("engine + backend ÷ backend alone (time)", eng / r, "×")
    s.row("load average (1 min) at the start of each round", ", ".join(loads), "")
    interpretation = []
    if r and raw:
        interpretation.append(
            f"Scoring the {N_CRITERIA} criteria of a response with the shared prefix computed once runs "
            f"**{raw / r:.1f}×** the throughput of a plain batched forward pass over the same full prompts (the "
            "raw forward throughput of the model on these prompts): only the criterion tail differs, so most of "
            "each prompt's tokens are never recomputed. The ratio is above 1 by design; its size follows the share "
            "of the prompt that is shared."
            + (f" Per token it does compute, the reuse path runs at {efficiency:.2f}× the raw forward speed (the "
               "prefix pass, attention over the cached prefix and padded suffix batches cost something): it "
               f"computes {tokens['raw'] / tokens['reuse']:.1f}× fewer tokens and gains {raw / r:.1f}×."
               if efficiency else ""))
    if r and naive:
        interpretation.append(f"Against the naive way (one full forward pass per criterion) prefix reuse is "
                              f"**{naive / r:.1f}×** faster, with the same probabilities. Batching full prompts "
                              f"does not help on a CPU, which is compute-bound already: the batched forward takes "
                              f"{raw / naive:.2f}× the time of one full forward at a time.")
    if r and eng:
        overhead = eng / r
        interpretation.append(f"Through the engine (`Judge(mode=\"logprob\")`, which sends each response's criteria "
                              f"to one `score_choices` call) the run takes {overhead:.2f}× the time of the direct "
                              "calls: " + ("no measurable overhead (within run-to-run noise)" if overhead < 1.05 else
                                           f"{overhead - 1:.0%} more, for building and rendering the requests and "
                                           "reading the answers") + "; the forward passes dominate.")
    spread = (max(paired) / min(paired)) if len(paired) > 1 else 1.0
    interpretation.append(f"transformers {transformers.__version__}. Two torch threads on two cores shared with "
                          "other processes: when another process computes, every forward pass slows down a lot "
                          f"(the per-round ratios above vary {spread:.1f}× from one round to the next), so the best "
                          "round of each way is reported.")
    s.interpretation = interpretation
    return s


# ------------------------------------------------------------------------------------------------ section f


def _autorubric_run(server: Server, items: list[dict[str, Any]], concurrency: int = CONCURRENCY,
                    timeout: float = 120) -> dict[str, Any]:
    from autorubric import Criterion as ACriterion
    from autorubric import LLMConfig
    from autorubric import Rubric as ARubric
    from autorubric.graders import CriterionGrader
    from autorubric.rate_limit import RateLimitPool

    RateLimitPool.reset_instance()  # a fresh per-provider semaphore for this run
    config = LLMConfig(model=f"openai/{MODEL}", api_base=server.url, api_key="EMPTY", temperature=0.0,
                       max_tokens=512, max_parallel_requests=concurrency, cache_enabled=False, timeout=60.0)
    grader = CriterionGrader(judge_model_config=config, seed=0)
    rubric = ARubric([ACriterion(name=cid, weight=weight, requirement=text) for cid, text, weight in CRITERIA])

    async def go() -> dict[str, Any]:
        with Meter() as meter:
            reports = await asyncio.gather(*(rubric.grade(to_grade=item["response"], grader=grader,
                                                          query=item["prompt"]) for item in items))
        failed = 0
        for report in reports:
            failed += sum(1 for c in (report.report or []) if getattr(c, "error", None)) if not report.error else 10
        return {"wall": meter.wall, "cpu": meter.cpu, "errors": failed, "records": len(reports)}

    return run_async(go, timeout)


def _rubrickit_run(server: Server, items: list[dict[str, Any]]) -> dict[str, Any]:
    judge = openai_judge(server)
    try:
        return run_async(lambda: engine_run(judge, make_rubric(), items), 120)
    finally:
        judge.close()


def section_f(server: Server, reps: int) -> Section:
    s = Section("f")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    items = make_items(N_ITEMS, seed=53)
    tasks = N_ITEMS * N_CRITERIA
    s.row("workload", f"{N_ITEMS} items × {N_CRITERIA} criteria = {tasks} judge calls each", "",
          f"same local server, latency {LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY} on both sides, caches off")
    s.row("versions", f"autorubric {metadata.version('autorubric')}, litellm {metadata.version('litellm')}, "
          f"openai {metadata.version('openai')}", "")
    runners = {"rubrickit": lambda: _rubrickit_run(server, items), "autorubric": lambda: _autorubric_run(server, items)}
    warm = make_items(1, seed=99)
    s.attempt("rubrickit warm-up", lambda: _rubrickit_run(server, warm))
    s.attempt("autorubric warm-up", lambda: _autorubric_run(server, warm))
    runs: dict[str, list[dict[str, Any]]] = {"rubrickit": [], "autorubric": []}
    for _ in range(max(reps, 5)):  # alternate, so a burst of load on the machine hits both alike; runs are short
        for name, runner in runners.items():
            def one(name: str = name, runner: Callable[[], dict[str, Any]] = runner) -> None:
                server.reset(LATENCY)
                run = runner()
                served = server.stats()
                run["server_calls"] = served["chat_requests"]
                run["prompt_tokens"] = served["prompt_tokens"]
                run["max_in_flight"] = served["max_in_flight"]
                runs[name].append(run)

            s.attempt(f"{name} run", one)
    walls = {}
    for name, found in runs.items():
        if not found:
            continue
        wall, cpu = median_of(found, "wall"), median_of(found, "cpu")
        walls[name] = wall
        last = found[-1]
        s.row(f"{name}: wall time (median of {len(found)})", wall, "s",
              "runs " + ", ".join(f"{r['wall']:.2f}" for r in found) + f"; client CPU {cpu:.2f} s "
              f"({cpu / tasks * 1000:.2f} ms/call); server received {last['server_calls']} requests, at most "
              f"{last['max_in_flight']} at once, {last['prompt_tokens'] / max(1, last['server_calls']):.0f} prompt "
              f"tokens/request; {last['errors']} errors")
    if len(walls) == 2:
        ratio = walls["autorubric"] / walls["rubrickit"]
        calls = {name: found[-1]["server_calls"] for name, found in runs.items()}
        s.ratio = {"label": "autorubric wall ÷ rubrickit wall", "value": ratio, "target": "—"}
        s.row("**ratio** autorubric ÷ rubrickit (wall time)", ratio, "×",
              "requests per run: " + ", ".join(f"{k} {v}" for k, v in calls.items()))
        same = len(set(calls.values())) == 1 and calls["rubrickit"] == tasks
        auto_cpu = median_of(runs["autorubric"], "cpu")
        auto_tokens = runs["autorubric"][-1]["prompt_tokens"] / max(1, calls["autorubric"])
        rk_tokens = runs["rubrickit"][-1]["prompt_tokens"] / max(1, calls["rubrickit"])
        rk_cpu = median_of(runs["rubrickit"], "cpu")
        s.interpretation = [
            ("Both libraries made exactly the same number of judge calls "
             f"({tasks}, counted by the server), one per item × criterion. " if same else
             f"The call counts differ ({calls}); the comparison is not like for like. ")
            + f"On the same server, latency and concurrency, autorubric takes **{ratio:.2f}×** rubrickit's wall "
            f"time ({walls['autorubric']:.2f} s vs {walls['rubrickit']:.2f} s). autorubric calls litellm, which "
            "calls the same openai SDK underneath (the server sees the SDK's user agent from both), so it pays the "
            "SDK's per-request cost described in section a plus litellm's own (parameter mapping, response "
            f"conversion, cost lookup) and pydantic validation: {auto_cpu / tasks * 1000:.2f} ms of CPU per call "
            f"(process CPU, which counts litellm's helper threads too) against rubrickit's "
            f"{rk_cpu / tasks * 1000:.2f} ms. With 100 ms of latency and 50 slots, per-call client CPU is what "
            "separates the two. autorubric's prompts are also "
            f"{auto_tokens / max(1, rk_tokens):.1f}× longer ({auto_tokens:,.0f} vs {rk_tokens:,.0f} prompt tokens "
            "per request, by the server's count): that costs money with a real API, not time against this server. "
            f"Neither reaches the ideal {tasks * LATENCY / CONCURRENCY:.1f} s on this machine (see section a)."]
    return s


# ------------------------------------------------------------------------------------------------ running


def worker(key: str, origin: str | None, out: Path, reps: int) -> int:
    """Run one section in this (child) process and write its result as JSON."""
    started = time.perf_counter()
    server = Server(origin) if origin else None
    Section.checkpoint = out
    try:
        if key == "a":
            section = section_a(server, reps)
        elif key == "b":
            section = section_b(server, reps)
        elif key == "c":
            section = section_c(server)
        elif key == "d":
            section = section_d(server)
        elif key == "e":
            section = section_e(reps)
        elif key == "f":
            section = section_f(server, reps)
        else:
            raise ValueError(f"unknown section {key!r}")
        result = section.as_dict()
    except Exception as error:
        traceback.print_exc()
        result = {"key": key, "title": SECTIONS[key][0], "rows": [], "ratio": None, "interpretation": [],
                  "tables": [], "errors": [f"{type(error).__name__}: {error}"]}
    result["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(result, default=str))
    return 0


def run_section(key: str, server: Server | None, reps: int) -> dict[str, Any]:
    """Run a section in a child process with its time limit; a crash or a time-out becomes a failed section."""
    title, limit = SECTIONS[key]
    print(f"\n== {key}: {title} (limit {limit} s)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="rubrickit-bench-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", key, "--result", str(out),
                   "--reps", str(reps)]
        if server is not None:
            command += ["--server", server.origin]
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=sys.stderr)
        try:
            code = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            child.kill()  # our own child, by its handle
            child.wait()
            partial = json.loads(out.read_text()) if out.exists() else None
            if partial is None:
                partial = {"key": key, "title": title, "rows": [], "ratio": None, "interpretation": [],
                           "tables": []}
            partial.setdefault("errors", []).append(
                f"timed out after {limit} s (the section's time limit); "
                + ("the measurements finished before that are shown" if partial["rows"] else "nothing was reported"))
            partial["seconds"] = time.perf_counter() - started
            return partial
        if out.exists():
            return json.loads(out.read_text())
        return {"key": key, "title": title, "rows": [], "ratio": None, "interpretation": [], "tables": [],
                "errors": [f"the section's process exited with code {code} without a result (see its output "
                           "above)"], "seconds": time.perf_counter() - started}


def machine_facts() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "?"
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        commit = head + (" + uncommitted changes" if dirty else "")
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "openai": version("openai"),
        "aiohttp": version("aiohttp"),
        "litellm": version("litellm"),
        "autorubric": version("autorubric"),
        "rubrickit": f"{version('rubrickit')} (commit {commit})",
    }


def render_markdown(results: list[dict[str, Any]], command: str, started: _dt.datetime, facts: dict[str, str],
                    loads: tuple[str, str], seconds: float) -> str:
    lines = ["# Judge engine benchmarks", "",
             "Written by `bench/bench_engine.py` (see `bench/README.md`). Every number below comes from the run "
             "described here; the sections ran one after another in that one run.", "",
             f"- **Command:** `{command}`",
             f"- **Date:** {started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} (took {seconds:.0f} s)",
             f"- **Machine:** {facts['nproc']} CPU cores ({facts['cpu']}), {facts['platform']}; load average "
             f"{loads[0]} at the start and {loads[1]} at the end (other processes share the cores)",
             f"- **Python** {facts['python']}, **torch** {facts['torch']}, transformers {facts['transformers']}, "
             f"openai {facts['openai']}, aiohttp {facts['aiohttp']}, litellm {facts['litellm']}, autorubric "
             f"{facts['autorubric']}, rubrickit {facts['rubrickit']}",
             "- **Server:** `tests/oai_server.py` in its own process (`bench/_server.py`) on 127.0.0.1", "",
             "## Summary", "", "| section | ratio | value | target |", "|---|---|---|---|"]
    for result in results:
        ratio = result.get("ratio")
        if ratio:
            value = f"**{ratio['value']:.2f}**" + (f" (best run {ratio['best']:.2f})" if ratio.get("best") else "")
            lines.append(f"| {result['key']}. {result['title']} | {ratio['label']} | {value} | {ratio['target']} |")
        else:
            lines.append(f"| {result['key']}. {result['title']} | — | failed | |")
    for result in results:
        lines += ["", f"## {result['key']}. {result['title']}", ""]
        if result["rows"]:
            lines += ["| measure | value | unit | detail |", "|---|---|---|---|"]
            for row in result["rows"]:
                lines.append(f"| {row['label']} | {fmt(row['value'])} | {row['unit']} | {row['detail']} |")
        for table in result.get("tables", []):
            lines += ["", table]
        if result.get("interpretation"):
            lines += ["", "**Interpretation.** " + " ".join(result["interpretation"])]
        if result.get("errors"):
            lines += ["", "**Failures in this section:**", ""] + [f"- {e}" for e in result["errors"]]
        lines.append(f"\n_Section time: {result.get('seconds', 0):.0f} s._")
    return "\n".join(lines) + "\n"


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    for result in results:
        print(f"{result['key']}. {result['title']}")
        for row in result["rows"]:
            label = row["label"].replace("**", "").replace("`", "")
            print(f"    {label:<72} {fmt(row['value']):>14} {row['unit']}")
        ratio = result.get("ratio")
        if ratio:
            print(f"    => {ratio['label']}: {ratio['value']:.2f}  (target {ratio['target']})")
        for error in result.get("errors", []):
            print(f"    !! {error}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run, e.g. a,b (default: all)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement (medians are reported)")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS-engine.md", help="the Markdown report to write")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.server, args.result, max(1, args.reps))
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    command = shlex.join([os.path.relpath(sys.executable) if sys.executable.startswith(str(ROOT)) else
                          sys.executable, os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))
    started, clock = _dt.datetime.now().astimezone(), time.perf_counter()
    facts, load_start = machine_facts(), loadavg()
    process, server = None, None
    if any(k != "e" for k in keys):
        process, server = Server.start()
    results = []
    try:
        for key in keys:
            results.append(run_section(key, server, max(1, args.reps)))
    finally:
        if process is not None:
            stop_server(process)
    print_table(results)
    if not args.no_write:
        args.out.write_text(render_markdown(results, command, started, facts, (load_start, loadavg()),
                                            time.perf_counter() - clock))
        print(f"wrote {os.path.relpath(args.out)}")
    return 0 if all(r.get("ratio") for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
