#!/usr/bin/env python
"""Structured output on the embedded model (issue 13): free-form vs schema-constrained replies, side by side.

    .venv/bin/python bench/bench_structured.py                  # ~12 min on 2 cores; writes bench/RESULTS-structured.md
    .venv/bin/python bench/bench_structured.py --quick          # ~4–5 min: a 3-criterion rubric, one group each
    .venv/bin/python bench/bench_structured.py --only grammar,throughput --no-write

One process, one model: the embedded SmolLM2-135M-Instruct (``hf`` backend, CPU) is loaded once and shared by two
backend objects (a shallow copy): *constrained* is the backend as shipped (``capabilities.json_schema`` on, replies
decoded under the request's JSON schema by the llguidance grammar), *free* the same model with the capability
turned off, so the judge and the generator send the same prompts without a schema (every request of each side is
checked for a schema). Each comparison runs its two sides alternately (free first, then constrained first, …) so
that both see the same load from other processes; the ratios are the result, absolute rates move with the load.

Sections (``--only``):

- ``grammar``: the grammar engine's costs — building its view of the 49k-token vocabulary, compiling each judge and
  generation schema cold (``SchemaGrammars._compile``: bounding + llguidance compile, median of fresh compiles),
  ``deep_copy`` of a compiled matcher (one per generated row), and ``fill_next_token_bitmask`` (one 49k-token mask)
  at every state of a seeded random walk through each grammar.
- ``throughput``: ``HFBackend.complete_batch`` on real per-criterion judge prompts (support-reply × the example
  tickets), with and without the verdict schema, batch 1 and batch 8, alternating: generated tokens/s (from
  ``usage``), and per decoding step (the same batch with ``max_tokens=1`` gives the prompt's cost, taken off), with
  the time spent in ``SchemaLogitsProcessor.__call__`` per step.
- ``verdicts``: the judge (``per_criterion``, ``per_response``, ``holistic``, and ``compare`` = pairwise per
  criterion, both orders) on the shipped examples (``rubrics/support-reply.yaml`` × ``examples/support-tickets.jsonl``
  and ``examples/support-pairs.jsonl``) and a few LLMBar pairs from ``../shared/data/pairs`` with
  ``rubrics/helpfulness.yaml`` (skipped with a message when absent). Per 100 judge calls (questions; re-asks are
  not in the denominator): first replies unreadable, re-asks, calls that end as an error after the re-asks; plus
  error verdicts in the records.
- ``generate``: the five methods on the first groups of their shipped examples (``examples/generate/<method>/``),
  generator and judge both the side's backend (judge in its default logprob mode): per 100 generator questions
  (first asks): replies unusable on first read, re-asks, questions given up; prompts skipped, rubrics produced.

Generation runs greedy (``temperature 0``, so requests batch) with ``--gen-max-tokens`` (256; the CLI's default is
1024) and small method limits, and the judge with ``--judge-max-tokens`` (128; default 512), to fit 2 CPU cores;
``--threads`` (1) sets torch's intra-op threads: two processes each spinning 2 OpenMP threads on 2 shared cores run
10–30× slower than with 1 (measured while writing this bench), so 1 keeps the numbers about the model, not the
contention.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import datetime as dt
import gzip
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("RUBRICKIT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pairs"
SIDES = ("free", "constrained")
SECTIONS = ("grammar", "throughput", "verdicts", "generate")
METHODS = ("contrastive", "per", "decompose", "reference", "tail")
CUT = 600  # characters kept of a shared pair's prompt and responses (CPU budget), as in bench_refine


# --------------------------------------------------------------------------- instrumentation (bench process only)


class Counters:
    """What one side of one comparison did (the patched library functions record into :data:`CURRENT`)."""

    def __init__(self) -> None:
        self.c: Counter[str] = Counter()
        self.judge_reasons: Counter[str] = Counter()
        self.gen_reasons: Counter[str] = Counter()
        self.calls: dict[int, list[Any]] = {}  # id(call) -> [call, reads, failed reads, last failed]
        self.pending: set[tuple[str, str]] = set()

    def __getitem__(self, key: str) -> int:
        return self.c[key]


CURRENT = Counters()


def _clock_into(name: str):
    def wrap(fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                CURRENT.c[name + "_ns"] += int((time.perf_counter() - started) * 1e9)
                CURRENT.c[name + "_n"] += 1
        return timed
    return wrap


def install_patches() -> None:
    """Count reads, re-asks and grammar time by wrapping library functions in this process (no library change)."""
    from rubrickit.backends import _grammar, hf
    from rubrickit.generate import common
    from rubrickit.generate.common import GenerationFailed
    from rubrickit.judge import engine
    from rubrickit.judge.parse import ParseError

    # Judge: every read of a reply, keyed by the call (the same Call object across its re-asks).
    original_read = engine.read_reply

    def read_reply(call, completion):
        entry = CURRENT.calls.setdefault(id(call), [call, 0, 0, False])
        entry[1] += 1
        try:
            answer = original_read(call, completion)
        except ParseError as error:
            entry[2] += 1
            entry[3] = True
            if entry[1] == 1:
                CURRENT.judge_reasons[str(error.reason)[:70]] += 1
            raise
        entry[3] = False
        return answer

    engine.read_reply = read_reply

    original_run_call = engine.Judge.run_call

    async def run_call(self, call, context):
        CURRENT.c["judge_questions"] += 1
        return await original_run_call(self, call, context)

    engine.Judge.run_call = run_call

    # Generator: a question is an aread (or an atext that a lenient reader parsed on its own); reads are counted.
    original_atext, original_aread = common.Generator.atext, common.Generator.aread

    async def atext(self, template, variables, *, salt="", **kwargs):
        CURRENT.c["gen_questions"] += 1
        CURRENT.pending.add((template, salt))
        return await original_atext(self, template, variables, salt=salt, **kwargs)

    async def aread(self, template, variables, read, *, salt="", **kwargs):
        if (template, salt) in CURRENT.pending:
            CURRENT.pending.discard((template, salt))  # the lenient reader's follow-up of the same question
        else:
            CURRENT.c["gen_questions"] += 1
        reads = [0]

        def counted(text):
            reads[0] += 1
            if reads[0] > 1:
                CURRENT.c["gen_reasks"] += 1
            try:
                return read(text)
            except Exception as error:
                if reads[0] == 1:
                    CURRENT.c["gen_first_unusable"] += 1
                    reason = str(error).splitlines()[0][:90] if str(error) else type(error).__name__
                    CURRENT.gen_reasons[reason] += 1
                raise

        try:
            return await original_aread(self, template, variables, counted, salt=salt, **kwargs)
        except GenerationFailed:
            CURRENT.c["gen_given_up"] += 1
            raise

    common.Generator.atext, common.Generator.aread = atext, aread

    # Grammar and decoding time. Every decoding step calls the logits processor once, after the step's forward
    # pass: its entry times, minus the first, time the steps without the prompt's forward pass. A generation
    # without a schema gets a pass-through processor so that both sides are timed the same way.
    masked = _clock_into("mask")(_grammar.SchemaLogitsProcessor.__call__)

    def marked(self, input_ids, scores):
        MARKS.append(time.perf_counter())
        return masked(self, input_ids, scores)

    _grammar.SchemaLogitsProcessor.__call__ = marked
    original_processor = hf.HFBackend._schema_processor

    def schema_processor(self, requests, width):
        return original_processor(self, requests, width) or _StepMarks()

    hf.HFBackend._schema_processor = schema_processor
    original_generate = hf.HFBackend._generate

    def generate(self, encoded, *requests, **kwargs):
        MARKS.clear()
        started = time.perf_counter()
        out = original_generate(self, encoded, *requests, **kwargs)
        CURRENT.c["generate_ns"] += int((time.perf_counter() - started) * 1e9)
        CURRENT.c["generate_steps"] += max((c.usage.output_tokens for c in out), default=0)
        CURRENT.c["generated_tokens"] += sum(c.usage.output_tokens for c in out)
        if len(MARKS) > 1:
            CURRENT.c["step_ns"] += int((MARKS[-1] - MARKS[0]) * 1e9)
            CURRENT.c["step_n"] += len(MARKS) - 1
        return out

    hf.HFBackend._generate = generate


MARKS: list[float] = []


class _StepMarks:
    """A pass-through logits processor that marks each decoding step (for generations without a schema)."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        MARKS.append(time.perf_counter())
        return scores


