"""The ``hf`` backend's generation: ``complete`` and ``complete_batch`` decoded by the model's ``generate``.

:class:`_Generation` answers one request (its prompt's prefix KV taken from the store of :mod:`.hf_scoring`; a
request with ``choices`` is scored instead) or many in left-padded batched ``generate`` calls (greedy, or sampled
with a seed), with per-token logprobs and top-k alternatives on request, and a request's ``json_schema`` enforced
by the grammar of :mod:`rubrickit.backends._grammar`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ._grammar import SchemaLogitsProcessor
from .base import Capabilities, Completion, CompletionRequest, FatalBackendError, TokenLogprob, Usage
from .hf_loading import INSTALL_HINT
from .hf_scoring import _KV, _chunks, _PrefixScoring

__all__: list[str] = []


class _Generation(_PrefixScoring):
    """Generation of :class:`~rubrickit.backends.hf.HFBackend`: one request, or a left-padded batch of them."""

    capabilities: Capabilities

    def _complete_one(self, request: CompletionRequest) -> Completion:
        if request.choices:
            return self._complete_choices(request)
        ids = self._encode(request)
        self.stats.prompt_tokens += len(ids)
        prefix, kv, reused = self._split_prompt(ids)  # generate() runs at least the last prompt token itself
        self.stats.forward_tokens += len(ids) - len(prefix)
        return self._generate([ids], request, kv=kv, reused=reused)[0]

    def _complete_many(self, requests: list[CompletionRequest]) -> list[Completion | BaseException]:
        results: list[Completion | BaseException] = [FatalBackendError("not answered")] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, request in enumerate(requests):
            if request.choices or (request.temperature > 0 and request.seed is not None):
                groups.setdefault(("one", i), []).append(i)  # choices and seeded sampling: one at a time
            else:
                groups.setdefault(("batch", request.temperature), []).append(i)
        for key, members in groups.items():
            for chunk in _chunks(sorted(members, key=lambda i: requests[i].max_tokens), self.batch_size):
                try:
                    if key[0] == "one":
                        results[chunk[0]] = self._complete_one(requests[chunk[0]])
                        continue
                    encoded = [self._encode(requests[i]) for i in chunk]
                    self.stats.prompt_tokens += sum(map(len, encoded))
                    self.stats.forward_tokens += sum(map(len, encoded))
                    outs = self._generate(encoded, *[requests[i] for i in chunk])
                    for i, out in zip(chunk, outs, strict=True):
                        results[i] = out
                except Exception as error:  # one failing chunk does not sink the others
                    for i in chunk:
                        results[i] = error if isinstance(error, FatalBackendError) else FatalBackendError(
                            f"{self.spec}: {type(error).__name__}: {error}")
        return results

    def _generate(
        self, encoded: list[list[int]], *requests: CompletionRequest, kv: _KV | None = None, reused: int = 0
    ) -> list[Completion]:
        """Generate for one request (optionally on a stored prefix KV) or a left-padded batch of them."""
        torch = self._torch
        width, rows = max(map(len, encoded)), len(encoded)
        inputs = torch.full((rows, width), self._tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for r, ids in enumerate(encoded):
            inputs[r, width - len(ids):] = torch.tensor(ids)
            mask[r, width - len(ids):] = 1
        lead = requests[0]
        want_logprobs = any(r.logprobs for r in requests)
        config = self._generation_config(lead, max(r.max_tokens for r in requests), want_logprobs)
        constrained = self._schema_processor(requests, width)
        with self._seeded(lead.seed if lead.temperature > 0 else None):
            out = self._model.generate(
                input_ids=inputs.to(self._device), attention_mask=mask.to(self._device), generation_config=config,
                logits_processor=[constrained] if constrained else None,
                **{self._cache_arg: self._make_cache(kv, 1) if kv else None},
            )
        steps = out.sequences[:, width:].tolist()
        step_logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), -1) if want_logprobs else None
        results = []
        for r, request in enumerate(requests):
            tokens = steps[r][: request.max_tokens]
            stop = next((j for j, t in enumerate(tokens) if t in self._eos_ids), None)
            kept = tokens if stop is None else tokens[: stop + 1]
            text_ids = kept if stop is None else kept[:-1]
            logprobs = None
            if request.logprobs and step_logprobs is not None:
                logprobs = tuple(self._token_logprob(step_logprobs[r, j], t, request.top_logprobs)
                                 for j, t in enumerate(kept))
            results.append(Completion(
                text=self._tokenizer.decode(text_ids, skip_special_tokens=True),
                logprobs=logprobs,
                usage=Usage(input_tokens=len(encoded[r]), output_tokens=len(kept), cached_tokens=reused),
                finish_reason="stop" if stop is not None else "length", model=self.spec,
            ))
        return results

    def _schema_processor(self, requests: Sequence[CompletionRequest], width: int) -> SchemaLogitsProcessor | None:
        """The grammar constraint of the rows whose request has a ``json_schema`` (``None`` when none has)."""
        if not any(r.json_schema is not None for r in requests):
            return None
        if not self.capabilities.json_schema:
            raise FatalBackendError(f"{self.spec}: json_schema needs the grammar engine llguidance: {INSTALL_HINT}")
        try:
            matchers = [self._grammars.matcher(r.json_schema, r.max_tokens) if r.json_schema is not None else None
                        for r in requests]
        except ValueError as error:
            raise FatalBackendError(f"{self.spec}: {error}") from error
        return SchemaLogitsProcessor(matchers, width, self._grammars.vocab_size, self._eos_ids)

    def _generation_config(self, request: CompletionRequest, max_new_tokens: int, logits: bool) -> Any:
        from transformers import GenerationConfig

        sampled = request.temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sampled, temperature=request.temperature if sampled else None,
            top_p=None, top_k=None, eos_token_id=self._eos_ids, pad_token_id=self._tokenizer.pad_token_id,
            return_dict_in_generate=True, output_logits=logits,
        )

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        if seed is None:
            yield
            return
        torch = self._torch
        devices = [self._device.index or 0] if self._device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _token_logprob(self, logprobs: Any, token: int, top_k: int) -> TokenLogprob:
        top: dict[str, float] = {}
        if top_k:
            values, indices = self._torch.topk(logprobs, top_k)
            for value, index in zip(values.tolist(), indices.tolist(), strict=True):
                top.setdefault(self._tokenizer.decode([index]), value)
        return TokenLogprob(token=self._tokenizer.decode([token]), logprob=float(logprobs[token]), top=top)
