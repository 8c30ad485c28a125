#!/usr/bin/env python
"""The soak benchmark: 10,000 criterion tasks through ``rubrickit score`` against the loopback OpenAI-compatible
server with ~20% injected faults, a ``kill -9`` of the scoring process in the middle, then ``--resume`` (and a
second ``--resume``, which re-judges the items left with error verdicts).

    .venv/bin/python bench/bench_soak.py                    # 1,000 items × 10 criteria; appends to bench/RESULTS.md
    .venv/bin/python bench/bench_soak.py --items 200 --no-write

It checks that every task ends in the right verdict or an explicit ``error`` (0 flipped), that the output holds
exactly one record per item (0 lost, 0 duplicated), and measures the backend calls repeated after the resume (per
original criterion request, counted at the server) against the tasks in flight at the kill, the total calls, the
wall time against the ideal (latency × calls ÷ concurrency) and the error verdicts. The harness, the fault table
and the definitions of every number are in ``tests/soak.py``; the CI-sized run is ``tests/test_soak.py``.

The server runs in a thread of this process (the scoring process is a separate one, so they do not share a GIL).
The results replace the ``## Soak`` section of ``--out`` (or are appended as one). The exit status is 1 when a
check failed. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import shlex
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench_engine import loadavg, machine_facts  # noqa: E402
from soak import FaultScript, Workload, run_soak, soak_server, verify  # noqa: E402

SECTION = "## Soak: faults, kill -9, resume"


def failures(report: dict[str, Any]) -> list[str]:
    """The checks the run failed (empty when it passed)."""
    checks = {
        "the kill landed mid-run": report["killed_mid_run"],
        "0 flipped verdicts": report["flipped"] == 0 and report["after_resume"]["flipped"] == 0,
        "0 lost records": report["lost_items"] == 0 and report["after_resume"]["lost_items"] == 0,
        "0 duplicated records": report["duplicated_records"] == 0 and report["after_resume"]["duplicated_records"] == 0,
        "no verdict missing, every error with its reason": report["missing_verdicts"] == 0
        and report["errors_without_reason"] == 0,
        "no unparseable or torn line": report["unparseable_lines"] == 0 and report["torn_last_line"] == 0,
        "no finished task asked again after the resume": report["unexpected_repeats"] == 0,
        "the second resume asks only for error verdicts": report["rejudged_without_error"] == 0,
        "the resumes finished (exit status 0 or 3)": report["resume_rc"] in (0, 3) and report["rejudge_rc"] in (0, 3),
    }
    return [name for name, passed in checks.items() if not passed]


def _n(value: float) -> str:
    return f"{value:,}"


def render_section(report: dict[str, Any], args: argparse.Namespace, command: str, facts: dict[str, str],
                   loads: tuple[str, str], started: _dt.datetime) -> str:
    """The Markdown section for RESULTS.md, with a reading written from the numbers."""
    r = report
    faults = r["faults_by_kind"]
    fault_share = r["faults_injected"] / r["calls"] if r["calls"] else 0.0
    failed = failures(r)
    rows = [
        ("criterion tasks", f"{_n(r['items'])} items × {r['criteria']} criteria = **{_n(r['tasks'])}**",
         "per_criterion, one request per task"),
        ("faults injected", f"{_n(r['faults_injected'])} of {_n(r['calls'])} calls ({fault_share:.1%})",
         f"429 {faults['rate_limit']}, 5xx {faults['server']}, dropped or reset {faults['drop']}, garbage text "
         f"{faults['garbage']}, malformed body {faults['malformed']}, slow past the time-out {faults['slow']}"),
        ("`kill -9`", f"after {_n(r['records_at_kill'])} of {_n(r['items'])} records",
         f"{r['open_at_kill']} requests open at the server, {r['in_flight_at_kill']} tasks in flight"),
        ("verdicts right / error / **flipped**", f"{_n(r['right'])} / {_n(r['error_verdicts'])} / **{r['flipped']}**",
         "target: 0 flipped"),
        ("records lost / duplicated", f"**{r['lost_items']} / {r['duplicated_records']}**",
         f"{_n(r['records'])} records for {_n(r['items'])} items; target 0 / 0"),
        ("backend calls repeated after the resume",
         f"**{r['repeated_calls']}** calls for {r['repeated_tasks']} tasks",
         f"in flight at the kill: {r['in_flight_at_kill']}; error verdicts re-judged: {r['rejudged_error_tasks']}; "
         f"verdicts that had needed a re-ask: {r['reasked_repeats']}; other finished tasks asked again: "
         f"{r['unexpected_repeats']} (target 0)"),
        ("total backend calls", f"{_n(r['calls'])}",
         f"{r['calls'] / r['tasks']:.2f} per task; {_n(r['calls_before_kill'])} before the kill, "
         f"{_n(r['calls_after_resume'])} after"),
        ("wall time vs ideal", f"{r['wall_s']:.1f} s vs {r['ideal_s']:.1f} s: **{r['ideal_over_wall']:.2f}**",
         f"ideal = {args.latency * 1000:g} ms × calls ÷ {args.concurrency}; the tasks' retry chains alone imply "
         f"{r['retry_chains_s']:.1f} s"),
        ("error verdicts", f"{_n(r['error_verdicts'])}",
         f"{r['hopeless_tasks']} hopeless (garbage forever), {r['stubborn_errors']} stubborn (garbage 3 times), "
         f"{r['errors_unexplained']} other; exit status {r['resume_rc']}"),
        ("second `--resume` (re-judges error verdicts)", f"{_n(r['rejudge_calls'])} calls",
         f"{r['errors_recovered_by_rejudge']} of {r['errors_before_rejudge']} errors recovered; tasks asked "
         f"without an error: {r['rejudged_without_error']} (target 0; + {r['rejudge_reasked']} re-asked criteria of "
         f"their items); exit status {r['rejudge_rc']}"),
    ]
    table = ["| measure | value | detail |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    reading = _reading(r, args, loads[1])
    verdict = "all checks passed" if not failed else "**failed: " + "; ".join(failed) + "**"
    header = (f"Command: `{command}`, {started:%Y-%m-%d} ({r['wall_s'] + r['rejudge_wall_s']:.0f} s; "
              f"{facts['nproc']} cores, load average {loads[0]} at the start and {loads[1]} at the end; rubrickit "
              f"{facts['rubrickit']}): `rubrickit score … -c {args.concurrency} --timeout {args.timeout:g} "
              f"--max-retries {args.max_retries}` against `tests/oai_server.py` at {args.latency * 1000:g} ms "
              f"latency with {args.fault_rate:.0%} faults per attempt (harness: `tests/soak.py`); {verdict}.")
    return "\n".join([SECTION, "", _wrap(header), "", *table, "", _wrap(reading), ""])


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=118, break_long_words=False, break_on_hyphens=False)


def _reading(r: dict[str, Any], args: argparse.Namespace, load_end: str) -> str:
    parts = []
    if r["flipped"] == 0 and r["lost_items"] == 0 and r["duplicated_records"] == 0:
        parts.append("No fault turned into a wrong verdict (the slow and malformed replies carry the *wrong* "
                     "verdict, so a client that read them would have flipped it), and the kill lost or "
                     "duplicated no record.")
    if r["unexpected_repeats"] == 0:
        late, rejudged, reasked = r["repeats_answered_before_kill"], r["rejudged_error_tasks"], r["reasked_repeats"]
        parts.append(
            f"The resume asked again for {r['repeated_tasks']} tasks: {r['repeated_in_flight'] + late} under way at "
            f"the kill ({r['repeated_in_flight']} of the {r['in_flight_at_kill']} with no verdict sent yet"
            + (f", {late} with theirs sent less than a second before the kill" if late else "")
            + ")"
            + (f", {rejudged} recorded with an error verdict (re-judged on purpose)" if rejudged else "")
            + (f" and {reasked} whose verdict had needed a re-ask: the cache keeps such a verdict under the re-ask "
               "conversation and drops the unreadable first reply, so a task run again (its item unfinished at "
               "the kill, or re-judged for another criterion's error) is asked again" if reasked else "")
            + ". Every other verdict sent before the kill was answered from the judge cache.")
    if r["ideal_over_wall"] is not None and r["retry_chains_s"] > r["ideal_s"]:
        parts.append(
            f"Wall time is set by the faults, not the latency: a failed call keeps its concurrency slot through "
            f"its backoff (≥ 0.25 s, or the 0.2 s Retry-After) and a slow reply holds it for the {args.timeout:g} s "
            f"time-out, so the retry chains alone imply {r['retry_chains_s']:.1f} s at concurrency "
            f"{args.concurrency}. The other {max(0.0, r['wall_s'] - r['retry_chains_s']):.0f} s are the two "
            f"process starts, the client's own CPU work and the tail of the last items (load average {load_end} "
            "at the end).")
    if r["errors_before_rejudge"] and r["rejudge_calls"]:
        parts.append(f"The second `--resume` re-judged the items with error verdicts ({r['rejudge_calls']} calls): "
                     f"{r['errors_recovered_by_rejudge']} of {r['errors_before_rejudge']} errors became right "
                     f"verdicts; {r['error_verdicts']} remain ({r['hopeless_tasks']} tasks are answered with "
                     "garbage forever).")
    if r["errors_before_rejudge"] and r["errors_recovered_by_rejudge"] == 0 and r["rejudge_calls"] == 0:
        parts.append("The second `--resume` re-judged the items with error verdicts but made no backend call: the "
                     "unreadable replies behind those errors were answered again from the judge cache, so the "
                     "stubborn tasks stay errors (see docs/reliability.md).")
    return " ".join(parts)


def write_section(path: Path, section: str) -> None:
    """Replace the soak section of ``path`` (up to the next ``## `` heading), or append it."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(r"^" + re.escape(SECTION) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--criteria", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.05, help="server seconds per answer")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=1.0, help="the client's --timeout")
    parser.add_argument("--max-retries", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--kill-fraction", type=float, default=0.5, help="share of the items recorded at the kill")
    parser.add_argument("--hopeless", type=int, default=2, help="tasks answered with garbage forever")
    parser.add_argument("--stubborn-rate", type=float, default=0.002, help="share of tasks: garbage 3 times first")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds for all processes together")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/bench_soak.py", *(argv if argv is not None else sys.argv[1:])])
    workload = Workload(items=args.items, criteria=args.criteria, seed=args.seed, hopeless=args.hopeless)
    script = FaultScript(workload, fault_rate=args.fault_rate, client_timeout=args.timeout, latency=args.latency,
                         stubborn_rate=args.stubborn_rate)
    facts, load_start = machine_facts(), loadavg()
    started = _dt.datetime.now(_dt.timezone.utc)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rubrickit-soak-") as folder, soak_server(script) as server:
        run = run_soak(script, server, Path(folder), concurrency=args.concurrency, timeout=args.timeout,
                       max_retries=args.max_retries, kill_fraction=args.kill_fraction, time_limit=args.time_limit)
        report = verify(script, run, concurrency=args.concurrency)
    print(json.dumps(report, indent=1))
    print(f"soak took {time.monotonic() - began:.0f} s", file=sys.stderr)
    if run.resume_rc not in (0, 3):
        print(run.resume_stderr[-4000:], file=sys.stderr)
    section = render_section(report, args, command, facts, (load_start, loadavg()), started)
    print(section)
    if not args.no_write:
        write_section(args.out, section)
        print(f"wrote the section to {args.out}", file=sys.stderr)
    failed = failures(report)
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
