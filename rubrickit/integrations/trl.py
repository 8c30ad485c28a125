"""TRL: a rubric reward for ``trl.GRPOTrainer(reward_funcs=[...])`` (docs/rl.md, "TRL").

:func:`reward_function` returns a plain ``async def`` function over one long-lived
:class:`~rubrickit.rewards.RewardScorer`, written against TRL 1.16 (``trl/trainer/grpo_trainer.py``,
``_calculate_rewards``):

- TRL detects it as async (``inspect.iscoroutinefunction``) and awaits it, together with its other async reward
  functions, on its own background event loop; the judge keeps its concurrency slots, rate limiter and in-flight
  deduplication per event loop, and HTTP backends open their connection pool on the loop that uses them, so one
  scorer serves that loop for the whole run (and any other loop it is awaited on).
- TRL calls it with keywords only: ``prompts``, ``completions``, ``completion_ids``, every dataset column except
  ``prompt``/``completion``/``completion_ids`` (one value per completion), ``trainer_state``, and from TRL 1.0
  ``log_metric`` and ``log_extra``. The columns ``prompt_id`` (picks the rubric from a rubric set), ``reference``
  (shown to the judge) and ``rubric`` (a rubric carried by the sample) are read; ``columns=`` maps other names onto
  them; every other keyword is ignored.
- Standard format: prompts and completions are strings. Conversational: a prompt is a list of ``{role, content}``
  messages (content may be a list of blocks; text blocks are joined, other blocks are shown as ``[type]``) and a
  completion a list of messages, whose assistant texts (joined by a blank line) are the judged response.
- It returns one reward per completion, in order: a float, or ``None`` for a sample that could not be scored under
  the default failure policy ``on_error="none"`` (TRL turns ``None`` into NaN and leaves it out of the sum; a
  completion every reward function gave ``None`` gets advantage 0). A judge failure is never a silent 0: ``None``,
  or the value ``on_error`` names, and it is counted in the ``error_rate`` metric.
- Its ``__name__`` names TRL's metrics (``rewards/<name>/mean``); through ``log_metric`` it adds
  ``<name>/coverage``, ``<name>/error_rate``, ``<name>/error_verdict_rate``, ``<name>/gate_rate``,
  ``<name>/unscored``, ``<name>/raw_reward_mean``, ``<name>/tag/<tag>`` (per-tag sub-scores),
  ``<name>/judge_calls``, ``<name>/cache_hits`` and ``<name>/seconds``; through ``log_extra`` one completions-table
  column per criterion (``<name>/<criterion id>``: its verdict) — or, for rubric sets and inline rubrics, whose
  criteria differ between samples, one ``<name>/verdicts`` column — and ``<name>/reason`` (why a sample was not
  scored).

Only verdict labels, counts and failure reasons are logged: never the judge's rationales, and never credentials.
"""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from ..rewards.core import RewardBatch, RewardError, RewardScorer, content_text
from ..rubric import Rubric

__all__ = ["RewardFunction", "reward_function"]

SAMPLE_FIELDS = ("prompt_id", "reference", "rubric")
"""The sample fields read from TRL's dataset columns (``columns=`` maps other column names onto them)."""

_TRL_ARGUMENTS = frozenset({"prompt", "completion", "prompts", "completions", "completion_ids", "trainer_state",
                            "log_metric", "log_extra", "environments"})
"""Names TRL uses for its own arguments (never a dataset column the function receives)."""


class RewardFunction(Protocol):
    """What :func:`reward_function` returns: an ``async def`` function with the scorer attached."""

    __name__: str
    scorer: RewardScorer
    """The reward core behind the function (its judge, cache and :attr:`~RewardScorer.totals`)."""

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                 **kwargs: Any) -> Awaitable[list[float | None]]: ...

    def close(self) -> None:
        """Close the judge (when it was created here), on the event loop that last used it while that loop runs."""

    async def aclose(self) -> None:
        """Close the judge (when it was created here) from inside an event loop."""


