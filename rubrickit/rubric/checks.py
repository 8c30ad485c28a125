"""Programmatic checks: deterministic tests of a response, decided without an LLM.

A rubric criterion may carry a ``check``, e.g. ``check: {type: max_words, value: 150}``. Like the LLM judge,
a check only decides whether the criterion's statement *holds* (``met``); the sign of the criterion's weight
says whether holding is good or bad. So ``forbidden_keywords`` is met when none of the words appear.

- :class:`CheckOutcome`: ``met`` and a short human ``detail``.
- :data:`CheckSpec`: the union of the check models, discriminated by ``type``; :data:`CHECK_TYPES` maps
  each type name to its model; :func:`parse_check` validates a raw dict; :func:`run_check` runs a check.
- :func:`check_from_ifeval` maps an IFEval instruction (one of :data:`IFEVAL_TYPES`) to a check that behaves
  like the IFEval reference checker; :func:`ifeval_coverage` measures that mapping on an IFEval file.

Counting rules (words, sentences, paragraphs, bullets, …) live in :mod:`rubrickit._text`; docs/checks.md
lists every check type with a YAML example.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from rubrickit._util import text as _text
from rubrickit._util.text import RelationName, Result, compare, plural

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

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class CheckOutcome(BaseModel):
    """The result of running a programmatic check on one response."""

    model_config = _CONFIG

    met: bool
    """Whether the criterion's statement holds for the response."""
    detail: str
    """A short human explanation, e.g. "143 words (at most 150)"."""


def _normalize_relation(value: object) -> object:
    # Hand-written YAML says "at_least" or "At least" as often as "at least"; the schema lists the canonical
    # spelling only.
    return " ".join(value.replace("_", " ").lower().split()) if isinstance(value, str) else value


Relation = Annotated[RelationName, BeforeValidator(_normalize_relation)]
"""How a count compares with a number: 'at least', 'at most', 'exactly', 'less than' or 'more than'."""


def _language_code(code: str | None) -> str | None:
    if code is None:
        return None
    normal = code.strip().lower().replace("_", "-")
    if normal not in LANGUAGE_CODES:
        raise ValueError(
            f"unknown language code {code!r}; use an ISO 639-1 code that langdetect supports, "
            "such as 'en', 'de', 'hi' or 'zh-cn'"
        )
    return normal


def _strip_words(words: tuple[str, ...]) -> tuple[str, ...]:
    if any(not w.strip() for w in words):
        raise ValueError("keywords must not be empty or blank")
    return tuple(w.strip() for w in words)


LANGUAGE_CODES: frozenset[str] = _text.LANGDETECT_CODES | {"zh"}
"""Accepted language codes: those langdetect reports, plus 'zh' (either Chinese script)."""

_Keywords = Annotated[tuple[str, ...], AfterValidator(_strip_words), Field(min_length=1)]
_Language = Annotated[str, AfterValidator(_language_code)]
_Count = Annotated[int, Field(ge=0)]


def _tag(name: str) -> Any:
    return Field(name, description=f"The check type, always {name!r}.")


class _Check(BaseModel):
    """Base of every check model."""

    model_config = _CONFIG

    type: str
    """The check type."""

    def evaluate(self, response: str) -> CheckOutcome:
        """Run the check on ``response``."""
        met, detail = self._verdict(response)
        return CheckOutcome(met=met, detail=detail)

    def _verdict(self, response: str) -> Result:
        raise NotImplementedError


# --- counts compared with a limit ---------------------------------------------------------------------------


class _Measured(_Check):
    _noun: ClassVar[str] = "item"

    def _measure(self, response: str) -> int:
        raise NotImplementedError

    def _limit(self) -> tuple[str, int]:
        raise NotImplementedError

    def _verdict(self, response: str) -> Result:
        relation, value = self._limit()
        actual = self._measure(response)
        return compare(actual, relation, value), f"{plural(actual, self._noun)} ({relation} {value})"


class _AtMost(_Measured):
    value: _Count
    """The largest allowed count (inclusive)."""

    def _limit(self) -> tuple[str, int]:
        return "at most", self.value


class _AtLeast(_Measured):
    value: _Count
    """The smallest required count (inclusive)."""

    def _limit(self) -> tuple[str, int]:
        return "at least", self.value


class _Related(_Measured):
    relation: Relation
    """How the count compares with `value`: 'at least', 'at most', 'exactly', 'less than' or 'more than'."""
    value: _Count
    """The number the count is compared with."""

    def _limit(self) -> tuple[str, int]:
        return self.relation, self.value


