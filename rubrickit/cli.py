"""The ``rubrickit`` command line: each command parses arguments, calls one library function, and renders.

Rendering lives in :mod:`rubrickit._render`; errors from the library are shown by one handler (tracebacks only
with ``--debug``, and never with locals, which may hold keys).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from . import (
    RubrickitError,
    aggregate_file,
    compare_files,
    convert_file,
    diff_paths,
    lint_paths,
    load_rubrics,
    rubric_json_schema,
    score_files,
    validate_paths,
)
from . import _render as render
from .convert import FORMATS
from .judge.engine import set_run_announcer
from .lint import RULES
from .rubric_io import iter_rubric_files, write_schema

app = typer.Typer(
    name="rubrickit",
    help="Rubric authoring and criterion-by-criterion LLM-as-judge scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """Turn rubrickit errors into one ``error:`` line and the error's exit status (1 unless it says otherwise;
    ``--debug`` shows the traceback); Ctrl-C into a line saying how to resume, exit status 130."""

    resumable = "resume" in inspect.signature(func).parameters

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RubrickitError as exc:
            if _state["debug"]:
                raise
            render.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            if resumable:
                render.error("interrupted: every record finished so far is in the output file; rerun the same "
                             "command with --resume to continue")
            else:
                render.error("interrupted before the command finished; run it again (answers already received are "
                             "in the judge cache and are not asked again)")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="RUBRICKIT_DEBUG", help="Show tracebacks.")
    ] = False,
) -> None:
    _state["debug"] = debug
    set_run_announcer(render.note)  # each judge's spec and mode, as the run's header on standard error


_FORMATS = ", ".join(FORMATS)
PathsArg = Annotated[list[Path], typer.Argument(help="Rubric files or directories (searched recursively).")]


@app.command()
@handled
def validate(paths: PathsArg) -> None:
    """Check rubric files against the format; exit 1 on any error."""
    reports = validate_paths(paths)
    render.validation(reports)
    if not reports or any(r.problems for r in reports):
        raise typer.Exit(1)


@app.command()
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
    findings, problems = lint_paths(paths, disable=_split_csv(disable))
    render.lint(findings, problems)
    if findings or problems:
        raise typer.Exit(1)


@app.command()
@handled
def show(
    path: Annotated[Path, typer.Argument(help="A rubric file, rubric set or directory.")],
    limit: Annotated[int, typer.Option(help="Show at most this many rubrics of a set.")] = 5,
) -> None:
    """Show rubrics as tables."""
    for file in iter_rubric_files([path]):
        rubrics = load_rubrics(file)
        render.rubrics(file, rubrics, limit=limit)


@app.command()
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


@app.command()
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


@app.command()
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


AllowEmptyOpt = Annotated[bool, typer.Option("--allow-empty", help="An input file with no rows is a warning and "
                                             "nothing is done (exit 0), not an error.")]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN: read FIELD from COLUMN (repeat).")]


@app.command()
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


JudgeOpt = Annotated[
    str | None,
    typer.Option("--judge", "-j", envvar="RUBRICKIT_JUDGE",
                 help="Judge spec: openai:MODEL, litellm:PROVIDER/MODEL, hf:PATH, vllm:MODEL, embedded (default)."),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", envvar="RUBRICKIT_BASE_URL", help="OpenAI-compatible server (vLLM, llama.cpp, …)."),
]
ModeOpt = Annotated[
    str | None,
    typer.Option("--mode", "-m", envvar="RUBRICKIT_MODE",
                 help="per_criterion, per_response, logprob, likert or holistic (default: the judge's own, "
                      "logprob on embedded, per_criterion elsewhere)."),
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option("--concurrency", "-c", envvar="RUBRICKIT_CONCURRENCY", help="Calls in flight at once.")
]
RpmOpt = Annotated[float | None, typer.Option("--rpm", envvar="RUBRICKIT_RPM", help="Requests per minute limit.")]
TpmOpt = Annotated[float | None, typer.Option("--tpm", envvar="RUBRICKIT_TPM", help="Tokens per minute limit.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output JSONL, written as records finish.")]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", envvar="RUBRICKIT_CACHE_DIR", help="Judge cache folder.")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the judge cache.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an existing output, skipping finished items.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Plan calls, tokens and cost; call nothing.")]
RepeatOpt = Annotated[int | None, typer.Option("--repeat", help="Judge each item N times (fresh, for variance).")]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", envvar="RUBRICKIT_TIMEOUT", min=0.001,
                 help="Seconds one judge call may take before it is retried (default: 60 for API judges)."),
]
MaxRetriesOpt = Annotated[
    int | None,
    typer.Option("--max-retries", envvar="RUBRICKIT_MAX_RETRIES", min=0,
                 help="Retries of a failing call before its verdict is an error (default 5)."),
]
TransportOpt = Annotated[
    str | None,
    typer.Option("--transport", envvar="RUBRICKIT_TRANSPORT",
                 help="HTTP client of openai: judges: lean (pooled aiohttp, plain JSON; the default) or sdk (the "
                      "openai SDK)."),
]
MaxOutageOpt = Annotated[
    float | None,
    typer.Option("--max-outage", envvar="RUBRICKIT_MAX_OUTAGE", min=0.001,
                 help="Seconds the judge may stay unreachable before the run stops (exit 4; default 120)."),
]
MaxErrorRateOpt = Annotated[
    float,
    typer.Option("--max-error-rate", envvar="RUBRICKIT_MAX_ERROR_RATE", min=0.0, max=1.0,
                 help="Share of items allowed to end with error verdicts before the exit status is 3 (default 0)."),
]
EngineOpt = Annotated[
    str,
    typer.Option("--engine", envvar="RUBRICKIT_ENGINE",
                 help="local (this process) or ray (a pool of judge actors on a Ray cluster; pip install "
                      "'rubrickit[ray]'; docs/scale.md)."),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", envvar="RAY_ADDRESS",
                 help="With --engine ray: the cluster (auto, ray://HOST:10001); default: a local cluster for the job."),
]
ActorsOpt = Annotated[
    int, typer.Option("--actors", envvar="RUBRICKIT_RAY_ACTORS", min=1,
                      help="With --engine ray: judge actors, each with --concurrency calls in flight; --rpm/--tpm "
                           "are split across them.")
]
ActorCpusOpt = Annotated[
    float | None, typer.Option("--actor-cpus", min=0.0, help="With --engine ray: CPUs per actor (default 1 for "
                               "embedded/hf/vllm judges, 0.25 for API judges).")
]
ActorGpusOpt = Annotated[
    float | None, typer.Option("--actor-gpus", min=0.0, help="With --engine ray: GPUs per actor (default 1 for "
                               "vllm judges, else 0).")
]


def ray_options(engine: str, address: str | None, actors: int, cpus: float | None, gpus: float | None) -> Any:
    """The :class:`~rubrickit.integrations.ray.RayOptions` of ``--engine ray``; ``None`` for the local engine."""
    if engine not in ("local", "ray"):
        raise RubrickitError(f"--engine {engine!r}: use local or ray")
    if engine == "local":
        given = [flag for flag, value in (("--actor-cpus", cpus), ("--actor-gpus", gpus)) if value is not None]
        if given:
            raise RubrickitError(f"{', '.join(given)} only apply with --engine ray")
        return None
    from .integrations.ray import RayOptions

    return RayOptions(address=address, actors=actors, num_cpus=cpus, num_gpus=gpus)


def _judge_options(mode, concurrency, rpm, tpm, cache_dir, no_cache, repeat, timeout=None, max_retries=None,  # noqa: ANN001
                   max_outage=None, transport=None) -> dict[str, Any]:  # noqa: ANN001
    return {"mode": mode, "concurrency": concurrency, "rpm": rpm, "tpm": tpm, "cache_dir": cache_dir,
            "use_cache": False if no_cache else None, "repeat": repeat, "timeout": timeout,
            "max_retries": max_retries, "max_outage": max_outage, "transport": transport_choice(transport)}


def transport_choice(transport: str | None) -> str | None:
    """``--transport``, checked against the openai backend's transports."""
    from .backends.openai_backend import TRANSPORTS

    if transport is not None and transport not in TRANSPORTS:
        raise RubrickitError(f"--transport {transport!r}: use {' or '.join(TRANSPORTS)}")
    return transport


