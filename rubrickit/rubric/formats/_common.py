"""Helpers shared by the format modules: located errors, reading records, slugs, numbers, JSON output."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rubrickit._util import io as _io
from rubrickit._util.io import iter_jsonl_lines, loads_json
from rubrickit.errors import ConversionError, RubricError, format_location
from rubrickit.rubric.model import SLUG_RE, Provenance, Rubric

MAX_PROBLEMS = 50
"""Stop collecting input problems after this many (the message says it stopped)."""

Field = str | None


class RecordError(ConversionError):
    """Problems in one input record, each a ``(field path, message)`` pair; readers add the file and line."""

    def __init__(self, problems: list[tuple[Field, str]]):
        self.problems = list(problems)
        super().__init__(
            "\n".join(format_location(None, None, field, message) for field, message in problems)
        )

    def located(self, file: Path | str | None, line: int | None, prefix: str = "") -> list[str]:
        """The problems as ``file:line: prefix.field: message`` lines."""
        return [
            format_location(file, line, join_field(prefix, field), message)
            for field, message in self.problems
        ]


class Problems:
    """Collects ``(field, message)`` problems of one record, then raises them together."""

    def __init__(self) -> None:
        self.items: list[tuple[Field, str]] = []

    def add(self, field: Field, message: str) -> None:
        self.items.append((field, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise RecordError(self.items)


def join_field(prefix: str, field: Field) -> str | None:
    """``join_field("[3]", "rubrics[2].points")`` -> ``"[3].rubrics[2].points"``."""
    if not prefix:
        return field
    if not field:
        return prefix
    return prefix + ("" if field.startswith("[") else ".") + field


# --------------------------------------------------------------------------- values


def is_number(value: Any) -> bool:
    """True for ints and finite floats (not booleans, which JSON and YAML readers also produce)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )


def json_number(value: float) -> int | float:
    """A weight as the field's files write it: ``5`` rather than ``5.0``."""
    return int(value) if float(value).is_integer() else float(value)


def text_field(
    record: Mapping[str, Any],
    key: str,
    problems: Problems,
    field: str | None = None,
    *,
    required: bool = True,
) -> str | None:
    """A non-blank string field, or a problem naming it."""
    value = record.get(key)
    where = field or key
    if value is None:
        if required:
            problems.add(where, "missing; add it")
        return None
    if not isinstance(value, str):
        problems.add(where, f"expected a string, got {type(value).__name__} {short(value)}")
        return None
    if not value.strip():
        problems.add(where, "is blank; write the text")
        return None
    return value


def short(value: Any, limit: int = 60) -> str:
    """A quoted, shortened rendering of a user value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slugify(text: str, *, lower: bool = True, max_len: int = 64) -> str | None:
    """A slug from free text: ``"Diagnosis Accuracy"`` -> ``"diagnosis-accuracy"`` (``None`` if empty)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-")
    if lower:
        slug = slug.lower()
    return slug[:max_len].rstrip("-") or None


def as_id(value: str) -> str | None:
    """``value`` itself when it is already a valid id slug, else a slug made from it (case kept)."""
    if SLUG_RE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.:-]+", "-", unicodedata.normalize("NFKD", value)).strip("-_.:")
    return cleaned if cleaned and SLUG_RE.match(cleaned) else slugify(value, lower=False)


def hashed_id(prefix: str, text: str) -> str:
    """An id for a record that has none: ``<prefix>-`` and the first 12 hex digits of the text's sha256."""
    return f"{prefix}-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def unique_ids(bases: Iterable[str | None], fallback: str) -> list[str]:
    """Make ids unique in order: repeats get ``-2``, ``-3``…; missing bases become ``<fallback><n>``."""
    seen: set[str] = set()
    out = []
    for number, base in enumerate(bases, start=1):
        candidate = base or f"{fallback}{number}"
        stem, suffix = candidate, 2
        while candidate in seen:
            candidate, suffix = f"{stem}-{suffix}", suffix + 1
        seen.add(candidate)
        out.append(candidate)
    return out


def build_rubric(data: dict[str, Any], converted_from: str, parameters: dict[str, Any]) -> Rubric:
    """Validate the converted rubric; pydantic problems become located record problems."""
    data["provenance"] = Provenance(converted_from=converted_from, parameters=parameters)
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
            message = str(error.get("ctx", {}).get("error", error["msg"]))
            problems.append((None, f"the converted rubric is invalid at {loc or 'top level'}: {message}"))
        raise RecordError(problems) from None


# --------------------------------------------------------------------------- files


def base_name(path: Path | str) -> str:
    """The lower-cased file name without a trailing ``.gz``."""
    name = Path(path).name.lower()
    return name[:-3] if name.endswith(".gz") else name


def suffix_of(path: Path | str) -> str:
    """The extension that decides the layout (``.jsonl`` for ``x.jsonl.gz``), lower-cased."""
    return Path(base_name(path)).suffix


def stem_id(path: Path | str) -> str:
    """A rubric id made from a file name (``rubrics/My Rubric.txt`` -> ``My-Rubric``)."""
    stem = Path(base_name(path)).stem
    return as_id(stem) or "rubric"


def read_text(path: Path) -> str:
    """The whole file as text (gz transparently, at most :data:`~rubrickit._io.MAX_FILE_BYTES`), with clear
    errors."""
    try:
        return _io.read_text(path)
    except RubricError as exc:
        raise ConversionError(str(exc)) from None


