"""``rubrickit serve`` and ``rubrickit rank`` (registered on the main app by :mod:`rubrickit.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _render as render
from .cli import (
    AllowEmptyOpt,
    BaseUrlOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    ForceOpt,
    JudgeOpt,
    MapOpt,
    MaxErrorRateOpt,
    MaxOutageOpt,
    MaxRetriesOpt,
    ModeOpt,
    NoCacheOpt,
    OutOpt,
    ResumeOpt,
    RpmOpt,
    TimeoutOpt,
    TpmOpt,
    _judge_options,
    app,
    handled,
    parse_mapping,
)
from .errors import RubrickitError

# --------------------------------------------------------------------------- rank (best-of-N)


@app.command()
@handled
def rank(
    rubric: Annotated[Path, typer.Option("--rubric", "-r", help="A rubric (YAML) or a rubric set (JSONL).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL/CSV rows: prompt, responses (a list), id?, "
                                       "prompt_id?, reference?.")],
    judge: JudgeOpt = None, base_url: BaseUrlOpt = None, mode: ModeOpt = None, concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None, tpm: TpmOpt = None, out: OutOpt = None,
    pairs_out: Annotated[Path | None, typer.Option(
        "--pairs-out", help="Write chosen/rejected pairs in TRL's DPO format (prompt, chosen, rejected).")] = None,
    pair_mode: Annotated[str, typer.Option(
        "--pair-mode", help="best-worst (one pair per row) or all (every pair with a margin).")] = "best-worst",
    min_margin: Annotated[float, typer.Option(
        "--min-margin", min=0.0, help="A pair needs chosen reward − rejected reward above this (ties: 0).")] = 0.0,
    min_coverage: Annotated[float | None, typer.Option(
        "--min-coverage", min=0.0, max=1.0,
        help="Rank a candidate with error verdicts when its coverage reaches this (default: never).")] = None,
    cache_dir: CacheDirOpt = None, no_cache: NoCacheOpt = False, resume: ResumeOpt = False, force: ForceOpt = False,
    timeout: TimeoutOpt = None, max_retries: MaxRetriesOpt = None, max_outage: MaxOutageOpt = None,
    max_error_rate: MaxErrorRateOpt = 0.0, map: MapOpt = None, allow_empty: AllowEmptyOpt = False,  # noqa: A002
) -> None:
    """Best-of-N: score every candidate response of each row and rank them (optionally write DPO pairs)."""
    from .rewards.rank import rank_files

    if pair_mode not in ("best-worst", "all"):
        raise RubrickitError(f"--pair-mode {pair_mode!r}: use best-worst or all")
    result = rank_files(rubric, data, judge=judge, base_url=base_url, out=out, pairs_out=pairs_out,
                        pair_mode=pair_mode, min_margin=min_margin, resume=resume, force=force,  # type: ignore[arg-type]
                        mapping=parse_mapping(map), allow_empty=allow_empty, min_coverage=min_coverage,
                        **_judge_options(mode, concurrency, rpm, tpm, cache_dir, no_cache, None, timeout,
                                         max_retries, max_outage))
    if not result.records and not result.resumed:
        return  # --allow-empty and no rows
    render.rank_summary(result)
    render.accounting(result.accounting)
    result.raise_for_errors(max_error_rate)
