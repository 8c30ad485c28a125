"""Semantic diff of two rubrics or two rubric sets: what changed, and whether stored verdicts are still valid.

A criterion's fingerprint hashes its semantic fields (text, kind, scale, check, applies_if; DESIGN §3). When
it changes, verdicts judged under the old fingerprint no longer answer the new statement: the criterion must
be **re-judged**. When only weight, tags or category change — or a criterion is removed, renamed or
reordered, or the aggregation settings change — the stored verdicts are still valid and only the reward must
be recomputed (**re-aggregated**, ``rubrickit aggregate``), with no judge calls. The one exception is
``holistic`` aggregation, where the judge rates the whole response against all criteria at once: any
semantic change there re-judges every response.

Public names: :class:`CriterionChange`, :class:`RubricDiff`, :func:`diff_rubrics`, :func:`diff_paths`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from rubrickit.errors import RubricError
from rubrickit.rubric.files import RUBRIC_SUFFIXES, iter_rubric_files, load_rubrics
from rubrickit.rubric.model import Criterion, Rubric

__all__ = [
    "CriterionChange",
    "RubricDiff",
    "diff_rubrics",
    "diff_paths",
    "SEMANTIC_FIELDS",
    "SCORING_SETTINGS",
]

SEMANTIC_FIELDS: tuple[str, ...] = ("text", "kind", "scale", "check", "applies_if")
"""Criterion fields the fingerprint covers: changing one means the criterion must be re-judged."""

SCORING_SETTINGS: tuple[str, ...] = ("aggregation", "soft", "raw", "gates")
"""Rubric settings that change how verdicts become a reward (re-aggregation, no judge calls)."""

_CRITERION_FIELDS = tuple(name for name in Criterion.model_fields if name != "id")
_RUBRIC_SETTINGS = tuple(name for name in Rubric.model_fields if name != "criteria")

_MODEL_CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class CriterionChange(BaseModel):
    """How one criterion differs between the old and the new rubric."""

    model_config = _MODEL_CONFIG

    criterion_id: str
    """The criterion's id in the new rubric (in the old one for ``removed``)."""
    change: Literal["added", "removed", "changed", "renamed"]
    """``added``/``removed``: only on one side; ``changed``: same id, some field differs; ``renamed``: a new
    id with the same fingerprint as a removed criterion (verdicts stay valid)."""
    old_id: str | None = None
    """For ``renamed``: the id in the old rubric."""
    fields: list[str] = []
    """The fields that differ (``id`` first for renames), in model order: text, kind, weight, category, tags,
    scale, check, applies_if."""
    old: dict[str, Any] = {}
    """Old values of the fields that differ (JSON-ready)."""
    new: dict[str, Any] = {}
    """New values of the fields that differ (JSON-ready)."""
    old_weight: float | None = None
    """The weight in the old rubric (``None`` when added)."""
    new_weight: float | None = None
    """The weight in the new rubric (``None`` when removed)."""
    old_fingerprint: str | None = None
    """The criterion fingerprint in the old rubric (``None`` when added)."""
    new_fingerprint: str | None = None
    """The criterion fingerprint in the new rubric (``None`` when removed)."""
    programmatic: bool = False
    """The new criterion is decided by a programmatic ``check``: re-judging it runs the check, no LLM call."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def semantic(self) -> bool:
        """The statement itself changed (added, or a new fingerprint): stored verdicts do not answer it."""
        if self.change == "added":
            return True
        return self.change == "changed" and self.old_fingerprint != self.new_fingerprint

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_rejudge(self) -> bool:
        """New verdicts are needed for this criterion (same as :attr:`semantic`)."""
        return self.semantic


class RubricDiff(BaseModel):
    """How one rubric differs between two versions, and what that means for stored scores."""

    model_config = _MODEL_CONFIG

    rubric_id: str
    """The rubric's id (the new one when both sides exist)."""
    prompt_id: str | None = None
    """The ``prompt_id`` the rubric scores, for prompt-specific rubrics."""
    change: Literal["added", "removed", "changed", "unchanged"] = "changed"
    """``added``/``removed``: only in the new/old set; ``changed``/``unchanged``: in both."""
    old_fingerprint: str | None = None
    """The rubric fingerprint before (``None`` when added)."""
    new_fingerprint: str | None = None
    """The rubric fingerprint after (``None`` when removed)."""
    settings: dict[str, tuple[Any, Any]] = {}
    """Rubric-level fields that differ: name -> (old, new). ``criteria_order`` gives the shared criteria ids
    in old and new order when their order changed."""
    criteria: list[CriterionChange] = []
    """The criteria that differ, in new-rubric order, removed ones last."""
    rejudge_all: bool = False
    """Holistic aggregation with a semantic change (or a switch to/from holistic): the whole response needs a
    new judgment, not single criteria."""

    def is_empty(self) -> bool:
        """True when nothing differs (metadata included)."""
        return self.change == "unchanged"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_rejudge(self) -> bool:
        """Some verdicts must be judged again: a criterion's fingerprint changed or a criterion was added."""
        return self.rejudge_all or any(c.needs_rejudge for c in self.criteria)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_reaggregate(self) -> bool:
        """Stored rewards are stale (the rubric fingerprint changed) and must at least be recomputed."""
        return self.old_fingerprint != self.new_fingerprint

    @property
    def rejudge_ids(self) -> list[str]:
        """Ids of the criteria that need new verdicts (added, or with a new fingerprint)."""
        return [c.criterion_id for c in self.criteria if c.needs_rejudge]

    @property
    def renamed_ids(self) -> dict[str, str]:
        """Old id -> new id of renamed criteria: their stored verdicts stay valid under the new id."""
        return {c.old_id: c.criterion_id for c in self.criteria if c.change == "renamed" and c.old_id}

    @property
    def removed_ids(self) -> list[str]:
        """Ids of the criteria only the old rubric has."""
        return [c.criterion_id for c in self.criteria if c.change == "removed"]

    def lines(self) -> list[str]:
        """The diff as plain text lines, each starting with ``+`` (added), ``-`` (removed), ``~`` (changed) or
        ``!`` (what must be redone); the CLI colours them."""
        return _diff_lines(self)


