"""Terminal rendering of ``rubrickit refine`` and ``rubrickit weight`` (rich): what each step removed or reweighted,
and why. The library returns :class:`~rubrickit.refine.RefineResult`; this module only shows it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.markup import escape
from rich.table import Table

from rubrickit.cli.render import out

__all__ = ["refinement"]

_DETAIL_RUBRICS = 5
"""Rubrics of a set shown step by step; the rest are summarised."""


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _step_table(report: Any) -> Table | None:
    rows = [(r["id"], r["reason"], r.get("detail", "")) for r in report.removed]
    rows += [(r["id"], "reweighted", f"{_fmt(r['from'])} → {_fmt(r['to'])}" + (f" ({r['detail']})"
                                                                                if r.get("detail") else ""))
             for r in report.reweighted]
    if not rows:
        return None
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("criterion")
    table.add_column("what")
    table.add_column("why", overflow="fold")
    for cid, what, why in rows:
        table.add_row(escape(cid), escape(what), escape(why))
    return table


def _headline(report: Any) -> str:
    parts = []
    if report.removed:
        parts.append(f"removed {len(report.removed)}")
    if report.reweighted:
        parts.append(f"reweighted {len(report.reweighted)}")
    if report.criteria is not None and not report.unchanged:
        parts.append(f"→ {len(report.criteria)} theme(s)")
    if report.drop_rubric:
        parts.append(f"[red]rubric dropped[/]: {escape(report.drop_rubric)}")
    if report.unchanged:
        parts.append(f"[yellow]unchanged[/]: {escape(report.unchanged)}")
    stats = report.stats or {}
    for key in ("accuracy", "cv_accuracy", "train_accuracy", "imputed_cells", "rate"):
        if stats.get(key) is not None:
            parts.append(f"{key.replace('_', ' ')} {_fmt(stats[key])}")
    return ", ".join(parts) or "no change"


def refinement(result: Any, *, dry_run: bool, command: str = "refine") -> None:
    """Every step of every rubric (the first few of a set in detail), then a summary line."""
    by_rubric: dict[str, list[Any]] = {}
    for report in result.reports:
        by_rubric.setdefault(report.rubric_id, []).append(report)
    for index, (rubric_id, reports) in enumerate(by_rubric.items()):
        if index >= _DETAIL_RUBRICS:
            break
        out.print(f"[bold]{escape(rubric_id)}[/]")
        for report in reports:
            out.print(f"  [cyan]{report.step}[/]: {_headline(report)}")
            table = _step_table(report)
            if table is not None:
                out.print(table)
    if len(by_rubric) > _DETAIL_RUBRICS:
        reasons = Counter((r.step, item["reason"]) for r in result.reports for item in r.removed)
        out.print(f"… {len(by_rubric) - _DETAIL_RUBRICS} more rubric(s); removals over all rubrics:")
        for (step, reason), count in sorted(reasons.items()):
            out.print(f"  {step}: {escape(reason)} ×{count}")
    kept = sum(len(r.criteria) for r in result.rubrics)
    summary = (f"{command}: {len(result.rubrics)} rubric(s), {kept} criteria kept, {result.removed_count()} removed"
               + (f", {len(result.dropped)} rubric(s) dropped" if result.dropped else "")
               + (f", {result.judged_items} response(s) judged with {escape(result.judge or '?')}"
                  if result.judged_items else ""))
    out.print(summary)
    if dry_run:
        out.print("[yellow]dry run[/]: nothing written")
    elif result.written is not None:
        out.print(f"wrote {escape(str(result.written))}")
