"""``litellm:`` against a real OpenAI-compatible HTTP server on 127.0.0.1 (``litellm:openai/MODEL`` + ``base_url``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from oai_server import Fault, OAIServer, Reply, served

from rubrickit.backends import (
    CompletionRequest,
    FatalBackendError,
    LiteLLMBackend,
    Message,
    RetryableBackendError,
    choice_probabilities,
    get_backend,
)
from rubrickit.errors import BackendCallError, BackendSpecError, MissingCredentialsError

KEY = "sk-litellm-5a4b3c2d1e0f98765432"

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"rationale": {"type": "string"}, "verdict": {"enum": ["met", "unmet", "not_applicable"]}},
    "required": ["rationale", "verdict"],
    "additionalProperties": False,
}


@pytest.fixture
def server() -> Iterator[OAIServer]:
    yield from served()


def request(text: str = "Does the response answer the question?", **fields: Any) -> CompletionRequest:
    messages = (Message(role="system", content="You are a careful judge."), Message(role="user", content=text))
    return CompletionRequest(messages=messages, **fields)


def backend_for(server: OAIServer, model: str = "openai/judge-model", **options: Any) -> LiteLLMBackend:
    options.setdefault("api_key", KEY)
    backend = get_backend(f"litellm:{model}", base_url=server.url, **options)
    assert isinstance(backend, LiteLLMBackend)
    return backend


def outcomes(backend: LiteLLMBackend, *requests: CompletionRequest) -> list[Any]:
    """Send the requests in order on one event loop; completions or backend errors, then close the backend."""

    async def go() -> list[Any]:
        results: list[Any] = []
        try:
            for req in requests:
                try:
                    results.append(await backend.complete(req))
                except BackendCallError as error:
                    results.append(error)
        finally:
            await backend.aclose()
        return results

    return asyncio.run(go())


def call(server: OAIServer, req: CompletionRequest | None = None, **options: Any) -> Any:
    return outcomes(backend_for(server, **options), req or request())[0]


def test_building_a_backend_imports_litellm_with_the_local_price_map() -> None:
    backend = LiteLLMBackend("openai/judge-model", base_url="http://127.0.0.1:9/v1")
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    asyncio.run(backend.aclose())


def test_scripted_reply_maps_text_usage_and_finish_reason(server: OAIServer) -> None:
    server.script(Reply('{"rationale": "ok", "verdict": "met"}', prompt_tokens=42))
    completion = call(server)
    assert completion.text == '{"rationale": "ok", "verdict": "met"}'
    assert completion.finish_reason == "stop"
    assert completion.usage.input_tokens == 42 and completion.usage.output_tokens > 0
    assert completion.cost is None  # not in the price table: no cost, no crash


def test_request_body_carries_messages_sampling_and_json_schema(server: OAIServer) -> None:
    call(server, request(max_tokens=77, temperature=0.5, seed=7, json_schema=VERDICT_SCHEMA))
    (body,) = server.chat_bodies
    assert body["model"] == "judge-model"
    assert body["messages"][1] == {"role": "user", "content": "Does the response answer the question?"}
    assert body["max_tokens"] == 77 and body["temperature"] == 0.5 and body["seed"] == 7
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "judgment", "schema": VERDICT_SCHEMA, "strict": True}}
    assert "logprobs" not in body


def test_logprobs_map_to_token_logprobs(server: OAIServer) -> None:
    server.script(Reply("No", top_logprobs=[{"No": -0.2, "Yes": -1.8}]))
    completion = call(server, request(max_tokens=1, logprobs=True, top_logprobs=2))
    body = server.chat_bodies[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    (first,) = completion.logprobs
    assert first.token == "No" and first.top == {"No": pytest.approx(-0.2), "Yes": pytest.approx(-1.8)}
    probabilities = choice_probabilities(first.top, ["Yes", "No"])
    assert probabilities is not None and probabilities["No"] == pytest.approx(0.832, abs=0.01)


def test_cached_tokens_come_from_prompt_tokens_details(server: OAIServer) -> None:
    server.script(Reply("ok", cached_tokens=96, prompt_tokens=128))
    assert call(server).usage.cached_tokens == 96


def test_known_model_gets_a_cost_from_the_price_table(server: OAIServer) -> None:
    server.script(Reply("ok", prompt_tokens=1000, model="gpt-4o-mini"))
    completion = call(server, model="openai/gpt-4o-mini")
    assert completion.cost is not None and 0 < completion.cost < 0.01


def test_reply_that_is_not_json_is_returned_as_text(server: OAIServer) -> None:
    server.script("Verdict: met (mostly)")
    assert call(server, request(json_schema=VERDICT_SCHEMA)).text == "Verdict: met (mostly)"


def test_truncated_reply_reports_finish_reason_length(server: OAIServer) -> None:
    server.script('{"rationale": "a long explanation", "verdict": "met"}')
    completion = call(server, request(max_tokens=3))
    assert completion.finish_reason == "length" and completion.text == '{"rationale'


def test_guided_choice_for_hosted_vllm(server: OAIServer) -> None:
    server.script("Yes, clearly")
    backend = backend_for(server, model="hosted_vllm/judge-model", guided=True)
    assert backend.capabilities.choices is True
    (completion,) = outcomes(backend, request(choices=("Yes", "No")))
    assert completion.text == "Yes"
    assert server.chat_bodies[0]["structured_outputs"] == {"choice": ["Yes", "No"]}


# -- failures --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "expected"), [
    (Fault.rate_limit("3"), 3.0),
    (Fault.rate_limit("3", retry_after_ms=750), 0.75),
    (Fault.rate_limit(None), None),
])
def test_rate_limit_is_retryable_with_retry_after(server: OAIServer, fault: Fault, expected: float | None) -> None:
    server.script(fault)
    error = call(server)
    assert isinstance(error, RetryableBackendError) and error.status == 429
    assert error.retry_after == (pytest.approx(expected) if expected is not None else None)
    assert len(server.chat_bodies) == 1  # neither litellm nor the openai SDK under it retried


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retryable(server: OAIServer, status: int) -> None:
    server.script(Fault.server_error(status))
    error = call(server)
    assert isinstance(error, RetryableBackendError) and error.status is not None and error.status >= 500
    assert len(server.chat_bodies) == 1


def test_timeout_is_retryable(server: OAIServer) -> None:
    server.script(Fault.timeout(5))
    start = time.perf_counter()
    error = call(server, timeout=0.3)
    assert isinstance(error, RetryableBackendError) and "timed out" in str(error)
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.malformed(), Fault.malformed("oops", content_type="text/plain"),
                                   Fault.no_choices()], ids=["dropped", "html-as-json", "text", "no-choices"])
def test_broken_transport_and_malformed_bodies_are_retryable(server: OAIServer, fault: Fault) -> None:
    server.script(fault)
    assert isinstance(call(server), RetryableBackendError)


@pytest.mark.parametrize(("status", "hint"), [(400, "supports the parameters"), (401, "OPENAI_API_KEY"),
                                              (404, "check the model name")])
def test_client_errors_are_fatal(server: OAIServer, status: int, hint: str) -> None:
    server.script(Fault.http_error(status, "scripted refusal"))
    error = call(server)
    assert isinstance(error, FatalBackendError) and error.status == status
    assert hint in str(error)


def test_exhausted_quota_is_fatal(server: OAIServer) -> None:
    server.script(Fault.rate_limit("20", code="insufficient_quota",
                                   message="You exceeded your current quota, please check your plan."))
    assert isinstance(call(server), FatalBackendError)


# -- credentials and configuration -----------------------------------------------------------------------------


def test_api_key_goes_only_into_the_authorization_header(
        server: OAIServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    server.script([
        Reply("fine"),
        Fault.http_error(401, f"Incorrect API key provided: {KEY}."),
        Fault.server_error(500, f"upstream rejected Authorization: Bearer {KEY}"),
        Fault.malformed(f"<html>token={KEY}</html>", content_type="text/html"),
        Fault.drop(),
    ])
    backend = backend_for(server)
    results = outcomes(backend, *[request()] * 5)
    assert [type(r).__name__ for r in results] == [
        "Completion", "FatalBackendError", "RetryableBackendError", "RetryableBackendError", "RetryableBackendError"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    captured = capsys.readouterr()
    shown = [backend.spec, repr(backend), captured.out, captured.err]
    shown += [str(r) + repr(r) for r in results[1:]]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        assert KEY not in text and KEY[11:24] not in text


def test_credentials_anywhere_in_the_base_url_never_show(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = LiteLLMBackend("openai/judge-model", base_url="http://user:pw@127.0.0.1:9/v1?api_key=SECRET123",
                             api_key=KEY, timeout=2)
    error = outcomes(backend, request())[0]
    assert isinstance(error, RetryableBackendError)
    shown = [str(error), repr(error), repr(backend), backend.spec] + [r.getMessage() for r in caplog.records]
    for text in shown:
        assert "SECRET123" not in text and "pw" not in text and KEY not in text, text


def test_provider_key_from_environment(server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = get_backend("litellm:openai/judge-model", base_url=server.url)
    outcomes(backend, request())
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_local_server_without_key_gets_a_placeholder(server: OAIServer) -> None:
    backend = get_backend("litellm:openai/judge-model", base_url=server.url)
    outcomes(backend, request())
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_missing_provider_key_names_the_variable() -> None:
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        get_backend("litellm:anthropic/claude-sonnet-4-5")


def test_capabilities_follow_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    anthropic = get_backend("litellm:anthropic/claude-sonnet-4-5")
    assert anthropic.capabilities.logprobs is False and anthropic.capabilities.json_schema is True
    assert KEY not in repr(anthropic)
    openai_compatible = LiteLLMBackend("openai/judge-model", base_url="http://127.0.0.1:9/v1")
    assert openai_compatible.capabilities.logprobs is True and openai_compatible.capabilities.choices is False
    for backend in (anthropic, openai_compatible):
        asyncio.run(backend.aclose())


def test_unknown_provider_is_a_spec_error_with_an_example() -> None:
    with pytest.raises(BackendSpecError, match="litellm:PROVIDER/MODEL"):
        get_backend("litellm:no-such-provider-model-xyz")


def test_request_params_never_carry_the_key(server: OAIServer) -> None:
    backend = backend_for(server)
    params = backend.request_params(request())
    assert params["num_retries"] == 0 and params["max_retries"] == 0 and params["api_base"] == server.url
    assert "api_key" not in params
    asyncio.run(backend.aclose())


def test_concurrent_requests_at_100ms_latency_overlap() -> None:
    # Behaviour, not speed: the calls are in flight together (speed is measured in bench/, not in tests).
    with OAIServer(latency=0.1) as server:
        backend = backend_for(server)

        async def burst() -> None:
            try:
                await backend.complete(request("warm-up"))
                await asyncio.gather(*(backend.complete(request(f"criterion {i}")) for i in range(50)))
            finally:
                await backend.aclose()

        asyncio.run(burst())
        assert server.max_in_flight >= 25


def test_backend_can_be_reused_across_event_loops(server: OAIServer) -> None:
    backend = backend_for(server)  # litellm caches a client per loop and never closes it: each loop's end does
    loops: list[int] = []

    async def one() -> str:
        loops.append(id(asyncio.get_running_loop()))
        return (await backend.complete(request())).text

    for _ in range(3):
        assert asyncio.run(one())
    asyncio.run(backend.aclose())
    cached = list(backend._litellm.in_memory_llm_clients_cache.cache_dict)
    leftover = sum(1 for key in cached for loop in loops if str(key).endswith(f"-{loop}"))
    assert leftover == 0  # (a count, not the keys: litellm's cache keys embed the API key)
    gc.collect()  # an unclosed socket would surface here as an unraisable ResourceWarning (an error in this suite)
