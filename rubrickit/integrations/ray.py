"""Scale out on Ray Data: score, compare and evaluate across a cluster (docs/scale.md).

A Ray Dataset of samples goes through ``map_batches`` with :class:`JudgeWorker`, a callable class run as a fixed
pool of actors (``ActorPoolStrategy(size=actors)``). Each actor builds one :class:`~rubrickit.judge.engine.Judge`
and judges its batches with the same async engine as a local run (its own concurrency slots, retries, breaker,
cache, in-flight dedup), several batches at once (the call is a coroutine), so the cluster keeps
``actors × concurrency`` calls in flight. Rate limits are a budget for the whole cluster: ``rpm``/``tpm`` are split
evenly across the actors (the pool has a fixed size so that the split holds).

- :func:`score_dataset` / :func:`compare_dataset`: a Dataset in, a Dataset of records out (lazy; write it with
  ``write_parquet``/``write_json``). Each output row is one record: its key columns, the flattened numbers
  (``reward``, ``coverage``, ``errors``; ``winner``, ``margin`` for pairs) and ``record``, the record's JSON — the
  same record ``rubrickit score``/``compare`` write.
- :func:`score_files_ray` / :func:`compare_files_ray`: what ``rubrickit score|compare --engine ray`` call. They read
  and validate the same input files as the local engine, skip what the output already holds (``--resume``), and
  append each record to the same JSONL journal as it comes back from the cluster, so a rerun after a crash skips
  every block already written. A record whose key is already in the output (a retried block) is dropped.
- :func:`eval_rows_ray`: the pair judgments of ``rubrickit eval --engine ray``.

Actors are restarted and their tasks retried by Ray when a worker dies (``max_restarts=-1``,
``max_task_retries=-1``, Ray Data's defaults for actor pools): a judgment is a pure function of its request and
answers already received are in the judge cache, so a retried batch costs only the calls that had not finished.

API keys are not shipped to the cluster: actors read them from their own environment (a local cluster started here
inherits this process's; on a remote cluster set them on the nodes or in your job's ``runtime_env``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import JudgeUnavailableError, MissingDependencyError, RubricError, RubrickitError

__all__ = ["JudgeWorker", "RayOptions", "actor_resources", "compare_dataset", "compare_files_ray", "eval_rows_ray",
           "ray_session", "score_dataset", "score_files_ray"]

Task = Literal["score", "compare", "eval"]

_LOCAL_CPU_KINDS = ("embedded", "hf")
"""Judges that compute on the actor's CPU (or its GPU, with ``--actor-gpus``)."""

_ACCOUNTING = "_accounting"
_WORKER = "_worker"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("--engine ray needs Ray Data: pip install 'rubrickit[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How a job runs on Ray."""

    address: str | None = None
    """The cluster (``ray://host:10001``, ``auto``); ``None``: ``$RAY_ADDRESS`` when set, else a local cluster on
    this machine, started for the job and stopped after it."""
    actors: int = 2
    """Judge actors in the pool (fixed size)."""
    batch_size: int | None = None
    """Items per batch handed to an actor; default: the judge's concurrency (several batches run at once)."""
    batches_per_actor: int = 4
    """Batches one actor judges at once (``max_concurrent_calls_per_actor``); with ``batch_size`` = concurrency the
    actor keeps its concurrency slots full while one batch finishes its slowest call."""
    num_cpus: float | None = None
    """CPUs reserved per actor; default 1 for judges that compute on the actor (embedded, hf), 0.25 for API and
    server judges (the actor only waits on the network)."""
    num_gpus: float | None = None
    """GPUs per actor; default 1 for ``vllm:`` judges (one engine per GPU), else 0."""

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise RubrickitError(f"--actors must be at least 1, got {self.actors}")
        if self.batch_size is not None and self.batch_size < 1:
            raise RubrickitError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.batches_per_actor < 1:
            raise RubrickitError(f"batches_per_actor must be at least 1, got {self.batches_per_actor}")


def actor_resources(judge: Any, options: RayOptions) -> dict[str, float]:
    """The Ray resources of one judge actor: explicit options win, else by the judge's kind."""
    kind = judge.partition(":")[0].strip().lower() if isinstance(judge, str) else ("embedded" if judge is None
                                                                                   else "")
    cpus = options.num_cpus if options.num_cpus is not None else (1.0 if kind in _LOCAL_CPU_KINDS + ("vllm",)
                                                                   else 0.25)
    gpus = options.num_gpus if options.num_gpus is not None else (1.0 if kind == "vllm" else 0.0)
    return {"num_cpus": cpus, "num_gpus": gpus}


class ray_session:  # noqa: N801 - used as a context manager, like open()
    """Connect to ``address`` (or start a local cluster) unless Ray is already initialised; on exit, shut down what
    was started here."""

    def __init__(self, address: str | None = None):
        self.address = address
        self.started = False

    def __enter__(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                     configure_logging=True, log_to_driver=True)
            self.started = True
        return ray

    def __exit__(self, *exc: object) -> None:
        if self.started:
            _import_ray().shutdown()


# --------------------------------------------------------------------------- the actor


def _batch_rows(batch: Any) -> list[dict[str, Any]]:
    """A pyarrow batch as row dicts; a row whose ``item`` column holds JSON (what the CLI sends) is that JSON."""
    rows = batch.to_pylist()
    if rows and "item" in rows[0] and isinstance(rows[0]["item"], str) and len(rows[0]) == 1:
        return [json.loads(row["item"]) for row in rows]
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def _valid_rows(rows: list[dict[str, Any]], task: Task) -> list[Any]:
    """Rows as data items (pairs for compare); a row that is not one fails the job naming its id and fields."""
    if task == "eval":
        return rows
    from pydantic import ValidationError

    from rubrickit.data.items import DataItem, PairItem

    model = DataItem if task == "score" else PairItem
    items = []
    for row in rows:
        try:
            items.append(row if isinstance(row, model) else model.model_validate(row))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in error.errors())
            raise RubricError(f"row {row.get('id', '(no id)')!r} of the input: {problems} (use --map FIELD=COLUMN "
                              "for other column names)") from None
    return items


