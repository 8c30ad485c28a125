"""What the CLI calls: score or compare files end to end, with the output journaled as records finish.

``score_files`` loads the rubric(s) and the data, builds a :class:`~rubrickit.judge.engine.Judge`, and streams score
records into ``out`` (JSONL, appended and fsync'd as each item finishes, so a killed run loses nothing and
``resume=True`` picks up where it stopped). ``compare_files`` does the same for pairs. ``dry_run=True`` returns the
plan (calls, tokens, cost) without calling the judge. Importing this module needs no backend SDK.

Resuming: records with ``error`` verdicts are not answers, so ``resume=True`` removes them from the output and judges
their items again; records made with another judge spec or another version of a rubric (its fingerprint) are
refused rather than mixed into one output. :meth:`RunResult.raise_for_errors` turns items left with error verdicts
into :class:`ErrorRateExceeded` (exit status 3 on the command line) above the allowed rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rubrickit.data.items import stream_items, stream_pairs
from rubrickit.rubric.files import is_rubric_set_path, load_rubric, load_rubric_set

from ..errors import JudgeUnavailableError, OutputExistsError, RubrickitError
from ..rubric import Rubric, RubricSet, ScoreRecord
from .accounting import Plan
from .engine import Judge, JudgeOptions
from .journal import DEFAULT_KEY_FIELDS, PAIR_KEY_FIELDS, Journal
from .pairwise import PairRecord

__all__ = ["ErrorRateExceeded", "FileRecords", "RecordStats", "RunResult", "compare_files", "load_rubric_arg",
           "score_files"]


class ErrorRateExceeded(RubrickitError):
    """A run finished, but more of its items than allowed have ``error`` verdicts (exit status 3)."""

    exit_code = 3


@dataclass
class RecordStats:
    """A run's records summed up as they finish, so nothing needs them all in memory at the end."""

    count: int = 0
    errors: int = 0
    """Error verdicts (score records) or failed judgments (pair records)."""
    error_items: int = 0
    """Records with at least one."""
    scored: int = 0
    """Score records with a reward."""
    reward_sum: float = 0.0
    reward_min: float | None = None
    reward_max: float | None = None
    coverage_sum: float = 0.0
    gates_failed: int = 0
    """Score records with a failed gate."""
    winners: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0, "tie": 0})
    """Pair records by winner (undecided: ``count`` minus these)."""
    labelled: int = 0
    correct: int = 0
    checked_orders: int = 0
    consistent: int = 0

    def add(self, record: Any) -> None:
        """Count one record (a :class:`ScoreRecord` or a pair record)."""
        self.count += 1
        errors = getattr(record, "errors", 0) or 0
        self.errors += errors
        self.error_items += 1 if errors else 0
        if hasattr(record, "winner"):
            if record.winner is not None:
                self.winners[record.winner] = self.winners.get(record.winner, 0) + 1
            if record.correct is not None:
                self.labelled += 1
                self.correct += bool(record.correct)
            if record.consistent is not None:
                self.checked_orders += 1
                self.consistent += bool(record.consistent)
            return
        reward = record.reward
        if reward is not None:
            self.scored += 1
            self.reward_sum += reward
            self.reward_min = reward if self.reward_min is None else min(self.reward_min, reward)
            self.reward_max = reward if self.reward_max is None else max(self.reward_max, reward)
        self.coverage_sum += record.coverage
        self.gates_failed += 1 if record.gates_failed else 0

    @classmethod
    def of(cls, records: Iterable[Any]) -> RecordStats:
        """The stats of ``records``."""
        stats = cls()
        for record in records:
            stats.add(record)
        return stats


class FileRecords(Sequence):
    """The records one run appended to its output file, read back (and parsed) each time they are iterated.

    A run that writes a file does not also keep its records in memory; this sequence reads them from the file when
    asked, so ``RunResult.records`` works the same for a run of any length.
    """

    def __init__(self, path: Path, start: int, count: int, model: Any):
        self.path = path
        self._start = start
        self._count = count
        self._model = model

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        with open(self.path, "rb") as fh:
            fh.seek(self._start)
            for _, line in zip(range(self._count), fh, strict=False):
                yield self._model.model_validate_json(line)

    def __getitem__(self, index: Any) -> Any:
        return list(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, FileRecords)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FileRecords({str(self.path)!r}, {self._count} records)"


