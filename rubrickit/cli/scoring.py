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
    ActorCpusOpt,
    ActorGpusOpt,
    ActorsOpt,
    AllowEmptyOpt,
    BaseUrlOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    DryRunOpt,
    EngineOpt,
    ForceOpt,
    JudgeOpt,
    MapOpt,
    MaxErrorRateOpt,
    MaxOutageOpt,
    MaxRetriesOpt,
    ModeOpt,
    NoCacheOpt,
    OutOpt,
    RayAddressOpt,
    RepeatOpt,
    ResumeOpt,
    RpmOpt,
    TimeoutOpt,
    TpmOpt,
    TransportOpt,
    handled,
    judge_options,
    parse_mapping,
    ray_options,
)

commands = typer.Typer()

@commands.command()
@handled
def score(
    rubric: Annotated[Path, typer.Option("--rubric", "-r", help="A rubric (YAML) or a rubric set (JSONL).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL/CSV rows: prompt, response, id?, prompt_id?.")],
    judge: JudgeOpt = None, base_url: BaseUrlOpt = None, mode: ModeOpt = None, concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None, tpm: TpmOpt = None, out: OutOpt = None, cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False, resume: ResumeOpt = False, force: ForceOpt = False, dry_run: DryRunOpt = False,
    repeat: RepeatOpt = None, timeout: TimeoutOpt = None, max_retries: MaxRetriesOpt = None,
    max_outage: MaxOutageOpt = None, max_error_rate: MaxErrorRateOpt = 0.0, transport: TransportOpt = None,
    map: MapOpt = None, allow_empty: AllowEmptyOpt = False,  # noqa: A002
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None, actors: ActorsOpt = 2,
    actor_cpus: ActorCpusOpt = None, actor_gpus: ActorGpusOpt = None,
) -> None:
    """Score responses criterion by criterion; one score record per line as items finish."""
    scale = ray_options(engine, ray_address, actors, actor_cpus, actor_gpus)
    _run_files(score_files, "score_files_ray", scale, kind="score", rubric=rubric, data=data, judge=judge,
               base_url=base_url, out=out, resume=resume, force=force, dry_run=dry_run, mapping=parse_mapping(map),
               allow_empty=allow_empty, max_error_rate=max_error_rate,
               **judge_options(mode, concurrency, rpm, tpm, cache_dir, no_cache, repeat, timeout, max_retries,
                                max_outage, transport))


@commands.command()
@handled
def compare(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="JSONL/CSV pairs: prompt, response_a, response_b, label?.")
    ],
    rubric: Annotated[
        Path | None, typer.Option("--rubric", "-r", help="Rubric or rubric set; without one, a direct judgment.")
    ] = None,
    judge: JudgeOpt = None, base_url: BaseUrlOpt = None, mode: ModeOpt = None, concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None, tpm: TpmOpt = None, out: OutOpt = None, cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False, resume: ResumeOpt = False, force: ForceOpt = False, dry_run: DryRunOpt = False,
    repeat: RepeatOpt = None, timeout: TimeoutOpt = None, max_retries: MaxRetriesOpt = None,
    max_outage: MaxOutageOpt = None, max_error_rate: MaxErrorRateOpt = 0.0, transport: TransportOpt = None,
    map: MapOpt = None, allow_empty: AllowEmptyOpt = False,  # noqa: A002
    engine: EngineOpt = "local", ray_address: RayAddressOpt = None, actors: ActorsOpt = 2,
    actor_cpus: ActorCpusOpt = None, actor_gpus: ActorGpusOpt = None,
) -> None:
    """Compare response pairs: per-criterion A-vs-B in both orders (margin), or a direct judgment."""
    scale = ray_options(engine, ray_address, actors, actor_cpus, actor_gpus)
    _run_files(compare_files, "compare_files_ray", scale, kind="compare", rubric=rubric, data=data, judge=judge,
               base_url=base_url, out=out, resume=resume, force=force, dry_run=dry_run, mapping=parse_mapping(map),
               allow_empty=allow_empty, max_error_rate=max_error_rate,
               **judge_options(mode, concurrency, rpm, tpm, cache_dir, no_cache, repeat, timeout, max_retries,
                                max_outage, transport))


def _run_files(local: Callable[..., Any], remote: str, scale: Any, *, kind: str, rubric: Any, data: Path,
               dry_run: bool, max_error_rate: float, **arguments: Any) -> None:
    """Run ``score``/``compare`` on the local engine (dry runs always) or on Ray, then render and judge the errors."""
    run: Callable[..., Any] = functools.partial(local, dry_run=dry_run)
    if scale is not None and not dry_run:
        from rubrickit.integrations import ray

        run = functools.partial(getattr(ray, remote), ray_options=scale)
    result = run(rubric, data, **arguments)
    if result.empty_input:
        return  # --allow-empty and no rows: warned, nothing judged or written
    render.run_result(result, kind=kind)
    result.raise_for_errors(max_error_rate)


