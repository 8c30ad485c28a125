"""Building the body of an OpenAI-style chat-completion request, beyond the messages and the sampling settings.

:func:`output_params` adds the seed, logprobs, ``extra_body`` and the structured output a request asks for: a JSON
schema in the form of one of the dialects of :mod:`rubrickit.backends.openai_dialects` (OpenAI's
``response_format`` made by :func:`response_format`, strict when :func:`strict_compatible`; llama-cpp-python's
``json_object`` + schema; vLLM's ``structured_outputs``/``guided_json``), or vLLM's constrained choice
(:func:`guided_choice_body`, turned on by the ``guided`` option, :func:`guided_mode`). Shared by
:mod:`rubrickit.backends.openai_backend` and :mod:`rubrickit.backends.litellm_backend`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from ..errors import BackendSpecError
from .base import CompletionRequest

__all__ = ["GuidedMode", "guided_choice_body", "guided_mode", "output_params", "response_format",
           "strict_compatible"]

GuidedMode = Literal["structured_outputs", "guided_choice"]

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
