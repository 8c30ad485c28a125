"""OpenRubrics numbered lists (Liu et al., 2025, "OpenRubrics: Towards Scalable Synthetic Rubric Generation").

Contrastive Rubric Generation writes a numbered list, each item a third-person statement that ends in a tag::

    1. The response includes exactly five distinct artifacts. [Hard Rule]
    2. The response communicates clearly and is well organized. [Principle]

``[Hard Rule]`` (an explicit constraint of the request) becomes ``kind: hard``, ``[Principle]`` (an implicit
quality) ``kind: principle``; criteria are ``r1..rN`` in list order with weight 1, ``gates: hard`` (Rubric-RM
treats hard rules as gatekeepers). Parsing tolerates bullets (``-``, ``*``, ``•``), ``1)``, extra whitespace,
bold (``**[Hard Rule]**``, ``**The response …**``), the tag at the start (``1. [Principle] The response …``)
and headings (``# Rubric``, ``Hard Rules:``) and lines before the list; an item without a tag is an error
naming its line. A tag-less item may continue on following unnumbered lines until its tag.

Files: ``.txt``/``.md`` hold one list (rubric id from the file name); JSON/JSONL rows hold ``rubric`` (the
list's text) with ``prompt`` (or ``instruction``/``question``) and an optional ``id``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from rubrickit.errors import ConversionError, format_location
from rubrickit.rubric.formats._common import (
    Export,
    Problems,
    RecordError,
    add_kept_fields,
    as_id,
    build_rubric,
    convert_records,
    field_losses,
    hashed_id,
    iter_records,
    parameters_of,
    read_text,
    short,
    stem_id,
    suffix_of,
)
from rubrickit.rubric.model import Rubric

__all__ = ["parse_openrubrics", "format_openrubrics", "TAGS"]

TAGS = {"hard": "Hard Rule", "principle": "Principle"}
"""The tag written for each criterion kind."""

_ITEM_RE = re.compile(r"^\s*(?:\(?\d{1,4}[.)]|[-*+•])\s+(?P<body>.*?)\s*$")
_TAG = (
    r"(?:\*\*|__)?\s*[\[(]\s*(?:\*\*)?\s*(?P<tag>hard[\s_-]*rules?|principles?)"
    r"\s*(?:\*\*)?\s*[\])]\s*(?:\*\*|__)?"
)
_END_TAG_RE = re.compile(r"\s*" + _TAG + r"\s*[.;,]?\s*$", re.IGNORECASE)
_START_TAG_RE = re.compile(r"^" + _TAG + r"\s*[:\-\u2013\u2014]?\s*", re.IGNORECASE)
_LABEL_RE = re.compile(
    r"^(?:\*\*)?(?P<tag>hard[\s_-]*rule|principle)(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.IGNORECASE
)
_HEADING_RE = re.compile(r"^\s*(#.*|.*:\s*|\*\*[^*]+\*\*:?|__[^_]+__:?)$")
_PROMPT_KEYS = ("prompt", "instruction", "question")


def mentions_tag(text: str) -> bool:
    """True when some line of ``text`` carries a ``[Hard Rule]`` or ``[Principle]`` tag."""
    return any(_split_tag(line)[0] is not None for line in text.splitlines())


def _kind(tag: str) -> str:
    return "hard" if tag.lower().startswith("hard") else "principle"


def _split_tag(body: str) -> tuple[str | None, str]:
    """``("hard", text)`` when the item carries a tag at its end or start, else ``(None, body)``."""
    for pattern in (_END_TAG_RE, _START_TAG_RE, _LABEL_RE):
        match = pattern.search(body)
        if match:
            return _kind(match.group("tag")), (body[: match.start()] + body[match.end() :]).strip()
    return None, body


def _unbold(text: str) -> str:
    """Drop bold markers around the statement (a lone one is left when the tag took its partner)."""
    for mark in ("**", "__"):
        if text.startswith(mark) and text.endswith(mark) and len(text) > 2 * len(mark):
            text = text[len(mark) : -len(mark)].strip()
        elif text.count(mark) == 1 and (text.startswith(mark) or text.endswith(mark)):
            text = text.replace(mark, "").strip()
    return text


def parse_items(text: str) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """``([(line, kind, text)…], [(line, problem)…])`` for an OpenRubrics list (lines are 1-based)."""
    items: list[tuple[int, str, str]] = []
    problems: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None  # an item still waiting for its tag

    def close_pending() -> None:
        if pending is not None:
            problems.append(
                (
                    pending[0],
                    f"{short(pending[1])} has no [Hard Rule] or [Principle] tag; end the item with one",
                )
            )

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _ITEM_RE.match(line)
        if match is None:
            if pending is not None:
                pending = (pending[0], pending[1] + " " + line.strip())
                kind, body = _split_tag(pending[1])
                if kind is not None:
                    items.append((pending[0], kind, _unbold(body)))
                    pending = None
            elif items and not _HEADING_RE.match(line):
                problems.append(
                    (number, f"{short(line.strip())} is outside a numbered item; number it or remove it")
                )
            continue  # before the list: a heading or preamble
        close_pending()
        pending = None
        kind, body = _split_tag(match.group("body"))
        if kind is None:
            pending = (number, match.group("body"))
        elif not _unbold(body):
            problems.append((number, "the item has a tag but no text"))
        else:
            items.append((number, kind, _unbold(body)))
    close_pending()
    if not items and not problems:
        problems.append((1, "no numbered items found; write '1. The response … [Hard Rule]' lines"))
    return items, problems


def parse_openrubrics(
    text: str,
    rubric_id: str,
    *,
    prompt: str | None = None,
    prompt_id: str | None = None,
    file: str | Path | None = None,
) -> Rubric:
    """Parse an OpenRubrics list into a rubric (criteria ``r1..rN``); errors name the line (and ``file``)."""
    items, problems = parse_items(text)
    if problems:
        if file is not None:
            raise ConversionError("\n".join(format_location(file, n, None, m) for n, m in problems))
        raise ConversionError("\n".join(f"line {n}: {m}" for n, m in problems))
    return _rubric(items, rubric_id, prompt=prompt, prompt_id=prompt_id, parameters={})


def _rubric(
    items: list[tuple[int, str, str]],
    rubric_id: str,
    *,
    prompt: str | None,
    prompt_id: str | None,
    parameters: dict[str, Any],
) -> Rubric:
    criteria = [
        {"id": f"r{i}", "text": body, "kind": kind} for i, (_, kind, body) in enumerate(items, start=1)
    ]
    data = {
        "id": rubric_id,
        "scope": "prompt" if prompt_id else "general",
        "prompt_id": prompt_id,
        "prompt": prompt,
        "aggregation": "weighted_mean",
        "gates": "hard",
        "criteria": criteria,
    }
    return build_rubric(data, "openrubrics", parameters)


def format_openrubrics(rubric: Rubric, *, drop_unrepresentable: bool = False) -> str:
    """The rubric as an OpenRubrics numbered list (``1. <text> [Hard Rule]``).

    Penalties (negative weight) and scale criteria have no OpenRubrics form: they raise
    :class:`~rubrickit.errors.ConversionError`, or are left out with ``drop_unrepresentable=True``.
    """
    kept, reasons = split_representable(rubric)
    if reasons and not drop_unrepresentable:
        raise ConversionError(reasons[0] + "; pass drop_unrepresentable=True to leave such criteria out")
    if not kept:
        raise ConversionError(f"rubric {rubric.id!r}: no criterion can be written as an OpenRubrics item")
    lines = [f"{i}. {' '.join(c.text.split())} [{TAGS[c.kind]}]" for i, c in enumerate(kept, start=1)]
    return "\n".join(lines) + "\n"


def split_representable(rubric: Rubric) -> tuple[list[Any], list[str]]:
    """The criteria an OpenRubrics list can hold, and a reason for each one it cannot."""
    kept, reasons = [], []
    for criterion in rubric.criteria:
        where = f"rubric {rubric.id!r} criterion {criterion.id!r}"
        if criterion.weight < 0:
            why = "a penalty; OpenRubrics items have no polarity"
            reasons.append(f"{where} (weight {criterion.weight:g}): {why}")
        elif criterion.scale is not None:
            reasons.append(f"{where}: a scale criterion; OpenRubrics items are met or not")
        else:
            kept.append(criterion)
    return kept, reasons


def openrubrics_row_to_rubric(row: dict[str, Any]) -> Rubric:
    """A JSON row: ``rubric`` (the list's text), ``prompt`` (or ``instruction``), optional ``id``."""
    problems = Problems()
    text = row.get("rubric")
    if not isinstance(text, str) or not text.strip():
        problems.add("rubric", f"expected the numbered list as text, got {short(text)}")
    prompt_key = next((k for k in _PROMPT_KEYS if row.get(k) is not None), None)
    prompt = row.get(prompt_key) if prompt_key else None
    if prompt is not None and not isinstance(prompt, str):
        problems.add(prompt_key, f"expected a string, got {type(prompt).__name__}")
        prompt = None
    raw_id = (
        str(row["id"])
        if row.get("id") is not None
        else (hashed_id("openrubrics", prompt) if prompt else None)
    )
    if raw_id is None:
        problems.add("id", "missing, and there is no prompt to derive one from; add an 'id'")
    problems.raise_if_any()
    items, line_problems = parse_items(text)
    if line_problems:
        raise RecordError([("rubric", f"line {n} of the list: {m}") for n, m in line_problems])
    rubric_id = as_id(raw_id)
    if rubric_id is None:
        raise RecordError([("id", f"{raw_id!r} has no letters or digits to make a rubric id from")])
    parameters = {k: v for k, v in row.items() if k not in {"id", "rubric", prompt_key}}
    if prompt_key and prompt_key != "prompt":
        parameters["openrubrics_prompt_key"] = prompt_key
    return _rubric(
        items, rubric_id, prompt=prompt, prompt_id=raw_id if prompt else None, parameters=parameters
    )


def to_openrubrics_row(rubric: Rubric, *, drop_unrepresentable: bool = False) -> dict[str, Any]:
    """A JSON row: ``id``, the prompt (under its original key), ``rubric`` (the list's text), kept fields."""
    prompt_key = parameters_of(rubric).get("openrubrics_prompt_key", "prompt")
    row: dict[str, Any] = {"id": rubric.prompt_id or rubric.id}
    if rubric.prompt is not None:
        row[prompt_key] = rubric.prompt
    row["rubric"] = format_openrubrics(rubric, drop_unrepresentable=drop_unrepresentable)
    add_kept_fields(row, rubric)
    return row


def read_openrubrics(path: Path, lossy: Counter[str]) -> list[Rubric]:
    """A ``.txt``/``.md`` list (one rubric named after the file), or JSON/JSONL rows with ``rubric`` text."""
    del lossy
    if suffix_of(path) in (".json", ".jsonl"):
        return convert_records(path, iter_records(path), openrubrics_row_to_rubric)
    return [parse_openrubrics(read_text(path), stem_id(path), file=path)]


def export_openrubrics(rubrics: list[Rubric], *, as_text: bool) -> Export:
    """OpenRubrics rows (or list texts); penalty and scale criteria are skipped and listed with the reason."""
    out = Export()
    for rubric in rubrics:
        kept, reasons = split_representable(rubric)
        out.skipped.extend(reasons)
        if not kept:
            out.skipped.append(
                f"rubric {rubric.id!r}: none of its criteria fits an OpenRubrics list"
            )
            continue
        written = rubric.model_copy(update={"criteria": kept})
        if as_text:
            out.records.append(format_openrubrics(written))
        else:
            out.records.append(to_openrubrics_row(written))
        out.written.append(written)
        field_losses(written, {"hard"}, out.lossy)
        out.lossy["criterion ids (renumbered r1..rN)"] += any(
            c.id != f"r{i}" for i, c in enumerate(kept, start=1)
        )
    if not out.lossy["criterion ids (renumbered r1..rN)"]:
        del out.lossy["criterion ids (renumbered r1..rN)"]
    return out
