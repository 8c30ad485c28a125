"""``vllm:MODEL`` — an in-process ``vllm.LLM`` on GPUs: batched generation, automatic prefix caching, guided
decoding (choices and JSON schema) and logprobs.

Batching happens in one place. The backend declares ``Capabilities(batch=True)``, so the judge engine gathers its
concurrent requests itself and sends each batch it forms to :meth:`VLLMBackend.complete_batch`, which submits them as
one ``LLM.chat`` call (vLLM schedules the batch itself), run in a worker thread so the event loop stays free.
:meth:`VLLMBackend.complete` answers its one request the same way, as a batch of one, at once: it neither waits for
nor gathers other calls, since a second gathering layer would only wait on and regroup the batches the engine already
formed. A caller outside the engine with many requests at hand passes them to ``complete_batch``.

Automatic prefix caching is on, so every criterion of one response reuses the KV blocks of the shared instructions +
conversation + response (``Usage.cached_tokens`` reports the hit). :meth:`score_choices` asks for one token with its
logprobs, never decoding a paragraph.

Request building (:func:`build_sampling_kwargs`, :func:`make_sampling_params`) and result mapping
(:func:`to_completion`, :func:`choice_distribution`) are pure functions over objects shaped like vLLM's, so they are
tested without vLLM. Guided decoding is found by feature detection: ``SamplingParams(structured_outputs=
StructuredOutputsParams(...))`` in recent vLLM, ``SamplingParams(guided_decoding=GuidedDecodingParams(...))`` before.
Weights are never downloaded: the model must be a local folder or a hub id already in the local Hugging Face cache.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import math
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendSpecError, MissingDependencyError
from .base import Capabilities, Completion, CompletionRequest, FatalBackendError, TokenLogprob, Usage
from .hf import choice_token_ids

__all__ = [
    "VLLMBackend",
    "build_sampling_kwargs",
    "choice_distribution",
    "make_sampling_params",
    "resolve_local_model",
    "to_completion",
    "vllm_backend_from_spec",
]

INSTALL_HINT = "pip install 'rubrickit[vllm]'"
CHOICE_TOP_LOGPROBS = 20
"""Alternatives asked for when scoring choices (vLLM's default ``max_logprobs``)."""


def build_sampling_kwargs(request: CompletionRequest) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` from a request.

    A constraint comes as ``structured_outputs``: a plain dict (``{"choice": [...]}`` or ``{"json": schema}``) that
    :func:`make_sampling_params` wraps in whichever class the installed vLLM has. Choices win over a JSON schema.
    """
    kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if request.logprobs:
        kwargs["logprobs"] = request.top_logprobs  # vLLM adds the sampled token to the top-k itself
    if request.choices:
        kwargs["structured_outputs"] = {"choice": list(request.choices)}
    elif request.json_schema is not None:
        kwargs["structured_outputs"] = {"json": request.json_schema}
    return kwargs


def make_sampling_params(request: CompletionRequest, sampling_module: Any) -> Any:
    """A ``SamplingParams`` from ``sampling_module`` (``vllm.sampling_params``), with guided decoding in the form that
    module supports."""
    kwargs = build_sampling_kwargs(request)
    constraint = kwargs.pop("structured_outputs", None)
    if constraint is not None:
        if hasattr(sampling_module, "StructuredOutputsParams"):
            kwargs["structured_outputs"] = sampling_module.StructuredOutputsParams(**constraint)
        elif hasattr(sampling_module, "GuidedDecodingParams"):
            kwargs["guided_decoding"] = sampling_module.GuidedDecodingParams(**constraint)
        else:
            raise FatalBackendError(f"this vLLM has no guided decoding for {sorted(constraint)}; upgrade vllm "
                                    f"({INSTALL_HINT})")
    return sampling_module.SamplingParams(**kwargs)


def _accepts(cls: Any, name: str) -> bool:
    fields = getattr(cls, "__struct_fields__", None)  # SamplingParams is a msgspec.Struct
    if fields is not None:
        return name in fields
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _token_logprob(position: dict[int, Any], token_id: int) -> TokenLogprob:
    chosen = position.get(token_id)
    top: dict[str, float] = {}
    for tid, entry in sorted(position.items(), key=lambda item: -item[1].logprob):
        top.setdefault(_text(entry, tid), float(entry.logprob))  # two ids with one text: keep the likelier
    return TokenLogprob(
        token=_text(chosen, token_id) if chosen is not None else "",
        logprob=float(chosen.logprob) if chosen is not None else -math.inf,
        top=top,
    )


def _text(entry: Any, token_id: int) -> str:
    decoded = getattr(entry, "decoded_token", None)
    return decoded if decoded is not None else f"<{token_id}>"


def to_completion(request_output: Any, *, model: str | None = None) -> Completion:
    """A :class:`Completion` from a vLLM ``RequestOutput`` (its first output): text, per-token logprobs with their
    alternatives, finish reason, and usage with the prefix-cache hit (``num_cached_tokens``)."""
    if not request_output.outputs:
        raise FatalBackendError(f"vLLM returned no output for request {request_output.request_id!r}")
    out = request_output.outputs[0]
    logprobs = None
    if out.logprobs is not None:
        pairs = zip(out.logprobs, out.token_ids, strict=False)
        logprobs = tuple(_token_logprob(position, tid) for position, tid in pairs)
    usage = Usage(
        input_tokens=len(request_output.prompt_token_ids or ()),
        output_tokens=len(out.token_ids),
        cached_tokens=getattr(request_output, "num_cached_tokens", None) or 0,
    )
    return Completion(text=out.text, logprobs=logprobs, usage=usage, finish_reason=out.finish_reason, model=model)


def choice_distribution(
    position: dict[int, Any], choices: Sequence[str], choice_ids: Sequence[Sequence[int]] | None = None
) -> dict[str, float] | None:
    """``choice → probability`` renormalised over ``choices`` from one position's ``{token_id: Logprob}``.

    With ``choice_ids`` (each choice's spellings' token ids, all present because they were asked for) the mass is
    summed by id; otherwise by folded token text (``" Yes"``, ``"yes"`` count for ``Yes``). ``None`` when no choice
    appears among the returned tokens.
    """
    mass = dict.fromkeys(choices, 0.0)
    if choice_ids and all(tid in position for ids in choice_ids for tid in ids):
        for choice, ids in zip(choices, choice_ids, strict=True):
            mass[choice] = sum(math.exp(position[tid].logprob) for tid in ids)
    else:
        for tid, entry in position.items():
            folded = _text(entry, tid).strip().lower()
            for choice in choices:
                if folded == choice.lower():
                    mass[choice] += math.exp(entry.logprob)
    total = sum(mass.values())
    return {choice: value / total for choice, value in mass.items()} if total > 0 else None


def resolve_local_model(model: str) -> str:
    """A local folder for ``model``: the path itself, or the snapshot of a hub id in the local Hugging Face cache.

    vLLM would download a hub id it does not find; rubrickit never does, so a missing model is an error here.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if not str(model).startswith(("/", ".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return str(snapshot_download(str(model), local_files_only=True))
        except ImportError as error:
            raise MissingDependencyError(f"the vllm backend needs huggingface_hub: {INSTALL_HINT}") from error
        except Exception:  # LocalEntryNotFoundError and friends: not in the cache
            pass
    raise BackendSpecError(
        f"vllm:{model}: no such local model folder or cached hub model. rubrickit never downloads weights: pass a "
        f"folder path, or fetch it first (huggingface-cli download {model})"
    )


def _conversation(request: CompletionRequest) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in request.messages]


class VLLMBackend:
    """vLLM's offline ``LLM`` engine as a judge (spec ``vllm:MODEL``), with automatic prefix caching on.

    ``model``: a local folder or a hub id in the local cache. ``tensor_parallel_size``, ``gpu_memory_utilization``,
    ``max_model_len`` and any other ``llm_kwargs`` go to ``vllm.LLM``. The engine starts on first use (or
    :meth:`load`); starting it takes a minute or so.
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        spec: str | None = None,
        **llm_kwargs: Any,
    ):
        if "vllm" not in sys.modules and importlib.util.find_spec("vllm") is None:
            raise MissingDependencyError(f"the vllm backend needs vLLM (a CUDA GPU machine): {INSTALL_HINT}")
        self.model = model
        self.spec = spec or f"vllm:{model}"
        self.capabilities = Capabilities(logprobs=True, json_schema=True, choices=True, prefix_cache=True, batch=True)
        self._llm_kwargs: dict[str, Any] = {
            "model": resolve_local_model(model),
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "enable_prefix_caching": True,
            **llm_kwargs,
        }
        if max_model_len is not None:
            self._llm_kwargs["max_model_len"] = int(max_model_len)
        self._llm: Any = None
        self._sampling: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Start the engine now (otherwise the first call does)."""
        with self._lock:
            self._engine()

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                import vllm
                from vllm import sampling_params

                self._llm = vllm.LLM(**self._llm_kwargs)
            except ImportError as error:
                raise MissingDependencyError(f"the vllm backend needs vLLM: {INSTALL_HINT} ({error})") from error
            except Exception as error:
                raise FatalBackendError(f"{self.spec}: the vLLM engine did not start: {type(error).__name__}: "
                                        f"{error}") from error
            self._sampling = sampling_params
        return self._llm

    async def aclose(self) -> None:
        """Drop the engine (vLLM frees the GPU memory when it is garbage-collected)."""
        with self._lock:
            self._llm = None

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer one request: one ``LLM.chat`` call of its own (batching is the caller's, see the module doc)."""
        (result,) = await self.complete_batch([request])
        if isinstance(result, BaseException):
            raise result
        return result

    async def complete_batch(self, requests: Sequence[CompletionRequest]) -> list[Completion | BaseException]:
        """All requests in one ``LLM.chat`` call; one result (or exception) per request, in order."""
        return await asyncio.to_thread(self._run_batch, list(requests))

    def _run_batch(self, requests: list[CompletionRequest]) -> list[Completion | BaseException]:
        results: list[Completion | BaseException] = [FatalBackendError("not answered")] * len(requests)
        with self._lock:
            llm = self._engine()
            slots, conversations, params = [], [], []
            for i, request in enumerate(requests):
                try:
                    params.append(make_sampling_params(request, self._sampling))
                except Exception as error:
                    results[i] = _fatal(self.spec, error)
                    continue
                slots.append(i)
                conversations.append(_conversation(request))
            if not slots:
                return results
            try:
                outputs = llm.chat(conversations, sampling_params=params, use_tqdm=False)
            except Exception as error:
                return [_fatal(self.spec, error) if i in slots else results[i] for i in range(len(requests))]
        for i, output in zip(slots, outputs, strict=True):
            try:
                results[i] = to_completion(output, model=self.spec)
            except Exception as error:
                results[i] = _fatal(self.spec, error)
        return results

    async def score_choices(
        self, requests: Sequence[CompletionRequest], choices: Sequence[str]
    ) -> list[dict[str, float] | BaseException]:
        """``choice → probability`` of each request's next token: one generated token with its logprobs (the prefix
        cache serves the shared prompt)."""
        return await asyncio.to_thread(self._score, list(requests), list(choices))

    def _score(self, requests: list[CompletionRequest], choices: list[str]) -> list[dict[str, float] | BaseException]:
        if not requests:
            return []
        with self._lock:
            llm = self._engine()
            tokenizer = llm.get_tokenizer()
            try:
                ids = choice_token_ids(lambda t: list(tokenizer.encode(t, add_special_tokens=False)),
                                       tokenizer.decode, choices)
            except ValueError as error:
                return [FatalBackendError(f"{self.spec}: {error}")] * len(requests)
            kwargs: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "logprobs": CHOICE_TOP_LOGPROBS}
            if _accepts(self._sampling.SamplingParams, "logprob_token_ids"):
                kwargs["logprob_token_ids"] = [tid for group in ids for tid in group]  # always reported
            params = self._sampling.SamplingParams(**kwargs)
            try:
                outputs = llm.chat([_conversation(r) for r in requests], sampling_params=params, use_tqdm=False)
            except Exception as error:
                return [_fatal(self.spec, error)] * len(requests)
        results: list[dict[str, float] | BaseException] = []
        for output in outputs:
            logprobs = output.outputs[0].logprobs if output.outputs else None
            probs = choice_distribution(logprobs[0], choices, ids) if logprobs else None
            results.append(probs if probs is not None else FatalBackendError(
                f"{self.spec}: none of {choices!r} among the {CHOICE_TOP_LOGPROBS} likeliest next tokens"))
        return results


def _fatal(spec: str, error: Exception) -> FatalBackendError:
    if isinstance(error, FatalBackendError):
        return error
    return FatalBackendError(f"{spec}: {type(error).__name__}: {error}")


def vllm_backend_from_spec(model: str, **options: Any) -> VLLMBackend:
    """Registry factory for ``vllm:MODEL``; options go to :class:`VLLMBackend` (and on to ``vllm.LLM``)."""
    if not model:
        raise BackendSpecError("vllm: needs a model, e.g. 'vllm:/models/Qwen2.5-7B-Instruct'")
    return VLLMBackend(model, **options)