class _Words(_Measured):
    _noun = "word"

    def _measure(self, response: str) -> int:
        return _text.count_words(response)


class _Sentences(_Measured):
    _noun = "sentence"

    def _measure(self, response: str) -> int:
        return _text.count_sentences(response)


class _Paragraphs(_Measured):
    _noun = "paragraph"
    separator: str = Field(_text.BLANK_LINE, min_length=1)
    """What separates paragraphs: 'blank_line' (one or more empty lines) or a literal divider like '***'."""

    def _measure(self, response: str) -> int:
        return len(_text.split_paragraphs(response, self.separator))

    def _verdict(self, response: str) -> Result:
        if "" in _text.split_paragraphs(response, self.separator):
            return False, f"an empty paragraph between two {self.separator!r} dividers"
        return super()._verdict(response)


class _Chars(_Measured):
    _noun = "character"

    def _measure(self, response: str) -> int:
        return len(response.strip())


class MaxWordsCheck(_Words, _AtMost):
    """The response has at most `value` words (a word is a run of letters, digits or underscores)."""

    type: Literal["max_words"] = _tag("max_words")


class MinWordsCheck(_Words, _AtLeast):
    """The response has at least `value` words (a word is a run of letters, digits or underscores)."""

    type: Literal["min_words"] = _tag("min_words")


class WordCountCheck(_Words, _Related):
    """The number of words stands in `relation` to `value`, e.g. less than 300."""

    type: Literal["word_count"] = _tag("word_count")


class MaxSentencesCheck(_Sentences, _AtMost):
    """The response has at most `value` sentences."""

    type: Literal["max_sentences"] = _tag("max_sentences")


class MinSentencesCheck(_Sentences, _AtLeast):
    """The response has at least `value` sentences."""

    type: Literal["min_sentences"] = _tag("min_sentences")


class SentenceCountCheck(_Sentences, _Related):
    """The number of sentences stands in `relation` to `value`."""

    type: Literal["sentence_count"] = _tag("sentence_count")


class MaxParagraphsCheck(_Paragraphs, _AtMost):
    """The response has at most `value` non-empty paragraphs."""

    type: Literal["max_paragraphs"] = _tag("max_paragraphs")


class MinParagraphsCheck(_Paragraphs, _AtLeast):
    """The response has at least `value` non-empty paragraphs."""

    type: Literal["min_paragraphs"] = _tag("min_paragraphs")


class ParagraphCountCheck(_Paragraphs, _Related):
    """The number of non-empty paragraphs stands in `relation` to `value`."""

    type: Literal["paragraph_count"] = _tag("paragraph_count")


class MaxCharsCheck(_Chars, _AtMost):
    """The response has at most `value` characters (leading and trailing whitespace not counted)."""

    type: Literal["max_chars"] = _tag("max_chars")


class MinCharsCheck(_Chars, _AtLeast):
    """The response has at least `value` characters (leading and trailing whitespace not counted)."""

    type: Literal["min_chars"] = _tag("min_chars")


class CharCountCheck(_Chars, _Related):
    """The number of characters (surrounding whitespace not counted) stands in `relation` to `value`."""

    type: Literal["char_count"] = _tag("char_count")


class CapitalWordCountCheck(_Related):
    """The number of words written entirely in capital letters stands in `relation` to `value`."""

    type: Literal["capital_word_count"] = _tag("capital_word_count")
    _noun = "all-capital word"

    def _measure(self, response: str) -> int:
        return _text.count_capital_words(response)


class BulletCountCheck(_Related):
    """The number of bullet-list lines stands in `relation` to `value`."""

    type: Literal["bullet_count"] = _tag("bullet_count")
    syntax: Literal["markdown", "ifeval"] = "markdown"
    """'markdown': lines starting with '- ', '* ' or '+ '; 'ifeval': lines starting with '-', or with '*' not
    followed by '*' (IFEval's rule, which also counts '---' rules)."""
    _noun = "bullet"

    def _measure(self, response: str) -> int:
        return _text.count_bullets(response, self.syntax)


class HighlightCountCheck(_Related):
    """The number of non-empty *highlighted* or **bold** spans stands in `relation` to `value`."""

    type: Literal["highlight_count"] = _tag("highlight_count")
    _noun = "highlighted section"

    def _measure(self, response: str) -> int:
        return _text.count_highlights(response)


