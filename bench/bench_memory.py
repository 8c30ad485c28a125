#!/usr/bin/env python
"""Memory of a long job: peak RSS of ``rubrickit score`` (and ``compare``) at 2,000 vs 200,000 tasks.

    .venv/bin/python bench/bench_memory.py                      # score and compare, writes bench/RESULTS-memory.md
    .venv/bin/python bench/bench_memory.py --only score --small 2000 --large 20000

Each side is the real command line in a child process (``rubrickit score -r … -d … -o … --judge openai:…
--base-url …``) against ``bench/_server.py`` (its own process) at zero latency, judge cache on (a fresh folder per
run), concurrency 64. A *task* is one criterion judgment (items × 10 criteria; a pair compares both orders of each
criterion, so 20 tasks per pair). The child's peak RSS comes from ``wait4`` (``ru_maxrss``), and its RSS is sampled
every 0.2 s from ``/proc`` to show the curve is flat, not merely lower. Target: large ÷ small peak RSS ≤ 1.5.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import bench_engine as be  # noqa: E402

CRITERIA = 10


def write_inputs(folder: Path, tasks: int, kind: str) -> tuple[Path, Path]:
    """A 10-criterion rubric and enough items (or pairs) for ``tasks`` criterion judgments."""
    from rubrickit.rubric import save_rubric

    rubric = folder / "rubric.yaml"
    save_rubric(be.make_rubric(CRITERIA), rubric)
    per_row = CRITERIA if kind == "score" else 2 * CRITERIA
    rows = max(1, tasks // per_row)
    data = folder / f"{kind}-{rows}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for start in range(0, rows, 1000):
            batch = be.make_items(min(1000, rows - start), seed=start)
            for offset, item in enumerate(batch):
                n = start + offset
                if kind == "score":
                    row = {**item, "id": f"item-{n:07d}"}
                else:
                    row = {"id": f"pair-{n:07d}", "prompt": item["prompt"], "response_a": item["response"],
                           "response_b": item["response"][::-1], "label": "A"}
                fh.write(json.dumps(row) + "\n")
    return rubric, data


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_command(kind: str, rubric: Path, data: Path, url: str, folder: Path) -> dict[str, Any]:
    out = folder / f"out-{data.stem}.jsonl"
    cache = folder / f"cache-{data.stem}"
    command = [str(Path(sys.executable).parent / "rubrickit"), kind, "-r", str(rubric), "-d", str(data), "-o", str(out),
               "--judge", "openai:bench-judge", "--base-url", url, "--cache-dir", str(cache), "-c", "64",
               "--max-error-rate", "1"]
    env = {**os.environ, "COLUMNS": "200"}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _rss_kib(process.pid)
            if rss is not None:
                samples.append((time.perf_counter() - started, rss))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    stdout = process.stdout.read().decode() if process.stdout else ""
    stderr = process.stderr.read().decode() if process.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    records = sum(1 for _ in out.open()) if out.exists() else 0
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    # RSS over the run: the median of the middle half of the samples against the last ones (flat ⇒ ≈ equal).
    values = [rss for _, rss in samples]
    middle = values[len(values) // 4: max(len(values) // 4 + 1, 3 * len(values) // 4)]
    return {"peak_mib": usage.ru_maxrss / 1024, "wall": wall, "records": records,
            "cpu": usage.ru_utime + usage.ru_stime, "samples": len(values),
            "mid_mib": (sorted(middle)[len(middle) // 2] / 1024) if middle else None,
            "last_mib": (values[-1] / 1024) if values else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2_000, help="tasks of the small job")
    parser.add_argument("--large", type=int, default=200_000, help="tasks of the large job")
    parser.add_argument("--only", default="score,compare", help="score, compare or both (comma-separated)")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS-memory.md")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    command = " ".join(["bench/bench_memory.py", *(argv if argv is not None else sys.argv[1:])])
    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = be.loadavg()
    process, server = be.Server.start()
    rows = []
    try:
        server.reset(latency=0.0)
        with tempfile.TemporaryDirectory(prefix="rubrickit-bench-memory-") as tmp:
            folder = Path(tmp)
            for kind in kinds:
                sides = {}
                for label, tasks in (("small", args.small), ("large", args.large)):
                    rubric, data = write_inputs(folder, tasks, kind)
                    result = run_command(kind, rubric, data, server.url, folder)
                    sides[label] = {**result, "tasks": tasks, "input_mib": data.stat().st_size / 2**20}
                    print(f"{kind} {label}: {tasks:,} tasks, peak RSS {result['peak_mib']:.1f} MiB, "
                          f"{result['records']:,} records in {result['wall']:.1f} s", flush=True)
                ratio = sides["large"]["peak_mib"] / sides["small"]["peak_mib"]
                rows.append((kind, sides, ratio))
    finally:
        be.stop_server(process)
    lines = [
        "# Memory of a long job: RSS at 2,000 vs 200,000 tasks",
        "",
        f"- **Command:** `.venv/bin/python {command}`",
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load_before} at the start, {be.loadavg()} at the end",
        "- **Workload:** the `rubrickit` command line in a child process against `bench/_server.py` at zero latency, "
        "10-criterion rubric, per_criterion, concurrency 64, judge cache on (fresh folder), output JSONL (fsync'd "
        "per record); peak RSS from `wait4`",
        "",
        "| command | tasks | input | records | wall | peak RSS | RSS mid-run / at the end | large ÷ small peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, sides, ratio in rows:
        for label in ("small", "large"):
            side = sides[label]
            lines.append(
                f"| `{kind}` | {side['tasks']:,} | {side['input_mib']:.1f} MiB | {side['records']:,} | "
                f"{side['wall']:.1f} s | {side['peak_mib']:.1f} MiB | "
                f"{(side['mid_mib'] or 0):.1f} / {(side['last_mib'] or 0):.1f} MiB | "
                f"{f'**{ratio:.2f}**' if label == 'large' else ''} |")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
