"""The vllm backend: request building and result mapping on stand-ins shaped like vLLM's objects, the batching
plumbing on a stand-in engine, and one real run on a GPU (skipped with the reason where there is none)."""

from __future__ import annotations

import asyncio
import math
import sys
import types
from types import SimpleNamespace

import pytest

from rubrickit.backends.base import CompletionRequest, FatalBackendError, Message, choice_probabilities
from rubrickit.backends.vllm_backend import (
    VLLMBackend,
    build_sampling_kwargs,
    choice_distribution,
    make_sampling_params,
    resolve_local_model,
    to_completion,
    vllm_backend_from_spec,
)
from rubrickit.errors import BackendSpecError, MissingDependencyError

gpu = pytest.mark.gpu


def request(**update: object) -> CompletionRequest:
    base = CompletionRequest(messages=(Message(role="system", content="Grade."), Message(role="user", content="Hi")))
    return base.model_copy(update=update) if update else base


def logprob(value: float, text: str | None, rank: int = 1) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, rank=rank, decoded_token=text)


class Recorder:
    """Stands in for a vLLM parameter class: keeps its keyword arguments."""

    def __init__(self, **kwargs: object):
        self.kwargs = kwargs


class NewSamplingParams(Recorder):
    __struct_fields__ = ("max_tokens", "temperature", "seed", "logprobs", "structured_outputs", "logprob_token_ids")


NEW_API = SimpleNamespace(SamplingParams=NewSamplingParams, StructuredOutputsParams=Recorder)
OLD_API = SimpleNamespace(SamplingParams=Recorder, GuidedDecodingParams=Recorder)


# ------------------------------------------------------------------------------------------------ pure functions


def test_sampling_kwargs_carry_length_temperature_seed_and_logprobs() -> None:
    assert build_sampling_kwargs(request(max_tokens=64)) == {"max_tokens": 64, "temperature": 0.0}
    assert build_sampling_kwargs(request(temperature=0.7, seed=3, logprobs=True, top_logprobs=5)) == {
        "max_tokens": 512, "temperature": 0.7, "seed": 3, "logprobs": 5}
    assert build_sampling_kwargs(request(logprobs=True))["logprobs"] == 0  # the sampled token's own logprob


def test_constraints_become_structured_outputs_and_choices_win() -> None:
    schema = {"type": "object", "properties": {"verdict": {"enum": ["met", "unmet"]}}}
    assert build_sampling_kwargs(request(json_schema=schema))["structured_outputs"] == {"json": schema}
    both = build_sampling_kwargs(request(json_schema=schema, choices=("Yes", "No")))
    assert both["structured_outputs"] == {"choice": ["Yes", "No"]}


def test_guided_decoding_uses_whichever_api_vllm_has() -> None:
    new = make_sampling_params(request(choices=("Yes", "No")), NEW_API)
    assert new.kwargs["structured_outputs"].kwargs == {"choice": ["Yes", "No"]} and "guided_decoding" not in new.kwargs
    old = make_sampling_params(request(json_schema={"type": "object"}), OLD_API)
    assert old.kwargs["guided_decoding"].kwargs == {"json": {"type": "object"}}
    assert "structured_outputs" not in old.kwargs
    plain = make_sampling_params(request(), SimpleNamespace(SamplingParams=Recorder))
    assert plain.kwargs == {"max_tokens": 512, "temperature": 0.0}
    with pytest.raises(FatalBackendError, match="no guided decoding"):
        make_sampling_params(request(choices=("A", "B")), SimpleNamespace(SamplingParams=Recorder))


