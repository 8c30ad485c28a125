"""Checks that count something in the response and compare the count with a limit.

Words, sentences, paragraphs and characters each come as ``max_*`` (at most), ``min_*`` (at least) and ``*_count``
(any :data:`~rubrickit.rubric.checks.base.Relation`); capital words, bullets, highlights, sections and placeholders
come as ``*_count`` only. Counting rules live in :mod:`rubrickit._util.text`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rubrickit._util import text as _text
from rubrickit._util.text import Result, compare, plural
from rubrickit.rubric.checks.base import Relation, _Check, _Count, _tag

__all__ = [
    "BulletCountCheck",
    "CapitalWordCountCheck",
    "CharCountCheck",
    "HighlightCountCheck",
    "MaxCharsCheck",
    "MaxParagraphsCheck",
    "MaxSentencesCheck",
    "MaxWordsCheck",
    "MinCharsCheck",
    "MinParagraphsCheck",
    "MinSentencesCheck",
    "MinWordsCheck",
    "ParagraphCountCheck",
    "PlaceholderCountCheck",
    "SectionCountCheck",
    "SentenceCountCheck",
    "WordCountCheck",
]

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
