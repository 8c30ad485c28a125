"""``rubrickit convert``: the formats of the field in and out, detection, reports, refusals and errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rubrickit.errors import ConversionError, OutputExistsError
from rubrickit.rubric import Criterion, Rubric
from rubrickit.rubric.files import load_rubric, load_rubric_set
from rubrickit.rubric.formats import convert as convert_module
from rubrickit.rubric.formats.convert import (
    FORMATS,
    convert,
    detect_format,
    format_openrubrics,
    from_healthbench,
    from_prometheus,
    from_rar,
    parse_openrubrics,
    prompt_messages,
    read_rubrics,
    to_healthbench,
    to_prometheus,
    to_rar,
    write_rubrics,
)

DATA = Path(__file__).resolve().parent / "data" / "formats"


def _rows(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _items(row: dict) -> list[tuple]:
    return [(i["criterion"], i["points"], i["tags"]) for i in row["rubrics"]]


def test_public_api_is_pinned() -> None:
    assert FORMATS == ("rubrickit", "healthbench", "rar", "prometheus", "openrubrics")
    for name in ("detect_format", "read_rubrics", "write_rubrics", "convert", "ConversionReport",
                 "from_healthbench", "to_healthbench", "from_rar", "to_rar", "from_prometheus",
                 "to_prometheus", "parse_openrubrics", "format_openrubrics"):
        assert name in convert_module.__all__
        assert getattr(convert_module, name).__doc__


# --------------------------------------------------------------------------- the shared data


@pytest.mark.shared_data
def test_healthbench_sample_becomes_500_rubrics_with_5965_criteria(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "rubrics" / "healthbench_sample.jsonl.gz"
    out = tmp_path / "healthbench.rubrics.jsonl"
    report = convert(source, out)

    assert (report.from_format, report.to_format) == ("healthbench", "rubrickit")
    assert (report.rubrics, report.criteria) == (500, 5965)
    assert report.skipped == []
    assert report.lossy == {"ideal_completions_data (reference completions)": 433}
    rubrics = load_rubric_set(out)
    assert len(rubrics) == 500
    assert sum(len(r.criteria) for r in rubrics) == 5965
    assert report.penalties == sum(1 for r in rubrics for c in r.criteria if c.weight < 0) > 0
    for rubric, row in zip(rubrics, _rows(source), strict=True):
        assert rubric.id == rubric.prompt_id == row["prompt_id"]
        assert (rubric.scope, rubric.aggregation, rubric.gates) == ("prompt", "points", "none")
        assert [c.id for c in rubric.criteria] == [f"c{i}" for i in range(1, len(row["rubrics"]) + 1)]
        assert prompt_messages(rubric.prompt) == row["prompt"]
        assert rubric.provenance.converted_from == "healthbench"
        assert rubric.provenance.parameters["example_tags"] == row["example_tags"]


@pytest.mark.shared_data
def test_healthbench_round_trip_gives_back_criteria_points_tags_and_prompts(shared_data: Path,
                                                                            tmp_path: Path) -> None:
    source = shared_data / "rubrics" / "healthbench_sample.jsonl.gz"
    convert(source, tmp_path / "set.jsonl")
    report = convert(tmp_path / "set.jsonl", tmp_path / "back.jsonl", to_fmt="healthbench")

    assert (report.rubrics, report.criteria, report.lossy) == (500, 5965, {})
    for original, back in zip(_rows(source), _rows(tmp_path / "back.jsonl"), strict=True):
        assert _items(back) == _items(original)
        assert back["prompt_id"] == original["prompt_id"]
        assert back["prompt"] == original["prompt"]
        assert back["example_tags"] == original["example_tags"]
        assert back["canary"] == original["canary"]
        assert "ideal_completions_data" not in back


@pytest.mark.shared_data
def test_biggen_bench_gives_775_scale_rubrics_and_round_trips_byte_for_byte(shared_data: Path,
                                                                           tmp_path: Path) -> None:
    source = shared_data / "rubrics" / "biggen_bench.jsonl.gz"
    report = convert(source, tmp_path / "biggen.rubrics.jsonl")

    assert (report.rubrics, report.criteria, report.scales) == (775, 775, 775)
    rubrics = load_rubric_set(tmp_path / "biggen.rubrics.jsonl")
    for rubric, row in zip(rubrics, _rows(source), strict=True):
        (criterion,) = rubric.criteria
        assert sorted(criterion.scale) == [1, 2, 3, 4, 5]
        assert criterion.text == row["score_rubric"]["criteria"]
        assert criterion.scale[5] == row["score_rubric"]["score5_description"]
        assert (rubric.id, rubric.prompt_id, rubric.prompt) == (row["id"], row["id"], row["input"])
        assert rubric.aggregation == "weighted_mean"
        assert f"capability:{row['capability']}" in criterion.tags

    convert(tmp_path / "biggen.rubrics.jsonl", tmp_path / "back.jsonl.gz", to_fmt="prometheus")
    with gzip.open(source, "rb") as a, gzip.open(tmp_path / "back.jsonl.gz", "rb") as b:
        assert a.read() == b.read()


@pytest.mark.shared_data
def test_shared_files_are_detected(shared_data: Path) -> None:
    assert detect_format(shared_data / "rubrics" / "healthbench_sample.jsonl.gz") == "healthbench"
    assert detect_format(shared_data / "rubrics" / "biggen_bench.jsonl.gz") == "prometheus"


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(("name", "fmt"), [
    ("healthbench_two.jsonl", "healthbench"),
    ("biggen_one.jsonl", "prometheus"),
    ("prometheus_rubric.json", "prometheus"),
    ("rar_items.json", "rar"),
    ("rar_rows.jsonl", "rar"),
    ("openrubrics.md", "openrubrics"),
    ("messy_rubric.yaml", "rubrickit"),
])
def test_detect_format_on_each_fixture(name: str, fmt: str) -> None:
    assert detect_format(DATA / name) == fmt


def test_detect_format_recognises_rubric_sets_and_gzip(tmp_path: Path) -> None:
    convert(DATA / "healthbench_two.jsonl", tmp_path / "set.jsonl.gz")
    assert detect_format(tmp_path / "set.jsonl.gz") == "rubrickit"
    assert len(read_rubrics(tmp_path / "set.jsonl.gz")) == 2


def test_undetectable_file_asks_for_from(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "hi", "answer": "there"}\n')
    with pytest.raises(ConversionError, match=r"odd\.jsonl: cannot tell .*pass --from"):
        detect_format(odd)
    text = tmp_path / "notes.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(ConversionError, match="pass --from"):
        detect_format(text)


def test_unknown_format_name_suggests_the_close_one(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"--from 'healthbnch' .*did you mean 'healthbench'"):
        convert(DATA / "healthbench_two.jsonl", tmp_path / "x.jsonl", from_fmt="healthbnch")


def test_output_name_without_a_known_extension_asks_for_to(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="pass --to"):
        convert(DATA / "healthbench_two.jsonl", tmp_path / "out.csv")


# --------------------------------------------------------------------------- HealthBench


def test_healthbench_row_mapping() -> None:
    row = _rows(DATA / "healthbench_two.jsonl")[0]
    rubric = from_healthbench(row)
    assert rubric.id == rubric.prompt_id == "test-0001"
    assert rubric.prompt == "Is 500 mg of paracetamol every four hours safe for me?"
    assert [(c.id, c.weight, c.is_penalty) for c in rubric.criteria] == [
        ("c1", 7, False), ("c2", 5, False), ("c3", -8, True)]
    assert rubric.criteria[0].tags == ["level:example", "axis:context_awareness"]
    assert rubric.provenance.parameters == {"example_tags": row["example_tags"], "canary": row["canary"]}
    assert to_healthbench(rubric) == {k: v for k, v in row.items() if k != "ideal_completions_data"}


def test_multi_turn_conversation_is_kept_as_json_and_read_back() -> None:
    row = _rows(DATA / "healthbench_two.jsonl")[1]
    rubric = from_healthbench(row)
    assert json.loads(rubric.prompt) == row["prompt"]
    assert prompt_messages(rubric.prompt) == row["prompt"]
    assert prompt_messages("Plain question?") == [{"role": "user", "content": "Plain question?"}]


def test_healthbench_id_that_is_not_a_slug_is_made_one_and_prompt_id_kept() -> None:
    row = {"prompt_id": "case 12/b", "prompt": "Hi", "rubrics": [{"criterion": "Greets back.", "points": 1}]}
    rubric = from_healthbench(row)
    assert (rubric.id, rubric.prompt_id) == ("case-12-b", "case 12/b")
    assert to_healthbench(rubric)["prompt_id"] == "case 12/b"


def test_healthbench_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    rows = _rows(DATA / "healthbench_two.jsonl")
    rows[1]["rubrics"][1]["points"] = "many"
    rows[1]["rubrics"][0]["criterion"] = "  "
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    with pytest.raises(ConversionError) as caught:
        read_rubrics(bad, "healthbench")
    message = str(caught.value)
    assert f"{bad}:2: rubrics[1].points: expected a number (negative for a penalty), got 'many'" in message
    assert f"{bad}:2: rubrics[0].criterion: is blank" in message
    assert f"{bad}:3: invalid JSON" in message


def test_duplicate_prompt_ids_are_an_error_naming_both_places(tmp_path: Path) -> None:
    row = _rows(DATA / "healthbench_two.jsonl")[0]
    dup = tmp_path / "dup.jsonl"
    dup.write_text((json.dumps(row) + "\n") * 2)
    with pytest.raises(ConversionError, match=r"dup\.jsonl:2: prompt id 'test-0001' already came from line"):
        read_rubrics(dup)


# --------------------------------------------------------------------------- RaR


def test_rar_prefixes_become_categories_and_weights_are_kept() -> None:
    (rubric,) = read_rubrics(DATA / "rar_items.json")
    assert rubric.id == "rar_items"
    assert [(c.id, c.category, c.weight) for c in rubric.criteria] == [
        ("imaging-choice", "essential", 5),
        ("preparation", "important", 3),
        ("low-dose-protocol", "optional", 1),
        ("contrast-caveat", "pitfall", -1),
        ("ultrasound-overreach", "pitfall", -2),
    ]
    assert rubric.criteria[1].text == "States that no fasting or bowel preparation is needed before the scan."
    assert rubric.provenance.parameters["rar_titles"]["low-dose-protocol"] == "Low-Dose Protocol"


def test_rar_pitfall_polarity_is_the_explicit_negative_weight_not_the_wording() -> None:
    items = [
        {"title": "Omission", "description": "Pitfall Criteria: Does not mention the dosage.", "weight": -2},
        {"title": "Said well", "description": "Pitfall Criteria: Mentions the dosage.", "weight": -1},
    ]
    rubric = from_rar(items, "pitfalls")
    assert [c.is_penalty for c in rubric.criteria] == [True, True]
    assert [c.text for c in rubric.criteria] == ["Does not mention the dosage.", "Mentions the dosage."]
    assert [i["weight"] for i in to_rar(rubric)] == [-2, -1]


def test_rar_items_round_trip_exactly(tmp_path: Path) -> None:
    items = json.loads((DATA / "rar_items.json").read_text())
    (rubric,) = read_rubrics(DATA / "rar_items.json")
    assert to_rar(rubric) == items
    out = tmp_path / "rar.jsonl"
    convert(DATA / "rar_rows.jsonl", tmp_path / "set.jsonl")
    report = convert(tmp_path / "set.jsonl", out, to_fmt="rar")
    assert report.criteria == 9
    originals = _rows(DATA / "rar_rows.jsonl")
    for original, back in zip(originals, _rows(out), strict=True):
        expected = {k: v for k, v in original.items() if k not in ("rubric_list", "rubric_count")}
        assert back == expected


def test_rar_rows_without_id_get_a_stable_id_from_the_question() -> None:
    first, second = read_rubrics(DATA / "rar_rows.jsonl")
    assert first.id.startswith("rar-") and len(first.id) == 16
    assert first.prompt.startswith("A 45-year-old has sudden flank pain")
    assert first.provenance.parameters["reference_answer"].startswith("Non-contrast helical CT")
    assert (second.id, second.prompt_id) == ("photosynthesis-1", "photosynthesis-1")
    assert read_rubrics(DATA / "rar_rows.jsonl")[0].id == first.id


def test_rar_missing_weight_is_an_error_not_a_guess(tmp_path: Path) -> None:
    rows = _rows(DATA / "rar_rows.jsonl")
    del rows[1]["rubric"][3]["weight"]
    bad = tmp_path / "rows.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = r"rows\.jsonl:2: rubric\[3\]\.weight: missing; RaR items carry a signed weight"
    with pytest.raises(ConversionError, match=expected):
        read_rubrics(bad)


def test_rar_item_list_errors_point_into_the_list(tmp_path: Path) -> None:
    items = json.loads((DATA / "rar_items.json").read_text())
    items[2]["weight"] = "high"
    bad = tmp_path / "items.json"
    bad.write_text(json.dumps(items))
    with pytest.raises(ConversionError, match=r"items\.json: \[2\]\.weight: expected a number, got 'high'"):
        read_rubrics(bad, "rar")


def test_positive_weight_pitfall_is_kept_and_warned_about(tmp_path: Path) -> None:
    items = [{"title": "Avoids jargon", "description": "Pitfall Criteria: Avoids jargon.", "weight": 2}]
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    report = convert(path, tmp_path / "out.yaml")
    assert load_rubric(tmp_path / "out.yaml").criteria[0].weight == 2
    assert any("pitfall criteria have a positive weight" in w for w in report.warnings)


# --------------------------------------------------------------------------- Prometheus


def test_plain_prometheus_rubric_is_one_general_scale_criterion() -> None:
    (rubric,) = read_rubrics(DATA / "prometheus_rubric.json")
    assert (rubric.id, rubric.scope, rubric.prompt_id) == ("prometheus_rubric", "general", None)
    (criterion,) = rubric.criteria
    assert criterion.text == "Is the response written in a warm and professional tone?"
    assert criterion.scale[1] == "The response is rude or dismissive."
    assert criterion.level_fraction(4) == 0.75


def test_biggen_row_round_trips_with_its_extra_fields() -> None:
    (row,) = _rows(DATA / "biggen_one.jsonl")
    rubric = from_prometheus(row)
    assert rubric.criteria[0].tags == ["capability:instruction_following", "task:test_task"]
    assert rubric.provenance.parameters["reference_answer"] == row["reference_answer"]
    back = to_prometheus(rubric)
    assert back == row and list(back) == list(row)


def test_prometheus_export_skips_rubrics_it_cannot_express(tmp_path: Path) -> None:
    expected = r"'test-0001' \(3 criteria, 0 with a scale\): a Prometheus score rubric is one criterion"
    with pytest.raises(ConversionError, match=expected):
        to_prometheus(from_healthbench(_rows(DATA / "healthbench_two.jsonl")[0]))
    both = [*read_rubrics(DATA / "biggen_one.jsonl"), *read_rubrics(DATA / "healthbench_two.jsonl")]
    write_rubrics(both, tmp_path / "mixed.jsonl")
    report = convert(tmp_path / "mixed.jsonl", tmp_path / "prom.jsonl", to_fmt="prometheus")
    assert report.rubrics == 1
    assert len(report.skipped) == 2 and "test-0001" in report.skipped[0]
    with pytest.raises(ConversionError, match="nothing to write"):
        convert(DATA / "healthbench_two.jsonl", tmp_path / "none.jsonl", to_fmt="prometheus")
    assert not (tmp_path / "none.jsonl").exists()


def test_prometheus_row_missing_a_level_names_the_field(tmp_path: Path) -> None:
    (row,) = _rows(DATA / "biggen_one.jsonl")
    del row["score_rubric"]["score3_description"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(ConversionError, match=r"bad\.jsonl:1: score_rubric\.score3_description: expected a "
                                              r"non-blank string \(missing\)"):
        read_rubrics(bad)


# --------------------------------------------------------------------------- OpenRubrics


def test_openrubrics_parsing_tolerates_bullets_bold_headings_and_wrapped_items() -> None:
    (rubric,) = read_rubrics(DATA / "openrubrics.md")
    assert [(c.id, c.kind) for c in rubric.criteria] == [
        ("r1", "hard"), ("r2", "hard"), ("r3", "hard"), ("r4", "principle"), ("r5", "principle")]
    assert rubric.criteria[2].text == "The response keeps each description under three sentences."
    assert rubric.criteria[4].text == (
        "The response uses engaging language that stimulates curiosity, without sensationalising the "
        "artifacts.")
    assert rubric.gates == "hard"


def test_openrubrics_format_then_parse_round_trips() -> None:
    (rubric,) = read_rubrics(DATA / "openrubrics.md")
    text = format_openrubrics(rubric)
    assert text.splitlines()[0] == "1. The response includes exactly five distinct artifacts. [Hard Rule]"
    again = parse_openrubrics(text, rubric.id)
    assert [(c.id, c.kind, c.text) for c in again.criteria] == [
        (c.id, c.kind, c.text) for c in rubric.criteria]
    assert format_openrubrics(again) == text


def test_openrubrics_item_without_tag_is_an_error_naming_the_line() -> None:
    expected = r"openrubrics_missing_tag\.txt:2: 'The response is polite\.' has no \[Hard Rule\] or \["
    with pytest.raises(ConversionError, match=expected):
        read_rubrics(DATA / "openrubrics_missing_tag.txt")
    with pytest.raises(ConversionError, match=r"line 3: 'Some stray remark\.' is outside a numbered item"):
        parse_openrubrics("1. The response is short. [Hard Rule]\n\nSome stray remark.\n", "x")
    with pytest.raises(ConversionError, match="no numbered items found"):
        parse_openrubrics("Just prose.\n", "x")


def test_openrubrics_export_refuses_or_skips_penalties(tmp_path: Path) -> None:
    rubric = from_healthbench(_rows(DATA / "healthbench_two.jsonl")[0])
    expected = r"criterion 'c3' \(weight -8\): a penalty; OpenRubrics items have no polarity"
    with pytest.raises(ConversionError, match=expected):
        format_openrubrics(rubric)
    assert format_openrubrics(rubric, drop_unrepresentable=True).count("[Principle]") == 2
    with pytest.raises(ConversionError, match="skip_unrepresentable=True"):
        write_rubrics([rubric], tmp_path / "list.txt")
    write_rubrics([rubric], tmp_path / "list.txt", skip_unrepresentable=True)
    assert len((tmp_path / "list.txt").read_text().splitlines()) == 2
    report = convert(DATA / "healthbench_two.jsonl", tmp_path / "rows.jsonl", to_fmt="openrubrics")
    assert (report.rubrics, report.criteria, len(report.skipped)) == (2, 3, 2)
    assert {r.id for r in read_rubrics(tmp_path / "rows.jsonl")} == {"test-0001", "test-0002"}


_statement = st.text(st.sampled_from("abcdefgh XYZ,;'-"), min_size=1, max_size=40).map(
    lambda s: "The response " + " ".join(s.split()) + "."
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_statement, st.sampled_from(["hard", "principle"])), min_size=1, max_size=8))
def test_openrubrics_round_trip_property(items: list[tuple[str, str]]) -> None:
    rubric = Rubric(id="prop", criteria=[Criterion(id=f"r{i}", text=t, kind=k)
                                         for i, (t, k) in enumerate(items, start=1)])
    again = parse_openrubrics(format_openrubrics(rubric), "prop")
    assert [(c.text, c.kind) for c in again.criteria] == items


# --------------------------------------------------------------------------- rubrickit files, writing


def test_yaml_normalisation_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "rubric.yaml", tmp_path / "b" / "rubric.yaml"
    report = convert(DATA / "messy_rubric.yaml", first)
    assert (report.from_format, report.to_format, report.criteria) == ("rubrickit", "rubrickit", 3)
    convert(first, second)
    assert first.read_bytes() == second.read_bytes()
    convert(DATA / "messy_rubric.yaml", first, overwrite=True)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    assert "weight: 3\n" in text and "scale:\n    1: Rude or dismissive." in text
    assert load_rubric(first) == load_rubric(DATA / "messy_rubric.yaml")


def test_existing_output_is_never_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    with pytest.raises(OutputExistsError, match="pass --force"):
        convert(DATA / "healthbench_two.jsonl", out)
    assert out.read_text() == "precious\n"
    with pytest.raises(OutputExistsError, match="pass --force"):
        write_rubrics(read_rubrics(DATA / "rar_items.json"), tmp_path / "out.jsonl", "rar")
    convert(DATA / "healthbench_two.jsonl", out, overwrite=True)
    assert len(load_rubric_set(out)) == 2


def test_several_rubrics_do_not_fit_one_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="2 rubrics cannot go in one .yaml file; write a .jsonl rubric"):
        convert(DATA / "healthbench_two.jsonl", tmp_path / "two.yaml")


def test_general_rubric_cannot_join_a_rubric_set(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="needs a distinct prompt_id"):
        convert(DATA / "openrubrics.md", tmp_path / "set.jsonl")


def test_field_formats_write_json_arrays_too(tmp_path: Path) -> None:
    convert(DATA / "healthbench_two.jsonl", tmp_path / "rows.json", to_fmt="healthbench")
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["prompt_id"] for r in rows] == ["test-0001", "test-0002"]
    assert [r.id for r in read_rubrics(tmp_path / "rows.json")] == ["test-0001", "test-0002"]


def test_report_summary_and_provenance_source(tmp_path: Path) -> None:
    report = convert(DATA / "healthbench_two.jsonl", tmp_path / "set.jsonl")
    assert report.summary().splitlines()[0] == (
        "healthbench → rubrickit: 2 rubrics, 5 criteria (5 principle; 2 penalties)")
    assert "ideal_completions_data (reference completions) ×1" in report.summary()
    assert report.to_dict()["by_kind"] == {"principle": 5}
    source = load_rubric_set(tmp_path / "set.jsonl").rubrics[0].provenance.source
    assert source.startswith("healthbench_two.jsonl#sha256=") and len(source.split("=")[1]) == 16


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"nope\.jsonl: no such file"):
        convert(tmp_path / "nope.jsonl", tmp_path / "out.jsonl")


def test_cli_convert_is_a_thin_call_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rubrickit.cli import app

    out = tmp_path / "rubric.yaml"
    args = ["convert", str(DATA / "rar_items.json"), "-o", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "rar → rubrickit: 1 rubric, 5 criteria" in first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "pass --force" in again.output
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