def reward_function(rubric: Any = None, *, judge: Any = None, name: str | None = None,
                    columns: Mapping[str, str | None] | None = None, log_verdicts: bool = True,
                    **options: Any) -> RewardFunction:
    """A TRL ``GRPOTrainer`` reward function scoring completions with ``rubric`` through ``judge``.

    ``rubric``: a :class:`~rubrickit.rubric.Rubric`, a :class:`~rubrickit.rubric.RubricSet` (chosen by each sample's
    ``prompt_id`` column), a path to either, or ``None`` when every sample carries a ``rubric`` column. ``judge``: a
    spec string (``openai:MODEL`` with ``base_url=``, ``hf:PATH``, ``embedded``…), a backend, a
    :class:`~rubrickit.judge.Judge`, or ``None`` for the embedded judge. ``name``: the function's ``__name__`` (the
    metric prefix; default ``rubric_<rubric id>``). ``columns``: ``{field: dataset column}`` for the sample fields
    ``prompt_id``, ``reference`` and ``rubric`` (e.g. ``{"reference": "solution"}``; ``None``: do not read that
    field, e.g. when a dataset's ``rubric`` column holds something else). ``log_verdicts``: log the
    per-criterion verdict columns through ``log_extra``. Other keywords go to :class:`RewardScorer`:
    :class:`~rubrickit.rewards.RewardOptions` fields (``on_error``, ``min_coverage``, ``scale``, ``soft``…) and
    :class:`~rubrickit.judge.JudgeOptions` fields (``mode``, ``concurrency``, ``rpm``, ``cache_dir``…), ``base_url``
    and ``backend_options``.

    ``GRPOTrainer`` normalises rewards per group itself: leave ``group_key`` unset (a warning says so).
    """
    mapping = _column_map(columns)
    scorer = RewardScorer(rubric, judge=judge, **options)
    if scorer.options.group_key is not None:
        warnings.warn(
            f"group_key={scorer.options.group_key!r}: TRL's GRPOTrainer already normalises rewards per group (after "
            "gathering every process's completions; GRPOConfig.scale_rewards), and it does not hand a reward function "
            "whole groups; leave group_key unset under GRPOTrainer", UserWarning, stacklevel=2)
    fn_name = _checked_name(name) if name is not None else default_name(rubric, scorer.rubrics)
    last_loop: list[asyncio.AbstractEventLoop | None] = [None]

    async def reward(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, *,
                     log_metric: Callable[[str, float], Any] | None = None,
                     log_extra: Callable[[str, list[Any]], Any] | None = None,
                     trainer_state: Any = None, **kwargs: Any) -> list[float | None]:
        last_loop[0] = asyncio.get_running_loop()
        samples = build_samples(prompts, completions, kwargs, mapping)
        batch = await scorer.ascore(samples)
        if log_metric is not None:
            for key, value in batch_metrics(batch).items():
                log_metric(f"{fn_name}/{key}", value)
        if log_extra is not None:
            # Decided by the dataset's columns, which do not change during a run, so TRL's table keeps its columns.
            rubric_column = mapping["rubric"]
            per_criterion = isinstance(scorer.rubrics, Rubric) and scorer.judge.options.mode != "holistic" and (
                rubric_column is None or kwargs.get(rubric_column) is None)
            for column, values in extra_columns(batch, scorer, verdicts=log_verdicts,
                                                per_criterion=per_criterion).items():
                log_extra(f"{fn_name}/{column}", values)
        return list(batch.rewards)

    def close() -> None:
        loop = last_loop[0]
        if loop is not None and loop.is_running() and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                raise RuntimeError(f"{fn_name}.close() was called on the event loop the reward runs on; "
                                   f"await {fn_name}.aclose() there instead")
            # The judge's HTTP pool lives on that loop (TRL's background loop): close it there.
            asyncio.run_coroutine_threadsafe(scorer.aclose(), loop).result(timeout=60)
        scorer.close()

    reward.__name__ = reward.__qualname__ = fn_name
    reward.__doc__ = f"Rubric reward {fn_name!r} (judge {scorer.spec}) for TRL's GRPOTrainer; see " \
                     "rubrickit.integrations.trl.reward_function."
    function = cast(Any, reward)
    function.scorer = scorer
    function.close = close
    function.aclose = scorer.aclose
    return cast(RewardFunction, function)


# --------------------------------------------------------------------------- names


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string, not {name!r}")
    return name.strip()


def default_name(rubric_arg: Any, loaded: Any) -> str:
    """``rubric_<id>`` for one rubric, ``rubric_<file stem>`` for a rubric-set file, ``rubric_set`` for a set object,
    ``rubric_inline`` without one; anything but letters, digits and ``_`` becomes ``_``."""
    if isinstance(loaded, Rubric):
        base = loaded.id
    elif isinstance(rubric_arg, str | Path):
        base = Path(rubric_arg).name
        for suffix in (".gz", ".jsonl", ".json", ".yaml", ".yml", ".rubrics"):
            base = base.removesuffix(suffix)
    elif loaded is None:
        base = "inline"
    else:
        base = "set"
    return "rubric_" + (re.sub(r"[^0-9A-Za-z_]+", "_", base).strip("_") or "set")


