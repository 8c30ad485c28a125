"""Run accounting (calls, tokens, cached tokens, retries, errors, cost) and the ``--dry-run`` plan.

Prices come from litellm's bundled price table (``model_prices_and_context_window_backup.json``), read without the
network: the file is read directly when litellm is installed but not yet imported (importing litellm takes
seconds), ``litellm.model_cost`` is used when litellm is already imported, and ``LITELLM_LOCAL_MODEL_COST_MAP=True``
is set before litellm is ever imported from here. Without litellm, costs are unknown (``None``), never guessed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..backends.base import Completion

__all__ = ["Accounting", "Plan", "estimate_cost", "estimate_tokens", "model_price"]

_LOCAL_BACKENDS = frozenset({"hf", "vllm", "embedded", "fake"})
"""Backends that run on the user's hardware: no per-token price applies (and names may collide with the table)."""

_PRICE_FILE = "model_prices_and_context_window_backup.json"


def estimate_tokens(text: str) -> int:
    """A quick token estimate: one token per 4 characters, rounded up.

    English prose runs at ~4 characters per token for GPT/Claude-style BPE vocabularies; code, non-Latin scripts
    and numbers use more tokens per character, so treat this as a planning figure, not a bill.
    """
    return (len(text) + 3) // 4


@lru_cache(maxsize=1)
def _price_table() -> dict[str, Any] | None:
    litellm = sys.modules.get("litellm")
    if litellm is not None and isinstance(getattr(litellm, "model_cost", None), dict):
        return litellm.model_cost
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / _PRICE_FILE
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                break
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm as imported
    except Exception:  # a broken optional install must not break accounting
        return None
    table = getattr(imported, "model_cost", None)
    return table if isinstance(table, dict) else None


@lru_cache(maxsize=256)
def model_price(spec: str) -> tuple[float, float, float] | None:
    """USD per (input token, output token, cached input token) for a judge spec, or ``None`` when unknown.

    The model is the part of the spec after the first colon (``openai:gpt-4.1-mini`` → ``gpt-4.1-mini``,
    ``litellm:anthropic/claude-…`` → ``anthropic/claude-…``); when the table has no ``provider/model`` entry the
    bare model after the slash is tried. Local backends (``hf``, ``vllm``, ``embedded``, ``fake``) have no price.
    """
    backend, _, model = spec.partition(":")
    if not model or backend in _LOCAL_BACKENDS:
        return None
    table = _price_table()
    if not table:
        return None
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for name in candidates:
        entry = table.get(name)
        if not isinstance(entry, dict) or name == "sample_spec":
            continue
        input_cost = entry.get("input_cost_per_token")
        if not isinstance(input_cost, (int, float)):
            continue
        output_cost = entry.get("output_cost_per_token", 0.0)
        cached_cost = entry.get("cache_read_input_token_cost", input_cost)
        output_cost = output_cost if isinstance(output_cost, (int, float)) else 0.0
        cached_cost = cached_cost if isinstance(cached_cost, (int, float)) else input_cost
        return float(input_cost), float(output_cost), float(cached_cost)
    return None


def estimate_cost(spec: str, input_tokens: int, output_tokens: int, *, cached_tokens: int = 0) -> float | None:
    """USD for a call's tokens under ``spec`` from litellm's price table; ``None`` when the price is unknown.

    ``cached_tokens`` are the part of ``input_tokens`` served from the provider's prompt cache, billed at the
    cached-read price where the table lists one.
    """
    price = model_price(spec)
    if price is None:
        return None
    input_cost, output_cost, cached_cost = price
    cached = min(max(cached_tokens, 0), input_tokens)
    return (input_tokens - cached) * input_cost + cached * cached_cost + output_tokens * output_cost


@dataclass
class Accounting:
    """Mutable counters for one run (one judge).

    ``calls`` counts completions received from the backend; answers from the judge cache count in ``cache_hits``
    only (they cost nothing). ``cost`` sums each call's :attr:`Completion.cost` when the backend reports one, else
    :func:`estimate_cost` of its usage; it stays ``None`` until some call's cost is known, and ``uncosted_calls``
    counts calls whose cost was unknown (so a partial sum is never mistaken for the total).
    """

    judge: str | None = None
    """The judge spec, used to price completions whose backend gives no cost."""
    calls: int = 0
    """Completions received from the backend (not counting retried failures or cache hits)."""
    cache_hits: int = 0
    """Completions answered from the judge cache."""
    input_tokens: int = 0
    """Prompt tokens billed across calls."""
    output_tokens: int = 0
    """Generated tokens across calls."""
    cached_tokens: int = 0
    """Prompt tokens the provider served from its prefix cache (part of ``input_tokens``)."""
    retries: int = 0
    """Retried attempts (each wait before another try)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failures by kind (e.g. ``backend``, ``timeout``, ``parse``)."""
    cost: float | None = None
    """USD spent so far; ``None`` when no call's cost is known."""
    uncosted_calls: int = 0
    """Calls whose cost could not be determined."""
    started: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when the run started."""

    def record_completion(self, completion: Completion, *, from_cache: bool) -> None:
        """Count one completion: a cache hit, or a backend call with its tokens and cost."""
        if from_cache:
            self.cache_hits += 1
            return
        usage = completion.usage
        self.calls += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_tokens += usage.cached_tokens
        cost = completion.cost
        if cost is None and self.judge is not None:
            cost = estimate_cost(
                self.judge, usage.input_tokens, usage.output_tokens, cached_tokens=usage.cached_tokens
            )
        if cost is None:
            self.uncosted_calls += 1
        else:
            self.cost = (self.cost or 0.0) + cost

    def record_retry(self) -> None:
        """Count one retry."""
        self.retries += 1

    def record_error(self, kind: str) -> None:
        """Count one failure of ``kind``."""
        self.errors[kind] += 1

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        """A flat, JSON-safe summary: counters, ``errors`` (total), ``errors_<kind>``, ``cost``, ``elapsed_s``."""
        summary: dict[str, Any] = {
            "judge": self.judge,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "retries": self.retries,
            "errors": sum(self.errors.values()),
        }
        for kind in sorted(self.errors):
            summary[f"errors_{kind}"] = self.errors[kind]
        summary["cost"] = self.cost
        summary["uncosted_calls"] = self.uncosted_calls
        summary["elapsed_s"] = round(self.elapsed, 3)
        return summary


class Plan(BaseModel):
    """What a run would do and spend, computed by ``--dry-run`` without calling the judge."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    items: int
    """Data rows (responses, or pairs for ``compare``) to score."""
    criteria: int
    """Criteria across the rubrics used."""
    tasks: int
    """(item × criterion × repeat) judgments in total."""
    programmatic: int
    """Tasks decided by programmatic checks, locally, with no judge call."""
    duplicates: int
    """Tasks identical to another task, judged once."""
    cached: int
    """Tasks already answered in the judge cache."""
    calls: int
    """Judge calls the run would make (after checks, dedup, cache and per-response grouping)."""
    input_tokens: int
    """Estimated prompt tokens of those calls (:func:`estimate_tokens`)."""
    output_tokens: int
    """Estimated generated tokens (bounded by each request's ``max_tokens``)."""
    cost: float | None
    """Estimated USD from litellm's price table; ``None`` when the judge's price is unknown."""
    mode: str
    """The judging mode (``per_criterion``, ``per_response``, ``logprob``, …)."""
    judge: str
    """The judge spec."""
