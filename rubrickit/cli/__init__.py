"""The ``rubrickit`` command line (the top of the ladder): it only calls the public API.

:mod:`.app` creates the typer app and registers the command groups, one module each (:mod:`.rubrics`,
:mod:`.scoring`, :mod:`.generate`, :mod:`.refine`, :mod:`.eval`, :mod:`.rl`); :mod:`.options` defines every
shared option once; :mod:`.render` (with :mod:`.render_eval`, :mod:`.render_refine`) is all the output.
"""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
