"""Programmatic checks: deterministic tests of a response, decided without an LLM.

A rubric criterion may carry a ``check``, e.g. ``check: {type: max_words, value: 150}``. Like the LLM judge,
a check only decides whether the criterion's statement *holds* (``met``); the sign of the criterion's weight
says whether holding is good or bad. So ``forbidden_keywords`` is met when none of the words appear.

This module holds the union of the check models and runs them; every public name of the package is importable
from here:

- :class:`CheckOutcome`: ``met`` and a short human ``detail``.
- :data:`CheckSpec`: the union of the check models, discriminated by ``type``; :data:`CHECK_TYPES` maps
  each type name to its model; :func:`parse_check` validates a raw dict; :func:`run_check` runs a check.

The models live in one module per family: :mod:`.base` (the outcome, the base model, shared field types),
:mod:`.counts` (counts compared with a limit), :mod:`.words` (keywords, letters, letter case, language) and
:mod:`.patterns` (patterns, JSON, starts and ends, fixed answers and marks). A new check is a model in its family's
module, added to :data:`CheckSpec` here. The IFEval mapping is :mod:`rubrickit.rubric.ifeval`.

Counting rules (words, sentences, paragraphs, bullets, …) live in :mod:`rubrickit._util.text`; docs/checks.md
lists every check type with a YAML example.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from rubrickit.rubric.checks.base import LANGUAGE_CODES, CheckOutcome, Relation
from rubrickit.rubric.checks.counts import (
    BulletCountCheck,
    CapitalWordCountCheck,
    CharCountCheck,
    HighlightCountCheck,
    MaxCharsCheck,
    MaxParagraphsCheck,
    MaxSentencesCheck,
    MaxWordsCheck,
    MinCharsCheck,
    MinParagraphsCheck,
    MinSentencesCheck,
    MinWordsCheck,
    ParagraphCountCheck,
    PlaceholderCountCheck,
    SectionCountCheck,
    SentenceCountCheck,
    WordCountCheck,
)
from rubrickit.rubric.checks.patterns import (
    EndsWithCheck,
    JsonCheck,
    NoCommasCheck,
    OneOfCheck,
    ParagraphFirstWordCheck,
    PostscriptCheck,
    QuotedCheck,
    RegexCheck,
    StartsWithCheck,
    TitleCheck,
    TwoResponsesCheck,
)
from rubrickit.rubric.checks.words import (
    CaseCheck,
    ForbiddenKeywordsCheck,
    KeywordFrequencyCheck,
    LanguageCheck,
    LetterFrequencyCheck,
    RequiredKeywordsCheck,
)

__all__ = [
    "BulletCountCheck",
    "CHECK_TYPES",
    "CapitalWordCountCheck",
    "CaseCheck",
    "CharCountCheck",
    "CheckOutcome",
    "CheckSpec",
    "EndsWithCheck",
    "ForbiddenKeywordsCheck",
    "HighlightCountCheck",
    "JsonCheck",
    "KeywordFrequencyCheck",
    "LANGUAGE_CODES",
    "LanguageCheck",
    "LetterFrequencyCheck",
    "MaxCharsCheck",
    "MaxParagraphsCheck",
    "MaxSentencesCheck",
    "MaxWordsCheck",
    "MinCharsCheck",
    "MinParagraphsCheck",
    "MinSentencesCheck",
    "MinWordsCheck",
    "NoCommasCheck",
    "OneOfCheck",
    "ParagraphCountCheck",
    "ParagraphFirstWordCheck",
    "PlaceholderCountCheck",
    "PostscriptCheck",
    "QuotedCheck",
    "RegexCheck",
    "Relation",
    "RequiredKeywordsCheck",
    "SectionCountCheck",
    "SentenceCountCheck",
    "StartsWithCheck",
    "TitleCheck",
    "TwoResponsesCheck",
    "WordCountCheck",
    "parse_check",
    "run_check",
]

# --- the union, parsing and running -------------------------------------------------------------------------

CheckSpec = Annotated[
    MaxWordsCheck | MinWordsCheck | WordCountCheck
    | MaxSentencesCheck | MinSentencesCheck | SentenceCountCheck
    | MaxParagraphsCheck | MinParagraphsCheck | ParagraphCountCheck
    | MaxCharsCheck | MinCharsCheck | CharCountCheck
    | RequiredKeywordsCheck | ForbiddenKeywordsCheck | KeywordFrequencyCheck | LetterFrequencyCheck
    | RegexCheck | JsonCheck | StartsWithCheck | EndsWithCheck | OneOfCheck
    | CaseCheck | CapitalWordCountCheck | NoCommasCheck | QuotedCheck
    | BulletCountCheck | HighlightCountCheck | SectionCountCheck | TitleCheck | PlaceholderCountCheck
    | PostscriptCheck | ParagraphFirstWordCheck | TwoResponsesCheck | LanguageCheck,
    Field(discriminator="type"),
]  # fmt: skip
"""Any check model; the ``type`` field selects which."""

CHECK_TYPES: dict[str, type[BaseModel]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(CheckSpec)[0])
}
"""Check type name -> its pydantic model, e.g. ``CHECK_TYPES["max_words"] is MaxWordsCheck``."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(CheckSpec, config=ConfigDict(title="check"))


def parse_check(data: dict[str, Any]) -> CheckSpec:
    """Validate a raw check such as ``{"type": "max_words", "value": 150}``.

    Raises :class:`pydantic.ValidationError` naming the bad field (or listing the known types for a bad
    ``type``).
    """
    return _ADAPTER.validate_python(data)


def run_check(spec: CheckSpec | dict[str, Any], response: str) -> CheckOutcome:
    """Run a check on one response (a raw dict is parsed with :func:`parse_check` first)."""
    if isinstance(spec, dict):
        spec = parse_check(spec)
    return spec.evaluate(response)
