"""``openai:MODEL`` — the ``openai`` SDK: OpenAI itself and every OpenAI-compatible server (vLLM, llama.cpp, Ollama,
TGI, LM Studio, …) through ``base_url``.

A thin backend: one request becomes one ``chat.completions`` call and its JSON becomes a :class:`Completion`.
The SDK is built with ``max_retries=0`` because retries, backoff and rate limits are the engine's job; failures are
mapped to :class:`RetryableBackendError` (429, 408/409, 5xx, time-outs, dropped connections, malformed bodies) or
:class:`FatalBackendError` (400/401/403/404/422, exhausted quota), with ``Retry-After`` parsed. The API key goes
only into the client's ``Authorization`` header: never into ``spec``, ``repr()``, exception messages or logs (every
message that may quote a server is passed through :func:`redact`).

The helpers here (response mapping, error mapping, ``Retry-After`` parsing, and the redaction of
:mod:`rubrickit.backends._redact`, re-exported) are shared with :mod:`rubrickit.backends.litellm_backend`, whose
exceptions subclass the ``openai`` SDK's. A base URL is shown only through :func:`redact_url`, and the SDK's and
httpx's own request logs pass through :class:`RedactingFilter` (a ``?api_key=`` in a base URL stays hidden).
"""

from __future__ import annotations

import email.utils
import importlib
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from ..errors import BackendSpecError, MissingCredentialsError, MissingDependencyError
from ._http import (
    HTTPStatusFailure,
    LeanClient,
    TransportConnectionError,
    TransportTimeout,
    aiohttp_http_client,
)
from ._redact import SECRET_PARAMETER, RedactingFilter, redact, redact_logs, redact_url, url_secrets
from .base import (
    BASE_URL_OPTIONS,
    Capabilities,
    Completion,
    CompletionRequest,
    FatalBackendError,
    RetryableBackendError,
    TokenLogprob,
    Usage,
)

__all__ = ["CAPABILITIES_FILENAME", "SECRET_PARAMETER", "STRUCTURED_DIALECTS", "OpenAIBackend", "RedactingFilter",
           "forget_negotiated", "parse_retry_after", "redact", "redact_logs", "redact_url", "structured_refusal",
           "url_secrets"]

GuidedMode = Literal["structured_outputs", "guided_choice"]
Structured = Literal["auto", "json_schema", "json_object", "guided", "none"]

_RETRYABLE_STATUS = {408, 409, 425, 429}
_OPENAI_URL = "https://api.openai.com/v1"
_STATUS_HINTS = {
    400: "the server rejected the request; check that the model supports the parameters sent "
         "(json_schema response_format, logprobs, seed, max tokens) and that the prompt fits its context",
    401: "authentication failed; check the API key ({key_hint})",
    403: "permission denied; check that the key may use model '{model}'",
    404: "not found; check the model name '{model}' and the base URL {base_url}",
    413: "the request is too large for the server",
    422: "the server could not process the request; check the parameters it supports",
}


