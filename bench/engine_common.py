"""Shared pieces of the judge-engine benchmark: what ``bench_engine.py`` and every ``engine_<letter>_*.py`` section use.

It owns the section table (:data:`SECTIONS`) and the workload constants, the workload itself (support tickets with
replies, the 10-criterion rubric), the control side of the scripted server (:class:`Server` for ``bench/_server.py``),
the measuring helpers (:class:`Meter`, :func:`run_async`, :func:`engine_run`, :func:`openai_judge`), what a section
reports into (:class:`Section`, :func:`fmt`, :func:`median_of`), and the plain-aiohttp floor that sections a and b
both measure. Importing it keeps litellm offline and puts this checkout's root first on ``sys.path``, so
``rubrickit`` is this checkout's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH", "CONCURRENCY", "CRITERIA", "LATENCY", "MODEL", "N_CRITERIA", "N_ITEMS", "ROOT", "SECTIONS", "Meter",
    "Section", "Server", "engine_run", "fmt", "loadavg", "make_items", "make_rubric", "median_of", "openai_judge",
    "run_async", "stop_server",
]

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


# ---------------------------------------------------------------------------------------- floors of sections a, b


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
