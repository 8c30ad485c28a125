"""``litellm:PROVIDER/MODEL`` — ``litellm``: Anthropic, Gemini, Bedrock, Azure, Mistral, Groq, Ollama, …

A thin backend: one request becomes one ``litellm.acompletion`` call (``num_retries=0``, ``max_retries=0``: retries
are the engine's job). litellm's exceptions subclass the ``openai`` SDK's, so the error mapping is the one of
:mod:`rubrickit.backends.openai_backend` (``Retry-After`` read from the headers litellm keeps on the exception).
Credentials come from the provider's own environment variables (``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``, …), which
litellm reads; a missing ``*_API_KEY`` is reported before the first call. Cost comes from litellm's bundled price
table when the model is in it (``None`` otherwise).

litellm downloads its price map when imported unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set, so the import sets it
first (a run with no network would otherwise spend seconds in retries), and its chatty logging, telemetry and
"Give Feedback" prints are turned off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import BackendSpecError, MissingCredentialsError
from ._redact import redact, redact_logs, redact_url, url_secrets
from .base import BASE_URL_OPTIONS, Capabilities, Completion, CompletionRequest, RetryableBackendError
from .openai_errors import map_sdk_error
from .openai_replies import completion_from_response
from .openai_requests import GuidedMode, guided_mode, output_params
from .openai_transport import import_sdk

__all__ = ["LiteLLMBackend", "import_litellm"]

_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
_warmed = False


def import_litellm() -> Any:
    """Import litellm offline and quiet (local price map, no telemetry, no debug prints)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    litellm = import_sdk("litellm")
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.turn_off_message_logging = True
    if "LITELLM_LOG" not in os.environ:  # the user asked for litellm's own logs: leave them
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    global _warmed
    if not _warmed:
        # litellm's response models build their pydantic schemas on first use, and pydantic warns about one of its
        # TypedDicts then. Build them now, once, with that noise silenced, rather than inside a judge call (where a
        # warnings-as-errors setting would turn it into a failed request).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                litellm.ModelResponse()
            except Exception:
                pass
        _warmed = True
    return litellm


