"""Best-of-N: rank each prompt's candidate responses by rubric reward, and turn rankings into preference pairs.

:func:`rank_files` is what ``rubrickit rank`` runs. Every candidate is scored through :class:`RewardScorer` (the
same verdicts as ``rubrickit score``); a candidate that could not be scored (an ``error`` verdict, unless
``min_coverage`` accepts it) is left out of the ranking and counted, never ranked as 0. One :class:`RankRecord` per
row is appended to the output as its row finishes (the journal: a killed run resumes, rows with unscored
candidates are ranked again on ``--resume``).

:func:`preference_pairs` writes chosen/rejected pairs in TRL's DPO format (``prompt``, ``chosen``, ``rejected``;
conversational when the prompt is a chat): by default the best against the worst candidate of each row, or every
ordered pair (``mode="all"``) whose reward margin exceeds ``min_margin``. Ties and unscored candidates give no
pair; both are counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rubrickit._util.io import atomic_write_text, refuse_existing
from rubrickit.data.items import CandidateSet, load_candidates

from ..errors import JudgeUnavailableError, RubrickitError
from ..judge.journal import Journal
from ..judge.run import ErrorRateExceeded, _resume_check, _stopped
from ..rubric import Rubric
from .core import RewardDetail, RewardScorer

__all__ = ["PairStats", "RankRecord", "RankResult", "preference_pairs", "rank_files", "rank_rows"]

RANK_KEY_FIELDS: tuple[str, ...] = ("id",)


class RankedCandidate(BaseModel):
    """One candidate of a row."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    index: int
    """Position in the row's ``responses``."""
    reward: float | None
    """The reward (``None`` when the candidate could not be scored)."""
    scored: bool
    """Whether the reward came from the verdicts."""
    reason: str | None = None
    """Why it was not scored."""
    coverage: float = 0.0
    """Assessed / criteria."""
    errors: int = 0
    """Error verdicts."""
    gates_failed: list[str] = Field(default_factory=list)
    """Hard criteria it violated."""
    verdicts: dict[str, str] = Field(default_factory=dict)
    """Criterion id → verdict."""


class RankRecord(BaseModel):
    """The ranking of one row: one JSON object per line of ``rubrickit rank``'s output."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    id: str
    """The row's id."""
    prompt_id: str | None = None
    """The row's prompt id."""
    rubric_id: str
    """The rubric used."""
    rubric_fingerprint: str
    """Its fingerprint."""
    judge: str
    """The judge's spec."""
    prompt: Any
    """The prompt (string or chat), so pairs can be written from the output alone."""
    responses: list[str]
    """The candidates, in input order."""
    rewards: list[float | None]
    """Per candidate, in input order."""
    ranking: list[int]
    """Indices of the scored candidates, best first (equal rewards keep input order)."""
    best: int | None
    """The best candidate's index (``None`` when none was scored)."""
    candidates: list[RankedCandidate]
    """Per candidate, in input order."""
    errors: int = 0
    """Candidates that could not be scored (the row is ranked again on ``--resume``)."""


@dataclass
class PairStats:
    """What :func:`preference_pairs` wrote and skipped."""

    pairs: int = 0
    """Pairs written."""
    ties: int = 0
    """Rows (best-worst) or candidate pairs (all) skipped because the rewards were equal (within ``min_margin``)."""
    unscored: int = 0
    """Candidates left out because they could not be scored."""
    too_few: int = 0
    """Rows with fewer than two scored candidates."""


