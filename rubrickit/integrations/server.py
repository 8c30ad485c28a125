"""``rubrickit serve``: the HTTP reward server for OpenRLHF and any trainer that calls a URL (docs/rl.md).

``POST /get_reward`` takes OpenRLHF's body, ``{"query": [...], "prompts": [...], "labels": [...]}`` (``queries`` is
accepted for ``query``), recovers each response and the prompt the judge sees
(:mod:`rubrickit.integrations.openrlhf_protocol`), scores them with one long-lived
:class:`~rubrickit.rewards.RewardScorer`, and answers ``{"rewards": [...], "scores": [...], "extra_logs": {...}}``
(one entry per sample; see :func:`~rubrickit.integrations.openrlhf_protocol.answer`). ``GET /health`` says whether
it takes requests and what it has done, and which worker process (``worker``, ``pid``) answered.

- **Micro-batching.** OpenRLHF sends one sample per request, from every rollout at once. Concurrent requests are
  coalesced into scorer batches (:class:`~rubrickit.integrations.batcher.MicroBatcher`: up to ``max_batch``
  samples, a ``batch_window_ms`` window, ``max_batches`` batches in flight), so the judge's concurrency is used as
  in one big ``rubrickit score`` run.
- **Overload.** At most ``max_queue`` samples wait; beyond that the answer is 503 with ``Retry-After``. A request
  with more samples than the queue holds is 413.
- **Errors.** A query that does not start with its prompt, a bad label or body: 400 naming the sample. A judge that
  cannot answer at all (``JudgeUnavailableError``: bad key, unknown model, outage past ``max_outage``): 502. A sample
  the judge could not score gets the failure policy's value (``on_error``; ``null`` by default), or with
  ``on_error="raise"`` its request is answered 500 with the reason.
- **Token.** With ``token`` set, ``/get_reward`` needs ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (OpenRLHF
  sends no headers: put it in the URL); 401 otherwise. ``/health`` stays open and shows no configuration secrets.
- **Shutdown.** SIGTERM or SIGINT: new requests are refused (503 while the listening socket closes, then connection
  refused), every admitted request is finished and answered (up to ``drain_timeout``), the judge is closed, and
  the process exits 0.
- **Replicas.** :func:`rubrickit.integrations.workers.serve_workers` runs several worker processes on one
  listening socket (``rubrickit serve --workers N``): each builds its own scorer, the judge cache file is shared,
  and a worker that dies is restarted.
- **Logs.** One line per request (status, samples, rewards, seconds; never the body, headers or query string), a
  warning per sample not scored with the reason; the token, API keys and URL credentials are redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import JudgeUnavailableError, MissingDependencyError, RubrickitError
from ..rewards.core import RewardOptions, RewardScorer
from ..rubric import Rubric, RubricSet
from .batcher import MicroBatcher, Overloaded, RequestTooLarge
from .openrlhf_protocol import QueryError, RecoveryOptions, answer, build_samples, unscored_reason

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
except ImportError as _error:  # pragma: no cover - the serve extra is missing
    raise MissingDependencyError("rubrickit serve needs fastapi and uvicorn: pip install 'rubrickit[serve]'") \
        from _error

__all__ = ["BackgroundServer", "ServeOptions", "build_scorer", "create_app", "serve",
           "setup_logging"]

log = logging.getLogger("rubrickit.serve")

MAX_BODY_BYTES = 256 * 1024 * 1024
"""A request body larger than this is refused (413) before it is read."""


@dataclass
class ServeOptions:
    """How the server listens, batches and answers (the judge's own options go to the scorer)."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    """Demand this bearer token on ``/get_reward`` (``None``: open)."""
    max_batch: int = 8
    """Most samples in one scorer batch (a batch answers its requests when its last sample is scored: small
    batches keep the judge busy while one finishes)."""
    batch_window_ms: float = 10.0
    """How long a batch waits for more samples after its first one arrived."""
    max_queue: int = 4096
    """Most samples waiting for a batch; more → 503."""
    max_batches: int | None = None
    """Scorer batches in flight at once (``None``: enough for twice the judge's concurrency in samples, ≥ 4)."""
    on_error: Any = "none"
    """The failure policy: ``none`` (JSON null), ``zero``, a number, or ``raise`` (HTTP 500 for that request)."""
    drain_timeout: float = 180.0
    """Seconds a shutdown waits for admitted requests before cancelling them."""
    recovery: RecoveryOptions = field(default_factory=RecoveryOptions)
    """How queries, prompts and labels become samples."""

    def __post_init__(self) -> None:
        self.on_error = RewardOptions(on_error=self.on_error).on_error
        if self.max_batch < 1 or self.max_queue < 1 or (self.max_batches is not None and self.max_batches < 1):
            raise RubrickitError("--max-batch, --max-queue and --max-batches must be at least 1")
        if self.batch_window_ms < 0 or self.drain_timeout <= 0:
            raise RubrickitError("--batch-window-ms must be at least 0 and --drain-timeout above 0")


def build_scorer(rubric: Any = None, *, judge: str | None = None, base_url: str | None = None,
                 **options: Any) -> RewardScorer:
    """A :class:`RewardScorer` for the server (``None`` options are left at their defaults)."""
    return RewardScorer(rubric, judge=judge, base_url=base_url,
                        **{k: v for k, v in options.items() if v is not None})


# --------------------------------------------------------------------------- the app


class _State:
    def __init__(self, scorer: RewardScorer, options: ServeOptions, worker: int = 0):
        self.scorer = scorer
        self.options = options
        self.worker = worker
        self.batcher: MicroBatcher | None = None
        self.draining = False
        self.started = time.time()
        self.counts: dict[str, int] = {"requests": 0, "ok": 0, "bad_request": 0, "unauthorized": 0,
                                       "overloaded": 0, "judge_unavailable": 0, "failed": 0}
        self.rubric_set = isinstance(scorer.rubrics, RubricSet)

    def rubric_label(self) -> str | None:
        rubrics = self.scorer.rubrics
        if isinstance(rubrics, Rubric):
            return rubrics.id
        if isinstance(rubrics, RubricSet):
            return f"rubric set ({len(rubrics)} rubrics)"
        return None


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=headers)


