"""Private utilities at the bottom of the ladder: atomic file writes and streaming readers (:mod:`.io`), the text
measures of checks and lint (:mod:`.text`), lazy package exports (:mod:`.lazy`). They import nothing of rubrickit
but :mod:`rubrickit.errors`."""
