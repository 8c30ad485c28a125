"""``rubrickit eval`` and ``rubrickit report`` (registered by :mod:`rubrickit.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rubrickit.cli import render_eval as render
from rubrickit.cli.options import (
    AllowEmptyOpt,
    ForceOpt,
    handled,
    judge_call,
    parse_mapping,
    ray_scale,
    with_options,
)


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


commands = typer.Typer()


@commands.command("eval")
@handled
@with_options(judge_call, into="call")
@with_options(ray_scale, into="scale")
def eval_command(
    data: Annotated[list[Path], typer.Option("--data", "-d", help="Pair files (JSONL/CSV/HF on disk); repeatable.")],
    call: dict[str, Any],
    rubric: Annotated[str, typer.Option("--rubric", "-r", help="none, a rubric/rubric-set PATH, or "
                                        "generate:METHOD (label-free: decompose, reference, tail).")] = "none",
    compare_rubrics: Annotated[str | None, typer.Option(
        "--compare-rubrics", help="Several --rubric values side by side, comma-separated (none,PATH,generate:M).")]
    = None,
    rubric_mode: Annotated[str, typer.Option("--rubric-mode", help="pairwise (per-criterion margin) or pointwise "
                                             "(the two rewards compared).")] = "pairwise",
    limit: Annotated[int | None, typer.Option("--limit", help="Pairs per data file (a fixed sample: smallest "
                                              "sha256 of the id).")] = None,
    swap: Annotated[bool, typer.Option("--swap/--no-swap", help="Judge both orders (A/B swapped).")] = True,
    probes: Annotated[list[str] | None, typer.Option("--probes", help="position,length,master-key,order")] = None,
    probe_limit: Annotated[int, typer.Option("--probe-limit", help="Pairs the probes run on.")] = 20,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN for other column names.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="metrics.json")] = None,
    records: Annotated[Path | None, typer.Option("--records", help="Records JSONL (for rubrickit report).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Self-contained HTML report.")] = None,
    force: ForceOpt = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap and the order probe.")] = 0,
    allow_empty: AllowEmptyOpt = False, scale: Any = None,
) -> None:
    """Evaluate a judge against gold pair labels: accuracy, consistency, κ, intervals, calibration, probes."""
    from rubrickit import evaluate

    rubrics = _split([compare_rubrics]) if compare_rubrics else [rubric]
    result = evaluate(data, rubrics=rubrics, rubric_mode=rubric_mode, limit=limit,
                      swap=swap, probes=_split(probes), probe_limit=probe_limit, mapping=parse_mapping(mapping),
                      out=out, records=records, report=report, force=force, seed=seed, allow_empty=allow_empty,
                      ray_options=scale, **call)
    if not result.runs:
        return  # --allow-empty and no pairs: warned, nothing judged or written
    summary = result.metrics.get("configs") or {result.runs[0].config: result.metrics}
    render.eval_summary(summary, {"metrics": out, "records": records, "report": report})


@commands.command("report")
@handled
def report_command(
    records: Annotated[Path, typer.Argument(help="Records JSONL written by rubrickit eval --records.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    force: ForceOpt = False,
) -> None:
    """Write a self-contained HTML report (inline SVG plots, no network assets) from an eval records file."""
    from rubrickit.eval import read_records, summarize, write_report

    lines = read_records(records)
    summary = summarize(lines, seed=seed)
    write_report(lines, output, summary=summary, overwrite=force)
    render.report_written(output, len(summary))
