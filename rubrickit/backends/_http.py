"""HTTP clients of the ``openai:`` backend: the lean transport (aiohttp, plain JSON) and the SDK's aiohttp adapter.

**The lean transport** (:class:`LeanClient`, the default, ``transport="lean"``) sends a chat-completion request as
one ``POST {base_url}/chat/completions`` over a pooled keep-alive aiohttp session: the body is encoded once, the
headers (``Authorization``, organisation, project, ``default_headers``) are built once per backend, and the reply is
read as bytes and parsed once. What the ``openai`` SDK adds per request — request options and headers rebuilt, the
retry wrapper (``max_retries=0`` anyway), an ``httpx.Request`` and ``httpx.Response`` around each call, its own
logging — is the client's largest CPU cost at high concurrency (bench/RESULTS.md, "Throughput at the physical
limit": about 3× the lean transport's CPU per request). Failures are
raised as :class:`HTTPStatusFailure` (a status with the server's error body, shaped like the SDK's
``APIStatusError``: ``status_code``, ``body`` = the ``error`` object, ``message``, ``code``, ``headers``),
:class:`TransportTimeout` or :class:`TransportConnectionError`, which the backend maps with the same functions as
the SDK's errors, so both transports give the same error classes and messages.

Why aiohttp and not httpx: httpx's pool slows down sharply when many keep-alive connections are reused concurrently
(encode/httpx#3215); measured against the bench server at 1 s latency and 512 calls in flight, httpx reached 0.05 of
the ideal wall time at 15 ms of client CPU per request, aiohttp 0.93 at 0.15 ms (bench/RESULTS.md). aiohttp speaks
HTTP/1.1 only; the servers this path is for (vLLM, SGLang, llama.cpp, TGI, Ollama) do too, and keep-alive
connections (one per request in flight, reused) leave nothing for HTTP/2 multiplexing to save on loopback or LAN.
``transport="sdk"`` keeps the ``openai`` SDK (and through ``http_transport="httpx"`` its httpx client).

**Sessions and event loops.** An aiohttp session belongs to one event loop. :class:`LoopSession` opens one per loop
on first use and closes it while that loop still runs (an async generator that ``asyncio.run()`` finalises before it
closes the loop), so a backend used by several ``asyncio.run()`` calls leaks no sockets. Connection limits are left
to the engine's concurrency limit (``limit=0``). Proxies from ``HTTP(S)_PROXY``/``ALL_PROXY`` are honoured only when
one is set (``trust_env`` makes aiohttp read ``~/.netrc`` and the proxy variables on every request: two thread-pool
hops per call).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["HTTPStatusFailure", "LeanClient", "LoopSession", "TransportConnectionError", "TransportTimeout",
           "aiohttp_http_client", "proxy_configured"]

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def proxy_configured() -> bool:
    """Whether the environment names an HTTP proxy."""
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


class HTTPStatusFailure(Exception):
    """An HTTP error status, shaped like the SDK's ``APIStatusError`` for the shared error mapping."""

    def __init__(self, status: int, raw: bytes, headers: Any):
        text = raw.decode("utf-8", "replace").strip()
        body: Any = text
        try:
            parsed = json.loads(text)
        except ValueError:
            message = text or f"Error code: {status}"
        else:
            message = f"Error code: {status} - {parsed}"
            body = parsed.get("error", parsed) if isinstance(parsed, Mapping) else parsed
        super().__init__(message)
        self.status_code = status
        self.body = body
        self.message = message
        self.headers = headers
        code = body.get("code") if isinstance(body, Mapping) else None
        self.code = code if isinstance(code, str) else None


class TransportTimeout(Exception):
    """No reply (or no connection) within the time-out."""


class TransportConnectionError(Exception):
    """The connection could not be opened, or broke before a whole reply came back."""


async def _close_at_loop_end(session: Any) -> Any:
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


