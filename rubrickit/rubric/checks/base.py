"""The ground every check stands on: the outcome of a check, the base model, and the shared field types.

- :class:`CheckOutcome`: ``met`` and a short human ``detail``, what every check returns.
- ``_Check``: the base model; a check implements ``_verdict(response) -> (met, detail)``.
- :data:`Relation` (how a count compares with a number), :data:`LANGUAGE_CODES`, and the field types the check
  families share (keywords, language codes, counts).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from rubrickit._util import text as _text
from rubrickit._util.text import RelationName, Result

__all__ = ["CheckOutcome", "LANGUAGE_CODES", "Relation"]

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class CheckOutcome(BaseModel):
    """The result of running a programmatic check on one response."""

    model_config = _CONFIG

    met: bool
    """Whether the criterion's statement holds for the response."""
    detail: str
    """A short human explanation, e.g. "143 words (at most 150)"."""


def _normalize_relation(value: object) -> object:
    # Hand-written YAML says "at_least" or "At least" as often as "at least"; the schema lists the canonical
    # spelling only.
    return " ".join(value.replace("_", " ").lower().split()) if isinstance(value, str) else value


Relation = Annotated[RelationName, BeforeValidator(_normalize_relation)]
"""How a count compares with a number: 'at least', 'at most', 'exactly', 'less than' or 'more than'."""


def _language_code(code: str | None) -> str | None:
    if code is None:
        return None
    normal = code.strip().lower().replace("_", "-")
    if normal not in LANGUAGE_CODES:
        raise ValueError(
            f"unknown language code {code!r}; use an ISO 639-1 code that langdetect supports, "
            "such as 'en', 'de', 'hi' or 'zh-cn'"
        )
    return normal


def _strip_words(words: tuple[str, ...]) -> tuple[str, ...]:
    if any(not w.strip() for w in words):
        raise ValueError("keywords must not be empty or blank")
    return tuple(w.strip() for w in words)


LANGUAGE_CODES: frozenset[str] = _text.LANGDETECT_CODES | {"zh"}
"""Accepted language codes: those langdetect reports, plus 'zh' (either Chinese script)."""

_Keywords = Annotated[tuple[str, ...], AfterValidator(_strip_words), Field(min_length=1)]
_Language = Annotated[str, AfterValidator(_language_code)]
_Count = Annotated[int, Field(ge=0)]


def _tag(name: str) -> Any:
    return Field(name, description=f"The check type, always {name!r}.")


class _Check(BaseModel):
    """Base of every check model."""

    model_config = _CONFIG

    type: str
    """The check type."""

    def evaluate(self, response: str) -> CheckOutcome:
        """Run the check on ``response``."""
        met, detail = self._verdict(response)
        return CheckOutcome(met=met, detail=detail)

    def _verdict(self, response: str) -> Result:
        raise NotImplementedError
