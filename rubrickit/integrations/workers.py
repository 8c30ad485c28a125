"""Several reward-server processes on one listening socket (``rubrickit serve --workers N``).

The parent binds the socket once and starts ``N`` workers with the ``spawn`` start method (never ``fork``: torch,
the judge's HTTP pools or threads may already be loaded). Each worker rebuilds its own scorer from picklable
arguments and runs :class:`~rubrickit.integrations.server._Server` on the inherited socket, so the kernel spreads
incoming connections over the workers: what :class:`uvicorn.supervisors.Multiprocess` does, with this project's
drain on shutdown.

- **Ready.** A worker sends the parent one message over its pipe when its server accepts connections; when all
  have, the parent logs ``listening on URL with N workers`` once.
- **Signals.** SIGTERM and SIGINT reach the parent (workers run in their own process group, so a terminal's Ctrl-C
  is not delivered twice) and are forwarded to every worker as they came: each worker refuses new requests,
  finishes the admitted ones and exits 0; a second SIGINT stops them at once. The parent waits for all (up to the
  drain timeout and 30 s more, then kills what is left) and returns when every worker exited 0; otherwise it
  raises :class:`~rubrickit.errors.RubrickitError`.
- **Restarts.** A worker that dies while the server runs is logged and started again, at most ``5 × N`` times per
  run; past that, or when a worker fails before it could serve (a broken configuration fails the same way every
  time), the parent stops the others and raises.
- **Orphans.** A worker whose parent is gone (killed with SIGKILL) drains and exits by itself.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import RubrickitError
from .server import (
    _NULL_REWARD_HINT,
    ServeOptions,
    _bind,
    _config,
    _describe,
    _Server,
    _url,
    build_scorer,
    create_app,
    setup_logging,
)

__all__ = ["RESTARTS_PER_WORKER", "STARTUP_FAILURE", "Supervisor", "serve_workers"]

log = logging.getLogger("rubrickit.serve")

_SPAWN = multiprocessing.get_context("spawn")
multiprocessing.allow_connection_pickling()  # the listening socket travels to each spawned worker as a file descriptor

STARTUP_FAILURE = 3
"""A worker's exit status when it could not start serving (as uvicorn's): the parent does not restart it."""

RESTARTS_PER_WORKER = 5
"""Unexpected worker deaths tolerated per run, per worker (``5 × N`` in all)."""


def _run_worker(index: int, options: ServeOptions, scorer_args: dict[str, Any], log_level: str,
                sock: socket.socket, ready: Connection, parent: int) -> None:
    """A worker process: build the scorer, serve on ``sock`` until signalled, exit 0 after a clean drain."""
    os.setpgrp()
    early: list[int] = []  # a stop signal before the server handles signals itself: drain right after startup
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, frame: early.append(number))
    setup_logging(log_level, token=options.token, worker=index)
    try:
        scorer = build_scorer(**scorer_args)
        app = create_app(scorer, options, worker=index)
    except Exception as exc:  # noqa: BLE001 - reported to the parent through the exit status
        log.error("worker %d could not start: %s", index, exc)
        sys.exit(STARTUP_FAILURE)
    state = app.state.rubrickit

    def on_ready() -> None:
        log.info("worker %d ready (pid %d)", index, os.getpid())
        try:
            ready.send(_describe(state))
        except OSError:
            pass  # the parent is gone: the orphan watch stops this worker

    server = _Server(_config(app, options), state, on_ready=on_ready)
    threading.Thread(target=_watch_parent, args=(parent,), name="rubrickit-orphan-watch", daemon=True).start()
    for number in early:
        server.handle_exit(number, None)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        ready.close()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    sys.exit(1 if server.force_exit else 0)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("the supervising process %d is gone: draining this worker", parent)
    os.kill(os.getpid(), signal.SIGTERM)


class _Worker:
    def __init__(self, index: int, process: Any, conn: Connection):
        self.index = index
        self.process = process
        self.conn: Connection | None = conn
        """The parent's end of the ready pipe, until the worker said it is ready (or closed it)."""
        self.ready = False
        self.forwarded = 0
        """How many of the supervisor's received signals this worker was sent."""

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def exited(self) -> bool:
        return self.process.exitcode is not None


