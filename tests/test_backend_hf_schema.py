"""Schema-constrained decoding on the hf backend, on real weights (the embedded SmolLM2-135M-Instruct).

Without a grammar the 135M model answers a JSON request in prose; with the request's ``json_schema`` compiled by
llguidance every reply is one JSON value of that schema, enums included, inside the token budget.
"""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

from rubrickit.backends._grammar import bounded_schema  # noqa: E402
from rubrickit.backends.base import CompletionRequest, FatalBackendError, Message  # noqa: E402
from rubrickit.backends.embedded import locate_embedded_gguf, prepare_embedded_model  # noqa: E402
from rubrickit.backends.hf import HFBackend  # noqa: E402
from rubrickit.errors import MissingDependencyError  # noqa: E402
from rubrickit.judge import parse  # noqa: E402

ASK = ("Does this reply meet the criterion 'The response is polite'? Reply: 'Go away, I will not help you.' "
       "Answer with a JSON object with a rationale and a verdict (met, unmet or not_applicable).")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> HFBackend:
    try:
        locate_embedded_gguf()
    except MissingDependencyError as error:
        pytest.skip(str(error))
    hf = HFBackend(prepare_embedded_model(tmp_path_factory.getbasetemp() / "rubrickit-cache"),
                   spec="hf:smollm2-135m-instruct")
    hf.load()
    return hf


def request(content: str = ASK, **fields: object) -> CompletionRequest:
    return CompletionRequest(messages=(Message(role="user", content=content),), **{"max_tokens": 96, **fields})


def valid(text: str, schema: dict) -> object:
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


def test_free_form_is_prose_and_the_schema_makes_it_json(backend: HFBackend) -> None:
    free = asyncio.run(backend.complete(request()))
    with pytest.raises(ValueError):
        json.loads(free.text)  # the 135M model's own answer is not the JSON asked for
    schema = parse.verdict_schema()
    constrained = asyncio.run(backend.complete(request(json_schema=schema)))
    value = valid(constrained.text, schema)
    assert value["verdict"] in ("met", "unmet", "not_applicable")
    assert constrained.finish_reason == "stop"
    assert parse.parse_verdict(constrained.text).verdict == value["verdict"]


def test_one_batch_mixes_schemas_and_free_rows(backend: HFBackend) -> None:
    schemas = [parse.verdict_schema(), parse.winner_schema(), parse.level_schema(1, 5),
               parse.per_response_schema({"polite": None, "short": None, "clarity": (1, 4)}, conditional=["short"]),
               None, parse.rating_schema()]
    requests = [request(f"{ASK} ({n})", json_schema=s, max_tokens=160) for n, s in enumerate(schemas)]
    results = asyncio.run(backend.complete_batch(requests))
    for schema, result in zip(schemas, results, strict=True):
        assert not isinstance(result, BaseException), result
        if schema is not None:
            valid(result.text, schema)
            assert result.finish_reason == "stop"
    assert results[4].text.strip() and not results[4].text.lstrip().startswith("{")


def test_a_tight_budget_still_ends_in_valid_json(backend: HFBackend) -> None:
    # Three rationales in 100 tokens: each free string is bounded so the whole object fits, and the model cannot
    # ramble past the budget into a cut-off reply.
    schema = parse.per_response_schema({"a": None, "b": None, "c": (1, 3)})
    result = asyncio.run(backend.complete(request(json_schema=schema, max_tokens=100)))
    valid(result.text, schema)
    assert result.finish_reason == "stop" and result.usage.output_tokens <= 100
    with pytest.raises(FatalBackendError, match="max_tokens 30 cannot hold a reply of this schema"):
        asyncio.run(backend.complete(request(json_schema=schema, max_tokens=30)))


def test_sampled_replies_keep_to_the_enum(backend: HFBackend) -> None:
    schema = parse.winner_schema()
    winners = set()
    for seed in range(4):
        result = asyncio.run(backend.complete(request(json_schema=schema, temperature=1.5, seed=seed)))
        winners.add(valid(result.text, schema)["winner"])
    assert winners <= {"A", "B", "tie"}


def test_the_compiled_grammar_is_cached_per_schema_and_budget(backend: HFBackend) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    before = backend._grammars.compiled
    for _ in range(3):
        valid(asyncio.run(backend.complete(request(json_schema=schema, max_tokens=20))).text, schema)
    assert backend._grammars.compiled == before + 1
    asyncio.run(backend.complete(request(json_schema=schema, max_tokens=21)))
    assert backend._grammars.compiled == before + 2