def side_backends(threads: int) -> dict[str, Any]:
    """The embedded backend (constrained, as shipped) and a shallow copy of it with json_schema off (free)."""
    import torch

    from rubrickit.backends.registry import get_backend

    torch.set_num_threads(threads)
    constrained = get_backend("embedded")
    constrained.load()
    if not constrained.capabilities.json_schema:
        raise SystemExit("the embedded backend has no json_schema capability (is llguidance installed?)")
    free = copy.copy(constrained)  # shares the model, tokenizer, lock and grammar cache
    free.capabilities = dataclasses.replace(constrained.capabilities, json_schema=False)
    judge = copy.copy(constrained)  # the judge inside generation, constrained on both sides
    backends = {"free": free, "constrained": constrained, "judge": judge}
    for side, backend in backends.items():
        _watch_requests(backend, side)
    return backends


def _watch_requests(backend: Any, side: str) -> None:
    """Count the requests each side sends with a schema (the free side must send none)."""
    batch, one = backend.complete_batch, backend.complete

    async def complete_batch(requests):
        CURRENT.c[f"{side}_requests"] += len(requests)
        CURRENT.c[f"{side}_with_schema"] += sum(r.json_schema is not None for r in requests)
        return await batch(requests)

    async def complete(request):
        CURRENT.c[f"{side}_requests"] += 1
        CURRENT.c[f"{side}_with_schema"] += request.json_schema is not None
        return await one(request)

    backend.complete_batch, backend.complete = complete_batch, complete


def run_side(fn, *args) -> tuple[Any, Counters, float]:
    """Run ``fn(*args)`` (a coroutine function) with fresh counters; its result, the counters and wall seconds."""
    global CURRENT
    CURRENT = Counters()
    started = time.perf_counter()
    result = asyncio.run(fn(*args))
    return result, CURRENT, time.perf_counter() - started


def order(index: int) -> tuple[str, str]:
    """Alternate which side goes first."""
    return SIDES if index % 2 == 0 else SIDES[::-1]


# --------------------------------------------------------------------------- data


def shared_pairs(count: int) -> list[dict]:
    """The first ``count`` LLMBar pairs after a ``random.Random(0)`` shuffle, cut to CUT characters ([] if absent)."""
    path = SHARED / "llmbar.jsonl.gz"
    if count <= 0 or not path.is_file():
        return []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [r for r in rows if r.get("label") in ("A", "B") and isinstance(r.get("prompt"), str)]
    random.Random(0).shuffle(rows)
    return [{"id": r["id"], "prompt": r["prompt"][:CUT], "response_a": r["response_a"][:CUT],
             "response_b": r["response_b"][:CUT], "label": r["label"]} for r in rows[:count]]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- grammar engine costs


