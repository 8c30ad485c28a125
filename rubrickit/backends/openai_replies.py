"""Reading an OpenAI-style chat-completion reply (parsed JSON, or an ``openai`` SDK / litellm object) into a
:class:`~rubrickit.backends.base.Completion`: the text (a refusal's, or ``""``, when there is no content), the
token logprobs with their alternatives, the token usage (cached prompt tokens included, llama.cpp's ``timings`` as
well), the finish reason and the model. A body without a usable first choice is a malformed body:
:class:`~rubrickit.backends.base.RetryableBackendError`. Shared by :mod:`rubrickit.backends.openai_backend` and
:mod:`rubrickit.backends.litellm_backend`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import Completion, RetryableBackendError, TokenLogprob, Usage

__all__ = ["completion_from_response"]


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
