"""Reading and writing rubric files: YAML rubrics, JSON rubrics and JSONL rubric sets.

Loading reports every problem with file, line and field path
(``support.yaml:14: criteria[1].weight: expected a number, got 'high'``). Saving is deterministic (field order,
quoting, integral weights written as integers) and atomic, so a regenerated rubric diffs cleanly in git and a
crash never leaves half a file.

Parsing YAML with the line of every key and turning validation errors into located messages is
:mod:`rubrickit.rubric.validation`; :func:`describe_error` and :func:`validation_problems` are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from rubrickit._util.io import atomic_write_text, iter_jsonl_lines, loads_json, read_text
from rubrickit.errors import RubricError, RubrickitError, format_location
from rubrickit.rubric.model import Rubric
from rubrickit.rubric.validation import Path_, _Located, _validate, _yaml_located, describe_error, validation_problems

__all__ = [
    "RubricSet",
    "SCHEMA_FILENAME",
    "RUBRIC_SUFFIXES",
    "is_rubric_set_path",
    "load_rubric",
    "load_rubric_set",
    "load_rubrics",
    "parse_rubric",
    "dump_rubric_yaml",
    "dump_rubric_json",
    "save_rubric",
    "save_rubric_set",
    "rubric_json_schema",
    "write_schema",
    "validation_problems",
    "describe_error",
]

SCHEMA_FILENAME = "rubric.schema.json"
"""Name of the JSON Schema file written beside saved YAML rubrics for editor validation."""

SCHEMA_COMMENT = f"# yaml-language-server: $schema={SCHEMA_FILENAME}\n"
MAX_PROBLEMS = 50


# --------------------------------------------------------------------------- loading


def parse_rubric(text: str, file: Path_ | None = None) -> Rubric:
    """Parse one rubric from YAML (or JSON, a subset of YAML) text; errors name ``file`` and lines."""
    return _validate(_yaml_located(text, file), file)


def load_rubric(path: Path_) -> Rubric:
    """Load one rubric from a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    if is_rubric_set_path(path):
        raise RubricError.at(path, None, None, "this is a rubric set (JSONL); use load_rubric_set or load_rubrics")
    return parse_rubric(read_text(path), path)


class RubricSet:
    """Many prompt-specific rubrics, one per ``prompt_id`` (the JSONL rubric-set format)."""

    def __init__(self, rubrics: Iterable[Rubric] = ()):
        self.rubrics: list[Rubric] = []
        self._by_prompt: dict[str, Rubric] = {}
        for rubric in rubrics:
            self.add(rubric)

    def add(self, rubric: Rubric) -> None:
        """Add a rubric; its ``prompt_id`` must be set and not already present."""
        if not rubric.prompt_id:
            raise RubricError(f"rubric {rubric.id!r}: prompt_id: missing; every rubric in a set needs one")
        if rubric.prompt_id in self._by_prompt:
            raise RubricError(f"rubric {rubric.id!r}: prompt_id: {rubric.prompt_id!r} appears twice in the set")
        self.rubrics.append(rubric)
        self._by_prompt[rubric.prompt_id] = rubric

    def for_prompt(self, prompt_id: str) -> Rubric:
        """The rubric for a data row's ``prompt_id`` (``LookupError`` when the set has none)."""
        try:
            return self._by_prompt[prompt_id]
        except KeyError:
            raise LookupError(f"the rubric set has no rubric for prompt_id {prompt_id!r}") from None

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._by_prompt

    def __iter__(self) -> Iterator[Rubric]:
        return iter(self.rubrics)

    def __len__(self) -> int:
        return len(self.rubrics)


def is_rubric_set_path(path: Path_) -> bool:
    """True for ``*.jsonl`` and ``*.jsonl.gz`` paths (rubric sets)."""
    name = Path(path).name.lower()
    return name.endswith(".jsonl") or name.endswith(".jsonl.gz")


