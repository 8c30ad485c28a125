"""``rubrickit refine`` and ``rubrickit weight`` (registered by :mod:`rubrickit.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rubrickit.cli import render_refine as render
from rubrickit.cli.options import (
    AllowEmptyOpt,
    AuthoringJudgeOpt,
    CacheDirOpt,
    ForceOpt,
    JudgeBaseUrlOpt,
    JudgeModeOpt,
    handled,
)
from rubrickit.refine import WEIGHT_METHODS, refine_file, weight_file

commands = typer.Typer()


InArg = Annotated[Path, typer.Argument(help="A rubric (YAML) or a rubric set (JSONL), refined per rubric.")]
RefinedOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output rubric (YAML) or rubric set (JSONL).")]
VerdictsOpt = Annotated[Path | None, typer.Option("--verdicts", help="Precomputed score records (JSONL); pair "
                                                  "responses are items <pair id>/A and <pair id>/B.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")]


@commands.command()
@handled
def refine(
    source: InArg, out: RefinedOutOpt = None,
    dedup: Annotated[bool, typer.Option("--dedup", help="Remove near-duplicate criteria (embedding cosine).")] = False,
    dedup_threshold: Annotated[float, typer.Option("--dedup-threshold", help="Cosine at or above which two criteria "
                                                   "are duplicates.")] = 0.9,
    llm_overlap: Annotated[str | None, typer.Option("--llm-overlap", help="Confirm duplicates with this model "
                                                    "(spec, or 'embedded'): >= 70% overlap or opposite.")] = None,
    embedding_model: Annotated[str | None, typer.Option("--embedding-model", help="sentence-transformers model "
                                                        "folder (default: bundled all-MiniLM-L6-v2).")] = None,
    filter_consistency: Annotated[Path | None, typer.Option("--filter-consistency", metavar="PAIRS", help="Labelled "
                                  "pairs: drop rubrics/criteria that do not recover the labels.")] = None,
    filter_misaligned: Annotated[Path | None, typer.Option("--filter-misaligned", metavar="PAIRS", help="Labelled "
                                 "pairs: drop criteria whose edge mean(a - b) <= --min-edge.")] = None,
    filter_nondiscriminative: Annotated[Path | None, typer.Option("--filter-nondiscriminative", metavar="RESPONSES",
                                        help="Response pool: drop criteria met by all or none.")] = None,
    min_edge: Annotated[float, typer.Option("--min-edge", help="Misalignment/consistency edge threshold.")] = 0.0,
    select: Annotated[str | None, typer.Option("--select", help="Core-set selection: mcr (coding rate).")] = None,
    max_criteria: Annotated[int | None, typer.Option("--max-criteria", help="Size cap of the core set.")] = None,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Coding-rate distortion epsilon.")] = 0.3,
    min_gain: Annotated[float, typer.Option("--min-gain", help="Stop when the gain stays below this twice.")] = 0.002,
    structure: Annotated[str | None, typer.Option("--structure", help="themes: Theme-Tips structuring.")] = None,
    judge: AuthoringJudgeOpt = None, judge_base_url: JudgeBaseUrlOpt = None, judge_mode: JudgeModeOpt = None,
    verdicts: VerdictsOpt = None, cache_dir: CacheDirOpt = None, dry_run: DryOpt = False, force: ForceOpt = False,
    allow_empty: AllowEmptyOpt = False,
) -> None:
    """Filter, select and structure criteria; every step says what it removed and why."""
    result = refine_file(
        source, out, force=force, dry_run=dry_run, consistency=filter_consistency, misaligned=filter_misaligned,
        nondiscriminative=filter_nondiscriminative, verdicts=verdicts, judge=judge, judge_base_url=judge_base_url,
        judge_mode=judge_mode, llm_overlap=llm_overlap, cache_dir=cache_dir, dedup=dedup,
        dedup_threshold=dedup_threshold, embedding_model=embedding_model, min_edge=min_edge, select=select,
        max_criteria=max_criteria, epsilon=epsilon, min_gain=min_gain, structure=structure, allow_empty=allow_empty)
    if result.empty_input:
        return  # --allow-empty and an empty input: warned, nothing done or written
    render.refinement(result, dry_run=dry_run)


@commands.command()
@handled
def weight(
    source: InArg, out: RefinedOutOpt = None,
    method: Annotated[str, typer.Option("--method", help=f"{' | '.join(WEIGHT_METHODS)}.")] = "uniform",
    verdicts: VerdictsOpt = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="Labelled pairs (learned; whitened judges their "
                                               "responses when not in --verdicts).")] = None,
    responses: Annotated[Path | None, typer.Option("--responses", help="Responses to judge for whitened "
                                                   "weights.")] = None,
    map_name: Annotated[str | None, typer.Option("--map", help="Category map: rar | openrs (default: by the "
                                                 "categories found).")] = None,
    ridge: Annotated[float, typer.Option("--ridge", help="Whitened: ridge added to the covariance.")] = 0.1,
    l2: Annotated[float, typer.Option("--l2", help="Learned: L2 penalty.")] = 1.0,
    folds: Annotated[int, typer.Option("--folds", help="Learned: k of the held-out accuracy.")] = 5,
    judge: AuthoringJudgeOpt = None, judge_base_url: JudgeBaseUrlOpt = None, judge_mode: JudgeModeOpt = None,
    cache_dir: CacheDirOpt = None, dry_run: DryOpt = False, force: ForceOpt = False,
    allow_empty: AllowEmptyOpt = False,
) -> None:
    """Set criterion weights: uniform, category map, whitened (from verdicts) or learned (from labelled pairs)."""
    extra = {"ridge": ridge} if method == "whitened" else {"l2": l2, "folds": folds} if method == "learned" else {}
    result = weight_file(source, out, method=method, force=force, dry_run=dry_run, verdicts=verdicts, pairs=pairs,
                         responses=responses, map_name=map_name, judge=judge, judge_base_url=judge_base_url,
                         judge_mode=judge_mode, cache_dir=cache_dir, allow_empty=allow_empty, **extra)
    if result.empty_input:
        return  # --allow-empty and an empty input: warned, nothing done or written
    render.refinement(result, dry_run=dry_run, command="weight")
