"""``rubrickit serve`` and ``rubrickit rank`` (registered on the main app by :mod:`rubrickit.cli`)."""

from __future__ import annotations
