"""verl: rubric rewards for ``custom_reward_function`` (docs/rl.md, "verl").

Four functions over one long-lived :class:`~rubrickit.rewards.RewardScorer` per process and configuration, checked
against verl 0.9.1:

- :func:`compute_score` — per sample, sync: ``compute_score(data_source, solution_str, ground_truth,
  extra_info=None, **reward_kwargs) -> dict``. verl's reward-loop managers (``verl/experimental/reward_loop/
  reward_manager/naive.py``, ``dapo.py``, ``gdpo.py``: ``run_single``) call it with keywords in an executor
  thread; the legacy ``verl/workers/reward_manager/naive.py`` calls it once per sample in order; ``main_eval``
  passes the first three positionally.
- :func:`compute_score_async` — the same as an ``async def``: the reward-loop managers detect it
  (``inspect.iscoroutinefunction``, through the ``functools.partial`` of ``get_custom_reward_fn``) and await it on
  the reward worker's event loop, so every sample of a worker's chunk is judged concurrently with no thread per
  sample. The recommended name under verl 0.9's reward loop; the legacy managers cannot await it.
- :func:`compute_score_batch` — ``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=,
  **reward_kwargs) -> list[dict]``, the contract of the legacy ``batch`` manager
  (``verl/workers/reward_manager/batch.py``): the whole step batch in one scorer call (all rollouts of a prompt are
  in it, so ``group_key`` works here). verl 0.9.1 still ships that class, but its trainer builds reward managers
  only from the reward-loop registry (``naive``, ``dapo``, ``gdpo``, ``rate_limited``, ``remote``), so
  ``reward_manager.name=batch`` is refused there: use it with releases (and forks) that run the legacy managers.
- :func:`compute_score_batch_async` — the batch contract as an ``async def``, for reward managers of your own.

**Configuration.** ``reward_kwargs`` (``+reward.custom_reward_function.reward_kwargs.NAME=VALUE``, merged into
every call by verl's ``get_custom_reward_fn``) win over ``RUBRICKIT_*`` environment variables (:data:`ENV_OPTIONS`):
``rubric`` (a rubric or rubric-set file; ``None`` when every sample carries one), ``judge`` (a spec string; required:
there is no silent default judge in a training run), ``base_url``, ``backend_options`` and any
:class:`~rubrickit.rewards.RewardOptions` or :class:`~rubrickit.judge.JudgeOptions` field (``mode``,
``concurrency``, ``rpm``, ``on_error``, ``min_coverage``, ``scale``, ``group_key``, ``cache_dir``…), plus
``ground_truth_as`` (below). An unknown name is a ``TypeError`` listing the known ones. One scorer (judge,
connection pool, cache, limits) is created on first use for each distinct configuration and reused by every later
call in the process. The reward-loop managers also pass ``reward_router_address`` when verl serves a reward model:
it becomes the judge's ``base_url`` (``http://ADDRESS/v1``) unless one is configured.

**Samples.** ``solution_str`` is the judged response. ``extra_info`` may carry ``prompt`` (a string or a list of
``{role, content}`` messages; ``question``, as verl's example preprocessors write it, when there is no
``prompt``), ``prompt_id`` (picks the rubric from a rubric set), ``reference`` and ``rubric`` (an inline rubric:
object, HealthBench items or YAML text). ``ground_truth`` (verl's ``reward_model.ground_truth``) is, by
``ground_truth_as``: ``reference`` (default; used only when ``extra_info`` has no ``reference``; a non-string value
is shown as JSON), ``rubric`` (an inline rubric unless ``extra_info`` has one), ``prompt_id`` (unless ``extra_info``
has one) or ``ignore``. ``None`` and ``""`` carry nothing. NumPy arrays and OmegaConf containers (what parquet
columns and Hydra configs arrive as) are turned into plain lists and dicts first.

**What verl receives.** A dict with the same keys for every sample, all plain finite numbers (:data:`EXTRA_KEYS`):
``score`` (the reward), ``scored`` (1, or 0 when the failure policy's value was used), ``gated`` (1 when a hard
criterion failed), ``coverage`` (assessed / criteria), ``errors`` (``error`` verdicts) and ``criteria``. verl keeps
every key per sample, dumps them with the generations and averages them in validation
(``val-aux/<data source>/<key>/mean@N``); its reward-loop workers build arrays from the first sample's keys, so keys
must not differ between samples, and it puts every ``score`` in a tensor, so a score is never ``None`` or NaN.

**Failure policy.** verl cannot skip a sample, so ``on_error`` defaults to ``0`` here (the lowest reward of the
default ``weighted_mean`` aggregation: failing the judge is never worth more than answering) and ``"none"`` is
refused; a number or ``"raise"`` (stop the run) are the alternatives. A not-scored sample is never silent: it has
``scored`` 0, it is counted in :func:`totals`, and it is logged as a warning with the reason (the first ten, then
every hundredth). A judge that stays unreachable raises :class:`~rubrickit.errors.JudgeUnavailableError`.

Never pass API keys through ``reward_kwargs`` (verl prints its whole config at start-up): ``api_key`` there is
refused; backends read their key variables (``OPENAI_API_KEY``, …) from the reward workers' environment.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import RubrickitError
from ..rewards.core import (
    RewardBatch,
    RewardDetail,
    RewardError,
    RewardOptions,
    RewardScorer,
    RewardStats,
    content_text,
    split_options,
)

__all__ = [
    "DEFAULT_ON_ERROR",
    "ENV_OPTIONS",
    "EXTRA_KEYS",
    "aclose",
    "build_sample",
    "close",
    "compute_score",
    "compute_score_async",
    "compute_score_batch",
    "compute_score_batch_async",
    "get_scorer",
    "options_from_env",
    "totals",
]

log = logging.getLogger(__name__)

EXTRA_KEYS = ("score", "scored", "gated", "coverage", "errors", "criteria")
"""The keys of every dict handed to verl, in this order."""

DEFAULT_ON_ERROR = 0.0
"""The reward of a sample that could not be scored, unless ``on_error`` says otherwise."""

GroundTruthAs = Literal["reference", "rubric", "prompt_id", "ignore"]
_GROUND_TRUTH_AS = ("reference", "rubric", "prompt_id", "ignore")

ENV_OPTIONS: dict[str, tuple[str, type]] = {
    "RUBRICKIT_RUBRIC": ("rubric", str),
    "RUBRICKIT_JUDGE": ("judge", str),
    "RUBRICKIT_BASE_URL": ("base_url", str),
    "RUBRICKIT_MODE": ("mode", str),
    "RUBRICKIT_ON_ERROR": ("on_error", str),
    "RUBRICKIT_MIN_COVERAGE": ("min_coverage", float),
    "RUBRICKIT_CONCURRENCY": ("concurrency", int),
    "RUBRICKIT_RPM": ("rpm", float),
    "RUBRICKIT_TPM": ("tpm", float),
    "RUBRICKIT_AGGREGATION": ("aggregation", str),
    "RUBRICKIT_SCALE": ("scale", float),
    "RUBRICKIT_SHIFT": ("shift", float),
    "RUBRICKIT_GATE_VALUE": ("gate_value", float),
    "RUBRICKIT_GROUND_TRUTH_AS": ("ground_truth_as", str),
    "RUBRICKIT_NO_CACHE": ("use_cache", bool),
}
"""Environment variable → (option, type). The judge also reads ``RUBRICKIT_CACHE_DIR``, ``RUBRICKIT_TIMEOUT``,
``RUBRICKIT_MAX_RETRIES`` and ``RUBRICKIT_MAX_OUTAGE`` itself. ``RUBRICKIT_NO_CACHE=1`` turns the cache off."""

_VERL_EXTRAS = frozenset({"reward_router_address", "reward_model_tokenizer"})
"""Keywords verl's reward-loop managers add when a reward model is served (not options)."""

