"""What the CLI calls: score or compare files end to end, with the output journaled as records finish.

``score_files`` loads the rubric(s) and the data, builds a :class:`~rubrickit.judge.engine.Judge`, and streams score
records into ``out`` (JSONL, appended and fsync'd as each item finishes, so a killed run loses nothing and
``resume=True`` picks up where it stopped). ``compare_files`` does the same for pairs. ``dry_run=True`` returns the
plan (calls, tokens, cost) without calling the judge. Importing this module needs no backend SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rubric import Rubric, RubricSet, ScoreRecord
from ..rubric_io import is_rubric_set_path, load_rubric, load_rubric_set
from .accounting import Plan
from .data import load_items, load_pairs
from .engine import Judge, JudgeOptions
from .journal import DEFAULT_KEY_FIELDS, PAIR_KEY_FIELDS, Journal

__all__ = ["RunResult", "compare_files", "load_rubric_arg", "score_files"]


@dataclass
class RunResult:
    """What a run did: the new records, the accounting, the plan (dry runs), where the output went."""

    records: list[Any] = field(default_factory=list)
    """Records produced by this run (score records, or pair records for compare), in completion order."""
    accounting: dict[str, Any] = field(default_factory=dict)
    """Calls, cache hits, tokens, retries, errors by kind, cost, duplicates, elapsed seconds."""
    plan: Plan | None = None
    """The plan, for dry runs (nothing was judged)."""
    out: Path | None = None
    """The output file, when one was written."""
    resumed: int = 0
    """Records already in the output file and skipped (``resume=True``)."""

    @property
    def errors(self) -> int:
        """Error verdicts (score records) or failed judgments (pair records) among the new records."""
        return sum(getattr(record, "errors", 0) for record in self.records)


def load_rubric_arg(path: str | Path | None) -> Rubric | RubricSet | None:
    """A rubric file (YAML/JSON) as a :class:`Rubric`, a JSONL rubric set as a :class:`RubricSet`; ``None`` stays."""
    if path is None:
        return None
    return load_rubric_set(path) if is_rubric_set_path(path) else load_rubric(path)


def _options(options: JudgeOptions | None, overrides: Mapping[str, Any]) -> JudgeOptions:
    base = options or JudgeOptions()
    given = {k: v for k, v in overrides.items() if v is not None}
    return JudgeOptions.model_validate({**dict(base), **given}) if given else base


def score_files(rubric_path: str | Path, data_path: str | Path, *, judge: Any = None, base_url: str | None = None,
                out: str | Path | None = None, resume: bool = False, force: bool = False, dry_run: bool = False,
                mapping: Mapping[str, str] | None = None, options: JudgeOptions | None = None,
                backend_options: dict[str, Any] | None = None, **option_overrides: Any) -> RunResult:
    """Score every response of ``data_path`` with the rubric(s) of ``rubric_path``.

    ``judge`` is a spec string or backend (``None``: the embedded judge). ``out`` receives one score record per
    line as items finish (``None``: no file); an existing ``out`` needs ``resume`` (skip what is done) or ``force``
    (start over). ``option_overrides`` are :class:`JudgeOptions` fields (``mode="logprob"``, ``concurrency=32``;
    ``None`` values are ignored, so CLI flags can be passed straight through). Errors in the files are raised
    before any judge call.
    """
    rubrics = load_rubric_arg(rubric_path)
    items = load_items(data_path, mapping=mapping)
    settings = _options(options, option_overrides)
    with Judge(judge, base_url=base_url, options=settings, backend_options=backend_options) as engine:
        if dry_run:
            return RunResult(plan=engine.plan(rubrics, items), accounting=engine.summary())
        with Journal(out, resume=resume, overwrite=force, key_fields=DEFAULT_KEY_FIELDS) as journal:
            records: list[ScoreRecord] = list(engine.score_many(rubrics, items, journal=journal))  # type: ignore[arg-type]
            return RunResult(records=records, accounting=engine.summary(), out=journal.path,
                             resumed=len(journal.resumed_records))


def compare_files(rubric_path: str | Path | None, pairs_path: str | Path, *, judge: Any = None,
                  base_url: str | None = None, out: str | Path | None = None, resume: bool = False,
                  force: bool = False, dry_run: bool = False, mapping: Mapping[str, str] | None = None,
                  options: JudgeOptions | None = None, backend_options: dict[str, Any] | None = None,
                  **option_overrides: Any) -> RunResult:
    """Compare every pair of ``pairs_path``, with the rubric(s) of ``rubric_path`` or directly when it is ``None``.

    As :func:`score_files`; records are :class:`~rubrickit.judge.pairwise.PairRecord` objects. Direct comparisons
    are journaled by (pair_id, repeat), rubric comparisons by (pair_id, rubric_id, repeat).
    """
    rubrics = load_rubric_arg(rubric_path)
    pairs = load_pairs(pairs_path, mapping=mapping)
    settings = _options(options, option_overrides)
    key_fields = PAIR_KEY_FIELDS if rubrics is not None else ("pair_id", "repeat")
    with Judge(judge, base_url=base_url, options=settings, backend_options=backend_options) as engine:
        if dry_run:
            return RunResult(plan=engine.plan_compare(rubrics, pairs), accounting=engine.summary())
        with Journal(out, resume=resume, overwrite=force, key_fields=key_fields) as journal:
            records = list(engine.compare_many(rubrics, pairs, journal=journal))
            return RunResult(records=records, accounting=engine.summary(), out=journal.path,
                             resumed=len(journal.resumed_records))
