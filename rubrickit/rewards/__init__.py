"""Rubric rewards for RL training and best-of-N (DESIGN §10; docs/rl.md).

- :class:`RewardScorer` with :class:`RewardOptions`: a batch of samples → one reward per sample (failure policy,
  scale, gates, group normalisation) with :class:`RewardDetail` and :class:`RewardStats`.
- The trainer adapters in :mod:`rubrickit.integrations` (TRL, verl, OpenRLHF and the reward server) are thin
  layers over it.
"""

from __future__ import annotations

from .core import (
    RewardBatch,
    RewardDetail,
    RewardError,
    RewardOptions,
    RewardScorer,
    RewardStats,
    inline_rubric,
    load_rubrics_arg,
)

__all__ = [
    "RewardBatch",
    "RewardDetail",
    "RewardError",
    "RewardOptions",
    "RewardScorer",
    "RewardStats",
    "inline_rubric",
    "load_rubrics_arg",
]
