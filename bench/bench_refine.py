#!/usr/bin/env python
"""Refinement bench (DESIGN §8): test pairwise accuracy before and after each refiner, on shared labelled pairs.

    .venv/bin/python bench/bench_refine.py                       # 20 pairs per file, writes bench/RESULTS-refine.md
    .venv/bin/python bench/bench_refine.py --pairs-per-file 10 --no-write

1. Candidate rubric (noisy on purpose): the union of the general rubrics in ``rubrics/`` that apply to any
   prompt (helpfulness: 10 LLM criteria; instruction-following: 9 programmatic checks written for a product-listing
   task, i.e. mostly irrelevant here), ids prefixed by their rubric, weights kept, ``gates: none``; plus planted
   noise — three paraphrases of helpfulness criteria, one *misaligned* criterion (a flaw with a positive weight) and
   one *non-discriminative* criterion (met by any text). The domain rubrics (support-reply, medical-advice) and
   essay-scale (1–5 scales) are left out to fit the 2-core CPU budget.
2. Pairs: a fixed number per file (default 20) of ``../shared/data/pairs/{llmbar,judgebench}.jsonl.gz``, the first
   ones after a ``random.Random(0)`` shuffle; prompt and responses cut to 600 characters each (CPU budget).
3. Verdicts: every criterion on both responses of every pair, once, with the embedded SmolLM2-135M in logprob mode
   (``Judge(None, mode="logprob")``; the judge cache makes a re-run free). Programmatic checks run locally.
4. Split, per source file: pairs sorted by a hash of their id, first half train, second half test (deterministic).
5. Score: soft weighted sum Σ w·p_met over assessed criteria (rubric ``raw``, ``soft``); winner = higher score;
   a tie counts as wrong and is reported.
Steps (cumulative): raw uniform → + dedup (cosine ≥ 0.85) → + misalignment filter (fit on train) →
+ non-discriminative (train responses) → + MCR selection (≤ 12, ε = 0.3); then on the final criteria, weights
uniform vs category (RaR map) vs whitened (train responses) vs learned (logistic on train pairs).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import gzip
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rubrickit.judge.engine import Judge  # noqa: E402
from rubrickit.refine import (  # noqa: E402
    VerdictStore,
    adedup,
    apply_report,
    category_weights,
    learned_weights,
    misalignment_filter,
    nondiscriminative_filter,
    select_core,
    uniform_weights,
    whitened_rubric_weights,
)
from rubrickit.refine.verdicts import LabelledPair  # noqa: E402
from rubrickit.rubric import Criterion, Rubric, load_rubric  # noqa: E402
from rubrickit.rubric.aggregation import aggregate  # noqa: E402

SOURCES = ["helpfulness", "instruction-following"]
PLANTED = [
    {"id": "planted.paraphrase-addresses", "text": "The response deals with the main thing the user asked for.",
     "weight": 5, "category": "essential", "tags": ["planted:paraphrase"]},
    {"id": "planted.paraphrase-accurate", "text": "All factual claims made in the response are correct.",
     "weight": 5, "category": "essential", "tags": ["planted:paraphrase"]},
    {"id": "planted.paraphrase-concise", "text": "The response has no filler, repetition or off-topic tangents.",
     "weight": 1, "category": "optional", "tags": ["planted:paraphrase"]},
    {"id": "planted.misaligned", "text": "The response contains a factual error or ignores part of the instructions.",
     "weight": 3, "category": "important", "tags": ["planted:misaligned"]},
    {"id": "planted.nondiscriminative", "text": "The response is a piece of text.", "weight": 1,
     "category": "optional", "tags": ["planted:nondiscriminative"]},
]
CUT = 600


def candidate_rubric() -> Rubric:
    criteria = []
    for name in SOURCES:
        for c in load_rubric(ROOT / "rubrics" / f"{name}.yaml").criteria:
            criteria.append(c.model_copy(update={"id": f"{name}.{c.id}"}))
    criteria += [Criterion(**row) for row in PLANTED]
    return Rubric(id="bench-candidates", criteria=criteria, gates="none", raw=True, soft=True)


def load_pairs(per_file: int) -> list[dict]:
    out = []
    for name in ("llmbar", "judgebench"):
        with gzip.open(Path(os.environ.get("RUBRICKIT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pairs"
                       / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        rows = [r for r in rows if r.get("label") in ("A", "B") and isinstance(r.get("prompt"), str)]
        random.Random(0).shuffle(rows)  # a fixed order: a larger --pairs-per-file extends a smaller one's pairs
        for row in rows[:per_file]:
            out.append({"id": row["id"], "prompt": row["prompt"][:CUT], "response_a": row["response_a"][:CUT],
                        "response_b": row["response_b"][:CUT], "label": row["label"], "source": name})
    return out


def split(pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per source file: pairs sorted by a hash of their id, first half train, the rest test."""
    train, test = [], []
    for source in ("llmbar", "judgebench"):
        ordered = sorted((p for p in pairs if p["source"] == source),
                         key=lambda p: hashlib.sha256(p["id"].encode()).hexdigest())
        half = len(ordered) // 2
        train += ordered[:half]
        test += ordered[half:]
    return train, test


