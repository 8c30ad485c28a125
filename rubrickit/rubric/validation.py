"""Rubric data validated with every problem located: ``support.yaml:14: criteria[1].weight: expected a number``.

- ``_yaml_located``: YAML parsed safely (no aliases, no dates, bounded nesting, duplicate keys refused) into a
  ``_Located``, the data plus the line of every key and list item;
- :func:`validation_problems` and :func:`describe_error`: pydantic errors turned into short messages that name
  the field path and line in the user's file (union tags and pydantic's markers dropped);
- ``_validate``: located data checked into a :class:`~rubrickit.rubric.model.Rubric`, duplicate criterion ids
  included, raising :class:`~rubrickit.errors.RubricError` with every problem.

:mod:`rubrickit.rubric.files` reads files with these and re-exports the public names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rubrickit._util.io import MAX_DEPTH
from rubrickit.errors import RubricError, format_location
from rubrickit.rubric.model import Rubric

__all__ = ["describe_error", "validation_problems"]

Path_ = str | Path


# --------------------------------------------------------------------------- locating problems


class _Located:
    """Parsed data plus the line of every key and list item, keyed by their path."""

    def __init__(self, data: Any, lines: dict[tuple[Any, ...], int]):
        self.data = data
        self.lines = lines

    def line_of(self, path: tuple[Any, ...]) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


class _Loader(yaml.SafeLoader):
    """Safe YAML loading where dates stay strings (``created: 2026-11-22`` is text, not a ``date`` object).

    Aliases (``*name``) are refused: a few hundred bytes of nested aliases ("billion laughs") expand into billions
    of nodes in every walk over the data. Nesting deeper than :data:`~rubrickit._io.MAX_DEPTH` is refused too
    (the composer recurses once per level).
    """

    file: Path_ | None = None
    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            raise RubricError.at(self.file, line, None, f"YAML alias *{event.anchor} is not allowed in rubric files "
                                 "(aliases can expand a small file into gigabytes); write the value out in full")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise RubricError.at(self.file, line, None, f"nested more than {MAX_DEPTH} levels deep; a rubric "
                                     "needs only a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_located(text: str, file: Path_ | None) -> _Located:
    """Parse YAML keeping lines; duplicate keys are errors (PyYAML would silently keep the last one)."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character, checked before parsing
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise RubricError.at(file, line, None, f"the character {char!r} is not allowed in YAML; remove it") from None
    loader.file = file
    try:
        node = loader.get_single_node()
        if node is None:
            raise RubricError.at(file, 1, None, "the file is empty; a rubric needs at least an id and criteria")
        lines: dict[tuple[Any, ...], int] = {(): node.start_mark.line + 1}
        problems: list[str] = []
        _walk_node(node, (), lines, problems, file)
        if problems:
            raise RubricError(problems)
        try:
            data = loader.construct_document(node)
        except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as exc:
            # PyYAML's constructors fail this way on values they cannot convert: an integer of more than 4,300
            # digits, an empty ``!!int``, an impossible ``!!timestamp``.
            raise RubricError.at(file, None, None, f"a value cannot be read ({type(exc).__name__}: "
                                 f"{str(exc).split(';')[0]}); check explicit !!tags and very long numbers") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise RubricError.at(
            file, line, None, f"YAML syntax error: {what}; check the indentation and quote values containing ': '"
        ) from None
    except yaml.YAMLError as exc:
        raise RubricError.at(file, None, None, f"YAML syntax error: {exc}") from None
    finally:
        loader.dispose()
    return _Located(data, lines)


