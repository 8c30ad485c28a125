"""Finding JSON objects in free text (a judge's reply), in linear time whatever the text holds.

:func:`scan` lists the top-level objects of a text with where each starts and ends, and says whether one is left
unfinished. A candidate is a ``{`` followed by a quote (where an object with string keys starts; ``{}`` never
answers). A balanced ``{…}`` (its closing brace from :class:`Braces`) is decoded once — strict JSON, else
near-JSON (trailing commas, Python-style literals) — and skipped whole whether it decoded or not, so nothing
nested inside it is a candidate of its own. That, the brace bookkeeping and work budgets keep a megabyte of
``{`` or ``[`` or nested objects from taking quadratic time. Most answers are short strict JSON, so a candidate is
first decoded straight from its brace within a short window (same object, same end), and only the rest ask
:class:`Braces`; what failed quick decodes may spend is budgeted too.

A ``{`` that never closes leaves the text *unfinished* (cut off by ``max_tokens``) only when the rest of the text
is a well-formed object prefix (:func:`runs_to_the_end`): an unclosed ``{"key":`` quoted from a judged response
and followed by prose is skipped like any other stray brace.

Decoded objects remember keys given more than once (:class:`DecodedObject`): ``json`` keeps the last silently,
and a reply holding ``"verdict"`` twice with two values must be read as the conflict it is.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = ["OBJECT_START", "Braces", "DecodedObject", "Span", "from_pairs", "runs_to_the_end", "scan"]

OBJECT_START = re.compile(r"\{\s*([\"'\u201c])[^\"'\n]{1,40}[\"'\u201d]\s*:")
"""What the start of a judge's JSON answer looks like: a brace and a quoted key with its colon."""

_CANDIDATE = re.compile(r"\{(?=\s*[\"'\u201c])")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_LENIENT_LIMIT = 200_000
"""Longest ``{…}`` the near-JSON repair is tried on."""
_QUICK_WINDOW = 2_048
"""Characters of a candidate the quick strict-JSON decode reads before :class:`Braces` is asked."""


class DecodedObject(dict):  # type: ignore[type-arg]
    """A decoded object; ``repeated`` maps each key given more than once to all its values, in order."""

    repeated: Mapping[Any, list[Any]] = MappingProxyType({})


def from_pairs(pairs: Sequence[tuple[Any, Any]]) -> DecodedObject:
    """A :class:`DecodedObject` from key/value pairs (the ``object_pairs_hook`` of the decoders here)."""
    obj = DecodedObject(pairs)
    if len(obj) < len(pairs):
        repeated: dict[Any, list[Any]] = {}
        for key, value in pairs:
            repeated.setdefault(key, []).append(value)
        obj.repeated = {key: values for key, values in repeated.items() if len(values) > 1}
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=from_pairs)


class Braces:
    """Where each ``{`` of a text closes (double-quoted strings and their escapes respected).

    A pass from one ``{`` stops when it closes, or runs to the end of the text; on the way it records, with a
    stack, where every brace it meets outside a string closes (``None``: never). A later question about a brace
    the pass met outside a string has the same answer a fresh pass would give (same state from there on), so it is
    answered from the record. Work is bounded by a budget; past it an unrecorded brace counts as unclosed.
    """

    _NEXT = re.compile(r'(?:[^{}"]++|"(?:[^"\\]++|\\.)*+"?+)*+([{}])', re.DOTALL)
    """From where it is tried: past everything but braces (strings whole, an unclosed one to the end of the text),
    to the next brace outside a string. Possessive, so a failed try costs one pass, never a backtrack; it is only
    tried anchored (``match``), never searched, so a text with no brace left is read once, not once per position."""

    def __init__(self, text: str):
        self.text = text
        self.ends: dict[int, int | None] = {}
        self.budget = 8 * len(text) + 10_000

    def end(self, start: int) -> int | None:
        """Index after the ``}`` closing the ``{`` at ``start``, or ``None``."""
        if start in self.ends:
            return self.ends[start]
        if self.budget <= 0:
            return None
        stack: list[int] = []
        stop = len(self.text)
        match = self._NEXT.match(self.text, start)
        while match is not None:
            after = match.end()
            if match.group(1) == "{":
                stack.append(after - 1)
            else:
                if not stack:  # pragma: no cover - the pass starts at a "{"
                    break
                self.ends[stack.pop()] = after
                if not stack:
                    stop = after
                    break
            match = self._NEXT.match(self.text, after)
        for opened in stack:
            self.ends[opened] = None
        self.budget -= stop - start
        return self.ends.get(start)


class Span(NamedTuple):
    """A top-level object of a text: ``text[start:end]`` decodes to ``obj``. (A named tuple: a megabyte reply can
    hold a hundred thousand of them, and a frozen dataclass costs several times more to build.)"""

    start: int
    end: int
    obj: dict[str, Any]


def _from_ast(node: ast.AST) -> Any:
    if isinstance(node, ast.Dict):
        pairs = [(_from_ast(key), _from_ast(value)) for key, value in zip(node.keys, node.values, strict=True)]
        return from_pairs(pairs)  # type: ignore[arg-type]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_from_ast(item) for item in node.elts]
    return ast.literal_eval(node)


