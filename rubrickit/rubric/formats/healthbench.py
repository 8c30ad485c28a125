"""HealthBench rows (Arora et al., 2025): ``prompt_id``, ``prompt`` (chat messages), ``rubrics`` of
``{criterion, points, tags}``, ``example_tags``, ``ideal_completions_data``, ``canary``.

One row becomes one prompt-specific rubric: id and ``prompt_id`` from the row's ``prompt_id``, criteria
``c1..cN`` in file order with ``weight = points`` (negative points are penalties), tags kept, ``aggregation:
points``, ``gates: none``. The conversation goes into ``prompt``: a single user turn as its plain text,
anything else as the JSON of the messages (:func:`prompt_messages` reads either back). ``example_tags`` and
``canary`` go to ``provenance.parameters``; ``ideal_completions_data`` (reference completions, over half of
the file's bytes) is not kept and is counted as lost.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rubrickit._util.io import loads_json
from rubrickit.rubric.formats._common import (
    Export,
    Problems,
    add_kept_fields,
    as_id,
    build_rubric,
    convert_records,
    field_losses,
    is_number,
    iter_records,
    json_number,
    parameters_of,
    short,
    text_field,
)
from rubrickit.rubric.model import Rubric

__all__ = ["from_healthbench", "to_healthbench", "prompt_messages", "prompt_text"]

_CONSUMED = ("prompt_id", "prompt", "rubrics", "ideal_completions_data")
_KEY_ORDER = ("example_tags", "prompt", "prompt_id", "rubrics", "canary")


def prompt_text(messages: list[dict[str, Any]] | str | None) -> str | None:
    """The ``prompt`` kept for a conversation: one user turn as plain text, else the messages' JSON."""
    if messages is None or isinstance(messages, str):
        return messages
    if len(messages) == 1 and messages[0].get("role") == "user" and set(messages[0]) == {"role", "content"}:
        content = messages[0]["content"]
        if isinstance(content, str) and _as_messages(content) is None:
            return content
    return json.dumps(messages, ensure_ascii=False, indent=2)


def prompt_messages(prompt: str | None) -> list[dict[str, Any]]:
    """The chat messages behind a rubric's ``prompt`` (JSON of messages, or plain text as one user turn)."""
    if not prompt:
        return []
    messages = _as_messages(prompt)
    return messages if messages is not None else [{"role": "user", "content": prompt}]


def _as_messages(text: str) -> list[dict[str, Any]] | None:
    if not text.lstrip().startswith("["):
        return None
    try:
        data = loads_json(text)
    except json.JSONDecodeError:
        return None
    if (
        isinstance(data, list)
        and data
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in data)
    ):
        return data
    return None


def _check_messages(value: Any, problems: Problems) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        problems.add("prompt", f"expected a list of {{role, content}} messages, got {type(value).__name__}")
        return
    for index, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or "content" not in message
        ):
            problems.add(f"prompt[{index}]", f"expected {{role, content}}, got {short(message)}")


def _criteria(items: Any, problems: Problems) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not items:
        problems.add("rubrics", "missing or empty; a row needs a list of {criterion, points, tags}")
        return []
    criteria = []
    for index, item in enumerate(items):
        field = f"rubrics[{index}]"
        if not isinstance(item, dict):
            problems.add(field, f"expected {{criterion, points, tags}}, got {short(item)}")
            continue
        text = text_field(item, "criterion", problems, f"{field}.criterion")
        points = item.get("points")
        if not is_number(points):
            problems.add(
                f"{field}.points", f"expected a number (negative for a penalty), got {short(points)}"
            )
        tags = item.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            problems.add(f"{field}.tags", f"expected a list of strings, got {short(tags)}")
            tags = []
        if text is not None and is_number(points):
            criteria.append(
                {"id": f"c{index + 1}", "text": text, "weight": float(points), "tags": list(tags)}
            )
    return criteria


def from_healthbench(row: dict[str, Any]) -> Rubric:
    """One HealthBench row as a prompt-specific rubric (see the module docstring for the mapping)."""
    problems = Problems()
    prompt_id = text_field(row, "prompt_id", problems)
    criteria = _criteria(row.get("rubrics"), problems)
    if row.get("prompt") is not None:
        _check_messages(row["prompt"], problems)
    rubric_id = as_id(prompt_id) if prompt_id else None
    if prompt_id and rubric_id is None:
        problems.add("prompt_id", f"{prompt_id!r} has no letters or digits to make a rubric id from")
    problems.raise_if_any()
    data = {
        "id": rubric_id,
        "scope": "prompt",
        "prompt_id": prompt_id,
        "prompt": prompt_text(row.get("prompt")),
        "aggregation": "points",
        "gates": "none",
        "criteria": criteria,
    }
    parameters = {key: value for key, value in row.items() if key not in _CONSUMED}
    return build_rubric(data, "healthbench", parameters)


def to_healthbench(rubric: Rubric) -> dict[str, Any]:
    """A HealthBench row for a rubric: criterion text, points (= weight), tags, prompt id and conversation."""
    row: dict[str, Any] = {
        "example_tags": parameters_of(rubric).get("example_tags", []),
        "prompt": prompt_messages(rubric.prompt) if rubric.prompt else None,
        "prompt_id": rubric.prompt_id or rubric.id,
        "rubrics": [
            {"criterion": c.text, "points": json_number(c.weight), "tags": list(c.tags)}
            for c in rubric.criteria
        ],
    }
    if row["prompt"] is None:
        del row["prompt"]
    add_kept_fields(row, rubric)
    return {key: row[key] for key in (*_KEY_ORDER, *row) if key in row}


def read_healthbench(path: Path, lossy: Counter[str]) -> list[Rubric]:
    """Every row of a HealthBench JSONL (or JSON array) file."""
    dropped = 0

    def one(row: dict[str, Any]) -> Rubric:
        nonlocal dropped
        rubric = from_healthbench(row)
        dropped += row.get("ideal_completions_data") is not None
        return rubric

    rubrics = convert_records(path, iter_records(path), one)
    if dropped:
        lossy["ideal_completions_data (reference completions)"] += dropped
    return rubrics


def export_healthbench(rubrics: list[Rubric]) -> Export:
    """HealthBench rows for every rubric (all criteria fit; what HealthBench has no place for is counted)."""
    out = Export()
    for rubric in rubrics:
        out.records.append(to_healthbench(rubric))
        out.written.append(rubric)
        field_losses(rubric, {"tags", "weight"}, out.lossy)
        if not rubric.prompt:
            out.lossy["prompt (HealthBench rows need the conversation)"] += 1
        if any(c.id != f"c{i}" for i, c in enumerate(rubric.criteria, start=1)):
            out.lossy["criterion ids (HealthBench items have none)"] += 1
    return out
