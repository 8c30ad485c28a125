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

The contracts' JSON Schemas (``verdict_schema`` …, for structured output) live in :mod:`.judgment_schemas` and are
re-exported here.

How a reply is read:

1. Every JSON object in the text is found, wherever it is (code fences and prose around it are ignored); objects
   nested inside another object (or inside a balanced ``{…}`` that is not one) are not candidates on their own.
   Near-JSON is repaired where it is unambiguous (trailing commas, Python-style quoting). Finding them takes
   linear time whatever the reply holds (:mod:`rubrickit.judge._objects`).
2. The **last** complete object that matches the contract wins. A judge that quotes the response's planted
   ``{"verdict": "met"}`` before giving its own answer is not steered by it.
3. If the reply ends inside an unfinished object (``{"rationale": "…`` cut off by ``max_tokens``), nothing in it is
   trusted: an earlier complete object could be a quote from the response. That is a :class:`ParseError`
   ("truncated"), which the engine answers with a re-ask. Only a reply that really ends inside a well-formed
   object counts: an unclosed ``{"key":`` quoted from the response and followed by prose or a line break does not
   (else planting one would turn every verdict into an error).
4. Without a matching object, only two plain-text forms are accepted: the whole reply being the answer
   (``met``, ``A``, ``7``) or the reply's *last* line being ``verdict: met`` / ``winner: A`` / ``rating: 7`` /
   ``[[A]]``. A ``verdict: met`` line anywhere else (e.g. quoted from the response) is ignored.
5. **Conflicting verdicts are a** :class:`ParseError` ("conflicting verdicts"), never first- or last-one-wins. The
   judge's answer is compared with every other answer *the judge itself* gives in the same place: the same key
   twice in the answer object (``{"verdict": "met", "verdict": "unmet"}``, or ``Verdict`` beside ``verdict``; JSON
   would silently keep the last), the objects right before it with nothing but blank space, commas, list brackets
   or code fences in between (its *answer run*: ``{…met}`` ``{…unmet}``), the plain answer after the last object
   (``{…met}`` then a final ``Verdict: unmet`` line), and the run of ``key: value`` lines ending a plain reply. A
   one-token answer (Yes/No, A/B, a digit) conflicts with a bare opposite answer on the reply's last line.
   Repeated identical answers, and an unreadable answer next to a readable one, are fine. Anything separated from
   the answer by words — where a judge quotes the response (``The response contains {"verdict": "met"}. …``) — is
   not compared: were it, planting the opposite verdict would turn every unfavourable verdict into an ``error``,
   which the score excludes. The end of the reply is the judge's, as in rule 2.

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

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._objects import Span, from_pairs, scan
from .judgment_schemas import level_schema, per_response_schema, rating_schema, verdict_schema, winner_schema

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
    "parse_letter",
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


def _normalized(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    text = text.replace("_", " ").replace("-", " ")
    return " ".join(text.split()).strip(_STRIP)


_norm_short = functools.lru_cache(maxsize=4096)(_normalized)
"""Keys and answer words repeat across a reply's objects: cached, but only for short strings (a long value would
stay in memory)."""


def _norm(value: str) -> str:
    return _norm_short(value) if len(value) <= 64 else _normalized(value)


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


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object in ``text``, in order (fences and prose ignored; nested objects not listed)."""
    return [span.obj for span in scan(text)[0]]


def _field(obj: Mapping[str, Any], *names: str) -> tuple[bool, Any]:
    wanted = set(names)
    for key, value in obj.items():
        if isinstance(key, str) and _norm(key) in wanted:
            return True, value
    return False, None


def _values(obj: Mapping[str, Any], *names: str) -> list[Any]:
    """Every value ``obj`` gives any of ``names`` (in any spelling, each repeated key with all its values)."""
    wanted = set(names)
    repeated = getattr(obj, "repeated", {})
    values: list[Any] = []
    for key, value in obj.items():
        if isinstance(key, str) and _norm(key) in wanted:
            values.extend(repeated.get(key, [value]))
    return values


def _rationale(obj: Mapping[str, Any]) -> str | None:
    found, value = _field(obj, "rationale", "reasoning", "reason", "explanation")
    if not found or value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _candidates(text: str) -> list[Span]:
    """The reply's top-level objects in order; raises when the reply ends inside an unfinished object."""
    spans, unfinished = scan(text)
    if unfinished:
        raise ParseError("the reply ends inside an unfinished JSON object (cut off by max_tokens?)")
    return spans


_FENCE = re.compile(r"```[a-zA-Z]*")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_KEY = re.compile(r"[A-Za-z ]+")
_BRACKET = re.compile(r"\W*(\[\[[A-Ca-c]\]\])\W*")
# Between two answer objects of one run: blank space, list punctuation, code fences — no words.
_SEPARATOR = re.compile(r"[\s,;\[\]]*(?:```[A-Za-z]*[\s,;\[\]]*)*")


def _line_answer(line: str, keys: Sequence[str]) -> str | None:
    """The value of a line ``key: value`` (or ``key = value``, the key among ``keys``; ``[[A]]`` for winners)."""
    cut = min((i for i in (line.find(":"), line.find("=")) if i >= 0), default=-1)
    if 0 < cut <= 60:
        key = _EDGE.sub("", line[:cut])
        value = line[cut + 1:].strip()
        if value and _KEY.fullmatch(key) and _norm(key) in keys:
            return value
    if "winner" in keys:
        bracket = _BRACKET.fullmatch(line)
        return bracket.group(1) if bracket else None
    return None


def _plain_answers(text: str, keys: Sequence[str]) -> list[str]:
    """The plain-text answers ending ``text``, last first: its run of final ``key: value`` lines, or the whole text
    when it is one short line. Lines before the last non-answer line are prose (possibly quoting the response)."""
    stripped = _FENCE.sub("", text).strip()
    if not stripped:
        return []
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    answers = []
    for line in reversed(lines):
        value = _line_answer(line, keys)
        if value is None:
            break
        answers.append(value)
    if not answers and len(lines) == 1 and len(stripped) <= 40:
        answers.append(stripped)
    return answers


def _agree(answers: Sequence[Any], read: Callable[[Any], Any]) -> None:
    """Raise when the readable ``answers`` (``read`` gives ``None`` for an unreadable one) do not all agree."""
    readings: list[Any] = []
    for answer in answers:
        reading = read(answer)
        if reading is not None and reading not in readings:
            readings.append(reading)
    if len(readings) > 1:
        shown = " vs ".join(str(reading) for reading in readings)
        raise ParseError(f"conflicting verdicts in one reply ({shown}); give exactly one answer")


def _describe(text: str) -> str:
    return "the reply is empty" if not text.strip() else "the reply holds no JSON object with the expected keys"


# --------------------------------------------------------------------------- parsers


def _run(text: str, spans: Sequence[Span], index: int) -> list[Span]:
    """The objects just before ``spans[index]`` with nothing but separators between them (its answer run)."""
    run = []
    while index > 0 and _SEPARATOR.fullmatch(text, spans[index - 1].end, spans[index].start):
        index -= 1
        run.append(spans[index])
    return run


def _answer(text: str, keys: tuple[str, ...], read: Callable[[Any], Any]) -> tuple[Mapping[str, Any], Any] | None:
    """The judge's JSON answer: the last object holding one of ``keys``, with that key's value; ``None`` when no
    object has one. Raises :class:`ParseError` when the judge's own answers disagree (see the module docs).

    Objects after it that carry a rationale but none of the keys stop the search with a :class:`ParseError`: that
    is the judge's own (malformed) answer, and an earlier object may be a quote from the judged response.
    """
    spans = _candidates(text)
    for index in range(len(spans) - 1, -1, -1):
        values = _values(spans[index].obj, *keys)
        if values:
            break
        if _field(spans[index].obj, "rationale", "reasoning", "explanation")[0]:
            raise ParseError(f"the reply's last JSON object has no {keys[0]!r}")
    else:
        return None
    answers = list(values)
    for span in _run(text, spans, index):
        answers.extend(_values(span.obj, *keys))
    answers.extend(_plain_answers(text[spans[-1].end:], keys))
    _agree(answers, read)
    readable = [value for value in values if read(value) is not None]
    return spans[index].obj, (readable or values)[-1]


def _plain(text: str, keys: tuple[str, ...], read: Callable[[Any], Any]) -> str | None:
    """The answer of a reply without a JSON answer (checked against the plain answers just before it)."""
    answers = _plain_answers(text, keys)
    _agree(answers, read)
    return answers[0] if answers else None


def _verdict_reply(obj: Mapping[str, Any], value: Any) -> VerdictReply:
    verdict = normalize_verdict(value)
    if verdict is None:
        raise ParseError(f"'verdict' must be \"met\", \"unmet\" or \"not_applicable\", got {_short(value)}")
    return VerdictReply(verdict, _rationale(obj))


def parse_verdict(text: str) -> VerdictReply:
    """The last object with a ``verdict`` (see the module docs for accepted spellings and conflicts)."""
    hit = _answer(text, ("verdict",), normalize_verdict)
    if hit is not None:
        return _verdict_reply(*hit)
    answer = _plain(text, ("verdict",), normalize_verdict)
    verdict = normalize_verdict(answer) if answer is not None else None
    if verdict is None:
        raise ParseError(_describe(text) + " ('verdict')")
    return VerdictReply(verdict, None)


def _level_reader(low: int, high: int, allow_not_applicable: bool) -> Callable[[Any], int | str | None]:
    """What a ``level`` value means: the level, ``"not_applicable"`` (when allowed), or ``None`` (unreadable)."""
    def read(value: Any) -> int | str | None:
        level = _integer(value, low, high)
        if level is not None:
            return level
        na = value is None or (isinstance(value, str) and _norm(value) in _NA_WORDS)
        return "not_applicable" if na and allow_not_applicable else None
    return read


def _level_reply(obj: Mapping[str, Any], value: Any, low: int, high: int, allow_not_applicable: bool) -> LevelReply:
    reading = _level_reader(low, high, allow_not_applicable)(value)
    if reading is None:
        raise ParseError(f"'level' must be an integer from {low} to {high}, got {_short(value)}")
    return LevelReply(reading if isinstance(reading, int) else None, _rationale(obj))


def parse_level(text: str, low: int, high: int, *, allow_not_applicable: bool = True) -> LevelReply:
    """The last object with a ``level`` in [low, high] (``"not_applicable"`` → ``level=None`` when allowed)."""
    read = _level_reader(low, high, allow_not_applicable)
    hit = _answer(text, ("level", "score"), read)
    if hit is not None:
        return _level_reply(*hit, low, high, allow_not_applicable)
    answer = _plain(text, ("level", "score"), read)
    level = _integer(answer, low, high) if answer is not None else None
    if level is None:
        raise ParseError(_describe(text) + f" ('level' from {low} to {high})")
    return LevelReply(level, None)


def _final_line(text: str) -> str | None:
    """The reply's last non-blank line when it has more than one (a second answer there may conflict)."""
    lines = [line.strip() for line in _FENCE.sub("", text).splitlines() if line.strip()]
    return lines[-1] if len(lines) > 1 else None


def _check_final(text: str, first: Any, read: Callable[[str], Any], keys: Sequence[str] = ()) -> None:
    """A one-token answer read from the reply's start must agree with a bare answer on its last line (or a last
    line ``answer: …``, or ``key: …`` for one of ``keys``)."""
    final = _final_line(text)
    if final is not None:
        _agree([first, _line_answer(final, ("answer", "final answer", *keys)) or final], read)


def _digit_reader(low: int, high: int) -> Callable[[Any], int | None]:
    return lambda value: value if isinstance(value, int) else _integer(value, low, high)


def parse_digit(text: str, low: int, high: int) -> int:
    """A one-digit level answer (likert mode): the first non-blank character, inside [low, high]."""
    stripped = text.strip().strip("\"'`*")
    if stripped[:1].isdecimal() and not stripped[1:2].isdecimal():
        value = int(stripped[0])
        if low <= value <= high:
            _check_final(text, value, _digit_reader(low, high), ("level", "score"))
            return value
    try:
        level = parse_level(text, low, high, allow_not_applicable=False).level
    except ParseError as error:
        if "conflicting" in error.reason:
            raise
        level = None
    if level is None:
        raise ParseError(f"expected one digit from {low} to {high}")
    return level


def parse_rating(text: str, low: int = 1, high: int = 10) -> RatingReply:
    """The last object with a ``rating`` in [low, high] (holistic mode)."""
    def read(value: Any) -> int | None:
        return _integer(value, low, high)

    hit = _answer(text, ("rating", "score"), read)
    if hit is not None:
        rating = read(hit[1])
        if rating is None:
            raise ParseError(f"'rating' must be an integer from {low} to {high}, got {_short(hit[1])}")
        return RatingReply(rating, _rationale(hit[0]))
    answer = _plain(text, ("rating", "score"), read)
    rating = read(answer) if answer is not None else None
    if rating is None:
        raise ParseError(_describe(text) + f" ('rating' from {low} to {high})")
    return RatingReply(rating, None)


def parse_winner(text: str) -> WinnerReply:
    """The last object with a ``winner`` (pairwise), in the order shown."""
    hit = _answer(text, ("winner",), normalize_winner)
    if hit is not None:
        winner = normalize_winner(hit[1])
        if winner is None:
            raise ParseError(f"'winner' must be \"A\", \"B\" or \"tie\", got {_short(hit[1])}")
        return WinnerReply(winner, _rationale(hit[0]))
    answer = _plain(text, ("winner", "verdict", "better"), normalize_winner)
    winner = normalize_winner(answer) if answer is not None else None
    if winner is None:
        raise ParseError(_describe(text) + " ('winner')")
    return WinnerReply(winner, None)


def _yes_no(value: Any) -> str | None:
    word = _norm(value) if isinstance(value, str) else ""
    return word if word in ("yes", "no") else None


def parse_yes_no(text: str) -> bool:
    """A one-word ``Yes`` / ``No`` reply (logprob mode read as text): ``True`` for Yes."""
    words = _norm(text).split()
    first = words[0].strip(_STRIP) if words else ""
    if first in ("yes", "no"):
        _check_final(text, first, _yes_no)
        return first == "yes"
    raise ParseError("expected one word, Yes or No")


def _letter(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    word = _norm(value).strip("[]")
    return word.upper() if word in ("a", "b") else None


def parse_letter(text: str) -> Literal["A", "B"]:
    """A one-letter ``A`` / ``B`` reply (pairwise choice read as text): the first non-blank character alone."""
    stripped = text.strip().strip("\"'`*().:").strip()
    letter = stripped[:1].upper()
    if letter in ("A", "B") and not stripped[1:2].isalnum():
        _check_final(text, letter, _letter)
        return "A" if letter == "A" else "B"
    raise ParseError("expected one letter, A or B")


def _entries(obj: Mapping[str, Any], ids: Sequence[str]) -> Mapping[str, Any] | None:
    """The ``id → entry`` mapping of a per-response reply (top level, or one level down, or a list of rows)."""
    wanted = set(ids)
    if wanted & set(obj):
        return obj
    for value in obj.values():
        if isinstance(value, Mapping) and wanted & set(value):
            return value
        if isinstance(value, list):
            rows = []
            for row in value:
                if isinstance(row, Mapping):
                    _, cid = _field(row, "id", "criterion id", "criterion")
                    if isinstance(cid, str) and cid in wanted:
                        rows.append((cid, row))
            if rows:
                return from_pairs(rows)  # an id listed twice keeps both rows (for the conflict check)
    return None


def _entry(value: Any, scale: tuple[int, int] | None) -> VerdictReply | LevelReply | ParseError:
    """One criterion's entry of a per-response reply; raises :class:`ParseError` only for conflicting verdicts."""
    keys = ("level", "score") if scale else ("verdict",)
    if isinstance(value, str) or value is None or isinstance(value, (bool, int, float)):
        value = {keys[0]: value}
    if not isinstance(value, Mapping):
        return ParseError(f"expected an object, got {_short(value)}")
    read = _level_reader(*scale, True) if scale else normalize_verdict
    values = _values(value, *keys)
    if not values:
        return ParseError(f"the entry has no {keys[0]!r}")
    _agree(values, read)
    chosen = ([v for v in values if read(v) is not None] or values)[-1]
    try:
        return _level_reply(value, chosen, *scale, True) if scale else _verdict_reply(value, chosen)
    except ParseError as error:
        return error


def _entry_reading(value: Any, scale: tuple[int, int] | None) -> Any:
    entry = _entry(value, scale)
    if isinstance(entry, ParseError):
        return None
    if isinstance(entry, LevelReply):
        return "not_applicable" if entry.level is None else entry.level
    return entry.verdict


def parse_per_response(
    text: str, criteria: Mapping[str, tuple[int, int] | None]
) -> dict[str, VerdictReply | LevelReply | ParseError]:
    """Per criterion id: its verdict (or level, for ids mapped to a ``(low, high)`` scale) or a :class:`ParseError`.

    The last object that holds at least one of the ids is used; ids missing from it get a ParseError each. Raises
    :class:`ParseError` when no object holds any id, and when the reply gives one id conflicting verdicts (the id
    twice in that object, or a different verdict in an object of its answer run; see the module docs).
    """
    ids = list(criteria)
    spans = _candidates(text)
    for index in range(len(spans) - 1, -1, -1):
        entries = _entries(spans[index].obj, ids)
        if entries is None:
            continue
        tables = [entries] + [t for t in (_entries(s.obj, ids) for s in _run(text, spans, index)) if t is not None]
        for cid in ids:
            scale = criteria[cid]
            values = [v for t in tables if cid in t for v in getattr(t, "repeated", {}).get(cid, [t[cid]])]
            _agree(values, lambda v, scale=scale: _entry_reading(v, scale))  # type: ignore[misc]
        return {
            cid: _entry(entries[cid], criteria[cid]) if cid in entries else ParseError(f"no entry for {cid!r}")
            for cid in ids
        }
    raise ParseError(_describe(text) + " (one entry per criterion id)")


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
