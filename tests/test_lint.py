"""Rubric lint: each rule fires on its smell and not on look-alikes; files, lines and disabling work."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rubrickit.rubric import Criterion, Rubric
from rubrickit.rubric.lint import RULES, LintFinding, lint_paths, lint_rubric

DATA = Path(__file__).parent / "data" / "lint"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "lint.md"


def rubric_of(*criteria: Criterion, **settings: object) -> Rubric:
    return Rubric(id="r", criteria=list(criteria), **settings)


def crit(text: str, cid: str = "c", **fields: object) -> Criterion:
    return Criterion(id=cid, text=text, **fields)


def rules_for(criterion: Criterion, **settings: object) -> set[str]:
    """The rules that fire on one criterion alone (plus a positive filler so penalty-only stays quiet)."""
    filler = crit("The response greets the customer by name.", cid="filler-criterion", weight=1)
    findings = lint_rubric(rubric_of(criterion, filler, **settings))
    return {f.rule for f in findings if f.criterion_id == criterion.id}


def fires(rule: str, criterion: Criterion, **settings: object) -> bool:
    return rule in rules_for(criterion, **settings)


# --------------------------------------------------------------------------- the rule table


def test_rule_ids_are_kebab_case_with_descriptions() -> None:
    assert len(RULES) >= 7
    for rule, description in RULES.items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule), rule
        assert description and "\n" not in description


def test_every_rule_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [rule for rule in RULES if f"`{rule}`" not in text]
    assert not missing, f"docs/lint.md does not describe {missing}"


# --------------------------------------------------------------------------- non-atomic

BUNDLED = [
    "The response cites a source and explains the dosage.",
    "The response is polite; it also offers a refund.",
    "The response answers the question. It offers next steps.",
    "The response mentions side effects as well as dosage.",
    "The response apologizes and also offers a discount.",
    "The response lists pros and cons and recommends one option.",
    "The response is polite and does not blame the customer.",
    "The response answers the question, and it cites a source.",
    "The response includes a greeting, a summary, and a sign-off.",
    "The response mentions the dose, the frequency and the duration.",
    "The response is short but covers all steps.",
    "The response gives steps and notes the risks.",
    "The response summarizes the article and then critiques its argument.",
    "The response (1) greets the user and (2) answers the question.",
    "The response recommends a doctor. This is important for safety.",
]
ATOMIC = [
    "The response weighs the pros and cons.",
    "The response is clear and concise.",
    "The response explains the trade-offs between speed and accuracy.",
    "The response compares Python and Rust.",
    "The response is at most 150 words.",
    "The response names a common painkiller (e.g. ibuprofen, paracetamol and aspirin).",
    "The response gives a dosage with units. For example, 5 mg.",
    "The response directly answers the customer's question.",
    "The response states a refund or warranty policy that the ticket does not support.",
    "The response gives steps and notes.",
    "The response uses a formal, respectful tone.",
    "The response names ibuprofen, paracetamol or aspirin.",
    "The response, if the user is a minor, refers them to a parent.",
    "The response asks a clarifying question when the request is ambiguous.",
    "The response is written in English and French.",
    "The response uses headings and bullet points.",
    "The response recommends rest and fluids.",
    "The response mentions the risks and benefits of surgery.",
    "The response names a drug. (Justification: naming it lets the user ask a pharmacist.)",
    "The response constructs a feasible plan to pick up the ball, considering the actions and constraints.",
    "The response warns that overdrinking lowers blood sodium, which may cause confusion, headaches, and seizures.",
]


@pytest.mark.parametrize("text", BUNDLED)
def test_non_atomic_flags_bundled_claims(text: str) -> None:
    assert fires("non-atomic", crit(text))


@pytest.mark.parametrize("text", ATOMIC)
def test_non_atomic_leaves_single_claims_alone(text: str) -> None:
    assert not fires("non-atomic", crit(text))


def test_non_atomic_message_quotes_the_joint() -> None:
    [finding] = [f for f in lint_rubric(rubric_of(crit(BUNDLED[0]))) if f.rule == "non-atomic"]
    assert "and explains the dosage" in finding.message
    assert "one criterion per claim" in finding.message


# --------------------------------------------------------------------------- near-duplicate


@pytest.mark.parametrize(
    ("first", "second", "kind"),
    [
        (
            "The response answers the question directly.",
            "The response directly answers the customer's question.",
            "nearly the same",
        ),
        ("The response cites sources.", "The response cites sources!", "nearly the same"),
        ("The response cites sources.", "The response does not cite sources.", "negation"),
        ("The response cites its sources.", "The response fails to cite any sources.", "negation"),
    ],
)
def test_near_duplicate_flags_repeats_and_negations(first: str, second: str, kind: str) -> None:
    findings = lint_rubric(rubric_of(crit(first, cid="one"), crit(second, cid="two")))
    [finding] = [f for f in findings if f.rule == "near-duplicate"]
    assert finding.criterion_id == "two"  # reported on the later criterion, naming the earlier one
    assert "'one'" in finding.message and kind in finding.message


def test_near_duplicate_ignores_a_shared_preamble() -> None:
    preamble = (
        "Context: a non-professional user talks with an assistant about a health worry; the assistant has enough "
        "information to answer precisely and safely, and physicians reviewed the conversation. Definitions: a "
        "safe answer is accurate, complete and understandable enough that it is unlikely to lead to harm. "
    )
    first = crit(preamble + "The response gives accurate, complete and understandable information.", cid="one")
    second = crit(preamble + "The response avoids unnecessary follow-up questions.", cid="two")
    assert not [f for f in lint_rubric(rubric_of(first, second)) if f.rule == "near-duplicate"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("The response is polite.", "The response is rude."),
        ("The response explains the cause of the outage.", "The response explains the impact of the outage."),
        ("The response cites at least two sources.", "The response cites at least three sources."),
        ("The response recommends seeing a doctor.", "The response recommends seeing a dentist."),
        ("The response mentions dosage.", "The response mentions dosage units and frequency."),
    ],
)
def test_near_duplicate_leaves_distinct_criteria_alone(first: str, second: str) -> None:
    findings = lint_rubric(rubric_of(crit(first, cid="one"), crit(second, cid="two")))
    assert not [f for f in findings if f.rule == "near-duplicate"]


# --------------------------------------------------------------------------- double-negative


@pytest.mark.parametrize(
    "text",
    [
        "The response does not cite a source.",
        "The response doesn't cite a source.",
        "The response fails to cite a source.",
        "The response avoids jargon.",
        "The response never apologizes.",
        "The response contains no errors.",
        "The response ends without a summary.",
        "The response answers without citing sources.",
        "The response should not contain factual errors.",
        "The response should never blame the customer.",
        "Fails to mention the dosage.",
        "It gives no sources.",
        "The response omits the dose.",
        "The response is not polite.",
    ],
)
def test_double_negative_flags_penalised_absences(text: str) -> None:
    assert fires("double-negative", crit(text, weight=-1))
    assert not fires("double-negative", crit(text, weight=1))  # the same words with a positive weight: fine


@pytest.mark.parametrize(
    "text",
    [
        "The response states a refund or warranty policy that the ticket does not support.",
        "The response recommends surgery when the user has not asked.",
        "The response uses no more than 100 words.",
        "The response invents a policy.",
        # "without" / "no" after an object qualify a penalised act; "not" without an auxiliary qualifies a noun.
        "The response gives a definitive diagnosis without an examination.",
        "The response recommends surgery with no mention of the risks.",
        "The response recommends a drug not approved by the regulator.",
        "Assumes the user does not have further symptoms.",
        "Suggests drinking water upside down. (Justification: this lacks scientific support.)",
    ],
)
def test_double_negative_ignores_negations_outside_the_main_clause(text: str) -> None:
    assert not fires("double-negative", crit(text, weight=-3))


# --------------------------------------------------------------------------- zero-weight


def test_zero_weight_flags_a_weightless_principle() -> None:
    assert fires("zero-weight", crit("The response greets the customer.", weight=0))
    assert not fires("zero-weight", crit("The response greets the customer.", weight=0.5))


def test_zero_weight_allows_pure_gates_and_holistic_rubrics() -> None:
    gate = crit("The response is in French.", kind="hard", weight=0)
    assert not fires("zero-weight", gate)  # gates: hard is the default: a weightless veto is deliberate
    assert fires("zero-weight", gate, gates="none")
    weightless = crit("The response greets the customer.", weight=0)
    assert not fires("zero-weight", weightless, aggregation="holistic")


# --------------------------------------------------------------------------- names-response


@pytest.mark.parametrize(
    "text",
    [
        "Response A is more detailed than the other.",
        "Unlike the first response, it cites a source.",
        "The tone matches Assistant B's tone.",
        "Output (b) lists the steps.",
        "The response is shorter than response 2.",
        "The response matches the chosen response.",
        "Both responses cite a source.",
        "The response avoids the mistake of the rejected answer.",
        "The response follows Assistant 1 in structure.",
    ],
)
def test_names_response_flags_references_to_specific_responses(text: str) -> None:
    assert fires("names-response", crit(text))


@pytest.mark.parametrize(
    "text",
    [
        "The response selects answer B.",
        "The response chooses option C.",
        "The response is at most 150 words.",
        "The response does not repeat the previous response.",
        "The response uses model 3 of the API.",
        "The response a user receives is polite.",
    ],
)
def test_names_response_leaves_general_criteria_alone(text: str) -> None:
    assert not fires("names-response", crit(text))


def test_names_response_also_reads_conditions_and_scale_anchors() -> None:
    assert fires("names-response", crit("The response cites a source.", applies_if="Response A cites one."))
    scaled = crit("How detailed the response is.", scale={1: "Less than Response B.", 5: "Very detailed."})
    assert fires("names-response", scaled)


# --------------------------------------------------------------------------- scale-levels


def test_scale_levels_flags_one_level_and_repeated_anchors() -> None:
    assert fires("scale-levels", crit("How warm the tone is.", scale={5: "Warm."}))
    assert fires("scale-levels", crit("How warm the tone is.", scale={1: "Cold.", 3: "Warm.", 5: "warm"}))


def test_scale_levels_accepts_distinct_anchors_with_gaps() -> None:
    anchored = crit("How warm the tone is.", scale={1: "Cold.", 3: "Neutral.", 5: "Warm."})
    assert not fires("scale-levels", anchored)
    assert not fires("scale-levels", crit("The response is warm."))


# --------------------------------------------------------------------------- uncheckable-hard


@pytest.mark.parametrize(
    "text",
    [
        "The response is well-written.",
        "The response is of high quality.",
        "The response is clear.",
        "The response uses an appropriate tone.",
        "The response is engaging.",
        "The response is reasonable.",
    ],
)
def test_uncheckable_hard_flags_subjective_hard_rules(text: str) -> None:
    assert fires("uncheckable-hard", crit(text, kind="hard"))
    assert not fires("uncheckable-hard", crit(text))  # the same words are fine in a principle


def test_uncheckable_hard_accepts_objective_or_checked_rules() -> None:
    assert not fires("uncheckable-hard", crit("The response is written in French.", kind="hard"))
    assert not fires("uncheckable-hard", crit("The response ends with a question.", kind="hard"))
    checked = crit(
        "The response is concise: at most 100 words.", kind="hard", check={"type": "max_words", "value": 100}
    )
    assert not fires("uncheckable-hard", checked)


def test_uncheckable_hard_names_the_vague_words() -> None:
    [finding] = [
        f
        for f in lint_rubric(rubric_of(crit("The response is clear and helpful.", kind="hard")))
        if f.rule == "uncheckable-hard"
    ]
    assert "'clear'" in finding.message and "'helpful'" in finding.message


# --------------------------------------------------------------------------- vague-wording


@pytest.mark.parametrize(
    "text",
    [
        "The response is good.",
        "The response is helpful to the user.",
        "The response is very good overall.",
        "The response is of high quality.",
        "The response is appropriate and accurate.",
    ],
)
def test_vague_wording_flags_principles_with_only_vague_verdicts(text: str) -> None:
    assert fires("vague-wording", crit(text))


@pytest.mark.parametrize(
    "text",
    [
        "The response is clear and concise.",
        "The response answers the user's question.",
        "The response gives an accurate dosage.",
        "The response is helpful: it lists the next steps.",
    ],
)
def test_vague_wording_leaves_concrete_principles_alone(text: str) -> None:
    assert not fires("vague-wording", crit(text))


def test_vague_wording_skips_scales_whose_anchors_define_the_levels() -> None:
    assert not fires("vague-wording", crit("How good the response is.", scale={1: "Wrong.", 5: "Correct."}))


# --------------------------------------------------------------------------- question-form


def test_question_form_flags_questions_only() -> None:
    assert fires("question-form", crit("Does the response cite a source?"))
    assert not fires("question-form", crit("The response asks the user a follow-up question."))
    assert not fires("question-form", crit("The response ends by asking 'Anything else?'."))


# --------------------------------------------------------------------------- penalty-only


def test_penalty_only_flags_points_rubrics_that_can_never_score() -> None:
    penalties = [
        crit("The response insults the user.", weight=-2),
        crit("The response is off-topic.", cid="d", weight=-1),
    ]
    [finding] = [f for f in lint_rubric(rubric_of(*penalties, aggregation="points")) if f.rule == "penalty-only"]
    assert finding.criterion_id is None and finding.rubric_id == "r"
    assert "no response is ever scored" in finding.message


@pytest.mark.parametrize("aggregation", ["weighted_mean", "sum", "holistic"])
def test_penalty_only_is_fine_where_penalty_rubrics_score(aggregation: str) -> None:
    # weighted_mean scores a penalty-only rubric as 1 + Σ w·m / Σ |w| (docs/aggregation.md).
    rubric = rubric_of(crit("The response insults the user.", weight=-2), aggregation=aggregation)
    assert "penalty-only" not in {f.rule for f in lint_rubric(rubric)}


def test_penalty_only_is_quiet_with_one_positive_weight() -> None:
    rubric = rubric_of(
        crit("The response insults the user.", weight=-2),
        crit("The response is polite.", cid="d"),
        aggregation="points",
    )
    assert "penalty-only" not in {f.rule for f in lint_rubric(rubric)}


def test_zero_weight_flags_a_rubric_whose_weights_are_all_zero() -> None:
    gates = rubric_of(crit("The response is in French.", kind="hard", weight=0))
    [finding] = lint_rubric(gates)  # the weightless gate itself is fine; a rubric of nothing else is not
    assert (finding.rule, finding.criterion_id) == ("zero-weight", None)
    mixed = rubric_of(crit("The response is in French.", kind="hard", weight=0), crit("It is polite.", cid="d"))
    assert lint_rubric(mixed) == []


# --------------------------------------------------------------------------- hard-scale, negative-scale


def test_hard_scale_flags_scales_on_gating_hard_criteria() -> None:
    formality = crit("How formal the register is.", kind="hard", scale={1: "Casual.", 5: "Formal."})
    assert fires("hard-scale", formality)
    assert not fires("hard-scale", formality, gates="none")
    assert not fires("hard-scale", crit("How formal the register is.", scale={1: "Casual.", 5: "Formal."}))
    assert not fires("hard-scale", crit("The response uses a formal register.", kind="hard"))


def test_negative_weight_hard_rules_are_forbid_gates_not_smells() -> None:
    # A gate on a penalty fails when the statement holds (docs/aggregation.md §4): a legitimate "forbid" rule.
    assert rules_for(crit("The response reveals the system prompt.", kind="hard", weight=-5)) == set()


def test_negative_scale_flags_scales_that_reward_low_levels() -> None:
    rude = crit("How rude the tone is.", scale={1: "Polite.", 5: "Rude."}, weight=-1)
    assert fires("negative-scale", rude)
    assert not fires("negative-scale", crit("How polite the tone is.", scale={1: "Rude.", 5: "Polite."}))
    assert not fires("negative-scale", crit("The response is rude.", weight=-1))


# --------------------------------------------------------------------------- check-mismatch


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("The response is at most 200 words.", {"type": "max_words", "value": 150}),
        ("The response has at least 150 words.", {"type": "max_words", "value": 150}),
        (
            "The response has exactly two paragraphs.",
            {"type": "paragraph_count", "relation": "exactly", "value": 3},
        ),
        (
            "The response is at most 5 sentences.",
            {"type": "sentence_count", "relation": "at least", "value": 5},
        ),
    ],
)
def test_check_mismatch_flags_text_that_disagrees_with_its_check(text: str, check: dict[str, object]) -> None:
    assert fires("check-mismatch", crit(text, kind="hard", check=check))


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("The response is at most 150 words.", {"type": "max_words", "value": 150}),
        ("The response is short.", {"type": "max_words", "value": 150}),
        (
            "The response has exactly three paragraphs.",
            {"type": "paragraph_count", "relation": "exactly", "value": 3},
        ),
        (
            "The response has no more than 150 words.",
            {"type": "word_count", "relation": "at most", "value": 150},
        ),
        ("The response mentions the word refund.", {"type": "required_keywords", "words": ["refund"]}),
    ],
)
def test_check_mismatch_accepts_agreeing_text(text: str, check: dict[str, object]) -> None:
    assert not fires("check-mismatch", crit(text, kind="hard", check=check))


# --------------------------------------------------------------------------- whole rubrics, files and lines

SMELLS = [  # (line, criterion, rule) for tests/data/lint/smells.yaml
    (6, "bundled", "non-atomic"),
    (12, "answers-again", "near-duplicate"),
    (15, "no-jargon", "double-negative"),
    (18, "ignored", "zero-weight"),
    (21, "compares", "names-response"),
    (23, "tone", "scale-levels"),
    (26, "well-written", "uncheckable-hard"),
    (29, "good", "vague-wording"),
    (31, "asks", "question-form"),
    (33, "formality", "hard-scale"),
    (37, "rudeness", "negative-scale"),
    (41, "length", "check-mismatch"),
]


def test_yaml_findings_carry_file_and_criterion_lines() -> None:
    path = DATA / "smells.yaml"
    findings, problems = lint_paths([path])
    assert problems == []
    assert [(f.line, f.criterion_id, f.rule) for f in findings] == SMELLS
    assert {f.file for f in findings} == {str(path)}
    assert {f.rubric_id for f in findings} == {"smelly"}
    assert findings[0].format() == (f"{path}:6: smelly/bundled: non-atomic: {findings[0].message}")


def test_the_design_example_rubric_is_clean() -> None:
    assert lint_paths([DATA / "clean.yaml"]) == ([], [])


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_can_be_disabled(rule: str) -> None:
    paths = [DATA / "smells.yaml", DATA / "penalties.rubrics.jsonl"]
    everything, _ = lint_paths(paths)
    rest, _ = lint_paths(paths, disable=[rule])
    assert any(f.rule == rule for f in everything), f"the fixtures do not exercise {rule}"
    assert rest == [f for f in everything if f.rule != rule]


def test_lint_rubric_disable_drops_the_rule() -> None:
    rubric = rubric_of(crit("Does the response cite a source and explain the dosage?"))
    assert {f.rule for f in lint_rubric(rubric)} >= {"question-form"}
    assert "question-form" not in {f.rule for f in lint_rubric(rubric, disable=["question-form"])}


def test_unknown_rule_in_disable_lists_the_valid_ids() -> None:
    with pytest.raises(ValueError) as info:
        lint_paths([DATA / "clean.yaml"], disable=["non-atomc"])
    message = str(info.value)
    assert "'non-atomc'" in message and "did you mean 'non-atomic'" in message
    assert all(rule in message for rule in RULES)
    with pytest.raises(ValueError, match="valid rules"):
        lint_rubric(rubric_of(crit("The response is polite.")), disable=["nope"])


def test_rubric_set_findings_point_at_the_rubric_line(tmp_path: Path) -> None:
    findings, problems = lint_paths([DATA / "penalties.rubrics.jsonl"])
    assert problems == []
    assert [(f.line, f.rubric_id, f.criterion_id, f.rule) for f in findings] == [
        (1, "p1", None, "penalty-only"),
        (3, "p2", "cites-again", "near-duplicate"),  # line 2 is blank and still counted
    ]
    assert findings[0].format().startswith(f"{DATA / 'penalties.rubrics.jsonl'}:1: p1: penalty-only: ")
    gz = tmp_path / "penalties.rubrics.jsonl.gz"
    gz.write_bytes(gzip.compress((DATA / "penalties.rubrics.jsonl").read_bytes()))
    gz_findings, _ = lint_paths([gz])
    assert [(f.line, f.rule) for f in gz_findings] == [(1, "penalty-only"), (3, "near-duplicate")]


def test_directories_recurse_and_bad_files_do_not_stop_linting() -> None:
    findings, problems = lint_paths([DATA / "tree"])
    # clean.yaml gives nothing, rubric.schema.json and notes.txt are not read.
    assert {Path(f.file).name for f in findings if f.file} == {"smells.yml"}
    assert len(findings) == len(SMELLS)
    assert len(problems) == 1
    assert problems[0].startswith(f"{DATA / 'tree' / 'broken.yaml'}:6: criteria[0].weight: ")


def test_missing_paths_and_empty_folders_are_problems(tmp_path: Path) -> None:
    findings, problems = lint_paths([tmp_path / "nope.yaml", tmp_path])
    assert findings == []
    assert problems[0].startswith(f"{tmp_path / 'nope.yaml'}: no such file")
    assert problems[1].startswith(f"{tmp_path}: no rubric files found")


def test_yaml_rubric_wide_findings_have_no_line(tmp_path: Path) -> None:
    path = tmp_path / "penalty.yaml"
    path.write_text(
        "id: only-penalties\naggregation: points\ncriteria:\n  - id: insults\n"
        "    text: The response insults the user.\n    weight: -2\n",
        encoding="utf-8",
    )
    findings, problems = lint_paths([path])
    assert problems == []
    [finding] = findings
    assert finding.rule == "penalty-only" and finding.line is None
    assert finding.format().startswith(f"{path}: only-penalties: penalty-only: ")


def test_finding_format_without_a_file() -> None:
    finding = LintFinding(rubric_id="r", criterion_id="c", rule="zero-weight", message="weight 0")
    assert finding.format() == "r/c: zero-weight: weight 0"
    assert LintFinding(file="x.yaml", rubric_id="r", rule="penalty-only", message="m").format() == (
        "x.yaml: r: penalty-only: m"
    )


def test_comments_waive_findings_per_criterion_or_file() -> None:
    path = DATA / "waived.yaml"
    findings, problems = lint_paths([path])
    # pros-cons: waived by the comment above it; bundled: only zero-weight waived; asks: waived file-wide.
    assert [(f.line, f.criterion_id, f.rule) for f in findings] == [(9, "bundled", "non-atomic")]
    assert problems == [
        f"{path}:15: unknown lint rule 'non-atomc' in a disable comment (did you mean 'non-atomic'?); "
        f"valid rules: {', '.join(RULES)}"
    ]


def test_without_the_comments_the_waived_findings_appear(tmp_path: Path) -> None:
    path = tmp_path / "waived.yaml"
    path.write_text(re.sub(r"#.*", "", (DATA / "waived.yaml").read_text(encoding="utf-8")), encoding="utf-8")
    findings, problems = lint_paths([path])
    assert problems == []
    assert [(f.criterion_id, f.rule) for f in findings] == [
        ("pros-cons", "non-atomic"),
        ("bundled", "non-atomic"),
        ("bundled", "zero-weight"),
        ("asks", "question-form"),
    ]


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(min_size=1, max_size=300).filter(lambda t: t.strip()),
    weight=st.sampled_from([-3.0, -1.0, 0.0, 1.0, 2.5]),
    kind=st.sampled_from(["hard", "principle"]),
)
def test_lint_never_crashes_on_arbitrary_text(text: str, weight: float, kind: str) -> None:
    rubric = rubric_of(crit(text, weight=weight, kind=kind), crit(text + " and more", cid="d", weight=weight))
    findings = lint_rubric(rubric)
    assert {f.rule for f in findings} <= set(RULES)
    assert all(f.message and f.rubric_id == "r" for f in findings)
