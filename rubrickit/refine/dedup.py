"""Embedding refiners: the redundancy filter (RRD) and the coding-rate core set (Auto-Rubric's MCR² selection).

**Redundancy** (RRD, Recursive Rubric Decomposition: its redundancy rejection). Criterion texts are embedded with
sentence-transformers (:func:`rubrickit.backends.embedding.embed_texts`; the bundled all-MiniLM-L6-v2 by default,
offline), rows L2-normalised, so cosine = dot product. Criteria are visited strongest first (largest |weight|, then
rubric order); a criterion whose cosine with an already kept criterion is ≥ ``threshold`` is the later/weaker one and
is removed. With an overlap checker (an LLM, ``prompts/overlap.j2``) the removal must be confirmed: RRD removes a
candidate with ≥ 70 % overlap with a kept criterion or of opposite polarity (the two pull in opposite directions: a
duplicate when the weights have opposite signs, a conflict when they have the same sign). An unreadable or failed
check keeps the criterion and is counted — a failure never removes anything. The check itself (:func:`aoverlap`,
read into an :class:`Overlap`) is RRD's one redundancy question: ``generate decompose`` asks it too, with the
conversation its rubrics are for.

**Coding-rate core set** (Auto-Rubric, "Learning to Extract Generalizable Criteria"): greedy maximisation of
R(Z) = ½·logdet(I + d/(n·ε²)·ZᵀZ) over the criterion embeddings
(:func:`rubrickit.refine.selection.greedy_coding_rate`, exact marginal gains with ``slogdet`` on the n × n Gram
matrix), up to ``max_size`` criteria, stopping when the best gain stays below ``min_gain`` ``patience`` times.
Near-duplicates add almost no rate, so a distinct criterion is always picked before the second copy of a pair.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rubrickit.judge.generator import GenerationFailed, Generator
from rubrickit.judge.reply_schemas import overlap_schema

from ..judge.prompts import conversation_data, criterion_data, neutralize
from ..rubric import Criterion, Rubric
from .filters import StepReport
from .selection import greedy_coding_rate

__all__ = ["OVERLAP_MIN", "Overlap", "adedup", "aoverlap", "criterion_embeddings", "dedup_candidates",
           "select_core"]

OVERLAP_MIN = 70.0
"""RRD's overlap threshold (percent) for the LLM check."""

_RELATIONS = {"same": "same", "identical": "same", "duplicate": "same", "equivalent": "same", "redundant": "same",
              "opposite": "opposite", "contradictory": "opposite", "conflict": "opposite", "conflicting": "opposite",
              "inverse": "opposite", "different": "different", "distinct": "different", "unrelated": "different",
              "partial": "different", "related": "different"}


def criterion_embeddings(criteria: list[Criterion], model: str | None = None) -> Any:
    """L2-normalised embeddings of the criteria's texts (one row each)."""
    from rubrickit.backends.embedding import embed_texts

    return embed_texts([" ".join(c.text.split()) for c in criteria], model)


def _strength_order(criteria: list[Criterion]) -> list[int]:
    return sorted(range(len(criteria)), key=lambda i: (-abs(criteria[i].weight), i))


def dedup_candidates(criteria: list[Criterion], embeddings: Any, threshold: float) -> list[tuple[int, int, float]]:
    """(candidate, kept, cosine) for every criterion whose cosine with a stronger kept criterion is ≥ ``threshold``
    (embedding-only decision; the first kept match with the highest cosine is named)."""
    import numpy as np

    Z = np.asarray(embeddings, dtype=np.float64)
    kept: list[int] = []
    out = []
    for i in _strength_order(criteria):
        if kept:
            sims = Z[kept] @ Z[i]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                out.append((i, kept[best], float(sims[best])))
                continue
        kept.append(i)
    return out


@dataclass(frozen=True)
class Overlap:
    """The LLM overlap check's answer for (kept, candidate)."""

    overlap: float
    """Percent of what the candidate checks that the kept criterion already checks."""
    relation: str
    """``same``, ``opposite`` (the two pull in opposite directions: a response satisfying one would have to fail the
    other) or ``different``."""
    rationale: str = ""

    @property
    def redundant(self) -> bool:
        """RRD's rule: ≥ 70 % overlap, or opposite polarity."""
        return self.overlap >= OVERLAP_MIN or self.relation == "opposite"


def _parse_overlap(obj: Mapping[str, Any]) -> Overlap:
    fields = {re.sub(r"[^a-z]", "", str(k).lower()): v for k, v in obj.items()}
    raw = fields.get("overlap", fields.get("overlappercent", fields.get("percent", fields.get("overlappercentage"))))
    if isinstance(raw, str):
        match = re.search(r"-?\d+(?:\.\d+)?", raw)
        raw = float(match.group()) if match else None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError('"overlap" must be a number from 0 to 100')
    value = float(raw)
    if 0 < value <= 1 and not float(value).is_integer():
        value *= 100  # a fraction where a percentage was asked
    if not 0 <= value <= 100:
        raise ValueError(f'"overlap" must be between 0 and 100, got {value:g}')
    relation = _RELATIONS.get(str(fields.get("relation", fields.get("polarity", ""))).strip().lower())
    if relation is None:
        raise ValueError('"relation" must be "same", "opposite" or "different"')
    return Overlap(value, relation, str(fields.get("rationale") or "")[:300])


def _statement_data(item: Criterion | str) -> dict[str, Any]:
    """A criterion as the overlap template's data; a bare statement (a ``decompose`` rubric) has no id or condition."""
    if isinstance(item, str):
        return {"id": None, "text": neutralize(item), "applies_if": None}
    return criterion_data(item)


