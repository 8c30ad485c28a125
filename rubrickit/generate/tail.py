"""``tail`` — rubric refinement at the top of the distribution, after *Chasing the Tail: Effective Rubric-based
Reward Modeling for Large Language Model Post-Training* (Zhang et al., 2025).

A reward model trained on rubrics is least reliable exactly where RL needs it most: telling an excellent response
from a very good one. Chasing the Tail refines a rubric on a pool of *strong* responses:

1. Start from a rubric: ``rubric`` (a general rubric file applied to every prompt, or a rubric set matched by
   ``prompt_id``), or, when none is given, a rubric the generator proposes from the prompt (``tail_propose.j2``).
2. Each round, score every response of the pool (``group.responses``, at least two) with the current rubric, one
   judge call per response (``per_response`` mode). A response whose reward is ``None`` (every verdict an error) is
   a failure: counted and excluded, never a zero. Fewer than two scored responses stops the prompt with a reason.
3. Rank by reward; take the current top two and ask the generator for a revised rubric that separates them
   (``tail_revise.j2``: add, split, rewrite or delete criteria; it returns the full criteria list and its edits).
   A malformed revision keeps the previous rubric for that round and is counted.
4. Repeat for ``rounds`` rounds, every round feeding the top two of the *current* rubric; a final scoring pass
   measures the last rubric.

Recorded per round (in ``provenance.history``): the top two response indices, their rewards and the gap, the edits,
the number of scored and failed responses, and each criterion's pass rate over the pool — met / (met + unmet) — with
the mean |rate − 0.5|: the method aims for criteria that strong responses fail about half of the time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rubrickit.data.preferences import PromptGroup
from rubrickit.judge.reply_schemas import tail_propose_schema, tail_revise_schema

from ..judge.prompts import conversation_data, neutralize, pair_material_data
from ..rubric import Rubric, ScoreRecord
from .common import (
    GenContext,
    GenerationFailed,
    GenerationResult,
    Stats,
    collect,
    make_criteria,
    make_provenance,
    make_rubric,
)
from .reference import ajson_reply, item_list, number, rubric_id_for

__all__ = ["agenerate", "pass_rates", "parse_criteria"]

_TEXT_KEYS = ("text", "criterion", "statement", "description", "title")


def _lookup(obj: Mapping[str, Any], names: Sequence[str]) -> Any:
    normalised = {"".join(ch for ch in str(k).lower() if ch.isalpha()): v for k, v in obj.items()}
    return next((normalised[name] for name in names if name in normalised), None)


def parse_criteria(obj: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """A proposed or revised rubric: criterion dicts (``text``, ``weight``, optional ``id``) and the edit lines.

    A missing weight is the criterion default 1; a weight outside [-5, 5] is clamped; a zero or non-numeric weight,
    or an item without text, is a ``ValueError`` (the generator is re-asked): nothing is invented.
    """
    raw_items = item_list(obj)
    if raw_items is None:
        raise ValueError('no "criteria" list in the JSON object')
    criteria = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, Mapping):
            if isinstance(raw, str) and raw.strip():
                criteria.append({"text": raw.strip(), "weight": 1.0})
                continue
            raise ValueError(f"criteria[{index}] is not an object with a text")
        text = _lookup(raw, _TEXT_KEYS)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"criteria[{index}] has no text")
        given = _lookup(raw, ("weight", "points"))
        weight = 1.0 if given is None else number(given)
        if weight is None:
            raise ValueError(f"criteria[{index}].weight is not a number")
        if weight == 0:
            raise ValueError(f"criteria[{index}].weight is 0; use 1 to 5, or -1 to -5 for a flaw")
        given_id = _lookup(raw, ("id",))
        criteria.append({"text": text.strip(), "weight": max(-5.0, min(5.0, weight)),
                         "id": given_id if isinstance(given_id, str) else None})
    if not criteria:
        raise ValueError("the criteria list is empty")
    edits = _lookup(obj, ("edits", "changes"))
    lines = [str(e) for e in edits if str(e).strip()] if isinstance(edits, list) else []
    return criteria, lines


def pass_rates(rubric: Rubric, records: Sequence[ScoreRecord]) -> dict[str, float | None]:
    """Per criterion: the share of responses that meet it among those assessed (met / (met + unmet)); ``None`` when
    no response was assessed on it (errors and not-applicable verdicts are left out)."""
    rates: dict[str, float | None] = {}
    for criterion in rubric.criteria:
        verdicts = [v.verdict for r in records for v in r.verdicts if v.criterion_id == criterion.id]
        assessed = [v for v in verdicts if v in ("met", "unmet")]
        rates[criterion.id] = round(sum(v == "met" for v in assessed) / len(assessed), 4) if assessed else None
    return rates


def _mean_distance(rates: Mapping[str, float | None]) -> float | None:
    known = [abs(rate - 0.5) for rate in rates.values() if rate is not None]
    return round(sum(known) / len(known), 4) if known else None


def _starting_rubrics(rubric: str | Path | Rubric | None) -> tuple[Rubric | None, dict[str, Rubric] | None]:
    """The general starting rubric, or the set by prompt id (both ``None``: propose one per prompt)."""
    if rubric is None:
        return None, None
    if isinstance(rubric, Rubric):
        return rubric, None
    from rubrickit.rubric.files import is_rubric_set_path, load_rubric, load_rubric_set

    if is_rubric_set_path(rubric):
        return None, {r.prompt_id: r for r in load_rubric_set(rubric) if r.prompt_id}
    return load_rubric(rubric), None


class _Refiner:
    """Refines one prompt's rubric (holds the prompt, the pool, the scorer and the per-prompt stats)."""

    def __init__(self, group: PromptGroup, ctx: GenContext, scorer: Any):
        self.group, self.ctx, self.scorer = group, ctx, scorer
        self.stats = Stats()
        self.history: list[dict[str, Any]] = []

    async def propose(self) -> Rubric:
        """A first rubric proposed from the prompt (raises :class:`GenerationFailed`)."""
        variables = {"conversation": conversation_data(self.group.prompt),
                     "reference": neutralize(self.group.reference) if self.group.reference else None}
        criteria, _ = await ajson_reply(self.ctx.generator, "tail_propose", variables, parse_criteria,
                                        salt=f"tail/{self.group.id}/propose", schema=tail_propose_schema())
        return self._rubric(criteria, None)

    def _rubric(self, criteria: list[dict[str, Any]], base: Rubric | None) -> Rubric:
        fields = base.model_dump(exclude={"criteria", "provenance", "id", "scope", "prompt_id", "prompt"}) \
            if base is not None else {"title": "Tail-refined rubric"}
        return make_rubric(**fields, id=rubric_id_for("tail", self.group.id), scope="prompt",
                           prompt_id=self.group.id, prompt=self.group.text, criteria=make_criteria(criteria))

    async def score(self, rubric: Rubric) -> list[tuple[int, ScoreRecord]]:
        """Score every response of the pool; returns (index, record) for the scored ones (failures counted)."""
        async def one(index: int, response: str) -> ScoreRecord | None:
            item = {"id": f"{self.group.id}#{index}", "prompt": self.group.prompt, "response": response,
                    "reference": self.group.reference}
            try:
                return await self.scorer.ascore(rubric, item)
            except Exception:  # the engine records errors as verdicts; anything else is one failed response
                return None

        records = await asyncio.gather(*(one(i, r) for i, r in enumerate(self.group.responses)))
        scored = [(i, r) for i, r in enumerate(records) if r is not None and r.reward is not None]
        failed = len(records) - len(scored)
        self.stats.add("scored", len(scored))
        if failed:
            self.stats.add("score_failures", failed)
        return scored

    def measure(self, rubric: Rubric, scored: list[tuple[int, ScoreRecord]], round_: int | str) -> dict[str, Any]:
        """The round's record: top two, rewards, gap, pass rates (scored must hold at least two)."""
        ranked = sorted(scored, key=lambda pair: (-(pair[1].reward or 0.0), pair[0]))
        (first, best), (second, runner_up) = ranked[0], ranked[1]
        rates = pass_rates(rubric, [record for _, record in scored])
        return {"round": round_, "criteria": len(rubric.criteria), "scored": len(scored),
                "failed": len(self.group.responses) - len(scored), "top_two": [first, second],
                "rewards": [round(best.reward or 0.0, 4), round(runner_up.reward or 0.0, 4)],
                "gap": round((best.reward or 0.0) - (runner_up.reward or 0.0), 4), "pass_rates": rates,
                "mean_abs_rate_minus_half": _mean_distance(rates)}

    async def revise(self, rubric: Rubric, entry: Mapping[str, Any], round_: int) -> tuple[Rubric, list[str]]:
        """The generator's revision separating the current top two (raises :class:`GenerationFailed`)."""
        first, second = entry["top_two"]
        variables = {
            **pair_material_data(self.group.prompt, self.group.responses[first], self.group.responses[second],
                                 self.group.reference),
            "reward_a": f"{entry['rewards'][0]:.3f}", "reward_b": f"{entry['rewards'][1]:.3f}",
            "criteria": [{"id": c.id, "text": neutralize(c.text), "weight": f"{c.weight:g}",
                          "pass_rate": "n/a" if entry["pass_rates"].get(c.id) is None
                          else f"{entry['pass_rates'][c.id]:.2f}"} for c in rubric.criteria],
        }
        criteria, edits = await ajson_reply(self.ctx.generator, "tail_revise", variables, parse_criteria,
                                            salt=f"tail/{self.group.id}/round{round_}",
                                            schema=tail_revise_schema([c.id for c in rubric.criteria]))
        return self._rubric(criteria, rubric), edits

    async def run(self, start: Rubric, rounds: int) -> tuple[Rubric | None, str | None]:
        """The refined rubric (``None`` when nothing could be measured) and the reason the loop stopped early."""
        rubric, stop = start, None
        for round_ in range(rounds + 1):
            final = round_ == rounds
            scored = await self.score(rubric)
            if len(scored) < 2:
                stop = f"fewer than 2 responses scored ({len(scored)} of {len(self.group.responses)})"
                self.history.append({"round": "final" if final else round_, "stopped": stop})
                break
            entry = self.measure(rubric, scored, "final" if final else round_)
            self.history.append(entry)
            if final:
                break
            self.stats.add("rounds")
            try:
                rubric, edits = await self.revise(rubric, entry, round_)
            except GenerationFailed as failure:
                self.stats.add("revisions_failed")
                self.stats.reject(f"revision: {failure.reason.split(' (', 1)[0]}")
                entry["edits"], entry["revision"] = None, f"kept the previous rubric: {failure.reason}"
                continue
            self.stats.add("revisions")
            entry["edits"], entry["revision"] = edits, "applied"
        measured = any("top_two" in entry for entry in self.history)
        return (rubric if measured else None), stop


