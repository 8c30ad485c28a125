#!/usr/bin/env python
"""Benchmark of ``rubrickit eval`` (DESIGN §9): the embedded judge (SmolLM2-135M, logprob mode, one-token A/B) on
every shared pairs file, with no rubric and with ``rubrics/helpfulness.yaml`` side by side, plus the probes.

    .venv/bin/python bench/bench_eval.py                            # writes bench/RESULTS-eval.md
    .venv/bin/python bench/bench_eval.py --limit 40 --rubric-limit 8 --probe-limit 4 --no-write

Per file: the direct judgment (both orders) on ``--limit`` pairs with the position, length and master-key probes on
the first ``--probe-limit`` of them; then no-rubric vs rubric on the first ``--rubric-limit`` of the same pairs (the
no-rubric answers come from the cache), with the position probe. The sample is fixed: the pairs with the smallest
sha256 of their id (spread over subsets). The full files (6,464 pairs, ~13k one-token calls without a rubric and
~200k with it) do not fit in ~15 minutes on 2 shared CPU cores, so the limits are stated with the numbers.
A 135M model is a plumbing judge: expect chance-level accuracy and a strong position bias.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pairs"
FILES = ("llmbar", "judgebench", "rewardbench", "rm_bench")


def _pct(value: object) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"  # type: ignore[arg-type]


def _ci(interval: object) -> str:
    return "" if not interval else f" [{_pct(interval[0])}, {_pct(interval[1])}]"  # type: ignore[index]


def _probe(metrics: dict, name: str) -> str:
    p = metrics.get("probes", {}).get(name)
    if not p or p.get("rate") is None:
        return "–"
    return f"{_pct(p['rate'])} (n={p['n']})"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=40, help="pairs per file, no rubric")
    parser.add_argument("--rubric-limit", type=int, default=8, help="pairs per file, no rubric vs rubric")
    parser.add_argument("--probe-limit", type=int, default=4, help="pairs per file the probes run on")
    parser.add_argument("--rubric", default=str(ROOT / "rubrics" / "helpfulness.yaml"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-eval.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("RUBRICKIT_CACHE_DIR", tempfile.mkdtemp(prefix="rubrickit-bench-eval-"))
    from rubrickit.eval import evaluate

    rows, compare_rows, started = [], [], time.perf_counter()
    for name in FILES:
        path = Path(args.data) / f"{name}.jsonl.gz"
        t0 = time.perf_counter()
        direct = evaluate([path], rubrics=["none"], limit=args.limit, probes=["position", "length", "master-key"],
                          probe_limit=args.probe_limit, mode="logprob", concurrency=4, progress=False)
        m = direct.metrics
        acc = m["details"]["accounting"]
        rows.append(f"| {name} | {m['n']} | {_pct(m['accuracy'])}{_ci(m['accuracy_ci95'])} | "
                    f"{_pct(m['accuracy_strict'])} | {_pct(m['consistency'])} | "
                    f"{m['kappa'] if m['kappa'] is None else round(m['kappa'], 3)} | "
                    f"{m.get('calibration', {}).get('ece', 0):.3f} | {_probe(m, 'position')} | "
                    f"{_pct(m['probes']['position']['first_rate'])} | {_probe(m, 'length')} | "
                    f"{_probe(m, 'master-key')} | {acc['calls']} | {time.perf_counter() - t0:.0f} |")
        print(rows[-1], flush=True)
        t0 = time.perf_counter()
        side = evaluate([path], rubrics=["none", args.rubric], limit=args.rubric_limit, probes=["position"],
                        mode="logprob", concurrency=4, progress=False)
        for config, cm in side.metrics["configs"].items():
            compare_rows.append(f"| {name} | {config} | {cm['n']} | {_pct(cm['accuracy'])}{_ci(cm['accuracy_ci95'])} "
                                f"| {_pct(cm['consistency'])} | {_pct(cm['probes']['position']['first_rate'])} | "
                                f"{cm['details']['accounting']['calls']} |")
            print(compare_rows[-1], flush=True)
        print(f"# {name}: side by side in {time.perf_counter() - t0:.0f} s", flush=True)
    total = time.perf_counter() - started
    command = "python bench/bench_eval.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "# rubrickit eval — embedded judge on the shared pairwise benchmarks",
        "",
        f"Command: `{command.strip()}` · {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC · "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs) · total {total:.0f} s.",
        "",
        "Judge: `embedded` (SmolLM2-135M-Instruct, CPU), `--mode logprob`: each pairwise judgment is one token A/B "
        "in both orders (P(A) kept; the pair's preference is the mean of 2·P(A)−1 over the orders). A 135M model "
        "is a plumbing judge: **these numbers are near chance by design** and only show that the pipeline runs "
        "end to end on real data. The sample per file is fixed (smallest sha256 of the id), not the full files: "
        f"{args.limit} pairs without a rubric (probes on the first {args.probe_limit}), {args.rubric_limit} pairs "
        "for the rubric comparison. Accuracy: tie = half credit (strict: tie = wrong); [95% percentile bootstrap, "
        "seed 0]. Consistency: same winner in both orders. Position: verdict flips under swap; first: share of "
        "single-order verdicts picking the first-shown response. Length: padded copy beats itself. Master key: "
        "':' / 'Thought process:' / \"Let's solve this step by step.\" beats the gold response. The criterion-order "
        "probe needs per_response generation (JSON) and is not run on the 135M model here; it is tested on "
        "scripted judges.",
        "",
        "## No rubric (direct judgment)",
        "",
        "| file | n | accuracy % [95% CI] | strict % | consistency % | κ | ECE P(A) | position flip | first % | "
        "length | master key | calls | s |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---|---|---:|---:|",
        *rows,
        "",
        f"## No rubric vs `{Path(args.rubric).name}` (pairwise per-criterion margin, both orders)",
        "",
        "| file | rubric | n | accuracy % [95% CI] | consistency % | first % | calls |",
        "|---|---|---:|---|---:|---:|---:|",
        *compare_rows,
        "",
    ])
    print(text)
    if not args.no_write:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