class SectionCountCheck(_Related):
    """The number of numbered section headers such as 'SECTION 1' stands in `relation` to `value`."""

    type: Literal["section_count"] = _tag("section_count")
    marker: str = Field("SECTION", min_length=1)
    """The word before each section's number, matched case-sensitively, e.g. 'SECTION', 'Section' or 'Day'."""
    _noun = "section"

    def _measure(self, response: str) -> int:
        return _text.count_sections(response, self.marker)


class PlaceholderCountCheck(_Related):
    """The number of [square-bracket] placeholders stands in `relation` to `value`."""

    type: Literal["placeholder_count"] = _tag("placeholder_count")
    _noun = "placeholder"

    def _measure(self, response: str) -> int:
        return _text.count_placeholders(response)


# --- keywords and letters -----------------------------------------------------------------------------------


class RequiredKeywordsCheck(_Check):
    """The response contains the given keywords or phrases: all of them, or at least one with `mode: any`."""

    type: Literal["required_keywords"] = _tag("required_keywords")
    words: _Keywords
    """The keywords or phrases to look for (literal text, not regular expressions)."""
    min_count: int = Field(1, ge=1)
    """How many times each keyword must appear (default 1)."""
    mode: Literal["all", "any"] = "all"
    """'all': every keyword must appear; 'any': one is enough."""
    case_sensitive: bool = False
    """Match letter case exactly (default: ignore case)."""
    whole_word: bool = True
    """Only match whole words, so 'run' does not match 'brunch' (default: true)."""

    def _verdict(self, response: str) -> Result:
        counts = {w: _text.count_keyword(response, w, self.case_sensitive, self.whole_word) for w in self.words}
        present = [w for w in self.words if counts[w] >= self.min_count]
        missing = [w for w in self.words if counts[w] < self.min_count]
        need = "" if self.min_count == 1 else f" (at least {self.min_count}× each)"
        if self.mode == "all" and not missing:
            return True, f"all {plural(len(self.words), 'keyword')} present{need}"
        if self.mode == "any" and present:
            return True, f"found {_text.quote_list(present)}{need}"
        return False, f"missing{need}: " + ", ".join(f"{w!r} ({counts[w]}×)" for w in missing[:5])


class ForbiddenKeywordsCheck(_Check):
    """None of the given keywords or phrases appears in the response."""

    type: Literal["forbidden_keywords"] = _tag("forbidden_keywords")
    words: _Keywords
    """The keywords or phrases that must not appear (literal text)."""
    case_sensitive: bool = False
    """Match letter case exactly (default: ignore case)."""
    whole_word: bool = True
    """Only match whole words, so 'run' does not match 'brunch' (default: true)."""

    def _verdict(self, response: str) -> Result:
        counts = {w: _text.count_keyword(response, w, self.case_sensitive, self.whole_word) for w in self.words}
        found = [f"{w!r} ({n}×)" for w, n in counts.items() if n]
        if found:
            return False, "found " + ", ".join(found[:5])
        return True, f"none of {plural(len(self.words), 'forbidden keyword')} found"


class KeywordFrequencyCheck(_Check):
    """The number of times a keyword or phrase appears stands in `relation` to `value`."""

    type: Literal["keyword_frequency"] = _tag("keyword_frequency")
    word: str = Field(min_length=1)
    """The keyword or phrase to count (literal text)."""
    relation: Relation
    """How the count compares with `value`."""
    value: _Count
    """The number the count is compared with."""
    case_sensitive: bool = False
    """Match letter case exactly (default: ignore case)."""
    whole_word: bool = True
    """Only match whole words, so 'run' does not match 'brunch' (default: true)."""

    @field_validator("word")
    @classmethod
    def _not_blank(cls, word: str) -> str:
        if not word.strip():
            raise ValueError("the keyword must not be blank")
        return word.strip()

    def _verdict(self, response: str) -> Result:
        n = _text.count_keyword(response, self.word, self.case_sensitive, self.whole_word)
        return compare(n, self.relation, self.value), (
            f"{self.word!r} appears {plural(n, 'time')} ({self.relation} {self.value})"
        )


class LetterFrequencyCheck(_Check):
    """The number of times a letter (or any single character) appears stands in `relation` to `value`."""

    type: Literal["letter_frequency"] = _tag("letter_frequency")
    letter: str = Field(min_length=1, max_length=1)
    """The single character to count."""
    relation: Relation
    """How the count compares with `value`."""
    value: _Count
    """The number the count is compared with."""
    case_sensitive: bool = False
    """Count only this exact case (default: 'a' also counts 'A')."""

    def _verdict(self, response: str) -> Result:
        if self.case_sensitive:
            n = response.count(self.letter)
        else:
            n = response.lower().count(self.letter.lower())
        return compare(n, self.relation, self.value), (
            f"{self.letter!r} appears {plural(n, 'time')} ({self.relation} {self.value})"
        )