def grammar_section(backend: Any, reps: int) -> dict:
    import llguidance
    import llguidance.hf
    import llguidance.numpy
    import numpy as np

    from rubrickit.backends._grammar import SchemaGrammars
    from rubrickit.generate import contrastive
    from rubrickit.judge import parse
    from rubrickit.judge import reply_schemas as schemas
    from rubrickit.rubric import load_rubric

    tokenizer, eos = backend._tokenizer, backend._eos_ids
    started = time.perf_counter()
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, eos_token=eos)
    tokenizer_s = time.perf_counter() - started
    support = load_rubric(ROOT / "rubrics" / "support-reply.yaml")
    llm = [c for c in support.criteria if c.check is None]
    tail_ids = [c.id for c in load_rubric(ROOT / "examples" / "generate" / "tail" / "start.yaml").criteria]
    cases = [
        ("judge: verdict (per_criterion)", parse.verdict_schema(), 128),
        ("judge: level 1–5 or n/a (scale)", parse.level_schema(1, 5, allow_not_applicable=True), 128),
        ("judge: rating 1–10 (holistic)", parse.rating_schema(), 128),
        ("judge: winner A/B/tie (pairwise)", parse.winner_schema(), 128),
        (f"judge: per_response, {len(llm)} criteria (support-reply)",
         parse.per_response_schema({c.id: (min(c.scale), max(c.scale)) if c.scale else None for c in llm},
                                   conditional=[c.id for c in llm if c.applies_if]), 512),
        ("gen: contrastive rules", schemas.contrastive_schema(contrastive.MAX_RULES, contrastive.MAX_PRINCIPLES), 1024),
        ("gen: per criteria (5)", schemas.per_schema(5), 1024),
        ("gen: decompose rubrics (8)", schemas.rubrics_schema(8), 1024),
        ("gen: overlap check (refine, decompose)", schemas.overlap_schema(), 256),
        ("gen: reference checklist (7–20)", schemas.reference_schema(7, 20), 1024),
        ("gen: tail propose", schemas.tail_propose_schema(), 1024),
        ("gen: tail revise", schemas.tail_revise_schema(tail_ids), 1024),
        ("gen: themes", schemas.themes_schema([f"c{i}" for i in range(12)], 5, 5), 1024),
    ]
    rows, fills_all = [], []
    rng = random.Random(0)
    vocab = int(ll_tokenizer.vocab_size)
    for name, schema, budget in cases:
        fitted = schemas.fit_schema(schema, budget) if name.startswith("gen") else schema
        compile_ms = []
        for _ in range(reps):
            grammars = SchemaGrammars(tokenizer, eos)
            grammars._ll_tokenizer = ll_tokenizer  # the vocabulary view is built once per backend, timed above
            started = time.perf_counter()
            matcher = grammars._compile(fitted, budget)
            compile_ms.append((time.perf_counter() - started) * 1e3)
        copies = []
        for _ in range(50):
            started = time.perf_counter()
            walker = matcher.deep_copy()
            copies.append((time.perf_counter() - started) * 1e6)
        # A seeded random walk through the grammar: time one 49k-token mask at every state until it accepts.
        mask = llguidance.numpy.allocate_token_bitmask(1, vocab)
        fills, steps = [], 0
        while steps < budget:
            started = time.perf_counter()
            llguidance.numpy.fill_next_token_bitmask(walker, mask, 0)
            fills.append((time.perf_counter() - started) * 1e6)
            allowed = np.flatnonzero(np.unpackbits(mask[0].view(np.uint8), bitorder="little")[:vocab])
            if walker.is_accepting() or not len(allowed):
                break
            # Prefer closing the current string now and then, so walks reach the later keys of the schema.
            choice = int(allowed[rng.randrange(len(allowed))])
            if len(allowed) > 1000 and rng.random() < 0.15:
                quote = [t for t in allowed[:2000] if tokenizer.decode([int(t)]).startswith('"')]
                choice = int(quote[0]) if quote else choice
            if not walker.consume_token(choice):
                break
            steps += 1
        fills_all += fills
        rows.append({"schema": name, "max_tokens": budget, "compile_ms": statistics.median(compile_ms),
                     "compile_ms_max": max(compile_ms), "copy_us": statistics.median(copies),
                     "fill_us_median": statistics.median(fills), "fill_us_p90": _pct(fills, 90),
                     "fill_us_max": max(fills), "walk_steps": len(fills)})
        print(f"  grammar: {name}: compile {rows[-1]['compile_ms']:.2f} ms, copy {rows[-1]['copy_us']:.1f} µs, "
              f"mask {rows[-1]['fill_us_median']:.0f} µs median over {len(fills)} states", flush=True)
    return {"tokenizer_s": tokenizer_s, "vocab": vocab, "rows": rows,
            "fill_us_median": statistics.median(fills_all), "fill_us_p90": _pct(fills_all, 90),
            "fill_us_max": max(fills_all), "fill_states": len(fills_all),
            "llguidance": _version("llguidance")}


def _pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --------------------------------------------------------------------------- throughput


