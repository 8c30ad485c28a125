"""Rubric lint: wording and structure smells that make LLM-judge verdicts unreliable or rewards misleading.

Every rule is a small pure function with an id (``non-atomic``, ``near-duplicate``, …) listed in
:data:`RULES`; any rule can be disabled. The rules themselves live in :mod:`rubrickit.rubric.lint_rules`; this
module runs them on rubrics and files, honours ``# lint: disable=…`` comments, and reports findings. Semantic
(embedding) deduplication belongs to the refine stage, not here. docs/lint.md describes every rule with an
example and a fix.

Public names: :class:`LintFinding`, :data:`RULES`, :func:`lint_rubric`, :func:`lint_paths`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from rubrickit._util.io import iter_jsonl_lines, open_text
from rubrickit.errors import RubricError, format_location
from rubrickit.rubric.files import RUBRIC_SUFFIXES as SUFFIXES
from rubrickit.rubric.files import criterion_lines, is_rubric_set_path, iter_rubric_files, load_rubrics
from rubrickit.rubric.lint_rules import _CRITERION_RULES, _RUBRIC_RULES, RULES, _near_duplicates
from rubrickit.rubric.model import Rubric

__all__ = ["LintFinding", "RULES", "lint_rubric", "lint_paths"]


class LintFinding(BaseModel):
    """One lint finding: where it is, which rule fired, and what to do about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    """The rubric file, when the rubric came from one."""
    line: int | None = None
    """The line where the criterion starts (the rubric's line in a JSONL set); ``None`` when unknown."""
    rubric_id: str
    """The rubric the finding is about."""
    criterion_id: str | None = None
    """The criterion the finding is about; ``None`` for findings about the whole rubric."""
    rule: str
    """The rule id, e.g. ``non-atomic`` (see :data:`RULES`)."""
    message: str
    """What is wrong and how to fix it."""

    def format(self) -> str:
        """``rubrics/x.yaml:14: support-reply/answers-question: non-atomic: <message>``."""
        where = self.rubric_id + (f"/{self.criterion_id}" if self.criterion_id else "")
        return format_location(self.file, self.line, where, f"{self.rule}: {self.message}")


# --------------------------------------------------------------------------- entry points


