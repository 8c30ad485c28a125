"""Redaction: keys, tokens and credentials in URLs never reach a message, ``repr()``, log, record or trace.

:func:`redact` cleans free text (an SDK's error message, a server's reply); :func:`redact_url` a URL to show;
:func:`url_secrets` lists what a URL carries so it can be passed to :func:`redact` as explicit secrets;
:func:`redact_logs` puts :class:`RedactingFilter` on the loggers of the SDKs and HTTP clients the API backends use.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

__all__ = ["SECRET_PARAMETER", "RedactingFilter", "redact", "redact_logs", "redact_url", "url_secrets"]

_BEARER = re.compile(r"(?i)(bearer\s+|authorization\s*[:=]\s*basic\s+)[^\s'\",;]+")
_KEYLIKE = re.compile(r"\b(sk|pk|rk|gsk|xai|hf)[-_][A-Za-z0-9_\-]{16,}")
# user:password@ of a URL: up to the authority's last "@" (a password may hold one); the scheme is bounded so a
# long dotted word cannot make the search quadratic.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,30}://)[^/\s?#]*@")
SECRET_PARAMETER = re.compile(r"(?i)key|token(?!s)|secret|passw|pwd|sig|auth|credential|session|cookie")
"""Names of query parameters (and ``name=value`` pairs, headers, JSON fields) whose values are credentials:
``api_key``, ``key``, ``token``, ``access_token``, ``sig``, ``signature``, ``password``, ``secret``, ``x-api-key``,
``X-Amz-Credential``, … (case-insensitive; ``max_tokens`` is not one)."""
_NAME_VALUE = re.compile(r"(?<![\w.\-])([A-Za-z][\w.\-]{0,63})(=|%3[Dd])([\"']?)([^\s&#;'\"<>)}\]]+)")
_HEADER = re.compile(r"(?i)(?<![\w\-])([\w\-]{0,40}(?:api[-_]?key|auth[-_]?token|access[-_]?token|secret|password)"
                     r"\s*:\s*)([\"']?)([^\s'\",;]+)")
_QUOTED_FIELD = re.compile(r"([\"'])([\w.\-]{1,64})\1(\s*:\s*)([\"'])([^\"'\n]{0,512})\4")


def _hide_value(match: re.Match[str]) -> str:
    name, sign, quote = match.group(1), match.group(2), match.group(3)
    return f"{name}{sign}{quote}***" if SECRET_PARAMETER.search(name) else match.group(0)


def _hide_field(match: re.Match[str]) -> str:
    quote, name, colon, value_quote = match.group(1), match.group(2), match.group(3), match.group(4)
    if not SECRET_PARAMETER.search(name):
        return match.group(0)
    return f"{quote}{name}{quote}{colon}{value_quote}***{value_quote}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the given secrets, bearer tokens, key-shaped strings and credentials in URLs replaced by
    ``***``: ``user:password@`` and the values of credential parameters (:data:`SECRET_PARAMETER`) in query
    strings, ``name=value`` pairs, ``X-Api-Key: …`` headers and quoted ``"access_token": "…"`` fields."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _KEYLIKE.sub(r"\1-***", text)
    text = _USERINFO.sub(r"\1***@", text)
    text = _NAME_VALUE.sub(_hide_value, text)
    text = _HEADER.sub(r"\1\2***", text)
    return _QUOTED_FIELD.sub(_hide_field, text)


def _redact_parameters(query: str) -> str:
    def hide(match: re.Match[str]) -> str:
        name = unquote(match.group(2))
        return f"{match.group(1)}{match.group(2)}=***" if SECRET_PARAMETER.search(name) else match.group(0)

    return re.sub(r"(^|[&;])([^=&;]*)=([^&;]*)", hide, query)


def redact_url(url: str | None) -> str | None:
    """A URL safe to show: ``user:password@`` becomes ``***@`` and the values of credential query parameters
    (``?api_key=``, ``&sig=``, ``#access_token=``, … see :data:`SECRET_PARAMETER`) become ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = f"***@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
    query, fragment = _redact_parameters(parts.query), _redact_parameters(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The credentials a URL carries (its password, or a user name standing alone as a token, and the values of
    credential parameters), as written and percent-encoded: passed to :func:`redact` so a message quoting any of
    them in another form still hides them."""
    if not url:
        return ()
    try:
        parts = urlsplit(url)
        found = [parts.password if parts.password is not None else parts.username]
    except ValueError:
        return ()
    for piece in (parts.query, parts.fragment):
        for match in re.finditer(r"(?:^|[&;])([^=&;]*)=([^&;]*)", piece):
            if SECRET_PARAMETER.search(unquote_plus(match.group(1))):
                found += [match.group(2), unquote_plus(match.group(2))]
    found = [v for v in found if v]
    return tuple(dict.fromkeys(v for v in found + [quote(v, safe="") for v in found] if len(v) >= 4))


class RedactingFilter(logging.Filter):
    """A logging filter passing every record with :func:`redact` applied to its message and traceback text.

    The SDKs and HTTP clients under the API backends log request URLs (``Sending HTTP Request: POST http://…``) at
    DEBUG/INFO; a base URL may carry ``?api_key=``. Attached by :func:`redact_logs`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_SDK_LOGGERS = ("openai", "openai._base_client", "httpx", "httpcore.connection", "httpcore.http11", "LiteLLM",
                "LiteLLM Router", "LiteLLM Proxy", "litellm", "aiohttp.client", "aiohttp.internal")
"""Loggers that may write a request URL (a filter on a logger does not reach its children: each is named)."""


def redact_logs() -> None:
    """Attach :class:`RedactingFilter` (once) to the loggers of the SDKs and HTTP clients the API backends use."""
    for name in _SDK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


_SECRET_PARAM = re.compile(r"(?i)(key|token|secret|passw|sig|auth|credential|session)")
"""Query parameters that carry credentials: never part of an identity (nor written anywhere)."""


def endpoint_identity(url: str | None) -> str | None:
    """A base URL as it identifies a server: scheme, lower-cased host, port, path without a trailing slash, and the
    query parameters that are not credentials (sorted). ``user:password@`` and ``?api_key=`` are dropped."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return hashlib.sha256(url.encode("utf-8")).hexdigest()  # unparseable: still distinct, never stored in clear
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SECRET_PARAM.search(k))
    return urlunsplit((parts.scheme.lower(), (parts.hostname or "").lower() + port, parts.path.rstrip("/"),
                       urlencode(query), ""))
