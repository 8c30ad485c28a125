"""Inputs and outputs of ``--engine ray`` on any filesystem Ray reads (``s3://``, ``gs://``, ``abfs://``, ``file://``).

- An input URI is read by Ray itself (JSONL/JSON, Parquet or CSV by its extension, in parallel on the cluster),
  ``--map`` renaming the columns; rows are validated by the actors (a bad row fails the job naming the field).
- An output URI, or a local folder (a path ending in ``/`` or an existing directory), receives one JSONL *part
  file* per block of records as it comes back (``part-<run>-<n>.jsonl``, written under a temporary name and moved
  into place, so a part is whole or absent). ``--resume`` reads the parts already there and skips their keys: the
  block-level resume of an object store, which cannot append. Parts holding records with ``error`` verdicts are
  rewritten without them (those items are judged again), as the local journal does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, RubricError, RubrickitError

__all__ = ["PartsOutput", "is_folder_output", "is_uri", "read_dataset"]


def is_uri(path: str | Path | None) -> bool:
    """Whether ``path`` names a filesystem by scheme (``s3://…``); a Windows drive is not one."""
    return path is not None and "://" in str(path)


def is_folder_output(path: str | Path | None) -> bool:
    """Whether ``--out`` is a folder of part files (a URI, a path ending in ``/``, or an existing directory)."""
    if path is None:
        return False
    text = str(path)
    return is_uri(text) or text.endswith("/") or Path(text).is_dir()


def read_dataset(ray: Any, uri: str, mapping: Mapping[str, str] | None) -> Any:
    """The rows of ``uri`` as a Ray Dataset, ``mapping`` (field → column) applied as a rename."""
    lowered = uri.lower().rstrip("/")
    if lowered.endswith(".parquet") or lowered.endswith("/parquet"):
        dataset = ray.data.read_parquet(uri)
    elif lowered.endswith(".csv"):
        dataset = ray.data.read_csv(uri)
    else:
        dataset = ray.data.read_json(uri, lines=not lowered.endswith(".json"))
    if mapping:
        dataset = dataset.rename_columns({column: field for field, column in mapping.items()})
    return dataset


def _filesystem(location: str) -> tuple[Any, str]:
    from pyarrow import fs

    if is_uri(location):
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), str(Path(location).resolve())


class PartsOutput:
    """The output folder of part files, with the interface of :class:`~rubrickit.judge.journal.Journal` that the
    Ray driver uses (``path``, ``done``, ``key``, ``append``, ``end_block``, ``resumed_records``, ``written``,
    ``redone``)."""

    def __init__(self, location: str | Path, *, resume: bool, overwrite: bool, key_fields: Sequence[str],
                 check: Callable[[dict[str, Any], int], None] | None = None,
                 redo: Callable[[dict[str, Any]], bool] | None = None):
        from pyarrow import fs

        if resume and overwrite:
            raise RubrickitError(f"{location}: pass either --resume (continue it) or --force (start over), not both.")
        self.path = str(location)
        self.key_fields = tuple(key_fields)
        self.fs, self.root = _filesystem(self.path)
        self.run = uuid.uuid4().hex[:8]
        self.done: set[tuple] = set()
        self.resumed_records: list[dict[str, Any]] = []
        self.written = 0
        self.redone = 0
        self._block: list[str] = []
        self._parts = 0
        self.fs.create_dir(self.root, recursive=True)
        parts = [info for info in self.fs.get_file_info(fs.FileSelector(self.root, allow_not_found=True))
                 if info.type == fs.FileType.File and info.base_name.startswith("part-")
                 and info.base_name.endswith(".jsonl")]
        if parts and not (resume or overwrite):
            raise OutputExistsError(f"{self.path}: already holds {len(parts)} part file(s); pass --resume to continue "
                                    "it or --force to start over.")
        for info in parts:
            if overwrite:
                self.fs.delete_file(info.path)
            else:
                self._resume_part(info.path, check, redo)

    def key(self, record: Any) -> tuple:
        from ..judge.journal import record_key

        return record_key(record, self.key_fields)

    def _resume_part(self, path: str, check: Callable[[dict[str, Any], int], None] | None,
                     redo: Callable[[dict[str, Any]], bool] | None) -> None:
        with self.fs.open_input_stream(path) as stream:
            lines = stream.read().decode("utf-8").splitlines()
        kept: list[str] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RubricError(f"{path}:{number}: not valid JSON ({error.msg}); remove the damaged part file and "
                                  "rerun with --resume (its records are judged again)") from None
            if check is not None:
                check(record, number)
            if redo is not None and redo(record):
                self.redone += 1
                continue
            kept.append(line)
            self.done.add(self.key(record))
            self.resumed_records.append(record)
        if len(kept) != len([line for line in lines if line.strip()]):
            self._put(path, kept)

    def _put(self, path: str, lines: list[str]) -> None:
        temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(temporary) as stream:
            stream.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self.fs.move(temporary, path)

    def append(self, record: Any) -> bool:
        key = self.key(record)
        if key in self.done:
            return False
        self.done.add(key)
        self._block.append(record.model_dump_json() if hasattr(record, "model_dump_json") else json.dumps(record))
        return True

    def end_block(self) -> None:
        """Write the records appended since the last block as one part file."""
        if not self._block:
            return
        self._parts += 1
        self._put(f"{self.root}/part-{self.run}-{self._parts:06d}.jsonl", self._block)
        self.written += len(self._block)
        self._block = []

    def close(self) -> None:
        self.end_block()

    def __enter__(self) -> PartsOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