def _walk_node(node: yaml.Node, path: tuple[Any, ...], lines: dict, problems: list[str], file: Path_ | None) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    format_location(
                        file, line, _format_path(path + (key,)),
                        f"duplicate key {key!r} (first on line {seen[key]}); keep only one",
                    )
                )
                continue
            seen[key] = line
            # Scale levels are integer keys: record both spellings so pydantic's int key finds its line.
            lines[path + (key,)] = line
            if isinstance(key, str) and key.lstrip("-").isascii() and key.lstrip("-").isdigit() and len(key) < 20:
                lines[path + (int(key),)] = line
            _walk_node(value_node, path + (key,), lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk_node(item, path + (index,), lines, problems, file)


def _format_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Turn a pydantic error location into a path through the user's data.

    Pydantic puts discriminated-union tags (``check.max_words.value``) and ``[key]`` markers into locations; they
    are not in the user's file, so they are dropped.
    """
    path: list[Any] = []
    current = data
    for index, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(current, dict):
            if part in current or (isinstance(part, int) and str(part) in current):
                path.append(part)
                current = current.get(part, current.get(str(part)))
                continue
            if isinstance(part, str) and current.get("type") == part:
                continue  # a union tag
            path.append(part)
            current = None
            if index < len(loc) - 1:
                continue
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        else:
            path.append(part)
            current = None
    return tuple(path)


_TYPE_WORDS = {
    "float": "a number",
    "int": "an integer",
    "string": "a string",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping (key: value)",
    "model": "a mapping (key: value)",
    "literal": "one of the allowed values",
}


def describe_error(error: dict[str, Any], model_fields: Iterable[str] | None) -> str:
    """A short message for one pydantic error, naming what was expected and what was given."""
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return "missing required field; add it"
    if kind == "extra_forbidden":
        name = error["loc"][-1] if error.get("loc") else "?"
        hint = ""
        if model_fields:
            close = difflib.get_close_matches(str(name), list(model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            hint += f" Allowed keys: {', '.join(model_fields)}"
        return f"unknown key {name!r}{hint}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"expected one of {expected}, got {given!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        expected = error.get("ctx", {}).get("expected_tags", "")
        tag = error.get("ctx", {}).get("tag", given)
        if not tag:
            return f"missing 'type'; one of {expected}"
        return f"unknown check type {tag!r}; expected one of {expected}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    for key, word in _TYPE_WORDS.items():
        if kind.startswith(key + "_") or kind == key + "_type":
            hint = ""
            if key == "string" and isinstance(given, bool):
                hint = " (YAML reads yes/no/on/off/true/false as booleans: quote the text)"
            return f"expected {word}, got {given!r}{hint}"
    return f"{error['msg']}, got {given!r}" if "input" in error else error["msg"]


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The allowed keys of the model an ``extra_forbidden`` error points into (for "did you mean")."""
    from rubrickit.rubric.checks import CHECK_TYPES
    from rubrickit.rubric.model import Criterion, Provenance

    parents = [p for p in loc[:-1] if not isinstance(p, int)]
    if not parents:
        return list(Rubric.model_fields)
    last = parents[-1]
    if last == "criteria":
        return list(Criterion.model_fields)
    if last == "provenance":
        return list(Provenance.model_fields)
    if last in CHECK_TYPES:
        return list(CHECK_TYPES[last].model_fields)
    return None


def validation_problems(
    exc: ValidationError, located: _Located, file: Path_ | None, line: int | None = None
) -> list[str]:
    """Format each pydantic error as ``file:line: field.path: message``."""
    problems = []
    for error in exc.errors(include_url=False):
        path = _data_path(tuple(error["loc"]), located.data)
        at_line = line if line is not None else located.line_of(path)
        fields = _fields_at(tuple(error["loc"])) if error["type"] == "extra_forbidden" else None
        problems.append(format_location(file, at_line, _format_path(path) or None, describe_error(error, fields)))
    return problems


def _duplicate_id_problems(located: _Located, file: Path_ | None, line: int | None = None) -> list[str]:
    criteria = located.data.get("criteria") if isinstance(located.data, dict) else None
    if not isinstance(criteria, list):
        return []
    problems, seen = [], {}
    for index, criterion in enumerate(criteria):
        if not isinstance(criterion, dict) or not isinstance(criterion.get("id"), str):
            continue
        cid = criterion["id"]
        if cid in seen:
            first = seen[cid]
            first_line = located.line_of(("criteria", first, "id"))
            where = f"criteria[{first}]" + (f", line {first_line}" if line is None and first_line else "")
            problems.append(
                format_location(
                    file, line if line is not None else located.line_of(("criteria", index, "id")),
                    f"criteria[{index}].id",
                    f"duplicate criterion id {cid!r} (first used by {where}); give each criterion its own id",
                )
            )
        else:
            seen[cid] = index
    return problems


def _validate(located: _Located, file: Path_ | None, line: int | None = None) -> Rubric:
    if not isinstance(located.data, dict):
        raise RubricError.at(
            file, line or located.line_of(()), None,
            f"expected a mapping with 'id' and 'criteria' at the top, got {type(located.data).__name__}",
        )
    duplicates = _duplicate_id_problems(located, file, line)
    try:
        rubric = Rubric.model_validate(located.data)
    except ValidationError as exc:
        problems = validation_problems(exc, located, file, line)
        # The duplicate-id model validator repeats what the located check already said, without a line.
        if duplicates:
            problems = [p for p in problems if "duplicate criterion id" not in p]
        raise RubricError(duplicates + problems) from None
    if duplicates:
        raise RubricError(duplicates)
    return rubric