def request_output(**overrides: object) -> SimpleNamespace:
    out = SimpleNamespace(
        index=0, text="Yes", token_ids=[9, 2], cumulative_logprob=-0.3, finish_reason="stop", stop_reason=None,
        logprobs=[{9: logprob(-0.2, "Yes"), 4: logprob(-1.8, "No", 2), 5: logprob(-3.0, " yes", 3)},
                  {2: logprob(-0.1, "<|im_end|>")}],
    )
    fields = {"request_id": "0", "prompt": None, "prompt_token_ids": list(range(120)), "outputs": [out],
              "finished": True, "num_cached_tokens": 96}
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_request_output_maps_to_a_completion() -> None:
    completion = to_completion(request_output(), model="vllm:judge")
    assert (completion.text, completion.finish_reason, completion.model) == ("Yes", "stop", "vllm:judge")
    assert completion.usage.model_dump() == {"input_tokens": 120, "output_tokens": 2, "cached_tokens": 96}
    first, second = completion.logprobs
    assert (first.token, first.logprob) == ("Yes", -0.2)
    assert first.top == {"Yes": -0.2, "No": -1.8, " yes": -3.0}
    assert second.token == "<|im_end|>"
    probs = choice_probabilities(first.top, ["Yes", "No"])
    assert probs["Yes"] == pytest.approx((math.exp(-0.2) + math.exp(-3.0)) / (math.exp(-0.2) + math.exp(-3.0)
                                                                             + math.exp(-1.8)))


def test_request_output_without_logprobs_or_cache_count() -> None:
    bare = request_output(num_cached_tokens=None)
    bare.outputs[0].logprobs = None
    bare.outputs[0].finish_reason = "length"
    completion = to_completion(bare)
    assert completion.logprobs is None and completion.usage.cached_tokens == 0
    assert completion.finish_reason == "length"
    with pytest.raises(FatalBackendError, match="no output"):
        to_completion(request_output(outputs=[]))


def test_choice_distribution_by_token_id_and_by_text() -> None:
    position = {9: logprob(-0.2, "Yes"), 5: logprob(-3.0, " yes"), 4: logprob(-1.8, "No"), 7: logprob(-4.0, "Maybe")}
    by_id = choice_distribution(position, ["Yes", "No"], [[9, 5], [4]])
    expected_yes = (math.exp(-0.2) + math.exp(-3.0)) / (math.exp(-0.2) + math.exp(-3.0) + math.exp(-1.8))
    assert by_id["Yes"] == pytest.approx(expected_yes)
    assert choice_distribution(position, ["Yes", "No"], [[9, 5], [4, 99]]) == pytest.approx(by_id)  # 99 absent
    assert choice_distribution(position, ["Yes", "No"]) == pytest.approx(by_id)
    assert choice_distribution({7: logprob(-0.1, "Maybe")}, ["Yes", "No"]) is None


def test_models_are_never_downloaded(tmp_path) -> None:
    assert resolve_local_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(BackendSpecError, match="never downloads"):
        resolve_local_model(str(tmp_path / "absent"))
    with pytest.raises(BackendSpecError, match="huggingface-cli download no-such-org/no-such-model-xyz"):
        resolve_local_model("no-such-org/no-such-model-xyz")


# ------------------------------------------------------------------------------------------------ engine plumbing


class FakeTokenizer:
    vocab = {"Yes": 9, " Yes": 10, "yes": 5, " yes": 11, "YES": 12, " YES": 13, "No": 4, " No": 14, "no": 15,
             " no": 16, "NO": 17, " NO": 18}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab[text]] if text in self.vocab else [1, 2]

    def decode(self, ids: list[int]) -> str:
        return {v: k for k, v in self.vocab.items()}.get(ids[0], "?")


class FakeLLM:
    """Answers every conversation with 'Yes' and records each ``chat`` call."""

    instances: list[FakeLLM] = []

    def __init__(self, **kwargs: object):
        self.kwargs = kwargs
        self.calls: list[tuple[list, object]] = []
        FakeLLM.instances.append(self)

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def chat(self, conversations: list, sampling_params: object = None, use_tqdm: bool = True) -> list:
        assert use_tqdm is False
        self.calls.append((conversations, sampling_params))
        outputs = []
        for n, conversation in enumerate(conversations):
            if "explode" in conversation[-1]["content"]:
                raise RuntimeError("CUDA error: device-side assert")
            position = {9: logprob(-0.5, "Yes"), 4: logprob(-1.0, "No", 2), 5: logprob(-2.0, "yes", 3)}
            out = SimpleNamespace(text="Yes", token_ids=[9], logprobs=[position], finish_reason="stop")
            outputs.append(SimpleNamespace(request_id=str(n), prompt_token_ids=[1] * 50, outputs=[out],
                                           num_cached_tokens=32 if n else 0))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    FakeLLM.instances.clear()
    module = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = NewSamplingParams
    sampling.StructuredOutputsParams = Recorder
    module.LLM = FakeLLM
    module.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    return module