def _authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    given = None
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        given = value.strip()
    elif request.query_params.get("token"):
        given = request.query_params.get("token")
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "-"


def _short(values: list[Any]) -> str:
    shown = ", ".join("null" if v is None else f"{v:.4g}" for v in values[:8])
    return f"[{shown}{', …' if len(values) > 8 else ''}]"


def create_app(scorer: RewardScorer, options: ServeOptions | None = None, *, worker: int = 0) -> FastAPI:
    """The FastAPI app around ``scorer`` (which it closes at shutdown); ``worker`` is the replica's index that
    ``/health`` shows (0 in a single process).

    The failure policy is applied per request by the server: a scorer whose ``on_error`` is not ``none`` gives the
    server its policy (when ``options`` leave it at ``none``) and is switched to ``none`` itself, so one sample
    cannot fail the other requests of its batch."""
    opts = options or ServeOptions()
    if scorer.options.group_key is not None:
        raise RubrickitError("group_key does not apply to the reward server: each request holds one sample and "
                             "batches are formed by arrival time (OpenRLHF normalises groups itself)")
    if scorer.options.on_error != "none":
        if opts.on_error == "none":
            opts.on_error = scorer.options.on_error
        scorer.options = scorer.options.model_copy(update={"on_error": "none"})
    state = _State(scorer, opts, worker)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher = MicroBatcher(scorer, max_batch=opts.max_batch, window=opts.batch_window_ms / 1000.0,
                                     max_queue=opts.max_queue, max_batches=opts.max_batches)
        state.batcher.start()
        try:
            yield
        finally:
            state.draining = True
            await state.batcher.close()
            totals = state.batcher.stats
            await scorer.aclose()
            log.info("stopped: %d requests, %d samples in %d batches (mean %.1f, max %d), %d not scored, "
                     "%d judge calls", state.counts["requests"], totals.samples, totals.batches,
                     totals.samples / totals.batches if totals.batches else 0.0, totals.max_size, totals.unscored,
                     scorer.judge.accounting.calls)

    app = FastAPI(title="rubrickit reward server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.rubrickit = state

    @app.get("/health")
    async def health() -> JSONResponse:
        batcher = state.batcher
        payload = {
            "status": "draining" if state.draining else "ok",
            "judge": scorer.spec,
            "rubric": state.rubric_label(),
            "mode": scorer.judge.options.mode,
            "on_error": opts.on_error,
            "queued": batcher.queued if batcher else 0,
            "in_flight": batcher.in_flight if batcher else 0,
            "max_queue": opts.max_queue,
            "batching": {"max_batch": opts.max_batch, "window_ms": opts.batch_window_ms,
                         "max_batches": batcher.max_batches if batcher else opts.max_batches},
            "requests": dict(state.counts),
            "batches": batcher.stats.as_dict() if batcher else {},
            "judge_calls": scorer.judge.accounting.calls,
            "uptime_s": round(time.time() - state.started, 3),
            "worker": state.worker,
            "pid": os.getpid(),
        }
        return _json(503 if state.draining else 200, payload)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        started = time.monotonic()
        state.counts["requests"] += 1
        response, samples, rewards = await _handle(request)
        seconds = time.monotonic() - started
        if response.status_code == 200:
            log.info("POST /get_reward 200 %d sample(s) rewards=%s %.3f s from %s", samples, _short(rewards),
                     seconds, _client(request))
        else:
            log.warning("POST /get_reward %d %.3f s from %s: %s", response.status_code, seconds, _client(request),
                        response.body.decode(errors="replace")[:300])
        return response

    async def _handle(request: Request) -> tuple[JSONResponse, int, list[Any]]:
        if not _authorised(request, opts.token):
            state.counts["unauthorized"] += 1
            return _json(401, {"detail": "missing or wrong token: send 'Authorization: Bearer TOKEN' or "
                                         "?token=TOKEN"}, {"WWW-Authenticate": "Bearer"}), 0, []
        if state.draining or state.batcher is None:
            state.counts["overloaded"] += 1
            return _json(503, {"detail": "the server is shutting down"},
                         {"Retry-After": "5", "Connection": "close"}), 0, []
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            state.counts["bad_request"] += 1
            return _json(413, {"detail": f"the body is larger than {MAX_BODY_BYTES} bytes"}), 0, []
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            state.counts["bad_request"] += 1
            return _json(400, {"detail": f"the body is not JSON: {exc}"[:300]}), 0, []
        if not isinstance(data, dict):
            state.counts["bad_request"] += 1
            return _json(400, {"detail": 'the body must be a JSON object {"query": [...], "prompts": [...], '
                                         '"labels": [...]}'}), 0, []
        queries = data.get("query", data.get("queries"))
        try:
            samples = build_samples(queries, data.get("prompts"), data.get("labels"), opts.recovery,
                                    rubric_set=state.rubric_set)
            details = await state.batcher.submit(samples)
        except QueryError as exc:
            state.counts["bad_request"] += 1
            payload: dict[str, Any] = {"detail": str(exc) if exc.index >= 0 else exc.reason}
            if exc.index >= 0:
                payload["sample"] = exc.index
            return _json(400, payload), 0, []
        except Overloaded as exc:
            state.counts["overloaded"] += 1
            return _json(503, {"detail": str(exc)}, {"Retry-After": str(exc.retry_after)}), 0, []
        except JudgeUnavailableError as exc:
            state.counts["judge_unavailable"] += 1
            log.error("the judge is unavailable: %s", exc)
            return _json(502, {"detail": f"the judge is unavailable: {exc}"}), 0, []
        except RequestTooLarge as exc:
            state.counts["bad_request"] += 1
            return _json(413, {"detail": str(exc)}), 0, []
        except RubrickitError as exc:
            state.counts["failed"] += 1
            log.error("scoring failed: %s", exc)
            return _json(500, {"detail": str(exc)}), 0, []
        for index, detail in enumerate(details):
            if not detail.scored:
                given = answer([detail], opts.on_error)["rewards"][0] if opts.on_error != "raise" else None
                log.warning("sample %d not scored (%s): %s", index, "request refused" if opts.on_error == "raise"
                            else f"answered {'null' if given is None else given}", detail.reason)
        if opts.on_error == "raise" and (reason := unscored_reason(details)):
            state.counts["failed"] += 1
            return _json(500, {"detail": f"{reason} (on_error=raise)"}), 0, []
        result = answer(details, opts.on_error)
        state.counts["ok"] += 1
        return _json(200, result), len(details), result["rewards"]

    return app


# --------------------------------------------------------------------------- running it


_NULL_REWARD_HINT = ("samples the judge cannot score are answered with null rewards; OpenRLHF cannot train on null "
                     "(the run stops): pass --on-error 0 (or another number) to keep training, with the count in "
                     "extra_logs rubrickit/scored")


def _describe(state: _State) -> str:
    """What the startup line says about the judge, batching and options (credentials redacted)."""
    from ..backends._redact import redact_url

    scorer, opts = state.scorer, state.options
    where = getattr(scorer.judge.backend, "base_url", None)
    return (f"judge {scorer.spec}{f' at {redact_url(where)}' if where else ''}, concurrency "
            f"{scorer.judge.options.concurrency}, rubric {state.rubric_label() or 'from the labels'}, mode "
            f"{scorer.judge.options.mode}, on_error {opts.on_error}, batches of up to {opts.max_batch} samples "
            f"({opts.batch_window_ms:g} ms window, {state.batcher.max_batches if state.batcher else 0} in flight), "
            f"max queue {opts.max_queue}{', token required' if opts.token else ''}")


class _Server(uvicorn.Server):
    """uvicorn's server, draining on SIGTERM/SIGINT and exiting normally afterwards (status 0)."""

    def __init__(self, config: uvicorn.Config, state: _State, announce: str | None = None,
                 on_ready: Callable[[], None] | None = None):
        super().__init__(config)
        self._rk_state = state
        self._announce = announce
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        if self._announce:  # only now does the socket accept connections
            log.info("listening on %s (POST /get_reward, GET /health): %s", self._announce, _describe(self._rk_state))
            if self._rk_state.options.on_error == "none":
                log.info(_NULL_REWARD_HINT)
        if self._on_ready is not None:
            self._on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self._rk_state.draining:
            log.info("received %s: refusing new requests, finishing %d admitted sample(s), then exiting",
                     signal.Signals(sig).name, self._pending())
        self._rk_state.draining = True
        super().handle_exit(sig, frame)

    def _pending(self) -> int:
        batcher = self._rk_state.batcher
        return batcher.queued + batcher.in_flight if batcher else 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Drain and stop (from any thread)."""
        self._rk_state.draining = True
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RubrickitError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)  # connections made while the app starts wait in the backlog instead of being refused
    return sock


def _config(app: FastAPI, options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(app, host=options.host, port=options.port, log_config=None, access_log=False,
                          lifespan="on", ws="none", loop="asyncio", timeout_graceful_shutdown=int(
                              max(1, round(options.drain_timeout))), timeout_keep_alive=30, backlog=2048,
                          server_header=False)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _SecretFilter(logging.Filter):
    def __init__(self, secrets_: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets_ if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        from ..backends._redact import redact

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - the logging module reports malformed records itself
            return True
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _env_secrets() -> list[str]:
    from ..backends._redact import SECRET_PARAMETER

    return [value for name, value in os.environ.items()
            if SECRET_PARAMETER.search(name) and len(value) >= 8 and not value.isdigit()]


def setup_logging(level: str = "info", *, token: str | None = None, worker: int | None = None) -> None:
    """Log the server (and uvicorn) to stderr, redacting the token, API keys found in the environment, bearer
    tokens and URL credentials; ``worker`` (a replica's index) puts ``[worker N, pid P]`` on each line."""
    handler = logging.StreamHandler(sys.stderr)
    where = "" if worker is None else f" [worker {worker}, pid {os.getpid()}]"
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s"))
    handler.addFilter(_SecretFilter([*(_env_secrets()), *([token] if token else [])]))
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise RubrickitError(f"--log-level {level!r}: use debug, info, warning or error")
    for name in ("rubrickit", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_rubrickit", False)]
        handler._rubrickit = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(number)
        logger.propagate = False


def serve(scorer: RewardScorer, options: ServeOptions | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return (the foreground ``rubrickit serve``)."""
    opts = options or ServeOptions()
    app = create_app(scorer, opts)
    sock = _bind(opts.host, opts.port)
    server = _Server(_config(app, opts), app.state.rubrickit, announce=_url(sock))
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
    if server.force_exit:
        raise RubrickitError("forced to stop before every admitted request was answered")


class BackgroundServer:
    """The server on a thread of this process (tests, benchmarks, notebooks)::

        with BackgroundServer(scorer, ServeOptions(port=0)) as server:
            requests.post(server.url + "/get_reward", json={...})
    """

    def __init__(self, scorer: RewardScorer, options: ServeOptions | None = None):
        self.options = options or ServeOptions(port=0)
        self.app = create_app(scorer, self.options)
        self._sock = _bind(self.options.host, self.options.port)
        self.url = _url(self._sock)
        """``http://HOST:PORT``."""
        self.server = _Server(_config(self.app, self.options), self.app.state.rubrickit)
        self._thread = threading.Thread(target=self._run, name="rubrickit-serve", daemon=True)
        self._error: BaseException | None = None

    @property
    def batcher(self) -> MicroBatcher | None:
        """The batcher (while serving)."""
        return self.app.state.rubrickit.batcher

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self._sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by start()/stop()
            self._error = exc

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RubrickitError(f"the reward server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RubrickitError("the reward server did not start within 30 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Drain (finish admitted requests) and stop."""
        self.server.stop()
        self._thread.join(timeout=self.options.drain_timeout + 30)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

