"""Data rows to judge: responses (:class:`DataItem`) and response pairs (:class:`PairItem`), and their loaders.

Files: JSONL (optionally ``.jsonl.gz``), a JSON array (``.json``), CSV (optionally ``.csv.gz``), or a Hugging Face
dataset saved with ``save_to_disk`` (a folder; needs the ``datasets`` package). A ``prompt`` may be a string or a
chat, a list of ``{"role", "content"}`` messages; in CSV cells a chat is written as its JSON.

Columns map onto fields with ``mapping={field: column}`` (``{"response": "output"}`` reads the ``output`` column as
the response). Columns that are not fields are kept in ``meta``. Pairs may also come as ``chosen``/``rejected``
columns: the chosen response becomes A and the label ``A`` (both orders are judged, so the placement does not bias
the result); when they are whole chats, the last message is the response and the rest the prompt.

A row without an ``id`` gets a stable one: ``sha256:`` + the first 16 hex digits of the SHA-256 of the canonical JSON
of ``[prompt, response]`` (``[prompt, response_a, response_b]`` for pairs), so re-running on the same file gives the
same ids and ``--resume`` works. Every problem names the file, line and field (``data.jsonl:7: response: missing
required field; add it``); duplicate ids name both lines. A column that is not a field but is a close misspelling of
one the row lacks (``refrence``, ``promt_id``) is an error with a suggestion, not silently kept in ``meta``. A file
with no rows is an error unless ``allow_empty=True`` (then a warning and an empty list). Reading is bounded and fails
cleanly on bad bytes, damaged gzip data and folders that are not saved datasets (see :mod:`rubrickit._io`).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rubrickit._util import io as _io
from rubrickit._util.io import iter_jsonl_lines, iter_lines, loads_json, no_rows, read_text
from rubrickit.errors import MissingDependencyError, RubricError, format_location

__all__ = [
    "CandidateSet", "ChatMessage", "DataItem", "PairItem", "load_candidates", "load_items", "load_pairs", "stable_id",
]

MAX_PROBLEMS = 50

_CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class ChatMessage(BaseModel):
    """One message of a chat prompt."""

    model_config = _CONFIG

    role: str
    """``system``, ``user``, ``assistant`` (or ``tool``)."""
    content: str
    """The text."""

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        role = value.strip().lower()
        if role not in ("system", "user", "assistant", "tool", "developer"):
            raise ValueError(f"role must be system, user, assistant or tool, got {value!r}")
        return role


Prompt = str | list[ChatMessage]


def stable_id(*parts: Any) -> str:
    """``sha256:<16 hex>`` of the canonical JSON of ``parts`` (the id of a row that has none)."""
    plain = [[m.model_dump() for m in p] if isinstance(p, list) and p and isinstance(p[0], ChatMessage) else p
             for p in parts]
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _split_extras(cls: type[BaseModel], data: Any) -> Any:
    """Move unknown keys into ``meta`` (data files carry extra columns); turn numeric ids into strings."""
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    known = set(cls.model_fields)
    given = data.get("meta")
    meta = dict(given) if isinstance(given, Mapping) else ({} if given is None else {"meta": given})
    for key in [k for k in data if k not in known]:
        meta[key] = data.pop(key)
    data["meta"] = meta
    for key in ("id", "prompt_id"):
        if isinstance(data.get(key), (int, float)) and not isinstance(data.get(key), bool):
            data[key] = str(data[key])
    return data


class DataItem(BaseModel):
    """One response to judge, with the prompt it answers."""

    model_config = _CONFIG

    id: str = ""
    """The row's id (score records carry it as ``item_id``); a stable hash when the row has none."""
    prompt: Prompt
    """The user prompt: a string, or a chat as a list of ``{role, content}`` messages."""
    response: str
    """The response being judged."""
    reference: str | None = None
    """A reference answer, shown to the judge when present."""
    prompt_id: str | None = None
    """Picks the prompt-specific rubric from a rubric set."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Other columns of the row, kept as they were."""

    @model_validator(mode="before")
    @classmethod
    def _extras(cls, data: Any) -> Any:
        return _split_extras(cls, data)

    @model_validator(mode="after")
    def _default_id(self) -> DataItem:
        if not self.id:
            object.__setattr__(self, "id", stable_id(self.prompt, self.response))
        return self


