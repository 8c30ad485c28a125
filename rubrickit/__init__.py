"""rubrickit: rubric authoring and criterion-by-criterion LLM-as-judge scoring.

Rubrics are YAML files under version control (:mod:`rubrickit.rubric`); verdicts become rewards
(:mod:`rubrickit.aggregate`); criteria with a ``check:`` are decided without an LLM (:mod:`rubrickit.checks`);
formats of the field convert both ways (:mod:`rubrickit.convert`); :mod:`rubrickit.lint` and :mod:`rubrickit.diff`
keep rubric files healthy under version control. The CLI (:mod:`rubrickit.cli`) only calls these names.
"""

from __future__ import annotations

from .aggregate import Aggregate, aggregate, aggregate_file, points_summary, score_record
from .backends import Backend, get_backend
from .checks import CheckOutcome, CheckSpec, parse_check, run_check
from .convert import ConversionReport, read_rubrics, write_rubrics
from .convert import convert as convert_file  # the module keeps the name `convert`
from .diff import RubricDiff, diff_paths, diff_rubrics
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
from .eval import evaluate
from .generate import generate as generate_rubrics  # the subpackage keeps the name `generate`
from .judge import DataItem, Judge, JudgeOptions, PairItem, PairRecord, compare_files, score_files
from .lint import LintFinding, lint_paths, lint_rubric
from .refine import refine_file, weight_file
from .rewards import RewardOptions, RewardScorer
from .rewards.rank import rank_files

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
    "RewardOptions",
    "RewardScorer",
    "rank_files",
    "Aggregate",
    "Backend",
    "BackendCallError",
    "BackendSpecError",
    "CheckOutcome",
    "CheckSpec",
    "DataItem",
    "ConversionError",
    "ConversionReport",
    "Criterion",
    "Judge",
    "JudgeOptions",
    "LintFinding",
    "MissingCredentialsError",
    "MissingDependencyError",
    "OutputExistsError",
    "PairItem",
    "PairRecord",
    "Provenance",
    "Rubric",
    "RubricDiff",
    "RubricError",
    "RubricSet",
    "RubrickitError",
    "ScoreRecord",
    "UnknownBackendError",
    "Verdict",
    "VerdictRow",
    "__version__",
    "aggregate",
    "aggregate_file",
    "compare_files",
    "convert_file",
    "diff_paths",
    "diff_rubrics",
    "evaluate",
    "generate_rubrics",
    "get_backend",
    "lint_paths",
    "lint_rubric",
    "criterion_fingerprint",
    "load_rubric",
    "load_rubric_set",
    "load_rubrics",
    "parse_check",
    "parse_rubric",
    "points_summary",
    "read_rubrics",
    "refine_file",
    "rubric_fingerprint",
    "rubric_json_schema",
    "run_check",
    "save_rubric",
    "save_rubric_set",
    "score_files",
    "score_record",
    "validate_paths",
    "weight_file",
    "write_rubrics",
]