def test_a_schema_the_grammar_cannot_take_is_a_fatal_error(backend: HFBackend) -> None:
    with pytest.raises(FatalBackendError, match="cannot be compiled"):
        asyncio.run(backend.complete(request(json_schema={"type": "object", "properties": {"x": {"$ref": "#/nope"}},
                                                          "required": ["x"]})))


def test_bounded_schema_shares_the_budget_between_free_strings() -> None:
    schema = parse.per_response_schema({"a": None, "b": (1, 5)})
    bounded = bounded_schema(schema, 200, lambda text: len(text) // 4)
    lengths = [bounded["properties"][c]["properties"]["rationale"]["maxLength"] for c in ("a", "b")]
    assert abs(lengths[0] - lengths[1]) <= 1 and 16 <= lengths[0] < 100
    assert bounded["properties"]["a"]["properties"]["verdict"] == schema["properties"]["a"]["properties"]["verdict"]
    assert "maxLength" not in schema["properties"]["a"]["properties"]["rationale"]  # the caller's schema is intact
    tiny = bounded_schema(schema, 30, lambda text: len(text) // 4)
    assert tiny["properties"]["a"]["properties"]["rationale"]["maxLength"] == 1  # the floor
    with pytest.raises(ValueError, match="cannot hold"):
        bounded_schema(schema, 10, lambda text: len(text) // 4)
    given = {"type": "string", "maxLength": 5}
    assert bounded_schema(given, 1000, len) == given


def test_bounded_schema_weights_strings_by_how_often_they_can_occur() -> None:
    # Exactly 10 statements of at most 300 characters and one short title: the title keeps its own bound and the
    # statements share the rest ten ways, so the longest reply the grammar allows is inside the budget.
    schema = {"type": "object", "additionalProperties": False, "required": ["title", "items"], "properties": {
        "title": {"type": "string", "maxLength": 8},
        "items": {"type": "array", "minItems": 10, "maxItems": 10, "items": {"type": "string", "maxLength": 300}}}}
    bounded = bounded_schema(schema, 400, lambda text: len(text) // 2)
    title, item = bounded["properties"]["title"]["maxLength"], bounded["properties"]["items"]["items"]["maxLength"]
    assert title == 8 and 16 <= item < 40
    longest = {"title": "x" * title, "items": ["y" * item] * 10}
    assert len(json.dumps(longest, separators=(", ", ": "))) // 2 + 10 * item // 2 < 400
    roomy = bounded_schema(schema, 10_000, lambda text: len(text) // 2)
    assert roomy["properties"]["items"]["items"]["maxLength"] == 300  # its own bound, when the budget allows it


def test_bounded_schema_gives_up_list_items_before_statements_become_fragments() -> None:
    # RaR's checklist (7 to 20 items) at the generator's default budget: at one token per character, twenty items
    # would get about twenty characters each (fragments a small model fills by repeating itself); the list keeps
    # fewer, longer items, never fewer than its minItems, and the longest reply still fits.
    from rubrickit.judge.reply_schemas import fit_schema, reference_schema

    def count(text: str) -> int:
        return len(text) // 3

    bounded = bounded_schema(fit_schema(reference_schema(7, 20), 1024), 1024, count)
    items = bounded["properties"]["items"]
    assert 7 <= items["maxItems"] < 20 and items["minItems"] == 7
    assert items["items"]["properties"]["text"]["maxLength"] >= 90
    longest = {"items": [{"category": "Important", "weight": 5, "text": "x" * items["items"]["properties"]["text"][
        "maxLength"]}] * items["maxItems"]}
    structure = count(json.dumps({"items": [{"category": "Important", "weight": 5, "text": ""}] * items["maxItems"]},
                                 separators=(", ", ": ")))
    assert 3 * structure // 2 + items["maxItems"] * items["items"]["properties"]["text"]["maxLength"] < 1024
    assert len(longest["items"]) == items["maxItems"]
    # A list already at its floor keeps its items; the strings share what is left (the old behaviour).
    floor = bounded_schema(reference_schema(7, 7), 256, count)
    assert floor["properties"]["items"]["maxItems"] == 7
    # A list without minItems keeps at least one item; a budget too small even for that is still an error.
    one = bounded_schema({"type": "array", "maxItems": 50, "items": {"type": "string"}}, 60, count)
    assert one["maxItems"] >= 1 and one["items"]["maxLength"] >= 16
    with pytest.raises(ValueError, match="cannot hold"):
        bounded_schema(reference_schema(7, 20), 40, count)
