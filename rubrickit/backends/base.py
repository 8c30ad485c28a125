"""The backend protocol: a backend turns one request into one completion, and nothing else.

Scheduling, retries, rate limits, caching, journaling, parsing and aggregation live once, in
:mod:`rubrickit.judge` (thin backends, thick engine). A backend declares what it can do in
:class:`Capabilities`; optional abilities beyond :meth:`Backend.complete` are separate small protocols checked at
run time (:class:`ChoiceScorer` for one-token Yes/No probabilities without decoding, :class:`BatchBackend`).

Failures are raised as :class:`RetryableBackendError` (429, 5xx, time-outs, dropped connections, malformed bodies:
the engine retries with backoff, honouring ``retry_after``) or :class:`FatalBackendError` (400/401/404, …: the
engine records an ``error`` verdict at once). Neither may carry an API key in its message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BackendCallError

BASE_URL_OPTIONS = ("--base-url (in generate, --generator-base-url and --judge-base-url; in refine and weight, "
                    "--judge-base-url)")
"""How each command takes a server's base URL, for messages that advise one (the backend does not know the
command)."""

__all__ = [
    "Backend",
    "BatchBackend",
    "Capabilities",
    "ChoiceScorer",
    "ChoiceScores",
    "Completion",
    "CompletionRequest",
    "FatalBackendError",
    "Message",
    "RetryableBackendError",
    "TokenLogprob",
    "Usage",
    "choice_probabilities",
]

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Message(BaseModel):
    """One chat message."""

    model_config = _CONFIG

    role: Literal["system", "user", "assistant"]
    """Who speaks."""
    content: str
    """The text."""


class CompletionRequest(BaseModel):
    """What the engine asks of a backend: a chat, sampling parameters and the output constraints it wants."""

    model_config = _CONFIG

    messages: tuple[Message, ...]
    """The conversation to complete (instructions, then the judged material, the criterion last)."""
    max_tokens: int = Field(512, ge=1)
    """Upper bound on generated tokens."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature (0 = greedy)."""
    seed: int | None = None
    """Sampling seed where the backend supports one (``--repeat`` varies it)."""
    json_schema: dict[str, Any] | None = None
    """Ask for structured output matching this JSON Schema, where the backend supports it. Kept as given (not
    copied): the engine shares one schema object among the calls of a kind, so a backend can convert it once."""
    choices: tuple[str, ...] | None = None
    """Constrain the reply to one of these strings (e.g. ``("Yes", "No")``), where supported."""
    logprobs: bool = False
    """Return token log-probabilities."""
    top_logprobs: int = Field(0, ge=0, le=20)
    """How many alternatives per position to return with logprobs."""

    @field_validator("json_schema", mode="plain")
    @classmethod
    def _schema_as_given(cls, value: Any) -> dict[str, Any] | None:
        if value is None or isinstance(value, dict):
            return value
        raise ValueError(f"json_schema must be a JSON Schema object (a dict), not {type(value).__name__}")

    def prompt_text(self) -> str:
        """All message contents joined (for token estimates and cache keys)."""
        return "\n".join(f"{m.role}: {m.content}" for m in self.messages)


class TokenLogprob(BaseModel):
    """One generated token with its log-probability and the top alternatives at that position."""

    model_config = _CONFIG

    token: str
    """The token text."""
    logprob: float
    """Its natural-log probability."""
    top: dict[str, float] = Field(default_factory=dict)
    """Alternatives at this position: token text → logprob (includes the chosen token when reported)."""


class Usage(BaseModel):
    """Token accounting of one call."""

    model_config = _CONFIG

    input_tokens: int = 0
    """Prompt tokens billed."""
    output_tokens: int = 0
    """Generated tokens billed."""
    cached_tokens: int = 0
    """Prompt tokens served from the provider's (or local) prefix cache."""


