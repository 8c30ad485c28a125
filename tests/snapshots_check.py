"""Prompt snapshots shared by the template tests: ``tests/snapshots/<name>.txt`` holds each template's rendering.

Regenerate with ``RUBRICKIT_UPDATE_SNAPSHOTS=1 pytest tests/`` and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("RUBRICKIT_UPDATE_SNAPSHOTS") == "1"  # read at import: the env is cleaned per test


def render_messages(messages: Iterable) -> str:
    """Rendered messages as snapshot text: ``=== role ===`` then the content, per message."""
    return "".join(f"=== {m.role} ===\n{m.content}\n" for m in messages)


def check_snapshot(name: str, text: str) -> None:
    """Assert ``text`` equals the stored snapshot ``name`` (written, and the test failed, when it is missing)."""
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"snapshot {path} was missing and has been written; review it and re-run")
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from {path}; if the change is intended, re-run with RUBRICKIT_UPDATE_SNAPSHOTS=1")
