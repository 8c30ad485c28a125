"""The results journal: records appended to the output JSONL as they finish, so a killed run loses nothing.

Each :meth:`Journal.append` writes one JSON line with a single ``write`` to a file opened in append mode, then
fsyncs it: once ``append`` returns, the record survives the process being killed (and, with the fsync, the
machine losing power). A re-run with ``resume=True`` reads the records already there, exposes their keys in
:attr:`Journal.done` so the engine skips those tasks, and appends the rest to the same file.

On resume, records that must be made again (``redo``: the engine passes "has error verdicts", which were never
answers) are removed from the file — rewritten atomically (a temporary file, fsync'd, renamed over the old one) —
and their tasks run again, so the output holds exactly one record per key. ``check`` sees every record first and
may refuse the file (records made with another judge or another version of the rubric), before anything changes.

A kill can land in the middle of a write and leave a *torn* last line with no newline. On resume that fragment is
cut off (``truncated_bytes`` says how much; the task it belonged to is simply run again). An unparseable line
anywhere else means the file was damaged by something else, and is reported with its line number rather than
silently dropped.

While a journal is open it holds an exclusive advisory lock (``flock``) on the file, so two runs cannot interleave
records in one output. Records are keyed by ``key_fields`` — ``(item_id, rubric_id, repeat)`` for score records,
``(pair_id, rubric_id, repeat)`` for pairwise ones; a missing ``repeat`` counts as 0.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rubrickit._util.io import iter_lines, loads_json

from ..errors import OutputExistsError, RubricError, RubrickitError

try:  # POSIX only; elsewhere journals are simply not locked.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_KEY_FIELDS", "PAIR_KEY_FIELDS", "Journal", "read_records", "record_key"]

DEFAULT_KEY_FIELDS: tuple[str, ...] = ("item_id", "rubric_id", "repeat")
"""Key of a score record."""

PAIR_KEY_FIELDS: tuple[str, ...] = ("pair_id", "rubric_id", "repeat")
"""Key of a pairwise (``compare``) record."""

logger = logging.getLogger(__name__)


def record_key(record: BaseModel | Mapping[str, Any], key_fields: Sequence[str] = DEFAULT_KEY_FIELDS) -> tuple:
    """The key of ``record``: its ``key_fields`` as strings, except ``repeat`` as an int (missing → 0).

    Raises ``ValueError`` naming the field when another key field is missing or ``repeat`` is not an integer.
    """
    parts: list[Any] = []
    for field in key_fields:
        value = record.get(field) if isinstance(record, Mapping) else getattr(record, field, None)
        if field == "repeat":
            if value is None:
                value = 0
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"'repeat' must be an integer, got {value!r}")
            try:
                parts.append(int(value))
            except ValueError:
                raise ValueError(f"'repeat' must be an integer, got {value!r}") from None
        else:
            if value is None:
                raise ValueError(f"record has no {field!r} (the journal keys records by {', '.join(key_fields)})")
            parts.append(str(value))
    return tuple(parts)


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """Every JSON object in a (possibly gzipped) JSONL file, in order; blank lines are skipped.

    A torn last line (no newline, not valid JSON: a writer killed mid-write) is ignored. Any other line that is not
    a JSON object raises :class:`~rubrickit.errors.RubricError` naming the file and line.
    """
    records: list[dict[str, Any]] = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            value = loads_json(line)
        except json.JSONDecodeError as error:
            if not line.endswith("\n"):
                break  # torn last line
            reason = f"not valid JSON ({error.msg}, column {error.colno})"
            raise RubricError.at(path, number, None, reason) from None
        if not isinstance(value, dict):
            raise RubricError.at(path, number, None, f"expected a JSON object, got {type(value).__name__}")
        records.append(value)
    return records


class Journal:
    """Append-only, fsync'd JSONL of finished records, with resume (``path=None`` keeps no journal)."""

    def __init__(
        self,
        path: Path | str | None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        key_fields: Sequence[str] = DEFAULT_KEY_FIELDS,
        fsync: bool = True,
        check: Callable[[dict[str, Any], int], None] | None = None,
        redo: Callable[[dict[str, Any]], bool] | None = None,
    ):
        self.path = Path(path) if path is not None else None
        """The JSONL file, or ``None`` for no journal."""
        self.key_fields = tuple(key_fields)
        """The record fields that identify a finished task."""
        self.fsync = fsync
        """Whether each append is fsync'd (kill-safety needs only the write; fsync adds power-loss safety)."""
        self.done: set[tuple] = set()
        """Keys of the records finished so far (read on resume, plus those appended since)."""
        self.resumed_records: list[dict[str, Any]] = []
        """The records that were already in the file when it was resumed, in file order."""
        self.truncated_bytes = 0
        """Bytes of a torn last line cut off on resume (0 when the file ended cleanly)."""
        self.written = 0
        """Records appended by this journal."""
        self.redone = 0
        """Records removed on resume to be made again (``redo``)."""
        self._check = check
        self._redo = redo
        self._fd: int | None = None
        if self.path is None:
            return
        if resume and overwrite:
            raise RubrickitError(f"{self.path}: pass either --resume (continue it) or --force (start over), not both.")
        if self.path.name.endswith(".gz"):
            raise RubrickitError(
                f"{self.path}: results are appended as they finish, which a gzip file cannot take safely; write "
                "a .jsonl file and compress it afterwards."
            )
        if self.path.is_dir():
            raise RubrickitError(f"{self.path}: is a directory; give a file name for the results.")
        has_content = self.path.exists() and self.path.stat().st_size > 0
        if has_content and not (resume or overwrite):
            raise OutputExistsError(
                f"{self.path}: already exists; pass --resume to continue it or --force to start over."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._lock(fd)
            if overwrite:
                os.ftruncate(fd, 0)
            elif resume and has_content:
                fd = self._recover(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _lock(self, fd: int) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RubrickitError(
                f"{self.path}: another run is writing this file; wait for it to finish or choose another output."
            ) from None

    def _recover(self, fd: int) -> int:
        """Read the finished records, cutting off a torn last line and removing the records to redo; returns the
        (possibly new) locked descriptor of the file."""
        assert self.path is not None
        offset = 0
        unterminated = False
        kept: list[bytes] = []
        found: list[tuple[dict[str, Any], int]] = []
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                terminated = raw.endswith(b"\n")
                record = self._parse_line(raw, number, torn_ok=not terminated)
                if record is None and not terminated:
                    self.truncated_bytes = len(raw)
                    break
                offset += len(raw)
                if record is None:
                    continue
                if self._check is not None:
                    self._check(record, number)  # may refuse the file: nothing has been changed yet
                unterminated = not terminated
                if self._redo is not None and self._redo(record):
                    self.redone += 1
                    continue
                found.append((record, number))
                kept.append(raw if terminated else raw + b"\n")
        for record, number in found:
            self._remember(record, number)
        if self.redone:
            return self._rewrite(fd, kept)
        if unterminated:
            # Killed between the record and its newline: the record is whole; finish its line.
            self._write_all(fd, b"\n")
        if self.truncated_bytes:
            os.ftruncate(fd, offset)
            os.fsync(fd)
            logger.warning(
                "%s: cut off a torn last line (%d bytes) left by an interrupted run; its task runs again.",
                self.path,
                self.truncated_bytes,
            )
        return fd

    def _rewrite(self, fd: int, lines: list[bytes]) -> int:
        """Replace the file by ``lines`` atomically (temporary file, fsync, rename) and lock the new file."""
        assert self.path is not None
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "wb") as fh:
                fh.writelines(lines)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(temporary, 0o644)
            new_fd = os.open(temporary, os.O_RDWR | os.O_APPEND)
            try:
                self._lock(new_fd)
                os.replace(temporary, self.path)
            except BaseException:
                os.close(new_fd)
                raise
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        os.close(fd)
        logger.info("%s: removed %d record(s) with error verdicts; their items are judged again.", self.path,
                    self.redone)
        return new_fd

    def _parse_line(self, raw: bytes, number: int, *, torn_ok: bool) -> dict[str, Any] | None:
        if not raw.strip():
            return None
        try:
            value = loads_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            if torn_ok:
                return None
            reason = f"{error.msg}, column {error.colno}" if isinstance(error, json.JSONDecodeError) else "not UTF-8"
            raise RubricError.at(
                self.path,
                number,
                None,
                f"not valid JSON ({reason}); the file was changed outside rubrickit: fix or delete this line, "
                "or pass --force to start over.",
            ) from None
        if not isinstance(value, dict):
            raise RubricError.at(self.path, number, None, f"expected a JSON object, got {type(value).__name__}")
        return value

    def _remember(self, record: dict[str, Any], number: int) -> None:
        try:
            key = record_key(record, self.key_fields)
        except ValueError as error:
            raise RubricError.at(self.path, number, None, str(error)) from None
        self.done.add(key)
        self.resumed_records.append(record)

    def size(self) -> int:
        """Bytes in the file now (where this run's records start; 0 without a file)."""
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def key(self, record: BaseModel | Mapping[str, Any]) -> tuple:
        """The key of ``record`` under this journal's ``key_fields``."""
        return record_key(record, self.key_fields)

    def append(self, record: BaseModel | Mapping[str, Any]) -> bool:
        """Write ``record`` as one JSON line and fsync it; ``False`` (nothing written) when its key is already done.

        Keeping a key at most once means a resumed run can never duplicate a finished record.
        """
        key = record_key(record, self.key_fields)
        if key in self.done:
            logger.debug("journal: %r already recorded; not writing it twice", key)
            return False
        if self.path is not None:
            if self._fd is None:
                raise ValueError(f"{self.path}: the journal is closed")
            if isinstance(record, BaseModel):
                line = record.model_dump_json()
            else:
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            self._write_all(self._fd, (line + "\n").encode("utf-8"))
            if self.fsync:
                os.fsync(self._fd)
        self.done.add(key)
        self.written += 1
        return True

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def close(self) -> None:
        """Close the file and release its lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A journal dropped without close() must not keep the file locked until interpreter exit.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