_UNSCORED_LOGGED = 10
_UNSCORED_EVERY = 100


# --------------------------------------------------------------------------- configuration


def _env_value(var: str, kind: type) -> Any:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return False  # RUBRICKIT_NO_CACHE=1 → use_cache=False
        if lowered in ("0", "false", "no", "off"):
            return None
        raise RubrickitError(f"environment variable {var}={raw!r}: use 1/true/yes/on or 0/false/no/off")
    if kind is str:
        return raw
    try:
        return kind(raw)
    except ValueError:
        raise RubrickitError(f"environment variable {var}={raw!r}: expected a number") from None


def options_from_env() -> dict[str, Any]:
    """The options set by ``RUBRICKIT_*`` variables (:data:`ENV_OPTIONS`), by option name."""
    out: dict[str, Any] = {}
    for var, (name, kind) in ENV_OPTIONS.items():
        value = _env_value(var, kind)
        if value is not None:
            out[name] = value
    return out


def _plain(value: Any) -> Any:
    """NumPy arrays and scalars, OmegaConf containers, tuples → plain lists, dicts and Python scalars."""
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, list | tuple):
        return _plain(tolist())
    if isinstance(value, Sequence):
        return [_plain(item) for item in value]
    return value


def _drop_nulls(value: Any) -> Any:
    """Remove ``None`` entries of mappings, recursively (a parquet struct column fills keys a row lacks with
    ``None``, which rubric validation would refuse)."""
    if isinstance(value, Mapping):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