@dataclass
class RunResult:
    """What a run did: the new records, the accounting, the plan (dry runs), where the output went."""

    records: Sequence[Any] = field(default_factory=list)
    """Records produced by this run (score records, or pair records for compare), in completion order. A run that
    wrote a file gives a :class:`FileRecords` that reads them back from it, so no run holds every record in
    memory."""
    stats: RecordStats | None = None
    """The records summed up as they finished (``None``: sum :attr:`records` when asked)."""
    accounting: dict[str, Any] = field(default_factory=dict)
    """Calls, cache hits, tokens, retries, errors by kind, cost, duplicates, elapsed seconds."""
    plan: Plan | None = None
    """The plan, for dry runs (nothing was judged)."""
    out: Path | None = None
    """The output file, when one was written."""
    resumed: int = 0
    """Records already in the output file and skipped (``resume=True``)."""
    empty_input: bool = False
    """The data file had no rows (``allow_empty=True``): nothing was judged or written."""
    redone: int = 0
    """Records with error verdicts removed from the output on resume, their items judged again."""
    dropped: int = 0
    """Records that came back twice (a retried block on ``--engine ray``) and were written once."""

    @property
    def summary(self) -> RecordStats:
        """:attr:`stats`, or the stats of :attr:`records`."""
        return self.stats if self.stats is not None else RecordStats.of(self.records)

    @property
    def errors(self) -> int:
        """Error verdicts (score records) or failed judgments (pair records) among the new records."""
        return self.summary.errors

    @property
    def error_items(self) -> int:
        """Items (records) of this run left with at least one error verdict."""
        return self.summary.error_items

    @property
    def error_rate(self) -> float:
        """Share of the output's items with error verdicts (resumed records have none: errors are redone)."""
        total = len(self.records) + self.resumed
        return self.error_items / total if total else 0.0

    def raise_for_errors(self, max_error_rate: float = 0.0) -> None:
        """Raise :class:`ErrorRateExceeded` when the share of items with error verdicts exceeds ``max_error_rate``
        (default 0: any error counts), saying how many, why, and how to judge them again."""
        if self.plan is not None or not self.error_items or self.error_rate <= max_error_rate:
            return
        kinds = {k[len("errors_"):]: v for k, v in self.accounting.items() if k.startswith("errors_") and v}
        why = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) or "see the records"
        where = f"; rerun the same command with --resume to judge them again (they are in {self.out})" \
            if self.out is not None else ""
        total = len(self.records) + self.resumed
        raise ErrorRateExceeded(
            f"{self.error_items} of {total} items ended with error verdicts ({self.errors} errors: {why}); "
            f"error rate {self.error_rate:.3g} is above --max-error-rate {max_error_rate:g}{where}")


def load_rubric_arg(path: str | Path | None) -> Rubric | RubricSet | None:
    """A rubric file (YAML/JSON) as a :class:`Rubric`, a JSONL rubric set as a :class:`RubricSet`; ``None`` stays."""
    if path is None:
        return None
    return load_rubric_set(path) if is_rubric_set_path(path) else load_rubric(path)


def _has_errors(record: Mapping[str, Any]) -> bool:
    return bool(record.get("errors"))


def _resume_check(out: str | Path | None, rubrics: Any, judge: Judge) -> Callable[[dict[str, Any], int], None]:
    """A journal ``check`` refusing records made with another judge spec or another version of a rubric."""
    listed: Sequence[Rubric] = [] if rubrics is None else [rubrics] if isinstance(rubrics, Rubric) else list(rubrics)
    expected: dict[str, set[str]] = {}
    for rubric in listed:
        if judge.options.mode == "holistic" and rubric.aggregation != "holistic":
            rubric = rubric.model_copy(update={"aggregation": "holistic"})  # as the engine stamps it
        expected.setdefault(rubric.id, set()).add(rubric.fingerprint)
    advice = "write to another --out, or pass --force to start this output over"

    def check(record: dict[str, Any], number: int) -> None:
        made_by = record.get("judge")
        if "judge" in record and made_by != judge.spec:
            raise RubrickitError(f"{out}:{number}: this output was made with judge {made_by!r}, but this run uses "
                                 f"{judge.spec!r}; verdicts of two judges cannot share one output: {advice}")
        rubric_id = record.get("rubric_id")
        if rubric_id is None and not expected:
            return  # a direct comparison, no rubric
        if rubric_id not in expected:
            raise RubrickitError(f"{out}:{number}: this output holds records of rubric {rubric_id!r}, which this run "
                                 f"does not use; {advice}")
        if record.get("rubric_fingerprint") not in expected[rubric_id]:
            raise RubrickitError(f"{out}:{number}: rubric {rubric_id!r} changed since this output was written (its "
                                 f"fingerprint differs; `rubrickit diff` shows what changed); {advice}")

    return check


def _journal(out: str | Path | None, *, resume: bool, force: bool, key_fields: Sequence[str], rubrics: Any,
             engine: Judge) -> Journal:
    return Journal(out, resume=resume, overwrite=force, key_fields=key_fields,
                   check=_resume_check(out, rubrics, engine), redo=_has_errors)


def _collect(records: Iterable[Any], journal: Journal, model: Any) -> tuple[Sequence[Any], RecordStats]:
    """Run the engine's record stream to its end, summing the records up; keep them only without an output file
    (the journal has written them: :class:`FileRecords` reads them back when asked)."""
    start = journal.size()
    kept: list[Any] = []
    stats = RecordStats()
    try:
        for record in records:
            stats.add(record)
            if journal.path is None:
                kept.append(record)
    except JudgeUnavailableError as error:
        raise _stopped(error, journal) from None
    if journal.path is None:
        return kept, stats
    return FileRecords(journal.path, start, journal.written, model), stats