def import_sdk(module: str, extra: str = "api") -> Any:
    """Import an optional SDK, or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the '{module}' package is needed for this judge backend but could not be imported ({exc}); "
            f"install it with: pip install 'rubrickit[{extra}]'"
        ) from None


# -- Retry-After -----------------------------------------------------------------------------------------------


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):
            lowered = {str(k).lower(): v for k, v in headers.items()}
            value = lowered.get(name.lower())
    except Exception:  # a header container we do not know; Retry-After is a hint, never worth a crash
        return None
    return None if value is None else str(value)


def parse_retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date; ``None`` if absent."""
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# -- response mapping (dicts from JSON, or SDK/litellm objects) -------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    if type(obj) is dict:  # parsed JSON: skip the (slow) Mapping ABC check
        return obj.get(name)
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _token_logprobs(logprobs: Any) -> tuple[TokenLogprob, ...] | None:
    content = _get(logprobs, "content")
    if not isinstance(content, (list, tuple)):
        return None
    tokens = []
    for entry in content:
        token, logprob = _get(entry, "token"), _get(entry, "logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)):
            continue
        top: dict[str, float] = {}
        for alt in _get(entry, "top_logprobs") or ():
            alt_token, alt_logprob = _get(alt, "token"), _get(alt, "logprob")
            if isinstance(alt_token, str) and isinstance(alt_logprob, (int, float)):
                # The same text can come from two token ids (byte-level BPE): their probability mass adds up.
                previous = top.get(alt_token)
                top[alt_token] = float(alt_logprob) if previous is None else _logaddexp(previous, float(alt_logprob))
        if top and token not in top:
            top[token] = float(logprob)
        tokens.append(TokenLogprob(token=token, logprob=float(logprob), top=top))
    return tuple(tokens)


def _logaddexp(a: float, b: float) -> float:
    high, low = max(a, b), min(a, b)
    if high == -math.inf:
        return high
    return high + math.log1p(math.exp(low - high))


def completion_from_response(data: Any, *, spec: str, cost: float | None = None) -> Completion:
    """Map a chat-completion response (parsed JSON or an SDK object) to a :class:`Completion`.

    A body without a usable first choice is a malformed body: :class:`RetryableBackendError`.
    """
    choices = _get(data, "choices")
    if not isinstance(choices, (list, tuple)) or not choices:
        raise RetryableBackendError(f"{spec}: malformed body: the response has no choices")
    choice = choices[0]
    message = _get(choice, "message")
    text = _get(message, "content")
    if text is None:
        # Refusals and reasoning models that spent every token thinking: no content. The engine parses "" as
        # unparseable and records why; the finish reason says which.
        text = _get(message, "refusal") or ""
    if not isinstance(text, str):
        raise RetryableBackendError(f"{spec}: malformed body: message content is {type(text).__name__}, not text")
    usage = _get(data, "usage")
    details = _get(usage, "prompt_tokens_details")
    cached = _int(_get(details, "cached_tokens"))
    if not cached:  # llama.cpp reports its KV-cache reuse in timings
        cached = _int(_get(_get(data, "timings"), "cache_n"))
    finish = _get(choice, "finish_reason")
    model = _get(data, "model")
    return Completion(
        text=text,
        logprobs=_token_logprobs(_get(choice, "logprobs")),
        usage=Usage(input_tokens=_int(_get(usage, "prompt_tokens")),
                    output_tokens=_int(_get(usage, "completion_tokens")), cached_tokens=cached),
        cost=cost,
        finish_reason=str(finish) if finish is not None else None,
        model=str(model) if model is not None else None,
    )


# -- error mapping ---------------------------------------------------------------------------------------------


_WRAPPERS = re.compile(r"^(?:litellm\.\w+:\s*|\w+Error:\s*|\w+Exception\s*-\s*)+")
"""litellm's class-name prefixes ("litellm.InternalServerError: InternalServerError: OpenAIException - ")."""


def _server_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else error
    if not message:
        message = getattr(exc, "message", None) or str(exc)
    text = _WRAPPERS.sub("", " ".join(str(message).split()))
    return text[:400] + ("…" if len(text) > 400 else "")


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    return code if isinstance(code, str) else None


def error_from_status(status: int, exc: BaseException, *, spec: str, model: str, base_url: str | None,
                      headers: Any, secrets: Iterable[str | None] = (), key_hint: str = "OPENAI_API_KEY"
                      ) -> RetryableBackendError | FatalBackendError:
    """Map an HTTP error status (with its exception for the server's message) to a backend error."""
    detail = redact(_server_message(exc), secrets)
    code = _error_code(exc)
    if status == 429 and (code == "insufficient_quota" or "exceeded your current quota" in detail.lower()):
        return FatalBackendError(f"{spec}: HTTP 429 insufficient quota: {detail}; retrying will not help, "
                                 "check the account's plan and billing", status=status)
    if status in _RETRYABLE_STATUS or status >= 500:
        retry_after = parse_retry_after(headers)
        wait = f" (server asks to retry after {retry_after:g}s)" if retry_after is not None else ""
        return RetryableBackendError(f"{spec}: HTTP {status}: {detail}{wait}", status=status,
                                     retry_after=retry_after)
    hint = _STATUS_HINTS.get(status, "the request failed and retrying will not fix it")
    hint = hint.format(model=model, base_url=redact_url(base_url) or "(the provider's default)",
                       key_hint=key_hint)
    return FatalBackendError(f"{spec}: HTTP {status}: {detail} — {hint}", status=status)


def map_sdk_error(exc: BaseException, *, spec: str, model: str, base_url: str | None, timeout: float | None,
                  secrets: Iterable[str | None] = (), key_hint: str = "OPENAI_API_KEY"
                  ) -> RetryableBackendError | FatalBackendError | None:
    """Map an ``openai`` SDK exception (litellm's subclass them) to a backend error; ``None`` if it is not one."""
    openai = importlib.import_module("openai")
    secrets = tuple(secrets)
    if isinstance(exc, openai.APITimeoutError):
        limit = f" after {timeout:g}s" if timeout else ""
        return RetryableBackendError(f"{spec}: request timed out{limit}", status=getattr(exc, "status_code", None))
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APIConnectionError) and not isinstance(status, int):
        cause = exc.__cause__ or exc.__context__
        reason = redact(f"{type(cause).__name__}: {cause}" if cause else _server_message(exc), secrets)
        return RetryableBackendError(f"{spec}: connection failed ({reason}); is the server at "
                                     f"{redact_url(base_url) or 'the provider'} reachable?")
    if isinstance(exc, (openai.APIStatusError, openai.APIError)) and isinstance(status, int):
        headers = (getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
                   or getattr(getattr(exc, "response", None), "headers", None))
        return error_from_status(status, exc, spec=spec, model=model, base_url=base_url, headers=headers,
                                 secrets=secrets, key_hint=key_hint)
    if isinstance(exc, openai.APIError):
        return RetryableBackendError(f"{spec}: API error: {redact(_server_message(exc), secrets)}")
    return None


