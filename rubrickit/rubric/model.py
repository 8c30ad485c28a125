"""Rubrics, criteria, verdicts and score records; fingerprints.

A criterion is a statement about a response. The judge only decides whether the statement *holds* (``met``); the
sign of the weight decides whether holding is good or bad, and the judge never sees weights (DESIGN §3–§4).

Reading and writing files lives in :mod:`rubrickit.rubric.files`; this module holds the models and their
semantics only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rubrickit.rubric.checks import CheckSpec

__all__ = [
    "FORMAT_VERSION",
    "Criterion",
    "Provenance",
    "Rubric",
    "Verdict",
    "VerdictRow",
    "ScoreRecord",
    "VerdictLabel",
    "criterion_fingerprint",
    "rubric_fingerprint",
]

FORMAT_VERSION = 1
"""The rubric file-format version written in the ``rubrickit:`` key of every file."""

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
"""Ids are stable slugs: letters, digits, ``_ . : -``, starting with a letter or digit."""

VerdictLabel = Literal["met", "unmet", "not_applicable", "error"]
"""The four verdicts of DESIGN §4."""

_MODEL_CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)


def _check_slug(value: str, what: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a slug; use letters, digits and '-', '_', '.', ':' "
            f"(e.g. {re.sub(r'[^A-Za-z0-9]+', '-', value).strip('-').lower() or 'my-id'!r})"
        )
    return value


class Criterion(BaseModel):
    """One criterion: a statement about a response that the judge decides holds (met) or not."""

    model_config = _MODEL_CONFIG

    id: str
    """Stable slug naming the criterion inside its rubric (kept across edits so results stay traceable)."""
    text: str = Field(min_length=1)
    """The statement the judge decides. Phrase it so that *holding* is what the weight's sign rewards or penalises."""
    kind: Literal["hard", "principle"] = "principle"
    """``hard``: an explicit constraint of the request (a gate when the rubric has ``gates: hard``: violating it —
    unmet, or met for a negative-weight "forbid" rule — vetoes the reward); ``principle``: a general quality."""
    weight: float = 1.0
    """Signed weight. Positive: holding is good. Negative: a penalty, holding is bad. Never shown to the judge."""
    category: str | None = None
    """Optional label, e.g. RaR's essential / important / optional / pitfall, or OpenRS' core / highlight."""
    tags: list[str] = Field(default_factory=list)
    """Free labels; ``axis:*`` style tags give per-tag sub-scores."""
    scale: dict[int, str] | None = None
    """Anchored levels (``{1: "Rude.", 3: "Neutral.", 5: "Warm."}``): the judge picks a level instead of met/unmet;
    the criterion contributes (level - min) / (max - min)."""
    check: CheckSpec | None = None
    """A programmatic check (``{type: max_words, value: 150}``) that decides the criterion without an LLM."""
    applies_if: str | None = None
    """A condition; when it does not hold the criterion is ``not_applicable`` and leaves the denominator."""
    source_ids: list[str] = Field(default_factory=list)
    """Ids of the criteria this one was derived from (Theme-Tips structuring, merges); not shown to the judge."""

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, value: str) -> str:
        return _check_slug(value, "criterion id")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank; write the statement the judge should decide")
        return value

    @field_validator("weight")
    @classmethod
    def _weight_finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"weight must be a finite number, got {value!r}")
        return value

    @field_validator("scale")
    @classmethod
    def _scale_levels(cls, value: dict[int, str] | None) -> dict[int, str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("scale has no levels; give at least two anchored levels, e.g. {1: Poor., 5: Excellent.}")
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _scale_or_check(self) -> Criterion:
        if self.scale is not None and self.check is not None:
            raise ValueError("a criterion has either a scale or a check, not both")
        return self

    @property
    def fingerprint(self) -> str:
        """Hash of the semantic fields (text, kind, scale, check, applies_if); weight and tags do not change it."""
        return criterion_fingerprint(self)

    @property
    def is_penalty(self) -> bool:
        """True when holding is bad (negative weight)."""
        return self.weight < 0

    def level_fraction(self, level: float) -> float:
        """Map a scale level to [0, 1]: (level - min) / (max - min); a one-level scale maps to 1."""
        if not self.scale:
            raise ValueError(f"criterion {self.id!r} has no scale")
        low, high = min(self.scale), max(self.scale)
        if high == low:
            return 1.0
        return min(1.0, max(0.0, (level - low) / (high - low)))


class Provenance(BaseModel):
    """Where a rubric came from: written by generators and refiners, kept on edit."""

    model_config = _MODEL_CONFIG

    method: str | None = None
    """The method that produced the rubric (``manual``, ``contrastive``, ``per``, ``decompose``, …)."""
    generator: str | None = None
    """Spec of the model that wrote it, e.g. ``openai:gpt-4.1-mini``."""
    judge: str | None = None
    """Spec of the judge used while generating or refining (consistency checks, satisfaction matrices)."""
    source: str | None = None
    """The source data, ideally with its hash: ``data/pairs.jsonl#sha256=…``."""
    created: str | None = None
    """Creation date (ISO 8601)."""
    converted_from: str | None = None
    """The format of the field this rubric was imported from (``healthbench``, ``rar``, ``prometheus``, …)."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """The method's parameters, as given."""
    stats: dict[str, Any] = Field(default_factory=dict)
    """The method's statistics (tries, rounds, kept/rejected counts and reasons, …)."""
    history: list[dict[str, Any]] = Field(default_factory=list)
    """Refinement steps applied after generation, oldest first, each saying what it changed and why."""


class Rubric(BaseModel):
    """A rubric: a list of criteria plus how their verdicts turn into a reward."""

    model_config = _MODEL_CONFIG

    rubrickit: Literal[1] = FORMAT_VERSION
    """File-format version."""
    id: str
    """Stable slug naming the rubric."""
    version: str | None = None
    """The rubric's own version (e.g. semver ``1.3.0``); bump it when you change criteria."""
    title: str | None = None
    """A short human title."""
    description: str | None = None
    """What the rubric is for."""
    scope: Literal["general", "prompt"] = "general"
    """``general``: applies to any prompt of its task; ``prompt``: written for one prompt (see ``prompt_id``)."""
    prompt_id: str | None = None
    """For prompt-specific rubrics: the data rows' ``prompt_id`` this rubric scores (required in rubric sets)."""
    prompt: str | None = None
    """For prompt-specific rubrics: the prompt text, for reference."""
    aggregation: Literal["weighted_mean", "points", "sum", "holistic"] = "weighted_mean"
    """How verdicts become a reward: ``weighted_mean`` (clipped to [0, 1]), ``points`` (HealthBench),
    ``sum`` (unnormalised), ``holistic`` (one 1–10 rating mapped to [0, 1])."""
    soft: bool = False
    """Use ``p_met`` (the judge's probability) instead of 0/1 where it is available."""
    raw: bool = False
    """For ``weighted_mean``: do not clip the reward to [0, 1]."""
    gates: Literal["none", "hard"] = "hard"
    """``hard``: a violated ``kind: hard`` criterion (unmet; met for a penalty) caps the reward at
    min(reward, 0) — 0 for the normalised aggregations — and is listed in ``gates_failed``; ``none``: hard criteria
    only count."""
    criteria: list[Criterion] = Field(min_length=1)
    """The criteria, in the order they are shown and judged."""
    provenance: Provenance | None = None
    """Where the rubric came from (generators and refiners write it)."""

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, value: str) -> str:
        return _check_slug(value, "rubric id")

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        seen: dict[str, int] = {}
        for index, criterion in enumerate(self.criteria):
            if criterion.id in seen:
                raise ValueError(
                    f"duplicate criterion id {criterion.id!r} (criteria[{seen[criterion.id]}] and "
                    f"criteria[{index}]); give each criterion its own id"
                )
            seen[criterion.id] = index
        return self

    @property
    def fingerprint(self) -> str:
        """Hash of every criterion's fingerprint, id and weight, and of the aggregation settings."""
        return rubric_fingerprint(self)

    def criterion(self, criterion_id: str) -> Criterion:
        """The criterion with this id (``LookupError`` naming the known ids when absent)."""
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        known = ", ".join(c.id for c in self.criteria)
        raise LookupError(f"rubric {self.id!r} has no criterion {criterion_id!r} (it has: {known})")


