"""docs/cli.md is the `--help` of every command; it is checked here so the reference cannot drift.

Regenerate with: RUBRICKIT_UPDATE_DOCS=1 make test   (or run this file with that variable set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from rubrickit.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
UPDATE = bool(os.environ.get("RUBRICKIT_UPDATE_DOCS"))  # read at import: fixtures clean RUBRICKIT_* per test


def commands() -> list[list[str]]:
    """Every command and sub-command of the app, read from the app itself (so a new one cannot be left out)."""
    import typer

    def walk(group: Any, prefix: list[str]) -> list[list[str]]:
        found = []
        context = typer.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            found.append([*prefix, name])
            if hasattr(command, "list_commands"):  # a group: its sub-commands too
                found += walk(command, [*prefix, name])
        return found

    return walk(typer.main.get_command(app), [])


def render_reference() -> str:
    runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
    parts = [
        "# Command-line reference\n\n",
        "Generated from `rubrickit --help`; `tests/test_cli_reference.py` keeps it current.\n",
    ]
    for args in [[], *commands()]:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        title = "rubrickit " + " ".join(args) if args else "rubrickit"
        text = "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")
        parts.append(f"\n## `{title.strip()}`\n\n```text\n{text}\n```\n")
    return "".join(parts)


def test_cli_reference_is_current() -> None:
    text = render_reference()
    if UPDATE:
        DOC.write_text(text, encoding="utf-8")
    assert DOC.exists() and DOC.read_text(encoding="utf-8") == text, (
        "docs/cli.md is stale: run `RUBRICKIT_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/test_cli_reference.py`")


def test_the_reference_holds_every_command() -> None:
    found = commands()
    assert {"score", "compare", "eval", "report", "refine", "weight", "generate", "rank", "serve"} <= {
        c[0] for c in found}
    assert ["generate", "contrastive"] in found
    text = DOC.read_text(encoding="utf-8")
    for args in found:
        assert f"## `rubrickit {' '.join(args)}`" in text, args
