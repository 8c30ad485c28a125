"""Rubric generation: the research pipelines of DESIGN §7, one module per method.

``generate(method, data, ...)`` is what ``rubrickit generate METHOD`` calls: it reads the data into prompt groups
(:mod:`rubrickit.data.preferences`), builds the generator and judge models (both default to the embedded model; they
may differ), runs the method, and writes the rubrics (a rubric set JSONL for per-prompt rubrics, YAML for a general
rubric) with full provenance.

Each method module exposes ``async def agenerate(groups, ctx, *, source, **options) -> GenerationResult``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rubrickit.data.preferences import PromptGroup, file_digest, groups_from_pairs, load_groups

from ..errors import RubrickitError
from .common import GenContext, GenerationFailed, GenerationResult, Generator, Stats

__all__ = [
    "METHODS",
    "GenContext",
    "GenerationFailed",
    "GenerationResult",
    "Generator",
    "PromptGroup",
    "Stats",
    "agenerate",
    "generate",
    "groups_from_pairs",
    "load_groups",
]

METHODS: dict[str, str] = {
    "contrastive": "OpenRubrics contrastive rubric generation (+ CDRRM --diagnose)",
    "per": "Auto-Rubric propose-evaluate-revise + coding-rate core set + Theme-Tips (one general rubric)",
    "decompose": "RRD recursive decomposition with misalignment/redundancy filters and whitened weights",
    "reference": "Rubrics as Rewards: reference answer -> 7-20 weighted items with pitfalls",
    "tail": "Chasing the Tail: refine a rubric to separate the top two strong responses",
}
"""Method name → one-line description."""


def _module(method: str) -> Any:
    if method not in METHODS:
        import difflib

        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RubrickitError(f"unknown generation method {method!r}{hint} (methods: {', '.join(METHODS)})")
    return importlib.import_module(f"{__name__}.{method}")


async def agenerate(method: str, groups: Sequence[PromptGroup], *, generator: Any, judge: Any,
                    source: str | None = None, compare: str = "pairwise", temperature: float = 0.7,
                    max_tokens: int = 1024, reasks: int = 1, embedding_model: str | None = None,
                    **options: Any) -> GenerationResult:
    """Run ``method`` on prompt groups with ready :class:`~rubrickit.judge.engine.Judge` objects (the caller owns
    and closes them). ``options`` are the method's own parameters."""
    module = _module(method)
    if compare not in ("pairwise", "pointwise"):
        raise RubrickitError(f"compare must be 'pairwise' or 'pointwise', got {compare!r}")
    ctx = GenContext(generator=Generator(generator, generator.library, temperature=temperature,
                                         max_tokens=max_tokens, reasks=reasks),
                     judge=judge, compare=compare, embedding_model=embedding_model)
    try:
        return await module.agenerate(list(groups), ctx, source=source, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise RubrickitError(f"{method}: {error}".replace("agenerate() ", "")) from None
        raise


def generate(method: str, data: str | Path | Sequence[PromptGroup], *, out: str | Path | None = None,
             force: bool = False, generator: str | Any | None = None, judge: str | Any | None = None,
             generator_base_url: str | None = None, judge_base_url: str | None = None,
             judge_mode: str | None = None, mapping: Mapping[str, str] | None = None, limit: int | None = None,
             cache_dir: str | Path | None = None, concurrency: int = 8, per_pair_out: str | Path | None = None,
             allow_empty: bool = False, **options: Any) -> GenerationResult:
    """Generate rubrics with ``method`` from a data file (or prompt groups) and write them to ``out``.

    ``generator``/``judge`` are spec strings (``None``: the embedded model) or backends; the same spec shares one
    model. Other keyword arguments are :func:`agenerate`'s and the method's options. A data file with no rows is
    an error unless ``allow_empty`` (then nothing is generated or written; ``extra["empty_input"]`` is true).
    """
    from ..judge.engine import Judge

    _module(method)
    if isinstance(data, (str, Path)):
        groups = load_groups(data, mapping=mapping, limit=limit, allow_empty=allow_empty)
        if not groups and allow_empty:
            return GenerationResult(method=method, rubrics=[], extra={"empty_input": True})
        source = f"{Path(data).as_posix()}#{file_digest(data)}"
    else:
        groups = list(data)[:limit] if limit is not None else list(data)
        source = None
    if out is not None and Path(out).exists() and not force:
        from ..errors import OutputExistsError

        raise OutputExistsError(f"{out}: already exists; pass --force to overwrite it, or choose another --out")
    if per_pair_out is not None and Path(per_pair_out).exists() and not force:
        from ..errors import OutputExistsError

        raise OutputExistsError(f"{per_pair_out}: already exists; pass --force to overwrite it")
    common = {"cache_dir": Path(cache_dir) if cache_dir else None, "concurrency": concurrency}
    gen_judge = Judge(generator, base_url=generator_base_url, **common)
    same = (judge == generator and judge_base_url == generator_base_url and judge_mode is None)
    eval_judge = gen_judge if same else Judge(judge, base_url=judge_base_url,
                                              **({"mode": judge_mode} if judge_mode else {}), **common)

    async def run() -> GenerationResult:
        try:
            return await agenerate(method, groups, generator=gen_judge, judge=eval_judge, source=source, **options)
        finally:
            await gen_judge.aclose()
            if eval_judge is not gen_judge:
                await eval_judge.aclose()

    result = asyncio.run(run())
    if out is not None:
        from .common import write_result

        write_result(result, out, force=force)
    if per_pair_out is not None and result.extra.get("per_pair_rubrics"):
        from rubrickit.rubric.files import save_rubric_set

        save_rubric_set(result.extra["per_pair_rubrics"], per_pair_out, overwrite=force)
    return result