def judge_requests(max_tokens: int) -> list[Any]:
    """The real per_criterion requests of support-reply × the example tickets (with the verdict/level schema)."""
    from rubrickit.backends.base import Capabilities
    from rubrickit.data.items import coerce_items
    from rubrickit.judge.prompts import PromptLibrary
    from rubrickit.judge.tasks import TaskBuilder
    from rubrickit.rubric import load_rubric

    builder = TaskBuilder(PromptLibrary(None), Capabilities(json_schema=True), mode="per_criterion",
                          max_tokens=max_tokens)
    rubric = load_rubric(ROOT / "rubrics" / "support-reply.yaml")
    items = coerce_items(read_jsonl(ROOT / "examples" / "support-tickets.jsonl"))
    requests = []
    for item in items:
        for task in builder.item_tasks(rubric, item):
            requests.extend(call.request for call in task.calls)
    return requests


def throughput_section(backends: dict[str, Any], rounds: int, max_tokens: int, singles: int) -> dict:
    requests = judge_requests(max_tokens)
    shapes = {1: [[r] for r in requests[:singles]], 8: [requests[:8]]}
    totals: dict[tuple[str, int], Counter] = {}
    texts: dict[str, list[str]] = {}

    async def send(backend, batch, schema: bool):
        batch = [r.model_copy(update={"json_schema": r.json_schema if schema else None}) for r in batch]
        return await backend.complete_batch(batch)

    for round_ in range(rounds):
        for size, batches in shapes.items():
            for number, batch in enumerate(batches):
                for side in order(round_ + number + (size == 8)):
                    outs, counters, wall = run_side(send, backends[side], batch, side == "constrained")
                    bad = [o for o in outs if isinstance(o, BaseException)]
                    if bad:
                        raise RuntimeError(f"throughput {side}: {bad[0]}")
                    total = totals.setdefault((side, size), Counter())
                    total["wall_ns"] += int(wall * 1e9)
                    total["step_ns"] += counters["step_ns"]
                    total["step_n"] += counters["step_n"]
                    total["tokens"] += sum(o.usage.output_tokens for o in outs)
                    total["steps"] += counters["generate_steps"]
                    total["mask_ns"] += counters["mask_ns"]
                    total["mask_n"] += counters["mask_n"]
                    total["calls"] += 1
                    if round_ == 0 and size == 8:
                        texts[side] = [o.text for o in outs]
        print(f"  throughput: round {round_ + 1}/{rounds} done", flush=True)
    rows = []
    for (side, size), t in sorted(totals.items(), key=lambda kv: (kv[0][1], SIDES.index(kv[0][0]))):
        wall = t["wall_ns"] / 1e9
        rows.append({"side": side, "batch": size, "calls": t["calls"], "tokens": t["tokens"], "steps": t["steps"],
                     "wall_s": wall, "tokens_per_s": t["tokens"] / wall,
                     "step_ms": t["step_ns"] / max(1, t["step_n"]) / 1e6,
                     "mask_us_per_step": t["mask_ns"] / max(1, t["mask_n"]) / 1e3,
                     "mask_share": t["mask_ns"] / 1e9 / wall})
    return {"rows": rows, "rounds": rounds, "max_tokens": max_tokens, "singles": singles,
            "sample": {side: (texts.get(side) or [""])[0][:160] for side in SIDES}}


# --------------------------------------------------------------------------- verdicts


MODES = ("per_criterion", "per_response", "holistic", "compare")
QUICK_CRITERIA = ("answers-question", "blames-customer", "tone")


def verdict_workloads(llmbar: list[dict], quick: bool) -> dict[str, list[tuple[Any, list[dict]]]]:
    """Per mode, (rubric, items or pairs) to judge: the shipped examples, and the LLMBar pairs' responses under
    helpfulness in the one-call-per-response modes (per_criterion and compare would cost 10–20 calls per pair)."""
    from rubrickit.rubric import Rubric, load_rubric

    support = load_rubric(ROOT / "rubrics" / "support-reply.yaml")
    helpful = load_rubric(ROOT / "rubrics" / "helpfulness.yaml")
    tickets = read_jsonl(ROOT / "examples" / "support-tickets.jsonl")
    pairs = read_jsonl(ROOT / "examples" / "support-pairs.jsonl")[:1]
    shared = [(helpful, [{"id": f"{p['id']}/{s}", "prompt": p["prompt"], "response": p[f"response_{s.lower()}"]}
                         for p in llmbar for s in "AB"])] if llmbar else []
    if quick:  # three criteria of support-reply: a quality, a pitfall and the 1–5 scale
        small = Rubric.model_validate({**support.model_dump(exclude_none=True), "id": "support-reply-3", "criteria": [
            c.model_dump(exclude_none=True) for c in support.criteria if c.id in QUICK_CRITERIA]})
        pair_rubric = Rubric.model_validate({**small.model_dump(exclude_none=True), "id": "support-reply-2",
                                             "criteria": small.model_dump(exclude_none=True)["criteria"][:2]})
        return {"per_criterion": [(small, tickets[:1])], "per_response": [(small, tickets[:1])],
                "holistic": [(support, tickets[:1])], "compare": [(pair_rubric, pairs)]}
    return {"per_criterion": [(support, tickets[:1])], "per_response": [(support, tickets[:1])] + shared,
            "holistic": [(support, tickets)] + shared, "compare": [(support, pairs)]}


