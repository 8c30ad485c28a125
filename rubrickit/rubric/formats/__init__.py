"""The rubric formats of the field, one module each: record-level import (``from_*``) and export (``to_*``).

File-level reading, writing, format detection and ``rubrickit convert`` live in :mod:`rubrickit.rubric.formats.convert`,
which re-exports the names below; ``docs/formats.md`` gives each mapping with examples.
"""

from __future__ import annotations

from rubrickit.rubric.formats.healthbench import from_healthbench, prompt_messages, to_healthbench
from rubrickit.rubric.formats.openrubrics import format_openrubrics, parse_openrubrics
from rubrickit.rubric.formats.prometheus import from_prometheus, to_prometheus
from rubrickit.rubric.formats.rar import from_rar, rar_row_to_rubric, rubric_to_rar_row, to_rar

__all__ = [
    "from_healthbench",
    "to_healthbench",
    "prompt_messages",
    "from_rar",
    "to_rar",
    "rar_row_to_rubric",
    "rubric_to_rar_row",
    "from_prometheus",
    "to_prometheus",
    "parse_openrubrics",
    "format_openrubrics",
]
