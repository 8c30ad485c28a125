"""The reward core every trainer adapter shares (DESIGN §10, docs/rl.md).

:class:`RewardScorer` holds one :class:`~rubrickit.judge.Judge` (and its cache) for the life of a training run and
turns a batch of samples — ``prompt``, ``response``, optional ``reference``, ``prompt_id``, ``id``, an inline
``rubric`` — into one reward per sample, with the verdicts it came from. The verdicts are exactly those of
``rubrickit score`` on the same inputs (the same engine, templates and cache); only what the trainer receives is
decided here:

- **Not scored is not a number.** A sample with any ``error`` verdict is *not scored* unless
  :attr:`RewardOptions.min_coverage` is set and its coverage reaches it; neither is a sample whose criteria were
  all not applicable, nor one whose scoring raised. A not-scored sample gets the failure policy's value
  (:attr:`RewardOptions.on_error`): ``None`` (the trainer skips it), ``0``, a fixed number, or an exception. It is
  counted in :class:`RewardStats` either way. A reward is never renormalised over the criteria that happened to
  succeed: a policy trained on that learns to make the judge fail.
- **Scale.** The rubric's aggregation (``weighted_mean`` in [0, 1] by default), or the one named by
  :attr:`RewardOptions.aggregation`, then ``reward · scale + shift``. A violated hard gate gives
  :attr:`RewardOptions.gate_value` when set (else the gated reward, 0 for the normalised aggregations, mapped the
  same way); a gate decides even when other criteria errored.
- **Groups.** With :attr:`RewardOptions.group_key`, scored rewards are normalised within each group (samples
  sharing that column's value): minus the group mean, divided by its standard deviation unless ``group_std`` is
  false. TRL's ``GRPOTrainer`` already does this after gathering: do not set it there.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rubrickit.data.items import DataItem
from rubrickit.rubric.aggregation import aggregate

from ..errors import JudgeUnavailableError, RubricError, RubrickitError
from ..judge.engine import Judge, JudgeOptions
from ..rubric import Rubric, RubricSet, ScoreRecord, parse_rubric

__all__ = [
    "RewardBatch",
    "RewardDetail",
    "RewardError",
    "RewardOptions",
    "RewardScorer",
    "RewardStats",
    "inline_rubric",
    "load_rubrics_arg",
]

OnError = Literal["none", "zero", "raise"] | float


class RewardError(RubrickitError):
    """Samples could not be scored and the failure policy is ``raise`` (or the batch itself is unusable)."""


class RewardOptions(BaseModel):
    """What a trainer receives for each sample (the judge's own options are :class:`JudgeOptions`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    on_error: OnError = "none"
    """The reward of a sample that could not be scored: ``"none"`` (``None``: TRL skips it; OpenRLHF cannot
    train on it — its run stops — so pass a number there),
    ``"zero"``, a fixed number, or ``"raise"`` (:class:`RewardError` once the batch is done)."""
    min_coverage: float | None = Field(None, ge=0.0, le=1.0)
    """Accept a sample with ``error`` verdicts when its coverage (assessed / criteria) reaches this; also refuse a
    sample below it for any reason. ``None``: any error verdict makes the sample not scored."""
    aggregation: Literal["weighted_mean", "points", "sum"] | None = None
    """Aggregate with this instead of each rubric's own ``aggregation``."""
    soft: bool | None = None
    """Use ``p_met`` instead of 0/1 where the judge gives it (``None``: each rubric's ``soft``)."""
    scale: float = 1.0
    """The reward handed over is ``reward · scale + shift``."""
    shift: float = 0.0
    """See :attr:`scale`."""
    gate_value: float | None = None
    """The reward of a sample whose hard gate failed (``None``: the gated reward, mapped by scale and shift)."""
    group_key: str | None = None
    """A sample column (e.g. ``prompt_id`` or a group id) whose equal values form a group to normalise within."""
    group_std: bool = True
    """With ``group_key``: divide by the group's (population) standard deviation, not only subtract the mean."""

    @field_validator("on_error", mode="before")
    @classmethod
    def _on_error(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() not in ("none", "zero", "raise"):
            try:
                return float(value)
            except ValueError:
                raise ValueError(
                    f"on_error must be 'none', 'zero', 'raise' or a number, not {value!r}") from None
        if isinstance(value, str):
            return value.strip().lower()
        if value is None:
            return "none"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"on_error must be 'none', 'zero', 'raise' or a finite number, not {value!r}")
        return float(value)

    def fallback(self) -> float | None:
        """The reward of a not-scored sample (``raise`` is handled by the caller)."""
        if self.on_error == "zero":
            return 0.0
        if isinstance(self.on_error, float):
            return self.on_error
        return None


class RewardDetail(BaseModel):
    """One sample's reward and what it came from."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    reward: float | None
    """What the trainer receives (after scale, group normalisation and the failure policy)."""
    scored: bool
    """Whether the reward came from the judge's verdicts (``False``: the failure policy's value)."""
    reason: str | None = None
    """Why the sample was not scored."""
    raw_reward: float | None = None
    """The aggregated reward before scale and normalisation (``None`` when not scored)."""
    coverage: float = 0.0
    """Assessed / criteria."""
    errors: int = 0
    """``error`` verdicts."""
    assessed: int = 0
    """Criteria that entered the reward."""
    total: int = 0
    """Criteria in the rubric."""
    subscores: dict[str, float | None] = Field(default_factory=dict)
    """Per-tag sub-scores (the rubric's aggregation over each tag's criteria)."""
    gates_failed: list[str] = Field(default_factory=list)
    """Hard criteria that were violated (the reward is the gate value)."""
    group: str | None = None
    """The sample's group under ``group_key``."""
    record: ScoreRecord | None = None
    """The full score record (verdicts with rationales), as ``rubrickit score`` writes it."""

    def verdict_map(self) -> dict[str, str]:
        """Criterion id → verdict label."""
        return {v.criterion_id: v.verdict for v in self.record.verdicts} if self.record else {}


