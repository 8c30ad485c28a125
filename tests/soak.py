"""The soak harness: criterion tasks against the loopback OpenAI-compatible server with ~20% injected faults, a
``kill -9`` of the scoring process in the middle, then ``--resume`` (twice); shared by ``tests/test_soak.py`` (CI size)
and ``bench/bench_soak.py`` (10,000 tasks).

The correct verdict of every task is a deterministic function of its item and criterion (:func:`expected_verdict`),
which the server reads from markers in the prompt (``SOAKITEM00042`` in the conversation and response,
``SOAKCRIT07`` in the criterion), always from the *first* user message, so a re-ask (original prompt + the judge's
unreadable reply + a new user turn) is answered for the same task. Per (task, attempt) the server draws a fault
with probability ``fault_rate``, deterministically (a hash of seed, task and the task's attempt number at the
server):

==============  =========================================================================================
``rate_limit``  429 with ``retry-after-ms: 200`` (and ``Retry-After: 1``), or ``Retry-After: 0.2`` alone
``server``      500 or 503 with an OpenAI-style error body
``drop``        the connection is closed without a response, or reset (TCP RST)
``garbage``     200 whose text is not a verdict (prose, a cut-off object, ``"verdict": "maybe"``, a cut-off
                object after a complete one holding the *wrong* verdict, empty text): the engine re-asks
``malformed``   200 whose body is not a completion (cut-off JSON holding the wrong verdict, HTML, no choices)
``slow``        the *wrong* verdict, sent only after the client's time-out (a client that does not give up
                in time turns it into a flipped verdict, which the checks catch)
==============  =========================================================================================

Besides, ``hopeless`` tasks are answered with garbage forever (their verdict must be an explicit ``error``), and a
``stubborn_rate`` share of tasks get garbage on their first three attempts (an ``error`` after the default two
re-asks; the resume that re-judges them gets them right, since unreadable replies are not cached).

:func:`run_soak` runs ``rubrickit score`` as a real subprocess, waits until the output holds some records,
``kill -9``s it, runs the same command with ``--resume`` and then once more (the second resume re-judges the items
left with error verdicts), and :func:`verify` checks and measures the result: every verdict right or ``error``,
none flipped, exactly one record per item, and the backend calls repeated after the resume (per original criterion
request, counted at the server) against those in flight at the kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oai_server import Answer, Fault, OAIServer, Reply

__all__ = ["FAULT_KINDS", "FaultScript", "SoakRun", "Workload", "expected_verdict", "run_soak", "soak_server",
           "verify"]

ITEM_MARK = "SOAKITEM"
CRIT_MARK = "SOAKCRIT"
_ITEM = re.compile(ITEM_MARK + r"(\d{5})")
_CRIT = re.compile(CRIT_MARK + r"(\d{2})")

FAULT_KINDS = ("rate_limit", "server", "drop", "garbage", "malformed", "slow")
"""The injected fault kinds, drawn with equal probability when a fault is drawn."""


def _unit(*parts: object) -> float:
    """A deterministic draw in [0, 1) from ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def expected_verdict(seed: int, item: int, criterion: int) -> str:
    """The one correct verdict of (item, criterion): met 45%, unmet 45%, not_applicable 10%."""
    u = _unit("verdict", seed, item, criterion)
    return "met" if u < 0.45 else "unmet" if u < 0.9 else "not_applicable"


def _wrong(verdict: str) -> str:
    return "unmet" if verdict == "met" else "met"


# -- the workload --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """``items`` responses × ``criteria`` criteria, every (item, criterion) a distinct request."""

    items: int
    criteria: int
    seed: int = 0
    hopeless: int = 0
    """Tasks answered with garbage on every attempt (the first ``hopeless`` items' criterion 0)."""

    @property
    def tasks(self) -> int:
        return self.items * self.criteria

    def item_id(self, item: int) -> str:
        return f"i{item:05d}"

    def criterion_id(self, criterion: int) -> str:
        return f"c{criterion:02d}"

    def is_hopeless(self, item: int, criterion: int) -> bool:
        return criterion == 0 and item < self.hopeless

    def expected(self, item: int, criterion: int) -> str:
        """The verdict the record must hold: the correct one, or ``error`` for a hopeless task."""
        return "error" if self.is_hopeless(item, criterion) else expected_verdict(self.seed, item, criterion)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write the rubric (YAML) and the data (JSONL) into ``folder``; return their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        rubric = folder / "soak-rubric.yaml"
        lines = ["rubrickit: 1", "id: soak", "title: Soak rubric (the verdicts come from the scripted server)",
                 "criteria:"]
        for c in range(self.criteria):
            lines += [f"  - id: {self.criterion_id(c)}",
                      f"    text: The response meets soak requirement {CRIT_MARK}{c:02d} of the scripted judge."]
        rubric.write_text("\n".join(lines) + "\n")
        data = folder / "soak-data.jsonl"
        with data.open("w") as fh:
            for i in range(self.items):
                mark = f"{ITEM_MARK}{i:05d}"
                row = {"id": self.item_id(i),
                       "prompt": f"Ticket {mark}: my order has not arrived after two weeks; what can I do?",
                       "response": f"Reply to {mark}: sorry for the delay. I have re-sent the order with express "
                                   "shipping; you will get a tracking number by email today."}
                fh.write(json.dumps(row) + "\n")
        return rubric, data