async def judge_run(backend: Any, mode: str, workload: list, max_tokens: int, cache: Path) -> dict:
    from rubrickit.judge.engine import Judge
    from rubrickit.rubric.aggregation import HOLISTIC_ID

    judge_mode = "per_criterion" if mode == "compare" else mode
    judge = Judge(backend, mode=judge_mode, cache_dir=cache, concurrency=8, max_tokens=max_tokens, progress=False)
    error_verdicts = verdicts = records = 0
    try:
        for rubric, rows in workload:
            if mode == "compare":
                async for record in judge.acompare_many(rubric, rows):
                    records += 1
                    error_verdicts += record.errors  # failed pair judgments, each order counts
            else:
                llm = {c.id for c in rubric.criteria if c.check is None} | {HOLISTIC_ID}
                async for record in judge.ascore_many(rubric, rows):
                    records += 1
                    for verdict in record.verdicts:
                        if verdict.criterion_id in llm:
                            verdicts += 1
                            error_verdicts += verdict.verdict == "error"
        summary = judge.summary()
    finally:
        await judge.aclose()
    return {"records": records, "verdicts": verdicts, "error_verdicts": error_verdicts, "summary": summary}


def verdict_section(backends: dict[str, Any], llmbar: list[dict], quick: bool, max_tokens: int,
                    per_response_tokens: int, tmp: Path) -> dict:
    workloads = verdict_workloads(llmbar, quick)
    rows = []
    for index, mode in enumerate(MODES):
        budget = per_response_tokens if mode == "per_response" else max_tokens
        for side in order(index):
            result, counters, wall = run_side(judge_run, backends[side], mode, workloads[mode], budget,
                                              tmp / f"verdicts-{mode}-{side}")
            entries = list(counters.calls.values())
            questions = counters["judge_questions"]
            row = {
                "mode": mode, "side": side, "questions": questions, "max_tokens": budget,
                # A call reads again only after a failed read, so a call with any failed read failed its first.
                "first_unreadable": sum(1 for e in entries if e[2]),
                "reasks": sum(e[1] - 1 for e in entries),
                "final_parse_errors": sum(1 for e in entries if e[3]),
                "backend_errors": result["summary"]["errors"] - result["summary"].get("errors_parse", 0),
                "model_calls": result["summary"]["calls"], "output_tokens": result["summary"]["output_tokens"],
                "verdicts": result["verdicts"] if mode != "compare" else questions,
                "error_verdicts": result["error_verdicts"],
                "records": result["records"], "wall_s": wall,
                "with_schema": counters[f"{side}_with_schema"], "requests": counters[f"{side}_requests"],
                "mask_share": counters["mask_ns"] / max(1, counters["generate_ns"]),
                "reasons": counters.judge_reasons.most_common(2),
                "workload": [f"{rubric.id} × {len(items)}" for rubric, items in workloads[mode]],
            }
            rows.append(row)
            print(f"  verdicts: {mode:13s} {side:11s} {questions:3d} calls, first unreadable "
                  f"{row['first_unreadable']}, re-asks {row['reasks']}, errors {row['final_parse_errors']}, "
                  f"error verdicts {row['error_verdicts']}/{row['verdicts']}, {wall:.0f} s", flush=True)
    return {"rows": rows, "max_tokens": max_tokens, "per_response_tokens": per_response_tokens,
            "llmbar_pairs": [p["id"] for p in llmbar], "quick": quick}


# --------------------------------------------------------------------------- generation


def method_plan(quick: bool) -> dict[str, dict]:
    tail_start = "examples/generate/tail/start.yaml"
    groups = 1 if quick else 2
    return {
        "contrastive": {"data": "contrastive/pairs.jsonl", "limit": groups, "options": {"max_tries": 1}},
        "per": {"data": "per/pairs.jsonl", "limit": 1, "options": {"max_rounds": 1 if quick else 2}},
        "decompose": {"data": "decompose/pool.jsonl", "limit": groups,
                      "options": {"max_depth": 1, "max_rejections": 4}},
        # 512, not the run's budget: at 256 the grammar leaves each of the 7–8 items' text 9 characters.
        "reference": {"data": "reference/prompts.jsonl", "limit": groups, "options": {"max_tries": 1},
                      "max_tokens": 512},
        "tail": {"data": "tail/pool.jsonl", "limit": 1, "options": {"rubric": tail_start, "rounds": 1}},
    }


async def generate_run(backend: Any, judge_backend: Any, method: str, plan: dict, max_tokens: int,
                       judge_tokens: int, temperature: float, cache: Path) -> dict:
    from rubrickit.generate import agenerate, load_groups
    from rubrickit.generate.common import write_result
    from rubrickit.judge.engine import Judge

    groups = load_groups(ROOT / "examples" / "generate" / plan["data"], limit=plan["limit"])
    options = {k: str(ROOT / v) if k == "rubric" else v for k, v in plan["options"].items()}
    generator = Judge(backend, cache_dir=cache / "gen", concurrency=8, progress=False)
    judge = Judge(judge_backend, cache_dir=cache / "judge", concurrency=8, max_tokens=judge_tokens,
                  progress=False)  # its default mode: logprob
    try:
        result = await agenerate(method, groups, generator=generator, judge=judge, temperature=temperature,
                                 max_tokens=plan.get("max_tokens", max_tokens), reasks=1, **options)
        gen, jud = generator.summary(), judge.summary()
    finally:
        await generator.aclose()
        await judge.aclose()
    written = 0
    if result.rubrics:
        suffix = ".yaml" if result.general else ".rubrics.jsonl"
        write_result(result, cache / f"out{suffix}", force=True)  # validates and re-reads what it wrote
        written = len(result.rubrics)
    return {"groups": len(groups), "rubrics": written, "skipped": len(result.skipped),
            "skip_reasons": Counter(s.get("reason", "?")[:80] for s in result.skipped).most_common(2),
            "gen_calls": gen["calls"], "gen_errors": gen["errors"], "judge_calls": jud["calls"],
            "judge_errors": jud["errors"], "judge_mode": judge.options.mode, "stats": result.stats}