def load_rubric_set(path: Path_) -> RubricSet:
    """Load a JSONL rubric set (optionally gzipped); every problem names its line.

    Lines longer than :data:`~rubrickit._io.MAX_LINE_BYTES` and nesting deeper than
    :data:`~rubrickit._io.MAX_DEPTH` are refused (the set itself may be any size: it is read line by line).
    """
    path = Path(path)
    problems: list[str] = []
    rubrics = RubricSet()
    first_line: dict[str, int] = {}
    try:
        for number, text in iter_jsonl_lines(path):
            rubric = _parse_set_line(text, path, number, problems)
            if rubric is None:
                continue
            if not rubric.prompt_id:
                problems.append(format_location(path, number, "prompt_id", "missing; every rubric in a set needs the "
                                                "prompt_id of the data rows it scores"))
            elif rubric.prompt_id in first_line:
                problems.append(format_location(path, number, "prompt_id", f"{rubric.prompt_id!r} already has a "
                                                f"rubric on line {first_line[rubric.prompt_id]}"))
            else:
                first_line[rubric.prompt_id] = number
                rubrics.add(rubric)
            if len(problems) >= MAX_PROBLEMS:
                problems.append(f"{path}: stopping after {MAX_PROBLEMS} problems")
                break
    except FileNotFoundError:
        raise RubricError.at(path, None, None, "no such file") from None
    if problems:
        raise RubricError(problems)
    return rubrics


