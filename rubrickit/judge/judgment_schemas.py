"""JSON Schemas of the judge's reply contracts (verdict, level, rating, winner, per-response), sent as structured
output to backends that honour it (``capabilities.json_schema``; :mod:`.tasks` puts them on the requests).

Each schema asks for the one shape its reader in :mod:`.parse` expects (the readers also accept other spellings and
shapes). Re-exported by :mod:`.parse`. The generation replies' schemas are in :mod:`.reply_schemas`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["level_schema", "per_response_schema", "rating_schema", "verdict_schema", "winner_schema"]


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def verdict_schema() -> dict[str, Any]:
    """JSON Schema of the per-criterion reply."""
    return _object({
        "rationale": {"type": "string"},
        "verdict": {"type": "string", "enum": ["met", "unmet", "not_applicable"]},
    })


def level_schema(low: int, high: int, *, allow_not_applicable: bool = False) -> dict[str, Any]:
    """JSON Schema of a scale reply."""
    level: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if allow_not_applicable:
        level = {"anyOf": [level, {"type": "string", "enum": ["not_applicable"]}]}
    return _object({"rationale": {"type": "string"}, "level": level})


def rating_schema(low: int = 1, high: int = 10) -> dict[str, Any]:
    """JSON Schema of the holistic reply."""
    return _object({"rationale": {"type": "string"}, "rating": {"type": "integer", "minimum": low, "maximum": high}})


def winner_schema() -> dict[str, Any]:
    """JSON Schema of a pairwise reply."""
    return _object({"rationale": {"type": "string"}, "winner": {"type": "string", "enum": ["A", "B", "tie"]}})


def per_response_schema(criteria: Mapping[str, tuple[int, int] | None], *, conditional: Sequence[str] = ()) -> dict:
    """JSON Schema of the per-response reply: one entry per criterion id (levels for scale criteria)."""
    properties = {
        cid: level_schema(*scale, allow_not_applicable=cid in conditional) if scale else verdict_schema()
        for cid, scale in criteria.items()
    }
    return _object(properties)
