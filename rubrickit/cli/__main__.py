"""``python -m rubrickit.cli``."""

from .app import main

main()