def _stopped(error: JudgeUnavailableError, journal: Journal) -> JudgeUnavailableError:
    """The error with where the finished records are (the run can be resumed from them)."""
    if journal.path is None:
        return error
    kept = len(journal.resumed_records) + journal.written
    return JudgeUnavailableError(f"{error} ({kept} finished record(s) are in {journal.path})")


def _refuse_existing_output(out: str | Path | None, resume: bool, force: bool) -> None:
    """What :class:`Journal` would refuse, checked before a judge (perhaps a model) is loaded."""
    path = Path(out) if out is not None else None
    if path is not None and not (resume or force) and path.is_file() and path.stat().st_size > 0:
        raise OutputExistsError(f"{path}: already exists; pass --resume to continue it or --force to start over.")


def _options(options: JudgeOptions | None, overrides: Mapping[str, Any]) -> JudgeOptions:
    base = options or JudgeOptions()
    given = {k: v for k, v in overrides.items() if v is not None}
    return JudgeOptions.model_validate({**dict(base), **given}) if given else base


def score_files(rubric_path: str | Path, data_path: str | Path, *, judge: Any = None, base_url: str | None = None,
                out: str | Path | None = None, resume: bool = False, force: bool = False, dry_run: bool = False,
                mapping: Mapping[str, str] | None = None, options: JudgeOptions | None = None,
                backend_options: dict[str, Any] | None = None, allow_empty: bool = False,
                **option_overrides: Any) -> RunResult:
    """Score every response of ``data_path`` with the rubric(s) of ``rubric_path``.

    ``judge`` is a spec string or backend (``None``: the embedded judge). ``out`` receives one score record per
    line as items finish (``None``: no file); an existing ``out`` needs ``resume`` (skip what is done) or ``force``
    (start over). ``option_overrides`` are :class:`JudgeOptions` fields (``mode="logprob"``, ``concurrency=32``;
    ``None`` values are ignored, so CLI flags can be passed straight through). Errors in the files are raised
    before any judge call. A data file with no rows is an error unless ``allow_empty`` (then nothing is judged or
    written and the result has ``empty_input``).
    """
    rubrics = load_rubric_arg(rubric_path)
    items = stream_items(data_path, mapping=mapping, allow_empty=allow_empty)
    if not items:
        return RunResult(empty_input=True)
    if not dry_run:
        _refuse_existing_output(out, resume, force)
    settings = _options(options, option_overrides)
    with Judge(judge, base_url=base_url, options=settings, backend_options=backend_options) as engine:
        if dry_run:
            return RunResult(plan=engine.plan(rubrics, items), accounting=engine.summary())
        with _journal(out, resume=resume, force=force, key_fields=DEFAULT_KEY_FIELDS, rubrics=rubrics,
                      engine=engine) as journal:
            records, stats = _collect(engine.score_many(rubrics, items, journal=journal), journal, ScoreRecord)
            return RunResult(records=records, stats=stats, accounting=engine.summary(), out=journal.path,
                             resumed=len(journal.resumed_records), redone=journal.redone)


def compare_files(rubric_path: str | Path | None, pairs_path: str | Path, *, judge: Any = None,
                  base_url: str | None = None, out: str | Path | None = None, resume: bool = False,
                  force: bool = False, dry_run: bool = False, mapping: Mapping[str, str] | None = None,
                  options: JudgeOptions | None = None, backend_options: dict[str, Any] | None = None,
                  allow_empty: bool = False, **option_overrides: Any) -> RunResult:
    """Compare every pair of ``pairs_path``, with the rubric(s) of ``rubric_path`` or directly when it is ``None``.

    As :func:`score_files`; records are :class:`~rubrickit.judge.pairwise.PairRecord` objects. Direct comparisons
    are journaled by (pair_id, repeat), rubric comparisons by (pair_id, rubric_id, repeat).
    """
    rubrics = load_rubric_arg(rubric_path)
    pairs = stream_pairs(pairs_path, mapping=mapping, allow_empty=allow_empty)
    if not pairs:
        return RunResult(empty_input=True)
    if not dry_run:
        _refuse_existing_output(out, resume, force)
    settings = _options(options, option_overrides)
    key_fields = PAIR_KEY_FIELDS if rubrics is not None else ("pair_id", "repeat")
    with Judge(judge, base_url=base_url, options=settings, backend_options=backend_options) as engine:
        if dry_run:
            return RunResult(plan=engine.plan_compare(rubrics, pairs), accounting=engine.summary())
        with _journal(out, resume=resume, force=force, key_fields=key_fields, rubrics=rubrics,
                      engine=engine) as journal:
            records, stats = _collect(engine.compare_many(rubrics, pairs, journal=journal), journal, PairRecord)
            return RunResult(records=records, stats=stats, accounting=engine.summary(), out=journal.path,
                             resumed=len(journal.resumed_records), redone=journal.redone)
