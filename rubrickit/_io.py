"""Small file helpers shared by every module that reads or writes user files.

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``) so a crash never leaves a
half-written rubric, and they refuse to replace an existing file unless asked.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import OutputExistsError

__all__ = ["atomic_write_text", "open_text", "iter_jsonl_lines"]


def atomic_write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (gzip-compressed when the name ends in ``.gz``).

    With ``overwrite=False`` an existing file is left untouched and :class:`OutputExistsError` is raised.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: already exists; pass --force (overwrite=True) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    if path.name.endswith(".gz"):
        # mtime=0 keeps the gzip bytes deterministic, so a re-save diffs cleanly.
        data = gzip.compress(data, mtime=0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def open_text(path: str | Path) -> IO[str]:
    """Open a text file for reading, transparently un-gzipping ``*.gz`` files."""
    path = Path(path)
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line of a (possibly gzipped) JSONL file."""
    with open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line
