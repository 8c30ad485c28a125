"""Prometheus score rubrics and BiGGen-Bench rows (Kim et al., 2024).

A score rubric is ``{criteria, score1_description … score5_description}``: one question and five anchored
levels. It becomes a rubric with ONE scale criterion (id ``score``, ``text = criteria``, ``scale = {1: …, 5:
…}``) and ``aggregation: weighted_mean``, so the reward is (level − 1) / 4.

BiGGen-Bench rows (``id``, ``capability``, ``task``, ``instance_idx``, ``system_prompt``, ``input``,
``reference_answer``, ``score_rubric``, ``atomic_checklist``, ``background_knowledge``): rubric id and
``prompt_id`` from ``id``, ``prompt = input``, criterion tags ``capability:<capability>`` and ``task:<task>``;
every other field (``system_prompt``, ``reference_answer``, the checklist, …) is kept in
``provenance.parameters`` so the row comes back unchanged on export. Feedback-Collection's ``orig_criteria`` /
``orig_score1_description`` … and ``orig_instruction`` spellings are read too.
"""

from __future__ import annotations

import json
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
    iter_records,
    load_json,
    parameters_of,
    short,
    stem_id,
    suffix_of,
)
from rubrickit.rubric.model import Criterion, Rubric

__all__ = ["LEVELS", "from_prometheus", "to_prometheus"]

LEVELS = (1, 2, 3, 4, 5)
"""The score levels of a Prometheus rubric."""

CRITERION_ID = "score"
"""The id of the one scale criterion an imported score rubric has."""

_SCORE_KEYS = ("criteria", *(f"score{level}_description" for level in LEVELS))
_PROMPT_KEYS = ("input", "instruction", "orig_instruction")
_KEY_ORDER = (
    "id",
    "capability",
    "task",
    "instance_idx",
    "system_prompt",
    "input",
    "reference_answer",
    "score_rubric",
    "atomic_checklist",
    "background_knowledge",
)


def _score_rubric(row: dict[str, Any], problems: Problems) -> tuple[str | None, dict[str, Any] | None]:
    """Find the score rubric: nested ``score_rubric`` (object or JSON text), flat keys, or ``orig_`` keys."""
    if "score_rubric" in row:
        value = row["score_rubric"]
        if isinstance(value, str):
            try:
                value = loads_json(value)
            except json.JSONDecodeError:
                problems.add(
                    "score_rubric", "is text, not a {criteria, score1_description…} object; write it as one"
                )
                return None, None
        if not isinstance(value, dict):
            problems.add("score_rubric", f"expected {{criteria, score1_description…}}, got {short(value)}")
            return None, None
        return "score_rubric", value
    if "criteria" in row:
        return "", row
    if "orig_criteria" in row:
        return "", {key: row.get(f"orig_{key}") for key in _SCORE_KEYS if f"orig_{key}" in row}
    problems.add(
        "score_rubric",
        "missing; a Prometheus row needs 'score_rubric' (or 'criteria' and "
        "'score1_description' … 'score5_description')",
    )
    return None, None


def _scale_criterion(rubric: dict[str, Any], where: str, tags: list[str], problems: Problems) -> dict | None:
    prefix = f"{where}." if where else ""
    values = {}
    for key in _SCORE_KEYS:
        value = rubric.get(key)
        if not isinstance(value, str) or not value.strip():
            got = "missing" if value is None else f"got {short(value)}"
            problems.add(prefix + key, f"expected a non-blank string ({got})")
        else:
            values[key] = value
    if len(values) < len(_SCORE_KEYS):
        return None
    scale = {level: values[f"score{level}_description"] for level in LEVELS}
    return {"id": CRITERION_ID, "text": values["criteria"], "scale": scale, "tags": tags}