class PairItem(BaseModel):
    """Two responses to the same prompt, to compare."""

    model_config = _CONFIG

    id: str = ""
    """The pair's id (records carry it as ``pair_id``); a stable hash when the row has none."""
    prompt: Prompt
    """The user prompt: a string or a chat."""
    response_a: str
    """The first response."""
    response_b: str
    """The second response."""
    label: Literal["A", "B", "tie"] | None = None
    """The gold preference, when known (records then say whether the judge got it right)."""
    subset: str | None = None
    """A subset or category name, for per-subset reports."""
    prompt_id: str | None = None
    """Picks the prompt-specific rubric from a rubric set."""
    reference: str | None = None
    """A reference answer, shown to the judge when present."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Other columns of the row, kept as they were."""

    @model_validator(mode="before")
    @classmethod
    def _extras(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "chosen" in data and "rejected" in data:
            data = _from_chosen_rejected(dict(data))
        return _split_extras(cls, data)

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        if isinstance(value, str):
            folded = value.strip().lower()
            return {"a": "A", "b": "B", "tie": "tie", "": None}.get(folded, value)
        return value

    @model_validator(mode="after")
    def _default_id(self) -> PairItem:
        if not self.id:
            object.__setattr__(self, "id", stable_id(self.prompt, self.response_a, self.response_b))
        return self


class CandidateSet(BaseModel):
    """Several responses to one prompt, to rank (best-of-N; ``rubrickit rank``)."""

    model_config = _CONFIG

    id: str = ""
    """The row's id (a stable hash of the prompt and responses when the row has none)."""
    prompt: Prompt
    """The user prompt: a string or a chat."""
    responses: list[str] = Field(min_length=1)
    """The candidate responses, in the order the ranking refers to them (by index)."""
    reference: str | None = None
    """A reference answer, shown to the judge when present."""
    prompt_id: str | None = None
    """Picks the prompt-specific rubric from a rubric set."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Other columns of the row, kept as they were."""

    @model_validator(mode="before")
    @classmethod
    def _extras(cls, data: Any) -> Any:
        return _split_extras(cls, data)

    @field_validator("responses", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("["):  # a CSV cell holding a JSON list
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("a JSON list of strings was expected, e.g. [\"first\", \"second\"]") from None
        return value

    @model_validator(mode="after")
    def _default_id(self) -> CandidateSet:
        if not self.id:
            object.__setattr__(self, "id", stable_id(self.prompt, self.responses))
        return self


def _last_turn(value: Any) -> tuple[Any, Any]:
    """Split a chat into (earlier messages, last message content); a string is (None, itself)."""
    if isinstance(value, list) and value and isinstance(value[-1], Mapping):
        return value[:-1], value[-1].get("content")
    return None, value


def _from_chosen_rejected(data: dict[str, Any]) -> dict[str, Any]:
    before, chosen = _last_turn(data.pop("chosen"))
    _, rejected = _last_turn(data.pop("rejected"))
    data.setdefault("response_a", chosen)
    data.setdefault("response_b", rejected)
    if "prompt" not in data and before is not None:
        data["prompt"] = before
    data.setdefault("label", "A")
    return data


# --------------------------------------------------------------------------- reading files


def _rows(path: Path) -> Iterator[tuple[int | None, Any]]:
    """``(line, row)`` for each row of a data file (line numbers are 1-based; ``None`` where there are none)."""
    name = path.name.lower()
    if path.is_dir():
        yield from _hf_rows(path)
    elif name.endswith((".csv", ".csv.gz")):
        yield from _csv_rows(path)
    elif name.endswith(".json"):
        yield from _json_array_rows(path)
    else:
        yield from _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[tuple[int | None, Any]]:
    for number, line in iter_jsonl_lines(path):
        try:
            row = loads_json(line)
        except json.JSONDecodeError as exc:
            raise RubricError.at(path, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}; "
                                 "each line must be one JSON object") from None
        yield number, row


def _json_array_rows(path: Path) -> Iterator[tuple[int | None, Any]]:
    text = read_text(path, limit=_io.MAX_DATA_FILE_BYTES)
    try:
        data = loads_json(text)
    except json.JSONDecodeError as exc:
        raise RubricError.at(path, exc.lineno, None, f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise RubricError.at(path, None, None, "expected a JSON array of row objects (or use JSONL: one per line)")
    for index, row in enumerate(data):
        yield index + 1, row


def _csv_cell(value: str) -> Any:
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, list) and all(isinstance(m, dict) and "content" in m for m in parsed):
            return parsed
    return value


def _csv_rows(path: Path) -> Iterator[tuple[int | None, Any]]:
    # Cells as long as a line may be (csv's own default stops at 128 KiB, shorter than many responses).
    csv.field_size_limit(max(csv.field_size_limit(), _io.MAX_LINE_BYTES))
    reader = csv.DictReader(text for _, text in iter_lines(path))
    try:
        for row in reader:
            if reader.line_num and not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            cleaned = {k: _csv_cell(v) for k, v in row.items() if k is not None and v is not None and v != ""}
            yield reader.line_num, cleaned
    except csv.Error as exc:
        raise RubricError.at(path, reader.line_num or None, None, f"not valid CSV ({exc})") from None


def _hf_rows(path: Path) -> Iterator[tuple[int | None, Any]]:
    if not any((path / marker).is_file() for marker in ("state.json", "dataset_dict.json")):
        raise RubricError.at(path, None, None, "is a folder, but not a Hugging Face dataset saved with save_to_disk "
                             "(it has no state.json or dataset_dict.json); give a data file (JSONL, JSON or CSV)")
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependencyError(f"{path}: reading a Hugging Face dataset folder needs the 'datasets' package; "
                                     "run: pip install datasets (or export the data to JSONL)") from None
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - whatever a damaged dataset folder makes datasets raise
        raise RubricError.at(path, None, None, f"cannot load the saved dataset ({type(exc).__name__}: {exc})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if len(dataset) != 1:
            raise RubricError.at(path, None, None, f"the dataset has splits {sorted(dataset)}; save one split")
        dataset = next(iter(dataset.values()))
    for index, row in enumerate(dataset):
        yield index + 1, row


def _apply_mapping(row: Any, mapping: Mapping[str, str] | None) -> Any:
    if not mapping or not isinstance(row, Mapping):
        return row
    row = dict(row)
    for field, column in mapping.items():
        if column in row:
            row[field] = row.pop(column)
    return row


def _problems(exc: ValidationError, path: Path, line: int | None, model: type[BaseModel]) -> list[str]:
    from rubrickit.rubric.files import describe_error

    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or None
        message = describe_error(error, list(model.model_fields) if error["type"] == "extra_forbidden" else None)
        if error["type"] == "missing" and field in ("response", "prompt", "response_a", "response_b"):
            message += (f" (or map your column onto it: mapping={{'{field}': 'your_column'}}; the score, compare, "
                        f"eval and generate commands take --map {field}=COLUMN)")
        problems.append(format_location(path, line, field, message))
    return problems


def misspelt_columns(row: Mapping[str, Any], known: Iterable[str]) -> list[tuple[str, str]]:
    """``(column, field)`` for each column of ``row`` that is not a known field but looks like a misspelling of a
    field the row lacks: the same name in another case, or a difflib ratio of at least 0.8 with a field of four or
    more letters (``refrence`` → ``reference``; ``uid`` is not taken for ``id``, nor ``response_c`` for
    ``response_a`` when the row has ``response_a``)."""
    known = set(known)
    absent = sorted(f for f in known if f not in row and f != "meta")
    found = []
    for column in row:
        if not isinstance(column, str) or column in known:
            continue
        close = [f for f in absent if f.lower() == column.lower()] or difflib.get_close_matches(
            column, [f for f in absent if len(f) >= 4], n=1, cutoff=0.8)
        if close:
            found.append((column, close[0]))
    return found


def misspelling_problems(row: Mapping[str, Any], known: Iterable[str], path: Path, line: int | None) -> list[str]:
    """Located problems for :func:`misspelt_columns`."""
    return [format_location(path, line, column, f"unknown column; did you mean {field!r}? Rename it to {field!r} "
                            "(or, to keep it as an extra column, put it under 'meta')")
            for column, field in misspelt_columns(row, known)]


def _check_file(path: str | Path, model: type[BaseModel], mapping: Mapping[str, str] | None, *, allow_empty: bool,
                known: Iterable[str] = ()) -> ItemStream:
    _, count = _scan(path, model, mapping, allow_empty=allow_empty, known=known, keep_rows=False)
    return ItemStream(Path(path), model, mapping, count)


def _load(path: str | Path, model: type[BaseModel], mapping: Mapping[str, str] | None, *, allow_empty: bool,
          known: Iterable[str] = ()) -> list[Any]:
    rows, _ = _scan(path, model, mapping, allow_empty=allow_empty, known=known, keep_rows=True)
    return rows


def _scan(path: str | Path, model: type[BaseModel], mapping: Mapping[str, str] | None, *, allow_empty: bool,
          known: Iterable[str], keep_rows: bool) -> tuple[list[Any], int]:
    """Every row of ``path`` checked, every problem raised together; the rows (kept only with ``keep_rows``) and
    their count."""
    path = Path(path)
    if not path.exists():
        raise RubricError.at(path, None, None, "no such file; give the data file (JSONL, JSONL.gz, JSON or CSV)")
    rows: list[Any] = []
    count = 0
    problems: list[str] = []
    first_line: dict[str, int | None] = {}
    known = {*model.model_fields, *known}
    for line, raw in _rows(path):
        if not isinstance(raw, Mapping):
            problems.append(format_location(path, line, None, f"expected an object, got {type(raw).__name__}"))
            continue
        mapped = _apply_mapping(raw, mapping)
        misspelt = misspelling_problems(mapped, known, path, line)
        if misspelt:
            problems.extend(misspelt)
            continue
        try:
            row = model.model_validate(mapped)
        except ValidationError as exc:
            problems.extend(_problems(exc, path, line, model))
        else:
            if row.id in first_line:
                where = f"line {first_line[row.id]}" if first_line[row.id] is not None else "an earlier row"
                problems.append(format_location(path, line, "id", f"{row.id!r} already appears on {where}; give "
                                                "every row its own id"))
            else:
                first_line[row.id] = line
                count += 1
                if keep_rows:
                    rows.append(row)
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"{path}: stopping after {MAX_PROBLEMS} problems")
            break
    if problems:
        raise RubricError(problems)
    if not count:
        no_rows(path, allow_empty=allow_empty)
    return rows, count


def load_items(path: str | Path, *, mapping: Mapping[str, str] | None = None,
               allow_empty: bool = False) -> list[DataItem]:
    """Read responses to judge from a JSONL / JSONL.gz / JSON / CSV file or a saved HF dataset folder.

    ``mapping`` maps fields onto the file's columns (``{"response": "output"}``). Raises :class:`RubricError`
    listing every problem as ``file:line: field: message``, and for a file with no rows unless ``allow_empty``
    (then it logs a warning and returns ``[]``).
    """
    return _load(path, DataItem, mapping, allow_empty=allow_empty)


def load_pairs(path: str | Path, *, mapping: Mapping[str, str] | None = None,
               allow_empty: bool = False) -> list[PairItem]:
    """Read response pairs (``response_a``/``response_b``, or ``chosen``/``rejected``) like :func:`load_items`."""
    return _load(path, PairItem, mapping, allow_empty=allow_empty, known=("chosen", "rejected"))


def load_candidates(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                    allow_empty: bool = False) -> list[CandidateSet]:
    """Read rows of candidate responses (``prompt``, ``responses``: a list) like :func:`load_items`."""
    return _load(path, CandidateSet, mapping, allow_empty=allow_empty)


def _coerce(rows: Iterable[Any], model: type[BaseModel]) -> Iterable[Any]:
    if isinstance(rows, ItemStream):
        return rows  # read from its file, already checked, as it is iterated
    if isinstance(rows, (list, tuple)):
        return [row if isinstance(row, model) else model.model_validate(row) for row in rows]
    return (row if isinstance(row, model) else model.model_validate(row) for row in rows)


def coerce_items(items: Iterable[DataItem | Mapping[str, Any]]) -> Iterable[DataItem]:
    """Rows given in code (models or dicts) as :class:`DataItem` objects: a list for a list, an
    :class:`ItemStream` as it is, and any other iterable converted as it is consumed (a generator of a million rows
    is never held whole)."""
    return _coerce(items, DataItem)


def coerce_pairs(pairs: Iterable[PairItem | Mapping[str, Any]]) -> Iterable[PairItem]:
    """Pairs given in code (models or dicts) as :class:`PairItem` objects, like :func:`coerce_items`."""
    return _coerce(pairs, PairItem)


class ItemStream:
    """The rows of a data file, checked whole when made and read again each time they are iterated.

    :func:`stream_items` and :func:`stream_pairs` make one: every problem in the file (file, line, field) is raised
    before any judge call, as with :func:`load_items`, but only the row count and the ids (for the duplicate check)
    are kept, so judging a file of any length holds a bounded number of rows in memory.
    """

    def __init__(self, path: Path, model: type[BaseModel], mapping: Mapping[str, str] | None, count: int):
        self.path = path
        """The data file."""
        self.model = model
        self.mapping = mapping
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        model, mapping = self.model, self.mapping
        for _, raw in _rows(self.path):
            if isinstance(raw, Mapping):
                yield model.model_validate(_apply_mapping(raw, mapping))


def stream_items(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                 allow_empty: bool = False) -> ItemStream:
    """:func:`load_items` for long files: the same checks and errors, rows read as they are judged."""
    return _check_file(path, DataItem, mapping, allow_empty=allow_empty)


def stream_pairs(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                 allow_empty: bool = False) -> ItemStream:
    """:func:`load_pairs` for long files (see :func:`stream_items`)."""
    return _check_file(path, PairItem, mapping, allow_empty=allow_empty, known=("chosen", "rejected"))
