"""``rubrickit eval`` commands (registered on the main app by :mod:`rubrickit.cli`)."""

from __future__ import annotations

from . import _render as render  # noqa: F401
from .cli import app, handled  # noqa: F401