class LoopSession:
    """One pooled keep-alive ``aiohttp.ClientSession`` per event loop (see the module docstring)."""

    def __init__(self) -> None:
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard: Any = None

    async def get(self) -> Any:
        """The session of the running loop, opened on first use."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._loop is loop and not session.closed:
            return session
        return await self._open(loop)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Any:
        import aiohttp

        self._abandon()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=proxy_configured())
        # Close the session while its loop still runs: asyncio.run() closes suspended async generators before it
        # closes the loop, so a backend reused across asyncio.run() calls leaks no sockets.
        guard = _close_at_loop_end(session)
        await guard.__anext__()
        self._session, self._loop, self._guard = session, loop, guard
        return session

    def _abandon(self) -> None:
        # A session whose loop ended without closing async generators cannot be awaited closed; drop its pool.
        session, self._session, self._guard = self._session, None, None
        if session is not None and not session.closed:
            try:
                session.connector._close()
            except Exception:
                pass

    async def aclose(self) -> None:
        """Close the session (from its own loop), or drop its pool (from another one)."""
        session, guard = self._session, self._guard
        if session is None:
            return
        if self._loop is asyncio.get_running_loop():
            self._session, self._guard = None, None
            await session.close()
            await guard.aclose()
        else:
            self._abandon()


class LeanClient:
    """``POST`` JSON to one OpenAI-compatible endpoint over a pooled keep-alive aiohttp session.

    ``headers`` are sent with every request (built once); ``timeout`` bounds connecting and each read (as the SDK's
    httpx time-out does), not the whole exchange. :meth:`post_json` returns the parsed reply's raw bytes and status
    for a 2xx reply, raises :class:`HTTPStatusFailure` for any other status, :class:`TransportTimeout` and
    :class:`TransportConnectionError` for the rest.
    """

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float):
        import aiohttp

        self._aiohttp = aiohttp
        self.url = url
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._sessions = LoopSession()

    async def post_json(self, body: bytes) -> tuple[int, bytes]:
        """Send ``body`` (encoded JSON); the reply's status and bytes (a 2xx status: errors raise)."""
        aiohttp = self._aiohttp
        session = await self._sessions.get()
        try:
            async with session.post(self.url, data=body, headers=self._headers, timeout=self._timeout) as response:
                raw = await response.read()
                status = response.status
                if status >= 300:
                    raise HTTPStatusFailure(status, raw, response.headers)
                return status, raw
        except asyncio.TimeoutError as exc:  # aiohttp's ServerTimeoutError and ConnectionTimeoutError included
            raise TransportTimeout(str(exc)) from None
        except aiohttp.InvalidURL:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportConnectionError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        """Close the connections."""
        await self._sessions.aclose()


def aiohttp_http_client(timeout: float) -> Any:
    """An ``httpx.AsyncClient`` for the ``openai`` SDK whose requests go through aiohttp (``transport="sdk"``).

    httpx's own pool slows down sharply when many keep-alive connections are reused concurrently (encode/httpx#3215),
    so the SDK gets this adapter when aiohttp is installed (``rubrickit[api]``); see the module docstring.
    """
    import aiohttp
    import httpx

    dropped = {b"content-encoding", b"content-length", b"transfer-encoding"}

    class AiohttpTransport(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._sessions = LoopSession()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            session = await self._sessions.get()
            limits = request.extensions.get("timeout") or {}
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=limits.get("connect"),
                                            sock_read=limits.get("read"))
            headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
            body = await request.aread()
            try:
                async with session.request(request.method, str(request.url), headers=headers, data=body or None,
                                           allow_redirects=False, timeout=timeout) as response:
                    content = await response.read()
                    status = response.status
                    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers
                           if k.lower() not in dropped]  # aiohttp already decoded the body
            except asyncio.TimeoutError as exc:
                raise httpx.ReadTimeout(f"{type(exc).__name__}: timed out", request=request) from exc
            except aiohttp.ClientConnectorError as exc:
                raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
            except aiohttp.ServerDisconnectedError as exc:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                request=request) from exc
            except aiohttp.ClientError as exc:
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
            return httpx.Response(status, headers=raw, content=content, request=request)

        async def aclose(self) -> None:
            await self._sessions.aclose()

    return httpx.AsyncClient(transport=AiohttpTransport(), timeout=timeout, follow_redirects=True)