class _Done(set):
    """The keys finished in one batch, seen over the output's keys (``base``, shared, never copied)."""

    def __init__(self, base: frozenset):
        super().__init__()
        self.base = base

    def __contains__(self, key: object) -> bool:
        return key in self.base or set.__contains__(self, key)


class JudgeWorker:
    """One judge actor of a Ray Data actor pool: builds its :class:`Judge` once, then judges batches.

    ``task`` is ``score`` (rows are samples: ``prompt``, ``response``, ``id``?, ``prompt_id``?, ``reference``?),
    ``compare`` (pairs: ``prompt``, ``response_a``, ``response_b``, …) or ``eval`` (pairs, judged as
    ``rubrickit eval`` does, with ``settings`` holding its configuration). ``rubrics`` is a :class:`Rubric`, a
    :class:`RubricSet`, a list of rubrics or ``None`` (direct comparisons).
    """

    def __init__(self, task: Task, judge: Any, rubrics: Any, *, base_url: str | None = None, options: Any = None,
                 backend_options: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None):
        from ..judge.engine import Judge

        self.task = task
        self.rubrics = rubrics
        self.settings = dict(settings or {})
        self.judge = Judge(judge, base_url=base_url, options=options, backend_options=dict(backend_options or {}))
        self.worker = uuid.uuid4().hex[:12]
        self.sequence = 0
        self.skip = frozenset(map(tuple, self.settings.get("skip") or ()))
        """Keys the output already holds (on resume of a URI input), built once per actor."""

    def _skip(self) -> Any:
        """A journal without a file that skips :attr:`skip` (``None`` when there is nothing to skip); the batch's
        own keys go to a set of its own, so the actor's set is never copied per batch."""
        if not self.skip:
            return None
        from ..judge.journal import Journal

        journal = Journal(None, key_fields=self.settings["key_fields"])
        journal.done = _Done(self.skip)
        return journal

    async def __call__(self, batch: Any) -> Any:
        rows = _valid_rows(_batch_rows(batch), self.task)
        if self.task == "score":
            records = [r async for r in self.judge.ascore_many(self.rubrics, rows, journal=self._skip())]
            table = _score_table(records)
        elif self.task == "compare":
            records = [r async for r in self.judge.acompare_many(self.rubrics, rows, journal=self._skip())]
            table = _pair_table(records)
        else:
            table = await self._eval(rows)
        return self._stamp(table)

    async def _eval(self, rows: list[dict[str, Any]]) -> Any:
        s = self.settings
        judge_pair_row = s["row"]
        results = await asyncio.gather(*(
            judge_pair_row(self.judge, self.rubrics, row["pair"], config=s["config"], dataset=row.get("dataset"),
                           swap=s["swap"], rubric_mode=s["rubric_mode"]) for row in rows))
        import pyarrow as pa

        return pa.table({"index": pa.array([row["index"] for row in rows], pa.int64()),
                         "pair_id": pa.array([r["pair_id"] for r in results], pa.string()),
                         "row": pa.array([json.dumps(r, ensure_ascii=False) for r in results], pa.string())})

    def _stamp(self, table: Any) -> Any:
        """The actor's id and, on the batch's first row, its accounting so far (the driver keeps the newest)."""
        import pyarrow as pa

        self.sequence += 1
        snapshot = json.dumps({"sequence": self.sequence, **self.judge.summary()})
        n = table.num_rows
        table = table.append_column(_WORKER, pa.array([self.worker] * n, pa.string()))
        return table.append_column(_ACCOUNTING, pa.array([snapshot] + [None] * (n - 1) if n else [], pa.string()))