class Verdict(BaseModel):
    """One (response, criterion) judgment."""

    model_config = _MODEL_CONFIG

    criterion_id: str
    """The criterion judged."""
    criterion_fingerprint: str | None = None
    """The criterion's fingerprint when judged, so a changed criterion can be re-scored alone."""
    verdict: VerdictLabel
    """``met`` (the statement holds), ``unmet``, ``not_applicable`` (out of the denominator), or ``error``
    (backend or parse failure after bounded retries: excluded from the score and counted in coverage)."""
    p_met: float | None = Field(default=None, ge=0.0, le=1.0)
    """Probability that the statement holds, when logprobs or local logits are available."""
    level: float | None = None
    """The chosen level, for scale criteria (probability-weighted in likert mode); for the holistic pseudo-criterion
    ``_holistic``, the 1–10 rating."""
    rationale: str | None = None
    """The judge's explanation (or a programmatic check's detail)."""
    error: str | None = None
    """Why the verdict is ``error``: the failure kept for the report, never turned into met/unmet/0."""


class VerdictRow(Verdict):
    """A stored verdict with its item and rubric, the input row of ``rubrickit aggregate`` and ``weight``."""

    item_id: str
    """The data row's ``id``."""
    rubric_id: str
    """The rubric the criterion belongs to."""


