"""``per``: Auto-Rubric's propose-evaluate-revise generation, coding-rate core set and Theme-Tips (DESIGN §7).

After "Auto-Rubric: Learning to Extract Generalizable Criteria for Reward Modeling" (Xie et al., 2025). Three stages
turn labelled preference pairs into ONE general rubric:

1. **Query-specific (propose-evaluate-revise)**, per labelled pair (better, worse): the generator *proposes* at most
   ``max_criteria`` criteria explaining the preference (``prompts/per_propose.j2``); the judge *evaluates* them by
   judging the pair with them (:func:`~rubrickit.generate.common.judge_pair`: per-criterion A-vs-B in both orders,
   or pointwise rewards); if the judge does not prefer the gold winner, the generator *revises* the criteria with
   that feedback — the judge's rationales and which response it preferred, or that it tied or failed
   (``prompts/per_revise.j2``) — and the pair is judged again, up to ``max_rounds`` rounds. Ties, judge failures and
   unreadable generator replies all count as wrong rounds; a pair never solved is discarded with the reason of its
   last round. Each solved pair yields a per-pair rubric (``scope: prompt``, ``prompt_id`` = the pair id).
2. **Query-agnostic (coding-rate core set)**: the solved pairs' criteria are taken in batches of ``batch_size``
   solved pairs; each batch's new criteria are embedded (:func:`~rubrickit.backends.embedding.embed_texts`) and the
   core set is extended greedily by the exact coding rate R(Z) = ½·logdet(I + d/(n·ε²)·ZᵀZ)
   (:func:`~rubrickit.refine.selection.greedy_coding_rate`, the current core kept first, ``max_core`` a cap). When a
   batch that had solved pairs adds less than ``min_gain`` in total, the gain has stalled and no further batch is
   taken: the query-specific stage runs lazily, batch by batch, so pairs after the stall cost nothing (they are
   counted as ``unprocessed``). Texts repeated verbatim (case and spacing aside) are embedded once.
3. **Theme-Tips**: :func:`~rubrickit.refine.themes.structure_themes` groups the core set into at most ``themes``
   themes with at most ``tips`` tips each; each theme is one criterion whose ``source_ids`` name the core criteria it
   covers. When structuring fails (or ``themes=0``), the flat core set is the rubric and the reason is recorded.

Provenance ``stats`` holds: pairs, solved, discarded (by reason), unprocessed, the rounds histogram of solved pairs
and their mean, every round's outcome, generation failures by reason, the batches (gains, core growth, why they
stopped), the core set (ids, texts, source pairs, coding rate, gains) and the themes (or why there are none).
``result.extra["per_pair_rubrics"]`` holds the solved pairs' rubrics and ``result.extra["pairs"]`` one record per
processed pair (rounds, outcome, reason).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rubrickit.data.preferences import PromptGroup
from rubrickit.judge.reply_schemas import per_schema

from ..errors import RubrickitError
from ..judge.prompts import neutralize, pair_material_data
from ..refine.themes import ajson_lenient, structure_themes
from ..rubric import Criterion, Rubric
from .common import (
    GenContext,
    GenerationFailed,
    GenerationResult,
    PairOutcome,
    Stats,
    criterion_slug,
    judge_pair,
    make_criteria,
    make_provenance,
    make_rubric,
)

__all__ = ["agenerate"]

METHOD = "per"
GENERAL_ID = "per-general"

_LIST_KEYS = ("criteria", "criterion", "criterias", "criterialist", "rubric", "rubrics", "rubriclist", "items",
              "rules", "principles")
_TEXT_KEYS = ("text", "criterion", "statement", "description", "rule", "principle", "title")
_COMPARATIVE = re.compile(r"\b(?:responses?|assistants?|answers?)\s+[\"'(]?[AB]\b|\b[AB]\s+(?:is|was)\s+better\b")
_FEEDBACK_TAG = re.compile(r"<(\s*/?\s*feedback\b)", re.IGNORECASE)
_FEEDBACK_LIMIT = 2000
_RUBRIC_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:-]+")
_LIST_MARKER = re.compile(r"^(?:[-•*]|\d{1,2}[.)])\s+")


@dataclass
class _Pair:
    """One labelled pair and what the query-specific stage made of it."""

    pair_id: str
    group: PromptGroup
    better: str
    worse: str
    rubric_id: str
    rounds: int = 0
    outcomes: list[str] = field(default_factory=list)
    """Each round's outcome: ``solved``, ``wrong``, ``tie``, ``judge_failed``, ``parse_failed``."""
    criteria: list[Criterion] | None = None
    """The criteria that solved the pair (``None`` unless solved)."""
    reason: str | None = None
    """Why the pair was discarded."""

    @property
    def solved(self) -> bool:
        return self.criteria is not None


