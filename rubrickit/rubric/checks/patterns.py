"""Checks on the shape of the response: patterns, JSON, how it starts and ends, fixed answers and marks.

Regular expressions, JSON (optionally against a schema), starts and ends, one of fixed options, commas, double
quotes, a <<title>>, a postscript, the first word of a paragraph, and two answers with a separator.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rubrickit._util import text as _text
from rubrickit._util.text import Result, plural
from rubrickit.rubric.checks.base import _Check, _tag

__all__ = [
    "EndsWithCheck",
    "JsonCheck",
    "NoCommasCheck",
    "OneOfCheck",
    "ParagraphFirstWordCheck",
    "PostscriptCheck",
    "QuotedCheck",
    "RegexCheck",
    "StartsWithCheck",
    "TitleCheck",
    "TwoResponsesCheck",
]

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