class Completion(BaseModel):
    """A backend's answer to one request."""

    model_config = _CONFIG

    text: str
    """The generated text."""
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Per generated token, when requested and available."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens used."""
    cost: float | None = None
    """Cost in USD when the backend knows it (litellm's price table)."""
    finish_reason: str | None = None
    """Why generation stopped (``stop``, ``length`` = truncated, …)."""
    model: str | None = None
    """The model that answered, as the backend reports it."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the engine picks prompt contracts and modes from it."""

    logprobs: bool = False
    """Returns token logprobs (needed for p_met and likert expected levels)."""
    json_schema: bool = False
    """Honours ``CompletionRequest.json_schema`` (structured output)."""
    choices: bool = False
    """Honours ``CompletionRequest.choices`` (constrained choice)."""
    prefix_cache: bool = False
    """Reuses a shared prompt prefix across requests (provider or local KV cache)."""
    batch: bool = False
    """Implements :class:`BatchBackend` (many requests in one forward pass)."""
    default_mode: str = "per_criterion"
    """The judging mode this backend does best, used when none is chosen (``logprob`` on the embedded 135M model,
    which writes no usable reasoning but ranks Yes/No well; ``per_criterion`` with structured output elsewhere)."""


@runtime_checkable
class Backend(Protocol):
    """One async method that turns a request into a completion, plus identity and capabilities."""

    spec: str
    """The spec string that names this backend and model, e.g. ``openai:gpt-4.1-mini`` (never a key)."""
    capabilities: Capabilities
    """What the backend can do."""

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer one request, or raise :class:`RetryableBackendError` / :class:`FatalBackendError`."""
        ...

    async def aclose(self) -> None:
        """Release clients, connections and models."""
        ...


@runtime_checkable
class BatchBackend(Protocol):
    """Optional: answer many requests together (local backends batch forward passes)."""

    async def complete_batch(self, requests: Sequence[CompletionRequest]) -> list[Completion | BaseException]:
        """One result per request, in order; a failed request gives its exception in its slot."""
        ...


@runtime_checkable
class ChoiceScorer(Protocol):
    """Optional: the probability of each one-token choice as the next token after each request, without decoding.

    The engine passes the requests of one response together (every criterion of it), so they share a long prompt
    prefix (instructions + conversation + response; the criterion comes last). A local backend computes the
    shared token prefix once and reuses its KV cache for every request's remaining tokens.
    """

    async def score_choices(
        self, requests: Sequence[CompletionRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | BaseException]:
        """For each request, ``choice → probability`` renormalised over ``choices`` (or the exception in its slot).

        A result may be a :class:`ChoiceScores` (a dict that also carries the request's token :class:`Usage`, e.g.
        the prompt tokens served from a reused prefix KV cache); the engine's accounting uses it when present.
        """
        ...


class ChoiceScores(dict):
    """One result of :meth:`ChoiceScorer.score_choices`: ``choice → probability``, plus the request's token usage
    (``input_tokens`` of the prompt, ``cached_tokens`` of it that came from a reused prefix, one output token)."""

    def __init__(self, probabilities: dict[str, float], usage: Usage | None = None):
        super().__init__(probabilities)
        self.usage = usage
        """Tokens of this request (``None``: not reported)."""


class RetryableBackendError(BackendCallError):
    """A transient failure: rate limit, server error, time-out, dropped connection, malformed body."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        """HTTP status when there was one."""
        self.retry_after = retry_after
        """Seconds the server asked us to wait (``Retry-After``), if it said."""


class FatalBackendError(BackendCallError):
    """A failure that retrying will not fix (bad request, authentication, unknown model)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status
        """HTTP status when there was one."""


def choice_probabilities(top: dict[str, float], choices: Sequence[str]) -> dict[str, float] | None:
    """Renormalised probabilities of ``choices`` from a ``token → logprob`` map (case and spaces folded).

    Tokens such as ``" Yes"``, ``"yes"`` and ``"YES"`` count for ``Yes``. ``None`` when no choice appears.
    """
    mass = {choice: 0.0 for choice in choices}
    for token, logprob in top.items():
        folded = token.strip().lower()
        for choice in choices:
            if folded == choice.lower():
                mass[choice] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {choice: value / total for choice, value in mass.items()}