def labelled(pairs: list[dict]) -> list[LabelledPair]:
    return [LabelledPair(p["id"], f"{p['id']}/{p['label']}", f"{p['id']}/{'B' if p['label'] == 'A' else 'A'}")
            for p in pairs]


async def judge_all(rubric: Rubric, pairs: list[dict], store: VerdictStore) -> dict:
    judge = Judge(None, mode="logprob", concurrency=8, progress=False)
    started = time.monotonic()
    items = [{"id": f"{p['id']}/{side}", "prompt": p["prompt"], "response": p[f"response_{side.lower()}"]}
             for p in pairs for side in ("A", "B")]
    try:
        await store.ajudge(judge, rubric, items)
        summary = judge.summary()
    finally:
        await judge.aclose()
    return {"seconds": time.monotonic() - started, "items": len(items), "judge": summary}


def accuracy(rubric: Rubric, pairs: list[dict], store: VerdictStore) -> tuple[float, int, int]:
    correct = ties = 0
    for p in pairs:
        scores = {}
        for side in ("A", "B"):
            cell = store.cells.get((store_rubric_id, f"{p['id']}/{side}"), {})
            verdicts = [cell[c.id] for c in rubric.criteria if c.id in cell]
            scores[side] = aggregate(rubric.model_copy(update={"aggregation": "sum"}), verdicts, soft=True).reward
        if scores["A"] is None or scores["B"] is None or abs(scores["A"] - scores["B"]) < 1e-9:
            ties += 1
            continue
        correct += ("A" if scores["A"] > scores["B"] else "B") == p["label"]
    return correct / len(pairs), correct, ties


store_rubric_id = "bench-candidates"


def with_weights(rubric: Rubric, weights: dict[str, float]) -> Rubric:
    return rubric.model_copy(update={"criteria": [c.model_copy(update={"weight": weights.get(c.id, c.weight)})
                                                  for c in rubric.criteria]})


def as_store_rubric(rubric: Rubric) -> Rubric:
    return rubric.model_copy(update={"id": store_rubric_id})


async def run(per_file: int) -> dict:
    import numpy as np

    rubric = candidate_rubric()
    pairs = load_pairs(per_file)
    store = VerdictStore()
    judging = await judge_all(rubric, pairs, store)
    train, test = split(pairs)
    rows: list[dict] = []
    planted = {row["id"]: {"removed_by": None, "edge": None, "met_rate": None} for row in PLANTED}

    def track(step: str, report) -> None:
        for removed in report.removed:
            if removed["id"] in planted:
                planted[removed["id"]]["removed_by"] = step
        for cid, value in report.stats.get("edges", {}).items():
            if cid in planted:
                planted[cid]["edge"] = value
        for cid, value in report.stats.get("met_rate", {}).items():
            if cid in planted:
                planted[cid]["met_rate"] = value

    def record(step: str, r: Rubric, note: str = "") -> None:
        acc, correct, ties = accuracy(r, test, store)
        train_acc, _, _ = accuracy(r, train, store)
        rows.append({"step": step, "criteria": len(r.criteria), "test_accuracy": acc, "correct": correct,
                     "ties": ties, "train_accuracy": train_acc, "note": note})

    current, _ = uniform_weights(rubric)
    current = with_weights(rubric, current)
    record("raw candidates, uniform weights", current)
    report = await adedup(current, threshold=0.85)
    track("dedup", report)
    current = apply_report(current, report)
    record("+ dedup (cosine >= 0.85)", current, ", ".join(r["id"] for r in report.removed))
    better, worse = store.pair_matrices(current, labelled(train))
    report = misalignment_filter(current, better - worse)
    track("misaligned", report)
    current = apply_report(current, report)
    record("+ misalignment filter (train pairs)", current, f"removed {len(report.removed)}: "
           + ", ".join(r["id"] for r in report.removed))
    train_items = [f"{p['id']}/{s}" for p in train for s in "AB"]
    report = nondiscriminative_filter(current, store.matrix(as_store_rubric(current), train_items, soft=False))
    track("nondiscriminative", report)
    current = apply_report(current, report)
    record("+ non-discriminative (train responses)", current, ", ".join(r["id"] for r in report.removed))
    report = select_core(current, epsilon=0.3, max_size=12)
    track("select", report)
    current = apply_report(current, report)
    record("+ MCR selection (<= 12, eps 0.3)", current, f"stopped: {report.stats['stopped']}")
    final = current
    weight_rows = []
    for method in ("uniform", "category", "whitened", "learned"):
        note = ""
        if method == "uniform":
            new, _ = uniform_weights(final)
        elif method == "category":
            new, rep = category_weights(final, "rar")
        elif method == "whitened":
            new, rep = whitened_rubric_weights(final, store.matrix(as_store_rubric(final), train_items))
            note = f"imputed {rep.stats['imputed_cells']} cells"
        else:
            better, worse = store.pair_matrices(as_store_rubric(final), labelled(train))
            new, rep, fit = learned_weights(final, better, worse, l2=1.0, folds=5)
            note = (f"train 5-fold CV accuracy {fit.cv_accuracy:.3f}; sign flips: "
                    f"{len(rep.stats.get('sign_flipped', []))}") if fit else rep.unchanged or ""
        weighted = with_weights(final, new)
        acc, correct, ties = accuracy(weighted, test, store)
        weight_rows.append({"method": method, "test_accuracy": acc, "correct": correct, "ties": ties, "note": note})
    unassessed = sum(1 for cell in store.cells.values() for v in cell.values() if v.verdict not in ("met", "unmet"))
    return {"pairs": len(pairs), "train": len(train), "test": len(test), "per_file": per_file,
            "criteria": len(rubric.criteria), "steps": rows, "weights": weight_rows, "judging": judging,
            "unassessed_cells": unassessed, "planted": planted, "final_criteria": [c.id for c in final.criteria],
            "test_sources": {s: sum(1 for p in test if p["source"] == s) for s in ("llmbar", "judgebench")},
            "np": np.__version__}