class LiteLLMBackend:
    """``litellm.acompletion`` for any provider litellm knows, named ``PROVIDER/MODEL``.

    ``base_url`` is litellm's ``api_base`` (an OpenAI-compatible server with ``openai/MODEL``, a self-hosted Ollama
    with ``ollama/MODEL``); ``api_key`` overrides the provider's environment variable; ``timeout`` is per request.
    Capabilities come from litellm's table of what the provider supports (Anthropic has no logprobs, for one).
    ``drop_params`` (default on) lets litellm drop sampling parameters a provider does not accept (``seed``)
    instead of failing; ``guided`` and ``extra_body`` are as for :class:`~rubrickit.backends.openai_backend.
    OpenAIBackend` (``guided`` for ``hosted_vllm/`` servers). Other keyword options go to ``litellm.acompletion``.
    """

    _open: ClassVar[int] = 0

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        guided: bool | GuidedMode = False,
        drop_params: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        strict_schema: bool | None = None,
        **options: Any,
    ):
        if not model or not model.strip():
            raise BackendSpecError("litellm: needs PROVIDER/MODEL, e.g. 'litellm:anthropic/claude-sonnet-4-5'")
        litellm = import_litellm()
        redact_logs()
        self._litellm = litellm
        self.model = model
        self.spec = f"litellm:{model}"
        self.base_url = base_url
        self.cache_endpoint = base_url
        """The server this backend talks to (part of the judge cache's key; credentials are stripped there)."""
        self.timeout = float(timeout)
        self._guided = guided_mode(guided)
        self._drop_params = drop_params
        self._extra_body = dict(extra_body or {})
        self._strict = strict_schema
        self._options = options
        try:
            bare_model, provider, _, _ = litellm.get_llm_provider(model=model, api_base=base_url)
        except Exception:
            raise BackendSpecError(
                f"{self.spec}: litellm cannot tell the provider of '{model}'; write litellm:PROVIDER/MODEL, e.g. "
                "'litellm:anthropic/claude-sonnet-4-5', 'litellm:gemini/gemini-2.5-flash' or 'litellm:openai/NAME' "
                f"with a base URL, {BASE_URL_OPTIONS} (providers: https://docs.litellm.ai/docs/providers)") from None
        self.provider = provider
        self._api_key = api_key or self._credentials(model, base_url)
        supported = self._supported(bare_model, provider)
        self.capabilities = Capabilities(
            logprobs=supported is None or "logprobs" in supported,
            json_schema=supported is None or "response_format" in supported,
            choices=self._guided is not None,
            prefix_cache=True,
        )
        LiteLLMBackend._open += 1
        self._closed = False

    def _credentials(self, model: str, base_url: str | None) -> str | None:
        try:
            missing = list(self._litellm.validate_environment(model=model, api_base=base_url).get("missing_keys") or [])
        except Exception:  # litellm could not say; the first call will
            return None
        keys = [name for name in missing if name.endswith("_API_KEY")]
        if not keys or len(keys) != len(missing):
            return None  # cloud credentials (AWS, Azure, Vertex) or none needed: litellm resolves them itself
        if base_url:
            return "EMPTY"  # a self-hosted server; litellm's OpenAI client insists on some key
        names = " or ".join(keys)
        raise MissingCredentialsError(f"{self.spec} needs an API key: set the {names} environment variable")

    def _supported(self, bare_model: str, provider: str) -> set[str] | None:
        try:
            params = self._litellm.get_supported_openai_params(model=bare_model, custom_llm_provider=provider)
        except Exception:
            return None
        return set(params) if params else None

    def __repr__(self) -> str:
        where = f", base_url={redact_url(self.base_url)!r}" if self.base_url else ""
        return f"LiteLLMBackend(spec={self.spec!r}{where})"

    def request_params(self, request: CompletionRequest) -> dict[str, Any]:
        """The keyword arguments of ``litellm.acompletion`` for ``request`` (without the key)."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": self.timeout,
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": self._drop_params,
            **self._options,
        }
        if self.base_url:
            params["api_base"] = self.base_url
        params.update(output_params(request, extra_body=self._extra_body, guided=self._guided, strict=self._strict))
        return params

    async def complete(self, request: CompletionRequest) -> Completion:
        """One ``litellm.acompletion`` call, mapped to a :class:`Completion` or a backend error."""
        params = self.request_params(request)
        if self._api_key is not None:
            params["api_key"] = self._api_key
        await _guard_loop(self._litellm)
        try:
            response = await self._litellm.acompletion(**params)
        except Exception as exc:
            secrets = (self._api_key, *url_secrets(self.base_url))
            mapped = map_sdk_error(exc, spec=self.spec, model=self.model, base_url=self.base_url,
                                   timeout=self.timeout, secrets=secrets, key_hint=self._key_hint())
            if mapped is None:
                reason = redact(f"{type(exc).__name__}: {exc}", secrets)[:400]
                mapped = RetryableBackendError(f"{self.spec}: litellm failed: {reason}")
            raise mapped from None  # litellm's exception may quote the server verbatim; ours is redacted
        return completion_from_response(response, spec=self.spec, cost=self._cost(response))

    def _key_hint(self) -> str:
        try:
            missing = self._litellm.validate_environment(model=self.model).get("missing_keys") or []
        except Exception:
            missing = []
        keys = [name for name in missing if name.endswith("_API_KEY")]
        return " or ".join(keys) if keys else f"the {self.provider} credentials litellm reads"

    def _cost(self, response: Any) -> float | None:
        try:
            cost = self._litellm.completion_cost(completion_response=response)
        except Exception:  # a model that is not in the price table, or a provider litellm cannot price
            return None
        return float(cost) if isinstance(cost, (int, float)) and cost > 0 else None

    async def aclose(self) -> None:
        """Close litellm's cached HTTP clients of this event loop once the last open litellm backend closes."""
        if self._closed:
            return
        self._closed = True
        LiteLLMBackend._open = max(0, LiteLLMBackend._open - 1)
        if LiteLLMBackend._open == 0:
            await _close_loop_clients(self._litellm)


_guards: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], Any]] = {}


async def _guard_loop(litellm: Any) -> None:
    """Make sure litellm's clients of the running loop are closed when the loop ends.

    litellm caches an HTTP client per event loop and never closes it; asyncio.run() closes suspended async
    generators before it closes its loop, so a generator waiting here closes that loop's clients in time.
    """
    loop = asyncio.get_running_loop()
    entry = _guards.get(id(loop))
    if entry is not None and entry[0]() is loop:
        return
    guard = _close_clients_at_loop_end(litellm, id(loop))
    await guard.__anext__()
    _guards[id(loop)] = (weakref.ref(loop), guard)


async def _close_clients_at_loop_end(litellm: Any, key: int) -> Any:
    try:
        yield
    finally:
        _guards.pop(key, None)
        await _close_loop_clients(litellm)


async def _close_loop_clients(litellm: Any) -> None:
    """litellm caches one HTTP client per (settings, event loop) and never closes them; close this loop's."""
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    entries = getattr(cache, "cache_dict", None)
    if not isinstance(entries, dict):
        return
    suffix = f"-{id(asyncio.get_running_loop())}"
    for key in [k for k in list(entries) if isinstance(k, str) and k.endswith(suffix)]:
        client = entries.pop(key, None)
        ttl = getattr(cache, "ttl_dict", None)
        if isinstance(ttl, dict):
            ttl.pop(key, None)
        await _close_client(client)


async def _close_client(client: Any) -> None:
    for name in ("close", "aclose"):
        method = getattr(client, name, None)
        if method is None:
            continue
        try:
            result = method()
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # closing is best effort: the loop is ending anyway
            pass
        return
    inner = getattr(client, "client", None) or getattr(client, "_client", None)
    if inner is not None and inner is not client:
        await _close_client(inner)

