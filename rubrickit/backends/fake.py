"""``fake:`` — a scripted backend for unit tests of engine logic and for documentation examples.

It answers from a script and records every request it received, so tests can assert on the exact prompts sent.
It is never the only test of a capability: real backends are tested against real servers and models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from .base import Capabilities, Completion, CompletionRequest, Usage

__all__ = ["FakeBackend", "Reply"]

Reply = str | Completion | BaseException
"""A scripted answer: text, a whole completion, or an exception to raise."""


class FakeBackend:
    """Answers each request from ``script`` and records it in :attr:`requests`.

    ``script`` is a list (answers in order; the last one repeats), or a function of the request. Without a script
    every per-criterion request is answered ``{"rationale": "scripted", "verdict": "met"}``.
    """

    def __init__(
        self,
        script: Sequence[Reply] | Callable[[CompletionRequest], Reply] | None = None,
        *,
        spec: str = "fake:scripted",
        capabilities: Capabilities | None = None,
        latency: float = 0.0,
    ):
        self.spec = spec
        self.capabilities = capabilities or Capabilities(json_schema=True)
        self.latency = latency
        self.requests: list[CompletionRequest] = []
        self._script = script
        self._index = 0
        self.closed = False

    def _next(self, request: CompletionRequest) -> Reply:
        if self._script is None:
            return json.dumps({"rationale": "scripted", "verdict": "met"})
        if callable(self._script):
            return self._script(request)
        if not self._script:
            raise ValueError("FakeBackend script is empty")
        reply = self._script[min(self._index, len(self._script) - 1)]
        self._index += 1
        return reply

    async def complete(self, request: CompletionRequest) -> Completion:
        """Record the request, wait ``latency`` seconds, then answer from the script."""
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        reply = self._next(request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        tokens_in = sum(len(m.content) for m in request.messages) // 4
        return Completion(text=reply, usage=Usage(input_tokens=tokens_in, output_tokens=max(1, len(reply) // 4)),
                          finish_reason="stop", model=self.spec)

    async def aclose(self) -> None:
        """Nothing to release."""
        self.closed = True


def fake_backend_from_spec(model: str, **options: Any) -> FakeBackend:
    """Registry factory for ``fake:NAME``: an unscripted fake that answers ``met`` to everything."""
    return FakeBackend(spec=f"fake:{model or 'scripted'}", **options)
