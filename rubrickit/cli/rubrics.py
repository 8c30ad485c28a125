"""Commands on rubric files: ``validate``, ``lint``, ``show``, ``diff``, ``schema``, ``convert``, ``aggregate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rubrickit import (
    aggregate_file,
    convert_file,
    diff_paths,
    lint_paths,
    load_rubrics,
    rubric_json_schema,
    validate_paths,
)
from rubrickit.cli import render
from rubrickit.cli.options import AllowEmptyOpt, PathsArg, handled, split_csv
from rubrickit.rubric import iter_rubric_files, write_schema
from rubrickit.rubric.formats.convert import FORMATS
from rubrickit.rubric.lint import RULES

commands = typer.Typer()

_FORMATS = ", ".join(FORMATS)


@commands.command()
@handled
def validate(paths: PathsArg) -> None:
    """Check rubric files against the format; exit 1 on any error."""
    reports = validate_paths(paths)
    render.validation(reports)
    if not reports or any(r.problems for r in reports):
        raise typer.Exit(1)


@commands.command()
@handled
def lint(
    paths: PathsArg,
    disable: Annotated[
        list[str] | None,
        typer.Option(
            "--disable", "-d", envvar="RUBRICKIT_LINT_DISABLE", help="Rule id to skip (repeatable)."
        ),
    ] = None,
    list_rules: Annotated[bool, typer.Option("--list-rules", help="Print the rules and exit.")] = False,
) -> None:
    """Find rubric smells (non-atomic, duplicate, double-negative criteria, …); exit 1 on findings."""
    if list_rules:
        render.rules(RULES)
        return
    findings, problems = lint_paths(paths, disable=split_csv(disable))
    render.lint(findings, problems)
    if findings or problems:
        raise typer.Exit(1)


@commands.command()
@handled
def show(
    path: Annotated[Path, typer.Argument(help="A rubric file, rubric set or directory.")],
    limit: Annotated[int, typer.Option(help="Show at most this many rubrics of a set.")] = 5,
) -> None:
    """Show rubrics as tables."""
    for file in iter_rubric_files([path]):
        rubrics = load_rubrics(file)
        render.rubrics(file, rubrics, limit=limit)


@commands.command()
@handled
def diff(
    old: Annotated[Path, typer.Argument(help="The old rubric or rubric set.")],
    new: Annotated[Path, typer.Argument(help="The new rubric or rubric set.")],
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 when they differ.")] = False,
) -> None:
    """Semantic diff: added/removed/changed criteria, weights, fingerprints, and whether re-judging is needed."""
    diffs = diff_paths(old, new)
    render.diffs(diffs)
    if exit_code and any(not d.is_empty() for d in diffs):
        raise typer.Exit(1)


@commands.command()
@handled
def schema(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Write the JSON Schema of rubric files (editors use it to validate and autocomplete)."""
    if out is None:
        sys.stdout.write(json.dumps(rubric_json_schema(), indent=2, ensure_ascii=False) + "\n")
    else:
        write_schema(out, overwrite=force)
        render.note(f"wrote {out}")


@commands.command()
@handled
def convert(
    source: Annotated[Path, typer.Argument(help="Input file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    from_fmt: Annotated[
        str | None, typer.Option("--from", help=f"Input format: {_FORMATS} (default: detected).")
    ] = None,
    to_fmt: Annotated[
        str | None, typer.Option("--to", help=f"Output format: {_FORMATS} (default: from the output name).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Import and export rubric formats of the field (HealthBench, RaR, Prometheus/BiGGen, OpenRubrics)."""
    report = convert_file(source, out, from_fmt=from_fmt, to_fmt=to_fmt, overwrite=force)
    render.conversion(report, out)



@commands.command()
@handled
def aggregate(
    rubric: Annotated[
        Path, typer.Option("--rubric", "-r", help="The rubric or rubric set the verdicts are for.")
    ],
    verdicts: Annotated[Path, typer.Option("--verdicts", "-v", help="Verdict rows (JSONL, may be gzipped).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Score records (JSONL); '-' for standard output.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    allow_empty: AllowEmptyOpt = False,
) -> None:
    """Recompute rewards from stored verdicts, without a judge."""
    records = aggregate_file(rubric, verdicts, None if str(out) == "-" else out, overwrite=force,
                             allow_empty=allow_empty)
    if not records:
        return  # an empty verdicts file with --allow-empty: warned, nothing written
    if str(out) == "-":
        for record in records:
            sys.stdout.write(record.model_dump_json() + "\n")
    render.score_summary(records, out)