def _column_map(columns: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """``{field: column}`` for every sample field; ``None`` reads nothing for that field."""
    mapping: dict[str, str | None] = {field: field for field in SAMPLE_FIELDS}
    for field, column in (columns or {}).items():
        if field not in SAMPLE_FIELDS:
            raise TypeError(f"columns: unknown sample field {field!r}; map dataset columns onto "
                            f"{', '.join(SAMPLE_FIELDS)} (e.g. columns={{'reference': 'solution'}})")
        if column is not None and (not isinstance(column, str) or not column or column in _TRL_ARGUMENTS):
            raise TypeError(f"columns[{field!r}]: {column!r} is not a dataset column TRL passes")
        mapping[field] = column
    return mapping


# --------------------------------------------------------------------------- samples


def build_samples(prompts: Sequence[Any], completions: Sequence[Any], columns: Mapping[str, Any],
                  mapping: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    """TRL's arguments → reward-core samples (``prompt``, ``response`` and the mapped columns present)."""
    mapping = mapping or {field: field for field in SAMPLE_FIELDS}
    count = len(completions)
    if len(prompts) != count:
        raise RewardError(f"TRL passed {len(prompts)} prompts for {count} completions; expected one per completion")
    present: dict[str, Sequence[Any]] = {}
    for field in SAMPLE_FIELDS:
        column = mapping.get(field)
        values = columns.get(column) if column is not None else None
        if values is None:
            continue
        if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence) or len(values) != count:
            got = f"{len(values)} values" if isinstance(values, Sequence) else type(values).__name__
            raise RewardError(f"column {column!r}: expected one value per completion ({count}), got {got}")
        present[field] = values
    samples = []
    for index in range(count):
        sample: dict[str, Any] = {"prompt": _prompt(prompts[index], index),
                                  "response": _response(completions[index], index)}
        for field, values in present.items():
            value = values[index]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if field == "reference":
                value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            elif field == "rubric" and isinstance(value, Mapping | list):
                value = _drop_nulls(value)
            sample[field] = value
        samples.append(sample)
    return samples


def _messages(value: Any) -> list[Mapping[str, Any]] | None:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return None
    return list(value) if all(isinstance(m, Mapping) for m in value) else None


def _prompt(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return value
    messages = _messages(value)
    if messages is None or not messages:
        raise RewardError(f"completion {index}: prompt: expected a string or a list of {{role, content}} messages, "
                          f"got {type(value).__name__}")
    return [{"role": str(m.get("role") or "user"), "content": content_text(m.get("content"))} for m in messages]


def _response(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    messages = _messages(value)
    if messages is None:
        raise RewardError(f"completion {index}: expected a string or a list of messages "
                          f"([{{'role': 'assistant', 'content': ...}}]), got {type(value).__name__}")
    texts = [content_text(m.get("content")) for m in messages if str(m.get("role") or "assistant") == "assistant"]
    return "\n\n".join(text for text in texts if text)


def _drop_nulls(value: Any) -> Any:
    """Remove ``None`` entries of mappings, recursively: a ``datasets`` column of rubric objects comes back with every
    key any row has, missing ones filled with ``None`` (an Arrow struct), which rubric validation would refuse."""
    if isinstance(value, Mapping):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


# --------------------------------------------------------------------------- what is logged


def batch_metrics(batch: RewardBatch) -> dict[str, float]:
    """The numbers handed to ``log_metric``: :meth:`RewardStats.metrics` plus judge calls, cache hits and seconds."""
    stats = batch.stats
    return {**stats.metrics(), "judge_calls": float(stats.calls), "cache_hits": float(stats.cache_hits),
            "seconds": stats.seconds}


def extra_columns(batch: RewardBatch, scorer: RewardScorer, *, verdicts: bool = True,
                  per_criterion: bool = True) -> dict[str, list[Any]]:
    """The completions-table columns handed to ``log_extra``, one value per completion.

    TRL keeps each column in a table whose columns must stay the same length, so the set of columns must be the
    same for every call of a run: one per criterion of the scorer's rubric when ``per_criterion`` (every sample is
    scored with that one rubric), else one ``verdicts`` column (``id: verdict; …``); then ``reason``."""
    columns: dict[str, list[Any]] = {}
    maps = [detail.verdict_map() for detail in batch.details]
    if verdicts:
        rubric = scorer.rubrics
        if per_criterion and isinstance(rubric, Rubric):
            for criterion in rubric.criteria:
                columns[criterion.id] = [found.get(criterion.id) for found in maps]
        else:
            columns["verdicts"] = ["; ".join(f"{cid}: {label}" for cid, label in found.items()) or None
                                   for found in maps]
    columns["reason"] = [detail.reason for detail in batch.details]
    return columns
