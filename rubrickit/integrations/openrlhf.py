"""OpenRLHF: from its reward request (``query``, ``prompts``, ``labels``) to rubric rewards (docs/rl.md).

OpenRLHF calls a reward in one of two ways, both with the same three lists and the same answer
(``--remote_rm_url`` in older releases, ``--reward.remote_url`` in 2026 ones):

- an HTTP URL: ``POST {"query": [...], "prompts": [...], "labels": [...]}`` — served by ``rubrickit serve``
  (:mod:`rubrickit.integrations.server`);
- a path ending in ``.py``: the file is imported and its ``reward_func(queries, prompts, labels, **kwargs)`` is
  called — :func:`reward_func` here, configured from ``RUBRICKIT_*`` environment variables or :func:`configure`.

The rules that recover the response, the prompt the judge sees and the label's fields from what OpenRLHF sends, and
the answer it expects back, are in :mod:`rubrickit.integrations.openrlhf_protocol`; the micro-batcher that
coalesces concurrent calls (shared with the server) is :mod:`rubrickit.integrations.batcher`. Both are re-exported
here, the adapter's public face. This module itself holds the file variant: :func:`reward_func`, :func:`configure`
and the scorer they run on a private event loop thread.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from typing import Any

from ..errors import RubrickitError
from ..rewards.core import RewardError, RewardOptions, RewardScorer, split_options
from ..rubric import RubricSet
from .batcher import BatchStats, MicroBatcher, Overloaded, RequestTooLarge
from .openrlhf_protocol import (
    BOS_TOKENS,
    END_TOKENS,
    PAD_TOKENS,
    LabelAs,
    QueryError,
    RecoveryOptions,
    _fallback,
    answer,
    build_samples,
    judge_prompt,
    label_fields,
    parse_chat,
    split_query,
    unscored_reason,
)

__all__ = [
    "BOS_TOKENS",
    "END_TOKENS",
    "PAD_TOKENS",
    "BatchStats",
    "MicroBatcher",
    "Overloaded",
    "QueryError",
    "RecoveryOptions",
    "RequestTooLarge",
    "answer",
    "build_samples",
    "configure",
    "judge_prompt",
    "label_fields",
    "parse_chat",
    "reward_func",
    "split_query",
]

log = logging.getLogger("rubrickit.serve")

# --------------------------------------------------------------------------- the reward_func file variant


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _env_bool(name: str) -> bool:
    value = (_env(name) or "").lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise RubrickitError(f"{name}={value!r}: use 1/true/yes/on or 0/false/no/off")


def _env_tokens(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = _env(name)
    return default if value is None else tuple(t.strip() for t in value.split(",") if t.strip())


def options_from_env() -> dict[str, Any]:
    """:func:`configure`'s keyword arguments from ``RUBRICKIT_*`` variables (see :func:`reward_func`)."""
    numbers = {"RUBRICKIT_CONCURRENCY": ("concurrency", int), "RUBRICKIT_RPM": ("rpm", float),
               "RUBRICKIT_TPM": ("tpm", float), "RUBRICKIT_MIN_COVERAGE": ("min_coverage", float),
               "RUBRICKIT_SCALE": ("scale", float), "RUBRICKIT_SHIFT": ("shift", float),
               "RUBRICKIT_MAX_BATCH": ("max_batch", int), "RUBRICKIT_MAX_BATCHES": ("max_batches", int),
               "RUBRICKIT_MAX_QUEUE": ("max_queue", int)}
    out: dict[str, Any] = {"rubric": _env("RUBRICKIT_RUBRIC"), "judge": _env("RUBRICKIT_JUDGE"),
                           "base_url": _env("RUBRICKIT_BASE_URL")}
    for var, (name, kind) in numbers.items():
        value = _env(var)
        if value is not None:
            try:
                out[name] = kind(value)
            except ValueError:
                raise RubrickitError(f"{var}={value!r} is not a number") from None
    if (window := _env("RUBRICKIT_BATCH_WINDOW_MS")) is not None:
        try:
            out["batch_window_ms"] = float(window)
        except ValueError:
            raise RubrickitError(f"RUBRICKIT_BATCH_WINDOW_MS={window!r} is not a number") from None
    for var, name in (("RUBRICKIT_MODE", "mode"), ("RUBRICKIT_ON_ERROR", "on_error"),
                      ("RUBRICKIT_CACHE_DIR", "cache_dir"), ("RUBRICKIT_LABEL_AS", "label_as")):
        if (value := _env(var)) is not None:
            out[name] = value
    if _env_bool("RUBRICKIT_NO_CACHE"):
        out["use_cache"] = False
    if _env_bool("RUBRICKIT_DROP_SYSTEM"):
        out["drop_system"] = True
    out["end_tokens"] = _env_tokens("RUBRICKIT_END_TOKENS", END_TOKENS)
    return out