def _has_api_key(options: Mapping[str, Any]) -> bool:
    return any(str(key).lower().replace("-", "_") in ("api_key", "apikey") for key in options)


@dataclass(frozen=True)
class _Config:
    key: str
    rubric: Any
    judge: str | None
    base_url: str | None
    backend_options: dict[str, Any] | None
    options: dict[str, Any]
    ground_truth_as: str
    group_key: str | None


def _resolve(reward_kwargs: Mapping[str, Any]) -> _Config:
    """``reward_kwargs`` over the environment → one validated configuration, keyed for the scorer cache."""
    given = {name: _plain(value) for name, value in reward_kwargs.items() if value is not None}
    router = given.pop("reward_router_address", None)
    for name in _VERL_EXTRAS:
        given.pop(name, None)
    merged = {**options_from_env(), **given}
    ground_truth_as = str(merged.pop("ground_truth_as", "reference")).strip().lower()
    if ground_truth_as not in _GROUND_TRUTH_AS:
        raise RubrickitError(f"ground_truth_as={ground_truth_as!r}: use one of {', '.join(_GROUND_TRUTH_AS)}")
    rubric = merged.pop("rubric", None)
    judge = merged.pop("judge", None)
    base_url = merged.pop("base_url", None) or (f"http://{router}/v1" if router else None)
    backend_options = merged.pop("backend_options", None)
    if backend_options is not None and not isinstance(backend_options, Mapping):
        raise TypeError(f"backend_options must be a mapping, not {type(backend_options).__name__}")
    if _has_api_key(merged) or (backend_options and _has_api_key(backend_options)):
        raise RubrickitError("an API key was passed in reward_kwargs: verl prints its whole config at start-up, so "
                             "keys must not be there; set the backend's key variable (OPENAI_API_KEY, …) in the "
                             "environment of the reward workers instead")
    if judge is None:
        raise RubrickitError("no judge configured for the verl reward: set "
                             "+reward.custom_reward_function.reward_kwargs.judge=SPEC (e.g. openai:MODEL with "
                             "reward_kwargs.base_url=http://HOST:PORT/v1) or the RUBRICKIT_JUDGE environment variable")
    merged.setdefault("on_error", DEFAULT_ON_ERROR)
    reward_options, _ = split_options(merged)  # TypeError naming every known option
    checked = RewardOptions.model_validate(reward_options)
    if checked.on_error == "none":
        raise RubrickitError("on_error='none' cannot be used with verl: verl puts every score into a tensor and has "
                             "no way to skip a sample; use a number (the default is 0) or 'raise'")
    merged["on_error"] = checked.on_error
    key = json.dumps([rubric, judge, base_url, backend_options, merged], sort_keys=True, default=str)
    return _Config(key=key, rubric=rubric, judge=str(judge), base_url=base_url, backend_options=backend_options,
                   options=merged, ground_truth_as=ground_truth_as, group_key=checked.group_key)


@dataclass
class _Entry:
    scorer: RewardScorer
    runner_ready: bool = False
    unscored: int = 0
    samples: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_entries: dict[str, _Entry] = {}
_entries_lock = threading.Lock()


def _entry(config: _Config) -> _Entry:
    found = _entries.get(config.key)
    if found is not None:
        return found
    with _entries_lock:
        found = _entries.get(config.key)
        if found is None:
            scorer = RewardScorer(config.rubric, judge=config.judge, base_url=config.base_url,
                                  backend_options=dict(config.backend_options) if config.backend_options else None,
                                  **config.options)
            found = _entries[config.key] = _Entry(scorer)
            log.info("rubrickit verl reward: judge %s, %d configuration(s) in this process", scorer.spec,
                     len(_entries))
    return found


def _sync_entry(config: _Config) -> _Entry:
    """The entry, with the judge's private loop started once under a lock: verl's reward loop calls a sync
    ``compute_score`` from many executor threads at once."""
    entry = _entry(config)
    if not entry.runner_ready:
        with entry.lock:
            if not entry.runner_ready:
                entry.scorer.judge._sync(asyncio.sleep(0))  # noqa: SLF001 - start the judge's loop thread once
                entry.runner_ready = True
    return entry


def get_scorer(**reward_kwargs: Any) -> RewardScorer:
    """The process's scorer for this configuration (``reward_kwargs`` over ``RUBRICKIT_*``), created on first use."""
    return _entry(_resolve(reward_kwargs)).scorer


