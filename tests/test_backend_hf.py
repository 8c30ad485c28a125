"""The hf backend on real weights (the embedded SmolLM2-135M-Instruct, converted once per test session)."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rubrickit.backends.base import (  # noqa: E402
    Backend,
    BatchBackend,
    ChoiceScorer,
    CompletionRequest,
    FatalBackendError,
    Message,
    choice_probabilities,
)
from rubrickit.backends.embedded import locate_embedded_gguf, prepare_embedded_model  # noqa: E402
from rubrickit.backends.hf import HFBackend, choice_token_ids, hf_backend_from_spec  # noqa: E402
from rubrickit.backends.hf_loading import _resolve_model  # noqa: E402
from rubrickit.errors import BackendSpecError, MissingDependencyError  # noqa: E402

TOLERANCE = 1e-4
INSTRUCTIONS = (
    "You grade one response against one criterion. Read the conversation and the response, then decide whether the "
    "response meets the criterion. Answer with one word: Yes or No."
)
CRITERIA = [
    "The response names the capital correctly.",
    "The response mentions the river that runs through the city.",
    "The response is under fifty words.",
    "The response is polite.",
    "The response avoids made-up facts.",
    "The response answers in English.",
    "The response gives a population figure.",
    "The response cites a source.",
    "The response uses a bulleted list.",
    "The response ends with a question to the user.",
]


def judge_request(response: str, criterion: str, **update: object) -> CompletionRequest:
    """The engine's layout: fixed instructions, the conversation and the response, the criterion last."""
    user = (
        "<conversation>\nuser: What is the capital of France?\n</conversation>\n"
        f"<response>\n{response}\n</response>\n<criterion>\n{criterion}\n</criterion>\nAnswer Yes or No."
    )
    request = CompletionRequest(messages=(Message(role="system", content=INSTRUCTIONS),
                                          Message(role="user", content=user)), max_tokens=16)
    return request.model_copy(update=update) if update else request


PARIS = "The capital of France is Paris, which lies on the Seine. It is known for the Eiffel Tower and the Louvre."
LYON = "France's capital is Lyon."


@pytest.fixture(scope="session")
def smol_dir(tmp_path_factory: pytest.TempPathFactory):
    """The converted embedded model, in the session folder test_backend_embedded.py uses too (converted once)."""
    try:
        locate_embedded_gguf()
    except MissingDependencyError as error:
        pytest.skip(str(error))
    return prepare_embedded_model(tmp_path_factory.getbasetemp() / "rubrickit-cache")


@pytest.fixture(scope="module")
def backend(smol_dir) -> HFBackend:
    hf = HFBackend(smol_dir, spec="hf:smollm2-135m-instruct")
    hf.load()
    return hf


def run(coro):
    return asyncio.run(coro)


def assert_close(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict), (a, b)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=TOLERANCE)


def test_backend_implements_the_protocols(backend: HFBackend) -> None:
    assert isinstance(backend, Backend) and isinstance(backend, BatchBackend) and isinstance(backend, ChoiceScorer)
    caps = backend.capabilities
    assert (caps.logprobs, caps.choices, caps.prefix_cache, caps.batch, caps.json_schema) == (True,) * 5
    assert caps.default_mode == "per_criterion"  # a general hf model; the embedded one prefers logprob


def test_choice_token_ids_fold_case_and_leading_space(backend: HFBackend) -> None:
    tok = backend._tokenizer

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    yes, no = choice_token_ids(encode, tok.decode, ["Yes", "No"])
    for spelling in ("Yes", " Yes", "yes"):
        assert encode(spelling)[0] in yes
    assert not set(yes) & set(no)
    with pytest.raises(ValueError, match="differ in their first token"):
        choice_token_ids(encode, tok.decode, ["Yes", "yes"])


def test_score_choices_with_prefix_reuse_equals_full_forwards(backend: HFBackend) -> None:
    group = [judge_request(PARIS, c) for c in CRITERIA]
    before = backend.stats.forward_tokens
    shared = run(backend.score_choices(group, ["Yes", "No"]))
    shared_tokens = backend.stats.forward_tokens - before
    before = backend.stats.forward_tokens
    naive = run(backend.score_choices(group, ["Yes", "No"], reuse_prefix=False))
    naive_tokens = backend.stats.forward_tokens - before
    assert_close(shared, naive)
    for probs in shared:
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    # Only the criterion part of each request was run: a fraction of the tokens of ten full prompts.
    assert shared_tokens < naive_tokens / 3


