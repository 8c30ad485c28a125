"""The JSON Schemas of the generation replies (``rubrickit.judge.reply_schemas``): one per JSON-contract generation
template, pinned by snapshots, valid, OpenAI-strict and grammar-compilable, bounded to fit the call's ``max_tokens``,
consistent with the contract block and accepting what each method's reader uses; and sent by the generator exactly
when the backend honours structured output, from every call site."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from snapshots_check import check_snapshot

from rubrickit.backends.base import Capabilities, CompletionRequest
from rubrickit.backends.fake import FakeBackend
from rubrickit.backends.openai_requests import strict_compatible
from rubrickit.data.preferences import PromptGroup, groups_from_pairs
from rubrickit.generate import agenerate
from rubrickit.generate import per as per_module
from rubrickit.generate import tail as tail_module
from rubrickit.generate.common import GenContext, Generator
from rubrickit.generate.contrastive import findings_parser, parse_contrastive, parse_synthesis
from rubrickit.generate.decompose import rubric_texts
from rubrickit.generate.reference import parse_items
from rubrickit.generate.tail import parse_criteria
from rubrickit.judge import Judge, RetryPolicy
from rubrickit.judge.prompts import PromptLibrary
from rubrickit.judge.reply_schemas import (
    CHARS_PER_TOKEN,
    SCHEMAS,
    contrastive_schema,
    diagnosis_schema,
    fit_schema,
    max_reply_chars,
    overlap_schema,
    per_schema,
    reference_schema,
    rubrics_schema,
    synthesis_schema,
    tail_propose_schema,
    tail_revise_schema,
    themes_schema,
)
from rubrickit.refine import dedup, themes
from rubrickit.refine.themes import structure_themes
from rubrickit.rubric import Criterion

NO_WAIT = RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)
PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
JUDGE_TEMPLATES = {"per_criterion", "pairwise_criterion", "pairwise_direct", "holistic"}
"""JSON-contract templates of the judge, whose schemas live in ``rubrickit.judge.parse``."""

IDS = ["gives-the-final-answer", "cites-a-source", "explains-each-step", "uses-plain-language", "states-the-units",
       "avoids-jargon", "checks-the-result", "names-the-method"]
"""Criterion ids of a typical rubric (slugs of up to six words)."""

# Template → (the limits it is built with: the methods' defaults; the max_tokens of its call by default).
LIMITS: dict[str, tuple[dict[str, Any], int]] = {
    "contrastive_generate": ({"max_rules": 8, "max_principles": 8}, 1024),
    "contrastive_diagnose": ({"max_findings": 10}, 1024),
    "contrastive_synthesize": ({"max_rules": 8, "max_principles": 5}, 1024),
    "per_propose": ({"max_criteria": 5}, 1024),
    "per_revise": ({"max_criteria": 5}, 1024),
    "decompose_propose": ({"max_rubrics": 8}, 1024),
    "decompose_split": ({"max_rubrics": 5}, 1024),
    "reference_items": ({"min_items": 7, "max_items": 20}, 1024),
    "tail_propose": ({}, 1024),
    "tail_revise": ({"ids": IDS}, 1024),
    "themes": ({"ids": IDS, "max_themes": 5, "max_tips": 5}, 1024),
    "overlap": ({}, 256),
}


def schema_of(template: str) -> dict[str, Any]:
    kwargs, _ = LIMITS[template]
    return SCHEMAS[template](**kwargs)


def contract(template: str) -> str:
    source = (PROMPTS / f"{template}.j2").read_text(encoding="utf-8")
    match = re.search(r"{% block contract %}\n(.*?)\n{% endblock %}", source, re.S)
    return match.group(1).strip() if match else ""  # reask.j2 quotes the contract of the prompt it re-asks


def walk(schema: Any) -> list[dict[str, Any]]:
    """Every sub-schema (dicts) of ``schema``, itself included."""
    if isinstance(schema, list):
        return [node for item in schema for node in walk(item)]
    if not isinstance(schema, dict):
        return []
    return [schema] + [node for key, value in schema.items() if key not in ("enum", "const") for node in walk(value)]


# --------------------------------------------------------------------------- the schemas themselves


@pytest.mark.parametrize("template", sorted(SCHEMAS))
def test_schema_snapshot(template):
    check_snapshot(f"schema_{template}", json.dumps(schema_of(template), indent=2, sort_keys=True) + "\n")


def test_every_json_generation_template_has_a_schema():
    json_contracts = {path.stem for path in PROMPTS.glob("[!_]*.j2") if contract(path.stem).startswith(('{"', "["))}
    assert set(SCHEMAS) == json_contracts - JUDGE_TEMPLATES
    assert set(LIMITS) == set(SCHEMAS)


@pytest.mark.parametrize("template", sorted(SCHEMAS))
def test_schema_is_valid_strict_and_bounded(template):
    schema = schema_of(template)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert strict_compatible(schema)
    for node in walk(schema):
        if node.get("type") == "array":
            assert {"minItems", "maxItems"} <= set(node) and node["minItems"] <= node["maxItems"]
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node
    # The largest reply the grammar allows fits the call's max_tokens (at about four characters a token), so the
    # generator sends the schema as it is.
    _, max_tokens = LIMITS[template]
    assert max_reply_chars(schema) <= CHARS_PER_TOKEN * max_tokens
    assert fit_schema(schema, max_tokens) is schema


@pytest.mark.parametrize("template", sorted(SCHEMAS))
@pytest.mark.parametrize("max_tokens", [24, 160, 400])
def test_a_smaller_budget_gets_a_fitted_schema_that_still_takes_a_minimal_reply(template, max_tokens):
    schema = schema_of(template)
    fitted = fit_schema(schema, max_tokens)
    assert json.dumps(schema_of(template)) == json.dumps(schema)  # the original is left alone
    jsonschema.Draft202012Validator.check_schema(fitted)
    assert strict_compatible(fitted) and fitted["properties"].keys() == schema["properties"].keys()
    floors = [n for n in walk(fitted) if n.get("type") == "array"]
    assert all(n["maxItems"] >= max(n["minItems"], min(1, n["maxItems"])) for n in floors)
    assert all(n["maxLength"] >= 16 for n in walk(fitted) if "maxLength" in n and n["maxLength"])
    if max_reply_chars(schema) > CHARS_PER_TOKEN * max_tokens and max_tokens >= 160:
        assert max_reply_chars(fitted) <= CHARS_PER_TOKEN * max_tokens


@pytest.mark.parametrize("template", sorted(SCHEMAS))
def test_schema_compiles_into_a_grammar(template):
    llguidance = pytest.importorskip("llguidance")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        schema_of(template), defaults={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
    assert llguidance.LLMatcher.validate_grammar_with_warnings(grammar) == (False, [])


@pytest.mark.parametrize("template", sorted(SCHEMAS))
def test_schema_matches_the_contract_block(template):
    text = contract(template)
    schema = schema_of(template)
    properties = {name for node in walk(schema) for name in node.get("properties", {})}
    assert set(re.findall(r'"(\w+)":', text)) == properties
    for node in walk(schema):
        values = node.get("enum", [])
        if values and all(isinstance(v, str) for v in values) and not set(values) <= set(IDS):
            for value in values:  # fixed choices are spelled as in the contract
                assert f'"{value}"' in text, f"{template}: {value!r} is not in the contract"


# --------------------------------------------------------------------------- example replies: schema and reader agree

RESPONSE = "Boil the water, then let it cool to 80 degrees before pouring."
BY_ID = {cid: Criterion(id=cid, text=f"Criterion {cid}.") for cid in IDS}


def _reference_items() -> dict:
    items = [{"category": category, "weight": weight, "text": f"The response states fact {n}."}
             for n, (category, weight) in enumerate([("Essential", 5), ("Important", 3), ("Optional", 1),
                                                     ("Important", 2), ("Essential", 4), ("Optional", 2)])]
    return {"items": items + [{"category": "Pitfall", "weight": 4, "text": "The response recommends boiling tea."}]}


# Template → (an example reply, the method's reader of it returning what it kept).
EXAMPLES: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "contrastive_generate": (
        {"hard_rules": ["The response is written in French."], "principles": ["The response explains each step."]},
        lambda obj: parse_contrastive(obj).criteria),
    "contrastive_diagnose": (
        {"findings": [{"aspect": "water temperature", "status": "present", "severity": "major",
                       "evidence": "cool to 80 degrees"},
                      {"aspect": "steeping time", "status": "missing", "severity": "minor", "evidence": ""}]},
        lambda obj: findings_parser(RESPONSE, Counter())(obj)),
    "contrastive_synthesize": (
        {"must": [{"rule": "The response gives a water temperature.", "test": "Look for a number of degrees."}],
         "forbid": [{"rule": "The response tells the user to use boiling water.", "test": "Look for 'boiling'."}],
         "principles": ["The response is easy to follow."]},
        lambda obj: parse_synthesis(obj).criteria),
    "per_propose": ({"criteria": [{"text": "The response names the capital."}]},
                    lambda obj: per_module._criteria_texts(obj, 5)[0]),
    "per_revise": ({"criteria": [{"text": "The response names Paris."}, {"text": "The response is brief."}]},
                   lambda obj: per_module._criteria_texts(obj, 5)[0]),
    "decompose_propose": ({"rubrics": ["The response gives a temperature.", "The response gives a time."]},
                          lambda obj: rubric_texts(json.dumps(obj))),
    "decompose_split": ({"rubrics": ["The response gives 80 degrees."]}, lambda obj: rubric_texts(json.dumps(obj))),
    "reference_items": (_reference_items(), lambda obj: parse_items(obj, min_items=7, max_items=20)[0]),
    "tail_propose": ({"criteria": [{"text": "The response gives units.", "weight": 3},
                                   {"text": "The response invents a citation.", "weight": -4}]},
                     lambda obj: parse_criteria(obj)[0]),
    "tail_revise": ({"edits": ["split the units check"],
                     "criteria": [{"id": "states-the-units", "text": "The response gives units.", "weight": 2},
                                  {"id": None, "text": "The response gives SI units.", "weight": 1}]},
                    lambda obj: parse_criteria(obj)[0]),
    "themes": ({"themes": [{"theme": "The response is precise.", "tips": ["Check the units."],
                            "criteria": ["states-the-units", "gives-the-final-answer"]},
                           {"theme": "The response is clear.", "tips": [], "criteria": ["avoids-jargon"]}]},
               lambda obj: themes._validate(obj, BY_ID, 5, 5, themes.Stats())),
    "overlap": ({"rationale": "Same check, other words.", "overlap": 85, "relation": "same"}, dedup._parse_overlap),
}


@pytest.mark.parametrize("template", sorted(SCHEMAS))
def test_an_example_reply_fits_the_schema_and_its_reader(template):
    reply, read = EXAMPLES[template]
    jsonschema.validate(reply, schema_of(template))
    assert read(reply)


def test_reader_outputs_keep_what_the_schema_allows():
    kept = parse_criteria(EXAMPLES["tail_revise"][0])[0]
    assert [c["id"] for c in kept] == ["states-the-units", None]  # null: a new criterion
    assert [c.source_ids for c in EXAMPLES["themes"][1](EXAMPLES["themes"][0])] == [
        ["states-the-units", "gives-the-final-answer"], ["avoids-jargon"]]
    with pytest.raises(jsonschema.ValidationError):  # an id the rubric does not have
        jsonschema.validate({"themes": [{"theme": "T", "tips": [], "criteria": ["made-up"]}]}, schema_of("themes"))
    with pytest.raises(jsonschema.ValidationError):  # a zero weight (the reader re-asks it)
        jsonschema.validate({"criteria": [{"text": "T", "weight": 0}]}, tail_propose_schema())
    # decompose's overlap checks share refine's contract and reader: a partial overlap, then a fraction (the contract
    # asks for a percentage; the reader still takes it as one)
    partial = {"rationale": "Both check the temperature.", "overlap": 75, "relation": "different"}
    jsonschema.validate(partial, overlap_schema())
    assert dedup._parse_overlap(partial) == dedup.Overlap(75.0, "different", "Both check the temperature.")
    fraction = {**partial, "overlap": 0.75}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(fraction, overlap_schema())
    assert dedup._parse_overlap(fraction).overlap == 75.0


def test_bounds_follow_the_run_limits():
    assert per_schema(3)["properties"]["criteria"]["maxItems"] == 3
    items = reference_schema(4, 9)["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (4, 9)
    revised = tail_revise_schema(IDS[:3], max_added=2)["properties"]["criteria"]
    assert revised["maxItems"] == 5
    assert revised["items"]["properties"]["id"]["anyOf"][0]["enum"] == IDS[:3]
    tips = themes_schema(IDS[:2], 3, 0)["properties"]["themes"]["items"]["properties"]["tips"]
    assert tips["maxItems"] == 0


# --------------------------------------------------------------------------- the generator sends them


def parse_items_list(obj: dict) -> list:
    if not obj.get("items"):
        raise ValueError("items must be a non-empty list")
    return obj["items"]


@pytest.mark.parametrize("structured", [True, False])
def test_generator_sends_the_schema_exactly_when_the_backend_honours_it(structured):
    backend = FakeBackend(["no json here", '{"items": ["a"]}'], capabilities=Capabilities(json_schema=structured))
    generator = Generator(Judge(backend, use_cache=False, retry=NO_WAIT), PromptLibrary(), reasks=1)
    assert generator.structured_output is structured
    schema, variables = per_schema(3), {"reason": "x", "contract": "{}"}
    assert asyncio.run(generator.ajson("reask", variables, parse_items_list, salt="s", schema=schema)) == ["a"]
    asyncio.run(generator.atext("reask", variables, salt="t", schema=schema))
    asyncio.run(generator.atext("reask", variables, salt="u"))
    sent = [request.json_schema for request in backend.requests]
    assert len(sent) == 4
    assert sent[:3] == ([schema] * 3 if structured else [None] * 3)  # the re-ask carries it too
    assert sent[3] is None  # a free-text call never does


def test_a_call_with_a_small_budget_sends_the_schema_fitted_to_it():
    backend = FakeBackend(['{"items": ["a"]}'])
    generator = Generator(Judge(backend, use_cache=False, retry=NO_WAIT), PromptLibrary(), max_tokens=1024)
    schema = contrastive_schema(8, 8)
    asyncio.run(generator.atext("reask", {"reason": "x", "contract": "{}"}, max_tokens=100, schema=schema))
    (request,) = backend.requests
    assert request.max_tokens == 100 and request.json_schema == fit_schema(schema, 100) != schema
    assert max_reply_chars(request.json_schema) <= CHARS_PER_TOKEN * 100


class Model:
    """A scripted generator/judge: a request with a titled schema gets a valid reply built from that schema (ids
    from its enums); judge requests get a verdict or a winner. Records the titled schemas it received."""

    def __init__(self) -> None:
        self.schemas: list[dict[str, Any]] = []

    def __call__(self, request: CompletionRequest) -> str:
        schema = request.json_schema or {}
        if "title" in schema:
            self.schemas.append(schema)
        title = schema.get("title")
        if title == "themes":
            ids = schema["properties"]["themes"]["items"]["properties"]["criteria"]["items"]["enum"]
            return json.dumps({"themes": [{"theme": "The response is right.", "tips": ["Check it."], "criteria": ids}]})
        if title == "tail_revision":
            ids = schema["properties"]["criteria"]["items"]["properties"]["id"]["anyOf"][0]["enum"]
            return json.dumps({"edits": ["kept"], "criteria": [{"id": ids[0], "text": "The response is right.",
                                                                 "weight": 2}]})
        if title == "diagnosis":
            return json.dumps({"findings": [{"aspect": "the answer", "status": "missing", "severity": "major",
                                             "evidence": ""}]})
        if title is not None:
            return json.dumps(next(reply for name, (reply, _) in EXAMPLES.items() if SCHEMAS[name](
                **LIMITS[name][0]).get("title") == title))
        user = request.messages[-1].content
        if "<response_a>" in user:
            a = re.search(r"<response_a>\n(.*?)\n</response_a>", user, re.S).group(1)
            return json.dumps({"rationale": "scripted", "winner": "A" if "GOOD" in a else "B"})
        return json.dumps({"rationale": "scripted", "verdict": "met"})


def make_ctx(model: Model) -> GenContext:
    generator = Judge(FakeBackend(model), use_cache=False, retry=NO_WAIT, reasks=0)
    judge = Judge(FakeBackend(model, spec="fake:judge"), use_cache=False, retry=NO_WAIT, reasks=0)
    return GenContext(generator=Generator(generator, generator.library, reasks=1), judge=judge)


PAIR = {"id": "p1", "prompt": "What is six times seven?", "response_a": "No idea.",
        "response_b": "GOOD: the answer is 42.", "label": "B"}


@pytest.mark.parametrize("diagnose", [False, True])
def test_contrastive_sends_its_schemas(diagnose):
    model = Model()
    generator = Judge(FakeBackend(model), use_cache=False, retry=NO_WAIT, reasks=0)
    judge = Judge(FakeBackend(model, spec="fake:judge"), use_cache=False, retry=NO_WAIT, reasks=0)
    result = asyncio.run(agenerate("contrastive", groups_from_pairs([PAIR]), generator=generator, judge=judge,
                                   max_tries=1, diagnose=diagnose))
    assert len(result.rubrics) == 1
    expected = [diagnosis_schema(10), synthesis_schema(8, 5)] if diagnose else [contrastive_schema(8, 8)]
    assert all(schema in expected for schema in model.schemas) and len(model.schemas) == len(expected) + diagnose


def test_without_structured_output_no_generation_request_carries_a_schema():
    reply = json.dumps(EXAMPLES["contrastive_generate"][0])
    backend = FakeBackend(lambda request: reply, capabilities=Capabilities(json_schema=False))
    generator = Judge(backend, use_cache=False, retry=NO_WAIT, reasks=0)
    judge = Judge(FakeBackend(Model(), spec="fake:judge"), use_cache=False, retry=NO_WAIT, reasks=0)
    result = asyncio.run(agenerate("contrastive", groups_from_pairs([PAIR]), generator=generator, judge=judge,
                                   max_tries=1))
    assert len(result.rubrics) == 1
    assert backend.requests and all(request.json_schema is None for request in backend.requests)


def test_per_and_themes_send_their_schemas(monkeypatch):
    monkeypatch.setattr("rubrickit.backends.embedding.embed_texts", lambda texts, model=None: np.eye(len(texts), 8))
    model = Model()
    ctx = make_ctx(model)
    pair = {"id": "cap", "prompt": "Capital of France?", "response_a": "GOOD Paris.", "response_b": "Lyon.",
            "label": "A"}
    result = asyncio.run(per_module.agenerate(groups_from_pairs([pair]), ctx, source=None, themes=3, tips=2))
    assert result.rubrics and all("theme" in c.tags for c in result.rubrics[0].criteria)
    assert model.schemas[0] == per_schema(5)
    ids = [c.source_ids for c in result.rubrics[0].criteria][0]
    assert model.schemas[-1] == themes_schema(ids, 3, 2)


def test_reference_and_tail_send_their_schemas():
    model = Model()
    ctx = make_ctx(model)
    group = PromptGroup(id="tea", prompt="How do I brew green tea?", responses=["GOOD one.", "Two."],
                        reference="Use water at 80 degrees.")
    result = asyncio.run(agenerate("reference", [group], generator=ctx.generator.judge, judge=ctx.judge))
    assert result.rubrics and model.schemas == [reference_schema(7, 20)]
    refiner = tail_module._Refiner(group, ctx, scorer=None)
    rubric = asyncio.run(refiner.propose())
    asyncio.run(refiner.revise(rubric, {"top_two": [0, 1], "rewards": [0.9, 0.8], "pass_rates": {}}, 0))
    assert model.schemas[1:] == [tail_propose_schema(), tail_revise_schema([c.id for c in rubric.criteria])]


def test_decompose_and_the_overlap_checks_send_their_schemas(monkeypatch):
    from rubrickit.generate import decompose

    monkeypatch.setattr(decompose, "embed_texts", lambda texts, model=None: np.tile(np.ones(4) / 2, (len(texts), 1)))
    model = Model()
    ctx = make_ctx(model)
    group = PromptGroup(id="tea", prompt="How do I brew green tea?", responses=["One.", "Two.", "Three."])
    asyncio.run(decompose.agenerate([group], ctx, source=None, n=1, max_depth=1))
    assert rubrics_schema(8) in model.schemas and rubrics_schema(5) in model.schemas
    assert overlap_schema() in model.schemas
    criteria = [Criterion(id="a", text="The response is short."), Criterion(id="b", text="The response is brief.")]
    overlap = asyncio.run(dedup.aoverlap(ctx.generator, criteria[0], criteria[1]))
    assert overlap.relation == "same" and model.schemas[-1] == overlap_schema()
    asyncio.run(structure_themes(criteria, ctx.generator, max_themes=2, max_tips=1))
    assert model.schemas[-1] == themes_schema(["a", "b"], 2, 1)