def generate_section(backends: dict[str, Any], quick: bool, max_tokens: int, judge_tokens: int,
                     temperature: float, tmp: Path, methods: list[str]) -> dict:
    rows = []
    plans = method_plan(quick)
    for index, method in enumerate(methods):
        for side in order(index):
            result, counters, wall = run_side(generate_run, backends[side], backends["judge"], method,
                                              plans[method], max_tokens, judge_tokens, temperature,
                                              tmp / f"gen-{method}-{side}")
            row = {"method": method, "side": side, "questions": counters["gen_questions"],
                   "first_unusable": counters["gen_first_unusable"], "reasks": counters["gen_reasks"],
                   "given_up": counters["gen_given_up"], "wall_s": wall,
                   "with_schema": counters[f"{side}_with_schema"], "requests": counters[f"{side}_requests"],
                   "mask_share": counters["mask_ns"] / max(1, counters["generate_ns"]),
                   "reasons": counters.gen_reasons.most_common(2), **result}
            rows.append(row)
            print(f"  generate: {method:11s} {side:11s} {row['questions']:3d} questions, first unusable "
                  f"{row['first_unusable']}, re-asks {row['reasks']}, given up {row['given_up']}, "
                  f"skipped {row['skipped']}/{row['groups']}, rubrics {row['rubrics']}, {wall:.0f} s", flush=True)
    return {"rows": rows, "max_tokens": max_tokens, "judge_tokens": judge_tokens, "temperature": temperature,
            "plans": {m: plans[m] for m in methods}}


# --------------------------------------------------------------------------- report


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _per100(count: int, total: int) -> str:
    return "–" if not total else f"{100 * count / total:.0f}"


def _ratio(a: float, b: float) -> str:
    return "–" if not b else f"{a / b:.2f}"


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(), "torch": _version("torch"),
            "transformers": _version("transformers"), "llguidance": _version("llguidance"),
            "git": (git.strip() or "?") + (" + uncommitted changes" if dirty else "")}


def render(results: dict, command: str, seconds: float, start: dict, end_load: str, threads: int) -> str:
    lines = [
        "# Structured output on the embedded model: free-form vs schema-constrained (bench/bench_structured.py)",
        "",
        f"Command: `{command}`  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {start['cores']} cores "
        f"({start['cpu']}), shared with other jobs, load average {start['load']} at the start and {end_load} at the "
        f"end; torch threads {threads}; Python {start['python']}, torch {start['torch']}, transformers "
        f"{start['transformers']}, llguidance {start['llguidance']}; git {start['git']}; total {seconds:.0f} s.  ",
        "Model: embedded SmolLM2-135M-Instruct on CPU (float32), one process. *free*: the same backend with "
        "`capabilities.json_schema` off (no request carries a schema, checked per request: last column); "
        "*constrained*: as shipped (decoded under the request's JSON schema with llguidance). The two sides of every "
        "comparison run alternately in one process.",
        "",
    ]
    if "grammar" in results:
        lines += _render_grammar(results["grammar"])
    if "throughput" in results:
        lines += _render_throughput(results["throughput"])
    if "verdicts" in results:
        lines += _render_verdicts(results["verdicts"])
    if "generate" in results:
        lines += _render_generate(results["generate"])
    return "\n".join(lines)


