"""A real OpenAI-compatible HTTP server on 127.0.0.1, for backend tests, engine tests and benchmarks.

It speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` over real sockets (HTTP/1.1 with keep-alive, served
by asyncio streams on an event loop in a daemon thread), so clients are exercised end to end: the ``openai`` SDK,
``litellm``, httpx, aiohttp. One event loop rather than a thread per connection: hundreds of concurrent requests
cost no GIL convoy, so the server is never the bottleneck of a benchmark. Everything is scriptable per test:

- **replies**: a string, a :class:`Reply` (text, finish reason, per-position top logprobs, usage numbers), a
  :class:`Fault`, a list of those (served in order, the last one repeats) or a function of the request JSON;
- **latency**: fixed seconds or a function of the request JSON (``asyncio.sleep``, so 200 concurrent requests with
  100 ms latency all finish in about 100 ms);
- **faults**: 429 with ``Retry-After`` / ``retry-after-ms``, 500/503, time-outs (the server answers later than the
  client waits), dropped connections (closed without a response) and reset ones (TCP RST), malformed bodies (200
  that is not JSON, or JSON without ``choices``), any other HTTP error (401, 404, …);
- **realism**: ``max_tokens``/``max_completion_tokens`` truncate the reply (``finish_reason: "length"``);
  ``logprobs``/``top_logprobs`` are computed from the scripted text; ``usage.prompt_tokens_details.cached_tokens``
  comes from an emulated prefix cache (64-character blocks, like vLLM's automatic prefix caching); vLLM's
  ``structured_outputs.choice`` (and the legacy ``guided_choice``) constrain the reply to one of the choices;
- **dialects of structured output**: ``structured="llamacpp"`` refuses ``response_format`` of type ``json_schema``
  as llama-cpp-python 0.3.x does (HTTP 500, its request-validation message) and takes ``json_object`` + ``schema``;
  ``structured="none"`` refuses every structured-output field (HTTP 400 naming it), as a server that knows none.

Every request is recorded (method, path, lower-cased headers, parsed body), so tests can assert on what was sent.

Use it as a context manager::

    with OAIServer(reply=Reply("Yes", top_logprobs=[{"Yes": -0.1, "No": -2.4}])) as server:
        backend = OpenAIBackend("judge", base_url=server.url)
        ...
        assert server.requests[0].body["logprobs"] is True

or from the command line for benchmarks: ``python tests/oai_server.py --port 0 --latency 0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = ["Fault", "OAIServer", "RecordedRequest", "Reply", "default_reply", "tokenize"]

_TOKEN = re.compile(r"\s*\w+|\s*[^\s\w]|\s+\Z")
_CACHE_BLOCK = 64  # characters per emulated prefix-cache block
_RESET = b"<reset>"  # what _respond returns for a reset fault (compared by identity)


def tokenize(text: str) -> list[str]:
    """Split text into word-ish tokens that join back to the text (``" world"``, ``","``, ``"\\n"``)."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Reply:
    """One scripted successful answer."""

    text: str
    """The assistant message content (cut at ``max_tokens`` tokens, if the request set a lower limit)."""
    finish_reason: str | None = None
    """Reported finish reason; ``None`` = ``"length"`` when truncated by ``max_tokens``, else ``"stop"``."""
    top_logprobs: Sequence[Mapping[str, float]] | None = None
    """Per position ``token → logprob`` alternatives; the chosen token's logprob is taken from here when present.
    Positions past the list get a chosen logprob of -0.01 and filler alternatives."""
    cached_tokens: int | None = None
    """Overrides the emulated prefix cache's ``cached_tokens``."""
    prompt_tokens: int | None = None
    """Overrides the counted prompt tokens."""
    model: str | None = None
    """Overrides the reported model (default: the requested one)."""
    delay: float | None = None
    """Overrides the server latency for this reply (seconds)."""


