"""The public API is pinned: a change to it is a deliberate, reviewed change."""

from __future__ import annotations

import rubrickit

EXPECTED = {
    "Aggregate", "BackendCallError", "BackendSpecError", "CheckOutcome", "CheckSpec", "ConversionError",
    "ConversionReport", "Criterion", "LintFinding", "MissingCredentialsError", "MissingDependencyError",
    "OutputExistsError", "Provenance", "Rubric", "RubricDiff", "RubricError", "RubricSet", "RubrickitError",
    "ScoreRecord", "UnknownBackendError", "Verdict", "VerdictRow", "__version__", "aggregate", "aggregate_file",
    "convert_file", "criterion_fingerprint", "diff_paths", "diff_rubrics", "lint_paths", "lint_rubric", "load_rubric",
    "load_rubric_set", "load_rubrics", "parse_check", "parse_rubric", "points_summary", "read_rubrics",
    "rubric_fingerprint", "rubric_json_schema", "run_check", "save_rubric", "save_rubric_set", "score_record",
    "validate_paths", "write_rubrics",
    "Backend", "DataItem", "Judge", "JudgeOptions", "PairItem", "PairRecord", "compare_files", "get_backend",
    "score_files",
    "evaluate", "generate_rubrics", "refine_file", "weight_file",
    "RewardOptions", "RewardScorer", "rank_files",
}


def test_public_api_is_pinned() -> None:
    assert set(rubrickit.__all__) == EXPECTED
    assert len(set(rubrickit.__all__)) == len(rubrickit.__all__)
    for name in rubrickit.__all__:
        assert getattr(rubrickit, name) is not None


def test_user_errors_share_one_base_and_are_not_key_errors() -> None:
    errors = [getattr(rubrickit, n) for n in rubrickit.__all__ if n.endswith("Error")]
    for error in errors:
        assert issubclass(error, rubrickit.RubrickitError)
        assert not issubclass(error, KeyError)
    assert str(rubrickit.RubricError("a.yaml:3: id: bad")) == "a.yaml:3: id: bad"


def test_cli_imports_only_public_names() -> None:
    import ast
    from pathlib import Path

    # every module of the CLI package: rubrickit names come from the root, a package's public names, or the CLI
    for path in sorted(Path(rubrickit.__file__).with_name("cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rubrickit"):
                assert node.level == 0, (path.name, node.module)
                assert not any(part.startswith("_") for part in node.module.split(".")), (path.name, node.module)
                for alias in node.names:
                    assert not alias.name.startswith("_"), (path.name, node.module, alias.name)
