"""Text measurements and verdict helpers behind the programmatic checks in :mod:`rubrickit.rubric.checks`.

Every function here is pure and deterministic. Where IFEval (google-research ``instruction_following_eval``)
defines a measurement, the function follows its semantics, so an IFEval instruction mapped to a check gives
the same verdict as the reference checker:

- words: runs of ``\\w`` characters. IFEval counts words with nltk's ``RegexpTokenizer(r"\\w+")``, which is
  exactly this, so "don't" and "3.14" are two words each.
- sentences: IFEval uses nltk's trained Punkt model; :func:`split_sentences` approximates it with rules (see
  there). Line breaks alone do not end a sentence, as in Punkt.
- tokens for all-capital words: IFEval uses ``nltk.word_tokenize``; :func:`word_tokens` approximates the
  Treebank rules that matter for letter case (punctuation and contractions split off, hyphenated words kept).

Helpers named ``*_verdict`` return ``(met, detail)`` for the check models.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Literal

Result = tuple[bool, str]
"""``(met, detail)``: whether a check holds and a short human explanation."""

RelationName = Literal["at least", "at most", "exactly", "less than", "more than"]
RELATIONS: tuple[str, ...] = ("at least", "at most", "exactly", "less than", "more than")


def compare(actual: int, relation: str, value: int) -> bool:
    """Whether ``actual <relation> value`` holds, e.g. ``compare(3, "at most", 5)`` is True."""
    if relation == "at least":
        return actual >= value
    if relation == "at most":
        return actual <= value
    if relation == "exactly":
        return actual == value
    if relation == "less than":
        return actual < value
    if relation == "more than":
        return actual > value
    raise ValueError(f"unknown relation {relation!r}; expected one of {', '.join(RELATIONS)}")


def plural(n: int, noun: str) -> str:
    """``plural(1, "word")`` is "1 word", ``plural(3, "word")`` is "3 words"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def preview(text: str, limit: int = 40) -> str:
    """A short quoted excerpt of ``text`` (whitespace collapsed) for a detail line."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# --- words --------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of words: maximal runs of letters, digits and underscores (IFEval's definition)."""
    return len(_WORD.findall(text))


# Split off as separate tokens by nltk's Treebank tokenizer: these characters, "..." and "--", and a comma or
# colon unless a digit follows ("1,000" stays whole).
_TREEBANK_SPLIT = re.compile(r"(\.\.\.|--|[;@#$%&?!\[\](){}<>\"“”„«»`]|[,:](?!\d))")
_CONTRACTION = re.compile(r"(?i)^(.*[^'’])(n['’]t|['’](?:ll|re|ve|s|m|d))$")