class _FileRuntime:
    """The scorer and batcher of :func:`reward_func`, on a private event loop thread (OpenRLHF calls the function
    from many threads at once, one sample each: ``asyncio.to_thread``)."""

    def __init__(self, *, rubric: Any = None, judge: Any = None, base_url: str | None = None,
                 on_error: Any = "none", label_as: LabelAs = "auto", drop_system: bool = False,
                 end_tokens: tuple[str, ...] = END_TOKENS, max_batch: int = 8, batch_window_ms: float = 10.0,
                 max_queue: int = 65536, max_batches: int | None = None, **scorer_options: Any):
        reward, judge_opts = split_options(scorer_options)  # TypeError naming the known options
        self.on_error = RewardOptions(on_error=on_error).on_error
        self.recovery = RecoveryOptions(label_as=label_as, drop_system=drop_system, end_tokens=tuple(end_tokens))
        self._settings = {"rubric": rubric, "judge": judge, "base_url": base_url, "reward": reward,
                          "judge_opts": judge_opts, "max_batch": max_batch, "window": batch_window_ms / 1000.0,
                          "max_queue": max_queue, "max_batches": max_batches}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rubrickit-reward-func", daemon=True)
        self._thread.start()
        try:
            self._call(self._open())
        except BaseException:
            self._stop_loop()
            raise

    async def _open(self) -> None:
        s = self._settings
        judge_opts = {k: v for k, v in s["judge_opts"].items() if v is not None}
        self.scorer = RewardScorer(s["rubric"], judge=s["judge"], base_url=s["base_url"],
                                   **{**s["reward"], "on_error": "none"}, **judge_opts)
        self.batcher = MicroBatcher(self.scorer, max_batch=s["max_batch"], window=s["window"],
                                    max_queue=s["max_queue"], max_batches=s["max_batches"])
        self.batcher.start()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def __call__(self, queries: Any, prompts: Any, labels: Any) -> dict[str, Any]:
        samples = build_samples(queries, prompts, labels, self.recovery,
                                rubric_set=isinstance(self.scorer.rubrics, RubricSet))
        details = self._call(self.batcher.submit(samples))
        for index, detail in enumerate(details):
            if not detail.scored:
                log.warning("sample %d not scored (%s): %s", index,
                            "raising" if self.on_error == "raise" else f"reward {_fallback(self.on_error)}",
                            detail.reason)
        if self.on_error == "raise" and (reason := unscored_reason(details)):
            raise RewardError(f"{reason} (on_error='raise')")
        return answer(details, self.on_error)

    def close(self) -> None:
        if not self.loop.is_running():
            return

        async def shut() -> None:
            await self.batcher.close()
            await self.scorer.aclose()

        try:
            self._call(shut())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


_runtime: _FileRuntime | None = None
_runtime_lock = threading.Lock()


def configure(**options: Any) -> None:
    """Set up :func:`reward_func` explicitly (instead of from the environment): ``rubric=`` (a path, rubric or
    set; ``None`` when every label carries one), ``judge=``, ``base_url=``, ``on_error=``, ``label_as=``,
    ``drop_system=``, ``end_tokens=``, the batcher's ``max_batch=``/``batch_window_ms=``/``max_queue=``/
    ``max_batches=``, and any :class:`~rubrickit.rewards.RewardOptions` or judge option (``mode=``,
    ``concurrency=``, ``min_coverage=``, ``use_cache=``, …). Replaces (and closes) an earlier configuration."""
    global _runtime
    with _runtime_lock:
        old, _runtime = _runtime, _FileRuntime(**options)
    if old is not None:
        old.close()


def _current() -> _FileRuntime:
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = _FileRuntime(**options_from_env())
    return _runtime


def reward_func(queries: list[str], prompts: list[str], labels: list[Any] | None = None,
                **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's file variant: ``{"rewards": [...], "scores": [...], "extra_logs": {...}}`` for these samples.

    Configured on first use from the environment unless :func:`configure` ran: ``RUBRICKIT_RUBRIC`` (rubric or
    rubric set), ``RUBRICKIT_JUDGE``, ``RUBRICKIT_BASE_URL``, ``RUBRICKIT_MODE``, ``RUBRICKIT_CONCURRENCY``,
    ``RUBRICKIT_RPM``, ``RUBRICKIT_TPM``, ``RUBRICKIT_ON_ERROR`` (none | zero | raise | a number),
    ``RUBRICKIT_MIN_COVERAGE``, ``RUBRICKIT_SCALE``, ``RUBRICKIT_SHIFT``, ``RUBRICKIT_CACHE_DIR``,
    ``RUBRICKIT_NO_CACHE``, ``RUBRICKIT_LABEL_AS``, ``RUBRICKIT_DROP_SYSTEM``, ``RUBRICKIT_END_TOKENS``
    (comma-separated), ``RUBRICKIT_MAX_BATCH``, ``RUBRICKIT_BATCH_WINDOW_MS``, ``RUBRICKIT_MAX_BATCHES``,
    ``RUBRICKIT_MAX_QUEUE``; the judge's own ``RUBRICKIT_TIMEOUT``, ``RUBRICKIT_MAX_RETRIES``,
    ``RUBRICKIT_MAX_OUTAGE`` and its API key variable (``OPENAI_API_KEY``, …). Thread-safe: concurrent calls are
    coalesced into batches. A bad sample raises :class:`QueryError`; with ``on_error="raise"`` a sample the judge
    could not score raises :class:`~rubrickit.rewards.RewardError`."""
    del kwargs  # OpenRLHF may pass more in later releases
    return _current()(queries, prompts, labels)


@atexit.register
def _close_runtime() -> None:
    runtime = _runtime
    if runtime is not None:
        try:
            runtime.close()
        except Exception:  # noqa: BLE001 - nothing to report to at interpreter exit
            pass
