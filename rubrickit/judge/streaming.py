"""Running many jobs (``Judge.ascore_many``/``acompare_many``): :func:`stream_jobs` keeps a bounded window of
jobs in flight and yields each result as it finishes, writing it to the journal and advancing the progress bar;
:func:`check_journal` and :func:`jobs_left` check a journal's keys and count the jobs left. A run also tunes the
process for thousands of calls in flight: the cyclic garbage collector (:func:`freeze_heap_once`,
:func:`gc_paced`) and the open-files limit (:func:`ensure_open_files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from ..errors import RubrickitError
from .journal import Journal
from .options import JudgeOptions
from .progress import Progress

__all__ = ["GC_THRESHOLD", "OPEN_FILES_SPARE", "check_journal", "ensure_open_files", "freeze_heap_once", "gc_paced",
           "jobs_left", "stream_jobs"]


def jobs_left(assigned: Any, repeats: int, done: int) -> int | None:
    """Jobs left for the progress bar (``None``: not known in advance, for a one-shot iterator of items)."""
    if not getattr(assigned, "known_length", True):
        return None
    return max(0, len(assigned) * repeats - done)


GC_THRESHOLD = 10_000
"""The youngest generation's collection threshold during a run (Python's default is 700)."""
_frozen = False
_paced = 0
_saved_threshold: tuple[int, ...] | None = None


def _gc_tuning() -> bool:
    return os.environ.get("RUBRICKIT_GC_TUNING", "1").strip().lower() not in ("0", "false", "no", "off")


def freeze_heap_once() -> None:
    """Move the objects alive at the first run (modules, classes, templates: the bulk of the heap) out of the cyclic
    garbage collector's sight, once per process (:func:`gc.freeze`), after collecting what is already garbage.

    Full collections otherwise re-scan that heap every few thousand judgments: 15% of the client's CPU per judgment
    in bench/RESULTS.md ("Where one judgment's CPU goes"). Objects made later are collected as usual.
    ``RUBRICKIT_GC_TUNING=0`` leaves the collector alone."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    if not _gc_tuning():
        return
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def gc_paced() -> Iterator[None]:
    """While runs are under way, collect the youngest generation every 10,000 allocations instead of 700.

    Each judgment allocates a few hundred short-lived containers (requests, replies, records); with thousands of
    calls in flight the default threshold runs a collection every couple of judgments, each walking every young
    object still alive: 50-60 µs per judgment at 512 in flight, against 7-15 µs with this threshold
    (bench/RESULTS.md). The previous thresholds come back when the last concurrent run ends (unless someone else
    changed them meanwhile). ``RUBRICKIT_GC_TUNING=0`` leaves them alone."""
    global _paced, _saved_threshold
    tuning = _gc_tuning()
    if tuning:
        if _paced == 0:
            _saved_threshold = gc.get_threshold()
            if _saved_threshold[0] < GC_THRESHOLD:
                gc.set_threshold(GC_THRESHOLD, *_saved_threshold[1:])
        _paced += 1
    try:
        yield
    finally:
        if tuning:
            _paced -= 1
            saved = _saved_threshold
            if _paced == 0 and saved is not None and gc.get_threshold() == (max(saved[0], GC_THRESHOLD),
                                                                            *saved[1:]):
                gc.set_threshold(*saved)


OPEN_FILES_SPARE = 256
"""File descriptors kept beyond one connection per call in flight (the cache, the journal, the interpreter's own)."""


def ensure_open_files(concurrency: int) -> None:
    """Raise the soft limit on open files when ``concurrency`` connections would not fit under it.

    Every call in flight holds a keep-alive connection; many systems start processes with a soft limit of 1,024
    descriptors, which ``-c 1024`` would hit as "Too many open files" — an outage of the run's own making. The soft
    limit is raised up to the hard limit (as vLLM's and Ray's servers do); when even that is too low, the run warns
    once, naming ``ulimit -n``."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows has no RLIMIT_NOFILE
        return
    needed = concurrency + OPEN_FILES_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < needed:
        warnings.warn(f"--concurrency {concurrency} needs about {needed} open files, but this process may open "
                      f"{soft} (hard limit {hard}); calls beyond that fail as connection errors. Raise the limit "
                      f"(ulimit -n {needed}) or lower --concurrency.", RuntimeWarning, stacklevel=3)


def check_journal(journal: Journal | None, field: str, fields: str) -> None:
    """Raise when ``journal`` is not keyed by ``field`` (the key of the records about to be written to it)."""
    if journal is not None and field not in journal.key_fields:
        raise RubrickitError(f"the journal is keyed by {', '.join(journal.key_fields)}, but these records are keyed "
                             f"by {field!r}; open it with Journal(path, key_fields={fields})")


async def stream_jobs(jobs: Iterable[tuple], run: Callable[..., Awaitable[Any]], journal: Journal | None,
                      description: str, options: JudgeOptions, *, total: int | None,
                      calls: Callable[[tuple], int]) -> AsyncIterator[Any]:
    """Run ``jobs`` (consumed lazily) and yield each result as it finishes, writing it to ``journal``.

    Jobs start while the calls they will make (``calls(job)``, an estimate) stay under twice the concurrency, so
    the judge's slots stay full while the jobs held at once — items, prompts, records — stay bounded however
    long the input. A finished job is found through a done-callback queue: nothing is scanned per completion.
    """
    freeze_heap_once()
    ensure_open_files(options.concurrency)
    budget = 2 * options.concurrency
    pending: dict[asyncio.Future, tuple[int, int]] = {}  # job → (position, estimated calls)
    finished: asyncio.Queue[asyncio.Future] = asyncio.Queue()
    source = iter(jobs)
    exhausted = False
    position = in_flight = 0
    with Progress(total, description, enabled=options.progress) as progress, gc_paced():
        try:
            while True:
                while not exhausted and (len(pending) < 4 or in_flight < budget):
                    job = next(source, None)
                    if job is None:
                        exhausted = True
                        break
                    weight = max(1, calls(job))
                    future = asyncio.ensure_future(run(*job))
                    future.add_done_callback(finished.put_nowait)
                    pending[future] = (position, weight)
                    position += 1
                    in_flight += weight
                if not pending:
                    break
                batch = [await finished.get()]
                while not finished.empty():
                    batch.append(finished.get_nowait())
                for future in sorted(batch, key=lambda task: pending[task][0]):
                    in_flight -= pending.pop(future)[1]
                    record = future.result()
                    if journal is not None:
                        journal.append(record)
                    progress.advance(1)
                    yield record
        finally:
            for future in pending:
                future.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

