"""Semantic rubric diff: added/removed/changed/renamed criteria, and whether verdicts must be re-judged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rubrickit.errors import RubricError
from rubrickit.rubric import Criterion, Rubric
from rubrickit.rubric.diff import SEMANTIC_FIELDS, RubricDiff, diff_paths, diff_rubrics
from rubrickit.rubric.files import save_rubric, save_rubric_set

DATA = Path(__file__).parent / "data" / "lint" / "diff"

BASE: dict[str, Any] = {
    "id": "support-reply",
    "criteria": [
        {"id": "answers", "text": "The response directly answers the question.", "weight": 3},
        {"id": "policy", "text": "The response invents a refund policy.", "weight": -5},
        {
            "id": "length",
            "text": "The response is at most 150 words.",
            "kind": "hard",
            "check": {"type": "max_words", "value": 150},
        },
        {"id": "tone", "text": "How warm the tone is.", "scale": {1: "Cold.", 5: "Warm."}},
    ],
}


def rubric(**changes: Any) -> Rubric:
    """BASE with rubric fields replaced and criteria edited: ``criteria={"answers": {"weight": 4}}``."""
    data = json.loads(json.dumps(BASE))
    edits = changes.pop("criteria", {})
    data.update(changes)
    for criterion in data["criteria"]:
        criterion.update(edits.get(criterion["id"], {}))
    return Rubric.model_validate(data)


def only(diff: RubricDiff) -> Any:
    [change] = diff.criteria
    return change


def test_identical_rubrics_have_an_empty_diff() -> None:
    diff = diff_rubrics(rubric(), rubric())
    assert diff.is_empty() and diff.change == "unchanged"
    assert diff.criteria == [] and diff.settings == {}
    assert not diff.needs_rejudge and not diff.needs_reaggregate


def test_added_criterion_needs_judging() -> None:
    new = rubric()
    new.criteria.append(Criterion(id="cites", text="The response cites the help-center article.", weight=2))
    diff = diff_rubrics(rubric(), Rubric.model_validate(new.model_dump()))
    change = only(diff)
    assert (change.change, change.criterion_id) == ("added", "cites")
    assert (change.old_weight, change.new_weight) == (None, 2)
    assert change.new_fingerprint == new.criterion("cites").fingerprint and change.old_fingerprint is None
    assert diff.needs_rejudge and diff.rejudge_ids == ["cites"]


def test_removed_criterion_only_needs_reaggregation() -> None:
    old = rubric()
    new = Rubric(id=old.id, criteria=[c for c in old.criteria if c.id != "policy"])
    diff = diff_rubrics(old, new)
    change = only(diff)
    assert (change.change, change.criterion_id) == ("removed", "policy")
    assert (change.old_weight, change.new_weight) == (-5, None)
    assert not diff.needs_rejudge and diff.needs_reaggregate
    assert diff.lines()[-2:] == [
        "! support-reply: no re-judging needed; re-aggregate the stored verdicts (rubrickit aggregate)",
        "! support-reply: in stored verdict rows: drop policy",
    ]


@pytest.mark.parametrize(
    ("criterion_id", "edit", "field"),
    [
        ("answers", {"weight": 4}, "weight"),
        ("answers", {"tags": ["axis:completeness"]}, "tags"),
        ("answers", {"category": "essential"}, "category"),
    ],
)
def test_weight_tags_and_category_changes_keep_verdicts(criterion_id: str, edit: dict[str, Any], field: str) -> None:
    diff = diff_rubrics(rubric(), rubric(criteria={criterion_id: edit}))
    change = only(diff)
    assert change.change == "changed" and change.fields == [field]
    assert change.old_fingerprint == change.new_fingerprint
    assert not change.needs_rejudge and not diff.needs_rejudge
    # Tags and category are not part of the rubric fingerprint either; the weight is.
    assert diff.needs_reaggregate == (field == "weight")


@pytest.mark.parametrize(
    ("criterion_id", "edit", "field"),
    [
        ("answers", {"text": "The response answers the question in its first sentence."}, "text"),
        ("answers", {"kind": "hard"}, "kind"),
        ("answers", {"applies_if": "The customer asks a question."}, "applies_if"),
        ("tone", {"scale": {1: "Cold.", 3: "Neutral.", 5: "Warm."}}, "scale"),
        ("length", {"check": {"type": "max_words", "value": 120}}, "check"),
    ],
)
def test_semantic_changes_need_rejudging(criterion_id: str, edit: dict[str, Any], field: str) -> None:
    assert field in SEMANTIC_FIELDS
    diff = diff_rubrics(rubric(), rubric(criteria={criterion_id: edit}))
    change = only(diff)
    assert change.change == "changed" and change.fields == [field]
    assert change.old_fingerprint != change.new_fingerprint
    assert change.needs_rejudge and diff.needs_rejudge and diff.rejudge_ids == [criterion_id]
    assert change.old[field] != change.new[field]


def test_programmatic_criteria_are_marked_so_rejudging_costs_no_judge_call() -> None:
    diff = diff_rubrics(
        rubric(),
        rubric(
            criteria={
                "length": {"check": {"type": "max_words", "value": 120}},
                "answers": {"text": "The response answers at once."},
            }
        ),
    )
    flags = {c.criterion_id: c.programmatic for c in diff.criteria}
    assert flags == {"answers": False, "length": True}
    assert "(1 by programmatic check, no judge call)" in diff.lines()[-1]


def test_weight_and_text_change_together_lists_both_fields() -> None:
    change = only(diff_rubrics(rubric(), rubric(criteria={"answers": {"weight": 1, "text": "Answers it."}})))
    assert change.fields == ["text", "weight"]
    assert (change.old_weight, change.new_weight) == (3, 1)
    assert change.needs_rejudge


def test_a_new_id_with_an_old_fingerprint_is_a_rename() -> None:
    diff = diff_rubrics(rubric(), rubric(criteria={"answers": {"id": "answers-question", "weight": 2}}))
    change = only(diff)
    assert (change.change, change.criterion_id, change.old_id) == ("renamed", "answers-question", "answers")
    assert change.fields == ["id", "weight"] and change.old == {"id": "answers", "weight": 3}
    assert not diff.needs_rejudge and diff.needs_reaggregate
    assert diff.lines()[-2:] == [
        "! support-reply: no re-judging needed; re-aggregate the stored verdicts (rubrickit aggregate)",
        "! support-reply: in stored verdict rows: criterion_id answers → answers-question",
    ]


def test_a_new_id_with_new_text_is_removed_plus_added() -> None:
    new = rubric(criteria={"answers": {"id": "answers-2", "text": "Answers it fully."}})
    diff = diff_rubrics(rubric(), new)
    assert [(c.change, c.criterion_id) for c in diff.criteria] == [
        ("added", "answers-2"),
        ("removed", "answers"),
    ]
    assert diff.rejudge_ids == ["answers-2"]


def test_renames_pair_identical_criteria_in_order() -> None:
    twin = {"text": "The response is polite."}
    old = rubric(criteria={"answers": twin, "policy": {**twin, "weight": 1}})
    new = rubric(criteria={"answers": {**twin, "id": "polite-1"}, "policy": {**twin, "id": "polite-2", "weight": 1}})
    diff = diff_rubrics(old, new)
    assert [(c.change, c.criterion_id, c.old_id) for c in diff.criteria] == [
        ("renamed", "polite-1", "answers"),
        ("renamed", "polite-2", "policy"),
    ]


def test_rubric_settings_are_reported() -> None:
    new = rubric(aggregation="points", gates="none", title="Support", version="2.0.0")
    diff = diff_rubrics(rubric(), new)
    assert diff.settings == {
        "version": (None, "2.0.0"),
        "title": (None, "Support"),
        "aggregation": ("weighted_mean", "points"),
        "gates": ("hard", "none"),
    }
    assert diff.criteria == [] and not diff.needs_rejudge and diff.needs_reaggregate
    assert diff.lines()[-1].startswith("! support-reply: no re-judging needed")


def test_metadata_only_changes_keep_the_fingerprint() -> None:
    diff = diff_rubrics(rubric(), rubric(title="Support", description="First replies."))
    assert not diff.is_empty() and set(diff.settings) == {"title", "description"}
    assert diff.old_fingerprint == diff.new_fingerprint and not diff.needs_reaggregate


def test_reordered_criteria_are_reported() -> None:
    old = rubric()
    new = Rubric(id=old.id, criteria=list(reversed(old.criteria)))
    diff = diff_rubrics(old, new)
    assert diff.criteria == []
    assert diff.settings["criteria_order"] == (
        ["answers", "policy", "length", "tone"],
        ["tone", "length", "policy", "answers"],
    )


def test_holistic_rubrics_rejudge_whole_responses() -> None:
    old = rubric(aggregation="holistic")
    weight_only = diff_rubrics(old, rubric(aggregation="holistic", criteria={"answers": {"weight": 9}}))
    assert not weight_only.rejudge_all and not weight_only.needs_rejudge
    removed = diff_rubrics(old, Rubric(id=old.id, aggregation="holistic", criteria=old.criteria[1:]))
    assert removed.rejudge_all and removed.needs_rejudge
    assert diff_rubrics(rubric(), old).rejudge_all  # switching to holistic needs a holistic judgment


def test_diff_serialises_the_rejudge_verdict() -> None:
    diff = diff_rubrics(rubric(), rubric(criteria={"answers": {"text": "Answers."}}))
    data = json.loads(diff.model_dump_json())
    assert data["needs_rejudge"] is True and data["criteria"][0]["needs_rejudge"] is True


# --------------------------------------------------------------------------- files, folders and sets


def test_fixture_files_diff_as_documented() -> None:
    [diff] = diff_paths(DATA / "old.yaml", DATA / "new.yaml")
    summary = [(c.change, c.criterion_id, c.fields, c.needs_rejudge) for c in diff.criteria]
    assert summary == [
        ("changed", "answers-question", ["weight", "tags"], False),
        ("changed", "length-limit", ["text", "check"], True),
        ("changed", "tone", ["text", "scale"], True),
        ("renamed", "greets-by-name", ["id"], False),
        ("added", "cites-article", [], True),
        ("removed", "next-steps", [], False),
    ]
    assert diff.settings == {"version": ("1.3.0", "1.4.0"), "aggregation": ("weighted_mean", "points")}
    lines = diff.lines()
    assert lines[0].startswith("~ support-reply: changed (sha256:")
    assert "~ support-reply/tone: scale.5: 'Warm.' → 'Warm and professional.'" in lines
    assert "~ support-reply/length-limit: check.value: 150 → 120" in lines
    assert "- support-reply/next-steps: removed (weight 1)" in lines
    assert lines[-2:] == [
        "! support-reply: needs re-judging of 3 criteria (1 by programmatic check, no judge "
        "call): length-limit, tone, cites-article",
        # aggregate refuses verdicts for ids the rubric does not have: say what to change in stored rows.
        "! support-reply: in stored verdict rows: criterion_id name → greets-by-name; drop next-steps",
    ]
    assert diff.renamed_ids == {"name": "greets-by-name"} and diff.removed_ids == ["next-steps"]
    assert all(line[:1] in "+-~!" for line in lines)


def test_same_file_twice_gives_no_diffs() -> None:
    assert diff_paths(DATA / "old.yaml", DATA / "old.yaml") == []
    [unchanged] = diff_paths(DATA / "old.yaml", DATA / "old.yaml", include_unchanged=True)
    assert unchanged.is_empty() and unchanged.lines()[0].startswith("  support-reply: unchanged")


def test_two_single_rubrics_are_compared_whatever_their_ids(tmp_path: Path) -> None:
    save_rubric(rubric(id="renamed-rubric"), tmp_path / "b.yaml", schema_file=False)
    [diff] = diff_paths(DATA / "old.yaml", tmp_path / "b.yaml")
    assert diff.rubric_id == "renamed-rubric"
    assert diff.settings["id"] == ("support-reply", "renamed-rubric")


def _set_rubric(prompt: str, rubric_id: str, text: str = "The response cites the 2019 guideline.") -> Rubric:
    return Rubric(id=rubric_id, prompt_id=prompt, scope="prompt", criteria=[Criterion(id="cites", text=text, weight=2)])


def test_rubric_sets_match_by_prompt_id(tmp_path: Path) -> None:
    old = [_set_rubric("q1", "r-q1"), _set_rubric("q2", "r-q2"), _set_rubric("q3", "r-q3")]
    # q1 keeps its criteria under a new rubric id (generated ids are not stable), q2 is edited, q3 dropped.
    new = [
        _set_rubric("q4", "r-q4"),
        _set_rubric("q2", "r-q2", "The response cites the 2021 guideline."),
        _set_rubric("q1", "generated-7"),
    ]
    save_rubric_set(old, tmp_path / "old.rubrics.jsonl")
    save_rubric_set(new, tmp_path / "new.rubrics.jsonl.gz")
    diffs = diff_paths(tmp_path / "old.rubrics.jsonl", tmp_path / "new.rubrics.jsonl.gz")
    assert [(d.prompt_id, d.change, d.needs_rejudge) for d in diffs] == [
        ("q4", "added", True),
        ("q2", "changed", True),
        ("q1", "changed", False),
        ("q3", "removed", False),
    ]
    added, edited, renamed, removed = diffs
    assert [c.change for c in added.criteria] == ["added"] and added.rejudge_ids == ["cites"]
    assert [c.change for c in removed.criteria] == ["removed"]
    assert edited.rejudge_ids == ["cites"] and edited.lines()[0].startswith("~ r-q2 (prompt q2): changed")
    assert renamed.settings == {"id": ("r-q1", "generated-7")} and renamed.criteria == []
    assert renamed.lines()[-1] == "! generated-7 (prompt q1): in stored verdict rows: rubric_id r-q1 → generated-7"
    assert added.lines()[-1] == "! r-q4 (prompt q4): new rubric: judge all 1 criteria"


def test_one_rubric_sets_for_different_prompts_are_not_compared(tmp_path: Path) -> None:
    save_rubric_set([_set_rubric("q1", "r")], tmp_path / "old.rubrics.jsonl")
    save_rubric_set([_set_rubric("q2", "r")], tmp_path / "new.rubrics.jsonl")
    diffs = diff_paths(tmp_path / "old.rubrics.jsonl", tmp_path / "new.rubrics.jsonl")
    assert [(d.prompt_id, d.change) for d in diffs] == [("q2", "added"), ("q1", "removed")]


def test_folders_match_rubrics_by_id(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    save_rubric(rubric(), tmp_path / "old" / "a.yaml")
    save_rubric(rubric(id="second"), tmp_path / "old" / "b.yaml")
    save_rubric(rubric(criteria={"answers": {"weight": 1}}), tmp_path / "new" / "renamed-file.yaml")
    save_rubric(rubric(id="third"), tmp_path / "new" / "c.yaml")
    diffs = diff_paths(tmp_path / "old", tmp_path / "new")
    # New-side order (files sorted: c.yaml, renamed-file.yaml), then what only the old side has.
    assert [(d.rubric_id, d.change) for d in diffs] == [
        ("third", "added"),
        ("support-reply", "changed"),
        ("second", "removed"),
    ]
    assert diffs[1].criteria[0].fields == ["weight"]
    assert not diffs[1].needs_rejudge


def test_a_rubric_id_twice_on_one_side_is_an_error(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        save_rubric(rubric(), tmp_path / name, schema_file=False)
    with pytest.raises(RubricError, match="rubric id 'support-reply' also appears in"):
        diff_paths(tmp_path, DATA)


def test_unloadable_or_missing_sides_raise(tmp_path: Path) -> None:
    with pytest.raises(RubricError, match="no such file"):
        diff_paths(tmp_path / "missing.yaml", DATA / "new.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RubricError, match="no rubric files found"):
        diff_paths(tmp_path / "empty", DATA / "new.yaml")


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.sampled_from([-2.0, 0.0, 1.0, 3.0]), min_size=4, max_size=4),
    edit=st.sampled_from(["weight", "text", "none"]),
    which=st.integers(min_value=0, max_value=3),
)
def test_rejudge_exactly_when_a_fingerprint_changes(weights: list[float], edit: str, which: int) -> None:
    old = rubric(criteria={c["id"]: {"weight": w} for c, w in zip(BASE["criteria"], weights, strict=True)})
    data = old.model_dump()
    if edit == "weight":
        data["criteria"][which]["weight"] += 1
    elif edit == "text":
        data["criteria"][which]["text"] += " Exactly."
    new = Rubric.model_validate(data)
    diff = diff_rubrics(old, new)
    changed = {c.id for c, d in zip(old.criteria, new.criteria, strict=True) if c.fingerprint != d.fingerprint}
    assert set(diff.rejudge_ids) == changed
    assert diff.needs_rejudge == (edit == "text")
    assert diff.is_empty() == (edit == "none")
    assert diff.needs_reaggregate == (old.fingerprint != new.fingerprint)


def test_docs_example_matches_the_real_output() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "lint.md").read_text(encoding="utf-8")
    command = "$ rubrickit diff tests/data/lint/diff/old.yaml tests/data/lint/diff/new.yaml\n"
    shown = docs.split(command, 1)[1].split("```", 1)[0].splitlines()
    [diff] = diff_paths(DATA / "old.yaml", DATA / "new.yaml")
    assert shown == diff.lines()
