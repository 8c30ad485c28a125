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
(:func:`plain_contrastive`). Nothing is guessed: an item without a kind is dropped, prose is re-asked.

Output: one rubric per kept group (``scope: prompt``, ``prompt_id`` = the group id, id ``contrastive-<slug>``) with
provenance ``method: contrastive`` (or ``contrastive+diagnose``) and per-prompt statistics (tries, accuracy,
pairs_checked, consistent, rejection reasons).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rubrickit.data.preferences import Comparison, PromptGroup
from rubrickit.judge.reply_schemas import contrastive_schema, diagnosis_schema, synthesis_schema

from ..errors import RubrickitError
from ..judge.parse import json_objects
from ..judge.prompts import conversation_data, neutralize, pair_material_data
from ..rubric import Rubric
from .common import (
    GenContext,
    GenerationFailed,
    GenerationResult,
    Generator,
    Stats,
    judge_pair,
    make_criteria,
    make_provenance,
    make_rubric,
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

MAX_RULES = 8
"""Most hard rules (CRG) or must + forbid rules (diagnose) kept from one generation."""
MAX_PRINCIPLES = 8
"""Most principles kept from one CRG generation."""
MAX_DIAGNOSE_PRINCIPLES = 5
"""Most principles kept from one CDRRM synthesis ("a few")."""
MAX_FINDINGS = 10
"""Most findings asked for (and kept) per diagnosed response."""

T = TypeVar("T")

# --------------------------------------------------------------------------- tolerant reading of replies


def _key(name: object) -> str:
    return re.sub(r"[^a-z]", "", str(name).lower())


def _get(obj: Mapping[str, Any], *names: str) -> tuple[bool, Any]:
    """The value under any spelling of ``names`` (case, ``_``/``-``/space and digits ignored)."""
    wanted = {_key(n) for n in names}
    for key, value in obj.items():
        if _key(key) in wanted:
            return True, value
    return False, None


_TEXT_KEYS = ("text", "rule", "statement", "criterion", "principle", "description", "title", "item")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\))\s*")
_KIND_TAG = re.compile(r"^\s*\[(?P<tag>hard[ _-]?rule|principle)\]\s*[:.-]?\s*", re.IGNORECASE)
_RESPONSE_REF = re.compile(
    r"\b(?i:response|answer|output|assistant|completion|candidate)\s*[\"'(]?(?:[AB12]|one|two)\b[\"')]?"
    r"|\b(?i:first|second|preferred|rejected|chosen|other|winning|losing)\s+(?i:response|answer|output|assistant|"
    r"completion|candidate)\b")


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        text = item
    elif isinstance(item, Mapping):
        found, value = _get(item, *_TEXT_KEYS)
        text = value if found and isinstance(value, str) else ""
    else:
        text = ""
    return " ".join(_BULLET.sub("", text).split())


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Mapping)):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list, got {type(value).__name__}")
    return value


@dataclass
class _Items:
    """Criteria read from one reply, and what was dropped from it (reason → count)."""

    criteria: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)

    def add(self, text: str, kind: str, *, weight: float = 1.0, tags: Sequence[str] = (),
            abstract: bool = False) -> None:
        if not text:
            return
        if _RESPONSE_REF.search(text):
            self.dropped["refers to a response"] += 1
            return
        if abstract and re.search(r"\d", text):
            self.dropped["principle not abstract (contains a number)"] += 1
            return
        key = text.casefold().rstrip(".")
        if key in self.seen:
            self.dropped["duplicate"] += 1
            return
        self.seen.add(key)
        self.criteria.append({"text": text, "kind": kind, "weight": weight, "tags": list(tags)})

    def count(self, kind: str) -> int:
        return sum(1 for c in self.criteria if c["kind"] == kind)


def parse_contrastive(obj: Mapping[str, Any]) -> _Items:
    """Read a CRG reply: ``hard_rules`` + ``principles`` (any spelling), or one ``criteria`` list whose items are
    OpenRubrics-style strings tagged ``[Hard Rule]``/``[Principle]`` or objects with a ``kind``/``type``.

    Raises ``ValueError`` (a re-ask reason) when nothing usable is left.
    """
    items = _Items()
    has_hard, hard = _get(obj, "hard_rules", "hard_rule", "hard", "rules", "constraints", "hard_constraints")
    has_principles, principles = _get(obj, "principles", "principle", "general_principles", "qualities")
    has_mixed, mixed = _get(obj, "criteria", "rubric", "rubrics", "items")
    if not (has_hard or has_principles or has_mixed):
        raise ValueError('the object needs "hard_rules" and "principles" lists')
    for raw in _as_list(hard, "hard_rules")[: MAX_RULES * 2]:
        if items.count("hard") < MAX_RULES:
            items.add(_KIND_TAG.sub("", _item_text(raw)), "hard")
    for raw in _as_list(principles, "principles")[: MAX_PRINCIPLES * 2]:
        if items.count("principle") < MAX_PRINCIPLES:
            items.add(_KIND_TAG.sub("", _item_text(raw)), "principle", abstract=True)
    for raw in _as_list(mixed, "criteria"):
        kind = _mixed_kind(raw)
        if kind is None:
            items.dropped["item without a kind"] += 1
            continue
        limit = MAX_RULES if kind == "hard" else MAX_PRINCIPLES
        if items.count(kind) < limit:
            items.add(_KIND_TAG.sub("", _item_text(raw)), kind, abstract=kind == "principle")
    if not items.criteria:
        detail = f" (dropped: {', '.join(sorted(items.dropped))})" if items.dropped else ""
        raise ValueError(f"no usable hard rule or principle{detail}; write statements about a single response")
    return items


