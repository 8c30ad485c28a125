"""Verdicts for the refiners: a store of per-criterion verdicts, satisfaction matrices and pair differences.

The label-based refiners (misalignment, non-discriminative, whitened and learned weights) need each criterion's
verdict on each response. They come from score records as ``rubrickit score`` writes them (or verdict rows as
``rubrickit aggregate`` reads them), or from judging the responses now (:meth:`VerdictStore.ajudge`, through
:class:`~rubrickit.judge.engine.Judge`); what is already stored is never judged again.

Values: ``met`` → 1, ``unmet`` → 0, ``p_met`` instead when the verdict carries one (``soft``), a scale criterion's
level fraction. ``error``, ``not_applicable`` and missing cells are *unassessed*: they are NaN in a matrix, never
0 — the callers impute (column mean) or skip them and count them.

A labelled pair's two responses are the items ``<pair id>/A`` and ``<pair id>/B`` (:func:`pair_item_ids`): to
reuse precomputed verdicts for pairs, score the responses under those ids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rubrickit._util.io import iter_jsonl_lines, loads_json, no_rows
from rubrickit.data.items import DataItem, PairItem

from ..errors import RubricError, format_location
from ..rubric import Criterion, Rubric, ScoreRecord, Verdict, VerdictRow

__all__ = [
    "LabelledPair",
    "VerdictStore",
    "impute_column_mean",
    "labelled_pairs",
    "pair_item_ids",
    "pair_items",
    "verdict_value",
]


def verdict_value(criterion: Criterion, verdict: Verdict | None, *, soft: bool = True) -> float | None:
    """A verdict as a number in [0, 1] (``None`` when unassessed: error, not applicable, missing)."""
    if verdict is None or verdict.verdict not in ("met", "unmet"):
        return None
    if criterion.scale:
        return criterion.level_fraction(verdict.level) if verdict.level is not None else None
    if soft and verdict.p_met is not None:
        return float(verdict.p_met)
    return 1.0 if verdict.verdict == "met" else 0.0


def pair_item_ids(pair_id: str) -> tuple[str, str]:
    """The item ids of a pair's two responses: ``<pair id>/A`` and ``<pair id>/B``."""
    return f"{pair_id}/A", f"{pair_id}/B"


@dataclass(frozen=True)
class LabelledPair:
    """A labelled pair as item ids: ``better`` is the gold-preferred response."""

    pair_id: str
    better: str
    worse: str


def labelled_pairs(pairs: Iterable[PairItem]) -> list[LabelledPair]:
    """The pairs labelled ``A`` or ``B`` (ties and unlabelled pairs carry no preference and are left out)."""
    out = []
    for pair in pairs:
        if pair.label in ("A", "B"):
            a, b = pair_item_ids(pair.id)
            out.append(LabelledPair(pair.id, a, b) if pair.label == "A" else LabelledPair(pair.id, b, a))
    return out


def pair_items(pairs: Iterable[PairItem]) -> list[dict[str, Any]]:
    """The two responses of every pair as data items (ids from :func:`pair_item_ids`)."""
    items = []
    for pair in pairs:
        for item_id, response in zip(pair_item_ids(pair.id), (pair.response_a, pair.response_b), strict=True):
            items.append({"id": item_id, "prompt": pair.prompt, "response": response, "reference": pair.reference,
                          "prompt_id": pair.prompt_id})
    return items


def impute_column_mean(matrix: Any) -> tuple[Any, int]:
    """Fill NaN cells with their column's mean (0.5 for a column with no value); return it and the count filled."""
    import numpy as np

    X = np.array(matrix, dtype=np.float64, copy=True)
    missing = np.isnan(X)
    if missing.any():
        with np.errstate(invalid="ignore"):
            counts = (~missing).sum(axis=0)
            sums = np.where(missing, 0.0, X).sum(axis=0)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)
        X[missing] = np.take(means, np.nonzero(missing)[1])
    return X, int(missing.sum())


