"""Reading ``decompose`` (RRD) replies (:mod:`rubrickit.generate.decompose`): the rubric statements of a proposal or
a decomposition, in whatever shape a small model writes them.

:func:`rubric_texts` finds the list of statements (an object's ``rubrics``-like key, a bare JSON list, a run of
``{"text": ...}`` objects) and drops blanks, repeats and the reply contract's placeholders; :func:`_ask_rubrics`
sends a prompt through the generator with it. Nothing is invented: a reply without a usable list is a
``ValueError`` (a re-ask reason). The overlap check's reply is read by :mod:`rubrickit.refine.dedup`, whose check
``decompose`` shares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rubrickit.judge.reply_schemas import rubrics_schema

from ..judge.parse import json_objects
from .common import Generator

__all__ = ["rubric_texts"]

_SPACES = re.compile(r"\s+")
_FENCE = re.compile(r"```[A-Za-z]*")
_PLACEHOLDER = re.compile(r"\s*(?:<[^<>]*>|\.{2,}|\u2026)\s*[.,]?\s*")
"""A statement that is only the reply contract's placeholder (``<one self-contained statement ...>``, ``...``)."""
_LIST_KEYS = ("rubrics", "rubric", "criteria", "criterion", "items", "subrubrics", "finerrubrics", "children",
              "statements", "list")
_TEXT_KEYS = ("text", "rubric", "criterion", "statement", "description", "title", "content")


def _norm(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


def _same(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower().rstrip(".")


# --------------------------------------------------------------------------- parsing generator replies


def _item_list(obj: Mapping[str, Any]) -> list[Any] | None:
    for key, value in obj.items():
        if isinstance(key, str) and _norm(key) in _LIST_KEYS and isinstance(value, list):
            return value
    lists = [v for k, v in obj.items() if isinstance(v, list) and re.search(r"rubric|criteri|item", _norm(str(k)))]
    return lists[0] if len(lists) == 1 else None


def _item_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        fields = {_norm(str(k)): v for k, v in item.items()}
        for key in _TEXT_KEYS:  # in order of preference
            if isinstance(fields.get(key), str):
                return fields[key]
    return None


def rubric_texts(text: str) -> list[str] | None:
    """The rubric statements of a generator reply, or ``None`` when it holds no list of them.

    Accepted shapes: ``{"rubrics": [...]}`` (or ``criteria``/``items``/a key naming them), a bare JSON list, or a run
    of ``{"text": ...}`` objects; items are strings or objects with a ``text``-like key. Blank items, repeats and the
    contract's placeholders copied back (``"<one self-contained statement ...>"``, ``"..."``) are dropped; nothing is
    invented.
    """
    raw: list[Any] | None = None
    objects = json_objects(text)
    for obj in reversed(objects):
        raw = _item_list(obj)
        if raw is not None:
            break
    if raw is None:
        stripped = _FENCE.sub("", text)
        for match in re.finditer(r"\[", stripped):
            try:
                value, _ = json.JSONDecoder().raw_decode(stripped, match.start())
            except ValueError:
                continue
            if isinstance(value, list) and any(_item_text(v) for v in value):
                raw = value
                break
    if raw is None and objects and all(_item_text(o) for o in objects):
        raw = objects
    if raw is None:
        return None
    out: list[str] = []
    seen: set[str] = set()
    for item in raw:
        found = _item_text(item)
        statement = _SPACES.sub(" ", found).strip() if found else ""
        if _PLACEHOLDER.fullmatch(statement):
            continue  # the contract's example copied back: nothing to judge
        if statement and _same(statement) not in seen:
            seen.add(_same(statement))
            out.append(statement)
    return out


async def _ask_rubrics(generator: Generator, template: str, variables: Mapping[str, Any], *, salt: str,
                       limit: int) -> list[str]:
    """Like :meth:`Generator.ajson`, but reading a list of statements in any shape :func:`rubric_texts` accepts
    (``ajson`` sees JSON objects only); at most ``limit`` are kept (and asked for, as the reply's schema). Raises
    :class:`GenerationFailed`."""

    def read(text: str) -> list[str]:
        texts = rubric_texts(text)
        if texts:
            return texts[:limit]
        raise ValueError("the rubric list is empty" if texts is not None else
                         "no JSON object with a \"rubrics\" list in the reply")

    return await generator.aread(template, variables, read, salt=salt, schema=rubrics_schema(limit))

