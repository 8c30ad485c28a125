"""``reference`` — reference-guided checklists, after *Rubrics as Rewards: Reinforcement Learning Beyond Verifiable
Domains* (RaR, Gunjal et al., 2025).

For every prompt that has a reference answer, the generator reads the prompt and the reference and writes
``min_items``..``max_items`` self-contained checklist items (RaR uses 7–20). Each item states its **category** —
Essential, Important, Optional or Pitfall — and a **weight** 1–5. The category alone decides the polarity: a Pitfall
is stored with an explicit negative weight and is phrased so that *holding* is the flaw ("The response recommends
…"); nothing is inferred from an item's wording (DESIGN §3, §7). The reference itself stays with the data: the
judge sees it at scoring time, the rubric only records its digest in provenance.

Validation of one reply:

- the item list is found under ``items`` (or ``criteria``/``rubric``/``checklist``…), or is a bare JSON list;
- an item without text, with an unknown category, or without a numeric weight is dropped and counted;
- a weight outside 1..5 is clamped and counted (a pitfall's own minus sign is expected and not counted);
- duplicate texts are dropped and counted;
- fewer than ``min_items`` usable items: the generator is re-asked with the reason, then sampled again with a new
  salt, up to ``max_tries`` samples, after which the prompt is skipped with the reason;
- more than ``max_items``: the first ``max_items`` are kept and the truncation is counted.

Per-rubric provenance stats: ``tries``, ``items``, per-category counts (``essential`` …), ``truncated``,
``clamped`` and the dropped items by reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from rubrickit.data.preferences import PromptGroup
from rubrickit.judge.reply_schemas import reference_schema

from ..judge.parse import json_objects
from ..judge.prompts import conversation_data, neutralize
from .common import (
    GenContext,
    GenerationFailed,
    GenerationResult,
    Generator,
    Stats,
    collect,
    make_criteria,
    make_provenance,
    make_rubric,
)

__all__ = ["CATEGORIES", "agenerate", "ajson_reply", "item_list", "number", "parse_items", "rubric_id_for"]

T = TypeVar("T")

CATEGORIES = ("essential", "important", "optional", "pitfall")
"""RaR's categories, stored lowercase; ``pitfall`` items carry negative weights."""

_LIST_KEYS = ("items", "criteria", "criterion", "rubric", "rubrics", "rubricitems", "checklist", "checklistitems",
              "list")
_TEXT_KEYS = ("text", "criterion", "statement", "description", "item", "title")
_CATEGORY_KEYS = ("category", "type", "label", "class")
_LABEL_PREFIX = re.compile(r"^\s*(essential|important|optional|pitfall)s?(?:\s+criteri(?:a|on))?\s*:\s*", re.I)
_FENCE = re.compile(r"```[A-Za-z]*")


def _norm(key: Any) -> str:
    return re.sub(r"[^a-z]", "", str(key).lower())


def _field(obj: Mapping[str, Any], names: Sequence[str]) -> Any:
    by_norm = {_norm(k): v for k, v in obj.items()}
    for name in names:
        if name in by_norm:
            return by_norm[name]
    return None


def item_list(obj: Mapping[str, Any]) -> list[Any] | None:
    """The list of items in a reply object: under ``items``/``criteria``/``rubric``/``checklist`` (any case or
    spacing; one level of nesting, e.g. ``{"rubric": {"criteria": [...]}}``), or ``None``."""
    value = _field(obj, _LIST_KEYS)
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        inner = _field(value, _LIST_KEYS)
        if isinstance(inner, list):
            return inner
    # A slightly different spelling ("criteria_list", "rubric_criteria"): the one list-valued key naming them.
    lists = [v for k, v in obj.items() if isinstance(v, list) and re.search(r"item|criteri|rubric", _norm(k))]
    return lists[0] if len(lists) == 1 else None


def _candidates(text: str) -> list[dict[str, Any]]:
    """Reply objects to try, last first; a reply that is a bare JSON list counts as ``{"items": list}``."""
    stripped = _FENCE.sub("", text)
    start_list, start_obj = stripped.find("["), stripped.find("{")
    if start_list >= 0 and (start_obj < 0 or start_list < start_obj):
        try:
            value, _ = json.JSONDecoder().raw_decode(stripped[start_list:])
        except ValueError:
            value = None
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            return [{"items": value}]
    return [o for o in reversed(json_objects(text)) if item_list(o) is not None]


async def ajson_reply(generator: Generator, template: str, variables: Mapping[str, Any],
                      parse: Callable[[dict[str, Any]], T], *, salt: str = "",
                      schema: Mapping[str, Any] | None = None) -> T:
    """Like :meth:`Generator.ajson` (``schema`` included), tolerant of the list shapes small models write: the last
    object holding an item list wins, and a bare JSON list is accepted. ``parse`` raises ``ValueError`` with a
    reason to re-ask."""

    def read(text: str) -> T:
        candidates = _candidates(text)
        if not candidates:
            raise ValueError("no JSON object with an item list in the reply" if json_objects(text) or "[" in text
                             else "no JSON object in the reply")
        return parse(candidates[0])

    return await generator.aread(template, variables, read, salt=salt, schema=schema)


def rubric_id_for(method: str, prompt_id: str) -> str:
    """A valid rubric id for a per-prompt rubric: ``<method>-<prompt id as a slug>``."""
    slug = re.sub(r"[^A-Za-z0-9_.:-]+", "-", prompt_id).strip("-_.:")
    return f"{method}-{slug or hashlib.sha256(prompt_id.encode()).hexdigest()[:12]}"


