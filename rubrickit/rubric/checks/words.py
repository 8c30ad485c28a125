"""Checks on the words and letters of the response: keywords, letter frequency, letter case and language."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rubrickit._util import text as _text
from rubrickit._util.text import Result, compare, plural
from rubrickit.rubric.checks.base import Relation, _Check, _Count, _Keywords, _Language, _tag

__all__ = [
    "CaseCheck",
    "ForbiddenKeywordsCheck",
    "KeywordFrequencyCheck",
    "LanguageCheck",
    "LetterFrequencyCheck",
    "RequiredKeywordsCheck",
]

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
