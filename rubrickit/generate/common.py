"""What every generation method shares: calling the generator model for JSON, counting what happened, building
valid rubrics with provenance, and writing them atomically.

A method gets a :class:`GenContext` (the generator and judge :class:`~rubrickit.judge.engine.Judge` objects, the
prompt library and a :class:`Stats`) and returns a :class:`GenerationResult`. Generated text from small models is
often malformed: :meth:`Generator.ajson` re-asks with the reason, then raises :class:`GenerationFailed`; methods
catch it, count the reason and skip the item. A call may carry the JSON Schema of its reply
(:mod:`rubrickit.judge.reply_schemas`): it is sent as structured output when the generator's backend honours it
(``capabilities.json_schema``), and left off otherwise, where the tolerant readers and re-asks do the work.
Nothing invalid is ever written: :func:`make_rubric` validates, and :func:`write_result` writes atomically and
re-reads what it wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rubrickit.judge.generator import GenerationFailed, Generator, Stats, criterion_slug

from ..errors import OutputExistsError, RubrickitError
from ..judge.prompts import PromptLibrary
from ..rubric import Criterion, Provenance, Rubric

__all__ = [
    "GenContext",
    "GenerationFailed",
    "GenerationResult",
    "Generator",
    "PairOutcome",
    "judge_pair",
    "Stats",
    "criterion_slug",
    "make_criteria",
    "make_provenance",
    "make_rubric",
    "write_result",
]

@dataclass
class GenContext:
    """Everything a method needs besides its data and options."""

    generator: Generator
    """Writes rubrics."""
    judge: Any
    """A :class:`~rubrickit.judge.engine.Judge` that judges with them (consistency checks, satisfaction)."""
    stats: Stats = field(default_factory=Stats)
    """The run's counters."""
    compare: str = "pairwise"
    """How rubrics judge labelled pairs: ``pairwise`` (per-criterion A-vs-B, both orders) or ``pointwise``."""
    embedding_model: str | None = None
    """Sentence-transformers model folder for embeddings (``None``: the bundled all-MiniLM-L6-v2)."""

    @property
    def library(self) -> PromptLibrary:
        """The prompt templates."""
        return self.generator.library


@dataclass
class GenerationResult:
    """What a method produced."""

    method: str
    rubrics: list[Rubric]
    """Per-prompt rubrics (``scope: prompt``), or one general rubric."""
    general: bool = False
    """True when the result is one general rubric (written as YAML)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Run-level statistics (also in each rubric's provenance)."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """``{"prompt_id", "reason"}`` for every prompt that produced no rubric."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Method-specific by-products (e.g. PER's per-pair rubrics)."""


def make_criteria(items: Sequence[Mapping[str, Any]]) -> list[Criterion]:
    """Criteria from ``{"text", "kind"?, "weight"?, "category"?, "tags"?, "id"?}`` dicts with unique slug ids.

    Items whose text is blank are dropped; an ``id`` that is not a valid unique slug is replaced.
    """
    taken: set[str] = set()
    out = []
    for item in items:
        text = str(item.get("text") or "").strip()
        if not text:
            continue
        data = {k: v for k, v in item.items() if k in ("kind", "weight", "category", "tags", "applies_if") and
                v is not None}
        given = item.get("id")
        cid = None
        if isinstance(given, str) and given not in taken:
            try:
                Criterion(id=given, text=text)
                cid = given
                taken.add(given)
            except ValidationError:
                cid = None
        out.append(Criterion(id=cid or criterion_slug(text, taken), text=text, **data))
    return out


def make_provenance(method: str, ctx: GenContext, *, source: str | None, parameters: Mapping[str, Any],
                    stats: Mapping[str, Any] | None = None, judge_used: bool = True) -> Provenance:
    """Provenance of a generated rubric (today's date, both models, the parameters and statistics)."""
    return Provenance(method=method, generator=ctx.generator.spec, judge=ctx.judge.spec if judge_used else None,
                      source=source, created=date.today().isoformat(), parameters=dict(parameters),
                      stats=dict(stats or {}))


