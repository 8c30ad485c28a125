"""What the engine is asked to do: :class:`JudgeOptions` (mode, limits, retries, cache, repeats, trace), their
defaults from ``RUBRICKIT_*`` environment variables, and :class:`JudgeModeError` when the judge cannot do the mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import RubrickitError
from .retry import RetryPolicy
from .tasks import Mode

__all__ = ["JudgeModeError", "JudgeOptions"]


class JudgeModeError(RubrickitError, ValueError):
    """The judge cannot do what the options ask (e.g. logprob mode on a backend without logprobs)."""


def _env_number(name: str, kind: type) -> Any:
    """The number in environment variable ``name`` (``None`` when unset), or a clear error naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise RubrickitError(f"environment variable {name}={raw!r}: expected a number") from None


class JudgeOptions(BaseModel):
    """How the engine judges: mode, limits, retries, cache, repeats. Immutable; copy with overrides."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    mode: Mode | None = None
    """``per_criterion`` (one call per response × criterion), ``per_response`` (one call per response),
    ``logprob`` (one-token Yes/No with probabilities), ``likert`` (expected level of scale criteria from digit
    probabilities), ``holistic`` (one 1–10 rating per response). ``None``: the backend's default
    (``Capabilities.default_mode``: ``logprob`` on the embedded judge, ``per_criterion`` elsewhere); the
    :class:`Judge` fills it in, so ``judge.options.mode`` is always set."""
    concurrency: int = Field(16, ge=1)
    """Backend calls in flight at once."""
    rpm: float | None = Field(None, gt=0)
    """Requests per minute (``None``: no limit)."""
    tpm: float | None = Field(None, gt=0)
    """Tokens per minute, prompt + generated (``None``: no limit)."""
    max_tokens: int = Field(512, ge=1)
    """Upper bound on the judge's reply (one-token modes ask for 1)."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature; raise it with ``repeat`` to estimate judge variance."""
    reasks: int = Field(2, ge=0)
    """Re-asks after an unreadable reply before the verdict becomes an error."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retries of failing calls (backoff, jitter, Retry-After)."""
    max_retries: int | None = Field(default_factory=lambda: _env_number("RUBRICKIT_MAX_RETRIES", int), ge=0)
    """Retries of a failing call before its verdict becomes an error (``None``: ``retry.max_attempts`` − 1 = 5).
    Default from ``RUBRICKIT_MAX_RETRIES``."""
    timeout: float | None = Field(default_factory=lambda: _env_number("RUBRICKIT_TIMEOUT", float), gt=0)
    """Seconds one backend call may take before it is abandoned and retried (``None``: the backend's own limit,
    60 s for API backends). Also sets the HTTP time-out of ``openai:`` and ``litellm:`` judges. Default from
    ``RUBRICKIT_TIMEOUT``."""
    transport: Literal["lean", "sdk"] | None = None
    """HTTP client of ``openai:`` judges: ``lean`` (a pooled aiohttp client sending plain JSON) or ``sdk`` (the
    ``openai`` SDK). ``None``: ``$RUBRICKIT_TRANSPORT``, else ``lean``."""
    max_outage: float = Field(default_factory=lambda: _env_number("RUBRICKIT_MAX_OUTAGE", float) or 120.0, gt=0)
    """Seconds the judge may stay unreachable (most recent calls failing with connection errors, time-outs or
    5xx, the circuit breaker open and its probes failing) before the run stops with
    :class:`~rubrickit.errors.JudgeUnavailableError`. Default from ``RUBRICKIT_MAX_OUTAGE``, else 120."""
    cache_dir: Path | None = None
    """Folder of the persistent judge cache (``None``: ``$RUBRICKIT_CACHE_DIR`` or ``~/.cache/rubrickit``)."""
    use_cache: bool = True
    """Look answers up in (and add them to) the persistent cache."""
    repeat: int = Field(1, ge=1)
    """Judge every item this many times (repeat r > 0 gets its own seed and cache entries)."""
    pairwise_fallback: bool = True
    """When a rubric comparison ties, let a direct pairwise judgment (both orders) decide."""
    templates_dir: Path | None = None
    """A folder of template overrides (same file names as ``prompts/``)."""
    progress: bool | None = None
    """Show a progress bar (``None``: when stderr is a terminal)."""
    trace_path: Path | None = None
    """Append every request sent and raw reply received to this JSONL file, for audit (never API keys)."""
    batch_size: int | None = Field(None, ge=1)
    """Requests per batch on a batching backend (``None``: ``concurrency``)."""
