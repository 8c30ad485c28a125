"""What the CLI prints when its output is not a terminal: tables fit their data, unknown costs say so."""

from __future__ import annotations

import pytest

from rubrickit.cli import render, render_eval


@pytest.fixture
def redirected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # pytest's captured streams are not terminals


def test_usage_table_is_not_cut_at_80_columns_when_redirected(redirected: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    render.accounting({"calls": 12, "cache_hits": 3, "duplicates": 0, "input_tokens": 123456, "cached_tokens": 0,
                       "output_tokens": 7890, "retries": 2, "errors": 1, "cost": None, "elapsed_s": 3.5})
    out = capsys.readouterr().err
    assert "…" not in out
    for header in ("cache hits", "input tokens", "output tokens", "retries", "errors", "cost (USD)", "seconds"):
        assert header in out
    assert "unknown" in out and "123456" in out


def test_a_narrow_table_keeps_its_own_width(redirected: None, capsys: pytest.CaptureFixture[str]) -> None:
    render.rules({"a": "short"})
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 80


def test_eval_summary_shows_unknown_cost_not_none(redirected: None, capsys: pytest.CaptureFixture[str]) -> None:
    summary = {"cfg": {"n": 4, "accuracy": 0.5, "accuracy_strict": 0.5, "consistency": 1.0, "ties": 0, "errors": 0,
                       "coverage": 1.0, "details": {"accounting": {"calls": 4, "cost": None}, "elapsed_s": 1.0}}}
    render_eval.eval_summary(summary, {})
    err = capsys.readouterr().err
    assert "cost unknown" in err and "None" not in err