def _did_you_mean(rule: str) -> str:
    close = difflib.get_close_matches(rule, list(RULES), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_disable(disable: Iterable[str]) -> set[str]:
    if isinstance(disable, str):  # one rule id given bare, not as a list
        disable = [disable]
    disabled = {rule.strip() for rule in disable}
    unknown = sorted(disabled - RULES.keys())
    if unknown:
        named = ", ".join(f"{u!r}" + _did_you_mean(u) for u in unknown)
        raise ValueError(f"unknown lint rule {named}; valid rules: {', '.join(RULES)}")
    return disabled


def lint_rubric(
    rubric: Rubric,
    *,
    file: str | Path | None = None,
    lines: dict[tuple[str, str], int] | None = None,
    disable: Iterable[str] = (),
    rubric_line: int | None = None,
) -> list[LintFinding]:
    """Lint one rubric; findings come in criterion order, rubric-wide ones first.

    ``lines`` maps ``(rubric_id, criterion_id)`` to a line (see :func:`rubrickit.rubric.files.criterion_lines`);
    ``rubric_line`` is the line given to rubric-wide findings. ``disable`` names rules to skip; an unknown
    rule id raises ``ValueError`` listing the valid ones.
    """
    disabled = _check_disable(disable)
    lines = lines or {}
    where = str(file) if file is not None else None

    def finding(criterion_id: str | None, rule: str, message: str) -> LintFinding:
        line = lines.get((rubric.id, criterion_id)) if criterion_id else rubric_line
        return LintFinding(
            file=where, line=line, rubric_id=rubric.id, criterion_id=criterion_id, rule=rule, message=message
        )

    findings: list[LintFinding] = []
    for rule, check in _RUBRIC_RULES.items():
        if rule not in disabled and (message := check(rubric)):
            findings.append(finding(None, rule, message))
    duplicates: dict[str, list[str]] = {}
    if "near-duplicate" not in disabled:
        for criterion_id, message in _near_duplicates(rubric, lines):
            duplicates.setdefault(criterion_id, []).append(message)
    for criterion in rubric.criteria:
        for rule in RULES:
            if rule in disabled:
                continue
            if rule == "near-duplicate":
                findings.extend(finding(criterion.id, rule, m) for m in duplicates.get(criterion.id, []))
            elif rule in _CRITERION_RULES and (message := _CRITERION_RULES[rule](criterion, rubric)):
                findings.append(finding(criterion.id, rule, message))
    return findings


_SUPPRESS = re.compile(r"#\s*lint:\s*disable(-file)?\s*=\s*([A-Za-z][\w,\s-]*)")


def _suppressions(path: Path, lines: dict[tuple[str, str], int]) -> tuple[dict[str, set[str]], list[str]]:
    """Rules switched off by ``# lint: disable=rule,…`` comments, per criterion id ("" for the whole file).

    A comment applies to the criterion whose lines hold it, or to the criterion starting on the next line when
    the comment stands alone; ``disable-file=`` (or a comment before the criteria) applies to the whole file.
    """
    with open_text(path) as fh:
        text_lines = fh.read().splitlines()
    starts = sorted((line, cid) for (_, cid), line in lines.items())
    by_line = dict(starts)
    out: dict[str, set[str]] = {}
    problems: list[str] = []
    for number, text in enumerate(text_lines, start=1):
        match = _SUPPRESS.search(text)
        if match is None:
            continue
        rules = {rule.strip() for rule in match.group(2).split(",") if rule.strip()}
        for rule in sorted(rules - RULES.keys()):
            message = f"unknown lint rule {rule!r} in a disable comment{_did_you_mean(rule)}"
            problems.append(format_location(path, number, None, f"{message}; valid rules: {', '.join(RULES)}"))
        owner = ""
        if match.group(1) is None:
            if text.lstrip().startswith("#") and number + 1 in by_line:
                owner = by_line[number + 1]
            else:
                owner = next((cid for line, cid in reversed(starts) if line <= number), "")
        out.setdefault(owner, set()).update(rules)
    return out, problems


def _lint_file(path: Path, disabled: set[str]) -> tuple[list[LintFinding], list[str]]:
    rubrics = load_rubrics(path)
    if is_rubric_set_path(path):
        # One rubric per non-blank line, in file order (the set loaded, so the lines and rubrics correspond).
        numbers = [number for number, _ in iter_jsonl_lines(path)]
        findings = []
        for rubric, number in zip(rubrics, numbers, strict=True):
            lines = {(rubric.id, c.id): number for c in rubric.criteria}
            findings += lint_rubric(rubric, file=path, lines=lines, disable=disabled, rubric_line=number)
        return findings, []
    lines = criterion_lines(path)
    off, problems = _suppressions(path, lines)
    findings = [f for r in rubrics for f in lint_rubric(r, file=path, lines=lines, disable=disabled)]
    kept = [f for f in findings if f.rule not in off.get("", set()) | off.get(f.criterion_id or "", set())]
    return kept, problems


def lint_paths(paths: Iterable[str | Path], *, disable: Iterable[str] = ()) -> tuple[list[LintFinding], list[str]]:
    """Lint every rubric file under ``paths`` (directories are searched recursively).

    Returns ``(findings, problems)``: a file that does not load is reported in ``problems`` (formatted
    ``file:line: field: message``) and linting goes on with the next file. An unknown rule id in ``disable``
    raises ``ValueError`` before any file is read. In YAML files, ``# lint: disable=rule`` comments waive a
    rule for one criterion and ``# lint: disable-file=rule`` for the file (docs/lint.md).
    """
    disabled = _check_disable(disable)
    findings: list[LintFinding] = []
    problems: list[str] = []
    for raw in paths:
        files = list(iter_rubric_files([raw]))
        if not files:
            looked = ", ".join("*" + suffix for suffix in SUFFIXES)
            problems.append(f"{raw}: no rubric files found (looked for {looked})")
        for path in files:
            try:
                found, bad_comments = _lint_file(path, disabled)
                findings += found
                problems += bad_comments
            except RubricError as exc:
                problems.extend(exc.problems)
            except (OSError, ValueError) as exc:
                problems.append(format_location(path, None, None, f"cannot read: {exc}"))
    return findings, problems
