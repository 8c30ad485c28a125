"""The persistent judge cache: one SQLite file of completions keyed by a content hash of the request.

The key is the SHA-256 of the canonical JSON of (cache format version, the judge's *identity*, the whole
:class:`~rubrickit.backends.base.CompletionRequest` — rendered messages, max_tokens, temperature, seed, json_schema,
choices, logprobs — and a caller's salt). The identity (:func:`cache_identity`) is the backend spec, the backend kind,
the endpoint the backend talks to (its base URL without credentials: two servers that serve the same model name
never read each other's answers) and a hash of the prompt templates in use. Anything that could change the answer
changes the key; a re-run of a finished job is answered entirely from the cache. ``--repeat N`` passes a different
salt per repeat.

Older caches: the format version is stored in the file; a file written under an older version (whose keys did
not name the endpoint) has its entries removed when it is first opened, so no answer from another server can be
served. Nothing else in the file is touched.

Stored per row: the key, the backend spec and the completion's JSON, and the time it was written. Never an API key:
neither the spec nor the request carries one, and the prompt is not stored at all (only its hash).

The file is ``<directory>/judge-cache.sqlite3`` in WAL mode, created on first use; by default the directory is
``$RUBRICKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/rubrickit``, else ``~/.cache/rubrickit``. Delete the file (or call
:meth:`JudgeCache.clear`) to empty it. A database that cannot be opened, is corrupt or stays locked turns the cache
off for the rest of the run with one logged warning; the run goes on without caching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rubrickit._util.io import default_cache_dir
from rubrickit.backends._redact import endpoint_identity

from ..backends.base import Completion, CompletionRequest

__all__ = ["CACHE_FILENAME", "CACHE_FORMAT_VERSION", "JudgeCache", "cache_identity", "default_cache_dir",
           "endpoint_identity", "templates_hash"]

CACHE_FORMAT_VERSION = 2
"""Part of every key: bump it when the meaning of a cached completion changes, and old entries stop matching.
2: keys name the endpoint and the prompt templates (1 named only the spec)."""

CACHE_FILENAME = "judge-cache.sqlite3"
"""The database's file name inside the cache directory."""

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

def templates_hash(templates_dir: Path | str | None = None) -> str:
    """SHA-256 over every prompt template in use: the shipped ones, with ``templates_dir``'s overrides on top."""
    from .prompts import package_templates_dir

    sources: dict[str, bytes] = {}
    for folder in (package_templates_dir(), Path(templates_dir) if templates_dir is not None else None):
        if folder is None or not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.endswith(".j2") and entry.is_file():
                sources[entry.name] = entry.read_bytes()
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(sources[name]).digest())
    return digest.hexdigest()


def cache_identity(backend: Any, templates: str = "") -> str:
    """What identifies the judge behind a cached answer: spec, backend kind, endpoint and templates hash.

    The endpoint is the backend's ``cache_endpoint`` (a server's base URL, without credentials; ``None`` for
    in-process models and providers' default endpoints)."""
    spec = str(getattr(backend, "spec", backend))
    endpoint = endpoint_identity(getattr(backend, "cache_endpoint", None))
    payload = {"spec": spec, "kind": spec.partition(":")[0], "endpoint": endpoint, "templates": templates}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


class JudgeCache:
    """Completions by content-hashed request, in a SQLite file; safe to share between tasks of one event loop."""

    def __init__(self, directory: Path | str, *, timeout: float = 5.0):
        self.path = Path(directory) / CACHE_FILENAME
        """The SQLite file (created on first use)."""
        self.timeout = timeout
        """Seconds to wait for another process's write lock before giving up on the cache."""
        self.hits = 0
        """Lookups answered from the cache."""
        self.misses = 0
        """Lookups that found nothing (including every lookup after the cache was disabled)."""
        self.disabled = False
        """Set when the database proved unusable; the cache then answers nothing and stores nothing."""
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @staticmethod
    def key(identity: str, request: CompletionRequest, *, salt: str = "") -> str:
        """SHA-256 hex digest of the canonical JSON of (format version, judge identity, request, salt).

        ``identity`` is :func:`cache_identity` of the backend (a bare spec string works, for tools without one)."""
        payload = [CACHE_FORMAT_VERSION, identity, request.model_dump(mode="json"), salt]
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        """The cached completion for ``key``, or ``None`` (counted in :attr:`hits` / :attr:`misses`)."""
        with self._lock:
            row = self._execute("SELECT completion FROM completions WHERE key = ?", (key,), fetch=True)
            completion = None
            if row is not None:
                try:
                    completion = Completion.model_validate_json(row[0])
                except ValidationError:
                    # Written by an incompatible version: a miss; the fresh answer overwrites it.
                    completion = None
            if completion is None:
                self.misses += 1
            else:
                self.hits += 1
        return completion

    def put(self, key: str, completion: Completion, *, spec: str = "") -> None:
        """Store ``completion`` under ``key`` (replacing what was there); ``spec`` labels the row for inspection."""
        with self._lock:
            self._execute(
                "INSERT OR REPLACE INTO completions (key, spec, completion, created) VALUES (?, ?, ?, ?)",
                (key, spec, completion.model_dump_json(), time.time()),
            )

    def delete(self, key: str) -> None:
        """Forget the entry under ``key`` (an unreadable reply: the next run asks again)."""
        with self._lock:
            self._execute("DELETE FROM completions WHERE key = ?", (key,))

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        with self._lock:
            row = self._execute("SELECT COUNT(*) FROM completions", (), fetch=True)
            self._execute("DELETE FROM completions", ())
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        """Close the database (a later lookup opens it again)."""
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.close()
                except sqlite3.Error:
                    pass
                self._connection = None

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a killed process; only a power cut may lose the last few entries.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Remove the entries of an older format (their keys could match another endpoint's answer).

        The format is read under the write lock (``BEGIN IMMEDIATE``): a process that opens the file while another
        migrates it waits, then sees the new format, and never deletes the entries the other has just written."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            version = int(row[0]) if row is not None and str(row[0]).isdigit() else 1
            removed = 0
            if version < CACHE_FORMAT_VERSION:  # a newer rubrickit's file (keys never match ours) is left as it is
                removed = connection.execute("DELETE FROM completions").rowcount
                connection.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('format', ?)",
                                   (str(CACHE_FORMAT_VERSION),))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        if removed:
            logger.info("judge cache %s: removed %d entries of cache format %d (keys now name the endpoint)",
                        self.path, removed, version)

    def _execute(self, sql: str, params: tuple[object, ...], *, fetch: bool = False) -> tuple[object, ...] | None:
        """Run one statement (autocommit); on any database failure disable the cache and return ``None``."""
        if self.disabled:
            return None
        try:
            if self._connection is None:
                self._connection = self._connect()
            cursor = self._connection.execute(sql, params)
            return cursor.fetchone() if fetch else None
        except (sqlite3.Error, OSError) as error:
            self._disable(error)
            return None

    def _disable(self, error: BaseException) -> None:
        self.disabled = True
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None
        logger.warning(
            "judge cache %s is unusable (%s: %s); continuing without caching. Delete the file to start a fresh "
            "cache, or pass --no-cache (score, compare and eval).",
            self.path,
            type(error).__name__,
            error,
        )
