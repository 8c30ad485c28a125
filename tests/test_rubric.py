"""Rubric files: the data model, loading errors with file/line/field, deterministic atomic saving, fingerprints."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rubrickit.errors import OutputExistsError, RubricError
from rubrickit.rubric import Criterion, Provenance, Rubric, ScoreRecord, Verdict, VerdictRow
from rubrickit.rubric.files import (
    SCHEMA_FILENAME,
    criterion_lines,
    dump_rubric_json,
    dump_rubric_yaml,
    load_rubric,
    load_rubric_set,
    load_rubrics,
    parse_rubric,
    rubric_json_schema,
    save_rubric,
    save_rubric_set,
    validate_paths,
)

GOOD = """\
rubrickit: 1
id: support-reply
version: 1.3.0
title: Customer-support reply quality
aggregation: weighted_mean
gates: hard
criteria:
  - id: answers-question
    text: The response directly answers the customer's question.
    weight: 3
    category: essential
    tags: [axis:completeness]
  - id: invents-policy
    text: The response states a refund or warranty policy that the ticket does not support.
    weight: -5
  - id: length-limit
    text: The response is at most 150 words.
    kind: hard
    check: {type: max_words, value: 150}
  - id: tone
    text: How warm and professional the tone is.
    scale: {1: Rude or dismissive., 3: Neutral., 5: Warm and professional.}
  - id: dosage
    text: The response gives a dosage with units.
    applies_if: The user asks about medication dosage.
provenance:
  method: manual
  created: 2026-11-22
