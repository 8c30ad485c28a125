"""``rubrickit generate METHOD``: one command per generation method, all calling :func:`rubrickit.generate.generate`.

Registered by :mod:`rubrickit.cli.app`; the options every method takes are one group, :func:`generation`, given to
each command by :func:`rubrickit.cli.options.with_options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rubrickit.cli import render as render
from rubrickit.cli.options import (
    AllowEmptyOpt,
    AuthoringJudgeOpt,
    CacheDirOpt,
    ConcurrencyOpt,
    ForceOpt,
    JudgeBaseUrlOpt,
    JudgeModeOpt,
    MapOpt,
    handled,
    parse_mapping,
    with_options,
)
from rubrickit.generate import METHODS, generate

generate_app = typer.Typer(name="generate", help="Generate rubrics from preference data or references (DESIGN §7).",
                           no_args_is_help=True)

DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Pairs (prompt, response_a, response_b, label), "
                                       "chosen/rejected, ranked `responses` lists, prompt+reference; JSONL/CSV/HF.")]
GeneratorOpt = Annotated[str | None, typer.Option("--generator", "-g", envvar="RUBRICKIT_GENERATOR",
                                                  help="Spec of the model that writes rubrics (default: embedded).")]
RubricOutOpt = Annotated[Path, typer.Option("--out", "-o",
                                            help="Output: *.rubrics.jsonl (per prompt) or *.yaml (general).")]
GenBaseUrlOpt = Annotated[str | None, typer.Option("--generator-base-url", help="OpenAI-compatible server for "
                                                   "the generator.")]
CompareOpt = Annotated[str, typer.Option("--compare", help="How rubrics judge labelled pairs: pairwise (both orders) "
                                         "or pointwise (score both, compare rewards).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Use the first N prompts only.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Generator sampling temperature.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Generator reply budget.")]
EmbeddingOpt = Annotated[str | None, typer.Option("--embedding-model", help="sentence-transformers model folder "
                                                  "(default: bundled all-MiniLM-L6-v2).")]


def generation(data: DataOpt, out: RubricOutOpt, generator: GeneratorOpt = None, judge: AuthoringJudgeOpt = None,
               generator_base_url: GenBaseUrlOpt = None, judge_base_url: JudgeBaseUrlOpt = None,
               judge_mode: JudgeModeOpt = None, compare: CompareOpt = "pairwise", map: MapOpt = None,  # noqa: A002
               limit: LimitOpt = None, cache_dir: CacheDirOpt = None, concurrency: ConcurrencyOpt = 8,
               temperature: TemperatureOpt = 0.7, max_tokens: MaxTokensOpt = 1024, force: ForceOpt = False,
               allow_empty: AllowEmptyOpt = False) -> dict[str, Any]:
    """The options every generation method takes: keyword arguments of :func:`rubrickit.generate.generate`."""
    return dict(data=data, out=out, generator=generator, judge=judge, generator_base_url=generator_base_url,
                judge_base_url=judge_base_url, judge_mode=judge_mode, compare=compare, mapping=parse_mapping(map),
                limit=limit, cache_dir=cache_dir, concurrency=concurrency, temperature=temperature,
                max_tokens=max_tokens, force=force, allow_empty=allow_empty)


def _run(method: str, common: dict[str, Any], **options: Any) -> None:
    common = dict(common)
    data, out = common.pop("data"), common.pop("out")
    result = generate(method, data, out=out, **common, **options)
    if result.extra.get("empty_input"):
        return  # --allow-empty and no rows: warned, nothing generated or written
    render.generation(result, out, extra_outputs=[str(p) for p in [options.get("per_pair_out")] if p])


@generate_app.command("contrastive", help=METHODS["contrastive"])
@handled
@with_options(generation, into="common")
def contrastive(
    common: dict[str, Any],
    max_tries: Annotated[int, typer.Option("--max-tries", help="Rejection-sampling bound per prompt.")] = 3,
    keep_inconsistent: Annotated[bool, typer.Option("--keep-inconsistent", help="Keep the last attempt of a prompt "
                                                    "that never recovered its labels (marked in provenance).")] = False,
    diagnose: Annotated[bool, typer.Option("--diagnose", help="CDRRM: diagnose each response with quoted evidence, "
                                           "then synthesise must/forbid rules and principles.")] = False,
    min_accuracy: Annotated[float, typer.Option("--min-accuracy", help="Keep when accuracy over the prompt's pairs "
                                                "is at least this (and the pair itself is right).")] = 0.5,
) -> None:
    """OpenRubrics contrastive rubric generation (hard rules + principles, label-consistency filter)."""
    _run("contrastive", common,
         max_tries=max_tries, keep_inconsistent=keep_inconsistent, diagnose=diagnose, min_accuracy=min_accuracy)


@generate_app.command("per", help=METHODS["per"])
@handled
@with_options(generation, into="common")
def per(
    common: dict[str, Any], embedding_model: EmbeddingOpt = None,
    max_criteria: Annotated[int, typer.Option("--max-criteria", help="N: criteria proposed per pair.")] = 5,
    max_rounds: Annotated[int, typer.Option("--max-rounds", help="Evaluate-revise rounds per pair.")] = 5,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Coding-rate distortion ε.")] = 0.3,
    min_gain: Annotated[float, typer.Option("--min-gain", help="Stop when the coding-rate gain stays below this.")]
    = 0.002,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs per batch of the query-agnostic stage.")] = 10,
    max_core: Annotated[int | None, typer.Option("--max-core", help="Cap on the core set size.")] = None,
    themes: Annotated[int, typer.Option("--themes", help="At most this many themes.")] = 5,
    tips: Annotated[int, typer.Option("--tips", help="At most this many tips per theme.")] = 5,
    per_pair_out: Annotated[Path | None, typer.Option("--per-pair-out", help="Also write the per-pair rubrics "
                                                      "(rubric set JSONL).")] = None,
) -> None:
    """Auto-Rubric: propose-evaluate-revise per pair, coding-rate core set, Theme-Tips."""
    _run("per", common,
         embedding_model=embedding_model, max_criteria=max_criteria, max_rounds=max_rounds, epsilon=epsilon,
         min_gain=min_gain, batch_size=batch_size, max_core=max_core, themes=themes, tips=tips,
         per_pair_out=per_pair_out)


@generate_app.command("decompose", help=METHODS["decompose"])
@handled
@with_options(generation, into="common")
def decompose(
    common: dict[str, Any], embedding_model: EmbeddingOpt = None,
    n: Annotated[int, typer.Option("--n", help="Decompose a rubric satisfied by more than n responses.")] = 2,
    max_depth: Annotated[int, typer.Option("--max-depth", help="Maximum decomposition depth.")] = 3,
    max_rejections: Annotated[int, typer.Option("--max-rejections", help="Stop after this many rejections.")] = 15,
    overlap: Annotated[float, typer.Option("--overlap", help="Reject a rubric overlapping an accepted one at least "
                                           "this much.")] = 0.7,
    policy: Annotated[list[str] | None, typer.Option("--policy", help="Also sample responses from this model spec "
                                                     "(repeat).")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Responses sampled per --policy model.")] = 4,
    ridge: Annotated[float, typer.Option("--ridge", help="Ridge added to Σ for whitened weights.")] = 0.1,
) -> None:
    """RRD: recursive decomposition, misalignment/redundancy rejection, whitened-uniform weights."""
    _run("decompose", common,
         embedding_model=embedding_model, n=n, max_depth=max_depth, max_rejections=max_rejections, overlap=overlap,
         policy=policy or [], samples=samples, ridge=ridge)


@generate_app.command("reference", help=METHODS["reference"])
@handled
@with_options(generation, into="common")
def reference(
    common: dict[str, Any],
    min_items: Annotated[int, typer.Option("--min-items", help="Fewest items per rubric.")] = 7,
    max_items: Annotated[int, typer.Option("--max-items", help="Most items per rubric.")] = 20,
    max_tries: Annotated[int, typer.Option("--max-tries", help="Samples per prompt before skipping it.")] = 3,
) -> None:
    """Rubrics as Rewards: reference-guided checklists with categories, weights and explicit pitfalls."""
    _run("reference", common,
         min_items=min_items, max_items=max_items, max_tries=max_tries)


@generate_app.command("tail", help=METHODS["tail"])
@handled
@with_options(generation, into="common")
def tail(
    common: dict[str, Any],
    rubric: Annotated[Path | None, typer.Option("--rubric", "-r", help="Starting rubric or rubric set (default: "
                                                "proposed from each prompt).")] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="Refinement rounds.")] = 3,
) -> None:
    """Chasing the Tail: rewrite the rubric until it separates the top two strong responses."""
    _run("tail", common,
         rubric=rubric, rounds=rounds)
