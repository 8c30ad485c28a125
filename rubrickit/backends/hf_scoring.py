"""The ``hf`` backend's prefix-KV scoring: running a shared prompt prefix once and scoring choices after it.

The requests of one response share a long token prefix (instructions, conversation, response; the criterion comes
last). :class:`_PrefixScoring` computes that prefix's KV cache once (:meth:`~_PrefixScoring._prefix_kv`, served
from and kept in a :class:`_PrefixStore` of the last few prefixes, matched by longest common token prefix) and runs
only each request's remaining suffix tokens, as one right-padded batch on top of it
(:meth:`~_PrefixScoring._forward_suffixes`). On that it answers logprob mode (the probability of each one-token
choice from the next-token logits, :meth:`~_PrefixScoring._score_group`) and ``complete`` with ``choices`` (each
choice's tokens scored after the prompt, :meth:`~_PrefixScoring._complete_choices`). :func:`choice_token_ids` (the
tokens that count for each choice) is shared with :mod:`rubrickit.backends.vllm_backend`; :class:`HFStats` counts
the tokens reused and forwarded.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .base import ChoiceScores, Completion, CompletionRequest, FatalBackendError, TokenLogprob, Usage
from .hf_loading import _HFModel

__all__ = ["HFStats", "choice_token_ids"]

_KV = list[tuple[Any, Any]]  # per layer (keys, values), each [batch, heads, tokens, head_dim]


@dataclass
class HFStats:
    """Token counters since the backend was created (the bench and the tests read them)."""

    prompt_tokens: int = 0
    """Prompt tokens of every request answered."""
    reused_tokens: int = 0
    """Prompt tokens whose KV came from a shared or stored prefix instead of a forward pass."""
    forward_tokens: int = 0
    """Tokens run through the model in prompt forward passes (generation steps not counted)."""


class _PrefixStore:
    """The KV caches of the last few prompt prefixes (batch 1), looked up by longest common token prefix."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], _KV] = OrderedDict()

    def longest(self, ids: Sequence[int]) -> tuple[int, _KV | None]:
        best, best_key = 0, None
        for key in self._entries:
            n = _common_prefix_length(key, ids)
            if n > best:
                best, best_key = n, key
        if best_key is None:
            return 0, None
        self._entries.move_to_end(best_key)
        return best, self._entries[best_key]

    def add(self, ids: Sequence[int], kv: _KV) -> None:
        if self.capacity <= 0 or not ids:
            return
        self._entries[tuple(ids)] = kv
        self._entries.move_to_end(tuple(ids))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _choice_variants(choice: str) -> list[str]:
    forms = dict.fromkeys([choice, choice.lower(), choice.capitalize(), choice.upper()])
    return [v for form in forms for v in (form, " " + form)]


def _single_token_spellings(encode: Callable[[str], list[int]], choice: str) -> list[int]:
    """Token ids of the spellings of ``choice`` that are one token each (``Yes``, `` Yes``, ``yes``, ``YES``…)."""
    return list(dict.fromkeys(ids[0] for v in _choice_variants(choice) if len(ids := encode(v)) == 1))


def choice_token_ids(
    encode: Callable[[str], list[int]], decode: Callable[[list[int]], str], choices: Sequence[str]
) -> list[list[int]]:
    """The first-token ids that count for each choice: ``Yes``, `` Yes``, ``yes``, ``YES``… where one token.

    A choice that is one token in some spelling is represented by every such spelling's token; a longer choice by
    the first token of its exact text (with and without a leading space). Raises :class:`ValueError` when two
    choices share a token, since their probabilities could not be told apart from one next-token distribution.
    """
    result: list[list[int]] = []
    owner: dict[int, str] = {}
    for choice in choices:
        if not choice.strip():
            raise ValueError(f"choice {choice!r} is empty")
        ids = _single_token_spellings(encode, choice)
        if not ids:
            ids = list(dict.fromkeys(tokens[0] for v in (choice, " " + choice) if (tokens := encode(v))))
        for token in ids:
            if owner.setdefault(token, choice) != choice:
                raise ValueError(
                    f"choices {owner[token]!r} and {choice!r} both start with the token {decode([token])!r}; "
                    "score_choices needs choices that differ in their first token"
                )
        result.append(ids)
    return result


