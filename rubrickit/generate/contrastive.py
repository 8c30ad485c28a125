"""``contrastive``: OpenRubrics' Contrastive Rubric Generation (CRG), with CDRRM's diagnose-then-synthesise variant.

Algorithm (OpenRubrics, "OpenRubrics: Towards Scalable Synthetic Rubric Generation for Reward Modeling and LLM
Alignment", 2025), per prompt group with at least one labelled pair:

1. **Generating pair.** The group's pair: for a single labelled pair that pair; for a ranked list (or several rows
   of one prompt) the pair with the widest gap, i.e. the best against the worst response (by wins − losses over the
   group's labelled pairs).
2. **Contrastive generation** (``contrastive_generate.j2``). The generator sees the prompt and the two responses in a
   random-but-deterministic order (a hash of group, pair and try), labelled neutrally A/B, and is told which label
   was preferred. It writes *hard rules* (explicit constraints of the request → ``kind: hard``) and *principles*
   (general qualities explaining the preference → ``kind: principle``), all weight 1. Principles must be abstract:
   a principle with a digit, and any item that points at a response ("Response A", "the first response", "the
   preferred answer"), is dropped and counted.
3. **Preference-label consistency** (rejection sampling). The candidate rubric judges every labelled pair of the
   group with :func:`~rubrickit.generate.common.judge_pair` (``--compare pairwise``: per criterion, both orders;
   ``pointwise``: score both responses). It is kept when accuracy over the group's pairs ≥ ``min_accuracy`` *and*
   the generating pair itself is judged right; a judge failure or a tie counts as wrong, never as right. Otherwise
   the next try (a new salt ``try{n}``, so a new sample and a new A/B order) — at most ``max_tries``. A malformed
   generation (after the generator's re-asks) is a failed try with its reason.
4. With ``keep_inconsistent`` the last judged attempt of a group that never passed is kept and marked
   (``provenance.stats.consistent: false``); otherwise the group is skipped ("inconsistent after N tries", or "no
   usable generation after N tries" when no try produced a rubric at all).

``diagnose=True`` replaces step 2 with CDRRM ("Contrastive-Driven Rubric Reward Model"): first a structured
diagnosis of each response of the generating pair on its own (``contrastive_diagnose.j2``: findings with status
present/missing/violated, severity and a verbatim evidence quote; a finding whose quote is not in the response is
dropped and counted in ``findings_dropped``; a "missing" finding may have no quote), then a synthesis
(``contrastive_synthesize.j2``) from both verified diagnoses of ``must`` rules (``kind: hard``, weight +1),
``forbid`` rules (``kind: hard``, weight −1, the statement names the forbidden behaviour so that holding is bad; a
forbid rule written negated, "does not …", would invert its polarity and is dropped) and at most
``MAX_DIAGNOSE_PRINCIPLES`` principles. Each rule's verifiable test is kept **in the criterion text**
(``"<rule> Test: <test>"``) so the judge sees how to verify it and the criterion fingerprint covers it; the tags
``rule:must``/``rule:forbid`` mark the origin. A rule without a test is dropped. Then step 3 as above.

Reading replies. Small models write malformed output: each generation is re-asked with the reason (the
generator's ``reasks``), then the try fails. Tolerated where it costs nothing: any spelling of the keys
(``"Hard Rules"``, ``hardRules``), a single ``criteria`` list of OpenRubrics-style items tagged ``[Hard Rule]`` /
``[Principle]`` (or objects with a ``kind``), a bare JSON list, and — only when the reply holds no JSON object —
OpenRubrics' plain numbered list with those tags or list items under ``Hard rules:`` / ``Principles:`` headings
(:func:`plain_contrastive`). Nothing is guessed: an item without a kind is dropped, prose is re-asked. The readers
are in :mod:`rubrickit.generate.contrastive_replies`.

Output: one rubric per kept group (``scope: prompt``, ``prompt_id`` = the group id, id ``contrastive-<slug>``) with
provenance ``method: contrastive`` (or ``contrastive+diagnose``) and per-prompt statistics (tries, accuracy,
pairs_checked, consistent, rejection reasons).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rubrickit.data.preferences import Comparison, PromptGroup
from rubrickit.judge.reply_schemas import contrastive_schema, diagnosis_schema, synthesis_schema

from ..errors import RubrickitError
from ..judge.prompts import conversation_data, neutralize, pair_material_data
from ..rubric import Rubric
from .common import (
    GenContext,
    GenerationFailed,
    GenerationResult,
    Stats,
    judge_pair,
    make_criteria,
    make_provenance,
    make_rubric,
)
from .contrastive_replies import (
    MAX_DIAGNOSE_PRINCIPLES,
    MAX_FINDINGS,
    MAX_PRINCIPLES,
    MAX_RULES,
    _defused,
    _Items,
    ask,
    bare_list,
    findings_parser,
    parse_contrastive,
    parse_synthesis,
    plain_contrastive,
    plain_findings,
    quote_in,
)

__all__ = [
    "MAX_DIAGNOSE_PRINCIPLES",
    "MAX_FINDINGS",
    "MAX_PRINCIPLES",
    "MAX_RULES",
    "agenerate",
    "ask",
    "bare_list",
    "findings_parser",
    "generating_pair",
    "parse_contrastive",
    "parse_synthesis",
    "plain_contrastive",
    "plain_findings",
    "quote_in",
]

# --------------------------------------------------------------------------- the method


def generating_pair(group: PromptGroup) -> Comparison:
    """The pair a group's rubric is written from: the widest gap by wins − losses (best vs worst of a ranked list;
    the only pair of a single labelled pair; the first such pair on ties)."""
    score: Counter[int] = Counter()
    for comparison in group.comparisons:
        score[comparison.better] += 1
        score[comparison.worse] -= 1
    return max(group.comparisons, key=lambda c: score[c.better] - score[c.worse])


def _flip(group: PromptGroup, pair: Comparison, attempt: int) -> bool:
    """Whether the preferred response is shown second in this try (random but deterministic)."""
    digest = hashlib.sha256(f"{group.id}\x00{pair.pair_id}\x00{attempt}".encode()).digest()
    return bool(digest[0] & 1)


_ID_CHARS = re.compile(r"[^a-z0-9._-]+")


def _rubric_id(group_id: str, taken: set[str]) -> str:
    slug = _ID_CHARS.sub("-", group_id.lower()).strip("-._")[:40].strip("-._") or "prompt"
    rid = f"contrastive-{slug}"
    if rid in taken:
        rid = f"{rid}-{hashlib.sha256(group_id.encode()).hexdigest()[:8]}"
    taken.add(rid)
    return rid


@dataclass
class _Options:
    max_tries: int
    keep_inconsistent: bool
    diagnose: bool
    min_accuracy: float

    @property
    def method(self) -> str:
        return "contrastive+diagnose" if self.diagnose else "contrastive"


@dataclass
class _Outcome:
    rubric: Rubric | None
    stats: Stats
    reason: str | None = None
    detail: str | None = None


class _GroupRun:
    """Rejection sampling for one prompt group."""

    def __init__(self, group: PromptGroup, ctx: GenContext, options: _Options, source: str | None, rubric_id: str):
        self.group, self.ctx, self.options, self.source, self.rubric_id = group, ctx, options, source, rubric_id
        self.pair = generating_pair(group)
        self.stats = Stats()
        self.findings_dropped: Counter[str] = Counter()
        self.criteria_dropped: Counter[str] = Counter()
        self.diagnoses: dict[int, list[dict[str, str]]] = {}

    def _shown(self, attempt: int) -> tuple[int, int, str]:
        """Response indices in the order shown (A, B) and the label of the preferred one."""
        better, worse = self.pair.better, self.pair.worse
        return (worse, better, "B") if _flip(self.group, self.pair, attempt) else (better, worse, "A")

    async def _crg_items(self, salt: str, attempt: int) -> _Items:
        first, second, preferred = self._shown(attempt)
        responses = self.group.responses
        variables = {**pair_material_data(self.group.prompt, responses[first], responses[second],
                                          self.group.reference),
                     "preferred": preferred, "rejected": "B" if preferred == "A" else "A",
                     "max_rules": MAX_RULES, "max_principles": MAX_PRINCIPLES}
        return await ask(self.ctx.generator, "contrastive_generate", _defused(variables), parse_contrastive,
                         plain_contrastive, salt=salt, schema=contrastive_schema(MAX_RULES, MAX_PRINCIPLES))

    async def _diagnosis(self, index: int, salt: str) -> list[dict[str, str]]:
        if index not in self.diagnoses:
            response = self.group.responses[index]
            variables = {"conversation": conversation_data(self.group.prompt), "response": neutralize(response),
                         "reference": neutralize(self.group.reference) if self.group.reference is not None else None,
                         "max_findings": MAX_FINDINGS}
            parse = findings_parser(response, self.findings_dropped)
            findings = await ask(self.ctx.generator, "contrastive_diagnose", _defused(variables), parse,
                                 plain_findings, salt=f"{salt}/r{index}", schema=diagnosis_schema(MAX_FINDINGS))
            self.diagnoses[index] = findings
        return self.diagnoses[index]

    async def _cdrrm_items(self, salt: str, attempt: int) -> _Items:
        first, second, preferred = self._shown(attempt)
        found = await asyncio.gather(self._diagnosis(first, salt), self._diagnosis(second, salt),
                                     return_exceptions=True)
        for outcome in found:
            if isinstance(outcome, GenerationFailed):
                raise GenerationFailed(f"diagnosis: {outcome.reason}")
            if isinstance(outcome, BaseException):
                raise outcome
        variables = {"conversation": conversation_data(self.group.prompt),
                     "findings_a": [_finding_data(f) for f in found[0]],  # type: ignore[union-attr]
                     "findings_b": [_finding_data(f) for f in found[1]],  # type: ignore[union-attr]
                     "preferred": preferred, "rejected": "B" if preferred == "A" else "A",
                     "max_rules": MAX_RULES, "max_principles": MAX_DIAGNOSE_PRINCIPLES}
        try:
            return await ask(self.ctx.generator, "contrastive_synthesize", _defused(variables), parse_synthesis,
                             salt=salt, schema=synthesis_schema(MAX_RULES, MAX_DIAGNOSE_PRINCIPLES))
        except GenerationFailed as error:
            raise GenerationFailed(f"synthesis: {error.reason}") from None

    def _rubric(self, items: _Items, stats: Mapping[str, Any]) -> Rubric:
        ordered = [c for c in items.criteria if c["kind"] == "hard"] + \
                  [c for c in items.criteria if c["kind"] == "principle"]
        parameters = {"max_tries": self.options.max_tries, "min_accuracy": self.options.min_accuracy,
                      "keep_inconsistent": self.options.keep_inconsistent, "diagnose": self.options.diagnose,
                      "compare": self.ctx.compare, "temperature": self.ctx.generator.temperature}
        return make_rubric(
            id=self.rubric_id, title=f"Contrastive rubric for {self.group.id}"[:200], scope="prompt",
            prompt_id=self.group.id, prompt=self.group.text, criteria=make_criteria(ordered),
            provenance=make_provenance(self.options.method, self.ctx, source=self.source, parameters=parameters,
                                       stats=stats))

    async def _check(self, rubric: Rubric) -> tuple[float, bool]:
        """Accuracy over the group's labelled pairs, and whether the generating pair was judged right."""
        pairs = self.group.pairs()
        outcomes = await asyncio.gather(*(judge_pair(self.ctx, rubric, self.group.prompt, better, worse, pair_id)
                                          for pair_id, better, worse in pairs))
        self.stats.add("pairs_judged", len(pairs))
        self.stats.add("judge_failures", sum(o.correct is None for o in outcomes))
        right = [o.correct is True for o in outcomes]
        pair_right = all(r for (pair_id, _, _), r in zip(pairs, right, strict=True) if pair_id == self.pair.pair_id)
        return sum(right) / len(right), pair_right

    def _provenance_stats(self, tries: int, accuracy: float, consistent: bool) -> dict[str, Any]:
        stats = self.stats.as_dict()
        stats.update(tries=tries, accuracy=round(accuracy, 4), pairs_checked=len(self.group.comparisons),
                     consistent=consistent, generating_pair=self.pair.pair_id)
        if self.criteria_dropped:
            stats["criteria_dropped"] = dict(sorted(self.criteria_dropped.items()))
        if self.options.diagnose:
            stats["findings_dropped"] = dict(sorted(self.findings_dropped.items()))
        return stats

    async def run(self) -> _Outcome:
        last: tuple[_Items, float, int] | None = None
        last_reason = ""
        for attempt in range(self.options.max_tries):
            self.stats.add("tries")
            salt = f"try{attempt}"
            try:
                items = await (self._cdrrm_items if self.options.diagnose else self._crg_items)(salt, attempt)
                self.criteria_dropped.update(items.dropped)
                candidate = self._rubric(items, {})
            except GenerationFailed as error:
                self.stats.add("parse_failures")
                self.stats.reject(f"malformed generation: {error.reason}")
                last_reason = error.reason
                continue
            accuracy, pair_right = await self._check(candidate)
            if accuracy >= self.options.min_accuracy and pair_right:
                stats = self._provenance_stats(attempt + 1, accuracy, True)
                return _Outcome(self._rubric(items, stats), self.stats)
            self.stats.add("consistency_rejections")
            self.stats.reject("generating pair judged wrong" if not pair_right else
                              f"accuracy below {self.options.min_accuracy:g}")
            last = (items, accuracy, attempt + 1)
        tries = self.options.max_tries
        if last is None:
            return _Outcome(None, self.stats, f"no usable generation after {tries} tries", last_reason or None)
        if self.options.keep_inconsistent:
            items, accuracy, _ = last
            self.stats.add("kept_inconsistent")
            return _Outcome(self._rubric(items, self._provenance_stats(tries, accuracy, False)), self.stats)
        return _Outcome(None, self.stats, f"inconsistent after {tries} tries", f"last accuracy {last[1]:.2f}")


