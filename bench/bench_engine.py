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

This file is the driver: it starts the server, runs the chosen sections one child process each and writes the
report. Each section lives in a module of its own next to it (``engine_a_throughput.py``, ``engine_b_overhead.py``,
``engine_c_tokens.py``, ``engine_d_cache.py``, ``engine_e_hf_logprob.py``, ``engine_f_autorubric.py``); what they
share (workload, server control, measuring, :class:`Section`) is in ``engine_common.py``, the Markdown report and
the machine's facts in ``engine_report.py``. The other bench scripts use those shared names as ``bench_engine.X``,
so this module re-exports them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the section modules next to this file

from engine_a_throughput import section_a  # noqa: E402
from engine_b_overhead import section_b  # noqa: E402
from engine_c_tokens import section_c  # noqa: E402
from engine_common import (  # noqa: E402  (sets litellm's environment and puts this checkout's root on sys.path)
    BENCH,
    CONCURRENCY,
    CRITERIA,
    LATENCY,
    MODEL,
    N_CRITERIA,
    N_ITEMS,
    ROOT,
    SECTIONS,
    Meter,
    Section,
    Server,
    engine_run,
    fmt,
    loadavg,
    make_items,
    make_rubric,
    median_of,
    openai_judge,
    run_async,
    stop_server,
)
from engine_d_cache import section_d  # noqa: E402
from engine_e_hf_logprob import section_e  # noqa: E402
from engine_f_autorubric import _autorubric_run, section_f  # noqa: E402
from engine_report import machine_facts, print_table, render_markdown  # noqa: E402

__all__ = [
    "BENCH", "CONCURRENCY", "CRITERIA", "LATENCY", "MODEL", "N_CRITERIA", "N_ITEMS", "ROOT", "SECTIONS", "Meter",
    "Section", "Server", "_autorubric_run", "engine_run", "fmt", "loadavg", "machine_facts", "main", "make_items",
    "make_rubric", "median_of", "openai_judge", "print_table", "render_markdown", "run_async", "run_section",
    "section_a", "section_b", "section_c", "section_d", "section_e", "section_f", "stop_server", "worker",
]
"""The shared names the other bench scripts read as ``bench_engine.X`` (``_autorubric_run``: bench_throughput.py)."""


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