Record = tuple[int | None, str, Any]
"""``(line or None, field prefix, value)``: one input record and where it is."""


class InvalidJSON:
    """Stands in for a JSONL line that is not JSON, so the reader reports it in order with other problems."""

    def __init__(self, message: str):
        self.message = message


def iter_records(path: Path) -> Iterator[Record]:
    """Records of a JSONL file (one per line) or a JSON file (the array's elements, or the one object).

    A JSONL line that does not parse is yielded as :class:`InvalidJSON`.
    """
    if suffix_of(path) == ".jsonl":
        try:
            for number, line in iter_jsonl_lines(path):
                try:
                    yield number, "", loads_json(line)
                except json.JSONDecodeError as exc:
                    yield (
                        number,
                        "",
                        InvalidJSON(
                            f"invalid JSON: {exc.msg} at column {exc.colno}; each line "
                            "must be one JSON object"
                        ),
                    )
        except RubricError as exc:  # unreadable: missing, a folder, bad bytes or gzip data, a line too long
            raise ConversionError(str(exc)) from None
        return
    data = load_json(path)
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield None, f"[{index}]", item
    else:
        yield None, "", data


def load_json(path: Path) -> Any:
    """Parse a whole JSON file, naming the line of a syntax error."""
    text = read_text(path)
    try:
        return loads_json(text)
    except json.JSONDecodeError as exc:
        raise ConversionError(
            format_location(path, exc.lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}")
        ) from None


def convert_records(
    path: Path, records: Iterable[Record], convert_one: Callable[[Any], Rubric]
) -> list[Rubric]:
    """Convert every record, collecting located problems (and duplicate prompt ids) into one error."""
    rubrics: list[Rubric] = []
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for line, prefix, record in records:
        where = f"line {line}" if line is not None else (prefix or "the file")
        try:
            if isinstance(record, InvalidJSON):
                raise RecordError([(None, record.message)])
            if not isinstance(record, dict):
                raise RecordError([(None, f"expected a JSON object, got {type(record).__name__}")])
            rubric = convert_one(record)
        except RecordError as exc:
            problems.extend(exc.located(path, line, prefix))
        else:
            key = rubric.prompt_id or rubric.id
            if key in first_seen:
                problems.append(
                    format_location(
                        path,
                        line,
                        prefix or None,
                        f"prompt id {key!r} already came "
                        f"from {first_seen[key]}; every rubric needs its own id",
                    )
                )
            else:
                first_seen[key] = where
                rubrics.append(rubric)
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"{path}: stopping after {MAX_PROBLEMS} problems")
            break
    if problems:
        raise ConversionError("\n".join(problems))
    if not rubrics:
        raise ConversionError(format_location(path, None, None, "no records found; the file is empty"))
    return rubrics


def dump_records(records: list[dict[str, Any]], path: Path) -> str:
    """Records as JSONL (``*.jsonl``) or one indented JSON array (anything else), deterministic."""
    if suffix_of(path) == ".jsonl":
        return "".join(_json_line(record) + "\n" for record in records)
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def _json_line(record: dict[str, Any]) -> str:
    # Line separators that some readers split on are escaped so every record stays one physical line.
    text = json.dumps(record, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\u0085", "\\u0085")


def count_losses(counter: Counter[str], label: str, n: int = 1) -> None:
    """Add ``n`` to a loss counter when ``n`` is positive."""
    if n > 0:
        counter[label] += n


# --------------------------------------------------------------------------- export bookkeeping


class Export:
    """What an exporter produced: records, the rubrics as written, what it skipped and could not keep."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.written: list[Rubric] = []
        self.skipped: list[str] = []
        self.lossy: Counter[str] = Counter()


_CRITERION_LOSSES = {
    "hard": "kind: hard (gate)",
    "category": "categories",
    "scale": "scale levels",
    "check": "programmatic checks (kept as text only)",
    "applies_if": "applies_if conditions",
    "tags": "tags",
    "weight": "weights",
}


def field_losses(rubric: Rubric, keeps: set[str], lossy: Counter[str]) -> None:
    """Count the criterion and rubric fields a format has no place for (``keeps`` names those it has)."""
    for criterion in rubric.criteria:
        present = {
            "hard": criterion.kind == "hard",
            "category": criterion.category is not None,
            "scale": criterion.scale is not None,
            "check": criterion.check is not None,
            "applies_if": criterion.applies_if is not None,
            "tags": bool(criterion.tags),
            "weight": criterion.weight != 1,
        }
        for name, label in _CRITERION_LOSSES.items():
            if present[name] and name not in keeps:
                lossy[label] += 1
    for name in ("title", "description", "version"):
        if getattr(rubric, name) is not None and name not in keeps:
            lossy[f"rubric {name}"] += 1


INTERNAL_KEYS = frozenset({"rar_titles", "rar_prompt_key", "prometheus_prompt_key", "openrubrics_prompt_key"})
"""``provenance.parameters`` keys a format keeps for its own round trip (not fields of the source rows)."""


def parameters_of(rubric: Rubric) -> dict[str, Any]:
    """``provenance.parameters`` (empty when there is no provenance)."""
    return dict(rubric.provenance.parameters) if rubric.provenance is not None else {}


def add_kept_fields(row: dict[str, Any], rubric: Rubric) -> None:
    """Write back the source row's fields kept in ``provenance.parameters`` (never over a set field)."""
    for key, value in parameters_of(rubric).items():
        if key not in INTERNAL_KEYS:
            row.setdefault(key, value)
