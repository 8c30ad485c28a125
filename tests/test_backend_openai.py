"""``openai:`` against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/oai_server.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from email.utils import formatdate
from typing import Any, TypeVar

import pytest
from oai_server import Fault, OAIServer, Reply, served

from rubrickit.backends import (
    CompletionRequest,
    FatalBackendError,
    Message,
    OpenAIBackend,
    RetryableBackendError,
    choice_probabilities,
    get_backend,
)
from rubrickit.backends.openai_backend import parse_retry_after, redact, redact_url
from rubrickit.backends.openai_requests import strict_compatible
from rubrickit.errors import BackendCallError, BackendSpecError, MissingCredentialsError

KEY = "sk-test-9f8e7d6c5b4a39281706"
TRANSPORTS = pytest.mark.parametrize("transport", ["lean", "aiohttp", "httpx"])
"""Failure paths run through every HTTP client: the lean transport, and the SDK over aiohttp and over httpx (they
surface different exceptions, which must map to the same backend errors)."""


def via(transport: str) -> dict[str, str]:
    """Backend options for a TRANSPORTS value: ``lean``, or the SDK over ``aiohttp``/``httpx``."""
    return {"transport": "lean"} if transport == "lean" else {"transport": "sdk", "http_transport": transport}
T = TypeVar("T")

VERDICT_SCHEMA = {
    "title": "Criterion verdict",
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


def backend_for(server: OAIServer, **options: Any) -> OpenAIBackend:
    options.setdefault("api_key", KEY)
    backend = get_backend("openai:judge-model", base_url=server.url, **options)
    assert isinstance(backend, OpenAIBackend)
    return backend


def call(server: OAIServer, req: CompletionRequest | None = None, **options: Any) -> Any:
    """Build a backend, send one request, close it; return the completion or the raised backend error."""
    backend = backend_for(server, **options)

    async def go() -> Any:
        try:
            return await backend.complete(req or request())
        except BackendCallError as error:
            return error
        finally:
            await backend.aclose()

    return asyncio.run(go())


def run(backend: OpenAIBackend, work: Callable[[OpenAIBackend], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await work(backend)
        finally:
            await backend.aclose()

    return asyncio.run(go())


# -- successful calls ------------------------------------------------------------------------------------------


def test_scripted_reply_maps_text_usage_model_and_finish_reason(server: OAIServer) -> None:
    server.script(Reply('{"rationale": "ok", "verdict": "met"}', prompt_tokens=42))
    completion = call(server)
    assert completion.text == '{"rationale": "ok", "verdict": "met"}'
    assert completion.finish_reason == "stop"
    assert completion.model == "judge-model"
    assert completion.usage.input_tokens == 42
    assert completion.usage.output_tokens > 0
    assert completion.logprobs is None
    assert completion.cost is None


def test_request_body_carries_messages_sampling_and_json_schema(server: OAIServer) -> None:
    call(server, request(max_tokens=77, temperature=0.5, seed=7, json_schema=VERDICT_SCHEMA))
    (body,) = server.chat_bodies
    assert body["model"] == "judge-model"
    assert body["messages"] == [{"role": "system", "content": "You are a careful judge."},
                                {"role": "user", "content": "Does the response answer the question?"}]
    assert body["max_tokens"] == 77 and "max_completion_tokens" not in body  # what every local server reads
    assert body["temperature"] == 0.5
    assert body["seed"] == 7
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Criterion_verdict", "schema": VERDICT_SCHEMA, "strict": True}}
    assert "logprobs" not in body and "top_logprobs" not in body
    assert "stream" not in body


def test_schema_is_strict_only_when_it_qualifies_unless_forced(server: OAIServer) -> None:
    loose = {"type": "object", "properties": {"verdict": {"type": "string"}}}
    call(server, request(json_schema=loose))
    call(server, request(json_schema=loose), strict_schema=True)
    first, second = server.chat_bodies
    assert first["response_format"]["json_schema"]["strict"] is False
    assert first["response_format"]["json_schema"]["name"] == "judgment"
    assert second["response_format"]["json_schema"]["strict"] is True
    assert strict_compatible(VERDICT_SCHEMA) and not strict_compatible(loose)


def test_logprobs_map_to_token_logprobs_with_top_alternatives(server: OAIServer) -> None:
    server.script(Reply("Yes", top_logprobs=[{"Yes": -0.1, "No": -2.4, " yes": -4.0}]))
    completion = call(server, request(max_tokens=1, logprobs=True, top_logprobs=5))
    body = server.chat_bodies[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    (first,) = completion.logprobs
    assert first.token == "Yes" and first.logprob == pytest.approx(-0.1)
    assert first.top["Yes"] == pytest.approx(-0.1) and first.top["No"] == pytest.approx(-2.4)
    assert len(first.top) == 5  # the server pads with filler alternatives up to top_logprobs
    probabilities = choice_probabilities(first.top, ["Yes", "No"])
    assert probabilities is not None and 0.9 < probabilities["Yes"] < 0.93


def test_logprobs_without_alternatives_keep_the_chosen_tokens(server: OAIServer) -> None:
    server.script("It is met.")
    completion = call(server, request(logprobs=True))
    assert [t.token for t in completion.logprobs] == ["It", " is", " met", "."]
    assert all(t.top == {} for t in completion.logprobs)
    assert "top_logprobs" not in server.chat_bodies[0]


def test_cached_tokens_come_from_prompt_tokens_details(server: OAIServer) -> None:
    shared = "Instructions and the judged response. " * 40
    backend = backend_for(server)

    async def two_criteria(b: OpenAIBackend) -> tuple[Any, Any]:
        first = await b.complete(request(shared + "Criterion: it is polite."))
        second = await b.complete(request(shared + "Criterion: it is correct."))
        return first, second

    first, second = run(backend, two_criteria)
    assert first.usage.cached_tokens == 0
    assert 0 < second.usage.cached_tokens < second.usage.input_tokens
    server.script(Reply("ok", cached_tokens=123, prompt_tokens=200))
    assert call(server).usage.cached_tokens == 123


def test_reply_that_is_not_json_is_returned_as_text(server: OAIServer) -> None:
    server.script("I think the criterion is met, mostly.")
    completion = call(server, request(json_schema=VERDICT_SCHEMA))
    assert completion.text == "I think the criterion is met, mostly."  # parsing is the engine's job


def test_truncated_reply_reports_finish_reason_length(server: OAIServer) -> None:
    server.script('{"rationale": "a long explanation that goes on and on", "verdict": "met"}')
    completion = call(server, request(max_tokens=4))
    assert completion.finish_reason == "length"
    assert completion.usage.output_tokens == 4
    assert completion.text == '{"rationale"'  # {, ", rationale, "


def test_null_content_becomes_empty_text(server: OAIServer) -> None:
    server.script(Reply("", finish_reason="length"))
    completion = call(server)
    assert completion.text == "" and completion.finish_reason == "length"


def test_guided_choice_for_vllm_servers(server: OAIServer) -> None:
    plain = backend_for(server)
    assert plain.capabilities.choices is False
    assert "extra_body" not in plain.request_params(request(choices=("Yes", "No")))
    asyncio.run(plain.aclose())
    server.script("no, it does not")
    completion = call(server, request(choices=("Yes", "No"), json_schema=VERDICT_SCHEMA), guided=True)
    assert completion.text == "No"  # the server constrained the reply, as vLLM does
    body = server.chat_bodies[0]
    assert body["structured_outputs"] == {"choice": ["Yes", "No"]}
    assert "response_format" not in body  # vLLM takes one structured-output constraint per request
    call(server, request(choices=("met", "unmet")), guided="guided_choice")
    assert server.chat_bodies[1]["guided_choice"] == ["met", "unmet"]
    assert backend_for(server, guided=True).capabilities.choices is True


def test_extra_body_is_merged_and_drop_params_removes_fields(server: OAIServer) -> None:
    call(server, extra_body={"chat_template_kwargs": {"enable_thinking": False}}, drop_params=("temperature",))
    body = server.chat_bodies[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "temperature" not in body


def test_openai_platform_gets_max_completion_tokens() -> None:
    default = OpenAIBackend("gpt-4.1-mini", api_key=KEY)
    assert default.request_params(request(max_tokens=9))["max_completion_tokens"] == 9
    explicit = OpenAIBackend("gpt-4.1-mini", api_key=KEY, base_url="https://api.openai.com/v1")
    assert "max_tokens" not in explicit.request_params(request())
    local = OpenAIBackend("qwen", base_url="http://127.0.0.1:1/v1", max_tokens_param="max_completion_tokens")
    assert "max_completion_tokens" in local.request_params(request())
    for backend in (default, explicit, local):
        asyncio.run(backend.aclose())


def test_capabilities() -> None:
    backend = OpenAIBackend("gpt-4.1-mini", api_key=KEY)
    caps = backend.capabilities
    assert (caps.logprobs, caps.json_schema, caps.choices, caps.prefix_cache, caps.batch) == (
        True, True, False, True, False)
    asyncio.run(backend.aclose())


@pytest.mark.parametrize(("transport", "calls"), [("lean", 50), ("lean", 500), ("aiohttp", 50), ("aiohttp", 200),
                                                 ("httpx", 50)])
def test_concurrent_requests_at_100ms_latency_overlap(transport: str, calls: int) -> None:
    # Behaviour, not speed: the calls are in flight together (speed is measured in bench/, not in tests).
    with OAIServer(latency=0.1) as server:
        backend = backend_for(server, **via(transport))

        async def burst(b: OpenAIBackend) -> None:
            await b.complete(request("warm-up"))
            results = await asyncio.gather(*(b.complete(request(f"criterion {i}")) for i in range(calls)))
            assert len(results) == calls and all(r.text for r in results)

        run(backend, burst)
        assert server.max_in_flight >= calls * 0.5


# -- failures --------------------------------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.parametrize(("fault", "expected"), [
    (Fault.rate_limit("3"), 3.0),
    (Fault.rate_limit("0.5"), 0.5),
    (Fault.rate_limit("3", retry_after_ms=1250), 1.25),
    (Fault.rate_limit(None), None),
])
def test_rate_limit_is_retryable_with_retry_after(server: OAIServer, fault: Fault, expected: float | None,
                                                  transport: str) -> None:
    server.script(fault)
    error = call(server, **via(transport))
    assert isinstance(error, RetryableBackendError)
    assert error.status == 429
    assert error.retry_after == (pytest.approx(expected) if expected is not None else None)
    assert len(server.chat_bodies) == 1  # the SDK itself never retries: that is the engine's job


def test_rate_limit_retry_after_http_date(server: OAIServer) -> None:
    server.script(Fault.rate_limit(formatdate(time.time() + 30, usegmt=True)))
    error = call(server)
    assert isinstance(error, RetryableBackendError) and 25 <= error.retry_after <= 31


@TRANSPORTS
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retryable(server: OAIServer, status: int, transport: str) -> None:
    server.script(Fault.server_error(status, headers={"Retry-After": "2"}))
    error = call(server, **via(transport))
    assert isinstance(error, RetryableBackendError)
    assert error.status == status and error.retry_after == 2.0
    assert len(server.chat_bodies) == 1


@TRANSPORTS
def test_timeout_is_retryable(server: OAIServer, transport: str) -> None:
    server.script(Fault.timeout(5))
    start = time.perf_counter()
    error = call(server, timeout=0.3, **via(transport))
    assert isinstance(error, RetryableBackendError)
    assert "timed out after 0.3s" in str(error)
    assert time.perf_counter() - start < 2


@TRANSPORTS
def test_dropped_connection_is_retryable(server: OAIServer, transport: str) -> None:
    server.script(Fault.drop())
    error = call(server, **via(transport))
    assert isinstance(error, RetryableBackendError)
    assert "connection failed" in str(error)


@TRANSPORTS
def test_reset_connection_is_retryable(server: OAIServer, transport: str) -> None:
    server.script(Fault.reset())
    error = call(server, **via(transport))
    assert isinstance(error, RetryableBackendError)
    assert "connection failed" in str(error)


@TRANSPORTS
def test_unreachable_server_is_retryable(transport: str) -> None:
    with OAIServer() as server:
        url = server.url
    error = call_url(url, **via(transport))
    assert isinstance(error, RetryableBackendError)


def call_url(url: str, **options: Any) -> Any:
    backend = OpenAIBackend("judge-model", base_url=url, api_key=KEY, timeout=2, **options)

    async def go() -> Any:
        try:
            return await backend.complete(request())
        except BackendCallError as error:
            return error
        finally:
            await backend.aclose()

    return asyncio.run(go())


@TRANSPORTS
@pytest.mark.parametrize("fault", [
    Fault.malformed(),
    Fault.malformed("not json at all", content_type="text/plain"),
    Fault.malformed('{"choices": [', content_type="application/json"),
    Fault.malformed("[1, 2, 3]"),
    Fault.no_choices(),
], ids=["html-as-json", "text", "truncated-json", "not-an-object", "no-choices"])
def test_malformed_body_is_retryable(server: OAIServer, fault: Fault, transport: str) -> None:
    server.script(fault)
    error = call(server, **via(transport))
    assert isinstance(error, RetryableBackendError)
    assert "malformed body" in str(error)


@TRANSPORTS
@pytest.mark.parametrize(("status", "hint"), [
    (400, "supports the parameters"),
    (401, "OPENAI_API_KEY"),
    (403, "permission denied"),
    (404, "check the model name 'judge-model'"),
    (422, "could not process"),
])
def test_client_errors_are_fatal_and_say_what_to_check(server: OAIServer, status: int, hint: str,
                                                        transport: str) -> None:
    server.script(Fault.http_error(status, "scripted refusal"))
    error = call(server, **via(transport))
    assert isinstance(error, FatalBackendError)
    assert error.status == status
    assert "scripted refusal" in str(error) and hint in str(error)


def test_unknown_model_on_a_vllm_like_server_is_fatal() -> None:
    with OAIServer(models=["Qwen/Qwen3-8B"]) as server:
        error = call(server)
    assert isinstance(error, FatalBackendError) and error.status == 404
    assert "does not exist" in str(error)


def test_exhausted_quota_is_fatal_not_retryable(server: OAIServer) -> None:
    server.script(Fault.rate_limit("20", code="insufficient_quota",
                                   message="You exceeded your current quota, please check your plan."))
    error = call(server)
    assert isinstance(error, FatalBackendError) and error.status == 429


# -- credentials -----------------------------------------------------------------------------------------------


@TRANSPORTS
def test_api_key_goes_only_into_the_authorization_header(
        server: OAIServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], transport: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script([
        Reply("fine"),
        Fault.http_error(401, f"Incorrect API key provided: {KEY}."),
        Fault.server_error(500, f"upstream rejected Authorization: Bearer {KEY}"),
        Fault.malformed(f"<html>token={KEY}</html>", content_type="text/html"),
        Fault.drop(),
    ])
    backend = backend_for(server, **via(transport))

    async def five(b: OpenAIBackend) -> list[Any]:
        outcomes: list[Any] = []
        for _ in range(5):
            try:
                outcomes.append(await b.complete(request()))
            except BackendCallError as error:
                outcomes.append(error)
        return outcomes

    outcomes = run(backend, five)
    assert [type(o).__name__ for o in outcomes] == [
        "Completion", "FatalBackendError", "RetryableBackendError", "RetryableBackendError", "RetryableBackendError"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    shown = [backend.spec, repr(backend), str(backend.__dict__.get("spec"))]
    shown += [str(o) + repr(o) for o in outcomes[1:]]
    shown += [record.getMessage() for record in caplog.records]
    captured = capsys.readouterr()
    shown += [captured.out, captured.err]
    assert caplog.records, "DEBUG logging was on: the SDK and httpx log something"
    for text in shown:
        assert KEY not in text
        assert KEY[8:20] not in text
    assert "***" in str(outcomes[1])


def test_missing_key_without_base_url_names_the_variable() -> None:
    with pytest.raises(MissingCredentialsError, match="OPENAI_API_KEY"):
        get_backend("openai:gpt-4.1-mini")


def test_key_from_environment(server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = get_backend("openai:judge-model", base_url=server.url)
    run(backend, lambda b: b.complete(request()))
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(backend)


def test_local_server_without_key_gets_a_placeholder(server: OAIServer) -> None:
    backend = get_backend("openai:judge-model", base_url=server.url)
    run(backend, lambda b: b.complete(request()))
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_server_that_demands_a_key_accepts_the_right_one() -> None:
    with OAIServer(api_key=KEY) as server:
        assert isinstance(call(server, api_key="sk-wrong-key-0000000000"), FatalBackendError)
        assert call(server).text


def test_base_url_credentials_are_redacted_when_shown() -> None:
    url = "http://user:hunter2-password@127.0.0.1:9/v1"
    with pytest.raises(BackendSpecError) as refused:  # user:password@ is refused at once (it clashes with the key)
        OpenAIBackend("judge-model", base_url=url)
    assert "hunter2" not in str(refused.value) and "127.0.0.1:9" in str(refused.value)
    assert redact_url("https://a:b@host.example/v1") == "https://***@host.example/v1"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


async def _complete_and_close(backend: OpenAIBackend) -> Any:
    try:
        return await backend.complete(request())
    except BackendCallError as error:
        return error
    finally:
        await backend.aclose()


def test_redact_hides_keys_tokens_and_url_credentials() -> None:
    text = f"key {KEY} Authorization: Bearer abc.def-123 at https://u:p@x.example/v1 and custom-secret-value"
    cleaned = redact(text, ["custom-secret-value"])
    assert KEY not in cleaned and "abc.def-123" not in cleaned and "u:p@" not in cleaned
    assert "custom-secret-value" not in cleaned


@TRANSPORTS
@pytest.mark.parametrize("url", ["http://user:pw@127.0.0.1:9/v1?api_key=SECRET123",
                                 "http://127.0.0.1:9/v1?api_key=SECRET123&token=SECRET123-pw"])
def test_credentials_anywhere_in_the_base_url_never_show(
        url: str, transport: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        backend = OpenAIBackend("judge-model", base_url=url, timeout=2, **via(transport))
    except BackendSpecError as refused:  # user:password@ is refused up front: say so without showing it
        shown = [str(refused), repr(refused)]
    else:
        error = asyncio.run(_complete_and_close(backend))
        assert isinstance(error, RetryableBackendError) and "connection failed" in str(error)
        assert "127.0.0.1:9" in str(error) and "127.0.0.1:9" in repr(backend)
        shown = [str(error), repr(error), repr(backend), backend.spec]
    captured = capsys.readouterr()
    shown += [captured.out, captured.err] + [record.getMessage() for record in caplog.records]
    shown += [record.exc_text or "" for record in caplog.records]
    for text in shown:
        assert "SECRET123" not in text and "pw" not in text, text
    assert "127.0.0.1:9" in shown[0]


@pytest.mark.parametrize(("url", "shown"), [
    ("https://a:b@host.example/v1", "https://***@host.example/v1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("https://host.example/v1?api_key=S1&api-version=2", "https://host.example/v1?api_key=***&api-version=2"),
    ("https://host.example/v1?API_KEY=S1", "https://host.example/v1?API_KEY=***"),
    ("https://host.example/v1?key=S1", "https://host.example/v1?key=***"),
    ("https://host.example/v1?token=S1", "https://host.example/v1?token=***"),
    ("https://host.example/v1?access_token=S1", "https://host.example/v1?access_token=***"),
    ("https://host.example/v1?sv=2024&sig=S1%2B2", "https://host.example/v1?sv=2024&sig=***"),
    ("https://host.example/v1?Signature=S1", "https://host.example/v1?Signature=***"),
    ("https://host.example/v1?password=S1;secret=S2", "https://host.example/v1?password=***;secret=***"),
    ("https://host.example/v1?x-api-key=S1", "https://host.example/v1?x-api-key=***"),
    ("https://host.example/v1?client_secret=S1&X-Amz-Credential=S2", "https://host.example/v1?client_secret=***&X-Amz-Credential=***"),
    ("https://host.example/v1#access_token=S1", "https://host.example/v1#access_token=***"),
    ("http://u:p@ss@127.0.0.1:9/v1?apikey=S1", "http://***@127.0.0.1:9/v1?apikey=***"),
])
def test_redact_url_hides_user_info_and_secret_query_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"failed: {url!r}") == f"failed: {shown!r}"


def test_redact_hides_credential_parameters_and_headers_in_free_text() -> None:
    text = ("POST http://user:pw@127.0.0.1:9/v1/chat/completions?api_key=SECRET123&model=m failed; "
            "headers x-api-key: SECRET456, Api-Key=SECRET789, {'access_token': 'SECRET000'} token=\"SECRET111\"")
    cleaned = redact(text)
    for secret in ("SECRET123", "SECRET456", "SECRET789", "SECRET000", "SECRET111", "pw@"):
        assert secret not in cleaned, cleaned
    assert "model=m" in cleaned and "127.0.0.1:9/v1/chat/completions" in cleaned
    assert redact("max_tokens=512 is too large for user") == "max_tokens=512 is too large for user"


def test_url_secrets_are_what_a_url_carries() -> None:
    from rubrickit.backends.openai_backend import url_secrets

    secrets = url_secrets("http://user:hunter2@h.example/v1?api_key=a/b+c&model=m")
    assert {"hunter2", "a/b+c", "a/b c", "a%2Fb%20c"} <= set(secrets) and "user" not in secrets
    assert url_secrets("https://ghp_token1234@h.example/") == ("ghp_token1234",)
    assert url_secrets(None) == () and url_secrets("http://127.0.0.1:8000/v1") == ()


# -- Retry-After parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
    ({"Retry-After": "-3"}, None),
    ({"Retry-After": "soon"}, None),
    ({}, None),
    (None, None),
])
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after({"Retry-After": formatdate(now + 12, usegmt=True)}, now=now) == pytest.approx(12)
    assert parse_retry_after({"Retry-After": formatdate(now - 60, usegmt=True)}, now=now) == 0.0


def test_backend_can_be_reused_across_event_loops(server: OAIServer) -> None:
    backend = backend_for(server)  # the aiohttp transport: each loop gets its session, closed when the loop ends
    for _ in range(3):
        assert asyncio.run(backend.complete(request())).text
    asyncio.run(backend.aclose())
    gc.collect()  # an unclosed socket would surface here as an unraisable ResourceWarning (an error in this suite)


# -- the lean transport ----------------------------------------------------------------------------------------


FAULTS_SAME_TEXT = [
    Fault.rate_limit("3"),
    Fault.server_error(503, "overloaded, try later"),
    Fault.http_error(400, "'messages' is too long", code="context_length_exceeded"),
    Fault.http_error(404, "The model `judge-model` does not exist"),
    Fault.http_error(429, "You exceeded your current quota", code="insufficient_quota"),
    Fault.malformed(),
    Fault.no_choices(),
]


@pytest.mark.parametrize("fault", FAULTS_SAME_TEXT, ids=lambda f: f"{f.kind}-{f.status}")
def test_lean_and_sdk_transports_raise_the_same_errors(server: OAIServer, fault: Fault) -> None:
    outcomes = []
    for options in (via("lean"), via("aiohttp")):
        server.script(fault)
        outcomes.append(call(server, **options))
    lean, sdk = outcomes
    assert type(lean) is type(sdk) and isinstance(lean, BackendCallError)
    assert (str(lean), lean.status, getattr(lean, "retry_after", None)) == (
        str(sdk), sdk.status, getattr(sdk, "retry_after", None))


def test_lean_transport_is_the_default_and_sends_plain_json(server: OAIServer) -> None:
    backend = backend_for(server)
    assert backend.transport == "lean"
    completion = call(server, request(max_tokens=9, seed=3, json_schema=VERDICT_SCHEMA))
    assert completion.text
    sent = server.requests[-1]
    assert sent.method == "POST" and sent.path == "/v1/chat/completions"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["user-agent"].startswith("rubrickit/")
    assert not any(name.startswith("x-stainless") for name in sent.headers)  # no SDK on this path
    assert sent.body["max_tokens"] == 9 and sent.body["seed"] == 3
    assert sent.body["response_format"]["type"] == "json_schema"


def test_lean_transport_sends_the_client_options_it_takes(server: OAIServer) -> None:
    base = server.url + "?tenant=a"
    backend = OpenAIBackend("judge-model", base_url=base, api_key=KEY, organization="org-1", project="proj-2",
                            default_headers={"X-Team": "evals"}, default_query={"api-version": "2025-01"})
    assert run(backend, lambda b: b.complete(request())).text
    sent = server.requests[-1]
    assert sent.path == "/v1/chat/completions?tenant=a&api-version=2025-01"
    assert (sent.headers["openai-organization"], sent.headers["openai-project"], sent.headers["x-team"]) == (
        "org-1", "proj-2", "evals")


def test_lean_transport_refuses_sdk_only_options_and_says_what_to_do() -> None:
    with pytest.raises(BackendSpecError, match=r"http_client.*transport='sdk'"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", http_client=object())
    with pytest.raises(BackendSpecError, match="is an option of transport='sdk'"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", transport="lean", http_transport="httpx")
    with pytest.raises(BackendSpecError, match="expected 'lean'"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", transport="grpc")


def test_transport_default_comes_from_the_environment(server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICKIT_TRANSPORT", "sdk")
    backend = backend_for(server)
    assert backend.transport == "sdk"
    assert run(backend, lambda b: b.complete(request())).text
    assert server.requests[-1].headers["user-agent"].startswith("AsyncOpenAI/")
    monkeypatch.setenv("RUBRICKIT_TRANSPORT", "carrier-pigeon")
    with pytest.raises(BackendSpecError, match=r"\$RUBRICKIT_TRANSPORT='carrier-pigeon'"):
        backend_for(server)


def test_lean_transport_keeps_connections_alive(server: OAIServer) -> None:
    backend = backend_for(server)

    async def sequential(b: OpenAIBackend) -> None:
        for i in range(20):
            await b.complete(request(f"criterion {i}"))

    run(backend, sequential)
    assert server.connections == 1
