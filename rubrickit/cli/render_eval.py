"""Terminal rendering of ``rubrickit eval`` and ``rubrickit report`` (rich). The library returns data; this shows it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from rubrickit.cli.render import err, out


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def _ci(interval: Any) -> str:
    return "" if not interval else f" [{_pct(interval[0])}, {_pct(interval[1])}]"


def eval_summary(summary: Mapping[str, Mapping[str, Any]], outputs: Mapping[str, Path | None]) -> None:
    """One table row per configuration, the probes, then where the outputs went."""
    table = Table(title="Judge agreement with gold labels (tie = half credit)")
    for column in ("rubric", "n", "accuracy [95% CI]", "strict", "consistency", "κ", "ties", "errors", "coverage"):
        table.add_column(column, justify="left" if column == "rubric" else "right")
    for name, m in summary.items():
        kappa = "–" if m.get("kappa") is None else f"{m['kappa']:.3f}"
        table.add_row(escape(name), str(m["n"]), _pct(m["accuracy"]) + _ci(m.get("accuracy_ci95")),
                      _pct(m["accuracy_strict"]), _pct(m["consistency"]), kappa, str(m["ties"]), str(m["errors"]),
                      _pct(m["coverage"]))
    out.print(table)
    probes = Table(title="Probes (rate, n)")
    for column in ("rubric", "probe", "rate", "n", "note"):
        probes.add_column(column, justify="right" if column in ("rate", "n") else "left")
    shown = False
    for name, m in summary.items():
        for probe, p in m.get("probes", {}).items():
            note = f"first-shown {_pct(p['first_rate'])}" if p.get("first_rate") is not None else ""
            if p.get("pass_rate") is not None:
                note = f"criteria passed {_pct(p['pass_rate'])} of {p['pass_n']}"
            probes.add_row(escape(name), probe, _pct(p.get("rate")), str(p.get("n", 0)), escape(note))
            shown = True
    if shown:
        out.print(probes)
    for name, m in summary.items():
        accounting = m.get("details", {}).get("accounting") or {}
        err.print(escape(f"{name}: {accounting.get('calls', 0)} calls, {accounting.get('cache_hits', 0)} cached, "
                         f"{accounting.get('input_tokens', 0)} tokens in, {accounting.get('errors', 0)} errors, "
                         f"cost {_cost(accounting.get('cost'))}, {m.get('details', {}).get('elapsed_s')} s"),
                  soft_wrap=True)
    for label, path in outputs.items():
        if path is not None:
            err.print(escape(f"wrote {label}: {path}"), soft_wrap=True)


def report_written(path: Path, configs: int) -> None:
    """Where the report went."""
    err.print(escape(f"wrote {path} ({configs} configuration(s))"), soft_wrap=True)


def _cost(value: float | None) -> str:
    """Dollars, or ``unknown`` when the judge's price is not known (never ``None``)."""
    return "unknown" if value is None else f"${value:.4f}"
