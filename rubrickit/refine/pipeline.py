"""``rubrickit refine`` and ``rubrickit weight``: the refiners of DESIGN §8 applied to a rubric or a rubric set.

Refinement runs, per rubric, the steps asked for in this fixed order (each sees the previous one's result):

1. ``dedup`` — redundancy by embedding cosine, optionally confirmed by an LLM overlap check (:mod:`.dedup`);
2. ``consistency`` — label consistency on labelled pairs compared with the rubric in both orders (:mod:`.filters`);
3. ``misaligned`` — criterion edge μ_k = E[a_k − b_k | label] ≤ 0 on labelled pairs (:mod:`.filters`);
4. ``nondiscriminative`` — met by all or none of a response pool (:mod:`.filters`);
5. ``select`` — coding-rate (MCR²) core set with a size cap and the gain stopping rule (:mod:`.dedup`);
6. ``structure`` — Theme-Tips (≤ 5 themes × ≤ 5 tips) written by the judge model (:mod:`.themes`).

Verdicts (steps 3–4) come from precomputed score records (``verdicts``) where they exist and from the judge
otherwise; a pair's responses are the items ``<pair id>/A`` and ``<pair id>/B``. In a rubric set, each rubric gets
the pairs and responses of its ``prompt_id`` (rows without one are matched by the prompt's stable hash, as the
generators do); a general rubric gets them all. Every step's report is recorded in ``provenance.history``; a step
that would remove every criterion leaves the rubric unchanged and says so. Nothing is written on a dry run, and an
existing output is never overwritten without ``force``.

Weighting (:func:`weight_file`) is separate: uniform, category, whitened (from verdicts) or learned (from labelled
pairs), see :mod:`.weights`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rubrickit.data.items import DataItem, PairItem, load_items, load_pairs, stable_id

from ..errors import OutputExistsError, RubrickitError
from ..rubric import Rubric
from .filters import StepReport, apply_report, consistency_filter, misalignment_filter, nondiscriminative_filter
from .verdicts import VerdictStore, labelled_pairs, pair_items

__all__ = ["RefineResult", "WEIGHT_METHODS", "arefine", "aweight", "refine_file", "weight_file"]

WEIGHT_METHODS = ("uniform", "category", "whitened", "learned")
"""The weighting methods of ``rubrickit weight``."""


@dataclass
class RefineResult:
    """What refinement (or weighting) did."""

    rubrics: list[Rubric]
    """The refined rubrics (rubrics dropped by label consistency are not here)."""
    reports: list[StepReport] = field(default_factory=list)
    """Every step on every rubric, in order."""
    dropped: list[str] = field(default_factory=list)
    """Ids of rubrics dropped from a rubric set."""
    is_set: bool = False
    """True when the input was a rubric set (written back as JSONL)."""
    written: Path | None = None
    """The output file (``None`` on a dry run)."""
    judged_items: int = 0
    """Responses judged now (not found in the verdicts given)."""
    judge: str | None = None
    """Spec of the judge used, when one was."""
    empty_input: bool = False
    """A data or verdicts file had no rows (``allow_empty=True``): nothing was done or written."""

    def removed_count(self) -> int:
        """Criteria removed over all steps and rubrics."""
        return sum(len(r.removed) for r in self.reports)


class _Lazy:
    """A judge (or generator) made on first use, so steps that find every verdict stored never load a model."""

    def __init__(self, make: Callable[[], Any] | None, value: Any = None):
        self._make = make
        self.value = value

    def get(self) -> Any:
        if self.value is None:
            if self._make is None:
                raise RubrickitError("this step needs a judge; pass --judge (or precomputed --verdicts)")
            self.value = self._make()
        return self.value


def _prompt_key(row: PairItem | DataItem) -> str:
    return row.prompt_id or stable_id(row.prompt)


def _for_rubric(rubric: Rubric, rows: Sequence[Any], in_set: bool) -> list[Any]:
    if not in_set and (rubric.prompt_id is None or rubric.scope == "general"):
        return list(rows)
    return [row for row in rows if _prompt_key(row) == rubric.prompt_id]


def _as_judge(value: Any) -> _Lazy:
    return value if isinstance(value, _Lazy) else _Lazy(None, value)


async def _verdicts(store: VerdictStore, judge: _Lazy, rubric: Rubric, items: list[dict[str, Any]]) -> None:
    wanted = {c.id for c in rubric.criteria}
    ids = [str(item["id"]) for item in items]
    if all(wanted <= set(store.cells.get((rubric.id, i), {})) for i in ids):
        return
    await store.ajudge(judge.get(), rubric, items)


async def _refine_one(rubric: Rubric, *, in_set: bool, opts: dict[str, Any], judge: _Lazy, overlap: _Lazy,
                      store: VerdictStore, consistency_pairs: Sequence[PairItem] | None,
                      misaligned_pairs: Sequence[PairItem] | None, pool: Sequence[DataItem] | None
                      ) -> tuple[Rubric | None, list[StepReport]]:
    from . import dedup as dd

    reports: list[StepReport] = []

    def done(report: StepReport, current: Rubric) -> Rubric:
        report.parameters.update(opts.get("sources", {}).get(report.step, {}))
        reports.append(report)
        return apply_report(current, report)

    if opts.get("dedup"):
        report = await dd.adedup(rubric, threshold=opts["dedup_threshold"], embedding_model=opts["embedding_model"],
                                 overlap=overlap.get() if opts.get("llm_overlap") else None)
        rubric = done(report, rubric)
    if consistency_pairs is not None:
        pairs = [p for p in _for_rubric(rubric, consistency_pairs, in_set) if p.label in ("A", "B")]
        j = judge.get() if pairs else None
        records = list(await asyncio.gather(*(j.acompare(rubric, p) for p in pairs))) if j else []
        report = consistency_filter(rubric, records, min_accuracy=opts["min_accuracy"], min_edge=opts["min_edge"],
                                    in_set=in_set)
        report.parameters["judge"] = j.spec if j else None
        if report.drop_rubric:
            reports.append(report)
            return None, reports
        rubric = done(report, rubric)
    if misaligned_pairs is not None:
        pairs = _for_rubric(rubric, misaligned_pairs, in_set)
        labelled = labelled_pairs(pairs)
        await _verdicts(store, judge, rubric, pair_items([p for p in pairs if p.label in ("A", "B")]))
        better, worse = store.pair_matrices(rubric, labelled, soft=opts["soft"])
        report = misalignment_filter(rubric, better - worse, min_edge=opts["min_edge"])
        rubric = done(report, rubric)
    if pool is not None:
        items = [item.model_dump() for item in _for_rubric(rubric, pool, in_set)]
        await _verdicts(store, judge, rubric, items)
        report = nondiscriminative_filter(rubric, store.matrix(rubric, [str(i["id"]) for i in items], soft=False))
        rubric = done(report, rubric)
    if opts.get("select"):
        report = dd.select_core(rubric, epsilon=opts["epsilon"], max_size=opts["max_criteria"],
                                min_gain=opts["min_gain"], embedding_model=opts["embedding_model"])
        rubric = done(report, rubric)
    if opts.get("structure"):
        rubric = done(await _structure(rubric, judge, opts), rubric)
    return rubric, reports


async def _structure(rubric: Rubric, judge: _Lazy, opts: dict[str, Any]) -> StepReport:
    from rubrickit.judge.generator import GenerationFailed, Generator, Stats, criterion_slug

    from .themes import structure_themes

    model = judge.get()
    generator = Generator(model, model.library, temperature=0.0, max_tokens=opts.get("max_tokens", 1024))
    report = StepReport("structure", rubric.id, parameters={"method": "theme-tips", "max_themes": opts["max_themes"],
                                                            "max_tips": opts["max_tips"], "generator": model.spec})
    stats = Stats()
    try:
        themes = await structure_themes(list(rubric.criteria), generator, max_themes=opts["max_themes"],
                                        max_tips=opts["max_tips"], salt=rubric.id, stats=stats)
    except GenerationFailed as error:
        report.unchanged = f"Theme-Tips structuring failed: {error.reason}; the flat criteria are kept"
        report.stats = stats.as_dict()
        return report
    covered = {sid for theme in themes for sid in theme.source_ids}
    uncovered = [c for c in rubric.criteria if c.id not in covered]
    taken = {c.id for c in uncovered}
    renamed = []
    for theme in themes:  # a theme id must not clash with a kept criterion's id
        if theme.id in taken:
            theme = theme.model_copy(update={"id": criterion_slug(theme.id, taken)})
        taken.add(theme.id)
        renamed.append(theme)
    for theme in renamed:
        for sid in theme.source_ids:
            report.remove(sid, "structured", f"folded into theme {theme.id!r}")
    report.criteria = renamed + uncovered
    report.stats = {**stats.as_dict(), "themes": len(renamed), "covered": len(covered),
                    "uncovered_kept": [c.id for c in uncovered]}
    return report


_DEFAULTS: dict[str, Any] = {
    "dedup": False, "dedup_threshold": 0.9, "llm_overlap": None, "embedding_model": None, "min_edge": 0.0,
    "min_accuracy": 0.5, "soft": True, "select": None, "max_criteria": None, "epsilon": 0.3, "min_gain": 0.002,
    "structure": None, "max_themes": 5, "max_tips": 5,
}


async def arefine(rubrics: Sequence[Rubric], *, judge: Any = None, overlap: Any = None,
                  store: VerdictStore | None = None, consistency_pairs: Sequence[PairItem] | None = None,
                  misaligned_pairs: Sequence[PairItem] | None = None, pool: Sequence[DataItem] | None = None,
                  in_set: bool | None = None, **options: Any) -> RefineResult:
    """Refine rubrics with the steps the options ask for (see the module docs).

    ``judge`` is a :class:`~rubrickit.judge.engine.Judge` (or a zero-argument factory wrapped by :func:`refine_file`)
    used for consistency comparisons, missing verdicts and Theme-Tips; ``overlap`` is the
    :class:`~rubrickit.generate.common.Generator` of the LLM overlap check (with ``llm_overlap`` set). Options:
    ``dedup``, ``dedup_threshold`` (0.9), ``llm_overlap``, ``embedding_model``, ``min_edge`` (0), ``min_accuracy``
    (0.5), ``soft`` (use p_met), ``select`` (``"mcr"``), ``max_criteria``, ``epsilon`` (0.3), ``min_gain`` (0.002),
    ``structure`` (``"themes"``), ``max_themes`` (5), ``max_tips`` (5).
    """
    unknown = set(options) - set(_DEFAULTS) - {"sources", "max_tokens"}
    if unknown:
        raise RubrickitError(f"refine: unknown option(s) {', '.join(sorted(unknown))}")
    if options.get("select") not in (None, "mcr"):
        raise RubrickitError(f"--select {options['select']!r}: the only selection method is 'mcr'")
    if options.get("structure") not in (None, "themes"):
        raise RubrickitError(f"--structure {options['structure']!r}: the only structuring is 'themes'")
    opts = {**_DEFAULTS, **options}
    if opts["llm_overlap"] and overlap is None:
        raise RubrickitError("llm_overlap needs an overlap generator")
    if opts["llm_overlap"] is None and overlap is not None:
        opts["llm_overlap"] = True
    store = store or VerdictStore()
    judged_before = store.judged
    in_set = len(rubrics) > 1 if in_set is None else in_set
    result = RefineResult(rubrics=[], is_set=in_set)
    lazy_judge, lazy_overlap = _as_judge(judge), _as_judge(overlap)
    for rubric in rubrics:
        refined, reports = await _refine_one(rubric, in_set=in_set, opts=opts, judge=lazy_judge,
                                             overlap=lazy_overlap, store=store, consistency_pairs=consistency_pairs,
                                             misaligned_pairs=misaligned_pairs, pool=pool)
        result.reports.extend(reports)
        if refined is None:
            result.dropped.append(rubric.id)
        else:
            result.rubrics.append(refined)
    result.judged_items = store.judged - judged_before
    if lazy_judge.value is not None:
        result.judge = lazy_judge.value.spec
    return result


async def aweight(rubrics: Sequence[Rubric], method: str, *, judge: Any = None, store: VerdictStore | None = None,
                  pairs: Sequence[PairItem] | None = None, responses: Sequence[DataItem] | None = None,
                  map_name: str | None = None, ridge: float = 0.1, l2: float = 1.0, folds: int = 5,
                  soft: bool = True, in_set: bool | None = None, sources: dict[str, Any] | None = None
                  ) -> RefineResult:
    """Reweight rubrics (``uniform``, ``category``, ``whitened``, ``learned``; see :mod:`.weights`).

    ``whitened`` uses every stored verdict of the rubric plus the responses of ``pairs``/``responses`` (judged when
    missing); ``learned`` needs labelled ``pairs``.
    """
    from . import weights as wt

    if method not in WEIGHT_METHODS:
        raise RubrickitError(f"unknown weighting method {method!r}; use one of: {', '.join(WEIGHT_METHODS)}")
    if method == "learned" and not pairs:
        raise RubrickitError("learned weights need labelled pairs (--pairs PAIRS)")
    store = store or VerdictStore()
    judged_before = store.judged
    lazy = _as_judge(judge)
    in_set = len(rubrics) > 1 if in_set is None else in_set
    result = RefineResult(rubrics=[], is_set=in_set)
    for rubric in rubrics:
        if method == "uniform":
            new, report = wt.uniform_weights(rubric)
        elif method == "category":
            new, report = wt.category_weights(rubric, map_name)
        elif method == "whitened":
            items = [i.model_dump() for i in _for_rubric(rubric, responses or [], in_set)]
            items += pair_items(_for_rubric(rubric, pairs or [], in_set))
            if items:
                await _verdicts(store, lazy, rubric, items)
            ids = list(dict.fromkeys(store.item_ids(rubric.id) + [str(i["id"]) for i in items]))
            if not ids:
                raise RubrickitError(f"rubric {rubric.id!r}: whitened weights need verdicts: give --verdicts "
                                     "(score records) or --pairs/--responses to judge")
            new, report = wt.whitened_rubric_weights(rubric, store.matrix(rubric, ids, soft=soft), ridge=ridge)
        else:
            own = _for_rubric(rubric, pairs or [], in_set)
            await _verdicts(store, lazy, rubric, pair_items([p for p in own if p.label in ("A", "B")]))
            better, worse = store.pair_matrices(rubric, labelled_pairs(own), soft=soft)
            new, report, _ = wt.learned_weights(rubric, better, worse, l2=l2, folds=folds)
        report.parameters.update(sources or {})
        result.reports.append(report)
        result.rubrics.append(apply_report(rubric, report, weights=new))
    result.judged_items = store.judged - judged_before
    if lazy.value is not None:
        result.judge = lazy.value.spec
    return result


# --------------------------------------------------------------------------- files


def _check_out(out: str | Path | None, force: bool, dry_run: bool, is_set: bool) -> Path | None:
    if out is None:
        if not dry_run:
            raise RubrickitError("give an output file with -o/--out (or --dry-run to only show the effect)")
        return None
    out = Path(out)
    if out.exists() and not force and not dry_run:
        raise OutputExistsError(f"{out}: already exists; pass --force to overwrite it, or choose another --out")
    name = out.name.lower()
    if is_set and not name.endswith((".jsonl", ".jsonl.gz")):
        raise RubrickitError(f"{out}: the input is a rubric set; name the output *.jsonl (or .jsonl.gz)")
    return out


def _write(result: RefineResult, out: Path | None, *, force: bool) -> None:
    from rubrickit.rubric.files import load_rubrics, save_rubric, save_rubric_set

    if out is None:
        return
    name = out.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        if not result.rubrics:
            raise RubrickitError(f"every rubric was dropped; nothing written to {out}")
        save_rubric_set(result.rubrics, out, overwrite=force)
    else:
        if len(result.rubrics) != 1:
            raise RubrickitError(f"{out}: {len(result.rubrics)} rubrics need a rubric set file (.jsonl)")
        save_rubric(result.rubrics[0], out, overwrite=force)
    load_rubrics(out)  # prove what was written is valid
    result.written = out


def _source(path: str | Path) -> str:
    from rubrickit.data.preferences import file_digest

    return f"{Path(path).as_posix()}#{file_digest(path)}"


def _make_judge(spec: str | None, base_url: str | None, mode: str | None, cache_dir: str | Path | None
                ) -> Callable[[], Any]:
    def make() -> Any:
        from ..judge.engine import Judge

        overrides: dict[str, Any] = {"mode": mode} if mode else {}
        if cache_dir:
            overrides["cache_dir"] = Path(cache_dir)
        return Judge(spec, base_url=base_url, **overrides)

    return make


def _run(coro_factory: Callable[[_Lazy, _Lazy], Any], judge: _Lazy, overlap: _Lazy) -> Any:
    from rubrickit.judge.generator import Generator

    async def run() -> Any:
        try:
            return await coro_factory(judge, overlap)
        finally:
            for holder in (judge, overlap):
                if holder.value is not None:
                    value = holder.value
                    await (value.judge if isinstance(value, Generator) else value).aclose()

    return asyncio.run(run())


def refine_file(source: str | Path, out: str | Path | None = None, *, force: bool = False, dry_run: bool = False,
                consistency: str | Path | None = None, misaligned: str | Path | None = None,
                nondiscriminative: str | Path | None = None, verdicts: str | Path | None = None,
                judge: str | None = None, judge_base_url: str | None = None, judge_mode: str | None = None,
                llm_overlap: str | None = None, cache_dir: str | Path | None = None, allow_empty: bool = False,
                **options: Any) -> RefineResult:
    """Refine a rubric file (YAML) or rubric set (JSONL) and write ``out`` (nothing on ``dry_run``).

    ``consistency``/``misaligned`` are labelled pair files, ``nondiscriminative`` a response pool file,
    ``verdicts`` precomputed score records; ``judge``/``llm_overlap`` are model specs (``None``: embedded).
    Other options are :func:`arefine`'s. A data or verdicts file with no rows is an error unless ``allow_empty``
    (then nothing is done or written and the result has ``empty_input``).
    """
    from rubrickit.judge.generator import Generator
    from rubrickit.rubric.files import is_rubric_set_path, load_rubrics

    if not (options.get("dedup") or options.get("select") or options.get("structure") or consistency or misaligned
            or nondiscriminative):
        raise RubrickitError("refine: no step asked for; give at least one of --dedup, --filter-consistency, "
                             "--filter-misaligned, --filter-nondiscriminative, --select mcr, --structure themes")
    rubrics = load_rubrics(source)
    is_set = is_rubric_set_path(source)
    out_path = _check_out(out, force, dry_run, is_set)
    store = VerdictStore.from_file(verdicts, allow_empty=allow_empty) if verdicts else VerdictStore()
    if verdicts and not store.rows_read:
        return RefineResult(rubrics=rubrics, is_set=is_set, empty_input=True)
    sources: dict[str, dict[str, Any]] = {}
    loaded: dict[str, Any] = {}
    for step, path, loader in (("consistency", consistency, load_pairs), ("misaligned", misaligned, load_pairs),
                               ("nondiscriminative", nondiscriminative, load_items)):
        if path is not None:
            loaded[step] = loader(path, allow_empty=allow_empty)
            if not loaded[step]:
                return RefineResult(rubrics=rubrics, is_set=is_set, empty_input=True)
            sources[step] = {"data": _source(path)}
            if verdicts and step != "consistency":
                sources[step]["verdicts"] = _source(verdicts)
    make_judge = _make_judge(judge, judge_base_url, judge_mode, cache_dir)
    lazy_judge = _Lazy(make_judge)

    def make_overlap() -> Any:
        model = _make_judge(llm_overlap if llm_overlap != "embedded" else None, None, None, cache_dir)()
        return Generator(model, model.library, temperature=0.0, max_tokens=256)

    lazy_overlap = _Lazy(make_overlap if llm_overlap else None)

    async def go(j: _Lazy, o: _Lazy) -> RefineResult:
        return await arefine(rubrics, judge=j, overlap=o if llm_overlap else None, store=store,
                             consistency_pairs=loaded.get("consistency"), misaligned_pairs=loaded.get("misaligned"),
                             pool=loaded.get("nondiscriminative"), in_set=is_set, sources=sources,
                             llm_overlap=bool(llm_overlap), **options)

    result = _run(go, lazy_judge, lazy_overlap)
    result.is_set = is_set
    if not dry_run:
        _write(result, out_path, force=force)
    return result


def weight_file(source: str | Path, out: str | Path | None = None, *, method: str, force: bool = False,
                dry_run: bool = False, verdicts: str | Path | None = None, pairs: str | Path | None = None,
                responses: str | Path | None = None, map_name: str | None = None, judge: str | None = None,
                judge_base_url: str | None = None, judge_mode: str | None = None,
                cache_dir: str | Path | None = None, allow_empty: bool = False, **options: Any) -> RefineResult:
    """Reweight a rubric file or rubric set with ``method`` and write ``out`` (nothing on ``dry_run``).

    A verdicts, pairs or responses file with no rows is an error unless ``allow_empty`` (then nothing is done or
    written and the result has ``empty_input``).
    """
    from rubrickit.rubric.files import is_rubric_set_path, load_rubrics

    if method not in WEIGHT_METHODS:
        raise RubrickitError(f"unknown weighting method {method!r}; use one of: {', '.join(WEIGHT_METHODS)}")
    rubrics = load_rubrics(source)
    is_set = is_rubric_set_path(source)
    out_path = _check_out(out, force, dry_run, is_set)
    store = VerdictStore.from_file(verdicts, allow_empty=allow_empty) if verdicts else VerdictStore()
    pair_rows = load_pairs(pairs, allow_empty=allow_empty) if pairs else None
    response_rows = load_items(responses, allow_empty=allow_empty) if responses else None
    if (verdicts and not store.rows_read) or pair_rows == [] or response_rows == []:
        return RefineResult(rubrics=rubrics, is_set=is_set, empty_input=True)
    lazy_judge = _Lazy(_make_judge(judge, judge_base_url, judge_mode, cache_dir))
    sources = {name: _source(path) for name, path in (("verdicts", verdicts), ("pairs", pairs),
                                                      ("responses", responses)) if path is not None}

    async def go(j: _Lazy, _o: _Lazy) -> RefineResult:
        return await aweight(rubrics, method, judge=j, store=store, pairs=pair_rows, responses=response_rows,
                             map_name=map_name, in_set=is_set, sources=sources, **options)

    result = _run(go, lazy_judge, _Lazy(None))
    result.is_set = is_set
    if not dry_run:
        _write(result, out_path, force=force)
    return result

