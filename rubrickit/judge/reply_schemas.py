"""JSON Schemas of the generation replies, sent as structured output to backends that honour it.

Every generation prompt whose contract is a JSON object has a schema here, built from the run's limits
(``contrastive_schema(max_rules, max_principles)``, ...); :data:`SCHEMAS` maps each template name to its function.
A :class:`~rubrickit.generate.common.Generator` puts the schema on the request only when the backend's
``capabilities.json_schema`` is on; other backends get the same prompt without it, and the methods' tolerant readers
and re-asks serve them as before. Each schema accepts exactly replies that its reader can use, in the shape the
template's contract block shows (the readers also accept other spellings and shapes; the schema asks for one).

The schemas are written for constrained decoding by small local models (the ``hf`` backend compiles them into a
grammar) and are OpenAI-strict compatible:

- every object is closed (``additionalProperties: false``) with all its keys required; an optional value is a
  ``null`` alternative (a new criterion's ``id``), never a missing key;
- every array has ``minItems``/``maxItems`` from the method's limits, every free string a ``maxLength`` (and
  ``minLength: 1`` where an empty one is useless), fixed choices are enums (including the criterion ids a reply
  may cite). So a model held to the grammar closes the reply within a known size: :func:`max_reply_chars` measures
  it, and the bounds are chosen so that the largest reply at the methods' default limits fits the default
  ``max_tokens`` (1024; 256 for the overlap checks) at :data:`CHARS_PER_TOKEN`. A smaller budget gets the schema
  with lower bounds (:func:`fit_schema`, applied by the generator). A longer statement is cut at its ``maxLength``
  by the grammar, so the bounds leave room for a full sentence wherever the budget allows.

A limit that cannot be expressed in JSON Schema stays with the reader: the *combined* must + forbid count of a
synthesis, unique ids across themes, a rule's verifiable test being present.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "SCHEMAS",
    "TAIL_MAX_ADDED",
    "TAIL_MAX_PROPOSED",
    "contrastive_schema",
    "diagnosis_schema",
    "fit_schema",
    "max_reply_chars",
    "overlap_schema",
    "per_schema",
    "reference_schema",
    "rubrics_schema",
    "synthesis_schema",
    "tail_propose_schema",
    "tail_revise_schema",
    "themes_schema",
]

CHARS_PER_TOKEN = 4
"""Characters of a reply per token, for sizing the bounds (SmolLM2's tokenizer: 3.5 on short enum-heavy objects, 4.6
on sentence-heavy ones)."""
TAIL_MAX_PROPOSED = 8
"""Most criteria a first tail rubric may have (``tail_propose.j2`` asks for 4 to 8)."""
TAIL_MAX_ADDED = 4
"""How many criteria a tail revision may add to the current list (splits and new ones, net of deletions)."""

_MIN_LENGTH = 16
"""The shortest ``maxLength`` :func:`fit_schema` gives a string."""
_WEIGHTS = [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]


def _string(max_length: int, *, min_length: int = 1) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    return schema


def _array(items: dict[str, Any], min_items: int, max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}


def _object(properties: dict[str, Any], *, title: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(properties),
                              "additionalProperties": False}
    if title is not None:
        schema = {"title": title, **schema}  # names the schema in OpenAI's response_format
    return schema


def _id_enum(ids: Sequence[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(dict.fromkeys(ids))}


# --------------------------------------------------------------------------- contrastive (CRG, CDRRM)


def contrastive_schema(max_rules: int, max_principles: int) -> dict[str, Any]:
    """``contrastive_generate``: ``{"hard_rules": [str ≤ 240], "principles": [str ≤ 240]}``.

    Up to ``max_rules`` hard rules (none is fine: a request may state no constraint) and 1 to ``max_principles``
    principles, so a reply always holds something to keep.
    """
    return _object({"hard_rules": _array(_string(240), 0, max_rules),
                    "principles": _array(_string(240), min(1, max_principles), max_principles)},
                   title="contrastive_rules")


def diagnosis_schema(max_findings: int) -> dict[str, Any]:
    """``contrastive_diagnose``: 1 to ``max_findings`` findings ``{"aspect" ≤ 100, "status", "severity",
    "evidence" ≤ 200}``; ``evidence`` may be empty (a missing aspect has nothing to quote)."""
    finding = _object({
        "aspect": _string(100),
        "status": {"type": "string", "enum": ["present", "missing", "violated"]},
        "severity": {"type": "string", "enum": ["critical", "major", "minor"]},
        "evidence": _string(200, min_length=0),
    })
    return _object({"findings": _array(finding, min(1, max_findings), max_findings)}, title="diagnosis")


def synthesis_schema(max_rules: int, max_principles: int) -> dict[str, Any]:
    """``contrastive_synthesize``: ``must`` and ``forbid`` rules ``{"rule" ≤ 100, "test" ≤ 80}`` (each list up to
    ``max_rules``; the reader keeps ``max_rules`` in all) and up to ``max_principles`` principles ≤ 120."""
    rule = _object({"rule": _string(100), "test": _string(80)})
    return _object({"must": _array(rule, 0, max_rules), "forbid": _array(rule, 0, max_rules),
                    "principles": _array(_string(120), 0, max_principles)}, title="synthesis")


# --------------------------------------------------------------------------- per, decompose, reference, tail


def per_schema(max_criteria: int) -> dict[str, Any]:
    """``per_propose`` and ``per_revise``: 1 to ``max_criteria`` criteria ``{"text" ≤ 300}``."""
    return _object({"criteria": _array(_object({"text": _string(300)}), min(1, max_criteria), max_criteria)},
                   title="criteria")


def rubrics_schema(max_rubrics: int) -> dict[str, Any]:
    """``decompose_propose`` and ``decompose_split``: 1 to ``max_rubrics`` statements ≤ 300."""
    return _object({"rubrics": _array(_string(300), min(1, max_rubrics), max_rubrics)}, title="rubrics")


def reference_schema(min_items: int, max_items: int) -> dict[str, Any]:
    """``reference_items``: ``min_items`` to ``max_items`` items ``{"category", "weight": 1..5, "text" ≤ 150}``
    (RaR's four categories; the weight is always positive, the category gives the polarity)."""
    item = _object({"category": {"type": "string", "enum": ["Essential", "Important", "Optional", "Pitfall"]},
                    "weight": {"type": "integer", "minimum": 1, "maximum": 5},
                    "text": _string(150)})
    return _object({"items": _array(item, min_items, max_items)}, title="checklist")


def tail_propose_schema(max_criteria: int = TAIL_MAX_PROPOSED) -> dict[str, Any]:
    """``tail_propose``: 1 to ``max_criteria`` criteria ``{"text" ≤ 300, "weight": ±1..5}``."""
    criterion = _object({"text": _string(300), "weight": {"type": "integer", "enum": _WEIGHTS}})
    return _object({"criteria": _array(criterion, min(1, max_criteria), max_criteria)}, title="tail_criteria")


def tail_revise_schema(ids: Sequence[str], *, max_added: int = TAIL_MAX_ADDED) -> dict[str, Any]:
    """``tail_revise``: up to 8 edits ≤ 80 and the full revised list, 1 to ``len(ids) + max_added`` criteria
    ``{"id": one of ids | null, "text" ≤ 200, "weight": ±1..5}`` (``null``: a new criterion)."""
    identity: dict[str, Any] = {"anyOf": [_id_enum(ids), {"type": "null"}]} if ids else {"type": "null"}
    criterion = _object({"id": identity, "text": _string(200),
                         "weight": {"type": "integer", "enum": _WEIGHTS}})
    return _object({"edits": _array(_string(80), 0, 8),
                    "criteria": _array(criterion, 1, max(1, len(set(ids)) + max_added))}, title="tail_revision")


# --------------------------------------------------------------------------- refine: themes; the overlap check


def themes_schema(ids: Sequence[str], max_themes: int, max_tips: int) -> dict[str, Any]:
    """``themes``: 1 to ``max_themes`` themes ``{"theme" ≤ 120, "tips": up to max_tips ≤ 80, "criteria": 1 or more
    of ids}`` (a theme must cover a listed criterion; that each id is used once is the reader's check)."""
    theme = _object({"theme": _string(120), "tips": _array(_string(80), 0, max_tips),
                     "criteria": _array(_id_enum(ids), 1, max(1, len(set(ids))))})
    return _object({"themes": _array(theme, min(1, max_themes), max_themes)}, title="themes")


def overlap_schema() -> dict[str, Any]:
    """``overlap`` (RRD's redundancy check, sent by refine's dedup and by decompose): ``{"rationale" ≤ 300,
    "overlap": 0..100, "relation": same | opposite | different}``."""
    return _object({"rationale": _string(300), "overlap": {"type": "integer", "minimum": 0, "maximum": 100},
                    "relation": {"type": "string", "enum": ["same", "opposite", "different"]}},
                   title="overlap")


SCHEMAS: dict[str, Callable[..., dict[str, Any]]] = {
    "contrastive_generate": contrastive_schema,
    "contrastive_diagnose": diagnosis_schema,
    "contrastive_synthesize": synthesis_schema,
    "per_propose": per_schema,
    "per_revise": per_schema,
    "decompose_propose": rubrics_schema,
    "decompose_split": rubrics_schema,
    "reference_items": reference_schema,
    "tail_propose": tail_propose_schema,
    "tail_revise": tail_revise_schema,
    "themes": themes_schema,
    "overlap": overlap_schema,
}
"""Template name → the function building its reply schema from the run's limits."""


# --------------------------------------------------------------------------- sizing


def _largest(schema: Any) -> Any:
    """The longest instance of ``schema`` once serialised (strings at ``maxLength``, arrays at ``maxItems``)."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return max(schema["enum"], key=lambda value: len(json.dumps(value)))
    if "anyOf" in schema:
        return max((_largest(option) for option in schema["anyOf"]), key=lambda value: len(json.dumps(value)))
    kind = schema.get("type")
    if kind == "object":
        return {name: _largest(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [_largest(schema.get("items")) for _ in range(schema.get("maxItems", 1))]
    if kind == "string":
        return "x" * schema.get("maxLength", 0)
    if kind == "integer":
        return max(schema.get("minimum", 0), schema.get("maximum", 0), key=lambda value: len(str(value)))
    if kind == "number":
        return 0.25  # a fraction as models write it; the grammar itself does not bound its digits
    if kind == "boolean":
        return False
    return None


def max_reply_chars(schema: dict[str, Any]) -> int:
    """The length of the longest reply ``schema`` allows, written as the ``hf`` grammar writes JSON (``", "`` and
    ``": "`` separators, no other whitespace). Compare it with ``max_tokens × CHARS_PER_TOKEN``."""
    return len(json.dumps(_largest(schema), ensure_ascii=False, separators=(", ", ": ")))


def _nodes(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, list):
        return [node for item in schema for node in _nodes(item)]
    if not isinstance(schema, dict):
        return []
    return [schema] + [node for key, value in schema.items() if key not in ("enum", "const") for node in _nodes(value)]


def fit_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """``schema`` with its bounds lowered until its longest reply fits ``max_tokens`` (at :data:`CHARS_PER_TOKEN`);
    ``schema`` itself when it already fits (the methods' limits at the default budget do).

    A smaller budget (``--max-tokens``) shortens the strings and the lists together, never a list below its
    ``minItems`` (nor to none) and never a string below :data:`_MIN_LENGTH` characters: a complete shorter reply
    reads better than one the budget cuts off, which no reader can use.
    """
    budget = CHARS_PER_TOKEN * max_tokens
    size = max_reply_chars(schema)
    if size <= budget:
        return schema
    fitted = copy.deepcopy(schema)
    strings = [n for n in _nodes(fitted) if n.get("type") == "string" and "maxLength" in n]
    arrays = [n for n in _nodes(fitted) if n.get("type") == "array" and "maxItems" in n]
    while size > budget:
        scale = (budget / size) ** 0.5  # both dimensions shrink, so the product shrinks by budget / size
        changed = False
        for node in strings:
            length = max(min(_MIN_LENGTH, node["maxLength"]), int(node["maxLength"] * scale))
            changed |= length < node["maxLength"]
            node["maxLength"] = length
        for node in arrays:
            floor = min(node["maxItems"], max(node.get("minItems", 0), 1))
            items = max(floor, int(node["maxItems"] * scale))
            changed |= items < node["maxItems"]
            node["maxItems"] = items
        if not changed:
            break  # every bound is at its floor: the closest fit there is
        size = max_reply_chars(fitted)
    return fitted
