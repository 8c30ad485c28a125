"""Schema-constrained decoding for the local ``hf`` (and ``embedded``) backend: JSON Schema → grammar → token masks.

The grammar engine is `llguidance <https://github.com/guidance-ai/llguidance>`_ (MIT; the engine behind vLLM's,
SGLang's and llama.cpp's structured output). Why it and not xgrammar or outlines: it is one 3 MB wheel with no
dependencies (xgrammar pulls triton and a TVM runtime; outlines its own stack), it compiles a schema in about a
millisecond and computes a 49k-token mask in tens of microseconds (``bench/bench_structured.py``), and it reads a
Hugging Face fast tokenizer directly.

How a request is constrained (:class:`SchemaGrammars`):

- the schema is first *bounded* for the request's ``max_tokens`` (:func:`bounded_schema`): every free string gets a
  ``maxLength`` so that the longest reply the grammar allows still fits, whatever the model writes. A small model
  under a grammar otherwise fills a rationale until the token budget runs out, and a cut-off reply parses no better
  than prose;
- the bounded schema is compiled once into a matcher (cached per schema and budget, least recently used dropped);
  each generated row gets a cheap copy of it;
- at every decoding step :class:`SchemaLogitsProcessor` advances each row's matcher by the token just chosen and masks
  the next-token logits to the tokens the grammar allows there (rows without a schema are left free). Enums
  (``met``/``unmet``/``not_applicable``, ``A``/``B``/``tie``, scale levels) are therefore guaranteed by construction,
  and once the JSON value is complete only an end-of-sequence token is allowed.

Separators are fixed (``", "`` and ``": "``) and free whitespace is off: a small model under a grammar that allows
whitespace can emit newlines forever.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SchemaGrammars", "SchemaLogitsProcessor", "bounded_schema", "grammar_available"]

_COMPILE_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_MIN_STRING = 1
"""The shortest ``maxLength`` a free string is given, however tight the budget."""
_USEFUL_STRING = 96
"""Characters a free string in a list should get (or its own ``maxLength`` when shorter) before lists give up
items: about one criterion sentence."""


def grammar_available() -> bool:
    """Whether the grammar engine (``llguidance``) is installed."""
    import importlib.util

    return importlib.util.find_spec("llguidance") is not None


def _strings(schema: Any, weight: int, found: list[tuple[dict[str, Any], int]]) -> None:
    """Collect the string sub-schemas a reply can fill freely (no enum, const or pattern), each with how many times
    it can occur in one reply (the product of the ``maxItems`` of the arrays around it; 1 where unbounded)."""
    if isinstance(schema, list):
        for item in schema:
            _strings(item, weight, found)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not ({"enum", "const", "pattern"} & set(schema)):
        found.append((schema, weight))
    inner = weight * int(schema.get("maxItems", 1)) if schema.get("type") == "array" else weight
    for key, value in schema.items():
        if key not in ("enum", "const", "default", "examples"):
            _strings(value, inner if key in ("items", "prefixItems") else weight, found)


def _skeleton(schema: Any) -> Any:
    """The largest instance of ``schema`` with every free string empty (for counting the structure's tokens)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(json.dumps(v)))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return max((_skeleton(s) for s in schema[key]), key=lambda v: len(json.dumps(v)))
    kind = schema.get("type")
    if kind == "object":
        return {name: _skeleton(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_skeleton(schema.get("items") or {}) for _ in range(int(schema.get("maxItems", 1)))]
    if kind == "string":
        return "x" * int(schema.get("maxLength", 0)) if "maxLength" in schema else ""
    if kind in ("integer", "number"):
        return max((schema.get("minimum", 0), schema.get("maximum", 0)), key=lambda v: len(str(v)))
    if kind == "boolean":
        return False
    return None


def bounded_schema(schema: dict[str, Any], max_tokens: int, count_tokens: Callable[[str], int]) -> dict[str, Any]:
    """A copy of ``schema`` whose longest reply fits ``max_tokens``: free strings share what the structure leaves.

    The structure is measured by tokenizing the largest instance with empty strings (every array at its
    ``maxItems``), with half again as much for a model that spells it in smaller tokens. The rest is shared out
    between the strings, weighted by how often each can occur: a string whose own ``maxLength`` is below its share
    keeps it and leaves the remainder to the others; the others get the share (at least :data:`_MIN_STRING`). One
    character never takes more than one token in ASCII text, so the reply cannot be cut off (text of two or three
    tokens per character, such as a CJK rationale, still can; the engine then records an ``error``).

    Lists of free text give up items before their strings shrink below :data:`_USEFUL_STRING` characters: while
    the share falls short, such lists lose items together, never below their ``minItems`` (nor below one). Twenty
    criteria of twenty characters are fragments a small model fills by repeating itself; seven of a hundred are
    sentences. Raises :class:`ValueError` when ``max_tokens`` cannot hold even the smallest structure.
    """
    bounded = copy.deepcopy(schema)
    if not _strings_of(bounded):
        return bounded
    while True:
        strings = _strings_of(bounded)
        structure, slots = _structure_tokens(bounded, count_tokens), sum(weight for _, weight in strings)
        # A model under a grammar may spell the forced structure in more, smaller tokens than the tokenizer would
        # (measured: 3 more in 33 on SmolLM2); half again as many, plus the end-of-sequence token, leaves room for it.
        budget = max_tokens - (3 * structure) // 2 - 2
        wanted = sum(min(int(node.get("maxLength", _USEFUL_STRING)), _USEFUL_STRING) * weight
                     for node, weight in strings)
        fits = structure + slots + 1 <= max_tokens
        if fits and budget >= wanted:
            break
        lists = _text_lists(bounded)
        if not lists:
            if not fits:
                raise ValueError(f"max_tokens {max_tokens} cannot hold a reply of this schema (its structure alone "
                                 f"takes about {structure} tokens); raise max_tokens")
            break
        for node in lists:  # each list loses about a fifth of its items per round (at least one)
            floor = max(int(node.get("minItems", 0)), 1)
            node["maxItems"] = max(floor, int(node["maxItems"]) - max(1, int(node["maxItems"]) // 5))
    for node, weight in sorted(strings, key=lambda pair: pair[0].get("maxLength", max_tokens)):
        share = max(_MIN_STRING, int(node.get("minLength", 0)), budget // slots)
        node["maxLength"] = min(int(node.get("maxLength", share)), share)
        budget -= node["maxLength"] * weight
        slots -= weight
    return bounded


def _structure_tokens(schema: dict[str, Any], count_tokens: Callable[[str], int]) -> int:
    """Tokens of the largest instance of ``schema`` with every free string empty."""
    empty = copy.deepcopy(schema)
    for node, _ in _strings_of(empty):
        node["maxLength"] = 0
    return count_tokens(json.dumps(_skeleton(empty), ensure_ascii=False, separators=(", ", ": ")))


def _text_lists(schema: Any) -> list[dict[str, Any]]:
    """The arrays of ``schema`` holding free strings that may still lose items (``maxItems`` above its floor)."""
    if isinstance(schema, list):
        return [node for item in schema for node in _text_lists(item)]
    if not isinstance(schema, dict):
        return []
    found = []
    if (schema.get("type") == "array" and "maxItems" in schema and _strings_of(schema.get("items") or {})
            and int(schema["maxItems"]) > max(int(schema.get("minItems", 0)), 1)):
        found.append(schema)
    for key, value in schema.items():
        if key not in ("enum", "const", "default", "examples"):
            found.extend(_text_lists(value))
    return found


def _strings_of(schema: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    found: list[tuple[dict[str, Any], int]] = []
    _strings(schema, 1, found)
    return found


class SchemaGrammars:
    """Compiled JSON-Schema matchers for one tokenizer, cached per (schema, max_tokens).

    ``tokenizer`` is a Hugging Face fast tokenizer; ``eos_ids`` the ids that end generation. Building the grammar
    engine's view of the vocabulary takes about half a second, so it is done once, on first use.
    """

    def __init__(self, tokenizer: Any, eos_ids: Sequence[int], *, capacity: int = 64):
        self._hf_tokenizer = tokenizer
        self._eos_ids = list(eos_ids)
        self._capacity = capacity
        self._templates: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._ll_tokenizer: Any = None
        self._lock = threading.Lock()
        self.compiled = 0
        """How many schemas were compiled (cache misses)."""

    def _tokenizer(self) -> Any:
        if self._ll_tokenizer is None:
            import llguidance.hf

            self._ll_tokenizer = llguidance.hf.from_tokenizer(self._hf_tokenizer, eos_token=self._eos_ids or None)
        return self._ll_tokenizer

    @property
    def vocab_size(self) -> int:
        """The grammar engine's vocabulary size (the width of a token mask)."""
        return int(self._tokenizer().vocab_size)

    def matcher(self, schema: dict[str, Any], max_tokens: int) -> Any:
        """A fresh matcher for ``schema`` bounded to ``max_tokens`` (a copy of the cached compiled one).

        Raises :class:`ValueError` naming the grammar engine's complaint when the schema cannot be compiled.
        """
        key = (json.dumps(schema, sort_keys=True, ensure_ascii=False), int(max_tokens))
        with self._lock:
            template = self._templates.get(key)
            if template is None:
                template = self._compile(schema, max_tokens)
                self._templates[key] = template
                while len(self._templates) > self._capacity:
                    self._templates.popitem(last=False)
            self._templates.move_to_end(key)
            return template.deep_copy()

    def _compile(self, schema: dict[str, Any], max_tokens: int) -> Any:
        import llguidance

        tokenizer = self._tokenizer()

        def count(text: str) -> int:
            return len(tokenizer.tokenize_str(text))

        bounded = bounded_schema(schema, max_tokens, count)
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(bounded, defaults=_COMPILE_OPTIONS)
        except ValueError as error:
            raise ValueError(f"the JSON schema cannot be compiled into a grammar: {error}") from None
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"the JSON schema cannot be compiled into a grammar: {matcher.get_error()}")
        self.compiled += 1
        return matcher


class SchemaLogitsProcessor:
    """A ``transformers`` logits processor that keeps each row of a batch inside its own grammar.

    ``matchers[r]`` is row ``r``'s matcher, or ``None`` for a row decoded freely. ``prompt_width`` is the (padded)
    prompt length: the first call sees only the prompt, later calls one more generated token per row. A row that has
    produced an end-of-sequence token is left alone (its later tokens are padding and are dropped).
    """

    def __init__(self, matchers: Sequence[Any], prompt_width: int, vocab_size: int, eos_ids: Sequence[int]):
        import numpy as np

        self._np = np
        self.matchers = list(matchers)
        self._width = prompt_width
        self._eos = set(eos_ids)
        self._done = [m is None for m in self.matchers]
        self._words = (vocab_size + 31) // 32
        self._mask = np.zeros((len(self.matchers), self._words), dtype=np.int32)
        self.failed: list[str | None] = [None] * len(self.matchers)
        """Per row: the grammar engine's error when a row left its grammar (should never happen)."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import llguidance.numpy

        np = self._np
        if input_ids.shape[1] > self._width:
            for r, token in enumerate(input_ids[:, -1].tolist()):
                if self._done[r]:
                    continue
                if token in self._eos:
                    self._done[r] = True
                elif not self.matchers[r].consume_token(token):
                    self.failed[r] = self.matchers[r].get_error() or "token rejected"
                    self._done[r] = True
        live = [(m, r) for r, m in enumerate(self.matchers) if not self._done[r]]
        if not live:
            return scores
        self._mask.fill(-1)  # rows left alone: every token allowed
        llguidance.numpy.fill_next_token_bitmask_par(_executor(), live, self._mask)
        bits = np.unpackbits(self._mask.view(np.uint8), axis=1, bitorder="little").astype(bool)
        torch = _torch()
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        width = min(bits.shape[1], scores.shape[1])
        allowed[:, :width] = torch.from_numpy(bits[:, :width])
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


_EXECUTOR: Any = None


def _executor() -> Any:
    global _EXECUTOR
    if _EXECUTOR is None:
        import llguidance

        _EXECUTOR = llguidance.LLExecutor(num_threads=1)  # masks of one batch are cheap; leave cores to the model
    return _EXECUTOR


def _torch() -> Any:
    import torch

    return torch
