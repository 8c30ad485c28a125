"""Reading judge replies: tolerant of formatting, not steerable by text planted in the judged response.

Each reply contract has a parser returning a small typed result or raising :class:`ParseError` with the reason:

========================  ==========================================================  =====================
parser                    contract                                                     result
========================  ==========================================================  =====================
:func:`parse_verdict`     ``{"rationale": str, "verdict": "met"|"unmet"|"not_applicable"}``  :class:`VerdictReply`
:func:`parse_level`       ``{"rationale": str, "level": int}`` (scale criteria)       :class:`LevelReply`
:func:`parse_digit`       one digit (likert on logprob backends)                       ``int``
:func:`parse_rating`      ``{"rationale": str, "rating": 1..10}`` (holistic)          :class:`RatingReply`
:func:`parse_winner`      ``{"rationale": str, "winner": "A"|"B"|"tie"}``             :class:`WinnerReply`
:func:`parse_yes_no`      one word, ``Yes`` / ``No`` (logprob mode)                   ``bool``
:func:`parse_per_response`  ``{"<id>": {...}, ...}``                                 per id: reply or error
========================  ==========================================================  =====================

How a reply is read:

1. Every JSON object in the text is found, wherever it is (code fences and prose around it are ignored); objects
   nested inside another object are not candidates on their own. Near-JSON is repaired where it is unambiguous
   (trailing commas, Python-style quoting).
2. The **last** complete object that matches the contract wins. A judge that quotes the response's planted
   ``{"verdict": "met"}`` before giving its own answer is not steered by it.
3. If the reply ends inside an unfinished object (``{"rationale": "…`` cut off by ``max_tokens``), nothing in it is
   trusted: an earlier complete object could be a quote from the response. That is a :class:`ParseError`
   ("truncated"), which the engine answers with a re-ask.
4. Without a matching object, only two plain-text forms are accepted: the whole reply being the answer
   (``met``, ``A``, ``7``) or the reply's *last* line being ``verdict: met`` / ``winner: A`` / ``rating: 7`` /
   ``[[A]]``. A ``verdict: met`` line anywhere else (e.g. quoted from the response) is ignored.

Spellings (keys and values are NFKC-normalised, case-folded, ``_``/``-`` read as spaces, surrounding quotes and
punctuation dropped; other look-alike characters, e.g. a Cyrillic ``е`` in ``mеt``, do not match):

- met: ``met``, ``yes``, ``true``, ``holds``, ``satisfied``, ``pass``, ``passed``; unmet: ``unmet``, ``not met``,
  ``no``, ``false``, ``does not hold``, ``not satisfied``, ``fail``, ``failed``; not_applicable: ``not applicable``,
  ``n/a``, ``na``, ``inapplicable``. ``yes``/``no`` are accepted because small judges answer the question
  ("does the statement hold?") rather than naming the label, and they mean exactly met/unmet.
- winner: ``A``, ``response a``, ``assistant a``, ``[[A]]``; likewise B; tie: ``tie``, ``draw``, ``equal``,
  ``both``, ``neither``, ``same``, ``C`` (MT-Bench's tie label).
- level / rating: an integer, an integral float (``4.0``) or such a string (``"4"``), inside the allowed range.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "LevelReply",
    "ParseError",
    "RatingReply",
    "VerdictReply",
    "WinnerReply",
    "json_objects",
    "level_schema",
    "normalize_verdict",
    "normalize_winner",
    "parse_digit",
    "parse_level",
    "parse_per_response",
    "parse_rating",
    "parse_verdict",
    "parse_winner",
    "parse_yes_no",
    "per_response_schema",
    "rating_schema",
    "verdict_schema",
    "winner_schema",
]

JudgeVerdict = Literal["met", "unmet", "not_applicable"]
Winner = Literal["A", "B", "tie"]


class ParseError(ValueError):
    """A judge reply that does not fulfil its contract; ``reason`` says why (without quoting the reply)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerdictReply:
    """A met / unmet / not_applicable verdict with the judge's rationale."""

    verdict: JudgeVerdict
    rationale: str | None = None


@dataclass(frozen=True)
class LevelReply:
    """A scale level (``None`` when the judge said the criterion does not apply)."""

    level: int | None
    rationale: str | None = None


