"""``rubrickit serve`` and ``rubrickit rank`` (registered by :mod:`rubrickit.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rubrickit.cli import render as render
from rubrickit.cli.options import RunFiles, handled, judge_call, run_files, with_options
from rubrickit.errors import RubrickitError

# --------------------------------------------------------------------------- rank (best-of-N)


commands = typer.Typer()


@commands.command()
@handled
@with_options(judge_call, into="call")
@with_options(run_files, into="files")
def rank(
    rubric: Annotated[Path, typer.Option("--rubric", "-r", help="A rubric (YAML) or a rubric set (JSONL).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL/CSV rows: prompt, responses (a list), id?, "
                                       "prompt_id?, reference?.")],
    call: dict[str, Any], files: RunFiles,
    pairs_out: Annotated[Path | None, typer.Option(
        "--pairs-out", help="Write chosen/rejected pairs in TRL's DPO format (prompt, chosen, rejected).")] = None,
    pair_mode: Annotated[str, typer.Option(
        "--pair-mode", help="best-worst (one pair per row) or all (every pair with a margin).")] = "best-worst",
    min_margin: Annotated[float, typer.Option(
        "--min-margin", min=0.0, help="A pair needs chosen reward − rejected reward above this (ties: 0).")] = 0.0,
    min_coverage: Annotated[float | None, typer.Option(
        "--min-coverage", min=0.0, max=1.0,
        help="Rank a candidate with error verdicts when its coverage reaches this (default: never).")] = None,
) -> None:
    """Best-of-N: score every candidate response of each row and rank them (optionally write DPO pairs)."""
    from rubrickit.rewards.rank import rank_files

    if pair_mode not in ("best-worst", "all"):
        raise RubrickitError(f"--pair-mode {pair_mode!r}: use best-worst or all")
    result = rank_files(rubric, data, pairs_out=pairs_out, pair_mode=pair_mode,  # type: ignore[arg-type]
                        min_margin=min_margin, min_coverage=min_coverage, **files.arguments, **call)
    if not result.records and not result.resumed:
        return  # --allow-empty and no rows
    render.rank_summary(result)
    render.accounting(result.accounting)
    result.raise_for_errors(files.max_error_rate)


# --------------------------------------------------------------------------- serve (the HTTP reward server)


@commands.command()
@handled
@with_options(judge_call, into="call")
def serve(
    call: dict[str, Any],
    rubric: Annotated[Path | None, typer.Option(
        "--rubric", "-r", help="A rubric (YAML) or a rubric set (JSONL, picked by each label's prompt_id); omit it "
        "when every label carries its rubric.")] = None,
    host: Annotated[str, typer.Option("--host", envvar="RUBRICKIT_SERVE_HOST",
                                      help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", envvar="RUBRICKIT_SERVE_PORT", min=0, max=65535,
                                      help="Port (0: any free one; the log says which).")] = 8000,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="RUBRICKIT_SERVE_TOKEN", show_default=False,
        help="Require 'Authorization: Bearer TOKEN' or ?token=TOKEN (prefer the variable: a flag shows in ps).")
    ] = None,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", min=1, help="Most samples per scorer batch (a batch answers when its last sample is "
        "scored: keep it small).")] = 8,
    batch_window_ms: Annotated[float, typer.Option(
        "--batch-window-ms", min=0.0, help="How long a batch waits for more requests after its first.")] = 10.0,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", min=1, help="Most samples waiting for a batch; beyond it: 503 with Retry-After.")] = 4096,
    max_batches: Annotated[int | None, typer.Option(
        "--max-batches", min=1, help="Scorer batches in flight (default: enough for twice the judge concurrency "
        "in samples, at least 4).")] = None,
    on_error: Annotated[str, typer.Option(
        "--on-error", envvar="RUBRICKIT_ON_ERROR",
        help="Reward of a sample the judge could not score: none (JSON null; OpenRLHF stops on it), zero, a "
        "number, or raise (HTTP 500 for that request).")] = "none",
    min_coverage: Annotated[float | None, typer.Option(
        "--min-coverage", min=0.0, max=1.0,
        help="Score a sample with error verdicts when its coverage reaches this (default: never).")] = None,
    scale: Annotated[float, typer.Option("--scale", help="Reward = aggregate · scale + shift.")] = 1.0,
    shift: Annotated[float, typer.Option("--shift", help="See --scale.")] = 0.0,
    label_as: Annotated[str, typer.Option(
        "--label-as", help="A plain-string label is: auto (prompt_id with a rubric set, else reference), "
        "reference, prompt_id, rubric or ignore. JSON-object labels give their fields.")] = "auto",
    drop_system: Annotated[bool, typer.Option(
        "--drop-system", help="Leave the chat template's system messages out of what the judge sees.")] = False,
    end_token: Annotated[list[str] | None, typer.Option(
        "--end-token", help="Token stripped from the end of responses (repeat; replaces the built-in list).")
    ] = None,
    drain_timeout: Annotated[float, typer.Option(
        "--drain-timeout", min=1.0, help="Seconds a shutdown waits for admitted requests.")] = 180.0,
    workers: Annotated[int, typer.Option(
        "--workers", envvar="RUBRICKIT_SERVE_WORKERS", min=1,
        help="Server processes on the one port, each with its own judge client (concurrency, batching and queue "
        "are per worker); they share the judge cache.")] = 1,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve rubric rewards over HTTP for OpenRLHF (POST /get_reward) and any trainer that calls a URL."""
    from pydantic import ValidationError

    from rubrickit.integrations.openrlhf_protocol import END_TOKENS, RecoveryOptions
    from rubrickit.integrations.server import ServeOptions, build_scorer, setup_logging
    from rubrickit.integrations.server import serve as run_server
    from rubrickit.integrations.workers import serve_workers

    if label_as not in ("auto", "reference", "prompt_id", "rubric", "ignore"):
        raise RubrickitError(f"--label-as {label_as!r}: use auto, reference, prompt_id, rubric or ignore")
    setup_logging(log_level, token=token)
    recovery = RecoveryOptions(label_as=label_as, drop_system=drop_system,  # type: ignore[arg-type]
                               end_tokens=tuple(end_token) if end_token else END_TOKENS)
    try:
        options = ServeOptions(host=host, port=port, token=token, max_batch=max_batch, batch_window_ms=batch_window_ms,
                               max_queue=max_queue, max_batches=max_batches, on_error=on_error,
                               drain_timeout=drain_timeout, recovery=recovery)
    except ValidationError as exc:
        raise RubrickitError(f"--on-error {on_error!r}: {exc.errors()[0]['msg']}") from None
    scorer_args = {"rubric": rubric, "min_coverage": min_coverage, "scale": scale, "shift": shift, **call}
    if workers > 1:
        serve_workers(workers, options, log_level=log_level, **scorer_args)
    else:
        run_server(build_scorer(**scorer_args), options)