# -- request mapping -------------------------------------------------------------------------------------------

_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _schema_name(schema: Mapping[str, Any]) -> str:
    title = schema.get("title")
    name = _NAME.sub("_", title).strip("_") if isinstance(title, str) else ""
    return (name or "judgment")[:64]


def strict_compatible(schema: Any) -> bool:
    """Whether a JSON Schema meets OpenAI's strict structured-output rules (every object closed, all keys required)."""
    if isinstance(schema, list):
        return all(strict_compatible(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, Mapping):
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties or {}):
            return False
    return all(strict_compatible(value) for key, value in schema.items() if key not in ("enum", "const", "default"))


def response_format(schema: Mapping[str, Any], strict: bool | None) -> dict[str, Any]:
    """The ``response_format`` asking for JSON matching ``schema`` (strict when asked, or when it qualifies).

    Made once per schema object: the engine sends the same schema with every call of a kind, and walking it for
    :func:`strict_compatible` on each call was a tenth of the client's own work per request. Treat the result as
    read-only."""
    key = (id(schema), strict)
    known = _FORMATS.get(key)
    if known is not None and known[0] is schema:
        return known[1]
    use_strict = strict_compatible(schema) if strict is None else strict
    made = {"type": "json_schema",
            "json_schema": {"name": _schema_name(schema), "schema": dict(schema), "strict": use_strict}}
    if len(_FORMATS) >= 256:
        _FORMATS.clear()
    _FORMATS[key] = (schema, made)  # the schema is held, so its id is not reused while the entry lives
    return made


_FORMATS: dict[tuple[int, bool | None], tuple[Mapping[str, Any], dict[str, Any]]] = {}


def guided_choice_body(choices: Iterable[str], mode: GuidedMode) -> dict[str, Any]:
    """vLLM's constrained-choice request fields (``structured_outputs`` since 0.10.2; ``guided_choice`` before 0.12)."""
    if mode == "guided_choice":
        return {"guided_choice": list(choices)}
    return {"structured_outputs": {"choice": list(choices)}}


def guided_mode(guided: bool | str) -> GuidedMode | None:
    """Normalise the ``guided`` option."""
    if guided is True or guided == "structured_outputs":
        return "structured_outputs"
    if guided == "guided_choice":
        return "guided_choice"
    if guided is False or guided is None:
        return None
    raise BackendSpecError(f"guided={guided!r}: expected true, 'structured_outputs' (vLLM >= 0.10.2) or "
                           "'guided_choice' (older vLLM)")


def _is_openai_platform(base_url: str | None) -> bool:
    if not base_url:
        return True
    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    return host == "api.openai.com"


# -- structured-output dialects and their negotiation -------------------------------------------------------------

STRUCTURED_DIALECTS: tuple[str, ...] = ("json_schema", "json_object", "guided", "none")
"""The forms of structured output tried, in order, against a server that refuses one: OpenAI's
``response_format: {"type": "json_schema", …}`` (OpenAI, vLLM, SGLang, llama.cpp's ``llama-server``, Ollama,
LM Studio); ``{"type": "json_object", "schema": …}`` (llama-cpp-python's server, Together, Anyscale); vLLM's
``structured_outputs: {"json": …}`` (``guided_json`` with ``guided="guided_choice"``, for vLLM < 0.12); and no
constraint at all (the prompt's own JSON contract and the engine's tolerant parser do the work)."""