def totals() -> RewardStats:
    """Counts over every sample scored in this process, all configurations together (``unscored`` is the number of
    samples that got the failure policy's value)."""
    out = RewardStats()
    for entry in list(_entries.values()):
        out.add(entry.scorer.totals)
    return out


def close() -> None:
    """Close every scorer of this process (their judges, HTTP pools and caches) and forget them."""
    with _entries_lock:
        entries = list(_entries.values())
        _entries.clear()
    for entry in entries:
        entry.scorer.close()


async def aclose() -> None:
    """:func:`close` from inside an event loop (the one the async variants ran on)."""
    with _entries_lock:
        entries = list(_entries.values())
        _entries.clear()
    for entry in entries:
        await entry.scorer.aclose()
        if entry.runner_ready:
            entry.scorer.close()  # stops the judge's private loop thread, which the sync variants started


@atexit.register
def _close_at_exit() -> None:
    with _entries_lock:
        entries = list(_entries.values())
        _entries.clear()
    for entry in entries:
        try:
            entry.scorer.close()
        except Exception:  # noqa: BLE001 - nothing to report to at interpreter exit (the loop may be gone)
            pass


# --------------------------------------------------------------------------- samples


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _prompt(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        return [{"role": str(m.get("role") or "user"), "content": content_text(m.get("content"))} for m in value]
    raise RewardError(f"sample {index}: extra_info['prompt'] must be a string or a list of {{role, content}} "
                      f"messages, got {type(value).__name__}")


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def build_sample(solution_str: Any, ground_truth: Any = None, extra_info: Any = None, *,
                 ground_truth_as: GroundTruthAs | str = "reference", group_key: str | None = None,
                 index: int = 0) -> dict[str, Any]:
    """verl's arguments for one sample → a reward-core sample (``prompt``, ``response`` and the fields present)."""
    if not isinstance(solution_str, str):
        raise RewardError(f"sample {index}: solution_str must be the decoded response text, "
                          f"got {type(solution_str).__name__}")
    if extra_info is None:
        extra: dict[str, Any] = {}
    else:
        extra = _plain(extra_info)
        if not isinstance(extra, dict):
            raise RewardError(f"sample {index}: extra_info must be a mapping, got {type(extra_info).__name__}")
    prompt = extra.get("prompt") if _present(extra.get("prompt")) else extra.get("question")
    if not _present(prompt):
        raise RewardError(f"sample {index}: extra_info has no 'prompt' (or 'question'): the judge needs the prompt "
                          "the response answers; add it to each row's extra_info when preparing the verl dataset")
    sample: dict[str, Any] = {"prompt": _prompt(prompt, index), "response": solution_str}
    truth = _plain(ground_truth)
    if _present(extra.get("reference")):
        sample["reference"] = _text(extra["reference"])
    elif ground_truth_as == "reference" and _present(truth):
        sample["reference"] = _text(truth)
    if _present(extra.get("prompt_id")):
        sample["prompt_id"] = str(extra["prompt_id"])
    elif ground_truth_as == "prompt_id" and _present(truth):
        sample["prompt_id"] = str(truth)
    if _present(extra.get("rubric")):
        sample["rubric"] = _drop_nulls(extra["rubric"])
    elif ground_truth_as == "rubric" and _present(truth):
        sample["rubric"] = _drop_nulls(truth)
    if group_key is not None and group_key not in sample and extra.get(group_key) is not None:
        sample[group_key] = _text(extra[group_key])
    return sample


def _samples(config: _Config, scorer: RewardScorer, solution_strs: Sequence[Any], ground_truths: Sequence[Any],
             extra_infos: Sequence[Any] | None) -> list[dict[str, Any]]:
    count = len(solution_strs)
    if len(ground_truths) != count:
        raise RewardError(f"verl passed {len(ground_truths)} ground_truths for {count} solution_strs")
    if extra_infos is not None and len(extra_infos) != count:
        raise RewardError(f"verl passed {len(extra_infos)} extra_infos for {count} solution_strs")
    samples = []
    for index in range(count):
        sample = build_sample(solution_strs[index], ground_truths[index],
                              extra_infos[index] if extra_infos is not None else None,
                              ground_truth_as=config.ground_truth_as, group_key=config.group_key, index=index)
        if scorer.rubrics is None and "rubric" not in sample:
            raise RewardError(f"sample {index}: no rubric: set +reward.custom_reward_function.reward_kwargs.rubric="
                              "PATH (a rubric or rubric-set file) or RUBRICKIT_RUBRIC, or carry a rubric in "
                              "extra_info['rubric'] (or the ground truth, with ground_truth_as=rubric)")
        samples.append(sample)
    return samples


# --------------------------------------------------------------------------- results

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _result(detail: RewardDetail) -> dict[str, Any]:
    reward = detail.reward
    if reward is None or not math.isfinite(reward):
        raise RewardError(f"internal error: a reward of {reward!r} would reach verl (not scored: {detail.reason})")
    return {"score": float(reward), "scored": int(detail.scored), "gated": int(detail.scored and
                                                                              bool(detail.gates_failed)),
            "coverage": float(detail.coverage), "errors": int(detail.errors), "criteria": int(detail.total)}


def _report(entry: _Entry, batch: RewardBatch) -> list[dict[str, Any]]:
    """The dicts for verl, after logging the not-scored samples (throttled)."""
    with entry.lock:
        entry.samples += len(batch.details)
        numbers = []
        for detail in batch.details:
            if not detail.scored:
                entry.unscored += 1
                numbers.append((entry.unscored, detail))
        samples = entry.samples
    for number, detail in numbers:
        if number <= _UNSCORED_LOGGED or number % _UNSCORED_EVERY == 0:
            reason = _CONTROL.sub("?", detail.reason or "unknown")[:300]
            log.warning("rubrickit verl reward: a sample could not be scored and gets the failure policy's value "
                        "%s (%d of %d samples so far): %s", detail.reward, number, samples, reason)
    return [_result(detail) for detail in batch.details]


def _per_sample(config: _Config) -> None:
    if config.group_key is not None:
        raise RubrickitError(f"group_key={config.group_key!r} needs whole groups, and compute_score sees one sample: "
                             "use compute_score_batch (legacy reward_manager=batch), or leave group normalisation "
                             "to verl's advantage estimator (algorithm.adv_estimator=grpo)")


# --------------------------------------------------------------------------- the four entry points


def compute_score(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: Any = None,
                  **reward_kwargs: Any) -> dict[str, Any]:
    """verl's per-sample reward: ``{"score": float, "scored": 0|1, "gated", "coverage", "errors", "criteria"}``.

    ``data_source`` is not used for scoring. Configuration: ``reward_kwargs`` over ``RUBRICKIT_*`` (module doc)."""
    del data_source
    config = _resolve(reward_kwargs)
    _per_sample(config)
    entry = _sync_entry(config)
    samples = _samples(config, entry.scorer, [solution_str], [ground_truth], [extra_info])
    return _report(entry, entry.scorer.score(samples))[0]


async def compute_score_async(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: Any = None,
                              **reward_kwargs: Any) -> dict[str, Any]:
    """:func:`compute_score` as an ``async def`` (verl's reward-loop managers await it on their event loop)."""
    del data_source
    config = _resolve(reward_kwargs)
    _per_sample(config)
    entry = _entry(config)
    samples = _samples(config, entry.scorer, [solution_str], [ground_truth], [extra_info])
    return _report(entry, await entry.scorer.ascore(samples))[0]


def compute_score_batch(data_sources: Sequence[Any] | None = None, solution_strs: Sequence[str] = (),
                        ground_truths: Sequence[Any] | None = None, extra_infos: Sequence[Any] | None = None,
                        **reward_kwargs: Any) -> list[dict[str, Any]]:
    """verl's batch reward (legacy ``reward_manager=batch``): one dict per sample, in order, the whole batch judged
    concurrently in one scorer call (``group_key`` normalises within groups of the batch)."""
    del data_sources
    config = _resolve(reward_kwargs)
    entry = _sync_entry(config)
    truths = ground_truths if ground_truths is not None else [None] * len(solution_strs)
    samples = _samples(config, entry.scorer, solution_strs, truths, extra_infos)
    return _report(entry, entry.scorer.score(samples))


async def compute_score_batch_async(data_sources: Sequence[Any] | None = None, solution_strs: Sequence[str] = (),
                                    ground_truths: Sequence[Any] | None = None,
                                    extra_infos: Sequence[Any] | None = None,
                                    **reward_kwargs: Any) -> list[dict[str, Any]]:
    """:func:`compute_score_batch` as an ``async def``."""
    del data_sources
    config = _resolve(reward_kwargs)
    entry = _entry(config)
    truths = ground_truths if ground_truths is not None else [None] * len(solution_strs)
    samples = _samples(config, entry.scorer, solution_strs, truths, extra_infos)
    return _report(entry, await entry.scorer.ascore(samples))