@dataclass(frozen=True)
class Fault:
    """One scripted failure. Build it with the class methods."""

    kind: str
    """``status`` (an HTTP error), ``timeout``, ``drop``, ``reset``, ``malformed`` or ``no_choices``."""
    status: int = 500
    """HTTP status of a ``status`` fault."""
    message: str = "scripted fault"
    """Error message in the OpenAI-style error body."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra response headers (``Retry-After``, …)."""
    seconds: float = 30.0
    """How long a ``timeout`` fault waits before answering."""
    body: str | None = None
    """Raw response body (``malformed``), or a raw error body instead of the OpenAI-style one."""
    code: str | None = None
    """``error.code`` in the error body (e.g. ``insufficient_quota``)."""

    @classmethod
    def rate_limit(cls, retry_after: str | float | None = "1", *, retry_after_ms: float | None = None,
                   message: str = "Rate limit reached for requests", code: str | None = "rate_limit_exceeded"
                   ) -> Fault:
        """429 with ``Retry-After`` (seconds or an HTTP date) and optionally ``retry-after-ms``."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls("status", status=429, message=message, headers=headers, code=code)

    @classmethod
    def server_error(cls, status: int = 500, message: str = "The server had an error processing your request.",
                     headers: Mapping[str, str] | None = None) -> Fault:
        """A 5xx error with an OpenAI-style body."""
        return cls("status", status=status, message=message, headers=dict(headers or {}))

    @classmethod
    def http_error(cls, status: int, message: str, *, code: str | None = None,
                   headers: Mapping[str, str] | None = None, body: str | None = None) -> Fault:
        """Any HTTP error (401, 403, 404, 400, …) with an OpenAI-style body (or ``body`` verbatim)."""
        return cls("status", status=status, message=message, code=code, headers=dict(headers or {}), body=body)

    @classmethod
    def timeout(cls, seconds: float = 30.0) -> Fault:
        """Answer only after ``seconds`` (longer than the client's time-out)."""
        return cls("timeout", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection without any response."""
        return cls("drop")

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, then reset the connection (TCP RST: the client sees "connection reset by peer")."""
        return cls("reset")

    @classmethod
    def malformed(cls, body: str = "<html><body>502 Bad Gateway</body></html>",
                  content_type: str = "application/json") -> Fault:
        """HTTP 200 whose body is not JSON (declared as ``content_type``)."""
        return cls("malformed", body=body, headers={"Content-Type": content_type})

    @classmethod
    def no_choices(cls) -> Fault:
        """HTTP 200 with a JSON body that has no ``choices``."""
        return cls("no_choices")


Answer = str | Reply | Fault
Script = Answer | Sequence[Answer] | Callable[[dict[str, Any]], Answer]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """The parsed JSON body (``None`` when there was none or it was not JSON)."""
    raw: bytes
    received_at: float


def default_reply(body: Mapping[str, Any]) -> Reply:
    """A judge-like answer: one token ``Yes``/``No`` for short requests, else a per-criterion JSON verdict.

    The verdict is a deterministic function of the last message, so different criteria get different verdicts.
    """
    messages = body.get("messages") or [{}]
    last = str(messages[-1].get("content", "")) if isinstance(messages[-1], dict) else ""
    met = int(hashlib.sha256(last.encode()).hexdigest()[:8], 16) % 3 != 0
    limit = _max_tokens(body)
    if limit is not None and limit <= 2:
        chosen, other = ("Yes", "No") if met else ("No", "Yes")
        return Reply(chosen, top_logprobs=[{chosen: -0.105, other: -2.303}])
    verdict = "met" if met else "unmet"
    return Reply(json.dumps({"rationale": f"The response is judged {verdict} by the scripted server.",
                             "verdict": verdict}))


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class OAIServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 in a background thread.

    ``reply`` scripts the answers (default :func:`default_reply`); ``latency`` delays each answer; ``api_key``
    makes the server demand ``Authorization: Bearer <api_key>`` (401 otherwise); ``models`` restricts the model
    names (404 otherwise); ``rate_limit=(n, seconds)`` answers 429 beyond ``n`` requests per sliding window;
    ``prefix_cache`` emulates automatic prefix caching in ``cached_tokens``; ``structured`` emulates a server's
    dialect of structured output (module docstring).
    """

    def __init__(
        self,
        reply: Script | None = None,
        *,
        latency: float | Callable[[dict[str, Any]], float] = 0.0,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        rate_limit: tuple[int, float] | None = None,
        prefix_cache: bool = True,
        structured: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if structured not in (None, "llamacpp", "none"):
            raise ValueError(f"structured={structured!r}: expected None, 'llamacpp' or 'none'")
        self.latency = latency
        self.structured = structured
        self.api_key = api_key
        self.models = list(models) if models else None
        self.rate_limit = rate_limit
        self.prefix_cache = prefix_cache
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        """TCP connections accepted (a keep-alive client reuses them)."""
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._script: Script | None = None
        self._index = 0
        self._served = 0
        self._recent: deque[float] = deque()
        self._blocks: set[bytes] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        self.script(reply)

    # -- scripting ----------------------------------------------------------------------------------------------

    def script(self, reply: Script | None) -> None:
        """Replace the script (and restart a list script from its first answer)."""
        with self._lock:
            self._script = reply
            self._index = 0

    def _answer(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            script = self._script
            if isinstance(script, (list, tuple)):
                if not script:
                    raise ValueError("OAIServer script is empty")
                answer = script[min(self._index, len(script) - 1)]
                self._index += 1
                return answer
        if script is None:
            return default_reply(body)
        if callable(script) and not isinstance(script, (Reply, Fault)):
            return script(body)
        return script  # type: ignore[return-value]

    # -- lifecycle -----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL clients use, ending in ``/v1``."""
        return f"{self.origin}/v1"

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._address is None:
            raise RuntimeError("OAIServer is not started")
        return f"http://{self._address[0]}:{self._address[1]}"

    @property
    def chat_bodies(self) -> list[Any]:
        """The JSON bodies of the chat-completion requests received, in order."""
        return [r.body for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def start(self) -> OAIServer:
        """Bind and serve from an event loop in a daemon thread."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                server = loop.run_until_complete(asyncio.start_server(
                    self._connection, self._host, self._port, backlog=4096))
                self._address = server.sockets[0].getsockname()[:2]
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, name="oai-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving; answers still waiting (latency, time-outs) are abandoned and their connections closed."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop = None
        self._thread = None
        self._address = None

    def __enter__(self) -> OAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP/1.1 over asyncio streams --------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    return
                method, path, *_ = line.decode("latin-1").split()
                headers: dict[str, str] = {}
                while True:
                    header = await reader.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                response = await self._dispatch(method, path, headers, raw)
                if response is None:  # a dropped connection: close without a byte of response
                    return
                if response is _RESET:  # linger 0 makes the close send RST instead of FIN
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(response)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return  # client gone, garbage on the wire, or the server stopping: the connection just ends
        finally:
            writer.close()

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> bytes | None:
        request = self._record(method, path, headers, raw)
        route = path.split("?")[0].rstrip("/")
        if method == "POST" and route.endswith("/chat/completions"):
            return await self._chat(request)
        if method == "GET" and route.endswith("/models"):
            names = self.models or ["oai-test-model"]
            return _json(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "oai-server"} for name in names]})
        return _error(404, f"Unknown path {path}", "invalid_request_error")

    def _record(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> RecordedRequest:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(method, path, headers, body, raw, time.time())
        with self._lock:
            self.requests.append(request)
        return request

    # -- request handling ---------------------------------------------------------------------------------------

    def _rate_limited(self) -> float | None:
        if self.rate_limit is None:
            return None
        limit, window = self.rate_limit
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] >= window:
                self._recent.popleft()
            if len(self._recent) >= limit:
                return window - (now - self._recent[0])
            self._recent.append(now)
        return None

    def _cached_prefix_tokens(self, messages: Sequence[Any]) -> int:
        text = "".join(f"<{m.get('role')}>{m.get('content')}" for m in messages if isinstance(m, dict))
        digest = hashlib.sha256()
        cached_chars, hit = 0, True
        with self._lock:
            for start in range(0, len(text) - _CACHE_BLOCK + 1, _CACHE_BLOCK):
                digest.update(text[start:start + _CACHE_BLOCK].encode())
                key = digest.digest()
                if hit and key in self._blocks:
                    cached_chars = start + _CACHE_BLOCK
                else:
                    hit = False
                    self._blocks.add(key)
        return len(tokenize(text[:cached_chars]))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        messages = body.get("messages") or []
        text = _constrain(reply.text, body)
        tokens = tokenize(text)
        finish = "stop"
        limit = _max_tokens(body)
        if limit is not None and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
            text = "".join(tokens)
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(len(tokenize(str(m.get("content", "")))) + 4 for m in messages if isinstance(m, dict))
        cached = reply.cached_tokens
        if cached is None:
            cached = min(prompt_tokens, self._cached_prefix_tokens(messages)) if self.prefix_cache else 0
        with self._lock:
            self._served += 1
            serial = self._served
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "logprobs": None, "finish_reason": reply.finish_reason or finish}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": _logprobs(tokens, reply.top_logprobs, int(body.get("top_logprobs") or 0)),
                                  "refusal": None}
        return {
            "id": f"chatcmpl-oai-{serial}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "oai-test-model",
            "system_fingerprint": "fp_oai_server",
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(tokens),
                "total_tokens": prompt_tokens + len(tokens),
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }

    async def _chat(self, request: RecordedRequest) -> bytes | None:
        body = request.body
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided. You can find your API key in your account.",
                          "invalid_request_error", code="invalid_api_key")
        if self.models is not None and body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError",
                          code="model_not_found")
        if body.get("stream"):
            return _error(400, "The test server does not stream.", "invalid_request_error")
        refusal = _structured_refusal(self.structured, body)
        if refusal is not None:
            return refusal
        wait = self._rate_limited()
        if wait is not None:
            headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000))}
            return _error(429, "Rate limit reached for requests", "requests", code="rate_limit_exceeded",
                          headers=headers)
        try:
            answer = self._answer(body)
        except Exception as exc:  # a broken script shows up as a 500 the test can see, not a hung connection
            return _error(500, f"the test's reply script raised {type(exc).__name__}: {exc}", "server_error")
        delay = self.latency(body) if callable(self.latency) else self.latency
        if isinstance(answer, Reply) and answer.delay is not None:
            delay = answer.delay
        if isinstance(answer, Fault) and answer.kind == "timeout":
            delay = max(delay, answer.seconds)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            return self._respond(body, answer)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, body: dict[str, Any], answer: Answer) -> bytes | None:
        if isinstance(answer, str):
            answer = Reply(answer)
        if isinstance(answer, Reply):
            return _json(200, self._completion(body, answer))
        if answer.kind == "status":
            if answer.body is not None:
                return _http(answer.status, answer.body.encode(), answer.headers)
            return _error(answer.status, answer.message, _error_type(answer.status), code=answer.code,
                          headers=answer.headers)
        if answer.kind == "drop":
            return None
        if answer.kind == "reset":
            return _RESET
        if answer.kind == "malformed":
            return _http(200, (answer.body or "").encode(), answer.headers)
        if answer.kind == "no_choices":
            return _json(200, {"id": "chatcmpl-oai-broken", "object": "chat.completion", "model": body.get("model"),
                               "usage": {"prompt_tokens": 1}})
        if answer.kind == "timeout":
            return _json(200, self._completion(body, Reply("too late")))
        raise ValueError(f"unknown fault kind {answer.kind!r}")


def _http(status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    merged = {"Content-Type": "application/json", **dict(headers or {})}
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", "Server: oai-server", f"Content-Length: {len(payload)}"]
    lines += [f"{name}: {value}" for name, value in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _json(status: int, data: Any, headers: Mapping[str, str] | None = None) -> bytes:
    return _http(status, json.dumps(data).encode(), headers)


def _error(status: int, message: str, kind: str, *, code: str | None = None,
           headers: Mapping[str, str] | None = None) -> bytes:
    return _json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)


def _error_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


LLAMACPP_RESPONSE_FORMAT_ERROR = (
    "1 validation error:\n  {{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input "
    "should be 'text' or 'json_object'\", 'input': '{kind}', 'ctx': {{'expected': \"'text' or 'json_object'\"}}}}\n\n"
    "  File \"/venv/lib/python3.11/site-packages/llama_cpp/server/app.py\", line 376, in create_chat_completion\n"
    "    POST /v1/chat/completions")
"""The message of llama-cpp-python 0.3.36's HTTP 500 for a ``response_format`` type it does not know (as measured:
the server wraps the request-validation error in its generic error handler, type ``internal_server_error``)."""


def _structured_refusal(dialect: str | None, body: Mapping[str, Any]) -> bytes | None:
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if dialect == "llamacpp" and kind is not None and kind not in ("text", "json_object"):
        return _error(500, LLAMACPP_RESPONSE_FORMAT_ERROR.format(kind=kind), "internal_server_error")
    if dialect == "none":
        for name in ("response_format", "structured_outputs", "guided_json"):
            if name in body:
                return _error(400, f"Unrecognized request argument supplied: {name}", "invalid_request_error")
    return None


def _constrain(text: str, body: Mapping[str, Any]) -> str:
    """Emulate vLLM's constrained choice: the reply becomes the choice it starts with (else the first choice)."""
    structured = body.get("structured_outputs")
    choices = structured.get("choice") if isinstance(structured, dict) else None
    choices = choices or body.get("guided_choice")
    if not choices:
        return text
    folded = text.strip().lower()
    for choice in choices:
        if folded.startswith(str(choice).lower()):
            return str(choice)
    return str(choices[0])


def _logprobs(tokens: Sequence[str], scripted: Sequence[Mapping[str, float]] | None, top_n: int
              ) -> list[dict[str, Any]]:
    content = []
    for position, token in enumerate(tokens):
        alternatives = dict(scripted[position]) if scripted and position < len(scripted) else {}
        chosen = alternatives.get(token, -0.01)
        alternatives.setdefault(token, chosen)
        filler = 1
        while len(alternatives) < top_n:
            alternatives.setdefault(f"<alt{filler}>", -5.0 - filler)
            filler += 1
        ranked = sorted(alternatives.items(), key=lambda item: -item[1])[:top_n]
        content.append({
            "token": token, "logprob": chosen, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked],
        })
    return content


# -- command line ----------------------------------------------------------------------------------------------


def _random_faults(rate: float, seed: int) -> Callable[[dict[str, Any]], Answer]:
    rng = random.Random(seed)
    lock = threading.Lock()

    def reply(body: dict[str, Any]) -> Answer:
        with lock:
            roll = rng.random()
        if roll < rate / 2:
            return Fault.rate_limit("0", retry_after_ms=50)
        if roll < rate:
            return Fault.server_error(503, "Service temporarily unavailable")
        return default_reply(body)

    return reply


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/oai_server.py --port 0 --latency 0.1``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--reply", default=None, help="answer every request with this text (default: judge-like)")
    parser.add_argument("--api-key", default=None, help="demand this bearer token")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests answered 429/503")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    args = parser.parse_args(argv)
    script: Script | None = args.reply
    if args.fault_rate:
        script = _random_faults(args.fault_rate, args.seed)
    server = OAIServer(script, latency=args.latency, api_key=args.api_key, host=args.host, port=args.port).start()
    print(f"serving an OpenAI-compatible API on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def served(reply: Script | None = None, **options: Any) -> Iterator[OAIServer]:
    """Generator for a pytest fixture: ``yield from served(...)`` starts a server and stops it afterwards."""
    with OAIServer(reply, **options) as server:
        yield server


if __name__ == "__main__":
    raise SystemExit(main())
