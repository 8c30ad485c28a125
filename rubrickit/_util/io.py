"""Small file helpers shared by every module that reads or writes user files.

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``) so a crash never leaves a
half-written rubric, and they refuse to replace an existing file unless asked.

Reads are bounded and fail cleanly: a file read whole stops at :data:`MAX_FILE_BYTES`, a line at
:data:`MAX_LINE_BYTES` (both counted after un-gzipping, so a small gzip bomb cannot fill memory), JSON nests at most
:data:`MAX_DEPTH` levels, and a missing file, a folder, bytes that are not UTF-8, damaged gzip data or an I/O
failure is a :class:`~rubrickit.errors.RubricError` naming the file (and the line where there is one).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rubrickit.errors import OutputExistsError, RubricError, RubrickitError

__all__ = [
    "MAX_DATA_FILE_BYTES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "atomic_write_text",
    "decode_utf8",
    "iter_jsonl_lines",
    "iter_lines",
    "loads_json",
    "nesting_depth_exceeds",
    "no_rows",
    "open_text",
    "read_text",
    "refuse_existing",
]

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 16 << 20
"""Largest file read whole (a rubric YAML/JSON file, a file of a format of the field), after un-gzipping."""

MAX_LINE_BYTES = 16 << 20
"""Longest line of a JSONL or CSV file (rubric sets, data, verdicts, records), after un-gzipping."""

MAX_DATA_FILE_BYTES = 256 << 20
"""Largest JSON-array data file (``.json``), read whole; JSONL has no total limit (it streams)."""

MAX_DEPTH = 100
"""Deepest nesting of lists and mappings accepted in any JSON or YAML input."""


def atomic_write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (gzip-compressed when the name ends in ``.gz``).

    With ``overwrite=False`` an existing file is left untouched and :class:`OutputExistsError` is raised.
    """
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    data = text.encode("utf-8")
    if path.name.endswith(".gz"):
        # mtime=0 keeps the gzip bytes deterministic, so a re-save diffs cleanly.
        data = gzip.compress(data, mtime=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RubrickitError(f"{path}: cannot write it ({exc.strerror or exc}); check the folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a read-only folder
            raise RubrickitError(f"{path}: cannot write it ({exc.strerror or exc})") from None
        raise
    return path


def refuse_existing(path: str | Path, *, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false (the CLI's ``--force``); a
    folder is never replaced."""
    if Path(path).is_dir():
        raise RubrickitError(f"{path}: is a directory (folder); give a file name for the output")
    if not overwrite and Path(path).exists():
        raise OutputExistsError(f"{path}: already exists; pass --force (overwrite=True) to replace it.")


def open_text(path: str | Path) -> IO[str]:
    """Open a text file for reading, transparently un-gzipping ``*.gz`` files."""
    path = Path(path)
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and limit % (1 << 20) == 0 else f"{limit} bytes"


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise RubricError.at(path, None, None, "no such file; check the path")
    if path.is_dir():
        raise RubricError.at(path, None, None, "is a directory (folder), not a file; give a file inside it")


def _stream_error(path: Path, line: int | None, exc: BaseException) -> RubricError:
    """A located error for a failure while reading (gzip damage, I/O); ``exc`` is not a user-caused bug."""
    if isinstance(exc, gzip.BadGzipFile) and str(exc).startswith("Not a gzipped file") and (line or 1) == 1:
        return RubricError.at(path, None, None, f"not gzip data ({exc}); drop the .gz from the name if the file is "
                              "not compressed")
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return RubricError.at(path, line, None, f"the gzip data is corrupt or cut short ({exc}); re-create or "
                              "re-download the file")
    if isinstance(exc, PermissionError):
        return RubricError.at(path, None, None, "cannot read it (permission denied); check the file's permissions")
    return RubricError.at(path, line, None, f"cannot read it ({exc})")


_READ_ERRORS = (OSError, EOFError, zlib.error)


def _open_binary(path: Path) -> IO[bytes]:
    _check_readable(path)
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    except _READ_ERRORS as exc:
        raise _stream_error(path, None, exc) from None


def decode_utf8(data: bytes, path: str | Path, first_line: int = 1) -> str:
    """``data`` as text; bytes that are not UTF-8 raise :class:`RubricError` naming the line (a BOM is dropped)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        hint = "save the file as UTF-8"
        if first_line == 1 and data[:2] == b"\x1f\x8b":
            hint = "this is gzip data: name the file *.gz"
        raise RubricError.at(path, line, None, f"not UTF-8 text ({exc.reason} at column {column}); {hint}") from None
    return text[1:] if first_line == 1 and text.startswith("\ufeff") else text


def read_text(path: str | Path, *, limit: int | None = None) -> str:
    """A whole (possibly gzipped) UTF-8 file as text, refusing more than ``limit`` bytes (default
    :data:`MAX_FILE_BYTES`) before reading further; every failure is a :class:`RubricError` naming the file."""
    path = Path(path)
    limit = MAX_FILE_BYTES if limit is None else limit
    with _open_binary(path) as fh:
        try:
            data = fh.read(limit + 1)
        except _READ_ERRORS as exc:
            raise _stream_error(path, None, exc) from None
    if len(data) > limit:
        unzipped = " (once un-gzipped)" if path.name.endswith(".gz") else ""
        raise RubricError.at(path, None, None, f"larger than the {_size(limit)} limit for this kind of file{unzipped}; "
                             "split it into smaller files")
    return decode_utf8(data, path)


def iter_lines(path: str | Path, *, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of a (possibly gzipped) UTF-8 file, blank ones included.

    A line longer than ``limit`` bytes (default :data:`MAX_LINE_BYTES`) is refused without being read whole; bad
    bytes, damaged gzip data and I/O failures are :class:`RubricError` naming the file and line.
    """
    path = Path(path)
    limit = MAX_LINE_BYTES if limit is None else limit
    with _open_binary(path) as fh:
        number = 0
        while True:
            number += 1
            try:
                raw = fh.readline(limit + 1)
            except _READ_ERRORS as exc:
                raise _stream_error(path, number, exc) from None
            if not raw:
                return
            if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
                raise RubricError.at(path, number, None, f"the line is longer than {_size(limit)} (the limit for "
                                     "one line); shorten or split that row")
            yield number, decode_utf8(raw, path, number)


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line of a (possibly gzipped) JSONL file (see
    :func:`iter_lines` for the limits and errors)."""
    for number, line in iter_lines(path):
        if line.strip():
            yield number, line


def nesting_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether lists/dicts in ``value`` nest more than ``limit`` levels deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads_json(text: str) -> Any:
    """``json.loads`` whose only error is :class:`json.JSONDecodeError`: also for nesting deeper than
    :data:`MAX_DEPTH` and for numbers Python will not convert (over 4,300 digits), which would otherwise escape as
    ``RecursionError``/``ValueError``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError(f"nested more than {MAX_DEPTH} levels deep", text, 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc).split(";")[0], text, 0) from None
    if nesting_depth_exceeds(value, MAX_DEPTH):
        raise json.JSONDecodeError(f"nested more than {MAX_DEPTH} levels deep", text, 0)
    return value


def no_rows(path: str | Path, *, allow_empty: bool) -> None:
    """An input file held no rows: a :class:`RubricError` naming it, or with ``allow_empty`` a logged warning."""
    if not allow_empty:
        raise RubricError(f"no rows in {path}; give a file with at least one row, or pass --allow-empty "
                          "(allow_empty=True) to accept an empty input and do nothing")
    logger.warning("warning: no rows in %s; nothing to do", path)


def default_cache_dir() -> Path:
    """``$RUBRICKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/rubrickit``, else ``~/.cache/rubrickit``."""
    override = os.environ.get("RUBRICKIT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "rubrickit"
    return Path.home() / ".cache" / "rubrickit"