async def _one(group: PromptGroup, ctx: GenContext, scorer: Any, general: Rubric | None,
               by_prompt: dict[str, Rubric] | None, rounds: int, source: str | None,
               parameters: Mapping[str, Any]) -> tuple[Rubric | None, Stats, str | None]:
    refiner = _Refiner(group, ctx, scorer)
    if len(group.responses) < 2:
        refiner.stats.reject("fewer than 2 responses")
        return None, refiner.stats, f"needs at least 2 responses, has {len(group.responses)}"
    earlier: list[dict[str, Any]] = []
    if by_prompt is not None:
        if group.id not in by_prompt:
            refiner.stats.reject("no starting rubric for the prompt")
            return None, refiner.stats, f"the rubric set has no rubric for prompt_id {group.id!r}"
        start = by_prompt[group.id]
    elif general is not None:
        start = general
    else:
        try:
            start = await refiner.propose()
        except GenerationFailed as failure:
            refiner.stats.reject(f"proposal: {failure.reason.split(' (', 1)[0]}")
            return None, refiner.stats, f"no starting rubric could be proposed: {failure.reason}"
    if start.provenance is not None:
        earlier = list(start.provenance.history)
    rubric, stop = await refiner.run(start, rounds)
    if rubric is None:
        return None, refiner.stats, stop or "nothing measured"
    history = earlier + [{"step": "tail", **entry} for entry in refiner.history]
    stats = refiner.stats.as_dict()
    if stop:
        stats["stopped"] = stop
    final = next((e for e in reversed(refiner.history) if "top_two" in e), {})
    stats["final_gap"] = final.get("gap")
    stats["final_mean_abs_rate_minus_half"] = final.get("mean_abs_rate_minus_half")
    provenance = make_provenance("tail", ctx, source=source, parameters=parameters, stats=stats)
    provenance = provenance.model_copy(update={"history": history})
    try:
        rubric = make_rubric(**{**rubric.model_dump(exclude={"provenance"}), "id": rubric_id_for("tail", group.id),
                                "scope": "prompt", "prompt_id": group.id, "provenance": provenance.model_dump()})
    except GenerationFailed as failure:
        refiner.stats.reject("invalid rubric")
        return None, refiner.stats, failure.reason
    return rubric, refiner.stats, None


async def agenerate(groups: list[PromptGroup], ctx: GenContext, *, source: str | None,
                    rubric: str | Path | Rubric | None = None, rounds: int = 3) -> GenerationResult:
    """Chasing the Tail: refine one rubric per prompt so that it separates the top two of its strong responses
    (module docstring). ``rubric``: a general rubric file, a rubric set (``*.jsonl``), or ``None`` to propose one
    per prompt."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    from ..judge.engine import Judge

    general, by_prompt = _starting_rubrics(rubric)
    parameters = {"rounds": rounds, "rubric": None if rubric is None else
                  (rubric.id if isinstance(rubric, Rubric) else Path(rubric).as_posix())}
    # One call per response: the same backend object (not closed by this Judge) with the judge's other options.
    scorer = Judge(ctx.judge.backend, options=ctx.judge.options.model_copy(update={"mode": "per_response"}))
    scorer.accounting = ctx.judge.accounting  # its calls are the judge's calls in the run's accounting
    try:
        outcomes = await asyncio.gather(*(_one(group, ctx, scorer, general, by_prompt, rounds, source, parameters)
                                          for group in groups))
    finally:
        await scorer.aclose()
    return collect("tail", ctx, groups, outcomes)
