"""Programmatic checks: every check type met/unmet at its boundaries, parameter validation, tricky text,
the IFEval mapping (on every record of the shared IFEval file) and a few properties."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

import rubrickit.rubric.checks as checks
import rubrickit.rubric.ifeval as ifeval
from rubrickit._util import text as _text
from rubrickit.rubric.checks import CHECK_TYPES, CheckOutcome, CheckSpec, MaxWordsCheck, parse_check, run_check
from rubrickit.rubric.ifeval import IFEVAL_TYPES, check_from_ifeval, ifeval_coverage

ALL_TYPES = {
    "max_words", "min_words", "word_count", "max_sentences", "min_sentences", "sentence_count",
    "max_paragraphs", "min_paragraphs", "paragraph_count", "max_chars", "min_chars", "char_count",
    "required_keywords", "forbidden_keywords", "keyword_frequency", "letter_frequency", "regex", "json",
    "starts_with", "ends_with", "one_of", "case", "capital_word_count", "no_commas", "quoted", "bullet_count",
    "highlight_count", "section_count", "title", "placeholder_count", "postscript", "paragraph_first_word",
    "two_responses", "language",
}  # fmt: skip


def met(check: dict[str, Any], response: str) -> bool:
    return run_check(parse_check(check), response).met


# --- the public surface -------------------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    assert set(CHECK_TYPES) == ALL_TYPES
    # the IFEval mapping is its own module of the rubric core (it builds on checks; checks does not import it)
    assert {"CheckOutcome", "CheckSpec", "CHECK_TYPES", "parse_check", "run_check"} <= set(checks.__all__)
    assert {"check_from_ifeval", "IFEVAL_TYPES", "ifeval_coverage"} <= set(ifeval.__all__)
    assert all(hasattr(checks, name) for name in checks.__all__)
    assert all(hasattr(ifeval, name) for name in ifeval.__all__)
    assert len(IFEVAL_TYPES) == len(set(IFEVAL_TYPES)) == 25


@pytest.mark.parametrize("name", sorted(ALL_TYPES))
def test_every_model_is_frozen_strict_and_documented(name: str) -> None:
    model = CHECK_TYPES[name]
    assert model.model_config["frozen"] is True and model.model_config["extra"] == "forbid"
    schema = model.model_json_schema()
    assert schema.get("description"), f"{name} has no class docstring"
    undocumented = [f for f, prop in schema["properties"].items() if not prop.get("description")]
    assert not undocumented, f"{name}: fields without a description: {undocumented}"
    assert schema["properties"]["type"]["const"] == name


def test_union_json_schema_lists_every_type_for_editors() -> None:
    schema = TypeAdapter(CheckSpec).json_schema()
    assert set(schema["discriminator"]["mapping"]) == ALL_TYPES


def test_outcome_is_frozen() -> None:
    outcome = CheckOutcome(met=True, detail="x")
    with pytest.raises(ValidationError):
        outcome.met = False  # type: ignore[misc]


def test_design_example_and_detail() -> None:
    spec = parse_check({"type": "max_words", "value": 150})
    assert isinstance(spec, MaxWordsCheck)
    outcome = run_check(spec, "word " * 143)
    assert outcome == CheckOutcome(met=True, detail="143 words (at most 150)")
    assert run_check({"type": "max_words", "value": 150}, "word " * 151).detail == "151 words (at most 150)"


def test_unknown_type_lists_known_types() -> None:
    with pytest.raises(ValidationError) as err:
        parse_check({"type": "max_wrods", "value": 3})
    assert "max_wrods" in str(err.value) and "max_words" in str(err.value)


def test_checks_are_hashable_and_round_trip() -> None:
    spec = parse_check({"type": "forbidden_keywords", "words": ["a", "b"]})
    assert hash(spec) == hash(parse_check(spec.model_dump()))
    for name, model in CHECK_TYPES.items():
        example = EXAMPLES[name]
        spec = parse_check(example)
        assert isinstance(spec, model)
        assert parse_check(json.loads(json.dumps(spec.model_dump(mode="json")))) == spec


# One valid example of every type (also used by the fuzz test below).
EXAMPLES: dict[str, dict[str, Any]] = {
    "max_words": {"type": "max_words", "value": 5},
    "min_words": {"type": "min_words", "value": 5},
    "word_count": {"type": "word_count", "relation": "less than", "value": 5},
    "max_sentences": {"type": "max_sentences", "value": 2},
    "min_sentences": {"type": "min_sentences", "value": 2},
    "sentence_count": {"type": "sentence_count", "relation": "exactly", "value": 2},
    "max_paragraphs": {"type": "max_paragraphs", "value": 2},
    "min_paragraphs": {"type": "min_paragraphs", "value": 2},
    "paragraph_count": {"type": "paragraph_count", "relation": "exactly", "value": 2, "separator": "***"},
    "max_chars": {"type": "max_chars", "value": 10},
    "min_chars": {"type": "min_chars", "value": 10},
    "char_count": {"type": "char_count", "relation": "more than", "value": 10},
    "required_keywords": {"type": "required_keywords", "words": ["refund", "order number"]},
    "forbidden_keywords": {"type": "forbidden_keywords", "words": ["guarantee"]},
    "keyword_frequency": {"type": "keyword_frequency", "word": "data", "relation": "at least", "value": 2},
    "letter_frequency": {"type": "letter_frequency", "letter": "z", "relation": "less than", "value": 3},
    "regex": {"type": "regex", "pattern": r"\d{3}-\d{4}", "flags": "i"},
    "json": {"type": "json", "json_schema": {"type": "object", "required": ["name"]}},
    "starts_with": {"type": "starts_with", "text": "Dear customer"},
    "ends_with": {"type": "ends_with", "text": "Best regards"},
    "one_of": {"type": "one_of", "options": ["yes", "no"]},
    "case": {"type": "case", "style": "lower"},
    "capital_word_count": {"type": "capital_word_count", "relation": "at most", "value": 2},
    "no_commas": {"type": "no_commas"},
    "quoted": {"type": "quoted"},
    "bullet_count": {"type": "bullet_count", "relation": "exactly", "value": 3},
    "highlight_count": {"type": "highlight_count", "relation": "at least", "value": 2},
    "section_count": {"type": "section_count", "relation": "at least", "value": 2, "marker": "Section"},
    "title": {"type": "title"},
    "placeholder_count": {"type": "placeholder_count", "relation": "at least", "value": 2},
    "postscript": {"type": "postscript", "marker": "P.P.S"},
    "paragraph_first_word": {"type": "paragraph_first_word", "n": 2, "word": "however", "paragraphs": 3},
    "two_responses": {"type": "two_responses"},
    "language": {"type": "language", "code": "de"},
}


# --- every check type: met and unmet, at the boundary -------------------------------------------------------

FOUR_WORDS = "one two three four"
SENTENCES_3 = "First one. Second one! Third one?"
PARAS_3 = "Para one.\n\nPara two.\n\n\n  \nPara three."

CASES: list[tuple[dict[str, Any], str, bool]] = [
    # words: a word is a run of \w, so "don't" is two words (IFEval's RegexpTokenizer(r"\w+"))
    ({"type": "max_words", "value": 4}, FOUR_WORDS, True),
    ({"type": "max_words", "value": 3}, FOUR_WORDS, False),
    ({"type": "min_words", "value": 4}, FOUR_WORDS, True),
    ({"type": "min_words", "value": 5}, FOUR_WORDS, False),
    ({"type": "max_words", "value": 0}, "", True),
    ({"type": "max_words", "value": 1}, "don't", False),
    ({"type": "word_count", "relation": "exactly", "value": 4}, FOUR_WORDS, True),
    ({"type": "word_count", "relation": "exactly", "value": 5}, FOUR_WORDS, False),
    ({"type": "word_count", "relation": "less than", "value": 4}, FOUR_WORDS, False),
    ({"type": "word_count", "relation": "less than", "value": 5}, FOUR_WORDS, True),
    ({"type": "word_count", "relation": "more than", "value": 3}, FOUR_WORDS, True),
    ({"type": "word_count", "relation": "more than", "value": 4}, FOUR_WORDS, False),
    ({"type": "word_count", "relation": "at_least", "value": 4}, FOUR_WORDS, True),
    # sentences
    ({"type": "max_sentences", "value": 3}, SENTENCES_3, True),
    ({"type": "max_sentences", "value": 2}, SENTENCES_3, False),
    ({"type": "min_sentences", "value": 3}, SENTENCES_3, True),
    ({"type": "min_sentences", "value": 4}, SENTENCES_3, False),
    ({"type": "sentence_count", "relation": "exactly", "value": 1},
     "Mr. Smith paid $3.50 for it, e.g. today.", True),
    ({"type": "sentence_count", "relation": "at most", "value": 0}, "   ", True),
    ({"type": "sentence_count", "relation": "exactly", "value": 2}, "One sentence, e.g. this one.", False),
    # paragraphs: blank lines (also whitespace-only lines) or a literal divider
    ({"type": "max_paragraphs", "value": 3}, PARAS_3, True),
    ({"type": "max_paragraphs", "value": 2}, PARAS_3, False),
    ({"type": "min_paragraphs", "value": 3}, PARAS_3, True),
    ({"type": "min_paragraphs", "value": 4}, PARAS_3, False),
    ({"type": "paragraph_count", "relation": "exactly", "value": 2, "separator": "***"},
     "a\n***\nb\n***", True),
    ({"type": "paragraph_count", "relation": "exactly", "value": 1, "separator": "***"}, PARAS_3, True),
    ({"type": "paragraph_count", "relation": "exactly", "value": 2, "separator": "***"},
     "a\n******\nb", False),
    # an empty paragraph between two dividers makes the count malformed, whatever the number (as IFEval)
    ({"type": "paragraph_count", "relation": "exactly", "value": 3, "separator": "***"},
     "a\n******\nb", False),
    ({"type": "min_paragraphs", "value": 1, "separator": "***"}, "a *** *** b", False),
    ({"type": "paragraph_first_word", "n": 3, "word": "b", "separator": "***"}, "a *** *** b", False),
    # characters: surrounding whitespace not counted
    ({"type": "max_chars", "value": 5}, "  hello \n", True),
    ({"type": "max_chars", "value": 4}, "hello", False),
    ({"type": "min_chars", "value": 5}, "hello", True),
    ({"type": "min_chars", "value": 6}, "hello", False),
    ({"type": "char_count", "relation": "exactly", "value": 2}, "é日", True),
    ({"type": "char_count", "relation": "less than", "value": 2}, "é日", False),
    # keywords
    ({"type": "required_keywords", "words": ["refund", "order number"]},
     "Your REFUND for order number 7.", True),
    ({"type": "required_keywords", "words": ["refund", "order number"]}, "Your refund is on its way.", False),
    ({"type": "required_keywords", "words": ["refund"]}, "Refunds are processed.", False),
    ({"type": "required_keywords", "words": ["refund"], "whole_word": False}, "Refunds are processed.", True),
    ({"type": "required_keywords", "words": ["Refund"], "case_sensitive": True}, "refund", False),
    ({"type": "required_keywords", "words": ["a", "b"], "mode": "any"}, "only b here", True),
    ({"type": "required_keywords", "words": ["a", "b"], "mode": "any"}, "nothing here", False),
    ({"type": "required_keywords", "words": ["data"], "min_count": 2}, "data and data", True),
    ({"type": "required_keywords", "words": ["data"], "min_count": 3}, "data and data", False),
    ({"type": "required_keywords", "words": ["C++"]}, "I write C++ daily.", True),
    ({"type": "forbidden_keywords", "words": ["run"]}, "Let us have brunch.", True),
    ({"type": "forbidden_keywords", "words": ["run"]}, "Run, Forrest!", False),
    ({"type": "forbidden_keywords", "words": ["run"], "whole_word": False}, "brunch", False),
    ({"type": "keyword_frequency", "word": "data", "relation": "at least", "value": 2}, "Data, data.", True),
    ({"type": "keyword_frequency", "word": "data", "relation": "at least", "value": 3}, "Data, data.", False),
    ({"type": "keyword_frequency", "word": "data", "relation": "less than", "value": 1}, "database", True),
    ({"type": "letter_frequency", "letter": "a", "relation": "exactly", "value": 3}, "AbracAdabr", False),
    ({"type": "letter_frequency", "letter": "a", "relation": "exactly", "value": 4}, "AbracAdabr", True),
    ({"type": "letter_frequency", "letter": "A", "relation": "exactly", "value": 2, "case_sensitive": True},
     "AbracAdabr", True),
    ({"type": "letter_frequency", "letter": "#", "relation": "at least", "value": 2}, "# a\n## b", True),
    # patterns and formats
    ({"type": "regex", "pattern": r"\d{3}-\d{4}"}, "Call 555-1234 now", True),
    ({"type": "regex", "pattern": r"\d{3}-\d{4}", "mode": "fullmatch"}, "Call 555-1234 now", False),
    ({"type": "regex", "pattern": r"\d{3}-\d{4}", "mode": "fullmatch"}, " 555-1234\n", True),
    ({"type": "regex", "pattern": "^yes$", "flags": "im"}, "Well\nYES\n", True),
    ({"type": "regex", "pattern": "^yes$"}, "Well\nYES\n", False),
    ({"type": "json"}, '{"a": 1}', True),
    ({"type": "json"}, '```json\n{"a": [1, 2]}\n```', True),
    ({"type": "json"}, '```JSON\n{"a": 1}\n```', True),
    ({"type": "json", "allow_fence": False}, '```json\n{"a": 1}\n```', False),
    ({"type": "json"}, "Here is the JSON: {'a': 1}", False),
    ({"type": "json"}, "", False),
    ({"type": "json", "json_schema": {"type": "object", "required": ["name"]}}, '{"name": "x"}', True),
    ({"type": "json", "json_schema": {"type": "object", "required": ["name"]}}, '{"nom": "x"}', False),
    ({"type": "starts_with", "text": "Dear customer"}, "\n dear Customer, thanks", True),
    ({"type": "starts_with", "text": "Dear customer", "case_sensitive": True}, "dear customer", False),
    ({"type": "starts_with", "text": "Dear"}, '"Dear John"', False),
    ({"type": "starts_with", "text": "Dear", "ignore_quotes": True}, '"Dear John"', True),
    ({"type": "ends_with", "text": "Any questions?"}, "Done. any questions?  \n", True),
    ({"type": "ends_with", "text": "Any questions?"}, "Any questions? Bye.", False),
    ({"type": "ends_with", "text": "Any questions?", "ignore_quotes": True}, '"Done. Any questions?"', True),
    ({"type": "ends_with", "text": "Any questions?"}, '"Done. Any questions?"', False),
    ({"type": "one_of", "options": ["Yes", "No"]}, " yes \n", True),
    ({"type": "one_of", "options": ["Yes", "No"]}, "Yes, definitely", False),
    ({"type": "one_of", "options": ["Yes", "No"], "match": "contains"}, "Yes, definitely", True),
    ({"type": "one_of", "options": ["Yes"], "case_sensitive": True}, "yes", False),
    # case and capitals
    ({"type": "case", "style": "lower"}, "all lower, 123 ok.", True),
    ({"type": "case", "style": "lower"}, "not All lower", False),
    ({"type": "case", "style": "lower"}, "123 !!!", False),
    ({"type": "case", "style": "upper"}, "ALL CAPS, 2024!", True),
    ({"type": "case", "style": "upper"}, "ALL CAPs", False),
    ({"type": "capital_word_count", "relation": "at least", "value": 3}, "THE U.S. and COVID-19 or ok", True),
    ({"type": "capital_word_count", "relation": "at least", "value": 4},
     "THE U.S. and COVID-19 or ok", False),
    ({"type": "capital_word_count", "relation": "exactly", "value": 2}, "DON'T", True),
    ({"type": "no_commas"}, "No commas here; none。", True),
    ({"type": "no_commas"}, "One, two", False),
    ({"type": "quoted"}, '  "wrapped"\n', True),
    ({"type": "quoted"}, '"', False),
    ({"type": "quoted"}, "“curly”", False),
    # markdown structure
    ({"type": "bullet_count", "relation": "exactly", "value": 3}, "* a\n- b\n  + c\n---\n*emph* x", True),
    ({"type": "bullet_count", "relation": "exactly", "value": 2}, "* a\n- b\n  + c", False),
    ({"type": "bullet_count", "relation": "exactly", "value": 4, "syntax": "ifeval"},
     "* a\n- b\n---\n*x* y", True),
    ({"type": "bullet_count", "relation": "exactly", "value": 0, "syntax": "ifeval"},
     "** bold\n+ plus", True),
    ({"type": "highlight_count", "relation": "at least", "value": 3}, "*a* and **b** and *c*", True),
    ({"type": "highlight_count", "relation": "at least", "value": 4}, "*a* and **b** and *c*", False),
    ({"type": "highlight_count", "relation": "at least", "value": 1}, "** ** and *\nx*", False),
    ({"type": "section_count", "relation": "at least", "value": 2}, "SECTION 1\nx\nSECTION 2\ny", True),
    ({"type": "section_count", "relation": "at least", "value": 2}, "Section 1\nx\nSection 2\ny", False),
    ({"type": "section_count", "relation": "exactly", "value": 2, "marker": "Day"},
     "Day 1: go\nDay 2: back", True),
    ({"type": "title"}, "<<Poem of Joy>>\nRoses...", True),
    ({"type": "title"}, "<< >> and <<\nsplit>>", False),
    ({"type": "placeholder_count", "relation": "at least", "value": 2}, "Dear [name] at [address]", True),
    ({"type": "placeholder_count", "relation": "at least", "value": 3}, "Dear [name] at [address]", False),
    ({"type": "postscript"}, "Thanks.\n\nP.S. See you!", True),
    ({"type": "postscript"}, "Thanks.\n\np. s. see you!", True),
    ({"type": "postscript"}, "Thanks, PS see you", False),
    ({"type": "postscript", "marker": "P.P.S"}, "Bye\nP.P.S more", True),
    ({"type": "postscript", "marker": "P.P.S"}, "Bye\nP.S. more", False),
    ({"type": "paragraph_first_word", "n": 2, "word": "However"}, 'One.\n\n"However, two."', True),
    ({"type": "paragraph_first_word", "n": 2, "word": "however"}, "One.\n\nBut two.", False),
    ({"type": "paragraph_first_word", "n": 3, "word": "however"}, "One.\n\nHowever two.", False),
    ({"type": "paragraph_first_word", "n": 2, "word": "however", "paragraphs": 2},
     "A\n\nHowever\n\nC", False),
    ({"type": "paragraph_first_word", "n": 1, "word": "summary", "paragraphs": 1},
     "Summary, all good.", True),
    # as in IFEval, only . , ? ! ' " end the first word, so "Summary:" is not "summary"
    ({"type": "paragraph_first_word", "n": 1, "word": "summary", "paragraphs": 1},
     "Summary: all good.", False),
    ({"type": "two_responses"}, "Answer one.\n******\nAnswer two.", True),
    ({"type": "two_responses"}, "Same.\n******\nSame.", False),
    ({"type": "two_responses"}, "One.\n******\n******\nTwo.", False),
    ({"type": "two_responses"}, "Only one answer.", False),
    ({"type": "two_responses"}, "******\nA\n******\nB\n******", True),
    # language (langdetect, seeded)
    ({"type": "language", "code": "de"}, "Das ist ein ganz normaler deutscher Satz über das Wetter.", True),
    ({"type": "language", "code": "de"}, "This is an ordinary English sentence about the weather.", False),
    ({"type": "language", "code": "en"}, "12345 !!! ???", False),
    ({"type": "language", "code": "zh"}, "这是一个关于天气的普通中文句子。", True),
    ({"type": "case", "style": "lower", "language": "en"}, "this is plain english text about cats.", True),
    ({"type": "case", "style": "lower", "language": "en"}, "dies ist ein deutscher satz über katzen.", False),
]  # fmt: skip


@pytest.mark.parametrize(("check", "response", "expected"), CASES, ids=lambda v: repr(v)[:50])
def test_check_outcomes(check: dict[str, Any], response: str, expected: bool) -> None:
    outcome = run_check(parse_check(check), response)
    assert outcome.met is expected, outcome.detail
    assert outcome.detail.strip()


def test_every_type_has_met_and_unmet_cases() -> None:
    seen = {(c["type"], expected) for c, _, expected in CASES}
    missing = [(t, m) for t in ALL_TYPES for m in (True, False) if (t, m) not in seen]
    assert not missing


def test_details_say_what_was_found() -> None:
    assert run_check({"type": "forbidden_keywords", "words": ["run"]}, "Run, run!").detail == "found 'run' (2×)"
    missing = run_check({"type": "required_keywords", "words": ["a", "zebra"]}, "a cat").detail
    assert missing == "missing: 'zebra' (0×)"
    assert "not valid JSON" in run_check({"type": "json"}, "{oops").detail
    schema_detail = run_check({"type": "json", "json_schema": {"properties": {"n": {"type": "integer"}}}},
                              '{"n": "x"}').detail  # fmt: skip
    assert "$.n" in schema_detail and "integer" in schema_detail
    assert run_check({"type": "language", "code": "en"}, "!!!").detail.startswith("no language detected")
    assert run_check({"type": "case", "style": "lower"}, "mostly lower But not").detail.endswith("'But'")


def test_language_detection_is_deterministic() -> None:
    text = "Ciao, come stai? Oggi il tempo è bello e andiamo al mare."
    outcomes = {run_check({"type": "language", "code": "it"}, text) for _ in range(5)}
    assert len(outcomes) == 1 and next(iter(outcomes)).met


# --- parameters are validated with readable messages --------------------------------------------------------

BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "max_words", "value": -1}, "value", "greater than or equal to 0"),
    ({"type": "max_words"}, "value", "Field required"),
    ({"type": "max_words", "value": 3, "limit": 4}, "limit", "Extra inputs are not permitted"),
    ({"type": "word_count", "relation": "about", "value": 3}, "relation", "'at least'"),
    ({"type": "regex", "pattern": "(unclosed"}, "pattern", "invalid regular expression '(unclosed'"),
    ({"type": "regex", "pattern": "a", "flags": "q"}, "flags", "String should match pattern"),
    ({"type": "json", "json_schema": {"type": "objekt"}}, "json_schema", "not a valid JSON Schema"),
    ({"type": "required_keywords", "words": []}, "words", "at least 1 item"),
    ({"type": "required_keywords", "words": ["ok", "  "]}, "words", "must not be empty or blank"),
    ({"type": "required_keywords", "words": ["ok"], "min_count": 0},
     "min_count", "greater than or equal to 1"),
    ({"type": "keyword_frequency", "word": " ", "relation": "at least", "value": 1},
     "word", "must not be blank"),
    ({"type": "letter_frequency", "letter": "ab", "relation": "at least", "value": 1}, "letter", "at most 1"),
    ({"type": "language", "code": "english"}, "code", "unknown language code 'english'"),
    ({"type": "case", "style": "title"}, "style", "'lower' or 'upper'"),
    ({"type": "case", "style": "lower", "language": "xx"}, "language", "unknown language code 'xx'"),
    ({"type": "paragraph_first_word", "n": 0, "word": "a"}, "n", "greater than or equal to 1"),
    ({"type": "paragraph_first_word", "n": 1, "word": "two words"}, "word", "expected a single word"),
    ({"type": "paragraph_first_word", "n": 4, "word": "a", "paragraphs": 3}, "paragraphs", "must not exceed"),
    ({"type": "one_of", "options": []}, "options", "at least 1 item"),
    ({"type": "starts_with", "text": ""}, "text", "at least 1 character"),
    ({"type": "bullet_count", "relation": "exactly", "value": 1, "syntax": "rst"}, "syntax", "'markdown'"),
    ({"type": "section_count", "relation": "at least", "value": 1, "marker": ""},
     "marker", "at least 1 char"),
]  # fmt: skip


@pytest.mark.parametrize(("check", "field", "message"), BAD, ids=lambda v: repr(v)[:40])
def test_bad_parameters_are_rejected_naming_the_field(check: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_check(check)
    text = str(err.value)
    assert field in text and message in text, text


def test_relation_spellings_are_normalized() -> None:
    spec = parse_check({"type": "word_count", "relation": " At_Least ", "value": 2})
    assert spec.relation == "at least"  # type: ignore[union-attr]


def test_keywords_are_literal_not_regex() -> None:
    assert met({"type": "required_keywords", "words": ["a.c"], "whole_word": False}, "a.c") is True
    assert met({"type": "required_keywords", "words": ["a.c"], "whole_word": False}, "abc") is False


# --- tricky text --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("Hello world.", 1),
        ("Hello world", 1),
        ("Hello. World.", 2),
        ("Mr. Smith met Dr. Jones at 3.30 p.m. on Jan. 5.", 1),
        ("Use a tool, e.g. a hammer, i.e. something heavy. Then stop.", 2),
        ("He works at Acme Inc. The company is big.", 2),
        ("The U.S. Army is large. The U.S. is too.", 2),
        ("Pi is 3.14159. E is 2.71828.", 2),
        ("J. R. R. Tolkien wrote it.", 1),
        ("It equals x. This proves it.", 2),
        ("The answer is G. The rest follows.", 1),  # Punkt's English model lists "g" as an abbreviation
        ("Wait... what? Yes!", 2),
        ("Really?! Yes.", 2),
        ('He said "Stop." Then he left.', 2),
        ("(This is one.) This is two.", 2),
        ("1. **First.**\n2. **Second.**", 5),
        ("1. first item\n2. second item", 1),
        ("Apples, pears, etc. are fruit. Bananas, etc.\n4. Grapes", 4),
        ("Line one\nLine two\nLine three", 1),
        ("Visit example.com for more. Thanks!", 2),
        ("```python\nx = 1.5\nprint(x)\n```\nDone.", 1),
        ("¿Qué tal? Muy bien. ¡Gracias!", 3),
        ("这是第一句。这是第二句。", 1),
    ],
)
def test_sentence_counting(text: str, expected: int) -> None:
    assert _text.count_sentences(text) == expected, _text.split_sentences(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("don't stop", 3),
        ("3.14 is pi", 4),
        ("snake_case word", 2),
        ("naïve café über", 3),
        ("日本語 テキスト", 2),
        ("well-known   fact\n\n", 3),
        ('```json\n{"a": 1}\n```', 3),
        ("— … !!! ", 0),
    ],
)
def test_word_counting_follows_ifeval(text: str, expected: int) -> None:
    assert _text.count_words(text) == expected


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("DON'T STOP.", ["DO", "N'T", "STOP", "."]),
        ("I’m fine", ["I", "’m", "fine"]),
        ("cannot", ["can", "not"]),
        ("well-known U.S. (NASA)", ["well-known", "U.S.", "(", "NASA", ")"]),
        ("A,B and 1,000", ["A", ",", "B", "and", "1,000"]),
        ('He said "HI!"', ["He", "said", '"', "HI", "!", '"']),
    ],
)
def test_word_tokens_approximate_nltk(text: str, tokens: list[str]) -> None:
    assert _text.word_tokens(text) == tokens


@pytest.mark.parametrize(
    ("text", "separator", "paragraphs"),
    [
        ("", "blank_line", []),
        ("one", "blank_line", ["one"]),
        ("one\ntwo", "blank_line", ["one\ntwo"]),
        ("\n\none\n\n\n\ntwo\n \t\nthree\n\n", "blank_line", ["one", "two", "three"]),
        ("one\r\n\r\ntwo", "blank_line", ["one", "two"]),
        ("***\none\n***\ntwo\n***", "***", ["one", "two"]),
        ("one ****** two", "***", ["one", "", "two"]),
        ("a\n\nb", "***", ["a\n\nb"]),
    ],
)
def test_paragraph_splitting(text: str, separator: str, paragraphs: list[str]) -> None:
    assert _text.split_paragraphs(text, separator) == paragraphs


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("", False),
        ("```json\n[1, 2]\n```", True),
        ("```\n{}\n```", True),
        ('  {"unicode": "日本"}  ', True),
        ("null", True),
        ("{'single': 'quotes'}", False),
        ('```json\n{"a": 1}\n``` trailing', False),
    ],
)
def test_json_with_code_fences(response: str, expected: bool) -> None:
    assert met({"type": "json"}, response) is expected


# --- IFEval -------------------------------------------------------------------------------------------------


def _ifeval_records(shared_data: Path) -> list[dict[str, Any]]:
    with gzip.open(shared_data / "prompts" / "ifeval.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.shared_data
def test_every_ifeval_instruction_maps_to_a_valid_check(shared_data: Path) -> None:
    records = _ifeval_records(shared_data)
    assert len(records) == 541
    types_seen: set[str] = set()
    for record in records:
        for instruction_id, kwargs in zip(record["instruction_id_list"], record["kwargs"], strict=True):
            spec = check_from_ifeval(instruction_id, kwargs)
            assert spec is not None, instruction_id
            assert parse_check(spec.model_dump(mode="json")) == spec
            outcome = run_check(spec, record["prompt"])
            assert isinstance(outcome, CheckOutcome)
            types_seen.add(instruction_id)
    assert types_seen == set(IFEVAL_TYPES)


@pytest.mark.shared_data
def test_ifeval_coverage_numbers(shared_data: Path) -> None:
    coverage = ifeval_coverage(shared_data / "prompts" / "ifeval.jsonl.gz")
    assert coverage["types_covered"] >= 20
    assert coverage == {
        "types_total": 25,
        "types_covered": 25,
        "instructions_total": 834,
        "instructions_covered": 834,
        "uncovered": [],
    }


def test_ifeval_coverage_reports_uncovered_ids(tmp_path: Path) -> None:
    path = tmp_path / "mini.jsonl"
    rows = [
        {"instruction_id_list": ["punctuation:no_comma", "made:up"], "kwargs": [{}, {}]},
        {"instruction_id_list": ["made:up"], "kwargs": [{}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert ifeval_coverage(path) == {
        "types_total": 2,
        "types_covered": 1,
        "instructions_total": 3,
        "instructions_covered": 1,
        "uncovered": ["made:up"],
    }


def test_check_from_ifeval_edge_cases() -> None:
    assert check_from_ifeval("not:an_instruction", {}) is None
    # The Hugging Face copy lists every key with None for the unused ones.
    hf_kwargs = {"num_words": 300, "relation": "less than", "keywords": None, "language": None}
    spec = check_from_ifeval("length_constraints:number_words", hf_kwargs)
    assert spec == parse_check({"type": "word_count", "relation": "less than", "value": 300})
    with pytest.raises(ValueError, match="needs the argument 'num_words'"):
        check_from_ifeval("length_constraints:number_words", {"relation": "at least"})
    with pytest.raises(ValidationError):
        check_from_ifeval("length_constraints:number_words", {"relation": "roughly", "num_words": 3})


# Hand-written responses for a sample of IFEval instructions: (id, kwargs, response, reference verdict).
IFEVAL_SAMPLES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("keywords:existence", {"keywords": ["netflix"]}, "I watch Netflix's shows.", True),
    ("keywords:existence", {"keywords": ["model", "quality"]}, "Models of high quality.", True),
    ("keywords:existence", {"keywords": ["model", "quality"]}, "A model.", False),
    ("keywords:frequency", {"keyword": "knot", "frequency": 2, "relation": "at least"},
     "Knots and knot", True),
    ("keywords:frequency", {"keyword": "knot", "frequency": 2, "relation": "less than"}, "knot, knot", False),
    ("keywords:forbidden_words", {"forbidden_words": ["bark", "run"]}, "Dogs barking and running.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bark", "run"]}, "Dogs bark.", False),
    ("keywords:letter_frequency", {"letter": "g", "let_frequency": 3, "let_relation": "at least"},
     "Gig gag", True),
    ("keywords:letter_frequency", {"letter": "g", "let_frequency": 4, "let_relation": "less than"},
     "gggg", False),
    ("language:response_language", {"language": "fr"}, "Bonjour, je suis très content de vous voir.", True),
    ("language:response_language", {"language": "fr"}, "Hello, I am very happy to see you today.", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"},
     "One. Two.", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "One. Two.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\nB\n***\nC", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n\nB\n\nC", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n******\nB", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "one two three four", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"},
     "one two three four", False),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "elm"},
     "Trees.\n\nElm, the tree.", True),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "elm"},
     "Trees.\n\nElm, the tree.", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name], [date]", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name]", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi\n\nP.P.S. bye", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi\n\nPS bye", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n- three", False),
    ("detectable_format:constrained_response", {}, "My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "my answer is yes.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* only", False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nA\nSECTION 2\nB", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3},
     "Section 1\nA\nSection 2\nB", False),
    ("detectable_format:json_format", {}, '```json\n{"ok": true}\n```', True),
    ("detectable_format:json_format", {}, "ok: true", False),
    ("detectable_format:title", {}, "<<My Title>>\ntext", True),
    ("detectable_format:title", {}, "My Title\ntext", False),
    ("combination:two_responses", {}, "A is right.\n******\nB is right.", True),
    ("combination:two_responses", {}, "A is right.", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."},
     "write a poem. Roses are red.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("startend:end_checker", {"end_phrase": "Peace!"}, '"Goodbye. Peace!"', True),
    ("startend:end_checker", {"end_phrase": "Peace!"}, "Peace! Goodbye.", False),
    ("startend:quotation", {}, '"All of it."', True),
    ("startend:quotation", {}, "All of it.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "USE CAPS", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "USE CAPS", False),
    ("change_case:english_capital", {}, "THIS IS AN ENGLISH SENTENCE ABOUT THE WEATHER TODAY.", True),
    ("change_case:english_capital", {}, "This is an English sentence about the weather today.", False),
    ("change_case:english_lowercase", {}, "this is an english sentence about the weather today.", True),
    ("change_case:english_lowercase", {}, "this is an English sentence about the weather today.", False),
    ("punctuation:no_comma", {}, "No commas at all.", True),
    ("punctuation:no_comma", {}, "Yes, one.", False),
]  # fmt: skip


@pytest.mark.parametrize(("instruction_id", "kwargs", "response", "expected"), IFEVAL_SAMPLES,
                         ids=lambda v: repr(v)[:45])  # fmt: skip
def test_ifeval_instructions_behave_like_the_reference(
    instruction_id: str, kwargs: dict[str, Any], response: str, expected: bool
) -> None:
    spec = check_from_ifeval(instruction_id, kwargs)
    assert spec is not None
    outcome = run_check(spec, response)
    assert outcome.met is expected, outcome.detail


def test_ifeval_samples_cover_every_instruction_type() -> None:
    assert {s[0] for s in IFEVAL_SAMPLES} == set(IFEVAL_TYPES)


# --- properties ---------------------------------------------------------------------------------------------

_text_st = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=200, deadline=None)
@given(text=_text_st, n=st.integers(min_value=0, max_value=60))
def test_word_limits_agree_with_the_count(text: str, n: int) -> None:
    count = _text.count_words(text)
    assert met({"type": "max_words", "value": n}, text) is (count <= n)
    assert met({"type": "min_words", "value": n}, text) is (count >= n)
    at_least = met({"type": "word_count", "relation": "at least", "value": n}, text)
    at_most = met({"type": "word_count", "relation": "at most", "value": n}, text)
    exactly = met({"type": "word_count", "relation": "exactly", "value": n}, text)
    less = met({"type": "word_count", "relation": "less than", "value": n}, text)
    more = met({"type": "word_count", "relation": "more than", "value": n}, text)
    assert exactly is (at_least and at_most)
    assert less is (not at_least) and more is (not at_most)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), max_size=40),
       separators=st.sampled_from([" ", "  ", "\n", " - ", ", "]))  # fmt: skip
def test_word_count_of_joined_words(words: list[str], separators: str) -> None:
    assert _text.count_words(separators.join(words)) == len(words)


@settings(max_examples=200, deadline=None)
@given(text=_text_st)
def test_sentence_split_keeps_all_text(text: str) -> None:
    sentences = _text.split_sentences(text)
    assert all(s and s == s.strip() for s in sentences)
    assert "".join("".join(sentences).split()) == "".join(text.split())


@settings(max_examples=60, deadline=None)
@given(text=_text_st, name=st.sampled_from(sorted(ALL_TYPES - {"language"})))
def test_no_check_raises_on_arbitrary_text(text: str, name: str) -> None:
    outcome = run_check(parse_check(EXAMPLES[name]), text)
    assert isinstance(outcome.met, bool) and outcome.detail