@app.command()
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
               **_judge_options(mode, concurrency, rpm, tpm, cache_dir, no_cache, repeat, timeout, max_retries,
                                max_outage, transport))


@app.command()
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
               **_judge_options(mode, concurrency, rpm, tpm, cache_dir, no_cache, repeat, timeout, max_retries,
                                max_outage, transport))


def _run_files(local: Callable[..., Any], remote: str, scale: Any, *, kind: str, rubric: Any, data: Path,
               dry_run: bool, max_error_rate: float, **arguments: Any) -> None:
    """Run ``score``/``compare`` on the local engine (dry runs always) or on Ray, then render and judge the errors."""
    run: Callable[..., Any] = functools.partial(local, dry_run=dry_run)
    if scale is not None and not dry_run:
        from .integrations import ray

        run = functools.partial(getattr(ray, remote), ray_options=scale)
    result = run(rubric, data, **arguments)
    if result.empty_input:
        return  # --allow-empty and no rows: warned, nothing judged or written
    render.run_result(result, kind=kind)
    result.raise_for_errors(max_error_rate)


def _split_csv(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def parse_mapping(values: list[str] | None) -> dict[str, str] | None:
    """``["prompt=question", ...]`` → ``{"prompt": "question"}``."""
    mapping: dict[str, str] = {}
    for value in values or []:
        field, sep, column = value.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise RubrickitError(f"--map {value!r}: write FIELD=COLUMN, e.g. --map prompt=question")
        mapping[field.strip()] = column.strip()
    return mapping or None


# Commands of the later stages live in their own modules; importing them registers them on ``app``.
from . import cli_eval, cli_generate, cli_refine, cli_rl  # noqa: E402

app.add_typer(cli_generate.generate_app, name="generate")
_ = (cli_eval, cli_refine, cli_rl)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
