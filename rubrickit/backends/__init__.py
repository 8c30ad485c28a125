"""Judge backends: one small async protocol (:mod:`.base`), one module per backend, and the spec-string registry.

``get_backend("openai:gpt-4.1-mini")``, ``get_backend("litellm:anthropic/claude-sonnet-4-5")``,
``get_backend("openai:Qwen/Qwen3-8B", base_url="http://127.0.0.1:8000/v1")``, ``get_backend(None)`` (the embedded
judge). Importing this package imports no SDK: each backend's SDK loads when that backend is built.
"""

from __future__ import annotations

from .base import (
    Backend,
    BatchBackend,
    Capabilities,
    ChoiceScorer,
    Completion,
    CompletionRequest,
    FatalBackendError,
    Message,
    RetryableBackendError,
    TokenLogprob,
    Usage,
    choice_probabilities,
)
from .fake import FakeBackend
from .litellm_backend import LiteLLMBackend
from .openai_backend import TRANSPORTS, OpenAIBackend
from .registry import ENTRY_POINT_GROUP, available_backends, get_backend, parse_spec, register_backend

__all__ = [
    "ENTRY_POINT_GROUP",
    "TRANSPORTS",
    "Backend",
    "BatchBackend",
    "Capabilities",
    "ChoiceScorer",
    "Completion",
    "CompletionRequest",
    "FakeBackend",
    "FatalBackendError",
    "LiteLLMBackend",
    "Message",
    "OpenAIBackend",
    "RetryableBackendError",
    "TokenLogprob",
    "Usage",
    "available_backends",
    "choice_probabilities",
    "get_backend",
    "parse_spec",
    "register_backend",
]