def _render_grammar(g: dict) -> list[str]:
    lines = [
        "## Grammar engine (llguidance) costs", "",
        f"Vocabulary view (`llguidance.hf.from_tokenizer`, {g['vocab']:,} tokens): {g['tokenizer_s'] * 1e3:.0f} ms, "
        "once per backend. *compile* = `SchemaGrammars._compile` cold (bounding the strings to the budget + "
        "llguidance compile), median and max of fresh compiles; *deep_copy* of the compiled matcher (one per "
        "generated row); *mask* = one `fill_next_token_bitmask` over the whole vocabulary, timed at every state of "
        "a seeded random walk through the grammar until it accepts. Generation schemas are fitted to the budget "
        "first (`fit_schema`), as the generator sends them.", "",
        "| schema | max_tokens | compile ms (median / max) | deep_copy µs | mask µs median / p90 / max | states |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in g["rows"]:
        lines.append(f"| {r['schema']} | {r['max_tokens']} | {r['compile_ms']:.2f} / {r['compile_ms_max']:.2f} | "
                     f"{r['copy_us']:.1f} | {r['fill_us_median']:.0f} / {r['fill_us_p90']:.0f} / "
                     f"{r['fill_us_max']:.0f} | {r['walk_steps']} |")
    lines += ["", f"All states: mask median **{g['fill_us_median']:.0f} µs**, p90 {g['fill_us_p90']:.0f} µs, "
              f"max {g['fill_us_max']:.0f} µs over {g['fill_states']} states.", ""]
    return lines


def _render_throughput(t: dict) -> list[str]:
    rows = {(r["side"], r["batch"]): r for r in t["rows"]}
    lines = [
        "## Throughput: `HFBackend.complete_batch`, free vs constrained", "",
        f"Real per_criterion judge prompts (support-reply × the example tickets, 500–700 tokens each), `max_tokens` "
        f"{t['max_tokens']}, greedy; batch 1 = the first {t['singles']} prompt(s) one by one, batch 8 = the first 8 "
        f"in one call; {t['rounds']} alternating round(s). *tokens/s* = generated tokens (from `usage`) ÷ wall time "
        "of the call, prompt included. *ms per step*: one decoding step after the prompt (forward pass of the "
        "batch's new tokens, the logits processor, the choice of the next token), timed between the logits "
        "processor's calls (a pass-through processor marks the steps of the free side). *mask* = time in "
        "`SchemaLogitsProcessor.__call__` (advance each row's matcher, fill "
        "the masks, unpack and apply them) per call (one per decoding step).", "",
        "| batch | side | calls | tokens | tokens/s | ms per step | mask µs per step | mask share of a step |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in t["rows"]:
        share = r["mask_us_per_step"] / 1e3 / r["step_ms"] if r["step_ms"] else 0.0
        lines.append(f"| {r['batch']} | {r['side']} | {r['calls']} | {r['tokens']} | {r['tokens_per_s']:.1f} | "
                     f"{r['step_ms']:.1f} | {r['mask_us_per_step']:.0f} | {100 * share:.1f}% |")
    lines += [""]
    for size in (1, 8):
        f, c = rows.get(("free", size)), rows.get(("constrained", size))
        if f and c:
            tps = _ratio(c["tokens_per_s"], f["tokens_per_s"])
            step = _ratio(c["step_ms"], f["step_ms"])
            lines.append(f"- batch {size}: tokens/s constrained ÷ free **{tps}**; ms per step constrained ÷ free "
                         f"**{step}**; mean reply {c['tokens'] / c['calls'] / size:.0f} vs "
                         f"{f['tokens'] / f['calls'] / size:.0f} tokens.")
    lines += ["", f"First reply of the batch, free: `{t['sample']['free']!r}`; constrained: "
              f"`{t['sample']['constrained']!r}`.", ""]
    return lines


def _render_verdicts(v: dict) -> list[str]:
    shared = (f"{len(v['llmbar_pairs'])} LLMBar pair(s) ({', '.join(v['llmbar_pairs'])}; cut to {CUT} characters), "
              "both responses under rubrics/helpfulness.yaml in per_response and holistic" if v["llmbar_pairs"]
              else "no shared pairs" + ("" if v["quick"] else " (../shared/data/pairs not found)"))
    lines = [
        "## Verdicts: the judge, free vs constrained", "",
        "Workload (column *workload*: rubric × responses or pairs): rubrics/support-reply.yaml (7 LLM criteria, one "
        "a 1–5 scale; with `--quick` support-reply-3 = answers-question, blames-customer and tone, and for compare "
        "support-reply-2 = the first two) on the first tickets of examples/support-tickets.jsonl; compare on pair-1 "
        "of examples/support-pairs.jsonl (per criterion, both orders, a direct judgment in both orders on a tie); "
        f"plus {shared}; `max_tokens` {v['max_tokens']} (per_response {v['per_response_tokens']}: a 7–10 criterion "
        "reply's structure alone takes 150–220 tokens), greedy, 2 re-asks (the default), concurrency 8, a fresh "
        "cache folder per run. A "
        "*call* is one judge question (a criterion, a response, a pair order, a tie-break); rates are per 100 calls. "
        "*first unreadable*: the first reply could not be read (the engine's `ParseError`); *re-asks*: replies asked "
        "again; *failed*: calls that end as an error (unreadable after the re-asks, or a backend error). *error "
        "verdicts*: LLM verdicts that are `error` (compare: failed pair judgments, each order counts).", "",
        "| mode | side | workload | calls | first unreadable /100 | re-asks /100 | failed /100 | error verdicts | "
        "model calls | tokens out | s | schema on requests |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in v["rows"]:
        q = r["questions"]
        lines.append(f"| {r['mode']} | {r['side']} | {', '.join(r['workload'])} | {q} | "
                     f"{_per100(r['first_unreadable'], q)} | {_per100(r['reasks'], q)} | "
                     f"{_per100(r['final_parse_errors'] + r['backend_errors'], q)} | {r['error_verdicts']} / "
                     f"{r['verdicts']} | {r['model_calls']} | {r['output_tokens']} | {r['wall_s']:.0f} | "
                     f"{r['with_schema']} / {r['requests']} |")
    lines += [""] + _totals(v["rows"], "first_unreadable", "reasks", "failed", "calls") + [""]
    reasons = Counter()
    for r in v["rows"]:
        reasons.update(dict(r["reasons"]))
    if reasons:
        lines += ["Most frequent reasons a first reply was unreadable: "
                  + "; ".join(f"`{x}…` ×{n}" for x, n in reasons.most_common(5)) + ".", ""]
    return lines


def _totals(rows: list[dict], first: str, reasks: str, failed: str, unit: str) -> list[str]:
    out = []
    for side in SIDES:
        mine = [r for r in rows if r["side"] == side]
        q = sum(r["questions"] for r in mine)
        fails = sum(r.get("final_parse_errors", 0) + r.get("backend_errors", 0) if failed == "failed"
                    else r[failed] for r in mine)
        wall = sum(r["wall_s"] for r in mine)
        what = "unreadable" if unit == "calls" else "unusable"
        out.append(f"- all {side}: {q} {unit}, first {what} **{_per100(sum(r[first] for r in mine), q)}**"
                   f" per 100, re-asks **{_per100(sum(r[reasks] for r in mine), q)}** per 100, "
                   f"{'failed' if unit == 'calls' else 'given up'} "
                   f"**{_per100(fails, q)}** per 100; {wall:.0f} s.")
    return out


def _render_generate(gsec: dict) -> list[str]:
    lines = [
        "## Generation: the five methods, free vs constrained", "",
        "Generator: the side's backend. Judge: the constrained backend on both sides (so that the methods reach "
        "their generator questions: a free judge fails tail's per_response scoring before any is asked), in its "
        "default mode, logprob, except where a method asks it for JSON (tail's per_response scoring, decompose's "
        "overlap checks, which are generation prompts sent to the judge and counted as questions here). Generator "
        f"`max_tokens` {gsec['max_tokens']} (the CLI's default is 1024), judge `max_tokens` {gsec['judge_tokens']}, "
        f"temperature {gsec['temperature']} (seeded per question), 1 re-ask (the default), a fresh cache folder per "
        "run. A *question* is one reply a method reads (a proposal, a revision, a checklist…; re-asks are not "
        "questions); rates are per 100 questions. *given up*: still unusable after the re-ask. Data and options: "
        + "; ".join(f"{m}: examples/generate/{p['data']}, first {p['limit']} group(s), {json.dumps(p['options'])}"
                    + (f", generator `max_tokens` {p['max_tokens']}" if "max_tokens" in p else "")
                    for m, p in gsec["plans"].items()) + ".", "",
        "| method | side | questions | first unusable /100 | re-asks /100 | given up /100 | generator calls | "
        "prompts skipped | rubrics | judge calls (errors) | s | schema on requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in gsec["rows"]:
        q = r["questions"]
        lines.append(f"| {r['method']} | {r['side']} | {q} | {_per100(r['first_unusable'], q)} | "
                     f"{_per100(r['reasks'], q)} | {_per100(r['given_up'], q)} | {r['gen_calls']} | "
                     f"{r['skipped']} / {r['groups']} | {r['rubrics']} | {r['judge_calls']} ({r['judge_errors']}) | "
                     f"{r['wall_s']:.0f} | {r['with_schema']} / {r['requests']} |")
    lines += [""] + _totals(gsec["rows"], "first_unusable", "reasks", "given_up", "questions")
    lines += ["", "Why first replies were unusable, and why prompts were skipped:", ""]
    for r in gsec["rows"]:
        first = "; ".join(f"`{x}` ×{n}" for x, n in r["reasons"]) or "none"
        skips = "; ".join(f"`{x}` ×{n}" for x, n in r["skip_reasons"]) or "none"
        lines.append(f"- {r['method']}, {r['side']}: first unusable: {first}; skipped: {skips}")
    lines += [""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer items and rounds (~4–5 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--methods", default=",".join(METHODS), help="generation methods to run")
    parser.add_argument("--shared-pairs", type=int, default=None, help="LLMBar pairs in the verdict workload "
                        "(default 2; 0 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds (default 2; 1 with --quick)")
    parser.add_argument("--judge-max-tokens", type=int, default=128)
    parser.add_argument("--per-response-max-tokens", type=int, default=None,
                        help="per_response replies (384: 7–10 criteria need room for their structure; 192 with "
                        "--quick, 3 criteria)")
    parser.add_argument("--gen-max-tokens", type=int, default=None, help="generator budget (256; 160 with --quick)")
    parser.add_argument("--gen-judge-max-tokens", type=int, default=192,
                        help="budget of the judge inside generation (tail's per_response scoring)")
    parser.add_argument("--temperature", type=float, default=0.7,
                        help="generator temperature (the CLI's default 0.7; sampled replies are seeded per question)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-structured.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS):
        parser.error(f"unknown method(s) {sorted(set(methods) - set(METHODS))}; known: {', '.join(METHODS)}")
    shared_count = args.shared_pairs if args.shared_pairs is not None else (0 if args.quick else 1)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)

    start = machine()
    started = time.perf_counter()
    install_patches()
    backends = side_backends(args.threads)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rubrickit-bench-structured-") as folder:
        tmp = Path(folder)
        if "grammar" in only:
            print("# grammar engine costs", flush=True)
            results["grammar"] = grammar_section(backends["constrained"], 3 if args.quick else 5)
        if "throughput" in only:
            print("# throughput", flush=True)
            results["throughput"] = throughput_section(backends, rounds, 64, 1 if args.quick else 2)
        if "verdicts" in only:
            llmbar = shared_pairs(shared_count)
            if shared_count and not llmbar:
                print(f"# verdicts: {SHARED} not found: the shared LLMBar pairs are skipped", flush=True)
            print("# verdicts", flush=True)
            results["verdicts"] = verdict_section(backends, llmbar, args.quick, args.judge_max_tokens,
                                                  args.per_response_max_tokens or (192 if args.quick else 384), tmp)
        if "generate" in only:
            print("# generation", flush=True)
            gen_tokens = args.gen_max_tokens or (160 if args.quick else 256)
            results["generate"] = generate_section(backends, args.quick, gen_tokens, args.gen_judge_max_tokens,
                                                   args.temperature, tmp, methods)
    seconds = time.perf_counter() - started
    command = "python bench/bench_structured.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    end_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = render(results, command.strip(), seconds, start, end_load, args.threads)
    print(text)
    if not args.no_write:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