# -- the server's reply function -----------------------------------------------------------------------------

_GARBAGE = (
    "I am not able to evaluate this response with the information given.",
    '{"rationale": "The response re-sends the order and',
    '{"rationale": "Hard to say either way.", "verdict": "maybe"}',
    'Draft: {"rationale": "first thought", "verdict": "%s"} Final answer: {"rationale": "on reflection',
    "",
)


@dataclass
class _Task:
    """What the server saw of one original criterion request (its attempts include re-asks)."""

    attempts: int = 0
    calls: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """Requests per phase (index 1: before the kill, 2: the resume, 3: a second resume that re-judges errors)."""
    garbage: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """Unreadable (garbage) replies per phase."""
    settled_at: float | None = None
    """When the server finished sending the first readable verdict of phase 1 (``None``: never)."""
    spans: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    """Per (phase, message count) — one request and its retries; a re-ask has more messages — the arrival times
    of its first and last attempt."""


class FaultScript:
    """The server's reply function: the correct verdict, or a fault drawn per (task, attempt); counts everything.

    ``phase`` (1 before the kill, 2 the resume, 3 the re-judging resume) is set by the orchestrator and stamped on
    every request received.
    """

    def __init__(self, workload: Workload, *, fault_rate: float = 0.2, client_timeout: float = 1.0,
                 latency: float = 0.02, stubborn_rate: float = 0.0):
        self.workload = workload
        self.fault_rate = fault_rate
        self.client_timeout = client_timeout
        self.latency = latency
        self.stubborn_rate = stubborn_rate
        self.phase = 1
        self.tasks: dict[tuple[int, int], _Task] = {}
        self.faults: Counter[str] = Counter()
        self.unknown = 0
        """Requests without the markers (there must be none)."""
        self._lock = threading.Lock()

    def stubborn(self, item: int, criterion: int) -> bool:
        return _unit("stubborn", self.workload.seed, item, criterion) < self.stubborn_rate

    def _draw(self, item: int, criterion: int, attempt: int) -> str | None:
        if self.workload.is_hopeless(item, criterion) or (attempt <= 3 and self.stubborn(item, criterion)):
            return "garbage"
        u = _unit("fault", self.workload.seed, item, criterion, attempt)
        if u >= self.fault_rate:
            return None
        return FAULT_KINDS[int(u / self.fault_rate * len(FAULT_KINDS))]

    def __call__(self, body: dict[str, Any]) -> Answer:
        key = _task_of(body)
        if key is None:
            with self._lock:
                self.unknown += 1
            return Fault.http_error(400, "soak: the request holds no SOAKITEM/SOAKCRIT markers")
        now = time.monotonic()
        with self._lock:
            task = self.tasks.setdefault(key, _Task())
            task.attempts += 1
            task.calls[self.phase] += 1
            task.spans.setdefault((self.phase, len(body.get("messages") or [])), [now, now])[1] = now
            attempt, phase = task.attempts, self.phase
            kind = self._draw(*key, attempt)
            self.faults[kind or "none"] += 1
            task.garbage[phase] += kind == "garbage"
            if kind is None and phase == 1 and task.settled_at is None:
                task.settled_at = now + self.latency
        return self._answer(key, attempt, kind)

    def _answer(self, key: tuple[int, int], attempt: int, kind: str | None) -> Answer:
        item, criterion = key
        right = expected_verdict(self.workload.seed, item, criterion)
        wrong = _wrong(right)
        variant = int(_unit("variant", self.workload.seed, item, criterion, attempt) * 1000)
        if kind is None:
            return Reply(json.dumps({"rationale": f"Scripted soak verdict for task {item}/{criterion}.",
                                     "verdict": right}))
        if kind == "rate_limit":
            if variant % 2:
                return Fault.rate_limit("1", retry_after_ms=200)
            return Fault.rate_limit("0.2")
        if kind == "server":
            return Fault.server_error(503 if variant % 2 else 500)
        if kind == "drop":
            return Fault.reset() if variant % 2 else Fault.drop()
        if kind == "garbage":
            text = _GARBAGE[variant % len(_GARBAGE)]
            return Reply(text % wrong if "%s" in text else text)
        if kind == "malformed":
            choice = variant % 3
            if choice == 0:
                verdict = json.dumps({"rationale": "cut", "verdict": wrong})
                return Fault.malformed('{"id": "chatcmpl-soak", "object": "chat.completion", "choices": '
                                       '[{"index": 0, "message": {"role": "assistant", "content": '
                                       + json.dumps(verdict)[:-3])
            if choice == 1:
                return Fault.malformed()
            return Fault.no_choices()
        # slow: the wrong verdict, after the client has given up
        return Reply(json.dumps({"rationale": "Too late.", "verdict": wrong}), delay=self.client_timeout + 0.6)

    # -- what the orchestrator reads -------------------------------------------------------------------------

    def calls(self, phase: int | None = None) -> int:
        with self._lock:
            if phase is None:
                return sum(sum(t.calls) for t in self.tasks.values()) + self.unknown
            return sum(t.calls[phase] for t in self.tasks.values())

    def snapshot(self) -> dict[tuple[int, int], _Task]:
        with self._lock:
            return {k: _Task(t.attempts, list(t.calls), list(t.garbage), t.settled_at,
                             {p: list(s) for p, s in t.spans.items()}) for k, t in self.tasks.items()}