_DIALECT_LABELS = {
    "json_schema": "response_format json_schema",
    "json_object": "response_format json_object+schema",
    "guided": "vLLM structured_outputs/guided_json",
    "none": "plain JSON prompting (no constraint)",
}

CAPABILITIES_FILENAME = "capabilities.json"
"""What was negotiated per (endpoint, model), in the judge cache folder. Never a key: endpoints are stored as
:func:`rubrickit.judge.cache.endpoint_identity` writes them (no ``user:password@``, no credential parameters)."""

CAPABILITIES_TTL = 24 * 3600.0
"""Seconds a remembered dialect is trusted; older entries are negotiated again (a server may have been upgraded or
replaced by another one on the same port)."""

_STRUCTURED_ENV = "RUBRICKIT_STRUCTURED_OUTPUT"
"""The default of the ``structured`` option when the caller gives none (the command line has no flag for it)."""

_DIALECT_FIELDS = {"json_schema": ("response_format",), "json_object": ("response_format",),
                   "guided": ("structured_outputs", "guided_json")}
"""The body fields each dialect sends: a refusal must name one of them."""

_REFUSAL_WORDS = re.compile(
    r"(?i)not supported|unsupported|does not support|doesn't support|input should be|unknown variant|unknown field|"
    r"unrecogni[sz]ed|not allowed|not permitted|extra (?:inputs|fields)|unexpected|invalid|validation error|"
    r"must contain the word|is not one of|not a valid")
_SCHEMA_PROBLEM = re.compile(r"(?i)invalid schema")
"""A server that takes the form but not this particular schema: the schema's problem, not the dialect's."""

_negotiated: dict[str, int] = {}
"""Per (endpoint, model): the index in :data:`STRUCTURED_DIALECTS` of the first dialect not refused (process-wide,
so every backend of a run that talks to one server shares what the first learned)."""
_announced: set[tuple[str, int]] = set()
_negotiation_lock = threading.Lock()


def forget_negotiated() -> None:
    """Forget every dialect negotiated in this process (tests; the file in the cache folder is not touched)."""
    with _negotiation_lock:
        _negotiated.clear()
        _announced.clear()


def _error_text(exc: BaseException) -> tuple[str, str | None]:
    """The server's whole error text (not truncated) and the error's ``param``, for refusal detection."""
    body = getattr(exc, "body", None)
    parts = [str(getattr(exc, "message", "") or exc)]
    param = None
    if body is not None:
        try:
            parts.append(json.dumps(body, default=str))
        except (TypeError, ValueError):
            parts.append(str(body))
        error = body.get("error", body) if isinstance(body, Mapping) else None
        if isinstance(error, Mapping) and isinstance(error.get("param"), str):
            param = error["param"]
    return " ".join(parts), param


def structured_refusal(status: int | None, text: str, dialect: str, param: str | None = None) -> bool:
    """Whether an HTTP error refuses the *form* of structured output ``dialect`` sent (so another form may work).

    The error must name a field the dialect sent (``response_format``; ``structured_outputs``/``guided_json``), in
    its message or its ``param``: any 400/413/422 that does (OpenAI "'response_format' of type 'json_schema' is not
    supported with this model", TGI "response_format: unknown variant `json_schema`"), or a 500/501 that does with
    a refusal word (llama-cpp-python answers a request-validation failure with HTTP 500: "… 'response_format', 'type'
    … Input should be 'text' or 'json_object'"). Any other 5xx stays a retryable server error; "Invalid schema" is
    the schema's problem, not the dialect's.
    """
    fields = _DIALECT_FIELDS.get(dialect)
    if not fields or status is None or _SCHEMA_PROBLEM.search(text):
        return False
    lowered = text.lower()
    named = param in fields or any(field in lowered for field in fields)
    if not named:
        return False
    if status in (400, 413, 422):
        return True
    return status in (500, 501) and bool(_REFUSAL_WORDS.search(text))


