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
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendSpecError, MissingDependencyError
from ._grammar import SchemaGrammars, SchemaLogitsProcessor, grammar_available
from .base import (
    Capabilities,
    ChoiceScores,
    Completion,
    CompletionRequest,
    FatalBackendError,
    TokenLogprob,
    Usage,
)

__all__ = ["HFBackend", "HFStats", "choice_token_ids", "hf_backend_from_spec"]

INSTALL_HINT = "pip install 'rubrickit[local]'"
_DTYPES = (None, "float32", "bfloat16", "float16", "auto")
_OPTIONS = ("device", "dtype", "gguf_file", "batch_size", "max_prefix_cache", "spec")
_KV = list[tuple[Any, Any]]  # per layer (keys, values), each [batch, heads, tokens, head_dim]


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as error:
        raise MissingDependencyError(
            f"the hf backend needs torch and transformers ({error.name or error} is not installed): {INSTALL_HINT}"
        ) from error
    return torch, transformers


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


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    # For base models without a chat template: a transcript that ends where the assistant speaks.
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    # Some templates (Gemma's) reject a system role: prepend it to the first user turn instead.
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def _resolve_model(model_or_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """A folder, a ``.gguf`` file (split into folder + file), or a hub id present in the local cache."""
    if not str(model_or_path).strip():
        raise BackendSpecError("hf: needs a model folder, a .gguf file or a cached hub id, e.g. 'hf:/models/qwen'")
    path = Path(model_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file and not (path / gguf_file).is_file() and not Path(gguf_file).is_file():
            raise BackendSpecError(f"hf:{model_or_path}: no GGUF file {gguf_file!r} in that folder")
        return str(path), gguf_file
    looks_like_path = str(model_or_path).startswith(("/", ".", "~")) or path.suffix == ".gguf"
    if not looks_like_path:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError as error:
            raise MissingDependencyError(f"the hf backend needs huggingface_hub: {INSTALL_HINT}") from error
        if isinstance(try_to_load_from_cache(str(model_or_path), gguf_file or "config.json"), str):
            return str(model_or_path), gguf_file
    raise BackendSpecError(
        f"hf:{model_or_path}: no such local model folder, .gguf file or cached hub model. rubrickit never downloads "
        f"weights: pass a folder path, or fetch it first (huggingface-cli download {model_or_path})"
    )


class HFBackend:
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

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        if self._load_error is not None:
            raise self._load_error
        torch, transformers = _import_torch()
        device = self._pick_device(torch)
        common: dict[str, Any] = {"local_files_only": True}
        if self.gguf_file:
            common["gguf_file"] = self.gguf_file
        dtype_key = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
        model_kwargs: dict[str, Any] = {dtype_key: self._pick_dtype(torch, device)}
        if device.type != "cpu":
            model_kwargs["device_map"] = str(device)  # straight onto the accelerator, not through host memory
        try:
            with _quiet_progress(transformers):
                tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_path, **common)
                model = transformers.AutoModelForCausalLM.from_pretrained(self.model_path, **common, **model_kwargs)
            model = model.to(device).eval()
        except (OSError, ValueError) as error:
            self._load_error = FatalBackendError(f"{self.spec}: could not load the model from {self.model_path}: "
                                                 f"{error}")
            raise self._load_error from error
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._torch, self._device = torch, device
        parameters = inspect.signature(model.forward).parameters
        self._keep_arg = "logits_to_keep" in parameters
        # transformers 5.x renames the KV-cache argument (and output field) to ``cache``; passing the old name
        # raises a FutureWarning there and stops working in 5.40. 4.x only knows ``past_key_values``.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._eos_ids = self._stop_ids(model, tokenizer)
        self._grammars = SchemaGrammars(tokenizer, self._eos_ids)
        self._model, self._tokenizer = model, tokenizer

    def _pick_device(self, torch: Any) -> Any:
        name = self.device_name
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        return torch.device(name)

    def _pick_dtype(self, torch: Any, device: Any) -> Any:
        if self.dtype_name == "auto":
            return "auto"
        if self.dtype_name:
            return getattr(torch, self.dtype_name)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    @staticmethod
    def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
        ids = model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else [] if ids is None else [ids]
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return list(dict.fromkeys(ids))

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

    def _render(self, request: CompletionRequest) -> str:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if not getattr(self._tokenizer, "chat_template", None):
            return _plain_prompt(messages)
        try:
            return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception:  # jinja raises its own TemplateError for a system role the template refuses
            if not any(m["role"] == "system" for m in messages):
                raise
            return self._tokenizer.apply_chat_template(_merge_system(messages), add_generation_prompt=True,
                                                       tokenize=False)

    def _encode_text(self, text: str) -> list[int]:
        # Chat templates already carry the special tokens (BOS and the like).
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, request: CompletionRequest) -> list[int]:
        ids = self._encode_text(self._render(request))
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit and len(ids) + 1 > limit:
            raise FatalBackendError(f"{self.spec}: the prompt has {len(ids)} tokens; the model takes at most {limit}")
        if not ids:
            raise FatalBackendError(f"{self.spec}: the prompt is empty")
        return ids

    def _choice_ids(self, choices: Sequence[str]) -> list[list[int]]:
        try:
            return choice_token_ids(self._encode_text, self._tokenizer.decode, choices)
        except ValueError as error:
            raise FatalBackendError(f"{self.spec}: {error}") from error

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

    # ----------------------------------------------------------------------------------------------- generation

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


def _version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= wanted


@contextlib.contextmanager
def _quiet_progress(transformers: Any) -> Iterator[None]:
    """Hide transformers' per-load progress bars (they are noise on every run of a CLI)."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def hf_backend_from_spec(model: str, **options: Any) -> HFBackend:
    """Registry factory for ``hf:MODEL_OR_PATH``; options: device, dtype, gguf_file, batch_size, max_prefix_cache."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise BackendSpecError(f"hf:{model}: unknown option(s) {', '.join(map(repr, unknown))} "
                               f"(known: {', '.join(_OPTIONS[:-1])})")
    return HFBackend(model, **options)