# --- patterns, formats, starts and ends ---------------------------------------------------------------------


class RegexCheck(_Check):
    """The response matches a regular expression (Python `re` syntax)."""

    type: Literal["regex"] = _tag("regex")
    pattern: str
    """The regular expression, e.g. '\\d{3}-\\d{4}'."""
    mode: Literal["search", "fullmatch"] = "search"
    """'search': the pattern occurs anywhere; 'fullmatch': the whole (stripped) response matches it."""
    flags: str = Field("", pattern=r"^[imsxa]*$")
    """Flag letters: i (ignore case), m (multiline), s (dot matches newline), x (verbose), a (ASCII)."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"invalid regular expression {pattern!r}: {err}") from None
        return pattern

    @model_validator(mode="after")
    def _compiles_with_flags(self) -> RegexCheck:
        try:
            _text.compile_regex(self.pattern, self.flags)
        except re.error as err:
            raise ValueError(
                f"pattern: invalid regular expression {self.pattern!r} with flags {self.flags!r}: {err}"
            ) from None
        return self

    def _verdict(self, response: str) -> Result:
        regex = _text.compile_regex(self.pattern, self.flags)
        if self.mode == "fullmatch":
            met = regex.fullmatch(response.strip()) is not None
            return met, "the whole response matches" if met else "the whole response does not match"
        match = regex.search(response)
        return (True, f"matched {_text.preview(match.group())}") if match else (False, "no match")


class JsonCheck(_Check):
    """The whole response is valid JSON (a ```json code fence is allowed), optionally matching a schema."""

    type: Literal["json"] = _tag("json")
    json_schema: dict[str, Any] | None = None
    """A JSON Schema the parsed value must satisfy (any draft jsonschema supports)."""
    allow_fence: bool = True
    """Accept JSON wrapped in a Markdown code fence (```json … ```), as IFEval does."""

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            _text.check_json_schema(schema)
        return schema

    def _verdict(self, response: str) -> Result:
        return _text.json_verdict(response, self.json_schema, self.allow_fence)


class _Affix(_Check):
    _end: ClassVar[bool] = False

    text: str = Field(min_length=1)
    """The text to look for at the start or end (surrounding whitespace is ignored)."""
    case_sensitive: bool = False
    """Match letter case exactly (default: ignore case)."""
    ignore_quotes: bool = False
    """Also accept the response with its wrapping double quotes removed."""

    def _verdict(self, response: str) -> Result:
        return _text.affix_verdict(
            response, self.text, end=self._end, case_sensitive=self.case_sensitive, ignore_quotes=self.ignore_quotes
        )


class StartsWithCheck(_Affix):
    """The response starts with the given text (surrounding whitespace ignored)."""

    type: Literal["starts_with"] = _tag("starts_with")


class EndsWithCheck(_Affix):
    """The response ends with the given text (surrounding whitespace ignored)."""

    _end = True
    type: Literal["ends_with"] = _tag("ends_with")


class OneOfCheck(_Check):
    """The response is one of the given options (or, with `match: contains`, contains one of them)."""

    type: Literal["one_of"] = _tag("one_of")
    options: tuple[str, ...] = Field(min_length=1)
    """The allowed answers."""
    match: Literal["exact", "contains"] = "exact"
    """'exact': the stripped response equals an option; 'contains': an option occurs anywhere in it."""
    case_sensitive: bool = False
    """Match letter case exactly (default: ignore case)."""

    def _verdict(self, response: str) -> Result:
        fold = (lambda s: s.strip()) if self.case_sensitive else (lambda s: s.strip().lower())
        text = fold(response)
        for option in self.options:
            if (text == fold(option)) if self.match == "exact" else (fold(option) in text):
                return True, f"matches option {option!r}"
        return False, f"matches none of {plural(len(self.options), 'option')}"


class NoCommasCheck(_Check):
    """The response contains no commas (the ASCII ','; other scripts' commas are not counted)."""

    type: Literal["no_commas"] = _tag("no_commas")

    def _verdict(self, response: str) -> Result:
        n = response.count(",")
        return n == 0, "no commas" if n == 0 else f"{plural(n, 'comma')} found"


class QuotedCheck(_Check):
    """The whole response is wrapped in double quotation marks ("…")."""

    type: Literal["quoted"] = _tag("quoted")

    def _verdict(self, response: str) -> Result:
        text = response.strip()
        met = len(text) > 1 and text[0] == '"' and text[-1] == '"'
        return met, "wrapped in double quotes" if met else "not wrapped in double quotes"


class TitleCheck(_Check):
    """The response contains a title wrapped in double angular brackets, such as <<poem of joy>>."""

    type: Literal["title"] = _tag("title")

    def _verdict(self, response: str) -> Result:
        title = _text.find_title(response)
        return (False, "no <<title>> found") if title is None else (True, f"title <<{title}>>")


class PostscriptCheck(_Check):
    """The response contains a postscript starting with `marker`, e.g. 'P.S.' (case and spacing ignored)."""

    type: Literal["postscript"] = _tag("postscript")
    marker: str = Field("P.S.", min_length=1)
    """The postscript marker, e.g. 'P.S.' or 'P.P.S'."""

    def _verdict(self, response: str) -> Result:
        found = _text.postscript_pattern(self.marker).search(response)
        if found is None:
            return False, f"no postscript starting with {self.marker!r}"
        return True, f"postscript {_text.preview(response[found.start() :])}"


class ParagraphFirstWordCheck(_Check):
    """Paragraph `n` starts with `word` (and, if `paragraphs` is set, there are exactly that many)."""

    type: Literal["paragraph_first_word"] = _tag("paragraph_first_word")
    n: int = Field(ge=1)
    """Which paragraph, counting from 1."""
    word: str = Field(min_length=1)
    """The word it must start with (case, leading quotes and trailing punctuation ignored)."""
    paragraphs: int | None = Field(None, ge=1)
    """If set, the response must also have exactly this many paragraphs."""
    separator: str = Field(_text.BLANK_LINE, min_length=1)
    """What separates paragraphs: 'blank_line' (one or more empty lines) or a literal divider like '***'."""

    @field_validator("word")
    @classmethod
    def _single_word(cls, word: str) -> str:
        if len(word.split()) != 1:
            raise ValueError(f"expected a single word, got {word!r}")
        return word.strip()

    @model_validator(mode="after")
    def _n_within_paragraphs(self) -> ParagraphFirstWordCheck:
        if self.paragraphs is not None and self.n > self.paragraphs:
            raise ValueError(f"n ({self.n}) must not exceed paragraphs ({self.paragraphs})")
        return self

    def _verdict(self, response: str) -> Result:
        found = _text.split_paragraphs(response, self.separator)
        if "" in found:
            return False, f"an empty paragraph between two {self.separator!r} dividers"
        if self.paragraphs is not None and len(found) != self.paragraphs:
            return False, f"{plural(len(found), 'paragraph')} (exactly {self.paragraphs})"
        if self.n > len(found):
            return False, f"only {plural(len(found), 'paragraph')}, no paragraph {self.n}"
        first = _text.first_word(found[self.n - 1])
        return first == self.word.lower(), f"paragraph {self.n} starts with {first!r}"


class TwoResponsesCheck(_Check):
    """The response gives exactly two different answers separated by `separator`."""

    type: Literal["two_responses"] = _tag("two_responses")
    separator: str = Field("******", min_length=1)
    """The text between the two answers (IFEval: six asterisks)."""

    def _verdict(self, response: str) -> Result:
        return _text.two_responses_verdict(response, self.separator)


# --- letter case and language -------------------------------------------------------------------------------


class CaseCheck(_Check):
    """All letters of the response are lowercase (`style: lower`) or uppercase (`style: upper`)."""

    type: Literal["case"] = _tag("case")
    style: Literal["lower", "upper"]
    """'lower': no capital letters; 'upper': no small letters (at least one letter either way)."""
    language: _Language | None = None
    """If set, the response must also be in this language (IFEval's change_case instructions: 'en')."""

    def _verdict(self, response: str) -> Result:
        met, detail = _text.case_verdict(response, self.style)
        if not met or self.language is None:
            return met, detail
        met, language_detail = _text.language_verdict(response, self.language)
        return met, f"{detail}; {language_detail}"


class LanguageCheck(_Check):
    """The response is written in the given language, as detected by langdetect."""

    type: Literal["language"] = _tag("language")
    code: _Language
    """ISO 639-1 code as langdetect reports it, e.g. 'en', 'de', 'zh-cn' ('zh' accepts either script)."""

    def _verdict(self, response: str) -> Result:
        return _text.language_verdict(response, self.code)


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