@dataclass
class RankResult:
    """What a ``rank`` run did."""

    records: list[RankRecord] = field(default_factory=list)
    """Rows ranked by this run, in completion order."""
    resumed: int = 0
    """Rows already in the output (skipped)."""
    redone: int = 0
    """Rows with unscored candidates removed from the output on resume and ranked again."""
    out: Path | None = None
    """The output file."""
    accounting: dict[str, Any] = field(default_factory=dict)
    """The judge's calls, cache hits, tokens, retries, errors."""
    pairs: PairStats | None = None
    """The preference pairs written (``pairs_out``)."""
    pairs_out: Path | None = None
    """Where they went."""

    @property
    def candidates(self) -> int:
        """Candidates ranked by this run."""
        return sum(len(r.responses) for r in self.records)

    @property
    def unscored(self) -> int:
        """Candidates of this run that could not be scored."""
        return sum(r.errors for r in self.records)

    def raise_for_errors(self, max_error_rate: float = 0.0) -> None:
        """:class:`ErrorRateExceeded` when the share of unscored candidates exceeds ``max_error_rate``."""
        if not self.unscored:
            return
        rate = self.unscored / self.candidates
        if rate <= max_error_rate:
            return
        where = f"; rerun the same command with --resume to rank those rows again ({self.out})" if self.out else ""
        raise ErrorRateExceeded(f"{self.unscored} of {self.candidates} candidates could not be scored (error "
                                f"verdicts); error rate {rate:.3g} is above --max-error-rate {max_error_rate:g}{where}")


def _record(row: CandidateSet, rubric: Rubric, judge: str, details: Sequence[RewardDetail]) -> RankRecord:
    candidates = [
        RankedCandidate(index=i, reward=d.reward if d.scored else None, scored=d.scored, reason=d.reason,
                        coverage=d.coverage, errors=d.errors, gates_failed=d.gates_failed, verdicts=d.verdict_map())
        for i, d in enumerate(details)
    ]
    scored = [c for c in candidates if c.scored and c.reward is not None]
    ranking = [c.index for c in sorted(scored, key=lambda c: (-(c.reward or 0.0), c.index))]
    prompt = row.prompt if isinstance(row.prompt, str) else [m.model_dump() for m in row.prompt]
    return RankRecord(
        id=row.id, prompt_id=row.prompt_id, rubric_id=rubric.id, rubric_fingerprint=rubric.fingerprint, judge=judge,
        prompt=prompt, responses=list(row.responses), rewards=[c.reward for c in candidates], ranking=ranking,
        best=ranking[0] if ranking else None, candidates=candidates, errors=len(candidates) - len(scored))


async def _rank_row(scorer: RewardScorer, row: CandidateSet) -> RankRecord:
    base = {"prompt": row.prompt, "reference": row.reference, "prompt_id": row.prompt_id}
    samples = [{**base, "id": f"{row.id}#{i}", "response": response} for i, response in enumerate(row.responses)]
    rubric = scorer._rubric_for(base, 0)  # noqa: SLF001 - the rubric every candidate of the row gets
    batch = await scorer.ascore(samples)
    return _record(row, rubric, scorer.spec, batch.details)


async def _rank_all(scorer: RewardScorer, rows: Sequence[CandidateSet], journal: Journal | None,
                    window: int) -> list[RankRecord]:
    done: list[RankRecord] = []
    pending: set[asyncio.Future] = set()
    position = 0
    try:
        while pending or position < len(rows):
            while position < len(rows) and len(pending) < window:
                pending.add(asyncio.ensure_future(_rank_row(scorer, rows[position])))
                position += 1
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                record = task.result()
                if journal is not None:
                    journal.append(record)
                done.append(record)
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return done


def rank_rows(scorer: RewardScorer, rows: Iterable[CandidateSet | Mapping[str, Any]], *,
              journal: Journal | None = None) -> list[RankRecord]:
    """Rank rows of candidates with ``scorer`` (rows already in ``journal`` are skipped)."""
    listed = [r if isinstance(r, CandidateSet) else CandidateSet.model_validate(r) for r in rows]
    todo = [r for r in listed if journal is None or (r.id,) not in journal.done]
    for index, row in enumerate(todo):  # every row has a rubric before anything is judged
        scorer._rubric_for({"prompt_id": row.prompt_id}, index)  # noqa: SLF001
    window = max(2, 2 * scorer.judge.options.concurrency // max(1, max((len(r.responses) for r in todo),
                                                                         default=1)))
    return scorer.judge._sync(_rank_all(scorer, todo, journal, window))  # noqa: SLF001 - the judge's loop runner


