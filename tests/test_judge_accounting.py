"""Accounting (tokens, cached tokens, retries, errors, cost), price lookup, the dry-run plan, and progress bars."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from rubrickit.backends.base import Completion, Usage
from rubrickit.judge import accounting
from rubrickit.judge.accounting import Accounting, Plan, estimate_cost, estimate_tokens, model_price
from rubrickit.judge.progress import Progress

REPO = Path(__file__).resolve().parents[1]

# Priced in litellm's bundled table (input, output and cached-input rates).
MINI = "openai:gpt-4o-mini"


def done(input_tokens: int, output_tokens: int, cached: int = 0, cost: float | None = None) -> Completion:
    return Completion(
        text="{}", usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached), cost=cost
    )


def test_estimate_tokens_is_about_four_characters_per_token():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 4000) == 1000


def test_estimate_cost_for_a_known_model_is_positive_and_matches_the_table():
    cost = estimate_cost(MINI, 1_000_000, 1_000_000)
    assert cost is not None and cost > 0
    input_price, output_price, _ = model_price(MINI)
    assert cost == pytest.approx(1_000_000 * (input_price + output_price))


def test_estimate_cost_prices_cached_tokens_at_the_cache_read_rate():
    input_price, _, cached_price = model_price(MINI)
    assert cached_price < input_price
    full = estimate_cost(MINI, 1000, 0)
    with_cache = estimate_cost(MINI, 1000, 0, cached_tokens=600)
    assert with_cache == pytest.approx(400 * input_price + 600 * cached_price)
    assert with_cache < full


@pytest.mark.parametrize(
    "spec", ["openai:no-such-model-xyz", "litellm:acme/unknown-7b", "hf:Qwen/Qwen2.5-0.5B-Instruct", "embedded",
             "vllm:gpt-4o-mini", "fake:scripted"],
)
def test_estimate_cost_is_none_for_unknown_or_local_models(spec: str):
    assert estimate_cost(spec, 1000, 100) is None


def test_model_is_taken_after_the_first_colon_and_provider_prefix_is_optional():
    assert model_price("litellm:openai/gpt-4o-mini") == model_price(MINI)
    anthropic = model_price("litellm:anthropic/claude-haiku-4-5")
    assert anthropic is not None and anthropic[0] > 0


def test_price_table_is_read_without_importing_litellm():
    # Importing litellm takes seconds (and, without the local-map switch, reaches for the network).
    code = (
        "import sys\n"
        "from rubrickit.judge.accounting import estimate_cost\n"
        "assert estimate_cost('openai:gpt-4o-mini', 10, 10) > 0\n"
        "assert 'litellm' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_imported_litellm_table_is_used_when_present(monkeypatch: pytest.MonkeyPatch):
    class FakeLitellm:
        model_cost = {"house-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}

    monkeypatch.setitem(sys.modules, "litellm", FakeLitellm)
    accounting._price_table.cache_clear()
    model_price.cache_clear()
    try:
        assert estimate_cost("litellm:house-model", 10, 5) == pytest.approx(2e-5)
    finally:
        accounting._price_table.cache_clear()
        model_price.cache_clear()


def test_accounting_sums_calls_tokens_cached_tokens_and_backend_costs():
    acc = Accounting(judge="openai:my-finetune")
    acc.record_completion(done(100, 10, cached=40, cost=0.001), from_cache=False)
    acc.record_completion(done(200, 20, cached=0, cost=0.002), from_cache=False)
    acc.record_completion(done(999, 99, cost=5.0), from_cache=True)  # a cache hit costs nothing
    assert (acc.calls, acc.cache_hits) == (2, 1)
    assert (acc.input_tokens, acc.output_tokens, acc.cached_tokens) == (300, 30, 40)
    assert acc.cost == pytest.approx(0.003)
    assert acc.uncosted_calls == 0


def test_accounting_estimates_cost_from_usage_when_the_backend_gives_none():
    acc = Accounting(judge=MINI)
    acc.record_completion(done(1000, 100, cached=200), from_cache=False)
    assert acc.cost == pytest.approx(estimate_cost(MINI, 1000, 100, cached_tokens=200))


def test_accounting_cost_is_none_when_unknown_and_counts_uncosted_calls():
    acc = Accounting(judge="hf:Qwen/Qwen2.5-0.5B-Instruct")
    acc.record_completion(done(10, 1), from_cache=False)
    assert acc.cost is None and acc.uncosted_calls == 1
    acc.record_completion(done(10, 1, cost=0.5), from_cache=False)
    assert acc.cost == 0.5 and acc.uncosted_calls == 1
    assert Accounting().cost is None


def test_accounting_counts_retries_and_errors_by_kind_in_a_flat_json_dict():
    acc = Accounting(judge=MINI)
    acc.record_retry()
    acc.record_retry()
    acc.record_error("parse")
    acc.record_error("backend")
    acc.record_error("parse")
    summary = acc.as_dict()
    assert summary["retries"] == 2
    assert summary["errors"] == 3
    assert summary["errors_parse"] == 2 and summary["errors_backend"] == 1
    assert summary["cost"] is None
    assert summary["elapsed_s"] >= 0
    assert all(not isinstance(value, (dict, list)) for value in summary.values())
    assert json.loads(json.dumps(summary)) == summary


def test_plan_is_a_strict_json_model():
    plan = Plan(
        items=10, criteria=5, tasks=50, programmatic=5, duplicates=3, cached=2, calls=40, input_tokens=32_000,
        output_tokens=2_400, cost=estimate_cost(MINI, 32_000, 2_400), mode="per_criterion", judge=MINI,
    )
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert Plan.model_fields["calls"].description
    with pytest.raises(ValidationError):
        Plan(**{**plan.model_dump(), "surprise": 1})


def test_progress_is_silent_when_not_a_tty():
    stream = io.StringIO()
    with Progress(10, "judging", file=stream, enabled=None) as progress:
        progress.advance(3)
        progress.set_total(20)
        progress.advance()
    assert not progress.enabled
    assert (progress.completed, progress.total) == (4, 20)
    assert stream.getvalue() == ""


def test_progress_can_be_disabled_explicitly():
    with Progress(5, "judging", enabled=False) as progress:
        progress.advance(5)
    assert not progress.enabled and progress.completed == 5


def test_progress_draws_a_bar_when_enabled():
    stream = io.StringIO()
    with Progress(4, "judging", file=stream, enabled=True) as progress:
        progress.advance(2)
        progress.set_total(8)
        progress.advance(6)
    out = stream.getvalue()
    assert "judging" in out
    assert "8/8" in out


@pytest.mark.slow
def test_without_the_bundled_file_litellm_is_imported_with_its_local_price_map():
    code = (
        "import os, sys\n"
        "os.environ.pop('LITELLM_LOCAL_MODEL_COST_MAP', None)\n"
        "from rubrickit.judge import accounting\n"
        "accounting._PRICE_FILE = 'no-such-file.json'\n"
        "cost = accounting.estimate_cost('openai:gpt-4o-mini', 1000, 100)\n"
        "assert 'litellm' in sys.modules\n"
        "assert os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] == 'True'\n"
        "price = sys.modules['litellm'].model_cost['gpt-4o-mini']\n"
        "expected = 1000 * price['input_cost_per_token'] + 100 * price['output_cost_per_token']\n"
        "assert cost > 0 and abs(cost - expected) < 1e-12, (cost, expected)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