def word_tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens, approximating ``nltk.word_tokenize``.

    Treebank punctuation becomes its own token, a word's final period is split off, contractions are split
    ("DON'T" -> "DO", "N'T") and "cannot" becomes "can", "not". Hyphenated words, slashes and inner periods
    ("U.S.") stay whole.
    """
    tokens: list[str] = []
    for chunk in text.split():
        for part in _TREEBANK_SPLIT.split(chunk):
            if len(part) > 1 and part.endswith(".") and "." not in part[:-1]:
                tokens.extend(_split_contraction(part[:-1]))
                tokens.append(".")
            elif part:
                tokens.extend(_split_contraction(part))
    return tokens


def _split_contraction(token: str) -> list[str]:
    if token.lower() == "cannot":
        return [token[:3], token[3:]]
    match = _CONTRACTION.match(token)
    return [match.group(1), match.group(2)] if match else [token]


def count_capital_words(text: str) -> int:
    """Number of word tokens written entirely in capitals (``str.isupper``: "COVID-19" and "U.S." count)."""
    return sum(1 for token in word_tokens(text) if token.isupper())


# --- sentences ----------------------------------------------------------------------------------------------

# Abbreviations: after them a sentence ends only if a typical sentence-starting word follows (as in Punkt,
# whose English model ends "Mr. Smith" nowhere but "... Inc. The" at "Inc.").
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr messrs rev gen col lt sgt capt gov sen rep ft mt inc ltd co corp bros "
    "vs v e.g i.e cf viz al fig approx jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_STARTERS = frozenset(
    "according although among both but despite even finally furthermore he hence here however if in "
    "indeed instead it many meanwhile moreover most nevertheless nonetheless nor overall since similarly "
    "so some the there therefore these they this though thus under when while yet".split()
)
# Punct, then closing quotes/brackets and whitespace, or directly a character that cannot continue a word.
_BOUNDARY = re.compile(r"[.?!]+(?:[\"'”’)\]]*(?=\s|$)|(?=[)\";}\]*:@'({\[‘’“”«»]))")
_ACRONYM = re.compile(r"(?:[a-z]\.)+[a-z]")
_OPENERS = "\"'“‘([{*_"
_NEXT_WORD = re.compile(r"\s*(\w*)")
# Single letters that Punkt's English model treats as abbreviations: a period after them ends no sentence.
_ABBREVIATED_LETTERS = frozenset("cdefghklmnprstvw")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, approximating nltk's Punkt English model.

    A sentence ends at ``.``, ``?`` or ``!`` followed by whitespace, the end of the text, closing quotes or
    brackets, or another character that cannot continue a word (``*``, ``:``, …). A period does not end one
    after an abbreviation ("Mr.", "e.g.", "U.S."), an ellipsis or an initial ("J. Smith") unless a typical
    sentence-starting word follows ("The", "However", …), nor after a number ("1.") or "etc." when a lowercase
    word follows. Decimals ("3.14") never end a sentence, nor do line breaks alone.
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if _ends_sentence(text, match):
            sentences.append(text[start : match.end()].strip())
            start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def count_sentences(text: str) -> int:
    """Number of sentences according to :func:`split_sentences`."""
    return len(split_sentences(text))


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    punct = match.group().rstrip("\"'”’)]")
    if "?" in punct or "!" in punct:
        return True
    word_start = max(text.rfind(ws, 0, match.start()) for ws in " \n\t") + 1
    word = text[word_start : match.start()].lstrip(_OPENERS).lower()
    following = _NEXT_WORD.match(text, match.end())
    nxt = following.group(1) if following else ""
    starter = nxt[:1].isupper() and nxt.lower() in _STARTERS
    if len(punct) > 1 or word in _ABBREVIATIONS or _ACRONYM.fullmatch(word):  # ellipsis or abbreviation
        return starter
    if len(word) == 1 and word.isalpha():  # an initial ("J. Smith") or a variable ("equals x. Then")
        if word in _ABBREVIATED_LETTERS or nxt[:1].islower():
            return False
        initial = text[match.start() - 1].isupper() and nxt[:1].isupper()
        return starter or not initial
    if word.isdigit() or word == "etc":
        return not nxt[:1].islower()
    return True


# --- paragraphs and markdown structure ----------------------------------------------------------------------

BLANK_LINE = "blank_line"
_BLANK_LINES = re.compile(r"\n[^\S\n]*\n\s*")


def split_paragraphs(text: str, separator: str = BLANK_LINE) -> list[str]:
    """The paragraphs of ``text``, stripped.

    ``separator`` is ``"blank_line"`` (one or more empty or whitespace-only lines) or a literal divider such
    as ``"***"`` (IFEval's markdown divider). Empty text before the first or after the last divider is not a
    paragraph; an empty piece between two dividers ("***\n***", or "******" read as two "***") is kept as an
    empty string, which the paragraph checks treat as malformed (as IFEval does).
    """
    pieces = [p.strip() for p in (_BLANK_LINES.split(text) if separator == BLANK_LINE else text.split(separator))]
    start, end = 0, len(pieces)
    while start < end and not pieces[start]:
        start += 1
    while end > start and not pieces[end - 1]:
        end -= 1
    return pieces[start:end]


def first_word(paragraph: str) -> str:
    """The first word of a paragraph, lower-cased, without leading quotes or trailing punctuation."""
    words = paragraph.split()
    if not words:
        return ""
    word = words[0].lstrip("'").lstrip('"')
    return re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()


_IFEVAL_BULLET = re.compile(r"^\s*(?:\*[^*\n]|-)", re.MULTILINE)
_MARKDOWN_BULLET = re.compile(r"^[^\S\n]*[-*+][^\S\n]+\S", re.MULTILINE)


def count_bullets(text: str, syntax: Literal["ifeval", "markdown"] = "markdown") -> int:
    """Number of bullet-list lines.

    ``markdown``: lines starting with ``-``, ``*`` or ``+``, a space and some text. ``ifeval``: IFEval's
    rule, lines starting with ``*`` not followed by another ``*``, or with ``-`` (so ``---`` and ``*note*``
    lines count).
    """
    pattern = _IFEVAL_BULLET if syntax == "ifeval" else _MARKDOWN_BULLET
    return len(pattern.findall(text))


_SINGLE_HIGHLIGHT = re.compile(r"\*([^\n*]*)\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*([^\n*]*)\*\*")


def count_highlights(text: str) -> int:
    """Number of non-empty ``*highlighted*`` or ``**bold**`` spans within one line (IFEval's rule)."""
    single = sum(1 for m in _SINGLE_HIGHLIGHT.finditer(text) if m.group(1).strip())
    double = sum(1 for m in _DOUBLE_HIGHLIGHT.finditer(text) if m.group(1).strip())
    return single + double


def count_sections(text: str, marker: str) -> int:
    """Number of section headers, ``marker`` and a number such as "SECTION 2" (case-sensitive, as IFEval)."""
    return len(re.findall(re.escape(marker) + r"\s?\d+", text))


_PLACEHOLDER = re.compile(r"\[.*?\]")


def count_placeholders(text: str) -> int:
    """Number of ``[bracketed]`` placeholders within one line (IFEval's rule; ``[]`` counts too)."""
    return len(_PLACEHOLDER.findall(text))


_TITLE = re.compile(r"<<([^\n]+)>>")


def find_title(text: str) -> str | None:
    """The first non-empty ``<<title>>`` in ``text``, or None."""
    for match in _TITLE.finditer(text):
        title = match.group(1).strip("<>").strip()
        if title:
            return title
    return None


def postscript_pattern(marker: str) -> re.Pattern[str]:
    """A case-insensitive pattern for a postscript marker; a space may follow each period ("P. S.")."""
    parts = [re.escape(ch) + (r"\s?" if ch == "." else "") for ch in marker.strip()]
    return re.compile("".join(parts), re.IGNORECASE)


# --- keywords and patterns ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def keyword_pattern(word: str, case_sensitive: bool, whole_word: bool) -> re.Pattern[str]:
    """A pattern for a literal keyword or phrase; ``whole_word`` forbids word characters on either side."""
    body = re.escape(word)
    if whole_word:
        body = rf"(?<!\w){body}(?!\w)"
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE)


def count_keyword(text: str, word: str, case_sensitive: bool, whole_word: bool) -> int:
    """Non-overlapping occurrences of a literal keyword or phrase in ``text``."""
    return len(keyword_pattern(word, case_sensitive, whole_word).findall(text))


def quote_list(items: list[str], limit: int = 5) -> str:
    """``'a', 'b' and 3 more``."""
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str, flags: str = "") -> re.Pattern[str]:
    """Compile ``pattern`` with flag letters (``"im"``: ignore case, multiline); raises ``re.error``."""
    value = 0
    for letter in flags:
        value |= _REGEX_FLAGS[letter]
    return re.compile(pattern, value)