class ScoreRecord(BaseModel):
    """One judged item: the public output contract of scoring (one JSON object per line)."""

    model_config = _MODEL_CONFIG

    item_id: str
    """The data row's ``id``."""
    rubric_id: str
    """The rubric used."""
    rubric_fingerprint: str
    """The rubric's fingerprint, tracing the result to the rubric version that made it."""
    reward: float | None
    """The aggregated reward; ``None`` when no criterion was assessed (every verdict error, not applicable or
    missing), and for ``points`` when no positive-weight criterion was assessed (as HealthBench does)."""
    coverage: float
    """Share of criteria that were assessed (neither ``error`` nor ``not_applicable``), in [0, 1]."""
    gates_failed: list[str] = Field(default_factory=list)
    """Ids of hard criteria that were violated (unmet; met for a penalty) and vetoed the reward."""
    judge: str | None = None
    """Spec of the judge that produced the verdicts (``None`` for programmatic-only or recomputed records)."""
    verdicts: list[Verdict] = Field(default_factory=list)
    """Every criterion's verdict, in rubric order."""
    subscores: dict[str, float | None] = Field(default_factory=dict)
    """Per-tag sub-scores (same aggregation restricted to the criteria carrying the tag)."""
    errors: int = 0
    """Number of ``error`` verdicts."""
    repeat: int = 0
    """Repeat index under ``--repeat N`` (0 for the first or only judgment of the item)."""


def _digest(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _weight_key(weight: float) -> float | int:
    # 3 and 3.0 must hash alike: JSON would spell them differently.
    return int(weight) if float(weight).is_integer() else float(weight)


def criterion_fingerprint(criterion: Criterion) -> str:
    """``sha256:<16 hex>`` of the criterion's semantic fields: text, kind, scale, check, applies_if."""
    payload = {
        "text": criterion.text,
        "kind": criterion.kind,
        "scale": {str(k): v for k, v in criterion.scale.items()} if criterion.scale else None,
        "check": criterion.check.model_dump(mode="json") if criterion.check is not None else None,
        "applies_if": criterion.applies_if,
    }
    return _digest(payload)


def rubric_fingerprint(rubric: Rubric, criteria: Mapping[str, str] | None = None) -> str:
    """``sha256:<16 hex>`` of the criteria (id, fingerprint, weight) and the aggregation settings (``criteria``:
    the criterion fingerprints by id, when already computed)."""
    payload = {
        "aggregation": rubric.aggregation,
        "soft": rubric.soft,
        "raw": rubric.raw,
        "gates": rubric.gates,
        "criteria": [[c.id, criteria[c.id] if criteria is not None else criterion_fingerprint(c),
                      _weight_key(c.weight)] for c in rubric.criteria],
    }
    return _digest(payload)


@dataclass(frozen=True)
class Fingerprints:
    """A rubric's fingerprint and its criteria's, computed once (a judge run stamps every record with them)."""

    rubric: str
    criteria: Mapping[str, str]

    @classmethod
    def of(cls, rubric: Rubric) -> Fingerprints:
        """The fingerprints of ``rubric`` as it is now (a later change to the rubric is not seen)."""
        criteria = {c.id: criterion_fingerprint(c) for c in rubric.criteria}
        return cls(rubric=rubric_fingerprint(rubric, criteria), criteria=criteria)
