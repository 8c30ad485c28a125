"""Judge spec strings → backends.

A spec is ``NAME:MODEL``, split on the **first** colon (``hf:C:/models/x`` keeps the rest intact;
``litellm:anthropic/claude-…`` names the provider inside the model). ``embedded`` alone is the default judge, and
``None`` means it too. A backend object passed instead of a string is returned as it is.

Factories are found in this order: :func:`register_backend` (tests, notebooks), the built-ins below (dotted paths
imported only when used, so an SDK loads only for its own backend), then the ``rubrickit.backends`` entry-point
group of installed packages (also loaded only when named). An entry point cannot shadow a built-in name. Each
factory is called as ``factory(model, **options)``, with ``base_url=`` added when one is given.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import BackendSpecError, MissingDependencyError, UnknownBackendError
from .base import BASE_URL_OPTIONS, Backend

__all__ = ["available_backends", "get_backend", "parse_spec", "register_backend", "unregister_backend"]

ENTRY_POINT_GROUP = "rubrickit.backends"
"""Installed packages add backends under this entry-point group: ``name = "package.module:factory"``."""

DEFAULT_BACKEND = "embedded"
"""The backend used when no judge is named."""

_BUILTINS: dict[str, str] = {
    "openai": "rubrickit.backends.openai_backend:OpenAIBackend",
    "litellm": "rubrickit.backends.litellm_backend:LiteLLMBackend",
    "hf": "rubrickit.backends.hf:hf_backend_from_spec",
    "embedded": "rubrickit.backends.embedded:embedded_backend_from_spec",
    "vllm": "rubrickit.backends.vllm_backend:vllm_backend_from_spec",
    "fake": "rubrickit.backends.fake:fake_backend_from_spec",
}

_EXTRAS = {"openai": "api", "litellm": "api", "hf": "local", "embedded": "local", "vllm": "vllm"}
"""Which ``rubrickit[extra]`` brings the SDK of each built-in."""

_TAKES_BASE_URL = {"openai", "litellm"}
"""Built-ins that talk to a server (the others run the model in-process)."""

_MODEL_OPTIONAL = {"embedded"}
"""Backends whose spec may leave the model out."""

_PROVIDER_HINTS = {
    "anthropic": "litellm:anthropic/MODEL", "claude": "litellm:anthropic/MODEL",
    "gemini": "litellm:gemini/MODEL", "google": "litellm:gemini/MODEL", "vertex_ai": "litellm:vertex_ai/MODEL",
    "bedrock": "litellm:bedrock/MODEL", "azure": "litellm:azure/DEPLOYMENT", "mistral": "litellm:mistral/MODEL",
    "groq": "litellm:groq/MODEL", "together": "litellm:together_ai/MODEL", "together_ai": "litellm:together_ai/MODEL",
    "cohere": "litellm:cohere/MODEL", "deepseek": "litellm:deepseek/MODEL", "xai": "litellm:xai/MODEL",
    "openrouter": "litellm:openrouter/MODEL", "fireworks": "litellm:fireworks_ai/MODEL",
    "ollama": "openai:MODEL' with the base URL 'http://127.0.0.1:11434/v1', or 'litellm:ollama/MODEL",
    "llamacpp": "openai:MODEL' with the base URL 'http://127.0.0.1:8080/v1",
    "llama.cpp": "openai:MODEL' with the base URL 'http://127.0.0.1:8080/v1",
    "tgi": "openai:MODEL' with the base URL 'http://127.0.0.1:8080/v1",
    "transformers": "hf:MODEL", "huggingface": "hf:MODEL",
}

_registered: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Register ``factory(model, **options)`` under ``name`` (it wins over built-ins and entry points).

    For tests and notebooks; installed packages use the ``rubrickit.backends`` entry-point group instead.
    """
    key = name.strip().lower()
    if not key or ":" in key:
        raise BackendSpecError(f"backend name {name!r} must be non-empty and contain no colon")
    if not callable(factory):
        raise TypeError(f"backend factory for {key!r} must be callable, got {type(factory).__name__}")
    _registered[key] = factory


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend` (no error when there is none)."""
    _registered.pop(name.strip().lower(), None)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a judge spec on its first colon: ``"litellm:anthropic/claude-x"`` → ``("litellm", "anthropic/claude-x")``.

    The name is lower-cased and stripped; the model is stripped. ``embedded`` may stand alone (model ``""``).
    Raises :class:`BackendSpecError` for an empty spec, a missing colon, an empty name or an empty model.
    """
    if not isinstance(spec, str):
        raise BackendSpecError(f"a judge spec must be a string like 'openai:gpt-4.1-mini', got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise BackendSpecError("the judge spec is empty; write BACKEND:MODEL, e.g. 'openai:gpt-4.1-mini', or leave "
                               "the judge out to use the embedded one")
    name, colon, model = text.partition(":")
    name, model = name.strip().lower(), model.strip()
    if not colon:
        if name in _MODEL_OPTIONAL:
            return name, ""
        if name in _known_names():
            raise BackendSpecError(f"judge spec {spec!r} names no model; write '{name}:MODEL'")
        hint = _PROVIDER_HINTS.get(name)
        example = hint if hint else f"openai:{text}"
        raise BackendSpecError(f"judge spec {spec!r} has no backend prefix; write BACKEND:MODEL, e.g. '{example}' "
                               f"(backends: {', '.join(available_backends())})")
    if not name:
        raise BackendSpecError(f"judge spec {spec!r} has no backend name before the colon; write BACKEND:MODEL")
    if not model and name not in _MODEL_OPTIONAL:
        raise BackendSpecError(f"judge spec {spec!r} names no model after the colon; write '{name}:MODEL'")
    return name, model


def available_backends() -> list[str]:
    """Every backend name that can be used: registered, built-in and installed through entry points (sorted)."""
    return sorted(_known_names())


def get_backend(judge: str | Backend | None, *, base_url: str | None = None, **options: Any) -> Backend:
    """The backend a judge spec names (``None`` → the embedded judge; a backend object is returned as it is).

    ``base_url`` and ``options`` go to the backend's factory. Raises :class:`BackendSpecError` for a malformed spec,
    :class:`UnknownBackendError` (with "Did you mean …?") for an unknown name, :class:`MissingDependencyError`
    naming the ``pip install 'rubrickit[extra]'`` when the backend's SDK is not installed.
    """
    if judge is not None and not isinstance(judge, str):
        if isinstance(judge, Backend):
            return judge
        raise BackendSpecError(f"a judge must be a spec string or a backend object with spec, capabilities, "
                               f"complete() and aclose(); got {type(judge).__name__}")
    name, model = parse_spec(DEFAULT_BACKEND if judge is None else judge)
    builtin = name in _BUILTINS and name not in _registered
    if base_url is not None and builtin and name not in _TAKES_BASE_URL:
        raise BackendSpecError(_no_base_url(name))  # before importing the backend: hf would load torch first
    factory = _factory(name, judge or DEFAULT_BACKEND)
    if base_url is not None:
        if not builtin and not _accepts(factory):
            raise BackendSpecError(_no_base_url(name))
        options["base_url"] = base_url
    backend = factory(model, **options)
    if not isinstance(backend, Backend):
        raise BackendSpecError(f"the factory of backend '{name}' returned {type(backend).__name__}, which lacks the "
                               "Backend protocol (spec, capabilities, complete(), aclose())")
    return backend


# -- internals -------------------------------------------------------------------------------------------------


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    try:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # a broken installed distribution must not break the built-in backends
        return {}
    return {ep.name.strip().lower(): ep for ep in found}


def _known_names() -> set[str]:
    return set(_registered) | set(_BUILTINS) | set(_entry_points())


def _factory(name: str, spec: str) -> Callable[..., Backend]:
    if name in _registered:
        return _registered[name]
    if name in _BUILTINS:
        return _load(name, _BUILTINS[name], extra=_EXTRAS.get(name))
    entry = _entry_points().get(name)
    if entry is not None:
        try:
            return entry.load()
        except ImportError as exc:
            raise MissingDependencyError(
                f"the '{name}' judge backend (entry point {entry.value!r}) could not be imported: {exc}; "
                "reinstall the package that provides it") from None
    raise UnknownBackendError(_unknown_message(name, spec))


def _load(name: str, target: str, *, extra: str | None) -> Callable[..., Backend]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except MissingDependencyError:
        raise
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if missing == module_name:
            raise MissingDependencyError(f"the '{name}' judge backend is not part of this installation of rubrickit "
                                         f"({module_name} is missing)") from None
        install = f"pip install 'rubrickit[{extra}]'" if extra else "install its dependencies"
        raise MissingDependencyError(f"the '{name}' judge backend needs the '{missing}' package, which is not "
                                     f"installed; install it with: {install}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise MissingDependencyError(f"the '{name}' judge backend is incomplete in this installation "
                                     f"({target} is missing)") from None


def _no_base_url(name: str) -> str:
    return (f"the '{name}:' backend takes no base URL (it runs the model itself); a base URL ({BASE_URL_OPTIONS}) "
            "is for servers, through openai: and litellm:")


def _accepts(factory: Callable[..., Any], parameter: str = "base_url") -> bool:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return True  # cannot tell: let the call decide
    return any(p.name == parameter or p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _unknown_message(name: str, spec: str) -> str:
    known = available_backends()
    message = f"unknown judge backend '{name}' in {spec!r}."
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = _PROVIDER_HINTS.get(name)
    if hint:  # a provider or server name beats a spelling neighbour ("ollama" is not a typo of "vllm")
        message += f" Try '{hint}'."
        if "base URL" in hint:
            message += f" The base URL goes in {BASE_URL_OPTIONS}."
    elif close:
        message += f" Did you mean '{close[0]}'?"
    message += (f" Available: {', '.join(known)}. Other packages add backends through the '{ENTRY_POINT_GROUP}' "
                "entry-point group.")
    return message