class _PrefixScoring(_HFModel):
    """Prefix KV caches, suffix forward passes and choice scoring of :class:`~rubrickit.backends.hf.HFBackend`."""

    batch_size: int
    stats: HFStats
    _store: _PrefixStore
    _reusable_cache: bool
    """Whether the model's KV cache can be cut and extended (no sliding-window or recurrent layers)."""

    # ----------------------------------------------------------------------------------------------- forward passes

    def _prefix_kv(self, ids: list[int]) -> tuple[_KV | None, int]:
        """KV cache of ``ids`` (batch 1) and how many of its tokens came from the store rather than a forward pass.

        ``None`` when ``ids`` is empty or the model's cache cannot be cut and extended (sliding-window or recurrent
        layers): the caller then runs whole prompts.
        """
        if not ids or not self._reusable_cache:
            return None, 0
        reused, kv = self._store.longest(ids)
        if kv is None or reused < len(ids):
            kv = self._run_prefix(ids[reused:], _sliced(kv, reused) if reused else None, reused)
            if not self._reusable_cache:
                return None, 0
            self._store.add(ids, kv)
        self.stats.reused_tokens += reused
        return _sliced(kv, len(ids)), reused

    def _run_prefix(self, ids: list[int], past: _KV | None, offset: int) -> _KV:
        torch = self._torch
        cache = self._make_cache(past, 1)
        inputs = torch.tensor([ids], device=self._device)
        positions = torch.arange(offset, offset + len(ids), device=self._device).unsqueeze(0)
        kwargs = {"logits_to_keep": 1} if self._keep_arg else {}
        kwargs[self._cache_arg] = cache
        out = self._model(input_ids=inputs, position_ids=positions, use_cache=True, **kwargs)
        self.stats.forward_tokens += len(ids)
        kv, reusable = _cache_tensors(getattr(out, self._cache_arg))
        self._reusable_cache = self._reusable_cache and reusable
        return kv

    def _make_cache(self, kv: _KV | None, batch: int) -> Any:
        """A ``DynamicCache`` of the batch-1 prefix ``kv`` for ``batch`` rows, without copying the prefix.

        Each layer holds the prefix as a broadcast view (``expand``, stride 0 over the rows); the model's own update
        concatenates the rows' new tokens onto it, the one copy its attention needs anyway. Filling the cache
        through ``DynamicCache(tensors)`` would copy the whole ``batch`` × prefix of every layer once more first (its
        layers start empty and concatenate what they are given), and so would ``batch_repeat_interleave``.
        """
        if not kv:
            return None
        from transformers import DynamicCache

        rows = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in kv]
        cache = DynamicCache([(k[:, :, :0], v[:, :, :0]) for k, v in rows])  # layers set up on empty tensors
        layers = getattr(cache, "layers", None)
        if layers is None:  # transformers < 4.56 keeps per-layer lists: filled the old way
            return DynamicCache(rows)
        for layer, (keys, values) in zip(layers, rows, strict=True):
            layer.keys, layer.values = keys, values  # DynamicLayer's storage; its updates concatenate, never write
        return cache

    def _forward_suffixes(
        self, prefix: list[int], kv: _KV | None, suffixes: list[list[int]], *, last_only: bool
    ) -> list[Any]:
        """Log-probabilities after each suffix token (``[len(suffix), vocab]`` per row; only the last row when
        ``last_only``), the suffixes run as one right-padded batch on top of the shared prefix KV.

        Right padding keeps every real token at its true position and out of reach of the pads (they come later
        under the causal mask), so the result equals a separate full forward pass per request.
        """
        torch = self._torch
        assert kv is not None or not prefix, "a prefix needs its KV cache"
        start, width, rows = len(prefix), max(map(len, suffixes)), len(suffixes)
        inputs = torch.full((rows, width), self._tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, start + width), dtype=torch.long)
        mask[:, :start] = 1
        for r, suffix in enumerate(suffixes):
            inputs[r, : len(suffix)] = torch.tensor(suffix)
            mask[r, start : start + len(suffix)] = 1
        positions = torch.arange(start, start + width).unsqueeze(0).expand(rows, -1)
        kwargs: dict[str, Any] = {self._cache_arg: self._make_cache(kv, rows)}
        last = [len(s) - 1 for s in suffixes]
        keep = sorted(set(last))
        if last_only and self._keep_arg:
            kwargs["logits_to_keep"] = torch.tensor(keep, device=self._device)
        out = self._model(
            input_ids=inputs.to(self._device), attention_mask=mask.to(self._device),
            position_ids=positions.to(self._device), use_cache=True, **kwargs,
        )
        self.stats.forward_tokens += sum(map(len, suffixes))
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        if last_only:
            column = {p: (keep.index(p) if self._keep_arg else p) for p in keep}
            return [logprobs[r, column[last[r]]].unsqueeze(0) for r in range(rows)]
        return [logprobs[r, : len(s)] for r, s in enumerate(suffixes)]

    # ----------------------------------------------------------------------------------------------- choices

    def _choice_ids(self, choices: Sequence[str]) -> list[list[int]]:
        try:
            return choice_token_ids(self._encode_text, self._tokenizer.decode, choices)
        except ValueError as error:
            raise FatalBackendError(f"{self.spec}: {error}") from error

    def _score_group(
        self, requests: list[CompletionRequest], choices: list[str], reuse_prefix: bool
    ) -> list[dict[str, float] | BaseException]:
        if not requests:
            return []
        choice_ids = self._choice_ids(choices)
        results: list[dict[str, float] | BaseException] = [FatalBackendError("not scored")] * len(requests)
        encoded: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            try:
                encoded[i] = self._encode(request)
            except FatalBackendError as error:
                results[i] = error
        self.stats.prompt_tokens += sum(map(len, encoded.values()))
        if reuse_prefix:
            reused: dict[int, int] = {}
            for i, lp in self._next_token_logprobs_shared(encoded, reused).items():
                results[i] = self._scores(lp, choice_ids, choices, len(encoded[i]), reused[i])
        else:
            for i, ids in encoded.items():
                lp = self._forward_suffixes([], None, [ids], last_only=True)[0][-1]
                results[i] = self._scores(lp, choice_ids, choices, len(ids), 0)
        return results

    @staticmethod
    def _scores(logprobs: Any, choice_ids: list[list[int]], choices: list[str], prompt: int, reused: int
                ) -> ChoiceScores:
        usage = Usage(input_tokens=prompt, output_tokens=1, cached_tokens=reused)
        return ChoiceScores(_choice_distribution(logprobs, choice_ids, choices), usage)

    def _next_token_logprobs_shared(self, encoded: dict[int, list[int]], reused: dict[int, int] | None = None
                                    ) -> dict[int, Any]:
        """Next-token log-probabilities of each prompt, running the group's common prefix once.

        ``reused`` receives each prompt's tokens that were not run for it: the first prompt is charged with the
        prefix's forward pass (less what a stored prefix served), every other one reuses the whole prefix — so the
        counts add up to the growth of ``stats.reused_tokens``.
        """
        if not encoded:
            return {}
        seqs = list(encoded.values())
        shared = min(min(map(len, seqs)) - 1, _common_prefix_of(seqs))  # each row keeps ≥ 1 token to run
        prefix = seqs[0][:shared]
        kv, stored = self._prefix_kv(prefix)
        if kv is None:
            prefix = []
        self.stats.reused_tokens += len(prefix) * (len(seqs) - 1)  # the other rows' share of the prefix
        if reused is not None:
            first = next(iter(encoded))
            reused.update({i: stored if i == first else len(prefix) for i in encoded})
        order = sorted(encoded, key=lambda i: len(encoded[i]))  # similar lengths together: less padding
        out: dict[int, Any] = {}
        for chunk in _chunks(order, self.batch_size):
            rows = self._forward_suffixes(prefix, kv, [encoded[i][len(prefix):] for i in chunk], last_only=True)
            out.update({i: row[-1] for i, row in zip(chunk, rows, strict=True)})
        return out

    def _complete_choices(self, request: CompletionRequest) -> Completion:
        """Score every choice's tokens after the prompt and answer the best one (sampled when temperature > 0).

        A choice's log-probability is the total over its one-token spellings (``Yes``, `` Yes``, ``yes``…) plus, for
        a choice whose exact text is several tokens, that token sequence's log-probability.
        """
        torch = self._torch
        choices = list(dict.fromkeys(request.choices or ()))
        if any(not c.strip() for c in choices):
            raise FatalBackendError(f"{self.spec}: empty choice in {choices!r}")
        ids = self._encode(request)
        self.stats.prompt_tokens += len(ids)
        singles = [_single_token_spellings(self._encode_text, c) for c in choices]
        tokens = [self._encode_text(c) for c in choices]
        longer = [n for n, t in enumerate(tokens) if len(t) > 1]
        # Row 0 ends with the prompt's last token: its output is the first-token distribution. One more row per
        # longer choice, continued with that choice's tokens, scores the choice's later tokens.
        prefix, kv, reused = self._split_prompt(ids)
        rows = [ids[len(prefix):]] + [ids[len(prefix):] + tokens[n][:-1] for n in longer]
        out = self._forward_suffixes(prefix, kv, rows, last_only=False)
        at = len(rows[0]) - 1
        first = out[0][at]
        parts: list[list[Any]] = [[first[ids_]] if ids_ else [] for ids_ in singles]
        for n, lp in zip(longer, out[1:], strict=True):
            steps = [lp[at + j, tokens[n][j]] for j in range(len(tokens[n]))]
            parts[n].append(torch.stack(steps).sum().reshape(1))
        scores = [float(torch.logsumexp(torch.cat(p), dim=0)) if p else -math.inf for p in parts]
        best = _pick(scores, request.temperature, request.seed)
        return Completion(
            text=choices[best],
            logprobs=(TokenLogprob(token=choices[best], logprob=scores[best],
                                   top=dict(zip(choices, scores, strict=True))),),
            usage=Usage(input_tokens=len(ids), output_tokens=max(1, len(tokens[best])), cached_tokens=reused),
            finish_reason="stop", model=self.spec,
        )

    def _split_prompt(self, ids: list[int]) -> tuple[list[int], _KV | None, int]:
        """All but the last prompt token as a cached prefix (reusing the store), when the model allows it."""
        kv, reused = self._prefix_kv(ids[:-1])
        return (ids[:-1], kv, reused) if kv is not None else ([], None, 0)