def _score_table(records: Sequence[Any]) -> Any:
    import pyarrow as pa

    return pa.table({
        "item_id": pa.array([r.item_id for r in records], pa.string()),
        "rubric_id": pa.array([r.rubric_id for r in records], pa.string()),
        "repeat": pa.array([r.repeat for r in records], pa.int64()),
        "reward": pa.array([r.reward for r in records], pa.float64()),
        "coverage": pa.array([r.coverage for r in records], pa.float64()),
        "errors": pa.array([r.errors for r in records], pa.int64()),
        "record": pa.array([r.model_dump_json() for r in records], pa.string()),
    })


def _pair_table(records: Sequence[Any]) -> Any:
    import pyarrow as pa

    return pa.table({
        "pair_id": pa.array([r.pair_id for r in records], pa.string()),
        "rubric_id": pa.array([r.rubric_id for r in records], pa.string()),
        "repeat": pa.array([getattr(r, "repeat", 0) for r in records], pa.int64()),
        "winner": pa.array([r.winner for r in records], pa.string()),
        "margin": pa.array([r.margin for r in records], pa.float64()),
        "errors": pa.array([r.errors for r in records], pa.int64()),
        "record": pa.array([r.model_dump_json() for r in records], pa.string()),
    })


# --------------------------------------------------------------------------- datasets in, datasets out


def _split_budget(options: Any, actors: int) -> Any:
    """Each actor's share of the cluster's rate limits, with the cache folder fixed (actors may not see this
    process's environment)."""
    from ..judge.cache import default_cache_dir
    from ..judge.engine import JudgeOptions

    opts = options or JudgeOptions()
    update: dict[str, Any] = {"progress": False}
    if opts.rpm is not None:
        update["rpm"] = opts.rpm / actors
    if opts.tpm is not None:
        update["tpm"] = opts.tpm / actors
    if opts.use_cache and opts.cache_dir is None:
        update["cache_dir"] = default_cache_dir()
    return opts.model_copy(update=update)


def _map(dataset: Any, task: Task, judge: Any, rubrics: Any, *, base_url: str | None, options: Any,
         backend_options: Mapping[str, Any] | None, ray_options: RayOptions,
         settings: Mapping[str, Any] | None = None) -> Any:
    ray = _import_ray()
    opts = _split_budget(options, ray_options.actors)
    batch_size = ray_options.batch_size or opts.concurrency
    return dataset.map_batches(
        JudgeWorker,
        fn_constructor_args=(task, judge, rubrics),
        fn_constructor_kwargs={"base_url": base_url, "options": opts, "backend_options": dict(backend_options or {}),
                               "settings": dict(settings or {})},
        compute=ray.data.ActorPoolStrategy(size=ray_options.actors,
                                           max_concurrent_calls_per_actor=ray_options.batches_per_actor),
        batch_size=batch_size, batch_format="pyarrow", zero_copy_batch=True,
        **actor_resources(judge, ray_options))


def score_dataset(dataset: Any, rubrics: Any, *, judge: Any = None, base_url: str | None = None,
                  options: Any = None, backend_options: Mapping[str, Any] | None = None,
                  ray_options: RayOptions | None = None, keep_actor_columns: bool = False) -> Any:
    """Score every sample of a Ray Dataset (columns ``prompt``, ``response``, and optionally ``id``, ``prompt_id``,
    ``reference``) with ``rubrics``; a lazy Dataset of score records (see the module docstring).

    ``judge`` is a spec string (or ``None`` for the embedded judge); ``options`` a
    :class:`~rubrickit.judge.engine.JudgeOptions` whose ``rpm``/``tpm`` are the whole cluster's budget.
    """
    out = _map(dataset, "score", judge, rubrics, base_url=base_url, options=options,
               backend_options=backend_options, ray_options=ray_options or RayOptions())
    return out if keep_actor_columns else out.drop_columns([_WORKER, _ACCOUNTING])


