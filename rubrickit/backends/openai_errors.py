"""Failures of an OpenAI-style chat-completion call, as the backend errors the engine retries or reports.

:func:`error_from_status` maps an HTTP status with the server's message to :class:`RetryableBackendError` (429,
408/409/425, 5xx, with ``Retry-After`` read by :func:`parse_retry_after`) or :class:`FatalBackendError` (400, 401,
403, 404, 413, 422 with a hint on what to check; an exhausted quota); :func:`map_sdk_error` does it for an ``openai``
SDK exception (litellm's subclass them), time-outs and dropped connections included. Every message that may quote a
server goes through :func:`~rubrickit.backends._redact.redact`. Shared by :mod:`rubrickit.backends.openai_backend`
and :mod:`rubrickit.backends.litellm_backend`.
"""

from __future__ import annotations

import email.utils
import importlib
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._redact import redact, redact_url
from .base import FatalBackendError, RetryableBackendError

__all__ = ["error_from_status", "map_sdk_error", "parse_retry_after"]

_RETRYABLE_STATUS = {408, 409, 425, 429}
_STATUS_HINTS = {
    400: "the server rejected the request; check that the model supports the parameters sent "
         "(json_schema response_format, logprobs, seed, max tokens) and that the prompt fits its context",
    401: "authentication failed; check the API key ({key_hint})",
    403: "permission denied; check that the key may use model '{model}'",
    404: "not found; check the model name '{model}' and the base URL {base_url}",
    413: "the request is too large for the server",
    422: "the server could not process the request; check the parameters it supports",
}


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