# --------------------------------------------------------------------------- comparing


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _changed_fields(old: BaseModel, new: BaseModel, names: Iterable[str]) -> list[str]:
    return [name for name in names if _plain(getattr(old, name)) != _plain(getattr(new, name))]


def _compare_criteria(old: Criterion, new: Criterion) -> CriterionChange | None:
    fields = _changed_fields(old, new, _CRITERION_FIELDS)
    renamed = old.id != new.id
    if not fields and not renamed:
        return None
    names = (["id"] if renamed else []) + fields
    return CriterionChange(
        criterion_id=new.id,
        change="renamed" if renamed else "changed",
        old_id=old.id if renamed else None,
        fields=names,
        old={name: _plain(getattr(old, name)) for name in names},
        new={name: _plain(getattr(new, name)) for name in names},
        old_weight=old.weight,
        new_weight=new.weight,
        old_fingerprint=old.fingerprint,
        new_fingerprint=new.fingerprint,
        programmatic=new.check is not None,
    )


def _one_side(criterion: Criterion, change: Literal["added", "removed"]) -> CriterionChange:
    added = change == "added"
    return CriterionChange(
        criterion_id=criterion.id,
        change=change,
        old_weight=None if added else criterion.weight,
        new_weight=criterion.weight if added else None,
        old_fingerprint=None if added else criterion.fingerprint,
        new_fingerprint=criterion.fingerprint if added else None,
        programmatic=added and criterion.check is not None,
    )


def _pair_renames(old: Rubric, new: Rubric) -> dict[str, str]:
    """new id -> old id for criteria whose id changed but whose fingerprint did not (paired in order)."""
    old_ids = {c.id for c in old.criteria}
    new_ids = {c.id for c in new.criteria}
    unmatched: dict[str, list[str]] = {}
    for criterion in old.criteria:
        if criterion.id not in new_ids:
            unmatched.setdefault(criterion.fingerprint, []).append(criterion.id)
    pairs: dict[str, str] = {}
    for criterion in new.criteria:
        candidates = unmatched.get(criterion.fingerprint)
        if criterion.id not in old_ids and candidates:
            pairs[criterion.id] = candidates.pop(0)
    return pairs