@dataclass
class _Core:
    """The growing core set: its criteria, their embeddings, and the batches that built it."""

    criteria: list[Criterion] = field(default_factory=list)
    pairs: list[str] = field(default_factory=list)
    vectors: Any = None
    rate: float = 0.0
    gains: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)
    batches: list[dict[str, Any]] = field(default_factory=list)


async def agenerate(groups: list[PromptGroup], ctx: GenContext, *, source: str | None, max_criteria: int = 5,
                    max_rounds: int = 5, epsilon: float = 0.3, min_gain: float = 0.002, batch_size: int = 10,
                    max_core: int | None = None, themes: int = 5, tips: int = 5) -> GenerationResult:
    """Auto-Rubric on the labelled pairs of ``groups``: one general rubric (``per-general``), plus the solved
    pairs' rubrics in ``result.extra["per_pair_rubrics"]`` (see the module docstring for the algorithm)."""
    _check_options(max_criteria, max_rounds, epsilon, batch_size, max_core, themes, tips)
    parameters = {"max_criteria": max_criteria, "max_rounds": max_rounds, "epsilon": epsilon, "min_gain": min_gain,
                  "batch_size": batch_size, "max_core": max_core, "themes": themes, "tips": tips,
                  "compare": ctx.compare}
    pairs = _labelled_pairs(groups)
    ctx.stats.add("pairs", len(pairs))
    core = _Core()
    queue: list[_Pair] = []
    processed: list[_Pair] = []
    position, stopped = 0, "data exhausted"
    while True:
        while len(queue) < batch_size and position < len(pairs):
            chunk = pairs[position:position + batch_size - len(queue)]
            position += len(chunk)
            await asyncio.gather(*(_solve_pair(ctx, pair, max_criteria, max_rounds) for pair in chunk))
            processed.extend(chunk)
            queue.extend(pair for pair in chunk if pair.solved)
        if not queue:
            break
        batch, queue = queue[:batch_size], queue[batch_size:]
        gain = _extend_core(core, batch, ctx, epsilon=epsilon, min_gain=min_gain, max_core=max_core)
        if gain < min_gain:
            stopped = "gain stalled"
            break
        if max_core is not None and len(core.criteria) >= max_core:
            stopped = "core cap reached"
            break
    stats = _pair_stats(pairs, processed, ctx.stats)
    stats["batches"] = {"used": len(core.batches), "stopped": stopped, "details": core.batches}
    stats["core"] = {"size": len(core.criteria), "coding_rate": round(core.rate, 4),
                     "gains": [round(g, 4) for g in core.gains],
                     "criteria": [{"id": c.id, "text": c.text, "pair_id": p} for c, p in zip(core.criteria,
                                                                                            core.pairs, strict=True)]}
    criteria = list(core.criteria)
    if criteria:
        criteria, stats["themes"] = await _structure(criteria, ctx, themes, tips)
    stats["counts"] = ctx.stats.as_dict()
    per_pair = [_pair_rubric(pair, ctx, source, parameters) for pair in processed if pair.solved]
    skipped = [{"prompt_id": pair.pair_id, "reason": pair.reason or "not solved"} for pair in processed
               if not pair.solved]
    extra: dict[str, Any] = {"per_pair_rubrics": per_pair, "pairs": [_pair_record(pair) for pair in processed]}
    if not criteria:
        if not pairs:
            skipped.append({"prompt_id": "-", "reason": "no labelled pairs in the data (ties induce none)"})
        return GenerationResult(method=METHOD, rubrics=[], general=True, stats=stats, skipped=skipped, extra=extra)
    rubric = make_rubric(
        id=GENERAL_ID, title="Auto-Rubric general rubric",
        description=(f"Query-agnostic rubric from {stats['solved']} solved preference pairs: "
                     f"{'themes with tips' if stats['themes'].get('used') else 'the coding-rate core set'} "
                     "(propose-evaluate-revise, coding-rate selection, Theme-Tips)."),
        scope="general", criteria=criteria,
        provenance=make_provenance(METHOD, ctx, source=source, parameters=parameters, stats=stats))
    return GenerationResult(method=METHOD, rubrics=[rubric], general=True, stats=stats, skipped=skipped, extra=extra)


