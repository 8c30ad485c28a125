"""Structured-output dialects of OpenAI-compatible servers, and their negotiation per (endpoint, model).

Servers take a JSON schema in different forms (:data:`STRUCTURED_DIALECTS`). With ``structured="auto"`` a request
whose form the server refuses (:func:`structured_refusal` tells a refusal of the form from other errors) is sent again
at once in the next form; :class:`_DialectNegotiation`, a base of
:class:`~rubrickit.backends.openai_backend.OpenAIBackend`, keeps the form that was accepted per (endpoint, model):
for the process (shared by every backend that talks to one server; :func:`forget_negotiated` clears it) and for
:data:`CAPABILITIES_TTL` in :data:`CAPABILITIES_FILENAME` in the judge cache folder.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..errors import BackendSpecError
from ._redact import redact_url

__all__ = ["CAPABILITIES_FILENAME", "CAPABILITIES_TTL", "STRUCTURED_DIALECTS", "Structured", "forget_negotiated",
           "structured_mode", "structured_refusal"]

Structured = Literal["auto", "json_schema", "json_object", "guided", "none"]

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


class _DialectNegotiation:
    """What :class:`~rubrickit.backends.openai_backend.OpenAIBackend` negotiated with its server (its ``__init__``
    sets the fields below)."""

    model: str
    spec: str
    cache_endpoint: str | None
    _structured: str
    """The ``structured`` option: ``"auto"`` or a forced dialect."""
    _capabilities_dir: str | Path | Literal[False] | None
    _capabilities_loaded: bool

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