class RewardStats(BaseModel):
    """Counts over a batch (or, on :attr:`RewardScorer.totals`, over every batch so far)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    samples: int = 0
    """Samples handed in."""
    scored: int = 0
    """Samples whose reward came from the verdicts."""
    unscored: int = 0
    """Samples that got the failure policy's value."""
    gated: int = 0
    """Scored samples whose hard gate failed."""
    error_verdicts: int = 0
    """``error`` verdicts over all samples."""
    judgments: int = 0
    """Criterion verdicts over all samples."""
    coverage_sum: float = 0.0
    """Sum of coverage (mean: :attr:`coverage`)."""
    reward_sum: float = 0.0
    """Sum of the raw rewards of scored samples."""
    subscore_sums: dict[str, list[float]] = Field(default_factory=dict)
    """Per tag: [sum, count] of the sub-scores that exist."""
    reasons: dict[str, int] = Field(default_factory=dict)
    """Why samples were not scored, by kind."""
    calls: int = 0
    """Backend calls made."""
    cache_hits: int = 0
    """Judgments answered without a call: from the cache, or by an identical request of this judge's life."""
    seconds: float = 0.0
    """Wall time spent scoring."""

    @property
    def coverage(self) -> float:
        """Mean coverage."""
        return self.coverage_sum / self.samples if self.samples else 0.0

    @property
    def error_rate(self) -> float:
        """Not-scored samples / samples."""
        return self.unscored / self.samples if self.samples else 0.0

    @property
    def reward_mean(self) -> float | None:
        """Mean raw reward of the scored samples."""
        return self.reward_sum / self.scored if self.scored else None

    def add(self, other: RewardStats) -> None:
        """Add another batch's counts to these."""
        for name in ("samples", "scored", "unscored", "gated", "error_verdicts", "judgments", "calls",
                     "cache_hits"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.coverage_sum += other.coverage_sum
        self.reward_sum += other.reward_sum
        self.seconds += other.seconds
        for tag, (total, count) in other.subscore_sums.items():
            mine = self.subscore_sums.setdefault(tag, [0.0, 0])
            mine[0] += total
            mine[1] += count
        for kind, count in other.reasons.items():
            self.reasons[kind] = self.reasons.get(kind, 0) + count

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat numbers for a trainer's logger: coverage, error rate, gate rate, mean reward, per-tag means."""
        out = {
            f"{prefix}coverage": self.coverage,
            f"{prefix}error_rate": self.error_rate,
            f"{prefix}error_verdict_rate": self.error_verdicts / self.judgments if self.judgments else 0.0,
            f"{prefix}gate_rate": self.gated / self.samples if self.samples else 0.0,
            f"{prefix}unscored": float(self.unscored),
        }
        if self.reward_mean is not None:
            out[f"{prefix}raw_reward_mean"] = self.reward_mean
        for tag, (total, count) in self.subscore_sums.items():
            if count:
                out[f"{prefix}tag/{tag}"] = total / count
        return out


class RewardBatch(BaseModel):
    """The rewards of one batch, in input order, with details and counts."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    rewards: list[float | None]
    """One per sample, in input order."""
    details: list[RewardDetail]
    """One per sample, in input order."""
    stats: RewardStats
    """Counts over the batch."""


# --------------------------------------------------------------------------- rubrics


def load_rubrics_arg(rubrics: Rubric | RubricSet | str | Path | Sequence[Rubric] | None) -> Rubric | RubricSet | None:
    """A rubric, a rubric set, a path to either (``.yaml``/``.json``, ``.jsonl[.gz]``), or ``None``."""
    if rubrics is None or isinstance(rubrics, Rubric | RubricSet):
        return rubrics
    if isinstance(rubrics, str | Path):
        from ..judge.run import load_rubric_arg

        return load_rubric_arg(rubrics)
    listed = list(rubrics)
    if not listed:
        raise RubricError("the list of rubrics is empty")
    return listed[0] if len(listed) == 1 else RubricSet(listed)


def inline_rubric(value: Any, *, where: str = "rubric") -> Rubric:
    """A rubric carried with a sample: a :class:`Rubric`, a mapping (a rubric object, or a HealthBench row with
    ``rubrics``), a list of HealthBench items (``criterion``, ``points``, ``tags``), or YAML/JSON text of one."""
    if isinstance(value, Rubric):
        return value
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise RubricError(f"{where}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        else:
            return parse_rubric(value)
    if isinstance(value, list):
        value = {"rubrics": value}
    if isinstance(value, Mapping):
        if "criteria" in value:
            try:
                return Rubric.model_validate(dict(value))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "rubric"
                raise RubricError(f"{where}: {field}: {first['msg']}") from None
        if "rubrics" in value:
            from rubrickit.rubric.formats.healthbench import from_healthbench

            row = dict(value)
            row.setdefault("prompt_id", "inline")
            return from_healthbench(row)
    raise RubricError(f"{where}: expected a rubric (an object with 'criteria', a list of HealthBench items with "
                      f"'criterion' and 'points', or YAML text), got {type(value).__name__}")


def content_text(value: Any) -> str:
    """A chat message's content as text: a string, or content blocks (text joined; others shown as ``[type]``).
    Shared by the trainer adapters, which receive OpenAI-style multimodal content."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        parts = []
        for block in value:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping):
                kind = str(block.get("type") or "text")
                text = block.get("text")
                parts.append(text if kind == "text" and isinstance(text, str) else f"[{kind}]")
        return "\n".join(parts)
    return str(value)


