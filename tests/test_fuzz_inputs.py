"""Fuzzing the loaders: whatever the bytes, only :class:`~rubrickit.errors.RubrickitError` subclasses escape, in
bounded time (hypothesis deadlines) and memory (the input limits of :mod:`rubrickit._io`).

The strategies mix random bytes with structured near-misses (YAML/JSON made of the format's own keys, anchors and
aliases, tags, deep brackets, long digit runs, gzip streams cut short), so the fuzzer reaches the validators and not
only the parsers. The hand-made nasty cases live in ``tests/data/hostile`` (see ``test_hostile_inputs.py``).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rubrickit.data.items import load_items, load_pairs
from rubrickit.data.preferences import load_groups
from rubrickit.errors import RubrickitError
from rubrickit.rubric.files import load_rubric, load_rubric_set, parse_rubric

# Deterministic and quick by default; RUBRICKIT_FUZZ_EXAMPLES=5000 fuzzes deeper with fresh random examples (read at
# import: the test fixtures clean RUBRICKIT_* variables).
DEEP = int(os.environ.get("RUBRICKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=DEEP or 120, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                database=None, derandomize=not DEEP)

KEYS = ["rubrickit", "id", "version", "title", "scope", "prompt_id", "aggregation", "gates", "criteria", "text",
        "kind", "weight", "category", "tags", "check", "type", "value", "scale", "applies_if", "provenance",
        "method", "prompt", "response", "response_a", "response_b", "label", "reference", "meta", "chosen",
        "rejected", "responses", "ranking", "ranked", "subset", "refrence", "promt_id", "role", "content"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["met", "hard", "principle", "max_words", "weighted_mean", "A", "B", "tie",
                                           "user", "assistant", "-5", "1e309", "9" * 5000]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)),
    max_leaves=25,
)
ROWS = st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=7)
YAML_TOKENS = st.sampled_from([
    *[f"{k}: " for k in KEYS], "- ", "  ", "\n", "\n  - ", "[", "]", "{", "}", ", ", ": ", "&a ", "*a", "&b ",
    "*b", "<<: *a", "!!python/object:os.system ", "!!binary ", "!!timestamp 2020-13-45", "!!int ", "!!float ",
    "!!set ", "!!omap ", "? ", "'", '"', "|\n  ", ">\n  ", "#", "---\n", "...\n", "%YAML 1.1\n", "9" * 5000,
    "1: ", "-1: ", "²: ", "\t", "\ufeff", "\x00", "é", "[" * 200, "{a: " * 200,
])
YAML_TEXT = st.one_of(st.text(max_size=300), st.lists(YAML_TOKENS | st.text(max_size=6), max_size=60).map("".join))


def _yaml_of(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True)


def _corrupt(data: bytes, cut: int, flip: int) -> bytes:
    """``data`` cut short and with one byte flipped (positions taken modulo the length)."""
    if not data:
        return data
    out = bytearray(data[: max(1, cut % (len(data) + 1))])
    if out:
        out[flip % len(out)] ^= 0xFF
    return bytes(out)


GZIP_BYTES = st.one_of(
    st.binary(max_size=200),
    st.lists(ROWS, max_size=4).map(lambda rows: gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())),
    st.tuples(st.lists(ROWS, min_size=1, max_size=4), st.integers(0, 10_000), st.integers(0, 10_000)).map(
        lambda t: _corrupt(gzip.compress("".join(json.dumps(r) + "\n" for r in t[0]).encode()), t[1], t[2])),
)
JSONL_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(ROWS | JSON_VALUES, max_size=5).map(lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()),
    st.lists(st.sampled_from(['{"prompt": "p", "response": "r"}', '{"id": 1}', "[" * 3000 + "]" * 3000,
                              '{"id": ' + "9" * 5000 + "}", "\xff\xfe", "{", "", "null", '"x"', "\ufeff{}"]),
             max_size=5).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
)
CSV_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.lists(st.sampled_from(["prompt", "response", "response_a", "response_b", "label", "id", "Reference",
                                       '"', '""', "\x00", "a,b", "\n", '[{"role": "user", "content": "x"}]', "é",
                                       "[" * 100, "refrence"]) | st.text(max_size=8), max_size=5), max_size=5)
    .map(lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")),
)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def only_rubrickit_errors(call: Callable[[], Any]) -> None:
    try:
        call()
    except RubrickitError:
        pass


# --------------------------------------------------------------------------- rubric files


@FUZZ
@given(YAML_TEXT)
def test_rubric_yaml_text(text: str) -> None:
    only_rubrickit_errors(lambda: parse_rubric(text, "fuzz.yaml"))


@FUZZ
@given(st.one_of(JSON_VALUES.map(_yaml_of), ROWS.map(_yaml_of), ROWS.map(json.dumps)))
def test_rubric_structured_yaml(text: str) -> None:
    only_rubrickit_errors(lambda: parse_rubric(text, "fuzz.yaml"))


@FUZZ
@given(st.binary(max_size=400) | YAML_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
       st.sampled_from(["r.yaml", "r.json", "r.yaml.gz"]))
def test_rubric_file_bytes(folder: Path, data: bytes, name: str) -> None:
    path = folder / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") and data[:1] != b"\x1f" else data)
    only_rubrickit_errors(lambda: load_rubric(path))


# --------------------------------------------------------------------------- rubric sets


@FUZZ
@given(JSONL_BYTES)
def test_rubric_set_jsonl_bytes(folder: Path, data: bytes) -> None:
    path = folder / "set.rubrics.jsonl"
    path.write_bytes(data)
    only_rubrickit_errors(lambda: load_rubric_set(path))


@FUZZ
@given(GZIP_BYTES)
def test_rubric_set_gzip_bytes(folder: Path, data: bytes) -> None:
    path = folder / "set.rubrics.jsonl.gz"
    path.write_bytes(data)
    only_rubrickit_errors(lambda: load_rubric_set(path))


# --------------------------------------------------------------------------- data files


LOADERS = [load_items, load_pairs, load_groups]


@FUZZ
@given(JSONL_BYTES, st.sampled_from(LOADERS), st.booleans())
def test_data_jsonl_bytes(folder: Path, data: bytes, loader: Callable[..., Any], allow_empty: bool) -> None:
    path = folder / "data.jsonl"
    path.write_bytes(data)
    only_rubrickit_errors(lambda: loader(path, allow_empty=allow_empty))


@FUZZ
@given(GZIP_BYTES, st.sampled_from(LOADERS))
def test_data_gzip_bytes(folder: Path, data: bytes, loader: Callable[..., Any]) -> None:
    path = folder / "data.jsonl.gz"
    path.write_bytes(data)
    only_rubrickit_errors(lambda: loader(path))


@FUZZ
@given(CSV_BYTES, st.sampled_from(LOADERS))
def test_data_csv_bytes(folder: Path, data: bytes, loader: Callable[..., Any]) -> None:
    path = folder / "data.csv"
    path.write_bytes(data)
    only_rubrickit_errors(lambda: loader(path))


@FUZZ
@given(st.one_of(st.lists(ROWS, max_size=4).map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=100)),
       st.sampled_from(LOADERS))
def test_data_json_array(folder: Path, text: str, loader: Callable[..., Any]) -> None:
    path = folder / "data.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_rubrickit_errors(lambda: loader(path))