def _repair(text: str, start: int, end: int) -> Any:
    """The value of the balanced ``text[start:end]`` as near-JSON (strict JSON failed); ``None`` when it is not."""
    if end - start > _LENIENT_LIMIT or not OBJECT_START.match(text, start):
        return None
    chunk = text[start:end]
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", chunk), object_pairs_hook=from_pairs)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        tree = ast.parse(chunk, mode="eval")
        ast.literal_eval(tree)  # literals only: no names, calls or operators beyond numbers
        return _from_ast(tree.body)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


_SPACE = re.compile(r"\s*")
_STRINGS = {
    '"': re.compile(r'"(?:[^"\\\n]|\\.)*("?)'),
    "'": re.compile(r"'(?:[^'\\\n]|\\.)*('?)"),
    "\u201c": re.compile("\u201c[^\u201d\n]*(\u201d?)"),
}
_NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][+-]?\d*)?|-")
_WORDS = ("true", "false", "null", "True", "False", "None", "NaN", "Infinity")


def _scalar_end(text: str, index: int) -> int | None:
    """End of the string, number or literal word at ``index`` (``len(text)`` when the text ends inside it), or
    ``None`` when none starts there. A string ends at its closing quote; a raw line break ends it wrongly."""
    pattern = _STRINGS.get(text[index])
    if pattern is not None:
        match = pattern.match(text, index)
        assert match is not None
        if match.group(1) or match.end() == len(text):
            return match.end()
        return None
    number = _NUMBER.match(text, index)
    if number is not None:
        return number.end()
    rest = len(text) - index
    for word in _WORDS:
        if text.startswith(word, index) or (rest < len(word) and word.startswith(text[index:])):
            return min(index + len(word), len(text))
    return None


def runs_to_the_end(text: str, start: int, limit: int) -> tuple[bool, int]:
    """Whether ``text[start:]`` is a well-formed JSON (or Python-literal) object cut off by the end of the text,
    as a reply cut by ``max_tokens`` is; and how many characters were read (at most about ``limit``).

    An unclosed ``{"key":`` quoted from the response and followed by prose or a line break is not: its first
    stray word, or a string running into a line break, ends it before the end of the text."""
    closers: list[str] = []
    expect = "value"
    index = start
    while True:
        index = _SPACE.match(text, index).end()
        if index >= len(text) or index - start > limit:
            return True, index - start
        char = text[index]
        if expect in ("key", "value") and closers and char == closers[-1]:  # "{}", "[]" or a trailing comma
            closers.pop()
            index, expect = index + 1, "comma"
        elif expect == "value" and char in "{[":
            closers.append("}" if char == "{" else "]")
            index, expect = index + 1, "key" if char == "{" else "value"
        elif expect in ("key", "value"):
            end = _scalar_end(text, index)
            if end is None or (expect == "key" and char not in _STRINGS):
                return False, index - start
            index, expect = end, "colon" if expect == "key" else "comma"
        elif expect == "colon" and char == ":":
            index, expect = index + 1, "value"
        elif expect == "comma" and char == "," and closers:
            index, expect = index + 1, "key" if closers[-1] == "}" else "value"
        elif expect == "comma" and closers and char == closers[-1]:
            closers.pop()
            index += 1
        else:
            return False, index - start
        if not closers:
            return False, index - start  # the object closed: complete, not cut off


def scan(text: str) -> tuple[list[Span], bool]:
    """Top-level JSON objects of ``text`` in order, and whether the text ends inside an unfinished object.

    A ``{`` that never closes makes the text unfinished only when what follows it is a well-formed object cut off
    by the end of the text (:func:`runs_to_the_end`); a quoted fragment followed by prose does not."""
    spans: list[Span] = []
    braces = Braces(text)
    budget = len(text) + 10_000  # characters :func:`runs_to_the_end` may read in all
    quick = 2 * len(text) + 10_000  # characters the quick decode may spend on candidates it fails on
    match = _CANDIDATE.search(text)
    while match is not None:
        start = match.start()
        if quick > 0:
            # Most answers are short strict JSON: decode a window from the brace directly. Its end is where
            # :class:`Braces` would close it (strict JSON strings tokenize alike). A failure costs at most the window
            # (the slice keeps a decode error from counting the lines of the text before it), charged to ``quick``.
            window = text[start:start + _QUICK_WINDOW]
            try:
                value, length = _DECODER.scan_once(window, 0)  # raw_decode without its wrapper
            except (StopIteration, json.JSONDecodeError, RecursionError):
                quick -= len(window)
            else:
                spans.append(Span(start, start + length, value))
                match = _CANDIDATE.search(text, start + length)
                continue
        end = braces.end(start)
        if end is None:
            if OBJECT_START.match(text, start):
                cut, used = runs_to_the_end(text, start, budget)
                budget -= used
                if cut:  # past the budget too: then nothing after an unclosed brace is trusted
                    return spans, True
            match = _CANDIDATE.search(text, start + 1)
            continue
        # Decode the balanced slice, never the whole text from ``start``: a JSONDecodeError counts the lines of
        # its document up to the error, which made every failed candidate cost the length of the text before it.
        try:
            value = _DECODER.decode(text[start:end])
        except (json.JSONDecodeError, RecursionError):
            value = _repair(text, start, end)
        if isinstance(value, dict):
            spans.append(Span(start, end, value))
        match = _CANDIDATE.search(text, end)
    return spans, False
