"""Reading ``contrastive`` replies (:mod:`rubrickit.generate.contrastive`): the CRG generation, the CDRRM diagnosis
and synthesis, and the plain-text forms small models write instead of JSON.

Each reader takes the reply's object and returns what it keeps, counting what it drops (a response reference, a
principle with a digit, a duplicate, a finding whose evidence is not quoted from the response, a rule without a
test, a forbid rule written negated); it raises ``ValueError`` with a re-ask reason when nothing usable is left.
:func:`ask` sends one prompt through the generator with these readers, and :data:`MAX_RULES` and its siblings cap
what one reply contributes. Template data is defused here too (:func:`_defused`), since a quote is checked against
what the model saw.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..judge.parse import json_objects
from ..judge.prompts import neutralize
from .common import Generator

__all__ = [
    "MAX_DIAGNOSE_PRINCIPLES",
    "MAX_FINDINGS",
    "MAX_PRINCIPLES",
    "MAX_RULES",
    "ask",
    "bare_list",
    "findings_parser",
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


# --------------------------------------------------------------------------- template data


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
