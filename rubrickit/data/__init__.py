"""The data that is judged and learned from, read with file:line:field errors (DESIGN §1).

- :mod:`.items`: responses to score (:class:`DataItem`), pairs to compare (:class:`PairItem`), candidate sets;
  JSONL/JSON/CSV/saved Hugging Face datasets, read whole or streamed;
- :mod:`.preferences`: preference data grouped by prompt for the generation methods (:class:`PromptGroup`).
"""

from __future__ import annotations

from .items import CandidateSet, ChatMessage, DataItem, PairItem, load_candidates, load_items, load_pairs, stable_id
from .preferences import Comparison, PromptGroup, file_digest, groups_from_pairs, load_groups, prompt_text

__all__ = [
    "CandidateSet",
    "ChatMessage",
    "Comparison",
    "DataItem",
    "PairItem",
    "PromptGroup",
    "file_digest",
    "groups_from_pairs",
    "load_candidates",
    "load_groups",
    "load_items",
    "load_pairs",
    "prompt_text",
    "stable_id",
]