def test_engine_starts_lazily_with_prefix_caching(fake_vllm, tmp_path) -> None:
    backend = vllm_backend_from_spec(str(tmp_path), tensor_parallel_size=2, max_model_len=8192, enforce_eager=True)
    assert backend.spec == f"vllm:{tmp_path}" and not FakeLLM.instances
    caps = backend.capabilities
    assert caps.logprobs and caps.json_schema and caps.choices and caps.prefix_cache and caps.batch
    backend.load()
    (llm,) = FakeLLM.instances
    assert llm.kwargs == {"model": str(tmp_path), "tensor_parallel_size": 2, "gpu_memory_utilization": 0.9,
                          "enable_prefix_caching": True, "max_model_len": 8192, "enforce_eager": True}


def test_complete_sends_its_one_request_at_once_and_gathers_nothing(fake_vllm, tmp_path) -> None:
    """Batching is the engine's (or a ``complete_batch`` caller's): ``complete`` runs one request in one ``chat``
    call, without waiting for or gathering concurrent calls into a batch of its own."""
    backend = VLLMBackend(str(tmp_path))
    single = asyncio.run(backend.complete(request(max_tokens=7, choices=("Yes", "No"))))
    (llm,) = FakeLLM.instances
    assert len(llm.calls) == 1
    conversations, params = llm.calls[0]
    assert conversations == [[{"role": "system", "content": "Grade."}, {"role": "user", "content": "Hi"}]]
    assert [p.kwargs["max_tokens"] for p in params] == [7]
    assert params[0].kwargs["structured_outputs"].kwargs == {"choice": ["Yes", "No"]}
    assert single.text == "Yes" and single.usage.input_tokens == 50

    async def main() -> list:
        return await asyncio.gather(*(backend.complete(request(max_tokens=n + 1)) for n in range(5)))

    completions = asyncio.run(main())
    assert [c.text for c in completions] == ["Yes"] * 5
    sizes = [len(conversations) for conversations, _ in llm.calls[1:]]
    assert sizes == [1] * 5  # one call each, never regrouped
    assert sorted(p.kwargs["max_tokens"] for _, params in llm.calls[1:] for p in params) == [1, 2, 3, 4, 5]


class VerdictLLM(FakeLLM):
    """Answers a JSON-schema request with a per-criterion verdict (the engine's per_criterion reply)."""

    def chat(self, conversations: list, sampling_params: object = None, use_tqdm: bool = True) -> list:
        outputs = super().chat(conversations, sampling_params, use_tqdm)
        for output in outputs:
            output.outputs[0].text = '{"rationale": "ok", "verdict": "met"}'
            output.outputs[0].logprobs = None
        return outputs


def test_engine_batches_reach_chat_as_the_engine_formed_them(fake_vllm, tmp_path) -> None:
    from rubrickit.judge import Judge
    from rubrickit.rubric import Criterion, Rubric

    fake_vllm.LLM = VerdictLLM
    backend = VLLMBackend(str(tmp_path))
    formed: list[int] = []
    batch = backend.complete_batch

    async def spy(requests):  # what the engine's batcher hands the backend
        formed.append(len(requests))
        return await batch(requests)

    backend.complete_batch = spy  # type: ignore[method-assign]
    rubric = Rubric(id="r", criteria=[Criterion(id=f"c{n}", text=f"The response mentions topic {n}.")
                                      for n in range(4)])
    items = [{"id": f"i{n}", "prompt": "Q", "response": f"Reply {n}."} for n in range(6)]
    with Judge(backend, mode="per_criterion", use_cache=False, progress=False, concurrency=8, batch_size=8) as judge:
        records = list(judge.score_many(rubric, items))
    assert len(records) == 6 and all(r.errors == 0 for r in records)
    (llm,) = FakeLLM.instances
    sizes = [len(conversations) for conversations, _ in llm.calls]
    assert sum(sizes) == 6 * 4 and max(sizes) > 1 and max(sizes) <= 8
    assert sizes == formed  # one chat call per engine batch, as formed: nothing waits on or regroups them