def test_score_choices_matches_raw_batched_forward(backend: HFBackend) -> None:
    import torch

    group = [judge_request(PARIS, c) for c in CRITERIA[:4]]
    shared = run(backend.score_choices(group, ["Yes", "No"]))
    logits = backend.raw_next_token_logits([backend.render_prompt(r) for r in group])
    tok = backend._tokenizer
    yes, no = choice_token_ids(lambda t: tok(t, add_special_tokens=False)["input_ids"], tok.decode, ["Yes", "No"])
    for row, probs in zip(logits, shared, strict=True):
        mass = torch.stack([torch.logsumexp(row[yes], 0), torch.logsumexp(row[no], 0)]).softmax(0)
        assert probs["Yes"] == pytest.approx(float(mass[0]), abs=TOLERANCE)


def test_score_choices_group_with_different_prefixes(smol_dir) -> None:
    hf = HFBackend(smol_dir, batch_size=3, max_prefix_cache=0)
    other_system = CompletionRequest(messages=(Message(role="system", content="Be terse."),
                                               Message(role="user", content="Is Paris in France? Yes or No.")))
    group = [judge_request(PARIS, CRITERIA[0]), judge_request(LYON, CRITERIA[0]), judge_request(PARIS, CRITERIA[3]),
             other_system, judge_request(LYON, CRITERIA[6])]
    assert_close(run(hf.score_choices(group, ["Yes", "No"])),
                 run(hf.score_choices(group, ["Yes", "No"], reuse_prefix=False)))
    assert run(hf.score_choices([], ["Yes", "No"])) == []


def test_stored_prefix_is_reused_by_the_next_group(backend: HFBackend) -> None:
    run(backend.score_choices([judge_request(PARIS, c) for c in CRITERIA[:3]], ["Yes", "No"]))
    reused = backend.stats.reused_tokens
    group = [judge_request(LYON, c) for c in CRITERIA[:3]]
    shared = run(backend.score_choices(group, ["Yes", "No"]))
    assert backend.stats.reused_tokens - reused > 50  # the instructions came from the previous group's KV
    assert_close(shared, run(backend.score_choices(group, ["Yes", "No"], reuse_prefix=False)))


def test_the_rows_of_a_batch_share_the_prefix_kv_without_copies(backend: HFBackend) -> None:
    """The suffix rows read the batch-1 prefix KV through a broadcast view (no per-row copy), and running them
    leaves the stored prefix as it was."""
    import torch

    with backend._lock, torch.inference_mode():
        ids = backend._encode(judge_request(PARIS, CRITERIA[0]))
        kv, _ = backend._prefix_kv(ids[:-1])
        before = [(k.clone(), v.clone()) for k, v in kv]
        cache = backend._make_cache(kv, 4)
        if hasattr(cache, "layers"):  # transformers ≥ 4.56
            assert cache.get_seq_length() == len(ids) - 1
            for layer, (k, v) in zip(cache.layers, kv, strict=True):
                assert layer.keys.shape[0] == layer.values.shape[0] == 4
                assert layer.keys.stride(0) == layer.values.stride(0) == 0
                assert (layer.keys.data_ptr(), layer.values.data_ptr()) == (k.data_ptr(), v.data_ptr())
        backend._forward_suffixes(ids[:-1], kv, [ids[-1:]] * 4, last_only=True)
        for (k, v), (k0, v0) in zip(kv, before, strict=True):
            assert torch.equal(k, k0) and torch.equal(v, v0)