def _stderr(acc: float, n: int) -> float:
    return math.sqrt(max(acc * (1 - acc), 1e-12) / max(n, 1))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}" if value < 0 else f"{value:.3f}"


def render(result: dict, command: str, seconds: float) -> str:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    n = result["test"]
    lines = [
        "# Refinement bench (bench/bench_refine.py)", "",
        f"Command: `{command}`  ",
        f"Date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, git {git.strip() or '?'}; total {seconds:.0f} s "
        f"(judging {result['judging']['seconds']:.0f} s for {result['judging']['items']} responses × "
        f"{result['criteria']} criteria: {result['judging']['judge'].get('calls')} model calls, "
        f"{result['judging']['judge'].get('cache_hits')} judge-cache hits).", "",
        f"Data: {result['per_file']} pairs per file from LLMBar and JudgeBench (first after a `random.Random(0)` "
        f"shuffle, prompt and responses cut to {CUT} characters), {result['pairs']} pairs; deterministic split per "
        "file by id hash: "
        f"{result['train']} train / {n} test (test: {result['test_sources']}).  ",
        "Judge: embedded SmolLM2-135M-Instruct, logprob mode (p_met from the Yes/No token mass); "
        f"unassessed cells (error / not applicable): {result['unassessed_cells']}.  ",
        f"Candidate rubric: {result['criteria']} criteria = rubrics/helpfulness.yaml (10 LLM criteria) + "
        "rubrics/instruction-following.yaml (9 programmatic checks for a product-listing task, mostly irrelevant "
        "here) + 3 planted paraphrases, 1 planted misaligned criterion (a flaw with a positive weight), 1 planted "
        "non-discriminative criterion.  ",
        "Score: soft weighted sum Σ w·p_met; winner = higher score; **ties count as wrong**. "
        f"± is one binomial standard error (n = {n}).", "",
        "| step (cumulative) | criteria | test accuracy | ties | train accuracy | removed / note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["steps"]:
        lines.append(f"| {row['step']} | {row['criteria']} | {row['test_accuracy']:.3f} ± "
                     f"{_stderr(row['test_accuracy'], n):.3f} | {row['ties']} | {row['train_accuracy']:.3f} | "
                     f"{row['note']} |")
    lines += ["", "Weights on the final criteria (fit on train where they learn):", "",
              "| weights | test accuracy | ties | note |", "|---|---:|---:|---|"]
    for row in result["weights"]:
        lines.append(f"| {row['method']} | {row['test_accuracy']:.3f} ± {_stderr(row['test_accuracy'], n):.3f} | "
                     f"{row['ties']} | {row['note']} |")
    lines += ["", "Planted criteria (edge μ on train pairs; met rate = share of train responses with p_met > 0.5):", "",
              "| planted criterion | removed by | train edge μ | met rate |", "|---|---|---:|---:|"]
    for cid, info in result["planted"].items():
        lines.append(f"| {cid} | {info['removed_by'] or 'kept'} | {_fmt(info['edge'])} | {_fmt(info['met_rate'])} |")
    lines += ["", f"Final criteria: {', '.join(result['final_criteria'])}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs-per-file", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-refine.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(run(args.pairs_per_file))
    command = "python bench/bench_refine.py" + (f" --pairs-per-file {args.pairs_per_file}"
                                                if args.pairs_per_file != 20 else "")
    text = render(result, command, time.monotonic() - started)
    print(text)
    print(json.dumps(result["judging"]["judge"], default=str), file=sys.stderr)
    if not args.no_write:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
