"""Evaluating a judge against human/gold preference labels (``rubrickit eval``, ``rubrickit report``).

:func:`evaluate` reads pair files (the unified pairwise format of ``../shared/data/pairs``, or any JSONL/CSV/HF
dataset on disk with a column mapping), runs one or several rubric configurations side by side (no rubric, a rubric
file, or rubrics generated label-free on the fly, see :mod:`.runner`), the bias probes (:mod:`.probes`), and writes
``metrics.json`` (:mod:`.metrics`), the records JSONL and a self-contained HTML report (:mod:`.report`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rubrickit._util.io import atomic_write_text, iter_jsonl_lines, loads_json
from rubrickit.data.items import PairItem, load_pairs

from ..errors import OutputExistsError, RubrickitError
from .metrics import TIE_POLICY, pair_metrics
from .probes import MASTER_KEYS, PROBES
from .report import render_report, write_report
from .runner import LABEL_FREE_METHODS, EvalRun, aevaluate, judge_pair_row, parse_rubric_spec, summarize

__all__ = [
    "LABEL_FREE_METHODS",
    "MASTER_KEYS",
    "PROBES",
    "TIE_POLICY",
    "EvalResult",
    "EvalRun",
    "aevaluate",
    "evaluate",
    "load_eval_pairs",
    "metrics_document",
    "pair_metrics",
    "read_records",
    "render_report",
    "summarize",
    "write_report",
]


@dataclass
class EvalResult:
    """What :func:`evaluate` produced."""

    metrics: dict[str, Any]
    """The metrics document (as written to metrics.json)."""
    runs: list[EvalRun]
    """One run per rubric configuration."""
    records: list[dict[str, Any]]
    """Every records-file line."""


def _hash_order(pair_id: str) -> str:
    return hashlib.sha256(pair_id.encode("utf-8")).hexdigest()


def load_eval_pairs(paths: Sequence[str | Path], *, mapping: Mapping[str, str] | None = None,
                    limit: int | None = None, allow_empty: bool = False) -> tuple[list[PairItem], dict[str, str]]:
    """The pairs of every file (``limit`` per file: the ``limit`` pairs with the smallest sha256 of their id, a
    deterministic sample across subsets) and pair id → dataset name (the file name without its extensions).

    A file with no rows is an error unless ``allow_empty`` (then a warning; all files empty gives no pairs)."""
    pairs: list[PairItem] = []
    datasets: dict[str, str] = {}
    for path in paths:
        found = load_pairs(path, mapping=mapping, allow_empty=allow_empty)
        if limit is not None:
            found = sorted(found, key=lambda p: _hash_order(p.id))[:limit]
        name = Path(path).name.split(".")[0]
        for pair in found:
            if pair.id in datasets:
                pair = pair.model_copy(update={"id": f"{name}/{pair.id}"})
            datasets[pair.id] = name
            pairs.append(pair)
    if not pairs and not allow_empty:
        raise RubrickitError("no pairs to evaluate; check --data (and --map FIELD=COLUMN for other column names)")
    return pairs, datasets


def metrics_document(runs_metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """metrics.json: the first configuration's metrics flat at the top (accuracy, consistency, n, ties, coverage,
    …, per_subset, details) and, with several configurations, ``configs``: name → metrics."""
    names = list(runs_metrics)
    if not names:
        return {}
    document = dict(runs_metrics[names[0]])
    if len(names) > 1:
        document["configs"] = {name: dict(runs_metrics[name]) for name in names}
        document["comparison"] = [{"config": name, "accuracy": m["accuracy"], "accuracy_ci95": m["accuracy_ci95"],
                                   "consistency": m["consistency"], "n": m["n"], "coverage": m["coverage"]}
                                  for name, m in runs_metrics.items()]
    return document


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a records file written by ``rubrickit eval --records``."""
    lines = []
    if not Path(path).exists():
        raise RubrickitError(f"{path}: no such file; give a records file written by rubrickit eval --records")
    for number, line in iter_jsonl_lines(path):
        try:
            value = loads_json(line)
        except json.JSONDecodeError as error:
            raise RubrickitError(f"{path}:{number}: not JSON ({error.msg}); is this a records file written by "
                                 "rubrickit eval --records?") from None
        if not isinstance(value, dict):
            raise RubrickitError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}; is this a "
                                 "records file written by rubrickit eval --records?")
        lines.append(value)
    if not any(r.get("type") == "pair" for r in lines):
        raise RubrickitError(f"{path}: holds no pair records; write one with rubrickit eval --records R.jsonl")
    return lines


