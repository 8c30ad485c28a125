"""The HTTP transports of the ``openai`` backend: the lean aiohttp client (the default) or the ``openai`` SDK.

:func:`transport_mode` reads the ``transport`` option (or ``$RUBRICKIT_TRANSPORT``); :func:`_lean_client` builds the
pooled :class:`~rubrickit.backends._http.LeanClient` posting plain JSON to ``{base_url}/chat/completions`` (the key
in the ``Authorization`` header, the client options it carries out itself as headers and query); :func:`_http_client`
picks the SDK's HTTP client; :func:`import_sdk` imports an optional SDK or names the extra to install.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from ..errors import BackendSpecError, MissingDependencyError
from ._http import LeanClient, aiohttp_http_client

__all__ = ["TRANSPORTS", "Transport", "import_sdk", "transport_mode"]


def import_sdk(module: str, extra: str = "api") -> Any:
    """Import an optional SDK, or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the '{module}' package is needed for this judge backend but could not be imported ({exc}); "
            f"install it with: pip install 'rubrickit[{extra}]'"
        ) from None


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