def _settings(old: Rubric, new: Rubric, order: tuple[list[str], list[str]]) -> dict[str, tuple[Any, Any]]:
    settings = {
        name: (_plain(getattr(old, name)), _plain(getattr(new, name)))
        for name in _changed_fields(old, new, _RUBRIC_SETTINGS)
    }
    if order[0] != order[1]:
        settings["criteria_order"] = order
    return settings


def diff_rubrics(old: Rubric, new: Rubric) -> RubricDiff:
    """Compare two versions of a rubric, criterion by criterion (matched by id; renames by fingerprint)."""
    renames = _pair_renames(old, new)
    old_by_id = {c.id: c for c in old.criteria}
    matched_old = {renames.get(c.id, c.id) for c in new.criteria}
    changes: list[CriterionChange] = []
    for criterion in new.criteria:
        before = old_by_id.get(renames.get(criterion.id, criterion.id))
        if before is None:
            changes.append(_one_side(criterion, "added"))
        elif (change := _compare_criteria(before, criterion)) is not None:
            changes.append(change)
    changes += [_one_side(c, "removed") for c in old.criteria if c.id not in matched_old]
    # Order of the criteria both sides share (renames mapped to their new id).
    back = {old_id: new_id for new_id, old_id in renames.items()}
    shared = [back.get(c.id, c.id) for c in old.criteria if c.id in matched_old]
    order = (shared, [c.id for c in new.criteria if renames.get(c.id, c.id) in old_by_id])
    settings = _settings(old, new, order)
    semantic = any(c.semantic or c.change == "removed" for c in changes)
    holistic = "holistic" in (old.aggregation, new.aggregation)
    return RubricDiff(
        rubric_id=new.id,
        prompt_id=new.prompt_id or old.prompt_id,
        change="changed" if changes or settings else "unchanged",
        old_fingerprint=old.fingerprint,
        new_fingerprint=new.fingerprint,
        settings=settings,
        criteria=changes,
        rejudge_all=holistic and (semantic or "aggregation" in settings),
    )


def _one_sided_rubric(rubric: Rubric, change: Literal["added", "removed"]) -> RubricDiff:
    added = change == "added"
    return RubricDiff(
        rubric_id=rubric.id,
        prompt_id=rubric.prompt_id,
        change=change,
        old_fingerprint=None if added else rubric.fingerprint,
        new_fingerprint=rubric.fingerprint if added else None,
        criteria=[_one_side(c, change) for c in rubric.criteria],
        rejudge_all=added and rubric.aggregation == "holistic",
    )


# --------------------------------------------------------------------------- sets and files


def _load_side(path: str | Path) -> list[tuple[Path, Rubric]]:
    files = list(iter_rubric_files([path]))
    if not files:
        looked = ", ".join("*" + suffix for suffix in RUBRIC_SUFFIXES)
        raise RubricError.at(path, None, None, f"no rubric files found (looked for {looked})")
    return [(file, rubric) for file in files for rubric in load_rubrics(file)]


def _index(side: list[tuple[Path, Rubric]], by_prompt: bool) -> dict[str, Rubric]:
    index: dict[str, Rubric] = {}
    where: dict[str, Path] = {}
    problems = []
    for file, rubric in side:
        key = rubric.prompt_id if by_prompt else rubric.id
        assert key is not None  # by_prompt is only chosen when every rubric has a prompt_id
        if key in index:
            what = "prompt_id" if by_prompt else "rubric id"
            problems.append(
                f"{file}: {what} {key!r} also appears in {where[key]}; each rubric must appear "
                f"once per side to be matched"
            )
            continue
        index[key], where[key] = rubric, file
    if problems:
        raise RubricError(problems)
    return index


def diff_paths(old_path: str | Path, new_path: str | Path, *, include_unchanged: bool = False) -> list[RubricDiff]:
    """Diff two rubric files, rubric sets (JSONL) or folders of rubrics.

    Rubrics are matched by ``prompt_id`` when every rubric on both sides has one (rubric sets), otherwise
    by ``id``; a rubric found on one side only is reported as ``added`` or ``removed``. Two single rubrics are
    compared with each other whatever their ids (unless both name different prompts). Unchanged rubrics are left
    out unless ``include_unchanged``. Files that do not load raise :class:`~rubrickit.errors.RubricError`.
    """
    old_side, new_side = _load_side(old_path), _load_side(new_path)
    single = len(old_side) == 1 and len(new_side) == 1
    prompts = {r.prompt_id for _, r in old_side + new_side}
    if single and (len(prompts) == 1 or None in prompts):
        diffs = [diff_rubrics(old_side[0][1], new_side[0][1])]
    else:
        by_prompt = all(r.prompt_id for _, r in old_side + new_side)
        old_index, new_index = _index(old_side, by_prompt), _index(new_side, by_prompt)
        diffs = [
            diff_rubrics(old_index[key], rubric) if key in old_index else _one_sided_rubric(rubric, "added")
            for key, rubric in new_index.items()
        ]
        diffs += [_one_sided_rubric(r, "removed") for key, r in old_index.items() if key not in new_index]
    return [d for d in diffs if include_unchanged or not d.is_empty()]


