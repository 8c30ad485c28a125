"""``score`` and ``compare``: the judge over a data file, on this process or a Ray cluster."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from rubrickit import compare_files, score_files
from rubrickit.cli import render
from rubrickit.cli.options import (
    DryRunOpt,
    RepeatOpt,
    RunFiles,
    handled,
    judge_call,
    ray_scale,
    run_files,
    with_options,
)

commands = typer.Typer()


@commands.command()
@handled
@with_options(judge_call, into="call")
@with_options(run_files, into="files")
@with_options(ray_scale, into="scale")
def score(
    rubric: Annotated[Path, typer.Option("--rubric", "-r", help="A rubric (YAML) or a rubric set (JSONL).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL/CSV rows: prompt, response, id?, prompt_id?.")],
    call: dict[str, Any], files: RunFiles, dry_run: DryRunOpt = False, repeat: RepeatOpt = None, scale: Any = None,
) -> None:
    """Score responses criterion by criterion; one score record per line as items finish."""
    _run_files(score_files, "score_files_ray", scale, kind="score", rubric=rubric, data=data, files=files,
               dry_run=dry_run, repeat=repeat, **call)


@commands.command()
@handled
@with_options(judge_call, into="call")
@with_options(run_files, into="files")
@with_options(ray_scale, into="scale")
def compare(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="JSONL/CSV pairs: prompt, response_a, response_b, label?.")
    ],
    call: dict[str, Any], files: RunFiles,
    rubric: Annotated[
        Path | None, typer.Option("--rubric", "-r", help="Rubric or rubric set; without one, a direct judgment.")
    ] = None,
    dry_run: DryRunOpt = False, repeat: RepeatOpt = None, scale: Any = None,
) -> None:
    """Compare response pairs: per-criterion A-vs-B in both orders (margin), or a direct judgment."""
    _run_files(compare_files, "compare_files_ray", scale, kind="compare", rubric=rubric, data=data, files=files,
               dry_run=dry_run, repeat=repeat, **call)


def _run_files(local: Callable[..., Any], remote: str, scale: Any, *, kind: str, rubric: Any, data: Path,
               files: RunFiles, dry_run: bool, **arguments: Any) -> None:
    """Run ``score``/``compare`` on the local engine (dry runs always) or on Ray, then render and judge the errors."""
    run: Callable[..., Any] = functools.partial(local, dry_run=dry_run)
    if scale is not None and not dry_run:
        from rubrickit.integrations import ray

        run = functools.partial(getattr(ray, remote), ray_options=scale)
    result = run(rubric, data, **files.arguments, **arguments)
    if result.empty_input:
        return  # --allow-empty and no rows: warned, nothing judged or written
    render.run_result(result, kind=kind)
    result.raise_for_errors(files.max_error_rate)


