"""Rubrics as Rewards (Gunjal et al., 2025; datasets ``anisha2102/RaR-Medicine-20k``, ``RaR-Science-20k``).

An item is ``{"title": "Diagnosis Accuracy", "description": "Essential Criteria: Identifies …", "weight":
5}``. The description starts with ``Essential`` / ``Important`` / ``Optional`` / ``Pitfall Criteria:``; the
datasets weight them 5, 3–4, 1–2 and −1/−2. Pitfall items name the mistake ("Pitfall Criteria: Does not
mention …") and carry the negative weight, which is exactly rubrickit's penalty: the statement holding costs
``|weight|``.

Mapping: prefix → ``category`` (``essential``/``important``/``optional``/``pitfall``), the rest of the
description → ``text``, ``weight`` → ``weight`` exactly as given (the sign is the polarity; it is never
guessed from the words, and a missing weight is an error). The title becomes the criterion id
(``diagnosis-accuracy``; ``r<n>`` when there is none) and is kept verbatim in
``provenance.parameters["rar_titles"]`` so export gives it back.

Rows (the datasets' shape): ``question`` (or ``prompt``), ``rubric`` (the item list, or its JSON text),
``reference_answer``, ``question_source``; optional ``id``. Without an id the rubric id is ``rar-<first 12 hex
of sha256(question)>``, stable under reordering.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from rubrickit._util.io import loads_json
from rubrickit.errors import ConversionError
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
    is_number,
    iter_records,
    json_number,
    load_json,
    parameters_of,
    short,
    slugify,
    stem_id,
    suffix_of,
    text_field,
    unique_ids,
)
from rubrickit.rubric.formats.healthbench import prompt_text
from rubrickit.rubric.model import Rubric

__all__ = ["CATEGORIES", "from_rar", "to_rar", "rar_row_to_rubric", "rubric_to_rar_row"]

CATEGORIES = ("essential", "important", "optional", "pitfall")
"""The four RaR categories, stored lower-case in ``Criterion.category``."""

_PREFIX_RE = re.compile(r"^\s*(essential|important|optional|pitfall)\s+criteri(?:a|on)\s*:\s*", re.IGNORECASE)
_ID_KEYS = ("id", "prompt_id", "question_id")
_PROMPT_KEYS = ("question", "prompt")
_DERIVED = ("rubric_list", "rubric_count")  # recomputable from the items; not kept
_KEY_ORDER = ("id", "question", "reference_answer", "question_source", "rubric")


def split_prefix(description: str) -> tuple[str | None, str]:
    """``("essential", "Names …")`` for ``"Essential Criteria: Names …"``; ``(None, …)`` if unprefixed."""
    match = _PREFIX_RE.match(description)
    if match is None:
        return None, description
    return match.group(1).lower(), description[match.end() :]


def _item(item: Any, field: str, problems: Problems) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        problems.add(field, f"expected {{title, description, weight}}, got {short(item)}")
        return None
    description = text_field(item, "description", problems, f"{field}.description")
    weight = item.get("weight")
    if weight is None:
        problems.add(
            f"{field}.weight",
            "missing; RaR items carry a signed weight (Essential 5, Important 3-4, "
            "Optional 1-2, Pitfall -1 or -2)",
        )
    elif not is_number(weight):
        problems.add(f"{field}.weight", f"expected a number, got {short(weight)}")
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        problems.add(f"{field}.title", f"expected a string, got {short(title)}")
        title = None
    if description is None or not is_number(weight):
        return None
    category, text = split_prefix(description)
    if not text.strip():
        problems.add(
            f"{field}.description", f"has only the prefix {description.strip()!r}; write the criterion"
        )
        return None
    return {"title": title, "text": text, "category": category, "weight": float(weight)}


def from_rar(
    items: list[dict[str, Any]],
    rubric_id: str,
    *,
    prompt: str | None = None,
    prompt_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Rubric:
    """RaR items as a rubric (see the module docstring); ``prompt_id`` makes it prompt-specific."""
    problems = Problems()
    if not isinstance(items, list) or not items:
        problems.add(
            "rubric", f"expected a non-empty list of {{title, description, weight}} items, got {short(items)}"
        )
        problems.raise_if_any()
    parsed = [_item(item, f"rubric[{index}]", problems) for index, item in enumerate(items)]
    problems.raise_if_any()
    ids = unique_ids((slugify(p["title"]) if p["title"] else None for p in parsed), "r")
    titles = {cid: p["title"] for cid, p in zip(ids, parsed, strict=True) if p["title"] is not None}
    criteria = [
        {"id": cid, "text": p["text"], "category": p["category"], "weight": p["weight"]}
        for cid, p in zip(ids, parsed, strict=True)
    ]
    data = {
        "id": rubric_id,
        "scope": "prompt" if prompt_id else "general",
        "prompt_id": prompt_id,
        "prompt": prompt,
        "aggregation": "weighted_mean",
        "criteria": criteria,
    }
    kept = dict(parameters or {})
    if titles:
        kept["rar_titles"] = titles
    return build_rubric(data, "rar", kept)


def rar_row_to_rubric(row: dict[str, Any]) -> Rubric:
    """One dataset row (``question`` + ``rubric`` items + optional ``id``) as a prompt-specific rubric."""
    problems = Problems()
    key = next((k for k in ("rubric", "rubrics") if k in row), "rubric")
    items = row.get(key)
    if isinstance(items, str):
        try:
            items = loads_json(items)
        except json.JSONDecodeError as exc:
            problems.add(key, f"is a string but not a JSON list of items ({exc.msg})")
    prompt_key = next((k for k in _PROMPT_KEYS if row.get(k) is not None), None)
    prompt = row.get(prompt_key) if prompt_key else None
    if prompt is not None and not isinstance(prompt, (str, list)):
        problems.add(prompt_key, f"expected a string, got {type(prompt).__name__}")
        prompt = None
    prompt = prompt_text(prompt) if isinstance(prompt, list) else prompt
    id_key = next((k for k in _ID_KEYS if row.get(k) is not None), None)
    raw_id = str(row[id_key]) if id_key else (derived_id(prompt) if prompt else None)
    if raw_id is None:
        problems.add("id", "missing, and there is no 'question' to derive one from; add an 'id'")
    problems.raise_if_any()
    rubric_id = as_id(raw_id)
    if rubric_id is None:
        raise RecordError([(id_key, f"{raw_id!r} has no letters or digits to make a rubric id from")])
    consumed = {key, *(k for k in (prompt_key, id_key) if k), *_DERIVED}
    parameters = {k: v for k, v in row.items() if k not in consumed}
    if prompt_key and prompt_key != "question":
        parameters["rar_prompt_key"] = prompt_key
    try:
        return from_rar(items, rubric_id, prompt=prompt, prompt_id=raw_id, parameters=parameters)
    except RecordError as exc:
        raise RecordError([(f.replace("rubric", key, 1) if f else f, m) for f, m in exc.problems]) from None


def derived_id(prompt: str) -> str:
    """The id of a row that has none: ``rar-`` and the first 12 hex digits of the question's sha256."""
    return hashed_id("rar", prompt)


