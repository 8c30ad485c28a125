"""``openai:MODEL`` — the ``openai`` SDK: OpenAI itself and every OpenAI-compatible server (vLLM, llama.cpp, Ollama,
TGI, LM Studio, …) through ``base_url``.

A thin backend: one request becomes one ``chat.completions`` call and its JSON becomes a :class:`Completion`.
The SDK is built with ``max_retries=0`` because retries, backoff and rate limits are the engine's job; failures are
mapped to :class:`RetryableBackendError` (429, 408/409, 5xx, time-outs, dropped connections, malformed bodies) or
:class:`FatalBackendError` (400/401/403/404/422, exhausted quota), with ``Retry-After`` parsed. The API key goes
only into the client's ``Authorization`` header: never into ``spec``, ``repr()``, exception messages or logs (every
message that may quote a server is passed through :func:`redact`).

This module holds :class:`OpenAIBackend` and a request's path through it; the steps live in sibling modules: the
body (:mod:`.openai_requests`), the lean transport or the SDK (:mod:`.openai_transport`), the failures
(:mod:`.openai_errors`), the reply (:mod:`.openai_replies`) and the form a JSON schema is sent in, negotiated per
server (:mod:`.openai_dialects`). Their helpers (request and response mapping, error mapping, ``Retry-After``
parsing, and the redaction of :mod:`rubrickit.backends._redact`) are re-exported here and shared with
:mod:`rubrickit.backends.litellm_backend`, whose exceptions subclass the ``openai`` SDK's. A base URL is shown only
through :func:`redact_url`, and the SDK's and httpx's own request logs pass through :class:`RedactingFilter` (a
``?api_key=`` in a base URL stays hidden).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ..errors import BackendSpecError, MissingCredentialsError, MissingDependencyError
from ._http import HTTPStatusFailure, LeanClient, TransportConnectionError, TransportTimeout
from ._redact import SECRET_PARAMETER, RedactingFilter, redact, redact_logs, redact_url, url_secrets
from .base import (
    BASE_URL_OPTIONS,
    Capabilities,
    Completion,
    CompletionRequest,
    FatalBackendError,
    RetryableBackendError,
)
from .openai_dialects import (
    _DIALECT_LABELS,
    CAPABILITIES_FILENAME,
    STRUCTURED_DIALECTS,
    Structured,
    _DialectNegotiation,
    _error_text,
    _StructuredRefused,
    forget_negotiated,
    structured_mode,
    structured_refusal,
)
from .openai_errors import _server_message, error_from_status, map_sdk_error, parse_retry_after
from .openai_replies import completion_from_response
from .openai_requests import GuidedMode, _is_openai_platform, guided_mode, output_params
from .openai_transport import TRANSPORTS, Transport, _http_client, _lean_client, import_sdk, transport_mode

__all__ = ["CAPABILITIES_FILENAME", "SECRET_PARAMETER", "STRUCTURED_DIALECTS", "TRANSPORTS", "OpenAIBackend",
           "RedactingFilter", "forget_negotiated", "parse_retry_after", "redact", "redact_logs", "redact_url",
           "structured_refusal", "url_secrets"]

_OPENAI_URL = "https://api.openai.com/v1"


class OpenAIBackend(_DialectNegotiation):
    """OpenAI or any OpenAI-compatible server, through the lean aiohttp transport (default) or the ``openai`` SDK.

    ``base_url`` points at another server (``http://127.0.0.1:8000/v1`` for vLLM); ``api_key`` defaults to
    ``OPENAI_API_KEY`` (a placeholder is sent to a ``base_url`` when neither is set); ``timeout`` is per request.
    ``guided`` turns on vLLM's constrained choice (``True``/``"structured_outputs"``, or ``"guided_choice"`` for
    vLLM < 0.12) and with it ``capabilities.choices``. ``max_tokens_param`` picks the body field for
    ``max_tokens``: ``"auto"`` sends ``max_completion_tokens`` to api.openai.com (its reasoning models reject
    ``max_tokens``) and ``max_tokens`` to every other server (llama.cpp and llamafile ignore the newer name).
    ``strict_schema`` forces OpenAI's strict JSON-schema mode on or off (default: on when the schema qualifies).
    ``extra_body`` is merged into every request body (e.g. ``{"chat_template_kwargs": {"enable_thinking": False}}``
    for vLLM). ``drop_params`` names body fields never to send (``("temperature",)`` for OpenAI reasoning models,
    which reject any temperature but 1).

    ``transport`` picks the HTTP client: ``"lean"`` (the default, or ``$RUBRICKIT_TRANSPORT``) posts plain JSON
    over a pooled keep-alive aiohttp session (:mod:`rubrickit.backends._http`): about a third of the SDK's client
    CPU per request, with the same errors, time-outs and redaction; it takes the client options
    ``default_headers``, ``default_query``, ``organization`` and ``project``. ``"sdk"`` goes through
    ``openai.AsyncOpenAI``, to which every other keyword option is passed (``http_client``, …); its
    ``http_transport`` is ``"auto"`` (aiohttp when installed, else httpx), ``"aiohttp"`` or ``"httpx"``.

    ``structured`` picks the form of structured output (:data:`STRUCTURED_DIALECTS`): ``"auto"`` (the default, or
    ``$RUBRICKIT_STRUCTURED_OUTPUT``) negotiates it per server: a request whose form the server refuses
    (:func:`structured_refusal`) is sent again at once in the next form — not a retry, no backoff — and the form
    that was accepted is remembered per (endpoint, model) for the process and for :data:`CAPABILITIES_TTL` in
    ``capabilities_dir/capabilities.json`` (default: the judge cache folder; ``False``: no file). A forced form that
    the server refuses is a :class:`FatalBackendError`: sending it again cannot help.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        guided: bool | GuidedMode = False,
        max_tokens_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto",
        strict_schema: bool | None = None,
        extra_body: Mapping[str, Any] | None = None,
        drop_params: Iterable[str] = (),
        transport: Transport | None = None,
        http_transport: Literal["auto", "aiohttp", "httpx"] = "auto",
        structured: Structured | None = None,
        capabilities_dir: str | Path | Literal[False] | None = None,
        **client_options: Any,
    ):
        if not model or not model.strip():
            raise BackendSpecError("openai: needs a model name, e.g. 'openai:gpt-4.1-mini'")
        self._structured = structured_mode(structured)
        if max_tokens_param not in ("auto", "max_tokens", "max_completion_tokens"):
            raise BackendSpecError(f"max_tokens_param={max_tokens_param!r}: expected 'auto', 'max_tokens' or "
                                   "'max_completion_tokens'")
        redact_logs()
        self.model = model
        self.spec = f"openai:{model}"
        self.base_url = base_url
        self.timeout = float(timeout)
        self._guided = guided_mode(guided)
        self._strict = strict_schema
        self._extra_body = dict(extra_body or {})
        self._drop = frozenset(drop_params)
        effective_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if max_tokens_param == "auto":
            max_tokens_param = "max_completion_tokens" if _is_openai_platform(effective_url) else "max_tokens"
        self._max_tokens_param = max_tokens_param
        self.cache_endpoint = effective_url
        """The server this backend talks to (part of the judge cache's key; credentials are stripped there)."""
        self._capabilities_dir = capabilities_dir
        self._capabilities_loaded = False
        if effective_url and "@" in (urlsplit(effective_url).netloc if "://" in effective_url else ""):
            # The key travels as a bearer token; user:password@ in the URL would clash with it on every request
            # (aiohttp refuses both at once), which looks like an outage. Say so at once instead.
            raise BackendSpecError(
                f"{self.spec}: the base URL {redact_url(effective_url)} carries credentials (user:password@), which "
                "the openai backend does not send; remove them and pass the key in OPENAI_API_KEY (or a header "
                "with the backend option default_headers)")
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if key is None:
            if effective_url is None:
                raise MissingCredentialsError(
                    f"{self.spec} needs an API key: set the OPENAI_API_KEY environment variable (or give the base "
                    f"URL of an OpenAI-compatible server, which needs none, with {BASE_URL_OPTIONS})")
            key = "EMPTY"  # local servers (vLLM, llama.cpp, Ollama) accept any key, but the SDK insists on one
        self.capabilities = Capabilities(logprobs=True, json_schema=True, choices=self._guided is not None,
                                         prefix_cache=True)
        # An SDK http_transport named without a transport asks for the SDK (the option predates the lean transport).
        self.transport = transport_mode("sdk" if transport is None and http_transport != "auto" else transport)
        """``"lean"`` (aiohttp, plain JSON) or ``"sdk"`` (the openai SDK)."""
        self._api_key = key
        self._client: Any = None
        self._lean: LeanClient | None = None
        if self.transport == "lean":
            if http_transport != "auto":
                raise BackendSpecError(f"http_transport={http_transport!r} is an option of transport='sdk' (the lean "
                                       "transport is aiohttp itself)")
            try:
                self._lean = _lean_client(effective_url or _OPENAI_URL, key, self.timeout, client_options)
            except ImportError:
                raise MissingDependencyError("the lean transport needs the 'aiohttp' package; install it with: "
                                             "pip install 'rubrickit[api]' (or pass transport='sdk')") from None
            return
        if "http_client" not in client_options:
            http_client = _http_client(http_transport, self.timeout)
            if http_client is not None:
                client_options["http_client"] = http_client
        openai = import_sdk("openai")
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout,
                                          **client_options)
        import httpx  # the SDK's own dependency

        self._httpx = httpx

    def __repr__(self) -> str:
        where = f", base_url={redact_url(self.base_url)!r}" if self.base_url else ""
        return f"OpenAIBackend(spec={self.spec!r}{where})"

    def _secrets(self) -> tuple[str | None, ...]:
        return (getattr(self, "_api_key", None), *url_secrets(getattr(self, "cache_endpoint", None)))

    def request_params(self, request: CompletionRequest, structured: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request``, its schema sent in the form
        ``structured`` (default: the forced form, else the one negotiated with this server so far)."""
        if structured is None:
            structured = self._structured if self._structured != "auto" else STRUCTURED_DIALECTS[self._start_index()]
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            self._max_tokens_param: request.max_tokens,
        }
        params.update(output_params(request, extra_body=self._extra_body, guided=self._guided, strict=self._strict,
                                    structured=structured))
        for name in self._drop:
            params.pop(name, None)
        return params

    async def complete(self, request: CompletionRequest) -> Completion:
        """One chat-completion call; failures become :class:`RetryableBackendError` / :class:`FatalBackendError`.

        A request with a JSON schema whose form of structured output the server refuses is sent again at once in
        the next form (:data:`STRUCTURED_DIALECTS`); that is negotiation, not a retry.
        """
        negotiates = request.json_schema is not None and not (request.choices and self._guided is not None)
        if not negotiates:
            return await self._post(self.request_params(request), None)
        if self._structured != "auto":
            dialect = self._structured
            try:
                return await self._post(self.request_params(request, dialect), dialect)
            except _StructuredRefused as refusal:
                raise FatalBackendError(
                    f"{self.spec}: HTTP {refusal.status}: the server refuses {_DIALECT_LABELS[dialect]} "
                    f"({refusal.detail[:300]}) — structured={dialect!r} was forced; use structured='auto' to "
                    "negotiate a form it takes", status=refusal.status) from None
        index = self._start_index()
        while True:
            dialect = STRUCTURED_DIALECTS[index]
            try:
                return await self._post(self.request_params(request, dialect), dialect)
            except _StructuredRefused as refusal:
                self._refused(index, refusal)
                index = max(index + 1, self._start_index())  # "none" sends no constraint: it is never refused

    async def _post(self, params: dict[str, Any], dialect: str | None) -> Completion:
        body = {**{k: v for k, v in params.items() if k != "extra_body"}, **params.get("extra_body", {})}
        if self._lean is not None:
            status, raw = await self._post_lean(body, dialect)
        else:
            status, raw = await self._post_sdk(body, dialect)
        try:
            data = json.loads(raw)
        except ValueError:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            snippet = redact(" ".join(text[:120].split()), self._secrets())
            raise RetryableBackendError(f"{self.spec}: malformed body: HTTP {status} but not JSON ({snippet!r})",
                                        status=status) from None
        if not isinstance(data, Mapping):
            raise RetryableBackendError(f"{self.spec}: malformed body: expected a JSON object")
        return completion_from_response(data, spec=self.spec)

    def _refusal(self, exc: BaseException, status: Any, dialect: str | None) -> _StructuredRefused | None:
        """The server's refusal of the structured-output form ``dialect``, if ``exc`` is one."""
        if dialect is None or not isinstance(status, int):
            return None
        detail, param = _error_text(exc)
        if not structured_refusal(status, detail, dialect, param):
            return None
        detail = _server_message(exc).split(' File "')[0].strip()  # llama-cpp-python appends a trace
        return _StructuredRefused(status, redact(detail, self._secrets()))

    async def _post_lean(self, body: dict[str, Any], dialect: str | None) -> tuple[int, bytes]:
        assert self._lean is not None
        try:
            return await self._lean.post_json(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        except HTTPStatusFailure as exc:
            refusal = self._refusal(exc, exc.status_code, dialect)
            if refusal is not None:
                raise refusal from None
            raise error_from_status(exc.status_code, exc, spec=self.spec, model=self.model, base_url=self.base_url,
                                    headers=exc.headers, secrets=self._secrets()) from None
        except TransportTimeout:
            raise RetryableBackendError(f"{self.spec}: request timed out after {self.timeout:g}s") from None
        except TransportConnectionError as exc:
            raise RetryableBackendError(f"{self.spec}: connection failed ({redact(str(exc), self._secrets())}); is "
                                        f"the server at {redact_url(self.cache_endpoint) or 'the provider'} "
                                        "reachable?") from None

    async def _post_sdk(self, body: dict[str, Any], dialect: str | None) -> tuple[int, str]:
        try:
            # The SDK's documented low-level call: the same client, auth, errors and transport as
            # chat.completions.create, without re-walking our already plain-JSON params through its TypedDict
            # transform on every call (38% of the client's CPU at 500 calls/s, bench/RESULTS.md section a).
            response = await self._client.post("/chat/completions", cast_to=self._httpx.Response, body=body)
            return response.status_code, response.text
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            refusal = self._refusal(exc, status, dialect)
            if refusal is not None:
                raise refusal from None
            mapped = map_sdk_error(exc, spec=self.spec, model=self.model, base_url=self.base_url,
                                   timeout=self.timeout, secrets=self._secrets())
            if mapped is None:
                raise
            raise mapped from None  # the SDK's exception may quote the server verbatim; ours is redacted

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        if self._lean is not None:
            await self._lean.aclose()
        else:
            await self._client.close()