def from_prometheus(row: dict[str, Any], rubric_id: str | None = None) -> Rubric:
    """A score rubric or BiGGen-Bench row as a one-criterion scale rubric (see the module docstring).

    ``rubric_id`` names a plain score rubric that has no ``id`` of its own (e.g. after its file).
    """
    problems = Problems()
    where, score_rubric = _score_rubric(row, problems)
    tags = [f"{key}:{row[key]}" for key in ("capability", "task") if isinstance(row.get(key), str)]
    criterion = (
        _scale_criterion(score_rubric, where or "", tags, problems) if score_rubric is not None else None
    )
    prompt_key = next((k for k in _PROMPT_KEYS if row.get(k) is not None), None)
    prompt = row.get(prompt_key) if prompt_key else None
    if prompt is not None and not isinstance(prompt, str):
        problems.add(prompt_key, f"expected a string, got {type(prompt).__name__}")
    raw_id = row.get("id")
    if raw_id is not None and not isinstance(raw_id, (str, int)):
        problems.add("id", f"expected a string, got {short(raw_id)}")
    if raw_id is None and rubric_id is None:
        problems.add("id", "missing; add an 'id' to each row")
    problems.raise_if_any()
    key = str(raw_id) if raw_id is not None else None
    final_id = as_id(key) if key is not None else rubric_id
    if final_id is None:
        raise RecordError([("id", f"{key!r} has no letters or digits to make a rubric id from")])
    consumed = {"id", "capability", "task", *(k for k in (prompt_key,) if k)}
    consumed |= (
        {"score_rubric"} if where == "score_rubric" else set(_SCORE_KEYS) | {f"orig_{k}" for k in _SCORE_KEYS}
    )
    parameters = {k: v for k, v in row.items() if k not in consumed}
    if prompt_key and prompt_key != "input":
        parameters["prometheus_prompt_key"] = prompt_key
    specific = prompt is not None and key is not None
    data = {
        "id": final_id,
        "scope": "prompt" if specific else "general",
        "prompt_id": key if specific else None,
        "prompt": prompt,
        "aggregation": "weighted_mean",
        "criteria": [criterion],
    }
    return build_rubric(data, "prometheus", parameters)


def _the_scale_criterion(rubric: Rubric) -> Criterion:
    scaled = [c for c in rubric.criteria if c.scale is not None]
    if len(rubric.criteria) != 1 or len(scaled) != 1:
        raise ConversionError(
            f"rubric {rubric.id!r} ({len(rubric.criteria)} criteria, {len(scaled)} with a scale): a "
            "Prometheus score rubric is one criterion with a 1-5 scale"
        )
    criterion = scaled[0]
    if tuple(criterion.scale or ()) != LEVELS:
        raise ConversionError(
            f"rubric {rubric.id!r} criterion {criterion.id!r} (levels {sorted(criterion.scale or ())}): a "
            "Prometheus score rubric needs exactly the levels 1, 2, 3, 4, 5"
        )
    return criterion


def to_prometheus(rubric: Rubric) -> dict[str, Any]:
    """A BiGGen-Bench row: ``id``, ``capability``/``task`` (from tags), ``input``, ``score_rubric``, …

    Raises :class:`~rubrickit.errors.ConversionError` unless the rubric is one criterion with levels 1-5.
    """
    criterion = _the_scale_criterion(rubric)
    scale = criterion.scale or {}
    prompt_key = parameters_of(rubric).get("prometheus_prompt_key", "input")
    row: dict[str, Any] = {"id": rubric.prompt_id or rubric.id}
    for tag in criterion.tags:
        name, _, value = tag.partition(":")
        if name in ("capability", "task") and value and name not in row:
            row[name] = value
    if rubric.prompt is not None:
        row[prompt_key] = rubric.prompt
    row["score_rubric"] = {"criteria": criterion.text, **{f"score{k}_description": scale[k] for k in LEVELS}}
    add_kept_fields(row, rubric)
    return {key: row[key] for key in (*_KEY_ORDER, *row) if key in row}


def read_prometheus(path: Path, lossy: Counter[str]) -> list[Rubric]:
    """BiGGen/Prometheus rows (JSONL or JSON array), or one plain score rubric named after the file."""
    del lossy  # every field of a row is kept
    if suffix_of(path) == ".jsonl":
        return convert_records(path, iter_records(path), from_prometheus)
    data = load_json(path)
    if isinstance(data, dict):
        return convert_records(path, [(None, "", data)], lambda row: from_prometheus(row, stem_id(path)))
    records = [
        (None, f"[{index}]", item) for index, item in enumerate(data if isinstance(data, list) else [data])
    ]
    return convert_records(path, records, from_prometheus)


def export_prometheus(rubrics: list[Rubric]) -> Export:
    """Rows for the rubrics that are one 1-5 scale criterion; any other rubric is skipped with the reason."""
    out = Export()
    for rubric in rubrics:
        try:
            out.records.append(to_prometheus(rubric))
        except ConversionError as exc:
            out.skipped.append(str(exc))
            continue
        out.written.append(rubric)
        field_losses(rubric, {"scale", "weight", "tags"}, out.lossy)
        other_tags = [t for t in rubric.criteria[0].tags if t.partition(":")[0] not in ("capability", "task")]
        if other_tags:
            out.lossy["tags other than capability:/task:"] += 1
    return out
