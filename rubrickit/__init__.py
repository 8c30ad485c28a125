"""rubrickit: rubric authoring and criterion-by-criterion LLM-as-judge scoring.

Rubrics are YAML files under version control (:mod:`rubrickit.rubric`: the model, files, checks, aggregation of
verdicts into rewards, diff, lint and the formats of the field); :mod:`rubrickit.judge` scores responses with the
backends of :mod:`rubrickit.backends`; :mod:`rubrickit.generate` and :mod:`rubrickit.refine` author rubrics;
:mod:`rubrickit.eval` measures them; :mod:`rubrickit.rewards` and :mod:`rubrickit.integrations` hand them to RL
trainers. ``docs/architecture.md`` draws the layers. The CLI (:mod:`rubrickit.cli`) only calls these names.

The root is lazy (PEP 562): a name is imported when it is first used, so ``import rubrickit.rubric`` loads the
rubric core alone and ``import rubrickit`` costs almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._util.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Aggregate": ".rubric.aggregation",
    "aggregate": ".rubric.aggregation",
    "aggregate_file": ".rubric.aggregation",
    "Backend": ".backends",
    "BackendCallError": ".errors",
    "BackendSpecError": ".errors",
    "CheckOutcome": ".rubric.checks",
    "CheckSpec": ".rubric.checks",
    "compare_files": ".judge",
    "ConversionError": ".errors",
    "ConversionReport": ".rubric.formats.convert",
    "convert_file": ".rubric.formats.convert:convert",
    "Criterion": ".rubric",
    "criterion_fingerprint": ".rubric",
    "DataItem": ".judge",
    "diff_paths": ".rubric.diff",
    "diff_rubrics": ".rubric.diff",
    "evaluate": ".eval",
    "generate_rubrics": ".generate:generate",
    "get_backend": ".backends",
    "Judge": ".judge",
    "JudgeOptions": ".judge",
    "lint_paths": ".rubric.lint",
    "lint_rubric": ".rubric.lint",
    "LintFinding": ".rubric.lint",
    "load_rubric": ".rubric",
    "load_rubric_set": ".rubric",
    "load_rubrics": ".rubric",
    "MissingCredentialsError": ".errors",
    "MissingDependencyError": ".errors",
    "OutputExistsError": ".errors",
    "PairItem": ".judge",
    "PairRecord": ".judge",
    "parse_check": ".rubric.checks",
    "parse_rubric": ".rubric",
    "points_summary": ".rubric.aggregation",
    "Provenance": ".rubric",
    "rank_files": ".rewards.rank",
    "read_rubrics": ".rubric.formats.convert",
    "refine_file": ".refine",
    "RewardOptions": ".rewards",
    "RewardScorer": ".rewards",
    "Rubric": ".rubric",
    "rubric_fingerprint": ".rubric",
    "rubric_json_schema": ".rubric",
    "RubricDiff": ".rubric.diff",
    "RubricError": ".errors",
    "RubrickitError": ".errors",
    "RubricSet": ".rubric",
    "run_check": ".rubric.checks",
    "save_rubric": ".rubric",
    "save_rubric_set": ".rubric",
    "score_files": ".judge",
    "score_record": ".rubric.aggregation",
    "ScoreRecord": ".rubric",
    "UnknownBackendError": ".errors",
    "validate_paths": ".rubric",
    "Verdict": ".rubric",
    "VerdictRow": ".rubric",
    "weight_file": ".refine",
    "write_rubrics": ".rubric.formats.convert",
}
"""Each public name and the module that defines it (``module:attribute`` where the name differs)."""

__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names come from __getattr__
    from .backends import Backend, get_backend
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
    from .generate import generate as generate_rubrics
    from .judge import DataItem, Judge, JudgeOptions, PairItem, PairRecord, compare_files, score_files
    from .refine import refine_file, weight_file
    from .rewards import RewardOptions, RewardScorer
    from .rewards.rank import rank_files
    from .rubric import (
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
        rubric_json_schema,
        save_rubric,
        save_rubric_set,
        validate_paths,
    )
    from .rubric.aggregation import Aggregate, aggregate, aggregate_file, points_summary, score_record
    from .rubric.checks import CheckOutcome, CheckSpec, parse_check, run_check
    from .rubric.diff import RubricDiff, diff_paths, diff_rubrics
    from .rubric.formats.convert import ConversionReport, read_rubrics, write_rubrics
    from .rubric.formats.convert import convert as convert_file
    from .rubric.lint import LintFinding, lint_paths, lint_rubric