def number(value: Any) -> float | None:
    """A finite number from a JSON value (a number or a numeric string; booleans are not numbers), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _category(raw: Mapping[str, Any], text: str) -> tuple[str | None, str]:
    """The stated category (lowercase, or ``None`` when unknown) and the text without a RaR label prefix."""
    stated = _field(raw, _CATEGORY_KEYS)
    prefix = _LABEL_PREFIX.match(text)
    if stated is None and prefix:  # RaR's own format states the label as "Pitfall Criteria: ..."
        stated = prefix.group(1)
    if prefix and stated is not None and _norm(prefix.group(1)) == _clean_category(stated):
        text = text[prefix.end():].strip()
    return _clean_category(stated), text


def _clean_category(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    word = re.sub(r"criteri(a|on)$|items?$", "", _norm(value))
    word = word[:-1] if word.endswith("s") and word[:-1] in CATEGORIES else word
    return word if word in CATEGORIES else None


def parse_items(obj: Mapping[str, Any], *, min_items: int, max_items: int) -> tuple[list[dict[str, Any]], Stats]:
    """Validate one reply (see the module docstring): the usable items as criterion dicts (signed weights, category
    lowercase) and the counts of what was dropped, clamped and truncated. Raises ``ValueError`` when there are
    fewer than ``min_items`` usable items."""
    raw_items = item_list(obj)
    if raw_items is None:
        raise ValueError('no "items" list in the JSON object')
    counts = Stats()
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in raw_items:
        text_value = _field(raw, _TEXT_KEYS) if isinstance(raw, Mapping) else None
        if not isinstance(text_value, str) or not text_value.strip():
            counts.reject("item without text")
            continue
        category, text = _category(raw, text_value.strip())
        if category is None:
            counts.reject("unknown category")
            continue
        weight = number(_field(raw, ("weight", "points", "score")))
        if weight is None:
            counts.reject("weight not a number")
            continue
        magnitude = abs(weight) if category == "pitfall" else weight
        if not 1 <= magnitude <= 5:
            counts.add("clamped")
            magnitude = min(5.0, max(1.0, magnitude))
        key = " ".join(text.lower().split())
        if not text or key in seen:
            counts.reject("duplicate item" if text else "item without text")
            continue
        seen.add(key)
        items.append({"text": text, "category": category,
                      "weight": -magnitude if category == "pitfall" else magnitude})
    if len(items) < min_items:
        dropped = "; ".join(f"{reason} ×{n}" for reason, n in counts.reasons.most_common())
        raise ValueError(f"only {len(items)} usable items, need {min_items} to {max_items}"
                         + (f" (dropped: {dropped})" if dropped else ""))
    if len(items) > max_items:
        counts.add("truncated")
        counts.add("truncated_items", len(items) - max_items)
        items = items[:max_items]
    return items, counts


async def _one(group: PromptGroup, ctx: GenContext, source: str | None, parameters: Mapping[str, Any],
               min_items: int, max_items: int, max_tries: int) -> tuple[Any, Stats, str | None]:
    """One prompt's rubric (or ``None``), its stats and the skip reason."""
    stats = Stats()
    if not group.reference or not group.reference.strip():
        stats.reject("no reference answer")
        return None, stats, "no reference answer"
    variables = {"conversation": conversation_data(group.prompt), "reference": neutralize(group.reference),
                 "min_items": min_items, "max_items": max_items}

    def parse(obj: dict[str, Any]) -> tuple[list[dict[str, Any]], Stats]:
        return parse_items(obj, min_items=min_items, max_items=max_items)

    reason = "no tries"
    for attempt in range(max_tries):
        stats.add("tries")
        try:
            items, counts = await ajson_reply(ctx.generator, "reference_items", variables, parse,
                                              salt=f"reference/{group.id}/try{attempt}",
                                              schema=reference_schema(min_items, max_items))
        except GenerationFailed as failure:
            reason = failure.reason
            stats.reject(_reason_kind(reason))
            continue
        stats.merge(counts)
        stats.add("items", len(items))
        for category in CATEGORIES:
            stats.add(category, sum(item["category"] == category for item in items))
        digest = hashlib.sha256(group.reference.encode("utf-8")).hexdigest()[:16]
        provenance = make_provenance("reference", ctx, source=source, parameters=parameters,
                                     stats={**stats.as_dict(), "reference": f"sha256:{digest}"}, judge_used=False)
        try:
            rubric = make_rubric(id=rubric_id_for("reference", group.id), title="Reference-guided checklist (RaR)",
                                 scope="prompt", prompt_id=group.id, prompt=group.text, aggregation="weighted_mean",
                                 criteria=make_criteria(items), provenance=provenance)
        except GenerationFailed as failure:
            reason = failure.reason
            stats.reject("invalid rubric")
            continue
        return rubric, stats, None
    return None, stats, f"no usable checklist after {max_tries} tries: {reason}"


def _reason_kind(reason: str) -> str:
    """A countable reason: the variable part (numbers, details) stripped."""
    if reason.startswith("only "):
        return "too few items"
    return reason.split(" (", 1)[0]


async def agenerate(groups: list[PromptGroup], ctx: GenContext, *, source: str | None, min_items: int = 7,
                    max_items: int = 20, max_tries: int = 3) -> GenerationResult:
    """Rubrics as Rewards: one reference-guided checklist per prompt with a reference answer (module docstring).

    Prompts without a reference, and prompts whose replies never gave ``min_items`` usable items in ``max_tries``
    samples, are skipped with the reason.
    """
    if not 1 <= min_items <= max_items:
        raise ValueError(f"need 1 <= min_items <= max_items, got min_items={min_items}, max_items={max_items}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1, got {max_tries}")
    parameters = {"min_items": min_items, "max_items": max_items, "max_tries": max_tries}
    outcomes = await asyncio.gather(*(_one(group, ctx, source, parameters, min_items, max_items, max_tries)
                                      for group in groups))
    return collect("reference", ctx, groups, outcomes)
