"""``openai:`` negotiates the form of structured output per server (against real HTTP servers on 127.0.0.1).

tests/oai_server.py emulates llama-cpp-python's dialect (``structured="llamacpp"``: HTTP 500 for ``response_format``
of type ``json_schema``, ``json_object`` + ``schema`` taken) and a server that knows no structured output at all
(``structured="none"``: HTTP 400 naming the field). tests/test_llamacpp_server.py does the same against the real
llama.cpp server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oai_server import LLAMACPP_RESPONSE_FORMAT_ERROR, Fault, OAIServer

from rubrickit.backends import CompletionRequest, FatalBackendError, Message, OpenAIBackend, RetryableBackendError
from rubrickit.backends.openai_backend import CAPABILITIES_FILENAME, forget_negotiated, structured_refusal
from rubrickit.backends.openai_dialects import CAPABILITIES_TTL
from rubrickit.errors import BackendSpecError
from rubrickit.judge import DataItem, Judge, RetryPolicy
from rubrickit.rubric.files import load_rubric

KEY = "sk-test-dialects-5e4d3c2b1a09"
VERDICT_SCHEMA = {
    "title": "Criterion verdict",
    "type": "object",
    "properties": {"rationale": {"type": "string"}, "verdict": {"enum": ["met", "unmet", "not_applicable"]}},
    "required": ["rationale", "verdict"],
    "additionalProperties": False,
}
VERDICT = '{"rationale": "ok", "verdict": "met"}'


@pytest.fixture(autouse=True)
def _fresh_negotiation() -> Iterator[None]:
    """What one test negotiated must not reach another that gets the same port."""
    forget_negotiated()
    yield
    forget_negotiated()


@pytest.fixture
def llamacpp() -> Iterator[OAIServer]:
    with OAIServer(VERDICT, structured="llamacpp") as server:
        yield server


def request(text: str = "Is the criterion met?", schema: dict[str, Any] | None = VERDICT_SCHEMA,
            **fields: Any) -> CompletionRequest:
    return CompletionRequest(messages=(Message(role="user", content=text),), json_schema=schema, **fields)


def backend_for(server: OAIServer, tmp_path: Path | None = None, **options: Any) -> OpenAIBackend:
    options.setdefault("capabilities_dir", tmp_path if tmp_path is not None else False)
    return OpenAIBackend("judge-model", base_url=server.url, api_key=KEY, **options)


def complete_all(backend: OpenAIBackend, requests: list[CompletionRequest], *, together: bool = False) -> list[Any]:
    async def go() -> list[Any]:
        try:
            if together:
                return list(await asyncio.gather(*(backend.complete(r) for r in requests), return_exceptions=True))
            outcomes = []
            for r in requests:
                try:
                    outcomes.append(await backend.complete(r))
                except Exception as error:  # noqa: BLE001 - returned for the test to look at
                    outcomes.append(error)
            return outcomes
        finally:
            await backend.aclose()

    return asyncio.run(go())


def formats(server: OAIServer) -> list[Any]:
    """Per chat request, the structured-output form it carried."""
    shown = []
    for body in server.chat_bodies:
        if "response_format" in body:
            shown.append(body["response_format"]["type"])
        elif "structured_outputs" in body or "guided_json" in body:
            shown.append("guided")
        else:
            shown.append(None)
    return shown


# -- negotiation against llama-cpp-python's dialect --------------------------------------------------------------


def test_llamacpp_refusal_falls_back_to_json_object_at_once_and_is_remembered(
        llamacpp: OAIServer, capsys: pytest.CaptureFixture[str]) -> None:
    backend = backend_for(llamacpp)
    assert backend.structured_dialect == "json_schema"
    outcomes = complete_all(backend, [request(f"criterion {i}") for i in range(4)])
    assert [o.text for o in outcomes] == [VERDICT] * 4
    # One refused request, then the llama.cpp form for it and every later call: one extra call in all.
    assert formats(llamacpp) == ["json_schema", "json_object", "json_object", "json_object", "json_object"]
    assert llamacpp.chat_bodies[1]["response_format"] == {"type": "json_object", "schema": VERDICT_SCHEMA}
    assert backend.structured_dialect == "json_object"
    err = capsys.readouterr().err
    assert err.count("refused") == 1  # one notice per endpoint
    assert "refused response_format json_schema (HTTP 500" in err and "using response_format json_object+schema" in err
    assert llamacpp.url in err and KEY not in err


def test_requests_without_a_schema_are_sent_as_they_are(llamacpp: OAIServer) -> None:
    complete_all(backend_for(llamacpp), [request(schema=None), request(schema=None, max_tokens=1, logprobs=True)])
    assert formats(llamacpp) == [None, None]


def test_concurrent_first_calls_converge(llamacpp: OAIServer) -> None:
    backend = backend_for(llamacpp)
    outcomes = complete_all(backend, [request(f"criterion {i}") for i in range(16)], together=True)
    assert all(getattr(o, "text", None) == VERDICT for o in outcomes), outcomes
    sent = formats(llamacpp)
    assert sent.count("json_object") == 16 and 1 <= sent.count("json_schema") <= 16
    forget = len(sent)
    complete_all(backend_for(llamacpp), [request("later")])  # a second backend of the process: no refusal again
    assert formats(llamacpp)[forget:] == ["json_object"]


def test_the_memo_is_per_endpoint(llamacpp: OAIServer) -> None:
    complete_all(backend_for(llamacpp), [request()])
    with OAIServer(VERDICT) as other:
        complete_all(backend_for(other), [request(), request("again")])
        assert formats(other) == ["json_schema", "json_schema"]
    other_model = OpenAIBackend("another-model", base_url=llamacpp.url, api_key=KEY, capabilities_dir=False)
    assert other_model.structured_dialect == "json_schema"  # and per model
    asyncio.run(other_model.aclose())


def test_engine_counts_no_retries_and_no_errors(llamacpp: OAIServer, tmp_path: Path) -> None:
    """What issue 13 measured on the real server (21 of 21 errors, 105 retries) is 0 errors, 0 retries here."""
    rubric_path = tmp_path / "binary.yaml"
    rubric_path.write_text("rubrickit: 1\nid: binary\ntitle: Binary\ncriteria:\n"
                           "- id: a\n  text: The reply is polite.\n"
                           "- id: b\n  text: The reply answers the question.\n"
                           "- id: c\n  text: The reply names a next step.\n")
    rubric = load_rubric(rubric_path)
    items = [DataItem(id=f"t{i}", prompt=f"Question {i}?", response=f"Answer {i}.") for i in range(3)]
    reply_for = {"per_criterion": VERDICT,
                 "per_response": json.dumps({c: {"rationale": "ok", "verdict": "met"} for c in "abc"})}
    for mode, reply in reply_for.items():
        forget_negotiated()
        llamacpp.script(reply)
        before = len(llamacpp.chat_bodies)
        policy = RetryPolicy(max_attempts=6, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)
        with Judge("openai:judge-model", base_url=llamacpp.url, mode=mode, concurrency=1, retry=policy,
                   cache_dir=tmp_path / f"cache-{mode}", backend_options={"capabilities_dir": False}) as judge:
            records = list(judge.score_many(rubric, items))
            summary = judge.summary()
        calls = 9 if mode == "per_criterion" else 3
        assert summary["errors"] == 0 and summary["retries"] == 0 and summary["calls"] == calls, (mode, summary)
        assert sum(r.errors for r in records) == 0
        assert all(v.verdict == "met" for r in records for v in r.verdicts)
        assert formats(llamacpp)[before:] == ["json_schema"] + ["json_object"] * calls  # one extra request


# -- the capabilities file ---------------------------------------------------------------------------------------


def test_negotiated_form_is_persisted_without_credentials(llamacpp: OAIServer, tmp_path: Path) -> None:
    complete_all(backend_for(llamacpp, tmp_path), [request()])
    path = tmp_path / CAPABILITIES_FILENAME
    data = json.loads(path.read_text())
    (entry,) = data["endpoints"].values()
    assert entry["endpoint"] == llamacpp.url and entry["model"] == "judge-model"
    assert entry["structured"] == "json_object" and entry["refused"] == ["json_schema"]
    text = path.read_text()
    assert KEY not in text and "Bearer" not in text and "EMPTY" not in text
    # A new process (the memo forgotten) reads the file: no refused request at all.
    forget_negotiated()
    sent = len(llamacpp.chat_bodies)
    complete_all(backend_for(llamacpp, tmp_path), [request("next run")])
    assert formats(llamacpp)[sent:] == ["json_object"]


def test_endpoint_key_drops_credentials_in_the_url(tmp_path: Path) -> None:
    backend = OpenAIBackend("judge-model", base_url="http://127.0.0.1:9/v1?api_key=SECRET123&region=eu",
                            api_key=KEY, capabilities_dir=tmp_path)
    assert "SECRET123" not in backend._negotiation_key and "region=eu" in backend._negotiation_key
    asyncio.run(backend.aclose())


def test_a_stale_or_broken_file_is_negotiated_again(llamacpp: OAIServer, tmp_path: Path) -> None:
    complete_all(backend_for(llamacpp, tmp_path), [request()])
    path = tmp_path / CAPABILITIES_FILENAME
    data = json.loads(path.read_text())
    for entry in data["endpoints"].values():
        entry["checked"] = time.time() - CAPABILITIES_TTL - 60
    path.write_text(json.dumps(data))
    forget_negotiated()
    sent = len(llamacpp.chat_bodies)
    complete_all(backend_for(llamacpp, tmp_path), [request()])
    assert formats(llamacpp)[sent:] == ["json_schema", "json_object"]
    path.write_text("{not json")
    forget_negotiated()
    outcome, = complete_all(backend_for(llamacpp, tmp_path), [request()])
    assert outcome.text == VERDICT and json.loads(path.read_text())["endpoints"]  # rewritten


def test_a_remembered_form_the_server_now_refuses_moves_on(tmp_path: Path) -> None:
    with OAIServer(VERDICT, structured="none") as server:
        path = tmp_path / CAPABILITIES_FILENAME
        key = f"{server.url} judge-model"
        path.write_text(json.dumps({"endpoints": {key: {"structured": "json_object", "checked": time.time()}}}))
        complete_all(backend_for(server, tmp_path), [request()])
        assert formats(server) == ["json_object", "guided", None]


# -- forced forms, real errors, servers with no structured output ------------------------------------------------


def test_a_server_that_refuses_every_form_ends_in_plain_prompting(capsys: pytest.CaptureFixture[str]) -> None:
    with OAIServer(VERDICT, structured="none") as server:
        backend = backend_for(server)
        outcomes = complete_all(backend, [request(), request("again")])
        assert [o.text for o in outcomes] == [VERDICT, VERDICT]
        assert formats(server) == ["json_schema", "json_object", "guided", None, None]
        assert server.chat_bodies[2]["structured_outputs"] == {"json": VERDICT_SCHEMA}
        assert "plain JSON prompting" in capsys.readouterr().err


def test_guided_choice_mode_sends_guided_json() -> None:
    with OAIServer(VERDICT, structured="llamacpp") as server:
        complete_all(backend_for(server, structured="guided", guided="guided_choice"), [request()])
        assert server.chat_bodies[0]["guided_json"] == VERDICT_SCHEMA
        assert "response_format" not in server.chat_bodies[0]


def test_choice_requests_of_a_guided_backend_are_not_negotiated(llamacpp: OAIServer) -> None:
    complete_all(backend_for(llamacpp, guided=True), [request(choices=("Yes", "No"))])
    (body,) = llamacpp.chat_bodies
    assert body["structured_outputs"] == {"choice": ["Yes", "No"]} and "response_format" not in body


def test_a_forced_form_is_sent_and_a_refusal_of_it_is_fatal(llamacpp: OAIServer) -> None:
    complete_all(backend_for(llamacpp, structured="json_object"), [request()])
    assert formats(llamacpp) == ["json_object"]
    error, = complete_all(backend_for(llamacpp, structured="json_schema"), [request()])
    assert isinstance(error, FatalBackendError) and error.status == 500
    assert "structured='auto'" in str(error) and "Input should be 'text' or 'json_object'" in str(error)
    assert formats(llamacpp) == ["json_object", "json_schema"]  # sent once, never again
    complete_all(backend_for(llamacpp, structured="none"), [request()])
    assert formats(llamacpp)[-1] is None


def test_the_form_can_be_forced_from_the_environment(llamacpp: OAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICKIT_STRUCTURED_OUTPUT", "json_object")
    complete_all(backend_for(llamacpp), [request()])
    assert formats(llamacpp) == ["json_object"]
    monkeypatch.setenv("RUBRICKIT_STRUCTURED_OUTPUT", "grammar")
    with pytest.raises(BackendSpecError, match="RUBRICKIT_STRUCTURED_OUTPUT"):
        backend_for(llamacpp)
    with pytest.raises(BackendSpecError, match="structured='xml'"):
        backend_for(llamacpp, structured="xml")


@pytest.mark.parametrize("fault", [
    Fault.server_error(500),
    Fault.server_error(503, "Service temporarily unavailable"),
    Fault.server_error(500, "CUDA out of memory while decoding (response_format json_schema)"),
])
def test_real_server_errors_are_still_retryable(fault: Fault) -> None:
    with OAIServer(fault) as server:
        backend = backend_for(server)
        error, = complete_all(backend, [request()])
        assert isinstance(error, RetryableBackendError)
        assert formats(server) == ["json_schema"]  # one request: the engine decides about retrying
        assert backend.structured_dialect == "json_schema"


def test_an_invalid_schema_is_not_a_dialect_refusal() -> None:
    with OAIServer(Fault.http_error(400, "Invalid schema for response_format 'judgment': 'verdict' is required")
                   ) as server:
        error, = complete_all(backend_for(server), [request()])
        assert isinstance(error, FatalBackendError) and len(server.chat_bodies) == 1


@pytest.mark.parametrize(("status", "message", "dialect", "param", "refused"), [
    (500, LLAMACPP_RESPONSE_FORMAT_ERROR.format(kind="json_schema"), "json_schema", None, True),
    (400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
     "json_schema", "response_format", True),
    (422, "Failed to deserialize the JSON body into the target type: response_format: unknown variant "
          "`json_schema`, expected `json` or `regex`", "json_schema", None, True),
    (400, "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
     "json_object", "messages", True),
    (400, "Unrecognized request argument supplied: structured_outputs", "guided", None, True),
    (400, "Unrecognized request argument supplied: structured_outputs", "json_schema", None, False),
    (500, "The server had an error processing your request.", "json_schema", None, False),
    (500, "internal error in response_format handling", "json_schema", None, False),
    (503, "response_format is not supported right now", "json_schema", None, False),
    (400, "Invalid schema for response_format 'judgment'", "json_schema", None, False),
    (400, "Unrecognized request argument supplied: response_format", "none", None, False),
])
def test_structured_refusal(status: int, message: str, dialect: str, param: str | None, refused: bool) -> None:
    assert structured_refusal(status, message, dialect, param) is refused