def test_complete_generates_through_the_chat_template(backend: HFBackend) -> None:
    request = judge_request(PARIS, CRITERIA[0], max_tokens=6)
    prompt = backend.render_prompt(request)
    assert prompt.startswith("<|im_start|>system\n" + INSTRUCTIONS) and prompt.endswith("<|im_start|>assistant\n")
    completion = run(backend.complete(request))
    assert completion.text.strip()
    assert completion.usage.input_tokens == len(backend._tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= completion.usage.output_tokens <= 6
    assert completion.finish_reason in ("stop", "length")
    assert completion.model == "hf:smollm2-135m-instruct"
    assert completion.logprobs is None


def test_complete_with_choices_answers_a_choice_with_its_probabilities(backend: HFBackend) -> None:
    request = judge_request(PARIS, CRITERIA[0], choices=("Yes", "No"), logprobs=True)
    completion = run(backend.complete(request))
    assert completion.text in ("Yes", "No")
    (entry,) = completion.logprobs
    assert set(entry.top) == {"Yes", "No"} and entry.logprob == max(entry.top.values())
    probs = choice_probabilities(entry.top, ["Yes", "No"])
    (scored,) = run(backend.score_choices([request], ["Yes", "No"], reuse_prefix=False))
    assert probs["Yes"] == pytest.approx(scored["Yes"], abs=TOLERANCE)
    multi = run(backend.complete(judge_request(PARIS, CRITERIA[0], choices=("met", "unmet", "not_applicable"))))
    assert multi.text in ("met", "unmet", "not_applicable") and len(multi.logprobs[0].top) == 3


def test_complete_returns_token_logprobs_with_alternatives(backend: HFBackend) -> None:
    completion = run(backend.complete(judge_request(PARIS, CRITERIA[1], max_tokens=8, logprobs=True,
                                                    top_logprobs=3)))
    assert completion.logprobs and len(completion.logprobs) == completion.usage.output_tokens
    for entry in completion.logprobs:
        assert entry.logprob <= 0 and len(entry.top) <= 3
        assert entry.logprob == pytest.approx(max(entry.top.values()), abs=1e-5)  # greedy picks the top token


def test_complete_batch_equals_sequential(backend: HFBackend) -> None:
    requests = [judge_request(PARIS, CRITERIA[0], max_tokens=10), judge_request(LYON, CRITERIA[1], max_tokens=4),
                judge_request(PARIS, CRITERIA[2], choices=("Yes", "No")), judge_request(LYON, CRITERIA[3])]
    batched = run(backend.complete_batch(requests))
    for request, got in zip(requests, batched, strict=True):
        alone = run(backend.complete(request))
        assert not isinstance(got, BaseException)
        assert (got.text, got.finish_reason, got.usage.output_tokens) == (alone.text, alone.finish_reason,
                                                                           alone.usage.output_tokens)


def test_seeded_sampling_repeats_and_greedy_reuses_the_stored_prefix(smol_dir) -> None:
    hf = HFBackend(smol_dir)
    sampled = judge_request(LYON, CRITERIA[4], max_tokens=12, temperature=1.0, seed=7)
    assert run(hf.complete(sampled)).text == run(hf.complete(sampled)).text
    greedy = judge_request(LYON, CRITERIA[5], max_tokens=12)
    second = run(hf.complete(greedy))
    assert second.usage.cached_tokens > 50  # the previous prompts' KV
    assert second.text == run(HFBackend(smol_dir, max_prefix_cache=0).complete(greedy)).text


def test_generation_leaves_the_event_loop_free(backend: HFBackend) -> None:
    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await backend.complete(judge_request(PARIS, CRITERIA[7], max_tokens=8))
        task.cancel()
        return ticks

    assert run(main()) > 0


def test_too_long_prompt_is_a_fatal_error_in_its_slot(backend: HFBackend) -> None:
    huge = judge_request("word " * 9000, CRITERIA[0])
    results = run(backend.score_choices([huge, judge_request(PARIS, CRITERIA[0])], ["Yes", "No"]))
    assert isinstance(results[0], FatalBackendError) and "at most 8192" in str(results[0])
    assert isinstance(results[1], dict)
    with pytest.raises(FatalBackendError):
        run(backend.complete(huge))


def test_missing_models_are_never_downloaded(tmp_path) -> None:
    with pytest.raises(BackendSpecError, match="never downloads"):
        HFBackend(tmp_path / "absent")
    with pytest.raises(BackendSpecError, match="huggingface-cli download"):
        hf_backend_from_spec("no-such-org/no-such-model-xyz")
    with pytest.raises(BackendSpecError, match="unknown option"):
        hf_backend_from_spec(str(tmp_path), temprature=0)


def test_gguf_path_is_split_into_folder_and_file(tmp_path) -> None:
    gguf = tmp_path / "model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert _resolve_model(str(gguf), None) == (str(tmp_path), "model.Q4.gguf")


def test_load_is_quick_from_the_converted_folder(smol_dir) -> None:
    started = time.monotonic()
    HFBackend(smol_dir).load()
    assert time.monotonic() - started < 30


def test_bad_device_or_dtype_is_a_spec_error(smol_dir) -> None:
    with pytest.raises(BackendSpecError, match="unknown dtype 'float8'"):
        HFBackend(smol_dir, dtype="float8")
    with pytest.raises(BackendSpecError, match="unknown device 'tpu9'"):
        HFBackend(smol_dir, device="tpu9")


def test_choices_sharing_a_first_token_fail_in_every_slot(backend: HFBackend) -> None:
    results = run(backend.score_choices([judge_request(PARIS, CRITERIA[0])] * 2, ["Yes", "yes"]))
    assert all(isinstance(r, FatalBackendError) and "first token" in str(r) for r in results)