"""


def write(tmp_path: Path, text: str, name: str = "support.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(RubricError) as info:
        load_rubric(write(tmp_path, text))
    return str(info.value)


# --------------------------------------------------------------------------- the model


def test_good_rubric_loads_with_defaults_and_semantics(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    assert [c.id for c in rubric.criteria] == ["answers-question", "invents-policy", "length-limit", "tone", "dosage"]
    assert rubric.criterion("invents-policy").is_penalty
    assert rubric.criterion("answers-question").kind == "principle"
    assert rubric.criterion("dosage").weight == 1.0
    assert rubric.criterion("length-limit").check is not None
    assert rubric.criterion("tone").level_fraction(3) == 0.5
    assert rubric.provenance is not None and rubric.provenance.created == "2026-11-22"


def test_every_field_has_a_docstring_for_the_schema() -> None:
    for model in (Rubric, Criterion, Provenance, Verdict, VerdictRow, ScoreRecord):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"


def test_score_record_fields_are_the_public_contract() -> None:
    assert list(ScoreRecord.model_fields)[:8] == [
        "item_id", "rubric_id", "rubric_fingerprint", "reward", "coverage", "gates_failed", "judge", "verdicts"]
    assert list(Verdict.model_fields)[:6] == [
        "criterion_id", "criterion_fingerprint", "verdict", "p_met", "level", "rationale"]


def test_unknown_criterion_lookup_names_known_ids(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    with pytest.raises(LookupError, match="answers-question"):
        rubric.criterion("nope")


# --------------------------------------------------------------------------- errors with file, line and field


def test_wrong_type_names_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("weight: -5", "weight: high")
    message = error_of(tmp_path, text)
    assert message == f"{tmp_path / 'support.yaml'}:15: criteria[1].weight: expected a number, got 'high'"


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    text = GOOD.replace("    weight: 3\n", "    weight: 3\n   oops: [\n")
    message = error_of(tmp_path, text)
    assert "support.yaml:" in message and "YAML syntax error" in message
    line = int(message.split(":")[1])
    assert 10 <= line <= 12


def test_duplicate_criterion_id_points_at_second_use(tmp_path: Path) -> None:
    text = GOOD.replace("id: tone", "id: answers-question")
    message = error_of(tmp_path, text)
    expected = ":20: criteria[3].id: duplicate criterion id 'answers-question' (first used by criteria[0], line 8)"
    assert expected in message


def test_duplicate_yaml_key_is_an_error_not_last_wins(tmp_path: Path) -> None:
    text = GOOD.replace("    weight: 3\n", "    weight: 3\n    weight: 4\n")
    message = error_of(tmp_path, text)
    assert ":11: criteria[0].weight: duplicate key 'weight' (first on line 10)" in message


def test_unknown_key_is_an_error_with_suggestion(tmp_path: Path) -> None:
    text = GOOD.replace("    weight: 3\n", "    wieght: 3\n")
    message = error_of(tmp_path, text)
    assert ":10: criteria[0].wieght: unknown key 'wieght'; did you mean 'weight'?" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("gates: hard", "gates: hard\nauthor: me"))
    assert ":7: author: unknown key 'author'" in message


def test_missing_text_reports_the_criterion(tmp_path: Path) -> None:
    text = GOOD.replace("    text: The response gives a dosage with units.\n", "")
    message = error_of(tmp_path, text)
    assert "criteria[4].text: missing required field" in message
    assert ":23:" in message  # the line of the criterion that lacks it


def test_bad_literal_lists_choices(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("kind: hard", "kind: strict"))
    assert "criteria[2].kind: expected one of 'hard' or 'principle', got 'strict'" in message


def test_unquoted_yes_is_explained(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("category: essential", "category: yes"))
    assert "criteria[0].category" in message and "quote the text" in message


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = GOOD.replace("weight: 3", "weight: x").replace("weight: -5", "weight: y")
    with pytest.raises(RubricError) as info:
        load_rubric(write(tmp_path, text))
    assert len(info.value.problems) == 2


def test_bad_check_parameter_points_into_the_check(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("value: 150", "value: many"))
    assert ":19: criteria[2].check.value:" in message and "'many'" in message


def test_unknown_check_type_lists_known_types(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("type: max_words", "type: max_wordz"))
    assert "criteria[2].check" in message and "max_wordz" in message and "max_words" in message


def test_bad_ids_and_values(tmp_path: Path) -> None:
    assert "not a slug" in error_of(tmp_path, GOOD.replace("id: support-reply", "id: support reply"))
    assert "finite" in error_of(tmp_path, GOOD.replace("weight: 3", "weight: .nan"))
    assert "at least 1" in error_of(tmp_path, "id: x\ncriteria: []\n")
    assert "empty" in error_of(tmp_path, "")
    assert "expected a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(RubricError, match="no such file"):
        load_rubric(tmp_path / "absent.yaml")
    bad = tmp_path / "latin.yaml"
    bad.write_bytes("id: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RubricError, match="UTF-8"):
        load_rubric(bad)


# --------------------------------------------------------------------------- saving


def test_saved_yaml_is_deterministic_and_byte_identical_on_resave(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    first = save_rubric(rubric, tmp_path / "out.yaml").read_bytes()
    second = save_rubric(load_rubric(tmp_path / "out.yaml"), tmp_path / "out.yaml").read_bytes()
    assert first == second
    text = first.decode()
    assert text.startswith(f"# yaml-language-server: $schema={SCHEMA_FILENAME}\n")
    assert "weight: 3\n" in text and "weight: 3.0" not in text  # integral weights stay integers
    assert "kind: principle" not in text  # defaults are left out
    assert (tmp_path / SCHEMA_FILENAME).exists()
    assert load_rubric(tmp_path / "out.yaml") == rubric


def test_save_refuses_to_overwrite_when_asked(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    target = write(tmp_path, "precious: true\n", "mine.yaml")
    with pytest.raises(OutputExistsError, match="--force"):
        save_rubric(rubric, target, overwrite=False)
    assert target.read_text() == "precious: true\n"


def test_save_is_atomic_no_temp_files_left(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    save_rubric(rubric, tmp_path / "a" / "out.yaml")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out.yaml", SCHEMA_FILENAME]


def test_multiline_text_saved_as_block(tmp_path: Path) -> None:
    rubric = Rubric(id="r", criteria=[Criterion(id="c", text="Line one.\nLine two.")])
    text = dump_rubric_yaml(rubric)
    assert "text: |-\n" in text
    assert parse_rubric(text) == rubric


def test_schema_describes_fields_and_validates_a_saved_rubric(tmp_path: Path) -> None:
    import jsonschema

    schema = rubric_json_schema()
    assert schema["properties"]["aggregation"]["description"].startswith("How verdicts become a reward")
    rubric = load_rubric(write(tmp_path, GOOD))
    jsonschema.validate(yaml.safe_load(dump_rubric_yaml(rubric)), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "x", "criteria": [{"id": "c", "text": "t", "wieght": 1}]}, schema)


# --------------------------------------------------------------------------- rubric sets


def test_rubric_set_round_trip_gzip(tmp_path: Path) -> None:
    rubrics = [
        Rubric(id=f"p{i}", scope="prompt", prompt_id=f"p{i}",
               criteria=[Criterion(id="c1", text="Says hello.", weight=i + 1),
                         Criterion(id="c2", text="Rates it.", scale={1: "Bad.", 2: "Good."})])
        for i in range(3)
    ]
    path = save_rubric_set(rubrics, tmp_path / "set.jsonl.gz")
    loaded = load_rubric_set(path)
    assert list(loaded) == rubrics
    assert loaded.for_prompt("p2").criteria[0].weight == 3
    assert path.read_bytes() == save_rubric_set(list(loaded), tmp_path / "set.jsonl.gz").read_bytes()
    assert len(gzip.decompress(path.read_bytes()).decode().splitlines()) == 3


def test_rubric_set_errors_name_the_line(tmp_path: Path) -> None:
    good = json.loads(dump_rubric_json(Rubric(id="a", prompt_id="a", criteria=[Criterion(id="c", text="t")])))
    bad_weight = {**good, "id": "b", "prompt_id": "b", "criteria": [{"id": "c", "text": "t", "weight": "high"}]}
    lines = [json.dumps(good), "{not json", json.dumps(bad_weight), json.dumps({**good, "id": "z"}),
             json.dumps({**good, "id": "q", "prompt_id": None})]
    path = write(tmp_path, "\n".join(lines) + "\n", "set.jsonl")
    with pytest.raises(RubricError) as info:
        load_rubric_set(path)
    problems = info.value.problems
    assert problems[0].startswith(f"{path}:2: invalid JSON")
    assert problems[1] == f"{path}:3: criteria[0].weight: expected a number, got 'high'"
    assert problems[2] == f"{path}:4: prompt_id: 'a' already has a rubric on line 1"
    assert problems[3].startswith(f"{path}:5: prompt_id: missing")


def test_load_rubrics_dispatches_on_suffix(tmp_path: Path) -> None:
    single = write(tmp_path, GOOD)
    assert len(load_rubrics(single)) == 1
    rubric = load_rubric(single).model_copy(update={"prompt_id": "x"})
    save_rubric_set([rubric], tmp_path / "s.jsonl")
    assert load_rubrics(tmp_path / "s.jsonl")[0].prompt_id == "x"
    with pytest.raises(RubricError, match="rubric set"):
        load_rubric(tmp_path / "s.jsonl")


def test_json_rubric_file_gets_lines_too(tmp_path: Path) -> None:
    data = json.loads(dump_rubric_json(load_rubric(write(tmp_path, GOOD))))
    data["criteria"][1]["weight"] = "high"
    path = write(tmp_path, json.dumps(data, indent=2), "r.json")
    with pytest.raises(RubricError, match=r"r\.json:\d+: criteria\[1\]\.weight: expected a number"):
        load_rubric(path)


def test_validate_paths_recurses_and_reports(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write(tmp_path, GOOD, "a/good.yaml")
    write(tmp_path, GOOD.replace("weight: 3", "weight: x"), "a/bad.yaml")
    write(tmp_path, "{}", f"a/{SCHEMA_FILENAME}")
    reports = {Path(r.path).name: r for r in validate_paths([tmp_path])}
    assert set(reports) == {"good.yaml", "bad.yaml"}
    assert reports["good.yaml"].criteria == 5 and not reports["good.yaml"].problems
    assert "criteria[0].weight" in reports["bad.yaml"].problems[0]


def test_criterion_lines(tmp_path: Path) -> None:
    lines = criterion_lines(write(tmp_path, GOOD))
    assert lines[("support-reply", "answers-question")] == 8
    assert lines[("support-reply", "dosage")] == 23


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_tracks_semantics_not_weight_or_tags(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    criterion = rubric.criteria[0]
    reweighted = criterion.model_copy(update={"weight": 9, "tags": ["x"], "category": "optional"})
    assert reweighted.fingerprint == criterion.fingerprint
    reworded = criterion.model_copy(update={"text": criterion.text + " Briefly."})
    assert reworded.fingerprint != criterion.fingerprint
    assert criterion.model_copy(update={"kind": "hard"}).fingerprint != criterion.fingerprint
    assert criterion.fingerprint.startswith("sha256:") and len(criterion.fingerprint) == 23
    # The rubric fingerprint does see weights, and 3 == 3.0.
    assert rubric.model_copy(update={"criteria": [reweighted, *rubric.criteria[1:]]}).fingerprint != rubric.fingerprint
    same = rubric.model_copy(update={"criteria": [criterion.model_copy(update={"weight": 3.0}), *rubric.criteria[1:]]})
    assert same.fingerprint == rubric.fingerprint


def test_fingerprint_is_stable_across_save_and_load(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, GOOD))
    again = load_rubric(save_rubric(rubric, tmp_path / "o.yaml"))
    assert again.fingerprint == rubric.fingerprint
    assert [c.fingerprint for c in again.criteria] == [c.fingerprint for c in rubric.criteria]


# --------------------------------------------------------------------------- property-based round trip

slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029"),
                min_size=1, max_size=40).filter(lambda s: s.strip())
weights = st.one_of(st.integers(-10, 10).map(float), st.floats(-10, 10, allow_nan=False, allow_infinity=False))


@st.composite
def criteria_lists(draw: st.DrawFn) -> list[Criterion]:
    ids = draw(st.lists(slugs, min_size=1, max_size=5, unique=True))
    out = []
    for cid in ids:
        scale = draw(st.one_of(st.none(), st.dictionaries(st.integers(0, 10), texts, min_size=2, max_size=4)))
        out.append(Criterion(
            id=cid, text=draw(texts), kind=draw(st.sampled_from(["hard", "principle"])), weight=draw(weights),
            category=draw(st.one_of(st.none(), st.sampled_from(["essential", "pitfall", "core"]))),
            tags=draw(st.lists(texts, max_size=2)), scale=scale,
            applies_if=draw(st.one_of(st.none(), texts)),
        ))
    return out


rubrics_strategy = st.builds(
    Rubric, id=slugs, criteria=criteria_lists(), title=st.one_of(st.none(), texts),
    description=st.one_of(st.none(), texts), aggregation=st.sampled_from(["weighted_mean", "points", "sum"]),
    gates=st.sampled_from(["none", "hard"]), soft=st.booleans(), prompt_id=st.one_of(st.none(), slugs),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rubric=rubrics_strategy)
def test_property_yaml_round_trip_is_lossless_and_stable(rubric: Rubric) -> None:
    text = dump_rubric_yaml(rubric)
    loaded = parse_rubric(text)
    assert loaded == rubric
    assert loaded.fingerprint == rubric.fingerprint
    assert dump_rubric_yaml(loaded) == text


@settings(max_examples=100, deadline=None)
@given(rubric=rubrics_strategy)
def test_property_json_round_trip(rubric: Rubric) -> None:
    line = dump_rubric_json(rubric)
    assert "\n" not in line
    assert Rubric.model_validate(json.loads(line)) == rubric
