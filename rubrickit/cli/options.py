"""Every option and argument shared by commands, defined once, and the helpers that read them.

``handled`` is the CLI's one error handler: a rubrickit error becomes one ``error:`` line and its exit status
(tracebacks only with ``--debug``, never with locals, which may hold keys).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from rubrickit import RubrickitError
from rubrickit.cli import render

debug_state = {"debug": False}
"""Whether --debug was given (set by the app's callback)."""
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
            if debug_state["debug"]:
                raise
            render.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_state["debug"]:
                raise
            if resumable:
                render.error("interrupted: every record finished so far is in the output file; rerun the same "
                             "command with --resume to continue")
            else:
                render.error("interrupted before the command finished; run it again (answers already received are "
                             "in the judge cache and are not asked again)")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def with_options(group: Callable[..., Any], *, into: str) -> Callable[[F], F]:
    """Give a command every option of ``group``, a function whose parameters are typer options: the command's
    parameter ``into`` is replaced by them in its signature (so in ``--help``, in that place), and the command is
    called with ``into=group(**their values)``. Stack it for several groups. (inspect_ai's ``common_options`` does
    the same for click.)"""
    shared = list(inspect.signature(group, eval_str=True).parameters.values())
    names = [param.name for param in shared]

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())
        where = [param.name for param in own].index(into)
        clash = set(names) & {param.name for param in own}
        if clash:
            raise TypeError(f"{command.__name__}: options {sorted(clash)} are both its own and {group.__name__}'s")
        parameters = own[:where] + shared + own[where + 1:]

        @functools.wraps(command)
        def wrapper(**values: Any) -> Any:
            bundle = group(**{name: values.pop(name) for name in names})
            return command(**values, **{into: bundle})

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {param.name: param.annotation for param in parameters}
        wrapper.__annotations__["return"] = signature.return_annotation
        return wrapper  # type: ignore[return-value]

    return decorate


PathsArg = Annotated[list[Path], typer.Argument(help="Rubric files or directories (searched recursively).")]
AllowEmptyOpt = Annotated[bool, typer.Option("--allow-empty", help="An input file with no rows is a warning and "
                                             "nothing is done (exit 0), not an error.")]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN: read FIELD from COLUMN (repeat).")]

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
    from rubrickit.integrations.ray import RayOptions

    return RayOptions(address=address, actors=actors, num_cpus=cpus, num_gpus=gpus)




def transport_choice(transport: str | None) -> str | None:
    """``--transport``, checked against the openai backend's transports."""
    from rubrickit.backends.openai_backend import TRANSPORTS

    if transport is not None and transport not in TRANSPORTS:
        raise RubrickitError(f"--transport {transport!r}: use {' or '.join(TRANSPORTS)}")
    return transport


def split_csv(values: list[str] | None) -> list[str]:
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


# Options of the authoring commands (generate, refine, weight): their judge checks candidates rather than scoring data.
AuthoringJudgeOpt = Annotated[
    str | None,
    typer.Option("--judge", "-j", envvar="RUBRICKIT_JUDGE",
                 help="Spec of the judge that checks candidates: verdicts, comparisons, themes (default: embedded)."),
]
JudgeBaseUrlOpt = Annotated[
    str | None, typer.Option("--judge-base-url", help="OpenAI-compatible server for the judge.")
]
JudgeModeOpt = Annotated[
    str | None, typer.Option("--judge-mode", help="Judge mode for verdicts and pointwise checks (per_criterion, "
                                                  "logprob, …).")
]


# --------------------------------------------------------------------------- option groups (see with_options)


def judge_call(judge: JudgeOpt = None, base_url: BaseUrlOpt = None, mode: ModeOpt = None,
               concurrency: ConcurrencyOpt = None, rpm: RpmOpt = None, tpm: TpmOpt = None,
               cache_dir: CacheDirOpt = None, no_cache: NoCacheOpt = False, timeout: TimeoutOpt = None,
               max_retries: MaxRetriesOpt = None, max_outage: MaxOutageOpt = None,
               transport: TransportOpt = None) -> dict[str, Any]:
    """The judge and how it is called (score, compare, rank, eval, serve): keyword arguments of the run
    functions (``None`` means the judge's default)."""
    return {"judge": judge, "base_url": base_url, "mode": mode, "concurrency": concurrency, "rpm": rpm, "tpm": tpm,
            "cache_dir": cache_dir, "use_cache": False if no_cache else None, "timeout": timeout,
            "max_retries": max_retries, "max_outage": max_outage, "transport": transport_choice(transport)}


@dataclass(frozen=True)
class RunFiles:
    """Where a judging run writes and how it treats its inputs and errors (score, compare, rank)."""

    arguments: dict[str, Any]
    """``out``, ``resume``, ``force``, ``mapping``, ``allow_empty`` of the run functions."""
    max_error_rate: float


def run_files(out: OutOpt = None, resume: ResumeOpt = False, force: ForceOpt = False,
              max_error_rate: MaxErrorRateOpt = 0.0, map: MapOpt = None,  # noqa: A002
              allow_empty: AllowEmptyOpt = False) -> RunFiles:
    """The output and input options of a judging run."""
    return RunFiles({"out": out, "resume": resume, "force": force, "mapping": parse_mapping(map),
                     "allow_empty": allow_empty}, max_error_rate)


def ray_scale(engine: EngineOpt = "local", ray_address: RayAddressOpt = None, actors: ActorsOpt = 2,
              actor_cpus: ActorCpusOpt = None, actor_gpus: ActorGpusOpt = None) -> Any:
    """``--engine`` and the Ray pool's options: see :func:`ray_options`."""
    return ray_options(engine, ray_address, actors, actor_cpus, actor_gpus)