def _cache_tensors(cache: Any) -> tuple[_KV, bool]:
    """Per-layer (keys, values) of a batch-1 cache, and whether it can be cut and extended freely (full attention
    everywhere: no sliding windows, no recurrent state)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers ≥ 4.56
        reusable = all(type(layer).__name__ == "DynamicLayer" for layer in layers)
        return [(layer.keys, layer.values) for layer in layers], reusable
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True)), True
    return [(k, v) for k, v, *_ in cache], True


def _sliced(kv: _KV | None, length: int) -> _KV | None:
    if kv is None:
        return None
    return [(k[:, :, :length], v[:, :, :length]) for k, v in kv]


def _common_prefix_of(seqs: list[list[int]]) -> int:
    n = len(seqs[0])
    for seq in seqs[1:]:
        n = _common_prefix_length(seqs[0][:n], seq)
    return n


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _choice_distribution(logprobs: Any, choice_ids: list[list[int]], choices: list[str]) -> dict[str, float]:
    import torch

    mass = torch.stack([torch.logsumexp(logprobs[ids], dim=0) for ids in choice_ids])
    probs = torch.softmax(mass, dim=0).tolist()
    return dict(zip(choices, probs, strict=True))


def _pick(scores: list[float], temperature: float, seed: int | None) -> int:
    if temperature <= 0:
        return max(range(len(scores)), key=lambda n: scores[n])
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    return random.Random(seed).choices(range(len(scores)), weights=weights)[0]
