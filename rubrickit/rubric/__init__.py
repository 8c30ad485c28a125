"""The rubric core: what a rubric is and how it lives in files, with no judge, no model and no template engine.

- :mod:`.model`: :class:`Rubric`, :class:`Criterion`, verdict and score-record models, fingerprints;
- :mod:`.files`: YAML/JSON rubrics and JSONL rubric sets, loaded with file:line:field errors, saved atomically,
  validated, and their JSON Schema;
- :mod:`.checks` (with the IFEval mapping): criteria decided by code instead of a judge;
- :mod:`.aggregation`: verdicts → rewards (DESIGN §4);
- :mod:`.diff` and :mod:`.lint`: keeping rubric files healthy under version control;
- :mod:`.formats`: the rubric formats of the field, imported and exported (``rubrickit convert``).

This package re-exports the model and file names; the other modules are imported by name.
"""

from __future__ import annotations

from .files import (
    RUBRIC_SUFFIXES,
    SCHEMA_FILENAME,
    FileReport,
    RubricSet,
    criterion_lines,
    describe_error,
    dump_rubric_json,
    dump_rubric_yaml,
    is_rubric_set_path,
    iter_rubric_files,
    load_rubric,
    load_rubric_set,
    load_rubrics,
    model_to_jsonl,
    parse_rubric,
    rubric_json_schema,
    save_rubric,
    save_rubric_set,
    validate_paths,
    validation_problems,
    write_schema,
)
from .model import (
    FORMAT_VERSION,
    Criterion,
    Fingerprints,
    Provenance,
    Rubric,
    ScoreRecord,
    Verdict,
    VerdictLabel,
    VerdictRow,
    criterion_fingerprint,
    rubric_fingerprint,
)

__all__ = [
    "FORMAT_VERSION",
    "RUBRIC_SUFFIXES",
    "SCHEMA_FILENAME",
    "Criterion",
    "FileReport",
    "Fingerprints",
    "Provenance",
    "Rubric",
    "RubricSet",
    "ScoreRecord",
    "Verdict",
    "VerdictLabel",
    "VerdictRow",
    "criterion_fingerprint",
    "criterion_lines",
    "describe_error",
    "dump_rubric_json",
    "dump_rubric_yaml",
    "is_rubric_set_path",
    "iter_rubric_files",
    "load_rubric",
    "load_rubric_set",
    "load_rubrics",
    "model_to_jsonl",
    "parse_rubric",
    "rubric_fingerprint",
    "rubric_json_schema",
    "save_rubric",
    "save_rubric_set",
    "validate_paths",
    "validation_problems",
    "write_schema",
]