def to_rar(rubric: Rubric) -> list[dict[str, Any]]:
    """The rubric's criteria as RaR items (category prefix restored; weight sign kept)."""
    titles = parameters_of(rubric).get("rar_titles", {})
    items = []
    for criterion in rubric.criteria:
        prefix = f"{criterion.category.capitalize()} Criteria: " if criterion.category in CATEGORIES else ""
        items.append(
            {
                "title": titles.get(criterion.id, criterion.id),
                "description": prefix + criterion.text,
                "weight": json_number(criterion.weight),
            }
        )
    return items


def rubric_to_rar_row(rubric: Rubric) -> dict[str, Any]:
    """A dataset row: ``question`` (the prompt), ``rubric`` items, kept fields; ``id`` unless derivable."""
    prompt_key = parameters_of(rubric).get("rar_prompt_key", "question")
    row: dict[str, Any] = {}
    key = rubric.prompt_id or rubric.id
    if not (rubric.prompt and key == derived_id(rubric.prompt)):
        row["id"] = key
    if rubric.prompt is not None:
        row[prompt_key] = rubric.prompt
    row["rubric"] = to_rar(rubric)
    add_kept_fields(row, rubric)
    return {k: row[k] for k in (*_KEY_ORDER, *row) if k in row}


def is_item_list(data: Any) -> bool:
    """True for a non-empty list of RaR items (dicts with a ``description``)."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(item, dict) and "description" in item and "rubric" not in item for item in data)
    )


def read_rar(path: Path, lossy: Counter[str]) -> list[Rubric]:
    """A JSON list of items (one rubric named after the file), or JSON/JSONL rows with ``rubric`` lists."""
    if suffix_of(path) != ".jsonl":
        data = load_json(path)
        if is_item_list(data):
            try:
                return [from_rar(data, stem_id(path))]
            except RecordError as exc:
                # The file is the item list itself, so "rubric[2].weight" is "[2].weight" here.
                problems = [
                    (f[len("rubric") :] if f and f.startswith("rubric[") else f, m) for f, m in exc.problems
                ]
                raise ConversionError("\n".join(RecordError(problems).located(path, None))) from None
    lossy_rows = 0

    def one(row: dict[str, Any]) -> Rubric:
        nonlocal lossy_rows
        if "rubric" not in row and "rubrics" not in row:
            if "description" in row and "weight" in row:
                raise RecordError(
                    [
                        (
                            None,
                            "this is a single RaR item; put the items of one rubric in a JSON list, "
                            "or give each row a 'question' and a 'rubric' list",
                        )
                    ]
                )
            raise RecordError(
                [("rubric", "missing; a RaR row needs a 'rubric' list of {title, description, weight}")]
            )
        lossy_rows += any(k in row for k in _DERIVED)
        return rar_row_to_rubric(row)

    rubrics = convert_records(path, iter_records(path), one)
    if lossy_rows:
        lossy["rubric_list / rubric_count (recomputable from the items)"] += lossy_rows
    return rubrics


def export_rar(rubrics: list[Rubric]) -> Export:
    """RaR rows for every rubric (scales, checks, applies_if and tags have no place and are counted)."""
    out = Export()
    for rubric in rubrics:
        out.records.append(rubric_to_rar_row(rubric))
        out.written.append(rubric)
        field_losses(rubric, {"category", "weight"}, out.lossy)
        out.lossy["categories other than RaR's four"] += sum(
            1 for c in rubric.criteria if c.category is not None and c.category not in CATEGORIES
        )
    if not out.lossy["categories other than RaR's four"]:
        del out.lossy["categories other than RaR's four"]
    return out