def _check_options(max_criteria: int, max_rounds: int, epsilon: float, batch_size: int, max_core: int | None,
                   themes: int, tips: int) -> None:
    problems = []
    if max_criteria < 1:
        problems.append(f"max_criteria must be at least 1, got {max_criteria}")
    if max_rounds < 1:
        problems.append(f"max_rounds must be at least 1, got {max_rounds}")
    if not (epsilon > 0 and math.isfinite(epsilon)):
        problems.append(f"epsilon must be a positive number, got {epsilon}")
    if batch_size < 1:
        problems.append(f"batch_size must be at least 1, got {batch_size}")
    if max_core is not None and max_core < 1:
        problems.append(f"max_core must be at least 1 (or unset), got {max_core}")
    if themes < 0 or tips < 0:
        problems.append(f"themes and tips must be 0 or more (themes 0: no Theme-Tips), got {themes}, {tips}")
    if problems:
        raise RubrickitError(f"{METHOD}: " + "; ".join(problems))


def _labelled_pairs(groups: Sequence[PromptGroup]) -> list[_Pair]:
    pairs: list[_Pair] = []
    ids: set[str] = set()
    rubric_ids: set[str] = set()
    for group in groups:
        for pair_id, better, worse in group.pairs():
            unique, n = pair_id, 2
            while unique in ids:
                unique, n = f"{pair_id}#{n}", n + 1
            ids.add(unique)
            pairs.append(_Pair(unique, group, better, worse, _rubric_id(unique, rubric_ids)))
    return pairs


def _rubric_id(pair_id: str, taken: set[str]) -> str:
    base = "per-" + (_RUBRIC_ID_CHARS.sub("-", pair_id).strip("-") or "pair")
    rubric_id, n = base, 2
    while rubric_id in taken:
        rubric_id, n = f"{base}-{n}", n + 1
    taken.add(rubric_id)
    return rubric_id


# --------------------------------------------------------------------------- stage 1: propose-evaluate-revise


async def _solve_pair(ctx: GenContext, pair: _Pair, max_criteria: int, max_rounds: int) -> None:
    """Propose, evaluate, revise until the judge prefers the gold winner or the rounds run out."""
    material = _material(pair)
    criteria: list[Criterion] | None = None
    outcome_text, feedback = "", ""
    for round_no in range(1, max_rounds + 1):
        pair.rounds = round_no
        ctx.stats.add("rounds")
        try:
            if criteria is None:
                variables = {**material, "max_criteria": max_criteria}
                criteria = await _ask_criteria(ctx, "per_propose", variables, max_criteria,
                                               salt=f"per:{pair.pair_id}:propose{round_no}")
            else:
                variables = {**material, "max_criteria": max_criteria, "outcome": outcome_text,
                             "feedback": feedback, "criteria": [{"id": c.id, "text": _defuse(c.text)}
                                                                for c in criteria]}
                criteria = await _ask_criteria(ctx, "per_revise", variables, max_criteria,
                                               salt=f"per:{pair.pair_id}:revise{round_no}")
        except GenerationFailed as error:
            ctx.stats.reject(f"generator: {error.reason}")
            _round(ctx, pair, "parse_failed", "the generator's criteria could not be read")
            continue
        rubric = make_rubric(id=pair.rubric_id, scope="prompt", prompt_id=pair.pair_id, criteria=criteria)
        try:
            outcome = await judge_pair(ctx, rubric, pair.group.prompt, pair.better, pair.worse, pair.pair_id)
        except Exception as error:  # a backend or engine failure must not end the run: it is a failed judgment
            ctx.stats.reject(f"judge error: {type(error).__name__}")
            outcome = PairOutcome(None, None, None, f"judge error: {type(error).__name__}")
        if outcome.correct:
            pair.criteria = criteria
            _round(ctx, pair, "solved", None)
            return
        kind, outcome_text = _describe(outcome)
        feedback = _feedback(outcome.rationale)
        _round(ctx, pair, kind, outcome_text)


def _round(ctx: GenContext, pair: _Pair, kind: str, reason: str | None) -> None:
    pair.outcomes.append(kind)
    ctx.stats.add(f"round_{kind}")
    if kind != "solved":
        pair.reason = f"not solved in {pair.rounds} round(s); last: {kind}"


