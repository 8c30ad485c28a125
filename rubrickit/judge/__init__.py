"""The judge engine: rubrics × responses → tasks → prompts → backend → verdicts → score records (DESIGN §5).

- :class:`Judge` with :class:`JudgeOptions`: ``ascore``/``score``, ``ascore_many``/``score_many`` (streaming),
  ``acompare``/``compare``, ``acompare_many``/``compare_many``, ``plan`` (dry run).
- :class:`DataItem`, :class:`PairItem`, :func:`load_items`, :func:`load_pairs`: the data judged.
- :class:`PairRecord`: the result of a comparison.
- :func:`score_files`, :func:`compare_files`: what ``rubrickit score`` and ``rubrickit compare`` run.
- Building blocks: :class:`PromptLibrary` (templates), :mod:`.parse` (reply parsing), :class:`JudgeCache`,
  :class:`Journal`, :class:`RateLimiter`, :class:`RetryPolicy`, :class:`Accounting`, :class:`Plan`.

docs/judging.md describes the modes, prompts, failure semantics, caching and pairwise comparison.
"""

from __future__ import annotations

from rubrickit.data.items import ChatMessage, DataItem, PairItem, load_items, load_pairs

from .accounting import Accounting, Plan
from .cache import JudgeCache, default_cache_dir
from .engine import Judge, JudgeModeError, JudgeOptions, set_run_announcer
from .journal import Journal
from .limits import RateLimiter
from .pairwise import PairDetail, PairRecord
from .parse import ParseError
from .prompts import PromptLibrary
from .retry import RetryPolicy
from .run import RunResult, compare_files, score_files

__all__ = [
    "set_run_announcer",
    "Accounting",
    "ChatMessage",
    "DataItem",
    "Journal",
    "Judge",
    "JudgeCache",
    "JudgeModeError",
    "JudgeOptions",
    "PairDetail",
    "PairItem",
    "PairRecord",
    "ParseError",
    "Plan",
    "PromptLibrary",
    "RateLimiter",
    "RetryPolicy",
    "RunResult",
    "compare_files",
    "default_cache_dir",
    "load_items",
    "load_pairs",
    "score_files",
]