def structured_mode(structured: str | None) -> str:
    """Normalise the ``structured`` option (``None``: ``$RUBRICKIT_STRUCTURED_OUTPUT``, else ``"auto"``)."""
    value = structured if structured is not None else (os.environ.get(_STRUCTURED_ENV) or "auto")
    value = str(value).strip().lower()
    if value == "auto" or value in STRUCTURED_DIALECTS:
        return value
    source = f"${_STRUCTURED_ENV}" if structured is None else "structured"
    raise BackendSpecError(f"{source}={value!r}: expected 'auto' (negotiate per server), 'json_schema', "
                           "'json_object' (llama-cpp-python: json_object + schema), 'guided' (vLLM "
                           "structured_outputs) or 'none' (no constraint: prompt for JSON)")


def _capabilities_file(directory: str | Path | Literal[False] | None) -> Path | None:
    if directory is False:
        return None
    if directory is None:
        from rubrickit._util.io import default_cache_dir

        directory = default_cache_dir()
    return Path(directory).expanduser() / CAPABILITIES_FILENAME


def _read_capabilities(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("endpoints") if isinstance(data, Mapping) else None
    return dict(entries) if isinstance(entries, Mapping) else {}


def _write_capability(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Merge one entry into the file (a temporary file, then an atomic rename); a failure only costs the memo."""
    try:
        entries = _read_capabilities(path)
        entries[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": 1, "about": "structured-output dialects negotiated per server by rubrickit's openai: "
                   "backend; delete this file to negotiate again", "endpoints": entries}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass


class _StructuredRefused(Exception):
    def __init__(self, status: int | None, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


# -- HTTP transport ---------------------------------------------------------------------------------------------


Transport = Literal["lean", "sdk"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)
_TRANSPORT_ENV = "RUBRICKIT_TRANSPORT"
_LEAN_CLIENT_OPTIONS = frozenset({"default_headers", "default_query", "organization", "project"})
"""``openai.AsyncOpenAI`` options the lean transport carries out itself; any other one needs ``transport="sdk"``."""


def transport_mode(transport: str | None) -> str:
    """Normalise the ``transport`` option (``None``: ``$RUBRICKIT_TRANSPORT``, else ``"lean"``)."""
    value = str(transport if transport is not None else (os.environ.get(_TRANSPORT_ENV) or "lean")).strip().lower()
    if value not in TRANSPORTS:
        source = f"${_TRANSPORT_ENV}" if transport is None else "transport"
        raise BackendSpecError(f"{source}={value!r}: expected 'lean' (a pooled aiohttp client sending plain JSON, the "
                               "default) or 'sdk' (the openai SDK)")
    return value


def _http_client(transport: str, timeout: float) -> Any:
    if transport not in ("auto", "aiohttp", "httpx"):
        raise BackendSpecError(f"http_transport={transport!r}: expected 'auto', 'aiohttp' or 'httpx'")
    if transport == "httpx":
        return None
    try:
        return aiohttp_http_client(timeout)
    except ImportError:
        if transport == "aiohttp":
            raise MissingDependencyError("http_transport='aiohttp' needs the 'aiohttp' package; install it with: "
                                         "pip install 'rubrickit[api]'") from None
        return None


def _chat_url(base_url: str, default_query: Mapping[str, Any] | None) -> str:
    """``{base_url}/chat/completions``, keeping the base URL's query (and adding ``default_query``)."""
    parts = urlsplit(base_url)
    query = parts.query
    if default_query:
        from urllib.parse import urlencode

        extra = urlencode({str(k): str(v) for k, v in default_query.items()})
        query = f"{query}&{extra}" if query else extra
    path = parts.path.rstrip("/") + "/chat/completions"
    return parts._replace(path=path, query=query, fragment="").geturl()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rubrickit")
    except metadata.PackageNotFoundError:
        return "0"


def _lean_client(base_url: str, key: str, timeout: float, options: Mapping[str, Any]) -> LeanClient:
    unknown = sorted(set(options) - _LEAN_CLIENT_OPTIONS)
    if unknown:
        raise BackendSpecError(f"openai: option(s) {', '.join(unknown)} belong to the openai SDK; pass transport='sdk' "
                               f"(--transport sdk) to use them, or drop them (the lean transport takes "
                               f"{', '.join(sorted(_LEAN_CLIENT_OPTIONS))})")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": f"rubrickit/{_version()}"}
    if options.get("organization"):
        headers["OpenAI-Organization"] = str(options["organization"])
    if options.get("project"):
        headers["OpenAI-Project"] = str(options["project"])
    headers.update({str(k): str(v) for k, v in (options.get("default_headers") or {}).items()})
    return LeanClient(_chat_url(base_url, options.get("default_query")), headers, timeout)


class OpenAIBackend:
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

    # -- structured-output negotiation ----------------------------------------------------------------------------

    @property
    def _negotiation_key(self) -> str:
        from ._redact import endpoint_identity

        endpoint = endpoint_identity(self.cache_endpoint) or "https://api.openai.com/v1"
        return f"{endpoint} {self.model}"

    @property
    def structured_dialect(self) -> str:
        """The form of structured output this backend sends now: the forced one, else the one negotiated so far."""
        return self._structured if self._structured != "auto" else STRUCTURED_DIALECTS[self._start_index()]

    def _start_index(self) -> int:
        key = self._negotiation_key
        if not self._capabilities_loaded:
            self._capabilities_loaded = True
            self._load_capabilities(key)
        with _negotiation_lock:
            return _negotiated.get(key, 0)

    def _load_capabilities(self, key: str) -> None:
        path = _capabilities_file(self._capabilities_dir)
        entry = _read_capabilities(path).get(key) if path is not None else None
        if not isinstance(entry, Mapping) or entry.get("structured") not in STRUCTURED_DIALECTS:
            return
        checked = entry.get("checked")
        if not isinstance(checked, (int, float)) or not 0 <= time.time() - checked <= CAPABILITIES_TTL:
            return
        index = STRUCTURED_DIALECTS.index(entry["structured"])
        with _negotiation_lock:
            if index <= _negotiated.get(key, 0):
                return
            _negotiated[key] = index
            first = (key, index) not in _announced
            _announced.add((key, index))
        if first and index > 0:
            print(f"rubrickit: {self._where()} uses {_DIALECT_LABELS[STRUCTURED_DIALECTS[index]]} (negotiated "
                  f"earlier, remembered in {path}; delete it to negotiate again)", file=sys.stderr, flush=True)

    def _where(self) -> str:
        return f"{redact_url(self.cache_endpoint) or 'api.openai.com'} ({self.spec})"

    def _refused(self, index: int, refusal: _StructuredRefused) -> None:
        """Record that the server refused dialect ``index``: every later call starts past it (monotonic, so
        concurrent first calls that all met the refusal converge on the same answer)."""
        key = self._negotiation_key
        following = index + 1
        with _negotiation_lock:
            advanced = following > _negotiated.get(key, 0)
            if advanced:
                _negotiated[key] = following
            first = advanced and (key, following) not in _announced
            if first:
                _announced.add((key, following))
        if not advanced:
            return
        refused, used = STRUCTURED_DIALECTS[index], STRUCTURED_DIALECTS[following]
        if first:
            print(f"rubrickit: {self._where()} refused {_DIALECT_LABELS[refused]} (HTTP {refusal.status}: "
                  f"{refusal.detail[:200]}); using {_DIALECT_LABELS[used]}", file=sys.stderr, flush=True)
        path = _capabilities_file(self._capabilities_dir)
        if path is not None:
            endpoint, _, model = key.rpartition(" ")
            _write_capability(path, key, {"endpoint": endpoint, "model": model, "structured": used,
                                          "refused": list(STRUCTURED_DIALECTS[:following]), "checked": time.time()})

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


def output_params(
    request: CompletionRequest, *, extra_body: dict[str, Any], guided: Any, strict: Any, structured: str = "json_schema"
) -> dict[str, Any]:
    """Seed, logprobs, structured output and ``extra_body`` of an OpenAI-style request (litellm uses it too).

    ``structured`` is the form a JSON schema is sent in (:data:`STRUCTURED_DIALECTS`).
    """
    params: dict[str, Any] = {}
    if request.seed is not None:
        params["seed"] = request.seed
    if request.logprobs:
        params["logprobs"] = True
        if request.top_logprobs:
            params["top_logprobs"] = request.top_logprobs
    extra = dict(extra_body)
    if request.choices and guided is not None:
        # One structured-output constraint per request: vLLM rejects a choice and a schema together.
        extra.update(guided_choice_body(request.choices, guided))
    elif request.json_schema is not None:
        schema = request.json_schema
        if structured == "json_schema":
            params["response_format"] = response_format(schema, strict)
        elif structured == "json_object":  # llama-cpp-python (its grammar is built from the schema), Together
            params["response_format"] = {"type": "json_object", "schema": dict(schema)}
        elif structured == "guided":
            extra.update({"guided_json": dict(schema)} if guided == "guided_choice"
                         else {"structured_outputs": {"json": dict(schema)}})
    if extra:
        params["extra_body"] = extra
    return params