def affix_verdict(response: str, text: str, *, end: bool, case_sensitive: bool, ignore_quotes: bool) -> Result:
    """Whether the stripped response starts (``end=False``) or ends with ``text``."""
    stripped = response.strip()
    candidates = [stripped, stripped.strip('"')] if ignore_quotes else [stripped]
    target = text.strip()
    if not case_sensitive:
        candidates, target = [c.lower() for c in candidates], target.lower()
    met = any(c.endswith(target) if end else c.startswith(target) for c in candidates)
    span = len(target) + 10
    if end:
        return met, f"ends with {preview(stripped[-span:][::-1])[::-1]}"
    return met, f"starts with {preview(stripped[:span])}"


# --- JSON ---------------------------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^```(?:json)?", re.IGNORECASE)


def strip_code_fence(text: str) -> str:
    """Remove an enclosing Markdown code fence (```` ```json ```` … ```` ``` ````) as IFEval does."""
    text = _FENCE_OPEN.sub("", text.strip(), count=1)
    return text.removesuffix("```").strip()


def check_json_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError if ``schema`` is not a valid JSON Schema (for its declared or the latest draft)."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        raise ValueError(f"not a valid JSON Schema: {err.message}") from None


def json_verdict(response: str, schema: dict[str, Any] | None, allow_fence: bool) -> Result:
    """Whether the response parses as JSON and, with ``schema``, satisfies it."""
    import jsonschema

    text = strip_code_fence(response) if allow_fence else response.strip()
    try:
        value = json.loads(text)
    except ValueError as err:
        return False, f"not valid JSON: {err}"
    if schema is None:
        return True, "valid JSON"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return True, "valid JSON matching the schema"
    return False, f"JSON does not match the schema at {error.json_path}: {error.message}"


# --- language and letter case -------------------------------------------------------------------------------

LANGDETECT_CODES: frozenset[str] = frozenset(
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no "
    "pa pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh-cn zh-tw".split()
)
"""The languages langdetect 1.0.9 can report."""


def detect_language(text: str) -> str | None:
    """The language langdetect reports for ``text`` (deterministic), or None if it finds nothing to judge."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed makes verdicts reproducible
    try:
        return detect(text)
    except LangDetectException:
        return None


def language_verdict(response: str, code: str) -> Result:
    """Whether langdetect finds ``response`` to be in language ``code`` ("zh" accepts "zh-cn" and "zh-tw")."""
    found = detect_language(response)
    if found is None:
        return False, "no language detected (no letters to judge)"
    met = found == code or found.split("-")[0] == code
    return met, f"detected language {found!r} (expected {code!r})"


def case_verdict(response: str, style: Literal["lower", "upper"]) -> Result:
    """Whether every cased letter is lowercase (or uppercase), with at least one letter (``str.islower``)."""
    if response.islower() if style == "lower" else response.isupper():
        return True, f"all {style}case"
    wrong = str.isupper if style == "lower" else str.islower
    offender = next((w for w in response.split() if any(wrong(ch) for ch in w)), None)
    return False, f"not all {style}case: {offender!r}" if offender else "no letters"


def two_responses_verdict(response: str, separator: str) -> Result:
    """Whether ``separator`` divides the response into exactly two different, non-empty answers (IFEval)."""
    pieces = response.split(separator)
    if any(not p.strip() for p in pieces[1:-1]):
        return False, "an empty answer between separators"
    answers = [p.strip() for p in pieces if p.strip()]
    if len(answers) != 2:
        return False, f"{plural(len(answers), 'answer')} (exactly 2)"
    if answers[0] == answers[1]:
        return False, "the two answers are identical"
    return True, "two different answers"