# --------------------------------------------------------------------------- text


def _short(value: Any, limit: int = 70) -> str:
    text = f"{value:g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value_lines(where: str, name: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):  # scale levels, check parameters: only what differs
        keys = list(dict.fromkeys([*old, *new]))
        return [
            f"~ {where}: {name}.{key}: {_short(old.get(key))} → {_short(new.get(key))}"
            for key in keys
            if old.get(key) != new.get(key)
        ]
    return [f"~ {where}: {name}: {_short(old)} → {_short(new)}"]


def _criterion_lines(head: str, change: CriterionChange) -> list[str]:
    where = f"{head}/{change.criterion_id}"
    if change.change == "added":
        kind = "check" if change.programmatic else "judge"
        return [f"+ {where}: added (weight {change.new_weight:g}, {kind}; {change.new_fingerprint})"]
    if change.change == "removed":
        return [f"- {where}: removed (weight {change.old_weight:g})"]
    out = []
    if change.change == "renamed":
        out.append(f"~ {where}: renamed from {change.old_id!r} (same fingerprint: verdicts still valid)")
    for name in change.fields:
        if name != "id":
            out += _value_lines(where, name, change.old[name], change.new[name])
    if change.semantic:
        out.append(f"~ {where}: fingerprint {change.old_fingerprint} → {change.new_fingerprint}")
    return out


def _diff_lines(diff: RubricDiff) -> list[str]:
    head = diff.rubric_id
    if diff.prompt_id and diff.prompt_id != diff.rubric_id:
        head += f" (prompt {diff.prompt_id})"
    if diff.change == "unchanged":
        return [f"  {head}: unchanged ({diff.new_fingerprint})"]
    marks = {"added": "+", "removed": "-", "changed": "~"}
    out = [f"{marks[diff.change]} {head}: {diff.change} ({diff.old_fingerprint} → {diff.new_fingerprint})"]
    out += [f"~ {head}: {name}: {_short(old)} → {_short(new)}" for name, (old, new) in diff.settings.items()]
    if diff.change == "changed":
        for change in diff.criteria:
            out += _criterion_lines(diff.rubric_id, change)
    if diff.change == "added":
        out.append(f"! {head}: new rubric: judge all {len(diff.criteria)} criteria")
    elif diff.rejudge_all:
        out.append(f"! {head}: needs re-judging of every response (holistic: one judgment for all criteria)")
    elif diff.needs_rejudge:
        ids = diff.rejudge_ids
        local = sum(1 for c in diff.criteria if c.needs_rejudge and c.programmatic)
        note = f" ({local} by programmatic check, no judge call)" if local else ""
        out.append(f"! {head}: needs re-judging of {len(ids)} criteria{note}: {', '.join(ids)}")
    elif diff.needs_reaggregate and diff.change == "changed":
        out.append(f"! {head}: no re-judging needed; re-aggregate the stored verdicts (rubrickit aggregate)")
    if diff.change == "changed":
        out += _verdict_row_lines(head, diff)
    return out


def _verdict_row_lines(head: str, diff: RubricDiff) -> list[str]:
    """What stored verdict rows need before re-aggregating: aggregate refuses ids the rubric does not have."""
    edits = [f"criterion_id {old} → {new}" for old, new in diff.renamed_ids.items()]
    if diff.removed_ids:
        edits.append(f"drop {', '.join(diff.removed_ids)}")
    if "id" in diff.settings:
        old_id, new_id = diff.settings["id"]
        edits.insert(0, f"rubric_id {old_id} → {new_id}")
    return [f"! {head}: in stored verdict rows: {'; '.join(edits)}"] if edits else []
