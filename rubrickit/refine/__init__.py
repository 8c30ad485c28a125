"""Refinement: filters, coding-rate selection, Theme-Tips structuring and weighting (DESIGN §8)."""

from __future__ import annotations

from .selection import Selection, coding_rate, greedy_coding_rate
from .whiten import whitened_weights

__all__ = ["Selection", "coding_rate", "greedy_coding_rate", "whitened_weights"]