def _mixed_kind(raw: Any) -> str | None:
    if isinstance(raw, Mapping):
        found, value = _get(raw, "kind", "type", "category")
        label = _key(value) if found else ""
    else:
        match = _KIND_TAG.match(str(raw))
        label = _key(match.group("tag")) if match else ""
    if label.startswith("hard") or label in ("rule", "constraint"):
        return "hard"
    if label.startswith("principle"):
        return "principle"
    return None


_STATUS = {"present": "present", "satisfied": "present", "met": "present", "yes": "present",
           "missing": "missing", "absent": "missing", "omitted": "missing",
           "violated": "violated", "violation": "violated", "violates": "violated", "wrong": "violated"}
_SEVERITY = {"critical": "critical", "high": "critical", "major": "major", "medium": "major", "moderate": "major",
             "minor": "minor", "low": "minor"}


def _fold(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of a text, for quote matching."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return " ".join(text.split())


def quote_in(quote: str, response: str) -> bool:
    """Whether ``quote`` is verbatim in ``response`` (ignoring case, spacing, typographic quotes and surrounding
    quote marks; an ellipsis may join fragments that appear in order). The neutralised form of the response — what
    the model saw — counts too."""
    fragments = [f.strip(" \"'`") for f in re.split(r"\.\.\.|\u2026", _fold(quote))]
    fragments = [f for f in fragments if f]
    if not fragments:
        return False
    for haystack in {_fold(response), _fold(_defused(neutralize(response)))}:
        position = 0
        for fragment in fragments:
            found = haystack.find(fragment, position)
            if found < 0:
                break
            position = found + len(fragment)
        else:
            return True
    return False


def findings_parser(response: str, dropped: Counter[str]) -> Callable[[Mapping[str, Any]], list[dict[str, str]]]:
    """A parser for ``contrastive_diagnose`` replies about ``response``: keeps findings whose evidence is quoted
    from it and counts the rest in ``dropped`` (every reply read)."""

    def parse(obj: Mapping[str, Any]) -> list[dict[str, str]]:
        found, raw = _get(obj, "findings", "diagnosis", "issues", "observations")
        if not found:
            raise ValueError('the object needs a "findings" list')
        kept: list[dict[str, str]] = []
        quoted_any = False
        for item in _as_list(raw, "findings"):
            finding = _finding(item)
            if finding is None:
                dropped["invalid finding"] += 1
                continue
            evidence = finding["evidence"]
            if evidence:
                quoted_any = True
                if not quote_in(evidence, response):
                    dropped["evidence not in the response"] += 1
                    continue
            elif finding["status"] != "missing":
                dropped["evidence not in the response"] += 1
                continue
            if len(kept) < MAX_FINDINGS:
                kept.append(finding)
        if quoted_any and not any(f["evidence"] for f in kept):
            raise ValueError('no "evidence" was quoted exactly from the response; copy the words verbatim')
        return kept

    return parse


def _finding(item: Any) -> dict[str, str] | None:
    if not isinstance(item, Mapping):
        return None
    _, aspect = _get(item, "aspect", "requirement", "finding", "issue", "description")
    _, status = _get(item, "status")
    _, severity = _get(item, "severity", "importance")
    _, evidence = _get(item, "evidence", "quote", "span")
    status = _STATUS.get(_key(status))
    if not isinstance(aspect, str) or not aspect.strip() or status is None:
        return None
    return {"aspect": " ".join(aspect.split()), "status": status,
            "severity": _SEVERITY.get(_key(severity), "unspecified"),
            "evidence": evidence.strip() if isinstance(evidence, str) else ""}


_NEGATED = re.compile(r"^\s*(?:the\s+(?:response|answer)\s+)?(?:does\s+not|doesn't|do\s+not|must\s+not|should\s+not|"
                      r"cannot|never|avoids?|refrains?\s+from|is\s+not|isn't)\b", re.IGNORECASE)


def parse_synthesis(obj: Mapping[str, Any]) -> _Items:
    """Read a CDRRM synthesis reply: ``must`` and ``forbid`` rules (each ``{"rule", "test"}``) and ``principles``.

    Raises ``ValueError`` (a re-ask reason) when no usable rule or principle is left.
    """
    items = _Items()
    has_must, must = _get(obj, "must", "musts", "must_rules", "required", "requirements")
    has_forbid, forbid = _get(obj, "forbid", "forbidden", "forbids", "forbid_rules", "must_not", "prohibited")
    has_principles, principles = _get(obj, "principles", "principle", "general_principles")
    if not (has_must or has_forbid or has_principles):
        raise ValueError('the object needs "must", "forbid" and "principles" lists')
    rules = [(raw, "must") for raw in _as_list(must, "must")] + [(raw, "forbid") for raw in _as_list(forbid, "forbid")]
    for raw, polarity in rules:
        rule, test = _item_text(raw), ""
        if isinstance(raw, Mapping):
            _, value = _get(raw, "test", "check", "verification", "verify", "how_to_verify")
            test = " ".join(value.split()) if isinstance(value, str) else ""
        if not rule:
            items.dropped["empty rule"] += 1
            continue
        if not test:
            items.dropped["rule without a test"] += 1
            continue
        if polarity == "forbid" and _NEGATED.match(rule):
            items.dropped["forbid rule written negated"] += 1
            continue
        if items.count("hard") >= MAX_RULES:
            continue
        text = f"{rule.rstrip('.')}. Test: {test}"
        items.add(text, "hard", weight=1.0 if polarity == "must" else -1.0, tags=[f"rule:{polarity}"])
    for raw in _as_list(principles, "principles"):
        if items.count("principle") < MAX_DIAGNOSE_PRINCIPLES:
            items.add(_item_text(raw), "principle", abstract=True)
    if not items.criteria:
        detail = f" (dropped: {', '.join(sorted(items.dropped))})" if items.dropped else ""
        raise ValueError(f"no usable must/forbid rule or principle{detail}")
    return items


# --------------------------------------------------------------------------- asking, with plain-text forms

_FENCE = re.compile(r"^```[A-Za-z]*\s*|\s*```$")
_HEADING = re.compile(r"^\W*(?:the\s+)?(?P<name>hard[ _-]?rules?|principles?)\W*$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(?P<text>\S.*)$")


def bare_list(text: str) -> list[Any] | None:
    """The reply as a bare JSON list (code fences allowed), else ``None``."""
    stripped = _FENCE.sub("", text.strip()).strip()
    if not stripped.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def plain_contrastive(text: str) -> dict[str, Any] | None:
    """A CRG reply without a JSON object: a bare JSON list of items (read like ``criteria``), or OpenRubrics' plain
    form — lines tagged ``[Hard Rule]``/``[Principle]``, or list items under ``Hard rules:``/``Principles:``
    headings. ``None`` when the text has neither (nothing is guessed)."""
    found = bare_list(text)
    if found is not None:
        return {"criteria": found}
    hard: list[str] = []
    principles: list[str] = []
    section: list[str] | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            section = hard if heading.group("name").lower().startswith("hard") else principles
            continue
        tagged = _KIND_TAG.match(_BULLET.sub("", line))
        if tagged:
            (hard if tagged.group("tag").lower().startswith("hard") else principles).append(_BULLET.sub("", line))
            continue
        item = _LIST_ITEM.match(line)
        if item and section is not None:
            section.append(item.group("text"))
        elif line.strip() and not item:
            section = None  # prose ends a section: only listed items under a heading count
    if not hard and not principles:
        return None
    return {"hard_rules": hard, "principles": principles}


def plain_findings(text: str) -> dict[str, Any] | None:
    """A diagnosis reply that is a bare JSON list of findings."""
    found = bare_list(text)
    return {"findings": found} if found is not None else None


async def ask(generator: Generator, template: str, variables: Mapping[str, Any],
              parse: Callable[[Mapping[str, Any]], T], plain: Callable[[str], Mapping[str, Any] | None] | None = None,
              *, salt: str = "", schema: Mapping[str, Any] | None = None) -> T:
    """:meth:`Generator.ajson` (same salts, seeds, re-asks, ``schema`` and :class:`GenerationFailed`), tolerating
    one more thing: a reply without a JSON object may carry its answer in a plain form that ``plain(text)`` reads
    into the object ``parse`` takes (a bare JSON list; OpenRubrics' tagged list)."""

    def read(text: str) -> T:
        objects = json_objects(text)
        obj: Mapping[str, Any] | None = None
        if plain is not None and (bare_list(text) is not None or not objects):
            obj = plain(text)  # a bare list's items are not objects of their own; plain text has none
        elif objects:
            obj = objects[-1]
        if obj is None:
            raise ValueError("no JSON object in the reply")
        return parse(obj)

    return await generator.aread(template, variables, read, salt=salt, schema=schema)


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


_FINDINGS_TAG = re.compile(r"[<\uff1c\ufe64](\s*/?\s*findings\b)", re.IGNORECASE)


def _defused(value: Any) -> Any:
    """Template data with the ``<findings>`` delimiter of the synthesis template defused in every string (the
    engine's :func:`neutralize` already handles its own tags), so no text can close or open a findings block."""
    if isinstance(value, str):
        return _FINDINGS_TAG.sub(lambda match: "&lt;" + match.group(1), value)
    if isinstance(value, Mapping):
        return {key: _defused(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_defused(item) for item in value]
    return value


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