async def aoverlap(generator: Generator, kept: Criterion | str, candidate: Criterion | str, *,
                   conversation: str | Sequence[Any] | None = None, salt: str = "") -> Overlap:
    """Ask the overlap checker whether ``candidate`` repeats (or contradicts) ``kept``; raises
    :class:`GenerationFailed` when its reply cannot be read after the re-asks.

    Either may be a :class:`Criterion` or a bare statement; ``conversation`` (a prompt string or chat messages, as
    :func:`~rubrickit.judge.prompts.conversation_data` takes) is shown to the checker when given."""
    variables = {"first": _statement_data(kept), "second": _statement_data(candidate),
                 "conversation": conversation_data(conversation) if conversation is not None else None}
    return await generator.ajson("overlap", variables, _parse_overlap, salt=f"overlap:{salt}",
                                 temperature=0.0, max_tokens=256, schema=overlap_schema())


async def adedup(rubric: Rubric, *, threshold: float = 0.9, embedding_model: str | None = None,
                 overlap: Generator | None = None, embeddings: Any = None) -> StepReport:
    """The redundancy step on one rubric (see the module docs); ``embeddings`` may be given precomputed."""
    criteria = list(rubric.criteria)
    params: dict[str, Any] = {"threshold": threshold, "embedding_model": embedding_model or "all-MiniLM-L6-v2"}
    if overlap is not None:
        params["llm_overlap"] = overlap.spec
        params["overlap_min"] = OVERLAP_MIN
    report = StepReport("dedup", rubric.id, parameters=params)
    if len(criteria) < 2:
        return report
    import numpy as np

    Z = np.asarray(embeddings if embeddings is not None else criterion_embeddings(criteria, embedding_model))
    kept: list[int] = []
    candidates = confirmed = rejected = failed = 0
    for i in _strength_order(criteria):
        if kept:
            sims = Z[kept] @ Z[i]
            best = int(np.argmax(sims))
            cosine = float(sims[best])
            if cosine >= threshold:
                candidates += 1
                outcome = await _decide(report, criteria[kept[best]], criteria[i], cosine, threshold, overlap,
                                        rubric.id)
                confirmed += outcome == "removed" and overlap is not None
                rejected += outcome == "kept"
                failed += outcome == "failed"
                if outcome == "removed":
                    continue
        kept.append(i)
    report.stats["candidates"] = candidates
    if overlap is not None:
        report.stats.update({"confirmed": confirmed, "not_confirmed_count": rejected, "overlap_failed": failed})
    return report


async def _decide(report: StepReport, kept: Criterion, cand: Criterion, cosine: float, threshold: float,
                  overlap: Generator | None, rubric_id: str) -> str:
    detail = f"cosine {cosine:.3f} ≥ {threshold:g} with {kept.id!r}"
    if overlap is None:
        report.remove(cand.id, "redundant", detail)
        return "removed"
    try:
        answer = await aoverlap(overlap, kept, cand, salt=f"{rubric_id}:{kept.id}:{cand.id}")
    except GenerationFailed as error:
        report.stats.setdefault("overlap_failures", []).append({"id": cand.id, "reason": error.reason})
        return "failed"
    if not answer.redundant:
        report.stats.setdefault("not_confirmed", []).append(
            {"id": cand.id, "kept": kept.id, "cosine": round(cosine, 4), "overlap": answer.overlap,
             "relation": answer.relation})
        return "kept"
    same_sign = (cand.weight < 0) == (kept.weight < 0)
    if answer.relation == "opposite":
        reason = "conflicting" if same_sign else "redundant"
        why = "opposite statement with the same polarity" if same_sign else "opposite statement and weight sign"
    else:
        reason, why = "redundant", f"{answer.overlap:.0f}% overlap"
    report.remove(cand.id, reason, f"{detail}; LLM: {why}")
    return "removed"


def select_core(rubric: Rubric, *, epsilon: float = 0.3, max_size: int | None = None, min_gain: float = 0.002,
                patience: int = 2, embedding_model: str | None = None, embeddings: Any = None) -> StepReport:
    """Coding-rate core set of one rubric's criteria (greedy MCR², see the module docs)."""
    import numpy as np

    criteria = list(rubric.criteria)
    report = StepReport("select", rubric.id, parameters={
        "method": "mcr", "epsilon": epsilon, "max_criteria": max_size, "min_gain": min_gain, "patience": patience,
        "embedding_model": embedding_model or "all-MiniLM-L6-v2"})
    Z = np.asarray(embeddings if embeddings is not None else criterion_embeddings(criteria, embedding_model))
    selection = greedy_coding_rate(Z, epsilon=epsilon, max_size=max_size, min_gain=min_gain, patience=patience)
    chosen = set(selection.selected)
    report.stats = {"rate": round(selection.rate, 6), "stopped": selection.stopped, "selected": len(chosen),
                    "order": [criteria[i].id for i in selection.selected],
                    "gains": [round(g, 6) for g in selection.gains]}
    kept = sorted(chosen)
    for i, criterion in enumerate(criteria):
        if i in chosen:
            continue
        if kept:
            sims = Z[kept] @ Z[i]
            near = kept[int(np.argmax(sims))]
            closest = f"; closest kept {criteria[near].id!r} (cosine {float(sims.max()):.3f})"
        else:
            closest = ""
        why = {"cap": f"size cap {max_size} reached", "gain": f"gain below {min_gain:g} {patience}×",
               "exhausted": "not selected"}[selection.stopped]
        report.remove(criterion.id, "not-selected", f"coding-rate selection: {why}{closest}")
    return report