# --------------------------------------------------------------------------- the scorer


_JUDGE_FIELDS = set(JudgeOptions.model_fields)
_REWARD_FIELDS = set(RewardOptions.model_fields)


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword options → (reward options, judge options); an unknown name is a ``TypeError`` naming both lists."""
    reward, judge = {}, {}
    for name, value in options.items():
        if name in _REWARD_FIELDS:
            reward[name] = value
        elif name in _JUDGE_FIELDS:
            judge[name] = value
        else:
            raise TypeError(f"unknown option {name!r}; reward options: {', '.join(sorted(_REWARD_FIELDS))}; "
                            f"judge options: {', '.join(sorted(_JUDGE_FIELDS))}")
    return reward, judge


class RewardScorer:
    """Scores batches of samples into rewards with one long-lived judge (its cache and limits shared by every batch).

    ``rubrics``: a :class:`Rubric` for every sample, a :class:`RubricSet` chosen by each sample's ``prompt_id``,
    a path to either, or ``None`` when every sample carries its own ``rubric``. ``judge``: a spec string, a backend,
    a :class:`Judge`, or ``None`` for the embedded judge. Keyword options are :class:`RewardOptions` fields
    (``on_error=``, ``min_coverage=``, …) or :class:`JudgeOptions` fields (``mode=``, ``concurrency=``, ``rpm=``…).
    A :class:`Judge` passed in is used as it is (its options stay) and not closed here.
    """

    def __init__(self, rubrics: Any = None, *, judge: Any = None, base_url: str | None = None,
                 options: RewardOptions | None = None, judge_options: JudgeOptions | None = None,
                 backend_options: dict[str, Any] | None = None, **overrides: Any):
        reward_overrides, judge_overrides = split_options(overrides)
        base = options or RewardOptions()
        self.options: RewardOptions = (RewardOptions.model_validate({**dict(base), **reward_overrides})
                                       if reward_overrides else base)
        """The reward options in force."""
        self.rubrics: Rubric | RubricSet | None = load_rubrics_arg(rubrics)
        """The rubric (or set) samples are scored with unless they carry their own."""
        if isinstance(judge, Judge):
            if judge_overrides or judge_options is not None or base_url is not None:
                raise TypeError("judge options go to the Judge you pass in, not to RewardScorer")
            self.judge, self._owns_judge = judge, False
        else:
            judge_overrides.setdefault("progress", False)
            self.judge = Judge(judge, base_url=base_url, options=judge_options, backend_options=backend_options,
                               **judge_overrides)
            self._owns_judge = True
        if self.judge.options.mode == "holistic" and (self.options.aggregation or self.options.soft is not None):
            raise RewardError("aggregation= and soft= do not apply in holistic mode (one 1-10 rating per response)")
        self.judge.check_mode()
        self.totals = RewardStats()
        """Counts over every batch scored so far."""
        self._inline: dict[str, Rubric] = {}
        self._effective: dict[tuple[str, str], Rubric] = {}

    @property
    def spec(self) -> str:
        """The judge's spec string."""
        return self.judge.spec

    # ------------------------------------------------------------------ samples

    def _rubric_for(self, sample: Mapping[str, Any], index: int) -> Rubric:
        carried = sample.get("rubric")
        if carried is not None:
            if isinstance(carried, Rubric):
                return carried
            key = carried if isinstance(carried, str) else json.dumps(carried, sort_keys=True, default=str)
            found = self._inline.get(key)
            if found is None:
                found = inline_rubric(carried, where=f"sample {index}: rubric")
                if len(self._inline) > 4096:
                    self._inline.clear()
                self._inline[key] = found
            return found
        if isinstance(self.rubrics, Rubric):
            return self.rubrics
        if isinstance(self.rubrics, RubricSet):
            prompt_id = sample.get("prompt_id")
            if prompt_id is None:
                raise RubricError(f"sample {index}: no prompt_id, and the rubric set picks rubrics by prompt_id; "
                                  "pass prompt_id with each sample (a dataset column) or one rubric for all")
            if str(prompt_id) not in self.rubrics:
                raise RubricError(f"sample {index}: the rubric set has no rubric for prompt_id {prompt_id!r}; "
                                  "add one or fix the sample's prompt_id")
            return self.rubrics.for_prompt(str(prompt_id))
        raise RubricError(f"sample {index}: no rubric; give RewardScorer a rubric or rubric set, or carry a "
                          "'rubric' with each sample")

    def _item(self, sample: Mapping[str, Any] | DataItem, index: int) -> tuple[DataItem, Rubric, str | None]:
        if isinstance(sample, DataItem):
            row: dict[str, Any] = {**sample.meta, **sample.model_dump(exclude={"meta"})}
        elif isinstance(sample, Mapping):
            row = dict(sample)
        else:
            raise RewardError(f"sample {index}: expected a mapping with 'prompt' and 'response', "
                              f"got {type(sample).__name__}")
        rubric = self._rubric_for(row, index)
        group = None
        if self.options.group_key is not None:
            value = row.get(self.options.group_key)
            if value is None:
                raise RewardError(f"sample {index}: group_key {self.options.group_key!r} is missing; "
                                  "every sample needs it when group normalisation is on")
            group = str(value)
        row.pop("rubric", None)
        for key in ("prompt", "response"):
            if row.get(key) is None:
                raise RewardError(f"sample {index}: {key!r} is missing")
        if row.get("id") in (None, ""):
            row.pop("id", None)
        try:
            item = DataItem.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "sample"
            raise RewardError(f"sample {index}: {field}: {first['msg']}") from None
        return item, rubric, group

    def _rubric_used(self, rubric: Rubric) -> Rubric:
        if self.options.aggregation is None and self.options.soft is None:
            return rubric
        key = (rubric.id, rubric.fingerprint)
        found = self._effective.get(key)
        if found is None:
            update: dict[str, Any] = {}
            if self.options.aggregation is not None:
                update["aggregation"] = self.options.aggregation
            if self.options.soft is not None:
                update["soft"] = self.options.soft
            found = self._effective[key] = rubric.model_copy(update=update)
        return found

    # ------------------------------------------------------------------ one sample

    def _detail(self, record: ScoreRecord, rubric: Rubric, group: str | None) -> RewardDetail:
        used = self._rubric_used(rubric)
        if used is rubric:
            reward, coverage, gates = record.reward, record.coverage, record.gates_failed
            subscores, errors = record.subscores, record.errors
            assessed = sum(1 for v in record.verdicts if v.verdict in ("met", "unmet"))
            total = len(rubric.criteria) if self.judge.options.mode != "holistic" else 1
        else:
            result = aggregate(used, record.verdicts)
            reward, coverage, gates = result.reward, result.coverage, result.gates_failed
            subscores, errors, assessed, total = result.subscores, result.errors, result.assessed, result.total
        common = {"coverage": coverage, "errors": errors, "assessed": assessed, "total": total,
                  "subscores": subscores, "gates_failed": gates, "group": group, "record": record}
        minimum = self.options.min_coverage
        reason = None
        if gates and reward is not None:
            pass  # a violated gate decides, whatever else errored
        elif errors and (minimum is None or coverage < minimum):
            kinds = Counter((v.error or "error").split(":")[0].strip()[:40] for v in record.verdicts
                            if v.verdict == "error")
            reason = f"{errors} of {total} criteria errored ({', '.join(f'{k}: {n}' for k, n in kinds.items())})"
        elif reward is None:
            reason = "no criterion could be assessed (all not applicable)"
        elif minimum is not None and coverage < minimum:
            reason = f"coverage {coverage:.2f} is below min_coverage {minimum:.2f}"
        if reason is not None:
            return RewardDetail(reward=None, scored=False, reason=reason, **common)
        assert reward is not None
        if gates and self.options.gate_value is not None:
            value = self.options.gate_value
        else:
            value = reward * self.options.scale + self.options.shift
        return RewardDetail(reward=value, scored=True, raw_reward=reward, **common)

    async def _one(self, item: DataItem, rubric: Rubric, group: str | None) -> RewardDetail:
        try:
            record = await self.judge.ascore(rubric, item)
        except (JudgeUnavailableError, RubricError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - counted and reported as a not-scored sample
            return RewardDetail(reward=None, scored=False, reason=f"{type(exc).__name__}: {exc}"[:500],
                                total=len(rubric.criteria), group=group)
        return self._detail(record, rubric, group)

    # ------------------------------------------------------------------ batches

    async def ascore(self, samples: Iterable[Mapping[str, Any] | DataItem]) -> RewardBatch:
        """Score a batch concurrently; rewards and details come back in input order."""
        started = time.monotonic()
        before = self._answered()
        prepared = [self._item(sample, index) for index, sample in enumerate(samples)]
        details = await _gather_all([self._one(*entry) for entry in prepared])
        details = self._finish(details)
        stats = self._stats(details, started, before)
        self.totals.add(stats)
        if self.options.on_error == "raise" and stats.unscored:
            first = next(d for d in details if not d.scored)
            raise RewardError(f"{stats.unscored} of {stats.samples} samples could not be scored "
                              f"(on_error='raise'); the first: {first.reason}")
        return RewardBatch(rewards=[d.reward for d in details], details=details, stats=stats)

    def score(self, samples: Iterable[Mapping[str, Any] | DataItem]) -> RewardBatch:
        """Sync :meth:`ascore` (runs the judge's own event loop; works inside a running loop too)."""
        return self.judge._sync(self.ascore(list(samples)))  # noqa: SLF001 - the judge's loop runner

    def _answered(self) -> tuple[int, int]:
        """(backend calls, judgments answered without one: the persistent cache or an identical earlier request)."""
        accounting = self.judge.accounting
        return accounting.calls, accounting.cache_hits + self.judge.duplicates

    def _finish(self, details: list[RewardDetail]) -> list[RewardDetail]:
        """Group normalisation over the scored samples, then the failure policy's value for the rest."""
        if self.options.group_key is not None:
            groups: dict[str | None, list[int]] = {}
            for index, detail in enumerate(details):
                if detail.scored and detail.reward is not None:
                    groups.setdefault(detail.group, []).append(index)
            for members in groups.values():
                values = [details[i].reward for i in members]
                mean = math.fsum(values) / len(values)  # type: ignore[arg-type]
                std = statistics.pstdev(values) if len(values) > 1 else 0.0  # type: ignore[type-var]
                for i in members:
                    centred = details[i].reward - mean  # type: ignore[operator]
                    if self.options.group_std:
                        centred = centred / (std + 1e-6)
                    details[i] = details[i].model_copy(update={"reward": centred})
        fallback = self.options.fallback()
        return [d if d.scored else d.model_copy(update={"reward": fallback}) for d in details]

    def _stats(self, details: Sequence[RewardDetail], started: float, before: tuple[int, int]) -> RewardStats:
        calls, hits = self._answered()
        stats = RewardStats(samples=len(details), seconds=time.monotonic() - started, calls=calls - before[0],
                            cache_hits=hits - before[1])
        for detail in details:
            stats.coverage_sum += detail.coverage
            stats.error_verdicts += detail.errors
            stats.judgments += detail.total
            if not detail.scored:
                stats.unscored += 1
                kind = (detail.reason or "unknown").split(" (")[0]
                kind = "criteria errored" if "criteria errored" in kind else kind.split(":")[0][:60]
                stats.reasons[kind] = stats.reasons.get(kind, 0) + 1
                continue
            stats.scored += 1
            stats.gated += bool(detail.gates_failed)
            stats.reward_sum += detail.raw_reward or 0.0
            for tag, value in detail.subscores.items():
                if value is not None:
                    entry = stats.subscore_sums.setdefault(tag, [0.0, 0])
                    entry[0] += value
                    entry[1] += 1
        return stats

    # ------------------------------------------------------------------ lifetime

    async def aclose(self) -> None:
        """Close the judge (when it was created here)."""
        if self._owns_judge:
            await self.judge.aclose()

    def close(self) -> None:
        """Sync :meth:`aclose`."""
        if self._owns_judge:
            self.judge.close()

    def __enter__(self) -> RewardScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RewardScorer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _gather_all(coroutines: Sequence[Awaitable[RewardDetail]]) -> list[RewardDetail]:
    """``asyncio.gather`` that cancels (and awaits) the rest when one raises (Python 3.10 has no TaskGroup)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