@dataclass(frozen=True)
class RatingReply:
    """A holistic rating."""

    rating: int
    rationale: str | None = None


@dataclass(frozen=True)
class WinnerReply:
    """A pairwise winner in the order shown: ``A`` is the response shown first."""

    winner: Winner
    rationale: str | None = None


# --------------------------------------------------------------------------- normalisation

_VERDICTS: dict[str, JudgeVerdict] = {
    **dict.fromkeys(["met", "yes", "true", "holds", "satisfied", "pass", "passed"], "met"),
    **dict.fromkeys(
        ["unmet", "not met", "no", "false", "does not hold", "not satisfied", "fail", "failed"], "unmet"
    ),
    **dict.fromkeys(["not applicable", "n/a", "na", "n.a", "inapplicable"], "not_applicable"),
}
_WINNERS: dict[str, Winner] = {
    **dict.fromkeys(["a", "response a", "assistant a", "[[a]]", "model a"], "A"),
    **dict.fromkeys(["b", "response b", "assistant b", "[[b]]", "model b"], "B"),
    **dict.fromkeys(["tie", "draw", "equal", "both", "neither", "same", "c", "[[c]]"], "tie"),
}
_NA_WORDS = {"not applicable", "n/a", "na", "n.a", "inapplicable", "none", "null"}
_STRIP = " \t\r\n\"'`*.,;:!<>"