class VerdictStore:
    """Verdicts by (rubric id, item id, criterion id), filled from files and by judging."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], dict[str, Verdict]] = {}
        self.judged = 0
        """Items judged by :meth:`ajudge` (not found in the store)."""
        self.judge_failures = 0
        """Items whose judging raised (their cells stay missing)."""
        self.rows_read = 0
        """Rows read by :meth:`from_file` (0: the file was empty)."""

    # ------------------------------------------------------------------ filling

    def add(self, rubric_id: str, item_id: str, verdicts: Iterable[Verdict]) -> None:
        """Store verdicts of one item (later ones replace earlier ones for the same criterion)."""
        cell = self.cells.setdefault((rubric_id, item_id), {})
        for verdict in verdicts:
            cell[verdict.criterion_id] = verdict

    def add_record(self, record: ScoreRecord) -> None:
        """Store a score record's verdicts (repeat 0 only: repeats are variance estimates, not more data)."""
        if record.repeat == 0:
            self.add(record.rubric_id, record.item_id, record.verdicts)

    @classmethod
    def from_file(cls, path: str | Path, *, allow_empty: bool = False) -> VerdictStore:
        """Read score records (``rubrickit score`` output) or verdict rows, JSONL or ``.jsonl.gz``, mixed freely.

        A file with no rows is an error unless ``allow_empty`` (then a warning and an empty store).
        """
        store = cls()
        path = Path(path)
        if not path.exists():
            raise RubricError.at(path, None, None, "no such verdicts file; give score records written by "
                                 "`rubrickit score` (JSONL) or verdict rows")
        problems: list[str] = []
        verdict_fields = set(Verdict.model_fields)
        rows = 0
        for number, line in iter_jsonl_lines(path):
            rows += 1
            try:
                data = loads_json(line)
                if isinstance(data, Mapping) and "verdicts" in data:
                    store.add_record(ScoreRecord.model_validate(data))
                else:
                    row = VerdictRow.model_validate(data)
                    store.add(row.rubric_id, row.item_id, [Verdict.model_validate(row.model_dump(
                        include=verdict_fields))])
            except json.JSONDecodeError as error:
                problems.append(format_location(path, number, None, f"not JSON: {error.msg}"))
            except ValidationError as error:
                first = error.errors(include_url=False)[0]
                field = ".".join(map(str, first["loc"])) or None
                problems.append(format_location(path, number, field, first["msg"]))
            if len(problems) >= 20:
                break
        if problems:
            raise RubricError(problems)
        if not rows:
            no_rows(path, allow_empty=allow_empty)
        store.rows_read = rows
        return store

    async def ajudge(self, judge: Any, rubric: Rubric, items: Sequence[Mapping[str, Any] | DataItem]) -> None:
        """Judge the items whose stored verdicts do not cover every criterion of ``rubric`` (the rest are reused).

        Judging failures are kept as ``error`` verdicts by the engine (unassessed, counted by the callers); an
        exception for a whole item is counted in :attr:`judge_failures` and leaves its cells missing.
        """
        wanted = {c.id for c in rubric.criteria}
        todo = []
        for item in items:
            item_id = item.id if isinstance(item, DataItem) else str(item["id"])
            have = self.cells.get((rubric.id, item_id), {})
            if not wanted <= set(have):
                todo.append(item)
        if not todo:
            return
        results = await asyncio.gather(*(judge.ascore(rubric, item) for item in todo), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                self.judge_failures += 1
                continue
            self.judged += 1
            self.add(rubric.id, result.item_id, result.verdicts)

    # ------------------------------------------------------------------ reading

    def item_ids(self, rubric_id: str) -> list[str]:
        """Every stored item of a rubric, in first-stored order."""
        return [item for (rid, item) in self.cells if rid == rubric_id]

    def verdict(self, rubric_id: str, item_id: str, criterion_id: str) -> Verdict | None:
        """One stored verdict (``None`` when absent)."""
        return self.cells.get((rubric_id, item_id), {}).get(criterion_id)

    def matrix(self, rubric: Rubric, item_ids: Sequence[str], *, soft: bool = True) -> Any:
        """(items × criteria) values of :func:`verdict_value`, NaN where unassessed."""
        import numpy as np

        X = np.full((len(item_ids), len(rubric.criteria)), np.nan)
        for i, item_id in enumerate(item_ids):
            cell = self.cells.get((rubric.id, item_id), {})
            for k, criterion in enumerate(rubric.criteria):
                value = verdict_value(criterion, cell.get(criterion.id), soft=soft)
                if value is not None:
                    X[i, k] = value
        return X

    def pair_matrices(self, rubric: Rubric, pairs: Sequence[LabelledPair], *, soft: bool = True) -> tuple[Any, Any]:
        """(pairs × criteria) values on the gold-preferred responses and on the others, NaN where unassessed."""
        return (self.matrix(rubric, [p.better for p in pairs], soft=soft),
                self.matrix(rubric, [p.worse for p in pairs], soft=soft))