def _describe(outcome: PairOutcome) -> tuple[str, str]:
    """The round's outcome kind and the sentence the revise prompt shows."""
    if outcome.correct is None:
        return "judge_failed", "the evaluator could not reach a decision with these criteria (its judgments failed)"
    if outcome.margin is not None and abs(outcome.margin) <= 1e-9:
        return "tie", "the evaluator found the two responses tied: the criteria do not separate them"
    margin = f" (margin {outcome.margin:+.2f})" if outcome.margin is not None else ""
    return "wrong", f"the evaluator preferred response B, the worse one{margin}"


def _defuse(text: str) -> str:
    """:func:`neutralize`, plus the ``<feedback>`` tag the revise prompt adds to the shared delimiters."""
    return _FEEDBACK_TAG.sub(lambda match: "&lt;" + match.group(1), neutralize(text))


def _material(pair: _Pair) -> dict[str, Any]:
    """The pair as template data (better response shown as A), every untrusted text defused."""
    data = pair_material_data(pair.group.prompt, pair.better, pair.worse, pair.group.reference)
    data["conversation"] = [{**turn, "content": _defuse(turn["content"])} for turn in data["conversation"]]
    for name in ("response_a", "response_b", "reference"):
        if data[name] is not None:
            data[name] = _defuse(data[name])
    return data


def _feedback(rationale: str | None) -> str:
    text = _defuse(rationale or "(no rationale given)")
    return text if len(text) <= _FEEDBACK_LIMIT else text[:_FEEDBACK_LIMIT] + " …"


async def _ask_criteria(ctx: GenContext, template: str, variables: Mapping[str, Any], max_criteria: int, *,
                        salt: str) -> list[Criterion]:
    def parse(obj: dict[str, Any]) -> tuple[list[str], Counter[str]]:
        return _criteria_texts(obj, max_criteria)

    texts, dropped = await ajson_lenient(ctx.generator, template, variables, parse, salt=salt, list_key="criteria",
                                         schema=per_schema(max_criteria))
    for reason, count in dropped.items():
        ctx.stats.add(f"criteria_{reason}", count)
    return make_criteria([{"text": text} for text in texts])


def _criteria_texts(obj: Mapping[str, Any], max_criteria: int) -> tuple[list[str], Counter[str]]:
    """The criterion texts of a reply (at most ``max_criteria``) and what was dropped; ``ValueError`` when none."""
    raw = None
    for key, value in obj.items():
        name = re.sub(r"[^a-z]", "", str(key).lower())
        if isinstance(value, list) and (name in _LIST_KEYS or name.startswith(("criteri", "rubric"))):
            raw = value
            break
    if raw is None:
        raise ValueError('expected an object with a "criteria" list')
    texts: list[str] = []
    seen: set[str] = set()
    dropped: Counter[str] = Counter()
    for item in raw:
        text = _item_text(item)
        if not text:
            dropped["empty"] += 1
        elif _COMPARATIVE.search(text):
            dropped["comparative"] += 1  # names "response A/B": not checkable on one response
        elif text.casefold() in seen:
            dropped["repeated"] += 1
        elif len(texts) >= max_criteria:
            dropped["over_limit"] += 1
        else:
            seen.add(text.casefold())
            texts.append(text)
    if not texts:
        raise ValueError("no usable criterion: give statements about a single response, without naming A or B")
    return texts, dropped


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        text = item
    elif isinstance(item, Mapping):
        text = ""
        for name in _TEXT_KEYS:
            for key, value in item.items():
                if re.sub(r"[^a-z]", "", str(key).lower()) == name and isinstance(value, str) and value.strip():
                    text = value
                    break
            if text:
                break
    else:
        return ""
    return _LIST_MARKER.sub("", " ".join(text.split())).strip()


# --------------------------------------------------------------------------- stage 2: coding-rate core set


