"""``hf:MODEL_OR_PATH`` — a local ``transformers`` causal LM on CPU or GPU, loaded from disk only.

Three ways in, all on one model behind one lock, each run in a worker thread so the event loop stays free:

- :meth:`HFBackend.complete` — chat-template the messages and generate (greedy, or sampled with a seed), with
  per-token logprobs and top-k alternatives on request; with ``request.choices`` it decodes nothing freely but scores
  each choice's tokens after the prompt and returns the best one.
- :meth:`HFBackend.complete_batch` — many requests in left-padded batched ``generate`` calls.
- :meth:`HFBackend.score_choices` — logprob mode (DESIGN §5, §11): the probability of each one-token choice (``Yes`` /
  ``No``) read from the next-token logits after the prompt, without decoding. The requests of one response share a
  long token prefix (instructions, conversation, response; the criterion comes last): its KV cache is computed once
  and only each request's remaining suffix tokens are run, batched. Prefix KV caches are also kept between calls
  (``max_prefix_cache`` of them, least recently used dropped), so the instructions shared by every response, or the
  prompt of the previous ``complete`` call, are not recomputed either.

Nothing is ever downloaded: a folder, a ``.gguf`` file, or a hub id already in the local Hugging Face cache.

This module holds the backend's options and its public methods; the work is done by the classes it builds on,
one sibling module each: :mod:`.hf_loading` (finding and loading the model, encoding prompts), :mod:`.hf_scoring`
(prefix KV caches, suffix forward passes, choice scoring) and :mod:`.hf_generation` (``generate``, one request or
a batch).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendSpecError, MissingDependencyError
from ._grammar import grammar_available
from .base import Capabilities, Completion, CompletionRequest, FatalBackendError
from .hf_generation import _Generation
from .hf_loading import _DTYPES, _import_torch, _resolve_model
from .hf_scoring import HFStats, _chunks, _PrefixStore, choice_token_ids

__all__ = ["HFBackend", "HFStats", "choice_token_ids", "hf_backend_from_spec"]

_OPTIONS = ("device", "dtype", "gguf_file", "batch_size", "max_prefix_cache", "spec")


class HFBackend(_Generation):
    """A local ``transformers`` causal LM as a judge (spec ``hf:MODEL_OR_PATH``).

    ``model_or_path``: a model folder, a ``.gguf`` file, or a hub id already in the local Hugging Face cache.
    ``device``: ``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto``. ``dtype``: ``float32``, ``bfloat16``,
    ``float16`` or ``auto`` (default: float32 on CPU, bfloat16 on GPU). ``gguf_file``: a GGUF file inside the folder.
    ``batch_size``: rows per forward pass. ``max_prefix_cache``: prompt-prefix KV caches kept between calls
    (0 turns cross-call reuse off). The model is loaded on first use (or by :meth:`load`).
    """

    def __init__(
        self,
        model_or_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        gguf_file: str | None = None,
        batch_size: int = 8,
        max_prefix_cache: int = 4,
        spec: str | None = None,
    ):
        torch, _ = _import_torch()
        self.model_path, self.gguf_file = _resolve_model(str(model_or_path), gguf_file)
        self.spec = spec or f"hf:{model_or_path}"
        if dtype not in _DTYPES:
            raise BackendSpecError(f"{self.spec}: unknown dtype {dtype!r} (one of {', '.join(_DTYPES[1:])})")
        try:
            if device != "auto":
                torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise BackendSpecError(f"{self.spec}: unknown device {device!r} (cpu, cuda, cuda:1, mps, auto)") from error
        # Structured output (json_schema) is grammar-constrained decoding; it needs the llguidance wheel.
        self.capabilities = Capabilities(logprobs=True, json_schema=grammar_available(), choices=True,
                                         prefix_cache=True, batch=True)
        self.device_name = device
        self.dtype_name = dtype
        self.batch_size = max(1, int(batch_size))
        self.stats = HFStats()
        """Token counters (prompt tokens, tokens reused from a prefix KV cache, tokens forwarded)."""
        self._store = _PrefixStore(int(max_prefix_cache))
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_error: BaseException | None = None
        self._reusable_cache = True
        self._keep_arg = False
        self._cache_arg = "past_key_values"

    # ----------------------------------------------------------------------------------------------- loading

    def load(self) -> None:
        """Load the model and tokenizer now (otherwise the first call does)."""
        with self._lock:
            self._ensure_loaded()

    async def aclose(self) -> None:
        """Drop the model, the tokenizer and the prefix caches."""
        with self._lock:
            self._model = self._tokenizer = None
            self._store.clear()

    # ----------------------------------------------------------------------------------------------- prompts

    def render_prompt(self, request: CompletionRequest) -> str:
        """The request's messages through the model's chat template, ending with the assistant's turn."""
        with self._lock:
            self._ensure_loaded()
            return self._render(request)

    # ----------------------------------------------------------------------------------------------- async API

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer one request: constrained to ``request.choices`` when given, else generated."""
        return await asyncio.to_thread(self._locked, self._complete_one, request)

    async def complete_batch(self, requests: Sequence[CompletionRequest]) -> list[Completion | BaseException]:
        """Answer many requests with batched generation; one result (or exception) per request, in order."""
        return await self._per_slot(len(requests), self._complete_many, list(requests))

    async def score_choices(
        self, requests: Sequence[CompletionRequest], choices: Sequence[str], *, reuse_prefix: bool = True
    ) -> list[dict[str, float] | BaseException]:
        """``choice → probability`` (renormalised over ``choices``) of each request's next token, without decoding.

        With ``reuse_prefix`` (the default) the group's common token prefix is run once and only the suffixes are
        run, batched; ``reuse_prefix=False`` runs one full forward pass per request (the baseline the bench and the
        tests compare against). Each result is a :class:`~rubrickit.backends.base.ChoiceScores` whose ``usage`` has
        the request's prompt tokens and, as ``cached_tokens``, those it took from a reused prefix KV cache.
        """
        return await self._per_slot(len(requests), self._score_group, list(requests), list(choices), reuse_prefix)

    async def _per_slot(self, count: int, fn: Callable[..., list[Any]], *args: Any) -> list[Any]:
        # A failure of the whole call (a bad choice list, the model not loading) lands in every slot.
        try:
            return await asyncio.to_thread(self._locked, fn, *args)
        except FatalBackendError as error:
            return [error] * count

    def raw_next_token_logits(self, texts: Sequence[str]) -> Any:
        """The next-token distribution after each already-rendered prompt (see :meth:`render_prompt`), as
        log-softmaxed logits: plain right-padded batched forward passes over the whole prompts, no prefix reuse.

        A ``[len(texts), vocab]`` float32 CPU tensor; the baseline a benchmark compares :meth:`score_choices` with.
        """

        def run() -> Any:
            torch = self._torch
            rows = [self._encode_text(text) for text in texts]
            out = []
            for chunk in _chunks(list(range(len(rows))), self.batch_size):
                logits = self._forward_suffixes([], None, [rows[i] for i in chunk], last_only=True)
                out.extend(logits)
            return torch.stack([row[-1] for row in out]).float().cpu() if out else torch.empty(0)

        return self._locked(run)

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            try:
                self._ensure_loaded()
                with self._torch.inference_mode():
                    return fn(*args)
            except (FatalBackendError, MissingDependencyError, BackendSpecError):
                raise
            except Exception as error:
                if type(error).__name__ == "OutOfMemoryError":
                    raise FatalBackendError(f"{self.spec}: out of memory ({error}); lower batch_size") from error
                raise FatalBackendError(f"{self.spec}: {type(error).__name__}: {error}") from error


def hf_backend_from_spec(model: str, **options: Any) -> HFBackend:
    """Registry factory for ``hf:MODEL_OR_PATH``; options: device, dtype, gguf_file, batch_size, max_prefix_cache."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise BackendSpecError(f"hf:{model}: unknown option(s) {', '.join(map(repr, unknown))} "
                               f"(known: {', '.join(_OPTIONS[:-1])})")
    return HFBackend(model, **options)