def test_complete_batch_keeps_order_and_isolates_bad_requests(fake_vllm, tmp_path, monkeypatch) -> None:
    backend = VLLMBackend(str(tmp_path))
    monkeypatch.delattr(fake_vllm.sampling_params, "StructuredOutputsParams")  # a vLLM without guided decoding
    results = asyncio.run(backend.complete_batch([request(), request(choices=("Yes", "No")), request()]))
    assert results[0].text == "Yes" and results[2].text == "Yes"
    assert isinstance(results[1], FatalBackendError) and "no guided decoding" in str(results[1])
    assert len(FakeLLM.instances[0].calls[0][0]) == 2


def test_engine_failure_is_a_fatal_error_for_every_caller(fake_vllm, tmp_path) -> None:
    backend = VLLMBackend(str(tmp_path))
    boom = request().model_copy(update={"messages": (Message(role="user", content="explode"),)})
    with pytest.raises(FatalBackendError, match="device-side assert"):
        asyncio.run(backend.complete(boom))
    assert all(isinstance(r, FatalBackendError) for r in asyncio.run(backend.complete_batch([boom, request()])))


def test_score_choices_asks_one_token_with_the_choice_ids(fake_vllm, tmp_path) -> None:
    backend = VLLMBackend(str(tmp_path))
    scores = asyncio.run(backend.score_choices([request(), request()], ["Yes", "No"]))
    expected = (math.exp(-0.5) + math.exp(-2.0)) / (math.exp(-0.5) + math.exp(-2.0) + math.exp(-1.0))
    assert [s["Yes"] for s in scores] == pytest.approx([expected, expected])
    (_, params), = FakeLLM.instances[0].calls
    assert params.kwargs["max_tokens"] == 1 and params.kwargs["temperature"] == 0.0
    assert set(params.kwargs["logprob_token_ids"]) == {9, 10, 5, 11, 12, 13, 4, 14, 15, 16, 17, 18}


def test_missing_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import importlib.util

    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rubrickit\[vllm\]'"):
        VLLMBackend(str(tmp_path))


# ------------------------------------------------------------------------------------------------ real GPU


@gpu
def test_vllm_judges_the_embedded_model_on_a_gpu(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed (on a GPU machine: pip install 'rubrickit[vllm]')")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from rubrickit.backends.embedded import prepare_embedded_model
    from rubrickit.backends.hf import HFBackend

    folder = prepare_embedded_model(tmp_path_factory.getbasetemp() / "rubrickit-cache")
    backend = VLLMBackend(str(folder), gpu_memory_utilization=0.3, max_model_len=4096, dtype="float32")
    instructions = "You grade a response against a criterion. Answer Yes or No. " * 20
    group = [request(messages=(Message(role="system", content=instructions),
                               Message(role="user", content=f"Response: Paris is the capital.\nCriterion: {c}")))
             for c in ("It names Paris.", "It is rude.", "It mentions Berlin.")]
    scores = asyncio.run(backend.score_choices(group, ["Yes", "No"]))
    reference = asyncio.run(HFBackend(folder).score_choices(group, ["Yes", "No"]))
    for got, want in zip(scores, reference, strict=True):
        assert got["Yes"] == pytest.approx(want["Yes"], abs=2e-2)
    chosen = asyncio.run(backend.complete(group[0].model_copy(update={"choices": ("Yes", "No"), "logprobs": True,
                                                                       "top_logprobs": 5})))
    assert chosen.text in ("Yes", "No") and chosen.logprobs
    results = asyncio.run(backend.complete_batch([g.model_copy(update={"max_tokens": 8}) for g in group]))
    assert all(r.text and r.usage.input_tokens > 0 for r in results)
    assert max(r.usage.cached_tokens for r in results) > 0  # the shared instructions came from the prefix cache
    schema = {"type": "object", "properties": {"verdict": {"enum": ["met", "unmet"]}}, "required": ["verdict"]}
    structured = asyncio.run(backend.complete(group[0].model_copy(update={"json_schema": schema, "max_tokens": 32})))
    assert '"verdict"' in structured.text