def compare_dataset(dataset: Any, rubrics: Any = None, *, judge: Any = None, base_url: str | None = None,
                    options: Any = None, backend_options: Mapping[str, Any] | None = None,
                    ray_options: RayOptions | None = None, keep_actor_columns: bool = False) -> Any:
    """Compare every pair of a Ray Dataset (``prompt``, ``response_a``, ``response_b``, …) per criterion, or directly
    when ``rubrics`` is ``None``; a lazy Dataset of pair records."""
    out = _map(dataset, "compare", judge, rubrics, base_url=base_url, options=options,
               backend_options=backend_options, ray_options=ray_options or RayOptions())
    return out if keep_actor_columns else out.drop_columns([_WORKER, _ACCOUNTING])


# --------------------------------------------------------------------------- the CLI's driver


class _Accounts:
    """The newest accounting snapshot of each actor, summed (an actor that died keeps its last snapshot)."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}

    def take(self, worker: str, snapshot: str | None) -> None:
        if snapshot is None:
            return
        value = json.loads(snapshot)
        if value["sequence"] > self.latest.get(worker, {}).get("sequence", -1):
            self.latest[worker] = value

    def total(self, elapsed: float, actors: int) -> dict[str, Any]:
        summed: dict[str, Any] = {}
        for snapshot in self.latest.values():
            for key, value in snapshot.items():
                if key == "sequence" or key == "elapsed_s":
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    summed.setdefault(key, value)
                elif value is not None:
                    summed[key] = (summed.get(key) or 0) + value
        if any(s.get("cost") is None for s in self.latest.values()) and "cost" in summed:
            summed["cost"] = None  # one actor's unknown cost makes the total unknown
        summed["elapsed_s"] = round(elapsed, 3)
        summed["actors"] = actors
        summed["actors_used"] = len(self.latest)  # a restarted actor counts again
        return summed


def _blocks_of(dataset: Any) -> Iterator[list[dict[str, Any]]]:
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        yield batch.to_pylist()


def _drive(dataset: Any, journal: Any, parse: Callable[[str], Any], accounts: _Accounts) -> tuple[list[Any], int]:
    """Journal each record as its block comes back; drop those whose key the output already holds (a retried
    block's)."""
    records, dropped = [], 0
    for block in _blocks_of(dataset):
        for row in block:
            accounts.take(row[_WORKER], row[_ACCOUNTING])
            record = parse(row["record"])
            if journal.append(record):
                records.append(record)
            else:
                dropped += 1
        end_block = getattr(journal, "end_block", None)
        if end_block is not None:
            end_block()
    return records, dropped


def _json_items(models: Iterable[Any]) -> list[dict[str, str]]:
    return [{"item": model.model_dump_json()} for model in models]


def _probe_judge(judge: Any, base_url: str | None, settings: Any, backend_options: Any) -> Any:
    """The driver's judge: its spec, its default mode and the mode check, without a call."""
    from ..judge.engine import Judge

    return Judge(judge, base_url=base_url, options=settings, backend_options=dict(backend_options or {}))


def score_files_ray(rubric_path: str | Path, data_path: str | Path, *, ray_options: RayOptions | None = None,
                    judge: Any = None, base_url: str | None = None, out: str | Path | None = None,
                    resume: bool = False, force: bool = False, mapping: Mapping[str, str] | None = None,
                    options: Any = None, backend_options: dict[str, Any] | None = None, allow_empty: bool = False,
                    **option_overrides: Any) -> Any:
    """:func:`~rubrickit.judge.run.score_files` on Ray: the same files in and out, the same :class:`RunResult`.

    ``data_path`` may be a URI Ray reads (``s3://bucket/rollouts/``), and ``out`` a folder or URI of part files
    (:mod:`rubrickit.integrations._ray_files`); a local JSONL ``out`` is the local engine's journal.
    """
    return _files_ray("score", rubric_path, data_path, ray_options=ray_options, judge=judge, base_url=base_url,
                      out=out, resume=resume, force=force, mapping=mapping, options=options,
                      backend_options=backend_options, allow_empty=allow_empty, overrides=option_overrides)


def compare_files_ray(rubric_path: str | Path | None, pairs_path: str | Path, *,
                      ray_options: RayOptions | None = None, judge: Any = None, base_url: str | None = None,
                      out: str | Path | None = None, resume: bool = False, force: bool = False,
                      mapping: Mapping[str, str] | None = None, options: Any = None,
                      backend_options: dict[str, Any] | None = None, allow_empty: bool = False,
                      **option_overrides: Any) -> Any:
    """:func:`~rubrickit.judge.run.compare_files` on Ray (inputs and outputs as in :func:`score_files_ray`)."""
    return _files_ray("compare", rubric_path, pairs_path, ray_options=ray_options, judge=judge, base_url=base_url,
                      out=out, resume=resume, force=force, mapping=mapping, options=options,
                      backend_options=backend_options, allow_empty=allow_empty, overrides=option_overrides)


def _files_ray(task: Task, rubric_path: Any, data_path: Any, *, ray_options: RayOptions | None, judge: Any,
               base_url: str | None, out: Any, resume: bool, force: bool, mapping: Mapping[str, str] | None,
               options: Any, backend_options: dict[str, Any] | None, allow_empty: bool,
               overrides: Mapping[str, Any]) -> Any:
    from rubrickit.data.items import load_items, load_pairs

    from ..judge.journal import DEFAULT_KEY_FIELDS, PAIR_KEY_FIELDS
    from ..judge.pairwise import PairRecord
    from ..judge.run import (
        RunResult,
        _has_errors,
        _journal,
        _options,
        _refuse_existing_output,
        _resume_check,
        load_rubric_arg,
    )
    from ..judge.tasks import assign_rubrics
    from ..rubric import ScoreRecord
    from ._ray_files import PartsOutput, is_folder_output, is_uri

    rubrics = load_rubric_arg(rubric_path)
    remote_input = is_uri(data_path)
    rows: list[Any] = []
    if not remote_input:  # read and checked here, with the local engine's errors (file, line, field)
        rows = (load_items if task == "score" else load_pairs)(data_path, mapping=mapping, allow_empty=allow_empty)
        if not rows:
            return RunResult(empty_input=True)
    folder = is_folder_output(out)
    if not folder:
        _refuse_existing_output(out, resume, force)
    ray_options = ray_options or RayOptions()
    settings = _options(options, overrides)
    if task == "score":
        key_fields, parse = DEFAULT_KEY_FIELDS, ScoreRecord.model_validate_json
    else:
        key_fields = PAIR_KEY_FIELDS if rubrics is not None else ("pair_id", "repeat")
        parse = PairRecord.model_validate_json
    with _probe_judge(judge, base_url, settings, backend_options) as probe:
        if task == "score":
            probe.check_mode()
        settings = probe.options  # the mode resolved to the backend's default, as the actors will
        pending = assign_rubrics(rubrics, rows, optional=task == "compare")  # a missing rubric: an error now
        output = (PartsOutput(out, resume=resume, overwrite=force, key_fields=key_fields,
                              check=_resume_check(out, rubrics, probe), redo=_has_errors) if folder
                  else _journal(out, resume=resume, force=force, key_fields=key_fields, rubrics=rubrics,
                                engine=probe))
        with output as journal:
            def done(row: Any, rubric: Any, repeat: int) -> bool:
                return journal.key({key_fields[0]: row.id, "rubric_id": rubric.id if rubric else None,
                                    "repeat": repeat}) in journal.done

            todo = list({row.id: row for row, rubric in pending for r in range(settings.repeat)
                         if not done(row, rubric, r)}.values())
            result = RunResult(out=Path(journal.path) if journal.path is not None and not folder else None,
                               resumed=len(journal.resumed_records), redone=journal.redone)
            if not remote_input and not todo:
                return result
            skip = {"skip": list(journal.done), "key_fields": key_fields} if remote_input and journal.done else {}
            return _run(result, todo, data_path if remote_input else None, mapping, task, judge, rubrics, base_url,
                        settings, backend_options, ray_options, journal, parse, skip)


def _blocks(count: int, ray_options: RayOptions, batch_size: int) -> int:
    """A block per batch, up to four rounds of every actor's batches; at least one block per actor."""
    whole = -(-count // batch_size)
    return max(1, min(count, max(ray_options.actors, min(whole, ray_options.actors * ray_options.batches_per_actor
                                                         * 4))))


def _run(result: Any, todo: list[Any], uri: str | None, mapping: Mapping[str, str] | None, task: Task, judge: Any,
         rubrics: Any, base_url: str | None, settings: Any, backend_options: Any, ray_options: RayOptions,
         journal: Any, parse: Callable[[str], Any], skip: Mapping[str, Any]) -> Any:
    from ._ray_files import read_dataset

    started = time.perf_counter()
    accounts = _Accounts()
    with ray_session(ray_options.address) as ray:
        batch_size = ray_options.batch_size or settings.concurrency
        if uri is not None:
            dataset = read_dataset(ray, uri, mapping)
        else:
            dataset = ray.data.from_items(_json_items(todo), override_num_blocks=_blocks(len(todo), ray_options,
                                                                                         batch_size))
        mapped = _map(dataset, task, judge, rubrics, base_url=base_url, options=settings,
                      backend_options=backend_options, ray_options=ray_options, settings=skip)
        try:
            result.records, result.dropped = _drive(mapped, journal, parse, accounts)
        except Exception as error:
            cause = _unwrap(error)
            if isinstance(cause, RubrickitError):
                raise _with_progress(cause, journal) from None
            raise
    result.accounting = accounts.total(time.perf_counter() - started, ray_options.actors)
    return result


def _unwrap(error: BaseException) -> BaseException:
    """The first rubrickit error inside Ray's task-error wrappers (``cause``, ``__cause__``, ``__context__``), else
    the error itself."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RubrickitError):
            return current
        pending += [e for e in (getattr(current, "cause", None), current.__cause__, current.__context__)
                    if isinstance(e, BaseException)]
    # Ray Data wraps a UDF's exception in UserCodeException and keeps only its traceback text: rebuild it from there.
    found = re.search(r"rubrickit\.errors\.(\w+): (.+)", str(error))
    if found:
        from .. import errors

        kind = getattr(errors, found.group(1), None)
        if isinstance(kind, type) and issubclass(kind, RubrickitError):
            try:
                return kind(found.group(2).strip())
            except TypeError:  # an error class with another constructor
                return RubrickitError(found.group(2).strip())
    return error


def _with_progress(error: RubrickitError, journal: Any) -> RubrickitError:
    if journal.path is None:
        return error
    kept = len(journal.resumed_records) + journal.written
    text = f"{error} ({kept} finished record(s) are in {journal.path}; rerun with --resume to continue)"
    return JudgeUnavailableError(text) if isinstance(error, JudgeUnavailableError) else RubrickitError(text)


def eval_rows_ray(pairs: Sequence[Any], rubrics: Any, *, judge: Any, base_url: str | None, options: Any,
                  config: str, datasets: Mapping[str, str], swap: bool, rubric_mode: str,
                  row: Callable[..., Any], ray_options: RayOptions | None = None,
                  backend_options: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The eval rows of ``pairs`` (in input order) judged on Ray, and the actors' summed accounting.

    ``row`` is eval's own coroutine function for one pair (:func:`rubrickit.eval.runner.judge_pair_row`), passed in
    (and pickled by reference to the actors) because eval sits above this layer."""
    ray_options = ray_options or RayOptions()
    started = time.perf_counter()
    accounts = _Accounts()
    rows: dict[int, dict[str, Any]] = {}
    settings = {"config": config, "swap": swap, "rubric_mode": rubric_mode, "row": row}
    with ray_session(ray_options.address) as ray:
        batch_size = ray_options.batch_size or options.concurrency
        payload = [{"item": json.dumps({"index": i, "dataset": datasets.get(p.id),
                                        "pair": p.model_dump(mode="json")})} for i, p in enumerate(pairs)]
        dataset = ray.data.from_items(payload, override_num_blocks=_blocks(len(pairs), ray_options, batch_size))
        mapped = _map(dataset, "eval", judge, rubrics, base_url=base_url, options=options,
                      backend_options=backend_options, ray_options=ray_options, settings=settings)
        for block in _blocks_of(mapped):
            for row in block:
                accounts.take(row[_WORKER], row[_ACCOUNTING])
                rows.setdefault(row["index"], json.loads(row["row"]))
    missing = len(pairs) - len(rows)
    if missing:
        raise RubrickitError(f"the Ray job returned {len(rows)} of {len(pairs)} pair rows; run it again")
    return [rows[i] for i in range(len(pairs))], accounts.total(time.perf_counter() - started, ray_options.actors)