def _norm(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    text = text.replace("_", " ").replace("-", " ")
    return " ".join(text.split()).strip(_STRIP)


def normalize_verdict(value: object) -> JudgeVerdict | None:
    """``met`` / ``unmet`` / ``not_applicable`` for an accepted spelling (booleans too), else ``None``."""
    if isinstance(value, bool):
        return "met" if value else "unmet"
    if not isinstance(value, str):
        return None
    return _VERDICTS.get(_norm(value))


def normalize_winner(value: object) -> Winner | None:
    """``A`` / ``B`` / ``tie`` for an accepted spelling, else ``None``."""
    if not isinstance(value, str):
        return None
    text = _norm(value)
    return _WINNERS.get(text) or _WINNERS.get(text.strip("[]"))


def _integer(value: object, low: int, high: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        number = unicodedata.normalize("NFKC", value).casefold().strip(_STRIP)
        match = re.fullmatch(r"(?:level|rating|score)?\s*([+-]?\d+(?:\.0+)?)\s*(?:/\s*\d+)?", number)
        if not match:
            return None
        value = float(match.group(1))
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int) and low <= value <= high:
        return value
    return None


# --------------------------------------------------------------------------- finding JSON objects

_DECODER = json.JSONDecoder()
# What the start of a judge's JSON answer looks like: a brace and a quoted key with its colon.
_OBJECT_START = re.compile(r"\{\s*([\"'\u201c])[^\"'\n]{1,40}[\"'\u201d]\s*:")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _balanced_end(text: str, start: int) -> int | None:
    """Index after the ``}`` closing the ``{`` at ``start`` (double-quoted strings respected), or ``None``."""
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def _lenient(text: str, start: int) -> tuple[Any, int] | None:
    """Repair near-JSON at ``start``: trailing commas, Python-style literals (single quotes, True/None)."""
    end = _balanced_end(text, start)
    if end is None or end - start > 200_000:
        return None
    chunk = text[start:end]
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", chunk)), end
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(chunk)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    return value, end


def _scan(text: str) -> tuple[list[dict[str, Any]], bool]:
    """Top-level JSON objects of ``text`` in order, and whether an object is left unfinished (truncated)."""
    objects: list[dict[str, Any]] = []
    unfinished = False
    index = text.find("{")
    while index >= 0:
        try:
            value, end = _DECODER.raw_decode(text, index)
        except (json.JSONDecodeError, RecursionError):
            repaired = _lenient(text, index)
            value, end = repaired if repaired is not None else (None, index + 1)
        if isinstance(value, dict):
            objects.append(value)
            index = text.find("{", end)
            continue
        if _OBJECT_START.match(text, index) and _balanced_end(text, index) is None:
            unfinished = True
        index = text.find("{", index + 1)
    return objects, unfinished


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in ``text``, in order (fences and prose ignored; nested objects not listed)."""
    return _scan(text)[0]


def _field(obj: Mapping[str, Any], *names: str) -> tuple[bool, Any]:
    wanted = set(names)
    for key, value in obj.items():
        if isinstance(key, str) and _norm(key) in wanted:
            return True, value
    return False, None


def _rationale(obj: Mapping[str, Any]) -> str | None:
    found, value = _field(obj, "rationale", "reasoning", "reason", "explanation")
    if not found or value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _candidates(text: str) -> list[dict[str, Any]]:
    """Objects to try, last first; raises when the reply ends inside an unfinished object."""
    objects, unfinished = _scan(text)
    if unfinished:
        raise ParseError("the reply ends inside an unfinished JSON object (cut off by max_tokens?)")
    return list(reversed(objects))


_LAST_LINE = re.compile(r"^[\W_]*(?P<key>[A-Za-z ]+?)[\W_]*\s*[:=]\s*(?P<value>.+?)\s*$")


def _plain_answer(text: str, keys: Sequence[str]) -> str | None:
    """The answer of a reply without JSON: the whole (short) reply, or its last line ``key: value``."""
    stripped = re.sub(r"```[a-zA-Z]*", "", text).strip()
    if not stripped:
        return None
    last = stripped.splitlines()[-1].strip()
    match = _LAST_LINE.match(last)
    if match and _norm(match.group("key")) in keys:
        return match.group("value")
    if "\n" not in stripped and len(stripped) <= 40:
        return stripped
    bracket = re.fullmatch(r"\W*(\[\[[A-Ca-c]\]\])\W*", last)
    return bracket.group(1) if bracket and "winner" in keys else None


def _describe(text: str) -> str:
    return "the reply is empty" if not text.strip() else "the reply holds no JSON object with the expected keys"


# --------------------------------------------------------------------------- parsers


def _last_with(text: str, *keys: str) -> tuple[dict[str, Any], Any] | None:
    """The last object holding one of ``keys``, with that key's value; ``None`` when no object has one.

    Objects after it that carry a rationale but none of the keys stop the search with a :class:`ParseError`: that
    is the judge's own (malformed) answer, and an earlier object may be a quote from the judged response.
    """
    for obj in _candidates(text):
        found, value = _field(obj, *keys)
        if found:
            return obj, value
        if _field(obj, "rationale", "reasoning", "explanation")[0]:
            raise ParseError(f"the reply's last JSON object has no {keys[0]!r}")
    return None


def parse_verdict(text: str) -> VerdictReply:
    """The last object with a ``verdict`` (see the module docs for accepted spellings)."""
    hit = _last_with(text, "verdict")
    if hit is not None:
        verdict = normalize_verdict(hit[1])
        if verdict is None:
            raise ParseError(f"'verdict' must be \"met\", \"unmet\" or \"not_applicable\", got {_short(hit[1])}")
        return VerdictReply(verdict, _rationale(hit[0]))
    answer = _plain_answer(text, ("verdict",))
    verdict = normalize_verdict(answer) if answer is not None else None
    if verdict is None:
        raise ParseError(_describe(text) + " ('verdict')")
    return VerdictReply(verdict, None)


def parse_level(text: str, low: int, high: int, *, allow_not_applicable: bool = True) -> LevelReply:
    """The last object with a ``level`` in [low, high] (``"not_applicable"`` → ``level=None`` when allowed)."""
    hit = _last_with(text, "level", "score")
    if hit is not None:
        obj, value = hit
        level = _integer(value, low, high)
        if level is not None:
            return LevelReply(level, _rationale(obj))
        na = value is None or (isinstance(value, str) and _norm(value) in _NA_WORDS)
        if na and allow_not_applicable:
            return LevelReply(None, _rationale(obj))
        raise ParseError(f"'level' must be an integer from {low} to {high}, got {_short(value)}")
    answer = _plain_answer(text, ("level", "score"))
    level = _integer(answer, low, high) if answer is not None else None
    if level is None:
        raise ParseError(_describe(text) + f" ('level' from {low} to {high})")
    return LevelReply(level, None)


def parse_digit(text: str, low: int, high: int) -> int:
    """A one-digit level answer (likert mode): the first non-blank character, inside [low, high]."""
    stripped = text.strip().strip("\"'`*")
    if stripped[:1].isdigit() and not stripped[1:2].isdigit():
        value = int(stripped[0])
        if low <= value <= high:
            return value
    try:
        level = parse_level(text, low, high, allow_not_applicable=False).level
    except ParseError:
        level = None
    if level is None:
        raise ParseError(f"expected one digit from {low} to {high}")
    return level


def parse_rating(text: str, low: int = 1, high: int = 10) -> RatingReply:
    """The last object with a ``rating`` in [low, high] (holistic mode)."""
    hit = _last_with(text, "rating", "score")
    if hit is not None:
        rating = _integer(hit[1], low, high)
        if rating is None:
            raise ParseError(f"'rating' must be an integer from {low} to {high}, got {_short(hit[1])}")
        return RatingReply(rating, _rationale(hit[0]))
    answer = _plain_answer(text, ("rating", "score"))
    rating = _integer(answer, low, high) if answer is not None else None
    if rating is None:
        raise ParseError(_describe(text) + f" ('rating' from {low} to {high})")
    return RatingReply(rating, None)


def parse_winner(text: str) -> WinnerReply:
    """The last object with a ``winner`` (pairwise), in the order shown."""
    hit = _last_with(text, "winner")
    if hit is not None:
        winner = normalize_winner(hit[1])
        if winner is None:
            raise ParseError(f"'winner' must be \"A\", \"B\" or \"tie\", got {_short(hit[1])}")
        return WinnerReply(winner, _rationale(hit[0]))
    answer = _plain_answer(text, ("winner", "verdict", "better"))
    winner = normalize_winner(answer) if answer is not None else None
    if winner is None:
        raise ParseError(_describe(text) + " ('winner')")
    return WinnerReply(winner, None)


def parse_yes_no(text: str) -> bool:
    """A one-word ``Yes`` / ``No`` reply (logprob mode read as text): ``True`` for Yes."""
    words = _norm(text).split()
    first = words[0].strip(_STRIP) if words else ""
    if first in ("yes", "no"):
        return first == "yes"
    raise ParseError("expected one word, Yes or No")


def _entries(obj: Mapping[str, Any], ids: Sequence[str]) -> Mapping[str, Any] | None:
    """The ``id → entry`` mapping of a per-response reply (top level, or one level down, or a list of rows)."""
    wanted = set(ids)
    if wanted & set(obj):
        return obj
    for value in obj.values():
        if isinstance(value, Mapping) and wanted & set(value):
            return value
        if isinstance(value, list):
            rows = {}
            for row in value:
                if isinstance(row, Mapping):
                    _, cid = _field(row, "id", "criterion id", "criterion")
                    if isinstance(cid, str) and cid in wanted:
                        rows[cid] = row
            if rows:
                return rows
    return None


def _entry(value: Any, scale: tuple[int, int] | None) -> VerdictReply | LevelReply | ParseError:
    if isinstance(value, str) or value is None or isinstance(value, (bool, int, float)):
        value = {"level" if scale else "verdict": value}
    if not isinstance(value, Mapping):
        return ParseError(f"expected an object, got {_short(value)}")
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
        return parse_level(text, *scale) if scale else parse_verdict(text)
    except ParseError as error:
        return error


def parse_per_response(
    text: str, criteria: Mapping[str, tuple[int, int] | None]
) -> dict[str, VerdictReply | LevelReply | ParseError]:
    """Per criterion id: its verdict (or level, for ids mapped to a ``(low, high)`` scale) or a :class:`ParseError`.

    The last object that holds at least one of the ids is used; ids missing from it get a ParseError each. Raises
    :class:`ParseError` when no object holds any id.
    """
    ids = list(criteria)
    for obj in _candidates(text):
        entries = _entries(obj, ids)
        if entries is None:
            continue
        return {
            cid: _entry(entries[cid], criteria[cid]) if cid in entries else ParseError(f"no entry for {cid!r}")
            for cid in ids
        }
    raise ParseError(_describe(text) + " (one entry per criterion id)")


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- JSON schemas (structured output)


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
