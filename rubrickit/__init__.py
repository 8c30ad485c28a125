"""rubrickit: rubric authoring and criterion-by-criterion LLM-as-judge scoring.

Rubrics are YAML files under version control (:mod:`rubrickit.rubric`); verdicts become rewards
(:mod:`rubrickit.aggregate`); criteria with a ``check:`` are decided without an LLM (:mod:`rubrickit.checks`).
"""

from __future__ import annotations

from .checks import CheckOutcome, CheckSpec, parse_check, run_check
from .errors import (
    BackendCallError,
    BackendSpecError,
    ConversionError,
    MissingCredentialsError,
    MissingDependencyError,
    OutputExistsError,
    RubricError,
    RubrickitError,
    UnknownBackendError,
)

# rubric must be imported before rubric_io (rubric re-exports the loaders at its end).
from .rubric import (  # noqa: I001
    Criterion,
    Provenance,
    Rubric,
    RubricSet,
    ScoreRecord,
    Verdict,
    VerdictRow,
    criterion_fingerprint,
    load_rubric,
    load_rubric_set,
    load_rubrics,
    parse_rubric,
    rubric_fingerprint,
    save_rubric,
    save_rubric_set,
)
from .rubric_io import rubric_json_schema, validate_paths

__version__ = "0.1.0"

__all__ = [
    "BackendCallError",
    "BackendSpecError",
    "CheckOutcome",
    "CheckSpec",
    "ConversionError",
    "Criterion",
    "MissingCredentialsError",
    "MissingDependencyError",
    "OutputExistsError",
    "Provenance",
    "Rubric",
    "RubricError",
    "RubricSet",
    "RubrickitError",
    "ScoreRecord",
    "UnknownBackendError",
    "Verdict",
    "VerdictRow",
    "__version__",
    "criterion_fingerprint",
    "load_rubric",
    "load_rubric_set",
    "load_rubrics",
    "parse_check",
    "parse_rubric",
    "rubric_fingerprint",
    "rubric_json_schema",
    "run_check",
    "save_rubric",
    "save_rubric_set",
    "validate_paths",
]