class _PartialRecords:
    """``RECORDS.partial`` beside the records file: every row appended (and flushed) as it finishes, so a run that
    stops (a crash, Ctrl-C, an outage) leaves what it judged. The finished run writes the records file itself
    atomically, in input order with each configuration's run line first, and removes this file."""

    def __init__(self, records: Path):
        self.path = records.with_name(records.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _check_outputs(paths: Sequence[Path | None], force: bool) -> None:
    for path in paths:
        if path is not None and Path(path).exists() and not force:
            raise OutputExistsError(f"{path}: already exists; pass --force to overwrite it, or choose another path")


def evaluate(data: Sequence[str | Path], *, judge: str | Any | None = None, base_url: str | None = None,
             rubrics: Sequence[str] = ("none",), rubric_mode: str = "pairwise", limit: int | None = None,
             swap: bool = True, probes: Sequence[str] = (), probe_limit: int | None = 20,
             mapping: Mapping[str, str] | None = None, out: str | Path | None = None,
             records: str | Path | None = None, report: str | Path | None = None, force: bool = False,
             seed: int = 0, resamples: int = 1000, generate_options: Mapping[str, Any] | None = None,
             allow_empty: bool = False, ray_options: Any = None, **judge_options: Any) -> EvalResult:
    """Evaluate a judge on pair files under each rubric configuration and write the outputs asked for.

    ``rubrics``: ``none``, a rubric/rubric-set path, or ``generate:METHOD`` (label-free methods only), each run
    side by side on the same pairs with one judge. ``judge_options`` go to :class:`~rubrickit.judge.engine.Judge`
    (``mode``, ``concurrency``, ``cache_dir``, …; ``None`` values are ignored). A data file with no rows is an
    error unless ``allow_empty``; when there are no pairs at all nothing is judged or written (``runs`` is empty).
    With ``ray_options`` (a :class:`~rubrickit.integrations.ray.RayOptions`) the pair judgments run on a Ray actor
    pool (``--engine ray``); probes and rubric generation stay in this process.
    """
    from ..judge.engine import Judge

    for spec in rubrics:
        parse_rubric_spec(spec)  # refuse label-using methods and missing files before any call
    outputs = [Path(p) if p is not None else None for p in (out, records, report)]
    _check_outputs(outputs, force)
    pairs, datasets = load_eval_pairs(data, mapping=mapping, limit=limit, allow_empty=allow_empty)
    if not pairs:
        return EvalResult(metrics={}, runs=[], records=[])
    options = {k: v for k, v in judge_options.items() if v is not None}
    owner = Judge(judge, base_url=base_url, **options)
    remote = None
    if ray_options is not None:
        from ..integrations.ray import eval_rows_ray

        def remote(resolved: Any, todo: Sequence[Any], config: str, names: Mapping[str, str]) -> Any:
            return eval_rows_ray(todo, resolved, judge=judge, base_url=base_url, options=owner.options,
                                 config=config, datasets=names, swap=swap, rubric_mode=rubric_mode,
                                 row=judge_pair_row, ray_options=ray_options)

    partial = _PartialRecords(outputs[1]) if outputs[1] is not None else None

    async def run() -> list[EvalRun]:
        try:
            return [await aevaluate(pairs, owner, rubric=spec, rubric_mode=rubric_mode, swap=swap,  # type: ignore
                                    probes=probes, probe_limit=probe_limit, seed=seed, datasets=datasets,
                                    generate_options=generate_options, pair_rows=remote,
                                    on_row=partial.write if partial is not None else None) for spec in rubrics]
        finally:
            await owner.aclose()

    try:
        if ray_options is not None:
            from ..integrations.ray import ray_session

            with ray_session(ray_options.address):  # one cluster for every configuration (--compare-rubrics)
                runs = asyncio.run(run())
        else:
            runs = asyncio.run(run())
    finally:
        if partial is not None:
            partial.close()
    lines = [line for r in runs for line in r.records()]
    summary = summarize(lines, resamples=resamples, seed=seed)
    document = metrics_document(summary)
    if outputs[0] is not None:
        atomic_write_text(outputs[0], json.dumps(document, indent=2, ensure_ascii=False) + "\n", overwrite=True)
    if outputs[1] is not None:
        atomic_write_text(outputs[1], "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                          overwrite=True)
        if partial is not None:
            partial.remove()
    if outputs[2] is not None:
        write_report(lines, outputs[2], summary=summary)
    return EvalResult(metrics=document, runs=runs, records=lines)