def _task_of(body: dict[str, Any]) -> tuple[int, int] | None:
    """(item, criterion) from the first user message (a re-ask appends turns after it)."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            text = message.get("content")
            text = text if isinstance(text, str) else json.dumps(text)
            item, criterion = _ITEM.search(text), _CRIT.search(text)
            if item is None or criterion is None:
                return None
            return int(item.group(1)), int(criterion.group(1))
    return None


@contextmanager
def soak_server(script: FaultScript) -> Iterator[OAIServer]:
    """The loopback server answering with ``script`` at its latency."""
    with OAIServer(script, latency=script.latency) as server:
        yield server


# -- running and killing the scoring process -----------------------------------------------------------------


def rubrickit_command() -> list[str]:
    """The ``rubrickit`` console script of this interpreter's environment (or the module form)."""
    script = Path(sys.executable).with_name("rubrickit")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from rubrickit.cli import main; main()"]


def score_command(*, rubric: Path, data: Path, url: str, out: Path, cache_dir: Path, concurrency: int,
                  timeout: float, max_retries: int) -> list[str]:
    """The ``rubrickit score`` command line the soak runs (the resume adds ``--resume``)."""
    return [*rubrickit_command(), "score", "--rubric", str(rubric), "--data", str(data), "--judge", "openai:soak",
            "--base-url", url, "-o", str(out), "--cache-dir", str(cache_dir), "-c", str(concurrency),
            "--timeout", f"{timeout:g}", "--max-retries", str(max_retries)]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("RUBRICKIT_") or k.endswith("_API_KEY") or k.endswith("_PROXY")
                   or k.endswith("_proxy"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["COLUMNS"] = "200"
    return env


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


@dataclass
class SoakRun:
    """What :func:`run_soak` did: the command, the kill, both processes' exit statuses, times and outputs."""

    command: list[str]
    out: Path
    killed: bool = False
    """Whether the first process was still running when it was killed (it must be, for the kill to test anything)."""
    records_at_kill: int = 0
    output_at_kill: bytes = b""
    """The output file as the kill left it."""
    open_at_kill: int = 0
    """Requests the server was still handling at the kill."""
    kill_at: float = 0.0
    """``time.monotonic()`` of the kill."""
    first_rc: int | None = None
    resume_rc: int | None = None
    first_wall: float = 0.0
    resume_wall: float = 0.0
    resume_stdout: str = ""
    resume_stderr: str = ""
    first_stderr: str = ""
    output_after_resume: bytes = b""
    rejudge_rc: int | None = None
    """Exit status of the second ``--resume`` (``None``: not run)."""
    rejudge_wall: float = 0.0
    rejudge_stderr: str = ""

    @property
    def wall(self) -> float:
        return self.first_wall + self.resume_wall


def _finish(command: list[str], env: dict[str, str], deadline: float) -> tuple[int, str, str, float]:
    """Run ``command`` to its end (killed at ``deadline``): exit status, stdout, stderr, wall seconds."""
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return process.returncode, stdout, stderr, time.monotonic() - start


def _run_and_kill(run: SoakRun, server: OAIServer, env: dict[str, str], kill_at_records: int, deadline: float,
                  folder: Path) -> None:
    """Start the command, ``kill -9`` it once the output holds ``kill_at_records`` records."""
    start = time.monotonic()
    stderr_path = folder / "first.stderr"
    with stderr_path.open("w") as stderr:
        first = subprocess.Popen(run.command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            while time.monotonic() < deadline and first.poll() is None and _lines(run.out) < kill_at_records:
                time.sleep(0.02)
            run.killed = first.poll() is None
            run.kill_at = time.monotonic()
            if run.killed:
                os.kill(first.pid, signal.SIGKILL)
                run.open_at_kill = server.in_flight
            run.first_rc = first.wait(timeout=30)
            run.output_at_kill = run.out.read_bytes() if run.out.exists() else b""
            run.records_at_kill = run.output_at_kill.count(b"\n")
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    run.first_wall = time.monotonic() - start
    run.first_stderr = stderr_path.read_text()


def run_soak(script: FaultScript, server: OAIServer, folder: Path, *, concurrency: int = 32, timeout: float = 1.0,
             max_retries: int = 8, kill_fraction: float = 0.4, rejudge: bool = True,
             time_limit: float = 600.0) -> SoakRun:
    """Score the workload, ``kill -9`` the process once ``kill_fraction`` of the items are recorded, resume; with
    ``rejudge``, resume once more (which re-judges the items left with error verdicts).

    All processes together are bounded by ``time_limit`` seconds (a hung process is killed and the run reported
    with what it had: its exit status is then ``-9``).
    """
    rubric, data = script.workload.write(folder / "input")
    out, cache_dir = folder / "out.jsonl", folder / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    out.unlink(missing_ok=True)
    command = score_command(rubric=rubric, data=data, url=server.url, out=out, cache_dir=cache_dir,
                            concurrency=concurrency, timeout=timeout, max_retries=max_retries)
    run = SoakRun(command=command, out=out)
    deadline = time.monotonic() + time_limit
    env = _environment()
    script.phase = 1
    _run_and_kill(run, server, env, max(1, int(script.workload.items * kill_fraction)), deadline, folder)
    script.phase = 2
    run.resume_rc, run.resume_stdout, run.resume_stderr, run.resume_wall = _finish(
        [*command, "--resume"], env, deadline)
    run.output_after_resume = out.read_bytes() if out.exists() else b""
    if rejudge:
        script.phase = 3
        run.rejudge_rc, _, run.rejudge_stderr, run.rejudge_wall = _finish([*command, "--resume"], env, deadline)
    return run


# -- checking and measuring ----------------------------------------------------------------------------------


def _records(data: bytes) -> tuple[list[dict[str, Any]], int, bool]:
    """The JSON records of a JSONL output, the count of unparseable lines, and whether the last line is torn."""
    lines = data.split(b"\n")
    torn = bool(lines[-1])
    records, bad = [], 0
    for raw in lines[:-1]:
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except ValueError:
            bad += 1
    return records, bad, torn


def _item_of(record: dict[str, Any], workload: Workload) -> int | None:
    item_id = str(record.get("item_id"))
    if not re.fullmatch(r"i\d{5}", item_id) or int(item_id[1:]) >= workload.items:
        return None
    return int(item_id[1:])


def _error_tasks(records: list[dict[str, Any]], workload: Workload) -> set[tuple[int, int]]:
    found = set()
    for record in records:
        item = _item_of(record, workload)
        for verdict in record.get("verdicts") or []:
            if item is not None and verdict.get("verdict") == "error":
                found.add((item, int(str(verdict.get("criterion_id"))[1:])))
    return found


def _check_records(records: list[dict[str, Any]], workload: Workload) -> dict[str, Any]:
    """Every record against the correct verdicts: right, explicit errors, flipped, missing, duplicated."""
    seen: Counter[int] = Counter()
    counts: Counter[str] = Counter()
    flips: list[str] = []
    for record in records:
        item = _item_of(record, workload)
        if item is None:
            counts["unknown_items"] += 1
            continue
        seen[item] += 1
        if seen[item] > 1:
            counts["duplicated_records"] += 1
            continue
        verdicts = {v.get("criterion_id"): v.get("verdict") for v in record.get("verdicts") or []}
        counts["errors_without_reason"] += sum(1 for v in record.get("verdicts") or []
                                               if v.get("verdict") == "error" and not v.get("error"))
        met = assessed = 0
        for c in range(workload.criteria):
            got, want = verdicts.get(workload.criterion_id(c)), workload.expected(item, c)
            if got is None:
                counts["missing_verdicts"] += 1
                continue
            counts["error_verdicts" if got == "error" else "right" if got == want else "flipped"] += 1
            if got not in (want, "error"):
                flips.append(f"{workload.item_id(item)}/{workload.criterion_id(c)}: {got} (correct: {want})")
            if got in ("met", "unmet"):
                assessed += 1
                met += got == "met"
        reward = record.get("reward")
        if assessed and reward is not None and abs(float(reward) - met / assessed) > 1e-6:
            counts["wrong_rewards"] += 1
    result = {name: counts[name] for name in ("right", "error_verdicts", "flipped", "missing_verdicts",
                                              "errors_without_reason", "wrong_rewards", "duplicated_records",
                                              "unknown_items")}
    return {"records": len(records), "lost_items": workload.items - len(seen), **result, "flips": flips[:10]}


def _describe(key: tuple[int, int], task: _Task, kill_at: float, recorded: bool) -> str:
    answered = "never" if task.settled_at is None else f"{kill_at - task.settled_at:.3f} s before the kill"
    return (f"i{key[0]:05d}/c{key[1]:02d}: calls per phase {task.calls[1:]}, garbage per phase {task.garbage[1:]}, "
            f"verdict sent {answered}, item recorded at the kill: {recorded}")


def _repeats(script: FaultScript, run: SoakRun, grace: float) -> dict[str, Any]:
    """The backend calls repeated by the two resumes, per original criterion request (see :func:`verify`)."""
    workload, tasks = script.workload, script.snapshot()
    at_kill, _, _ = _records(run.output_at_kill)
    after_resume, _, _ = _records(run.output_after_resume)
    recorded_at_kill = {item for item in (_item_of(r, workload) for r in at_kill) if item is not None}
    rejudged, errors_after_resume = _error_tasks(at_kill, workload), _error_tasks(after_resume, workload)

    def reasked(candidates: set[tuple[int, int]], phases: tuple[int, ...]) -> set[tuple[int, int]]:
        # Tasks whose verdict came only after a re-ask: the cache holds it under the re-ask conversation and the
        # unreadable first reply is dropped from the cache, so a task run again (its item unfinished at the kill,
        # or re-judged for another criterion's error) is asked again.
        return {k for k in candidates if any(tasks[k].garbage[p] for p in phases)}

    first = {k for k, t in tasks.items() if t.calls[1]}
    repeated = {k for k in first if tasks[k].calls[2]}
    recorded_ok = recorded_at_kill - {item for item, _ in rejudged}
    answered = {k for k in first if tasks[k].settled_at is not None and tasks[k].settled_at < run.kill_at}
    long_answered = {k for k in answered if tasks[k].settled_at < run.kill_at - grace}  # type: ignore[operator]
    rest = repeated - rejudged  # partitioned: in flight, re-asked, sent just before the kill, unexpected
    unexpected = {k for k in rest if k[0] in recorded_ok or (k in long_answered and not tasks[k].garbage[1])}
    reasked_repeats = reasked((rest & answered) - unexpected, (1,))
    late = (rest & answered) - long_answered - unexpected - reasked_repeats
    third = {k for k, t in tasks.items() if t.calls[3]}
    error_items = {item for item, _ in errors_after_resume}
    third_reasked = reasked({k for k in third - errors_after_resume if k[0] in error_items}, (1, 2))
    return {
        "tasks_started_before_kill": len(first), "open_at_kill": run.open_at_kill,
        "in_flight_at_kill": len({k for k in first - answered if k[0] not in recorded_at_kill}),
        "repeated_tasks": len(repeated), "repeated_calls": sum(tasks[k].calls[2] for k in repeated),
        "repeated_in_flight": len(rest - answered - unexpected),
        "rejudged_error_tasks": len(repeated & rejudged), "reasked_repeats": len(reasked_repeats),
        "repeats_answered_before_kill": len(late),
        "oldest_repeated_answer_s": round(max((run.kill_at - tasks[k].settled_at  # type: ignore[operator]
                                               for k in late), default=0.0), 3),
        "unexpected_repeats": len(unexpected),
        "unexpected_examples": [_describe(k, tasks[k], run.kill_at, k[0] in recorded_at_kill) for k in
                                sorted(unexpected)[:5]],
        "errors_at_kill": len(rejudged), "errors_before_rejudge": len(errors_after_resume),
        "rejudge_reasked": len(third_reasked),
        "rejudged_without_error": len(third - errors_after_resume - third_reasked),
    }


def verify(script: FaultScript, run: SoakRun, *, concurrency: int, grace: float = 1.0) -> dict[str, Any]:
    """Check the output against the correct verdicts and count the server's calls; a flat dict of numbers.

    Repeats are counted per original criterion request (item × criterion, re-asks included) at the server:
    ``repeated_tasks`` were asked both before the kill and after the resume. Those whose record held an ``error``
    verdict at the kill are re-judged on purpose (``rejudged_error_tasks``). ``reasked_repeats`` had their verdict
    only after a re-ask: the cache keeps it under the re-ask conversation and drops the unreadable first reply, so
    when the task runs again (its item unfinished at the kill, or re-judged for another criterion) it is asked
    again — an engine cost the report shows apart. ``in_flight_at_kill`` tasks had been asked but had no readable
    verdict sent before the kill and no record. ``unexpected_repeats`` must be 0: any other task asked again
    although its item was recorded at the kill, or although the server had sent its verdict more than ``grace``
    seconds before the kill (the client had time to cache it). Likewise the second resume must ask only for the
    error verdicts and for re-asked criteria of their items (``rejudged_without_error`` = 0).

    Time: ``ideal_s`` is latency × calls ÷ concurrency; ``retry_chains_s`` is the sum over requests (a re-ask is a
    new request) of the span from their first to their last attempt (backoffs, ``Retry-After`` waits and
    time-outs included) plus one latency, ÷ concurrency: the wall time the retries alone imply when a request
    keeps its concurrency slot while it waits to retry.
    """
    workload, tasks = script.workload, script.snapshot()
    records, bad_lines, torn = _records(run.out.read_bytes() if run.out.exists() else b"")
    resumed = _check_records(_records(run.output_after_resume)[0], workload)
    repeats = _repeats(script, run, grace)
    calls = script.calls(1) + script.calls(2)  # the soak proper; the re-judging resume is counted apart
    ideal = script.latency * calls / concurrency
    chains = sum(last - first + script.latency for t in tasks.values()
                 for (phase, _), (first, last) in t.spans.items() if phase < 3)
    faults = dict(script.faults)
    final_errors = _error_tasks(records, workload)
    stubborn = {(i, c) for i in range(workload.items) for c in range(workload.criteria) if script.stubborn(i, c)}
    hopeless = {(i, 0) for i in range(min(workload.hopeless, workload.items))}
    return {
        "items": workload.items, "criteria": workload.criteria, "tasks": workload.tasks,
        "hopeless_tasks": len(hopeless), "stubborn_tasks": len(stubborn - hopeless),
        "killed_mid_run": run.killed, "records_at_kill": run.records_at_kill, "first_rc": run.first_rc,
        "resume_rc": run.resume_rc, **_check_records(records, workload), "unparseable_lines": bad_lines,
        "torn_last_line": int(torn),
        "calls": calls, "calls_before_kill": script.calls(1), "calls_after_resume": script.calls(2),
        "unknown_requests": script.unknown,
        "faults_injected": sum(v for k, v in faults.items() if k != "none"),
        "faults_by_kind": {k: faults.get(k, 0) for k in FAULT_KINDS},
        **repeats,
        "stubborn_errors": len(final_errors & (stubborn - hopeless)),
        "errors_unexplained": len(final_errors - hopeless - stubborn),
        "after_resume": {k: resumed[k] for k in ("records", "lost_items", "duplicated_records", "flipped",
                                                 "error_verdicts")},
        "rejudge_rc": run.rejudge_rc, "rejudge_calls": script.calls(3), "rejudge_wall_s": round(run.rejudge_wall, 2),
        "errors_recovered_by_rejudge": repeats["errors_before_rejudge"] - len(final_errors),
        "wall_s": round(run.wall, 2), "first_wall_s": round(run.first_wall, 2),
        "resume_wall_s": round(run.resume_wall, 2), "ideal_s": round(ideal, 2),
        "retry_chains_s": round(chains / concurrency, 2),
        "ideal_over_wall": round(ideal / run.wall, 3) if run.wall else None,
    }