def make_rubric(**fields: Any) -> Rubric:
    """A validated :class:`Rubric` (raises :class:`GenerationFailed` with the reason instead of a pydantic error)."""
    try:
        return Rubric.model_validate(fields)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise GenerationFailed(f"invalid rubric: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def write_result(result: GenerationResult, out: str | Path, *, force: bool = False) -> Path:
    """Write a result: one general rubric as YAML (``.yaml``/``.yml``, or JSON by suffix), per-prompt rubrics as a
    rubric set (``.jsonl``/``.jsonl.gz``). Atomic; refuses to overwrite without ``force``; re-reads the file to
    prove it is valid."""
    from rubrickit.rubric.files import load_rubric, load_rubric_set, save_rubric, save_rubric_set

    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to overwrite it, or choose another --out")
    if not result.rubrics:
        raise RubrickitError(f"{result.method}: no rubric was generated ({len(result.skipped)} prompts skipped: "
                             f"{_top_reasons(result.skipped)}); nothing written to {out}")
    name = out.name.lower()
    if result.general and not name.endswith((".jsonl", ".jsonl.gz")):
        if len(result.rubrics) != 1:
            raise RubrickitError(f"{out}: {len(result.rubrics)} rubrics need a rubric set file (.jsonl)")
        save_rubric(result.rubrics[0], out)
        load_rubric(out)
    else:
        if not name.endswith((".jsonl", ".jsonl.gz")):
            raise RubrickitError(f"{out}: per-prompt rubrics are written as a rubric set; name the output "
                                 "*.rubrics.jsonl (or .jsonl.gz)")
        save_rubric_set(result.rubrics, out)
        load_rubric_set(out)
    return out


def _top_reasons(skipped: Sequence[Mapping[str, str]]) -> str:
    counts = Counter(s.get("reason", "?") for s in skipped)
    return "; ".join(f"{reason} ×{n}" for reason, n in counts.most_common(3)) or "no input"


# --------------------------------------------------------------------------- judging a pair with a rubric


@dataclass(frozen=True)
class PairOutcome:
    """How a rubric judged one labelled pair (``better`` is the gold winner)."""

    correct: bool | None
    """The rubric preferred the gold winner; ``None`` when the judgment failed."""
    margin: float | None
    """Gold winner's advantage: the pairwise margin, or the reward difference (pointwise)."""
    consistent: bool | None
    """Pairwise: both orders agreed; pointwise: ``None``."""
    rationale: str | None = None
    """A short explanation (the judge's rationales), for revision feedback."""


async def judge_pair(ctx: GenContext, rubric: Rubric, prompt: Any, better: str, worse: str,
                     pair_id: str) -> PairOutcome:
    """Judge a labelled pair with ``rubric`` the way ``ctx.compare`` says (ties and failures are not correct).

    ``pairwise``: the engine's per-criterion comparison in both orders (margin Σ w·pref); ``pointwise``: score both
    responses with the rubric (any mode, e.g. logprob for small local judges) and compare rewards.
    """
    if ctx.compare == "pointwise":
        import asyncio

        better_record, worse_record = await asyncio.gather(
            ctx.judge.ascore(rubric, {"id": f"{pair_id}/better", "prompt": prompt, "response": better}),
            ctx.judge.ascore(rubric, {"id": f"{pair_id}/worse", "prompt": prompt, "response": worse}))
        if better_record.reward is None or worse_record.reward is None:
            return PairOutcome(None, None, None, "judge failed")
        margin = better_record.reward - worse_record.reward
        return PairOutcome(margin > 1e-9, margin, None, _rationales(better_record, worse_record))
    record = await ctx.judge.acompare(rubric, {"id": pair_id, "prompt": prompt, "response_a": better,
                                               "response_b": worse, "label": "A"})
    if record.winner is None:
        return PairOutcome(None, None, record.consistent, "judge failed")
    notes = [f"{d.criterion_id}: {d.rationale}" for d in record.details if d.rationale][:6]
    return PairOutcome(record.winner == "A", record.margin, record.consistent, "\n".join(notes) or None)


def _rationales(better: Any, worse: Any) -> str:
    lines = []
    for label, record in (("preferred", better), ("rejected", worse)):
        for verdict in record.verdicts[:8]:
            lines.append(f"{label} response, {verdict.criterion_id}: {verdict.verdict}")
    return "\n".join(lines)


def collect(method: str, ctx: GenContext, groups: Sequence[Any],
            outcomes: Sequence[tuple[Rubric | None, Stats, str | None]]) -> GenerationResult:
    """The result of per-prompt outcomes ``(rubric or None, the prompt's stats, skip reason)``: stats merged into
    the run's, prompts without a rubric listed in ``skipped``."""
    rubrics, skipped = [], []
    for group, (rubric, stats, reason) in zip(groups, outcomes, strict=True):
        ctx.stats.merge(stats)
        ctx.stats.add("prompts")
        if rubric is None:
            skipped.append({"prompt_id": group.id, "reason": reason or "unknown"})
        else:
            ctx.stats.add("kept")
            rubrics.append(rubric)
    return GenerationResult(method=method, rubrics=rubrics, stats=ctx.stats.as_dict(), skipped=skipped)