def _parse_set_line(text: str, path: Path, number: int, problems: list[str]) -> Rubric | None:
    try:
        data = loads_json(text)
    except json.JSONDecodeError as exc:
        problems.append(format_location(path, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"))
        return None
    try:
        return _validate(_Located(data, {}), path, number)
    except RubricError as exc:
        problems.extend(exc.problems)
        return None


def load_rubrics(path: Path_) -> list[Rubric]:
    """Load a YAML/JSON rubric or a JSONL rubric set as a list of rubrics."""
    if is_rubric_set_path(path):
        return list(load_rubric_set(path))
    return [load_rubric(path)]


# --------------------------------------------------------------------------- saving


class _Dumper(yaml.SafeDumper):
    """Deterministic YAML: integral floats as integers, multi-line text as literal blocks, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_float(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    if value.is_integer() and abs(value) < 1e15:
        return dumper.represent_int(int(value))
    return dumper.represent_float(value)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_Dumper.add_representer(float, _represent_float)
_Dumper.add_representer(str, _represent_str)


def _plain(rubric: Rubric) -> dict[str, Any]:
    """The rubric as plain data in field order, defaults left out (the format version always written)."""
    data = rubric.model_dump(mode="python", exclude_defaults=True, exclude={"criteria", "provenance"})
    out: dict[str, Any] = {"rubrickit": rubric.rubrickit, **data}
    criteria = []
    for criterion in rubric.criteria:
        item = criterion.model_dump(mode="python", exclude_defaults=True, exclude={"check"})
        if criterion.check is not None:
            # Check parameters are written in full so a file states exactly what is tested.
            item["check"] = criterion.check.model_dump(mode="json", exclude_none=True)
        criteria.append(item)
    out["criteria"] = criteria
    if rubric.provenance is not None:
        provenance = rubric.provenance.model_dump(mode="json", exclude_defaults=True)
        if provenance:
            out["provenance"] = provenance
    return out


def dump_rubric_yaml(rubric: Rubric, *, schema_comment: bool = True) -> str:
    """The rubric as deterministic YAML text (optionally with the ``yaml-language-server`` schema comment)."""
    body = yaml.dump(
        _plain(rubric), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
        width=1_000_000, indent=2,
    )
    return (SCHEMA_COMMENT if schema_comment else "") + body


def dump_rubric_json(rubric: Rubric) -> str:
    """The rubric as one compact, deterministic JSON line (the rubric-set line format)."""

    def default(value: Any) -> Any:
        raise TypeError(f"cannot write {type(value).__name__} to JSON")

    data = _plain(rubric)
    for criterion in data["criteria"]:
        if "scale" in criterion:
            criterion["scale"] = {str(k): v for k, v in criterion["scale"].items()}
        if "weight" in criterion and float(criterion["weight"]).is_integer():
            criterion["weight"] = int(criterion["weight"])  # as in YAML: 8, not 8.0
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=default, allow_nan=False)


def save_rubric(rubric: Rubric, path: Path_, *, overwrite: bool = True, schema_file: bool = True) -> Path:
    """Save one rubric atomically as YAML (or JSON for ``*.json``).

    YAML starts with a ``yaml-language-server`` comment naming ``rubric.schema.json``; with ``schema_file`` that
    schema is written (or refreshed) beside the file so editors validate and autocomplete it.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        return atomic_write_text(path, json.dumps(json.loads(dump_rubric_json(rubric)), ensure_ascii=False,
                                                  indent=2) + "\n", overwrite=overwrite)
    written = atomic_write_text(path, dump_rubric_yaml(rubric), overwrite=overwrite)
    if schema_file:
        write_schema(path.parent / SCHEMA_FILENAME, only_if_changed=True)
    return written


def save_rubric_set(rubrics: Iterable[Rubric], path: Path_, *, overwrite: bool = True) -> Path:
    """Save rubrics as a JSONL rubric set (gzipped for ``*.gz``) atomically; each needs a unique ``prompt_id``."""
    checked = RubricSet(rubrics)
    text = "".join(dump_rubric_json(r) + "\n" for r in checked)
    return atomic_write_text(path, text, overwrite=overwrite)


def rubric_json_schema() -> dict[str, Any]:
    """The JSON Schema of the rubric file format (field docstrings become descriptions)."""
    schema = Rubric.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "rubrickit-rubric-v1.schema.json"
    return schema


def write_schema(path: Path_, *, only_if_changed: bool = False, overwrite: bool = True) -> Path:
    """Write the rubric JSON Schema to ``path`` (atomic; with ``only_if_changed`` an identical file is kept; an
    existing file is replaced only with ``overwrite``)."""
    path = Path(path)
    text = json.dumps(rubric_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if only_if_changed and path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return path
    return atomic_write_text(path, text, overwrite=overwrite)


def model_to_jsonl(models: Iterable[BaseModel]) -> str:
    """Compact JSONL of pydantic models, one per line (used for score records and verdict rows)."""
    return "".join(m.model_dump_json() + "\n" for m in models)


def criterion_lines(path: Path_) -> dict[tuple[str, str], int]:
    """Map ``(rubric_id, criterion_id)`` to the line where the criterion starts (the rubric's line in a JSONL set).

    For reports that point at a criterion (lint, diff); the file is assumed to load (see :func:`load_rubrics`).
    """
    path = Path(path)
    out: dict[tuple[str, str], int] = {}
    if is_rubric_set_path(path):
        for number, text in iter_jsonl_lines(path):
            data = loads_json(text)
            for criterion in data.get("criteria", []):
                out[(data.get("id"), criterion.get("id"))] = number
        return out
    located = _yaml_located(read_text(path), path)
    data = located.data
    for index, criterion in enumerate(data.get("criteria", [])):
        line = located.line_of(("criteria", index))
        if isinstance(criterion, dict) and line is not None:
            out[(data.get("id"), criterion.get("id"))] = line
    return out


__all__ += ["criterion_lines", "model_to_jsonl"]


RUBRIC_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".jsonl.gz")


def iter_rubric_files(paths: Iterable[Path_]) -> Iterator[Path]:
    """Expand files and directories (recursively, sorted) into rubric files; ``*.schema.json`` is skipped.

    A file named explicitly is yielded whatever its suffix, so a typo surfaces as a load error, not silence.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                name = child.name.lower()
                if child.is_file() and name.endswith(RUBRIC_SUFFIXES) and not name.endswith(".schema.json"):
                    yield child
        else:
            yield path


class FileReport(BaseModel):
    """The outcome of validating one file: how many rubrics and criteria it holds, or its problems."""

    path: str
    """The file."""
    rubrics: int = 0
    """Rubrics loaded."""
    criteria: int = 0
    """Criteria loaded, over all rubrics."""
    problems: list[str] = []
    """Formatted problems (``file:line: field: message``); empty when the file is valid."""


def validate_paths(paths: Iterable[Path_]) -> list[FileReport]:
    """Load every rubric file under ``paths`` and report per file (never raises for a bad file)."""
    reports = []
    for path in iter_rubric_files(paths):
        try:
            rubrics = load_rubrics(path)
        except RubrickitError as exc:  # a bad file is reported and the next one checked
            problems = exc.problems if isinstance(exc, RubricError) else [f"{path}: {exc}"]
            reports.append(FileReport(path=str(path), problems=problems))
            continue
        reports.append(FileReport(path=str(path), rubrics=len(rubrics), criteria=sum(len(r.criteria) for r in rubrics)))
    return reports


__all__ += ["FileReport", "iter_rubric_files", "validate_paths"]
