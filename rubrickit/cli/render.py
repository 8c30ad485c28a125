"""All terminal rendering of the CLI (rich). Library modules return data; this module shows it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


class _Lazy:
    """A console made on first use in each command, so ``COLUMNS`` and redirected streams are honoured."""

    def __init__(self, stderr: bool):
        self.stderr = stderr

    def print(self, *args: Any, **kwargs: Any) -> None:
        console = Console(stderr=self.stderr, highlight=False, emoji=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            # Redirected output has no width to respect: a table gets the width of its data instead of being cut
            # at rich's default 80 columns ("unkn…", "erro…").
            unbounded = Console(width=10_000)  # measured without rich's default 80-column cap
            widest = max((unbounded.measure(a).maximum for a in args if isinstance(a, Table)), default=0)
            if widest > console.width:
                console = Console(stderr=self.stderr, highlight=False, emoji=False, width=widest)
        console.print(*args, **kwargs)


out = _Lazy(stderr=False)
err = _Lazy(stderr=True)


def error(message: str) -> None:
    """One error, on standard error."""
    for index, line in enumerate(message.splitlines() or [""]):
        prefix = "[bold red]error:[/] " if index == 0 else "       "
        err.print(prefix + escape(line), soft_wrap=True)


def note(message: str) -> None:
    """A short status line on standard error (keeps standard output clean for data)."""
    err.print(escape(message), soft_wrap=True)


def validation(reports: Sequence[Any]) -> None:
    """Per-file validation results."""
    if not reports:
        error("no rubric files found (looked for *.yaml, *.yml, *.json, *.jsonl, *.jsonl.gz)")
        return
    bad = 0
    for report in reports:
        if report.problems:
            bad += 1
            for problem in report.problems:
                out.print(f"[red]✗[/] {escape(problem)}")
        else:
            out.print(
                f"[green]✓[/] {escape(report.path)}: {report.rubrics} rubric(s), {report.criteria} criteria"
            )
    total = len(reports)
    out.print(f"{total - bad} of {total} file(s) valid" + (f", [red]{bad} with errors[/]" if bad else ""))


def rules(table: dict[str, str]) -> None:
    """The lint rules."""
    grid = Table("rule", "what it flags", title="lint rules")
    for rule, text in table.items():
        grid.add_row(rule, text)
    out.print(grid)


def lint(findings: Sequence[Any], problems: Sequence[str]) -> None:
    """Lint findings, one per line, then a count."""
    for problem in problems:
        out.print(f"[red]✗[/] {escape(problem)}")
    for finding in findings:
        out.print(escape(finding.format()))
    if findings or problems:
        out.print(f"{len(findings)} finding(s)" + (f", {len(problems)} file error(s)" if problems else ""))
    else:
        out.print("[green]no findings[/]")


def _criterion_detail(criterion: Any) -> str:
    if criterion.check is not None:
        params = criterion.check.model_dump(exclude_none=True)
        kind = params.pop("type")
        return f"check {kind}(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
    if criterion.scale:
        return "scale " + " · ".join(f"{level}: {text}" for level, text in criterion.scale.items())
    if criterion.applies_if:
        return f"if: {criterion.applies_if}"
    return ""


def rubrics(path: Path, items: Sequence[Any], *, limit: int) -> None:
    """Rubrics as tables (a set shows its first ``limit`` rubrics)."""
    for rubric in items[:limit]:
        title = (
            f"{rubric.id}"
            + (f" v{rubric.version}" if rubric.version else "")
            + (f" — {rubric.title}" if rubric.title else "")
        )
        grid = Table(
            title=escape(title),
            caption=escape(
                f"{path} · aggregation {rubric.aggregation} · gates {rubric.gates} · {rubric.fingerprint}"
            ),
        )
        grid.add_column("id", overflow="fold")
        grid.add_column("weight", justify="right")
        grid.add_column("kind")
        grid.add_column("criterion", ratio=1)
        for criterion in rubric.criteria:
            weight = f"[red]{criterion.weight:g}[/]" if criterion.weight < 0 else f"{criterion.weight:g}"
            kind = criterion.kind + (f"\n{criterion.category}" if criterion.category else "")
            extra = [_criterion_detail(criterion), ", ".join(criterion.tags)]
            body = escape(criterion.text) + "".join(f"\n[dim]{escape(e)}[/]" for e in extra if e)
            grid.add_row(escape(criterion.id), weight, escape(kind), body)
        out.print(grid)
    if len(items) > limit:
        out.print(f"… and {len(items) - limit} more rubric(s) in {path} (--limit to show more)")


def diffs(items: Iterable[Any]) -> None:
    """Semantic diffs, rubric by rubric."""
    any_change = False
    for item in items:
        if item.is_empty():
            continue
        any_change = True
        for line in item.lines():
            style = {"+": "green", "-": "red", "~": "yellow", "!": "bold magenta"}.get(line[:1], "")
            out.print(f"[{style}]{escape(line)}[/]" if style else escape(line))
    if not any_change:
        out.print("no semantic changes")


def conversion(report: Any, path: Path) -> None:
    """What a conversion wrote."""
    note(f"wrote {path}: {report.summary()}")


def score_summary(records: Sequence[Any], path: Path, *, max_items: int = 20, stats: Any = None) -> None:
    """Score records: one row per item (up to ``max_items``), then rewards, coverage and errors overall (from
    ``stats``, a :class:`~rubrickit.judge.run.RecordStats`, when the run summed them up as they finished)."""
    if 0 < len(records) <= max_items:
        items = Table("item", "rubric", "reward", "coverage", "errors", "gates failed", "sub-scores",
                      title="score records")
        for r in records:
            subs = ", ".join(f"{tag} {value:.2f}" if value is not None else f"{tag} —"
                             for tag, value in r.subscores.items())
            items.add_row(escape(r.item_id), escape(r.rubric_id), _num(r.reward), f"{r.coverage:.3f}",
                          str(r.errors), escape(", ".join(r.gates_failed)), escape(subs))
        err.print(items)
    if stats is None:
        from rubrickit.judge.run import RecordStats

        stats = RecordStats.of(records)
    grid = Table("items", "scored", "mean reward", "min", "max", "mean coverage", "error verdicts", "gates failed",
                 title="summary")
    mean_cov = stats.coverage_sum / stats.count if stats.count else 0.0
    grid.add_row(
        str(stats.count), str(stats.scored), _num(stats.reward_sum / stats.scored if stats.scored else None),
        _num(stats.reward_min), _num(stats.reward_max), f"{mean_cov:.3f}", str(stats.errors),
        str(stats.gates_failed),
    )
    err.print(grid)
    if str(path) != "-":
        note(f"wrote {path}")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def run_result(result: Any, *, kind: str) -> None:
    """What ``score``/``compare`` did: the plan for a dry run, else the records and the accounting."""
    if result.plan is not None:
        plan(result.plan)
        return
    if kind == "score":
        score_summary(result.records, result.out or Path("-"), max_items=20, stats=result.summary)
    else:
        pair_summary(result.records, stats=result.summary)
        if result.out is not None:
            note(f"wrote {result.out}")
    if result.resumed:
        note(f"resumed: {result.resumed} record(s) were already in {result.out} and were skipped")
    if result.redone:
        note(f"resumed: {result.redone} record(s) with error verdicts were removed from {result.out} and judged "
             "again")
    accounting(result.accounting)


def plan(item: Any) -> None:
    """The ``--dry-run`` plan."""
    grid = Table("judge", "mode", "items", "criteria", "tasks", "checks (local)", "duplicates", "cached", "calls",
                 "input tokens", "output tokens", "cost (USD)", title="plan (nothing was called)")
    grid.add_row(escape(item.judge), item.mode, str(item.items), str(item.criteria), str(item.tasks),
                 str(item.programmatic), str(item.duplicates), str(item.cached), str(item.calls),
                 f"{item.input_tokens:,}", f"{item.output_tokens:,}",
                 "unknown" if item.cost is None else f"{item.cost:.4f}")
    out.print(grid)


def accounting(values: dict[str, Any]) -> None:
    """Calls, cache hits, tokens, retries, errors, cost and time of a run."""
    grid = Table("calls", "cache hits", "duplicates", "input tokens", "cached tokens", "output tokens", "retries",
                 "errors", "cost (USD)", "seconds", title="judge usage")
    cost = values.get("cost")
    grid.add_row(*(str(values.get(k, 0)) for k in ("calls", "cache_hits", "duplicates", "input_tokens",
                                                  "cached_tokens", "output_tokens", "retries", "errors")),
                 "unknown" if cost is None else f"{cost:.4f}", f"{values.get('elapsed_s', 0):.1f}")
    err.print(grid)
    kinds = {k[len("errors_"):]: v for k, v in values.items() if k.startswith("errors_") and v}
    if kinds:
        note("errors by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))


def pair_summary(records: Sequence[Any], *, stats: Any = None) -> None:
    """Winners, agreement with labels where present, and both-orders consistency of pair records."""
    if stats is None:
        from rubrickit.judge.run import RecordStats

        stats = RecordStats.of(records)
    decided = sum(stats.winners.values())
    grid = Table("pairs", "A", "B", "tie", "undecided", "accuracy (labelled)", "consistent (both orders)",
                 "failed judgments", title="comparisons")
    grid.add_row(
        str(stats.count), *(str(stats.winners.get(w, 0)) for w in ("A", "B", "tie")), str(stats.count - decided),
        f"{stats.correct / stats.labelled:.3f} (n={stats.labelled})" if stats.labelled else "—",
        f"{stats.consistent / stats.checked_orders:.3f}" if stats.checked_orders else "—",
        str(stats.errors),
    )
    err.print(grid)


def generation(result: Any, path: Path, *, extra_outputs: Sequence[str] = ()) -> None:
    """What a generation run wrote, its statistics and why prompts were skipped."""
    criteria = sum(len(r.criteria) for r in result.rubrics)
    kind = "general rubric" if result.general else "rubrics"
    out.print(f"[bold]{escape(result.method)}[/]: wrote {len(result.rubrics)} {kind} ({criteria} criteria) to "
              f"{escape(str(path))}" + "".join(f", {escape(p)}" for p in extra_outputs))
    table = Table(title="statistics", show_header=True)
    table.add_column("counter")
    table.add_column("value", justify="right")
    for name, value in result.stats.items():
        if isinstance(value, dict):
            for reason, count in value.items():
                table.add_row(f"{escape(name)}: {escape(str(reason))}", str(count))
        else:
            table.add_row(escape(name), escape(str(value)))
    if result.stats:
        out.print(table)
    if result.skipped:
        counts: dict[str, int] = {}
        for skip in result.skipped:
            counts[skip.get("reason", "?")] = counts.get(skip.get("reason", "?"), 0) + 1
        note(f"skipped {len(result.skipped)} prompts: " + "; ".join(f"{r} ×{n}" for r, n in counts.items()))


def rank_summary(result: Any) -> None:
    """What ``rank`` did: rows, candidates, unscored, the best and spread of rewards, and the pairs written."""
    records = result.records
    best = [r.rewards[r.best] for r in records if r.best is not None]
    spread = [r.rewards[r.ranking[0]] - r.rewards[r.ranking[-1]] for r in records if len(r.ranking) > 1]
    grid = Table("rows", "candidates", "unscored", "mean best reward", "mean spread", title="ranking")
    grid.add_row(str(len(records)), str(result.candidates), str(result.unscored),
                 _num(sum(best) / len(best) if best else None), _num(sum(spread) / len(spread) if spread else None))
    out.print(grid)
    if result.out is not None:
        note(f"wrote {result.out}")
    if result.resumed:
        note(f"resumed: {result.resumed} row(s) were already in {result.out} and were skipped")
    if result.redone:
        note(f"resumed: {result.redone} row(s) with unscored candidates were removed from {result.out} and "
             "ranked again")
    if result.pairs is not None:
        stats = result.pairs
        note(f"wrote {stats.pairs} preference pair(s) to {result.pairs_out} (skipped: {stats.ties} tie(s), "
             f"{stats.too_few} row(s) with fewer than two scored candidates; {stats.unscored} unscored "
             "candidate(s) left out)")