def _finding_data(finding: Mapping[str, str]) -> dict[str, str]:
    """A verified finding as template data: derived from untrusted text, so neutralised like it."""
    return {key: neutralize(value) for key, value in finding.items()}


async def agenerate(groups: list[PromptGroup], ctx: GenContext, *, source: str | None, max_tries: int = 3,
                    keep_inconsistent: bool = False, diagnose: bool = False,
                    min_accuracy: float = 0.5) -> GenerationResult:
    """Contrastive rubric generation (OpenRubrics CRG; CDRRM with ``diagnose``) over prompt groups.

    Returns one ``scope: prompt`` rubric per group whose rubric recovered its preference labels (see the module
    docs); every other group is in ``skipped`` with its reason. Run statistics: prompts, kept, skipped, tries,
    consistency_rejections, parse_failures, judge_failures and the reasons.
    """
    if max_tries < 1:
        raise RubrickitError(f"contrastive: --max-tries must be at least 1, got {max_tries}")
    if not 0.0 <= min_accuracy <= 1.0:
        raise RubrickitError(f"contrastive: --min-accuracy must be between 0 and 1, got {min_accuracy}")
    options = _Options(max_tries, keep_inconsistent, diagnose, min_accuracy)
    taken: set[str] = set()
    runs: list[_GroupRun | None] = []
    skipped: list[dict[str, str]] = []
    for group in groups:
        runs.append(_GroupRun(group, ctx, options, source, _rubric_id(group.id, taken)) if group.comparisons
                    else None)
    outcomes = await asyncio.gather(*(run.run() for run in runs if run is not None))
    results = iter(outcomes)
    rubrics: list[Rubric] = []
    skip_reasons: Counter[str] = Counter()
    for group, run in zip(groups, runs, strict=True):
        outcome = next(results) if run is not None else _Outcome(None, Stats(), "no labelled pair")
        ctx.stats.merge(outcome.stats)
        if outcome.rubric is not None:
            rubrics.append(outcome.rubric)
            continue
        entry = {"prompt_id": group.id, "reason": outcome.reason or "unknown"}
        if outcome.detail:
            entry["detail"] = outcome.detail
        skipped.append(entry)
        skip_reasons[entry["reason"]] += 1
    done = [run for run in runs if run is not None]
    ctx.stats.add("criteria_dropped", sum(sum(run.criteria_dropped.values()) for run in done))
    if diagnose:
        ctx.stats.add("findings_dropped", sum(sum(run.findings_dropped.values()) for run in done))
    stats = {"prompts": len(groups), "kept": len(rubrics), "skipped": len(skipped)}
    run_stats = ctx.stats.as_dict()
    names = ["tries", "consistency_rejections", "parse_failures", "judge_failures", "pairs_judged",
             "kept_inconsistent", "criteria_dropped"] + (["findings_dropped"] if diagnose else [])
    for name in names:
        stats[name] = run_stats.pop(name, 0)
    stats.update(run_stats)
    if skip_reasons:
        stats["skip_reasons"] = dict(sorted(skip_reasons.items()))
    return GenerationResult(method=options.method, rubrics=rubrics, stats=stats, skipped=skipped)