class Supervisor:
    """Starts, watches, restarts and stops the worker processes (the parent's side; one per server run)."""

    def __init__(self, workers: int, options: ServeOptions, scorer_args: dict[str, Any], log_level: str,
                 sock: socket.socket):
        self.count = workers
        self.options = options
        self.scorer_args = scorer_args
        self.log_level = log_level
        self.sock = sock
        self.url = _url(sock)
        self.workers: list[_Worker] = []
        self.signals: list[int] = []
        self.restarts = 0
        self.max_restarts = RESTARTS_PER_WORKER * workers
        self.failure: str | None = None
        self.stop_deadline: float | None = None
        self.announced = False

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until a signal (or a failure), drain every worker, and raise unless all exited 0."""
        if threading.current_thread() is not threading.main_thread():
            raise RubrickitError("serve_workers must run in the main thread (it handles SIGTERM and SIGINT)")
        wake_read, wake_write = socket.socketpair()
        wake_write.setblocking(False)
        previous_fd = signal.set_wakeup_fd(wake_write.fileno())
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            self.workers = [self._start(index) for index in range(self.count)]
            self._loop(wake_read)
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wake_read.close()
            wake_write.close()
            self._kill_left()
        self._report()

    def _start(self, index: int) -> _Worker:
        parent_end, child_end = _SPAWN.Pipe(duplex=False)
        process = _SPAWN.Process(target=_run_worker, name=f"rubrickit-serve-{index}", daemon=False, args=(
            index, self.options, self.scorer_args, self.log_level, self.sock, child_end, os.getpid()))
        process.start()
        child_end.close()
        return _Worker(index, process, parent_end)

    def _loop(self, wake: socket.socket) -> None:
        while True:
            objects: list[Any] = [wake, *(w.conn for w in self.workers if w.conn is not None),
                                  *(w.process.sentinel for w in self.workers if not w.exited())]
            for item in wait(objects, timeout=1.0):
                if item is wake:
                    wake.recv(512)
                elif isinstance(item, Connection):
                    self._on_message(item)
            self._forward()
            for worker in self.workers:
                if worker.exited() and not self.stopping:
                    self._on_death(worker)
            if self.stopping:
                if all(w.exited() for w in self.workers):
                    return
                if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
                    self._fail(f"workers still running {self.options.drain_timeout + 30:g} s after the shutdown "
                               "began were killed")
                    return

    @property
    def stopping(self) -> bool:
        return bool(self.signals) or self.failure is not None

    # -- events --------------------------------------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: Any) -> None:
        # Runs between two bytecodes of the loop: only record; the loop forwards (the wake-up socket woke it).
        self.signals.append(sig)

    def _forward(self) -> None:
        if self.signals and self.stop_deadline is None:
            running = sum(not w.exited() for w in self.workers)
            if self.failure is None:
                log.info("received %s: forwarding it to %d worker(s); each finishes its admitted requests, then "
                         "exits", signal.Signals(self.signals[0]).name, running)
            else:
                log.info("stopping %d worker(s); each finishes its admitted requests, then exits", running)
            self.stop_deadline = time.monotonic() + self.options.drain_timeout + 30
            # No worker starts any more: once the workers close theirs too, the port refuses connections
            # (instead of leaving them in a backlog nobody accepts from).
            self.sock.close()
        for worker in self.workers:
            while worker.forwarded < len(self.signals):
                sig = self.signals[worker.forwarded]
                worker.forwarded += 1
                if not worker.exited():
                    try:
                        os.kill(worker.pid, sig)
                    except ProcessLookupError:
                        pass

    def _on_message(self, conn: Connection) -> None:
        worker = next(w for w in self.workers if w.conn is conn)
        try:
            description = conn.recv()
        except (EOFError, OSError):
            description = None
        conn.close()
        worker.conn = None
        if description is None:
            return
        worker.ready = True
        if not self.announced and all(w.ready for w in self.workers):
            self.announced = True
            log.info("listening on %s with %d workers (POST /get_reward, GET /health): %s; concurrency, batching "
                     "and queue are per worker, the judge cache is shared", self.url, self.count, description)
            if self.options.on_error == "none":
                log.info(_NULL_REWARD_HINT)

    def _on_death(self, worker: _Worker) -> None:
        worker.process.join()
        code = worker.process.exitcode
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None
        if code == STARTUP_FAILURE and not worker.ready:
            self._fail(f"worker {worker.index} could not start (exit status {code}; its error is logged above)")
            return
        if self.restarts >= self.max_restarts:
            self._fail(f"worker {worker.index} (pid {worker.pid}) exited with status {code}, and workers already "
                       f"died {self.restarts} times in this run (the limit for {self.count} workers): stopping")
            return
        self.restarts += 1
        log.warning("worker %d (pid %d) exited unexpectedly with status %s: restarting it (restart %d of at most %d)",
                    worker.index, worker.pid, code, self.restarts, self.max_restarts)
        replacement = self._start(worker.index)
        replacement.forwarded = len(self.signals)
        replacement.ready = worker.ready  # the announcement is made once, for the first set of workers
        self.workers[self.workers.index(worker)] = replacement

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("%s", message)
        self.signals.append(signal.SIGTERM)
        self._forward()

    def _kill_left(self) -> None:
        for worker in self.workers:
            if not worker.exited():
                log.error("worker %d (pid %d) did not stop: killing it", worker.index, worker.pid)
                worker.process.kill()
            worker.process.join()
            if worker.conn is not None:
                worker.conn.close()

    def _report(self) -> None:
        if self.failure is not None:
            raise RubrickitError(self.failure)
        bad = [f"worker {w.index} (pid {w.pid}): status {w.process.exitcode}" for w in self.workers
               if w.process.exitcode != 0]
        if bad:
            forced = self.signals.count(signal.SIGINT) > 1
            raise RubrickitError(("forced to stop before every admitted request was answered" if forced else
                                  "not every worker stopped cleanly (admitted requests may have gone unanswered)")
                                 + ": " + "; ".join(bad))
        log.info("all %d workers stopped", self.count)


def serve_workers(workers: int, options: ServeOptions | None = None, *, log_level: str = "info",
                  **scorer_args: Any) -> None:
    """Serve with ``workers`` processes on one listening socket until SIGTERM/SIGINT (``rubrickit serve
    --workers N``).

    ``scorer_args`` are :func:`build_scorer`'s arguments (``rubric``, ``judge``, ``base_url``, judge and reward
    options): each worker, a fresh ``spawn`` process, builds its own scorer from them, so they must pickle. The
    arguments are checked here first (a bad rubric or judge is an error before any worker starts). A signal is
    forwarded to every worker, each drains; this returns when all have exited, and raises
    :class:`~rubrickit.errors.RubrickitError` when one did not exit cleanly or workers kept dying
    (:class:`Supervisor`)."""
    opts = options or ServeOptions()
    if workers < 1:
        raise RubrickitError(f"--workers {workers}: use at least 1")
    build_scorer(**scorer_args).close()  # a bad rubric, judge spec or option fails here, once
    sock = _bind(opts.host, opts.port)
    try:
        Supervisor(workers, opts, scorer_args, log_level, sock).run()
    finally:
        sock.close()