def preference_pairs(records: Iterable[RankRecord | Mapping[str, Any]], *,
                     mode: Literal["best-worst", "all"] = "best-worst",
                     min_margin: float = 0.0) -> tuple[list[dict[str, Any]], PairStats]:
    """DPO pairs (``prompt``, ``chosen``, ``rejected``, plus ``id`` and the two rewards) from rankings."""
    stats = PairStats()
    pairs: list[dict[str, Any]] = []
    for raw in records:
        record = raw if isinstance(raw, RankRecord) else RankRecord.model_validate(raw)
        stats.unscored += record.errors
        scored = [(record.rewards[i], i) for i in record.ranking if record.rewards[i] is not None]
        if len(scored) < 2:
            stats.too_few += 1
            continue
        if mode == "best-worst":
            candidates = [(scored[0], scored[-1])]
        else:
            candidates = [(a, b) for n, a in enumerate(scored) for b in scored[n + 1:]]
        for (high, i), (low, j) in candidates:
            if high - low <= min_margin:
                stats.ties += 1
                continue
            pairs.append(_dpo_pair(record, i, j, high, low))
    stats.pairs = len(pairs)
    return pairs, stats


def _dpo_pair(record: RankRecord, chosen: int, rejected: int, high: float, low: float) -> dict[str, Any]:
    conversational = isinstance(record.prompt, list)

    def completion(text: str) -> Any:
        return [{"role": "assistant", "content": text}] if conversational else text

    return {"prompt": record.prompt, "chosen": completion(record.responses[chosen]),
            "rejected": completion(record.responses[rejected]), "id": record.id,
            "chosen_reward": high, "rejected_reward": low}


def rank_files(rubric: Any, data_path: str | Path, *, judge: Any = None, base_url: str | None = None,
               out: str | Path | None = None, pairs_out: str | Path | None = None,
               pair_mode: Literal["best-worst", "all"] = "best-worst", min_margin: float = 0.0,
               resume: bool = False, force: bool = False, mapping: Mapping[str, str] | None = None,
               allow_empty: bool = False, **options: Any) -> RankResult:
    """Rank every row of ``data_path`` (``prompt``, ``responses``) with the rubric(s) of ``rubric``.

    ``options`` are :class:`~rubrickit.rewards.RewardOptions` fields (``min_coverage=``, ``aggregation=``…) or
    :class:`~rubrickit.judge.JudgeOptions` fields (``None`` values are ignored). ``pairs_out`` gets DPO pairs from
    every row of the output, resumed ones included.
    """
    rows = load_candidates(data_path, mapping=mapping, allow_empty=allow_empty)
    result = RankResult()
    if not rows:
        return result
    out_path = Path(out) if out is not None else None
    if out_path is not None and not (resume or force) and out_path.is_file() and out_path.stat().st_size > 0:
        raise RubrickitError(f"{out_path}: already exists; pass --resume to continue it or --force to start over.")
    if pairs_out is not None:
        refuse_existing(pairs_out, overwrite=force or resume)
    given = {k: v for k, v in options.items() if v is not None}
    given.pop("on_error", None)  # unscored candidates are left out of the ranking, whatever the policy
    with RewardScorer(rubric, judge=judge, base_url=base_url, **given) as scorer:
        check = _resume_check(out_path, scorer.rubrics, scorer.judge)
        with Journal(out_path, resume=resume, overwrite=force, key_fields=RANK_KEY_FIELDS, check=check,
                     redo=lambda record: bool(record.get("errors"))) as journal:
            try:
                result.records = rank_rows(scorer, rows, journal=journal)
            except JudgeUnavailableError as error:
                raise _stopped(error, journal) from None
            result.resumed = len(journal.resumed_records)
            result.redone = journal.redone
            result.out = journal.path
            resumed = list(journal.resumed_records)
        result.accounting = scorer.judge.summary()
    if pairs_out is not None:
        everything = [*(RankRecord.model_validate(r) for r in resumed), *result.records]
        pairs, result.pairs = preference_pairs(everything, mode=pair_mode, min_margin=min_margin)
        text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
        result.pairs_out = atomic_write_text(pairs_out, text, overwrite=True)
    return result