def _extend_core(core: _Core, batch: Sequence[_Pair], ctx: GenContext, *, epsilon: float, min_gain: float,
                 max_core: int | None) -> float:
    """Add a batch of solved pairs' criteria to the core set; returns the batch's total coding-rate gain."""
    import numpy as np

    from rubrickit.backends.embedding import embed_texts

    from ..refine.selection import greedy_coding_rate

    candidates: list[tuple[str, str]] = []
    for pair in batch:
        for criterion in pair.criteria or []:
            key = " ".join(criterion.text.casefold().split())
            if key in core.seen:
                ctx.stats.add("criteria_repeated_across_pairs")
                continue
            core.seen.add(key)
            candidates.append((criterion.text, pair.pair_id))
    record: dict[str, Any] = {"pairs": len(batch), "candidates": len(candidates), "added": 0, "gain": 0.0}
    gain = 0.0
    if candidates:
        new = embed_texts([text for text, _ in candidates], model=ctx.embedding_model)
        Z = new if core.vectors is None else np.vstack([core.vectors, new])
        size = len(core.criteria)
        selection = greedy_coding_rate(Z, epsilon=epsilon, min_gain=min_gain, max_size=max_core,
                                       initial=range(size))
        added = selection.selected[size:]
        gain = float(sum(selection.gains))
        for index, row_gain in zip(added, selection.gains, strict=True):
            text, pair_id = candidates[index - size]
            core.criteria.append(Criterion(id=criterion_slug(text, core.taken), text=text))
            core.pairs.append(pair_id)
            core.gains.append(float(row_gain))
        core.vectors = Z[selection.selected]
        core.rate = float(selection.rate)
        record.update(added=len(added), gain=round(gain, 4), core_size=len(core.criteria),
                      coding_rate=round(core.rate, 4), selection_stopped=selection.stopped)
    core.batches.append(record)
    return gain


# --------------------------------------------------------------------------- stage 3: Theme-Tips


async def _structure(criteria: list[Criterion], ctx: GenContext, themes: int,
                     tips: int) -> tuple[list[Criterion], dict[str, Any]]:
    if themes == 0:
        return criteria, {"used": False, "reason": "themes=0: flat core set"}
    counts = Stats()
    try:
        structured = await structure_themes(criteria, ctx.generator, max_themes=themes, max_tips=tips, salt=METHOD,
                                            stats=counts)
    except GenerationFailed as error:
        ctx.stats.reject(f"themes: {error.reason}")
        return criteria, {"used": False, "reason": f"Theme-Tips failed, flat core set kept: {error.reason}"}
    ctx.stats.merge(counts)
    covered = {sid for theme in structured for sid in theme.source_ids}
    return structured, {"used": True, "count": len(structured), **counts.as_dict(),
                        "themes": [{"id": c.id, "source_ids": c.source_ids} for c in structured],
                        "uncovered_ids": [c.id for c in criteria if c.id not in covered]}


# --------------------------------------------------------------------------- outputs


def _pair_stats(pairs: Sequence[_Pair], processed: Sequence[_Pair], stats: Stats) -> dict[str, Any]:
    solved = [pair for pair in processed if pair.solved]
    discarded = Counter((pair.outcomes[-1] if pair.outcomes else "no round") for pair in processed
                        if not pair.solved)
    histogram = Counter(pair.rounds for pair in solved)
    stats.add("solved", len(solved))
    stats.add("discarded", len(processed) - len(solved))
    for pair in processed:
        if not pair.solved:
            stats.reject(f"pair discarded (last round: {pair.outcomes[-1] if pair.outcomes else 'no round'})")
    outcomes = Counter(kind for pair in processed for kind in pair.outcomes)
    return {
        "pairs": len(pairs), "processed": len(processed), "solved": len(solved),
        "discarded": len(processed) - len(solved), "discarded_by": dict(sorted(discarded.items())),
        "unprocessed": len(pairs) - len(processed),
        "rounds": {"histogram": {str(k): histogram[k] for k in sorted(histogram)},
                   "mean_solved": round(sum(p.rounds for p in solved) / len(solved), 3) if solved else None,
                   "outcomes": dict(sorted(outcomes.items()))},
    }


def _pair_rubric(pair: _Pair, ctx: GenContext, source: str | None, parameters: Mapping[str, Any]) -> Rubric:
    return make_rubric(
        id=pair.rubric_id, scope="prompt", prompt_id=pair.pair_id, prompt=pair.group.text,
        criteria=pair.criteria,
        provenance=make_provenance(METHOD, ctx, source=source, parameters=parameters,
                                   stats={"rounds": pair.rounds, "prompt_id": pair.group.id,
                                          "outcomes": list(pair.outcomes)}))


def _pair_record(pair: _Pair) -> dict[str, Any]:
    return {"pair_id": pair.pair_id, "prompt_id": pair.group.id, "rounds": pair.rounds,
            "outcome": "solved" if pair.solved else "discarded", "outcomes": list(pair.outcomes),
            "reason": pair.reason if not pair.solved else None}
