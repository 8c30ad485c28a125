"""Label-based filters and the refine pipeline's control flow (verdict store, fake judges, history)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest

from rubrickit.backends.fake import FakeBackend
from rubrickit.data.items import PairItem
from rubrickit.errors import RubricError
from rubrickit.judge.engine import Judge
from rubrickit.refine import (
    VerdictStore,
    apply_report,
    arefine,
    criterion_edges,
    misalignment_filter,
    nondiscriminative_filter,
)
from rubrickit.rubric import Criterion, Rubric, ScoreRecord, Verdict

GOOD, BAD = "GOOD-RESPONSE with substance", "BAD-RESPONSE without substance"


def _rubric(rows, rid: str = "r", prompt_id: str | None = None) -> Rubric:
    scope = "prompt" if prompt_id else "general"
    return Rubric(id=rid, scope=scope, prompt_id=prompt_id,
                  criteria=[Criterion(id=i, text=t, weight=w) for i, t, w in rows])


ROWS = [
    ("aligned", "The response has substance.", 2.0),
    ("misaligned", "The response lacks substance.", 1.0),
    ("penalty-ok", "The response is empty of content.", -1.0),
    ("penalty-backwards", "The response is detailed.", -1.0),
    ("constant", "The response is in English.", 1.0),
]
# met on (better, worse) per criterion
PLANTED = {"aligned": (1, 0), "misaligned": (0, 1), "penalty-ok": (0, 1), "penalty-backwards": (1, 0),
           "constant": (1, 1)}


def _store(rubric: Rubric, pairs: int = 4) -> VerdictStore:
    store = VerdictStore()
    for n in range(pairs):
        for side, item in ((0, f"p{n}/A"), (1, f"p{n}/B")):
            store.add(rubric.id, item, [Verdict(criterion_id=c.id, verdict="met" if PLANTED[c.id][side] else "unmet")
                                        for c in rubric.criteria])
    return store


def _pairs(n: int = 4, prompt_id: str | None = None) -> list[PairItem]:
    return [PairItem(id=f"p{i}", prompt="Q?", response_a=f"{GOOD} #{i}", response_b=f"{BAD} #{i}", label="A",
                     prompt_id=prompt_id) for i in range(n)]


def test_edges_follow_the_label_and_the_weight_sign() -> None:
    rubric = _rubric(ROWS)
    D = np.array([[PLANTED[c.id][0] - PLANTED[c.id][1] for c in rubric.criteria]] * 3, dtype=float)
    edges = [e for e, _ in criterion_edges(rubric, D)]
    assert edges == [1.0, -1.0, 1.0, -1.0, 0.0]


def test_misaligned_criteria_planted_in_labelled_data_are_removed() -> None:
    rubric = _rubric(ROWS)
    store = _store(rubric)
    result = asyncio.run(arefine([rubric], store=store, misaligned_pairs=_pairs()))
    (refined,) = result.rubrics
    assert [c.id for c in refined.criteria] == ["aligned", "penalty-ok"]
    (entry,) = refined.provenance.history
    assert entry["step"] == "misaligned"
    reasons = {r["id"]: r["detail"] for r in entry["removed"]}
    assert set(reasons) == {"misaligned", "penalty-backwards", "constant"}
    assert "favours the rejected" in reasons["misaligned"] and "does not separate" in reasons["constant"]
    assert entry["stats"]["edges"]["aligned"] == 1.0 and result.judged_items == 0


def test_unassessed_verdicts_are_left_out_not_counted_as_unmet() -> None:
    rubric = _rubric(ROWS[:2])
    store = _store(rubric, pairs=2)
    # an error on the worse response would look like an edge for "misaligned" if it were read as unmet
    store.add("r", "p0/B", [Verdict(criterion_id="misaligned", verdict="error", error="parse")])
    store.add("r", "p1/B", [Verdict(criterion_id="misaligned", verdict="not_applicable")])
    better, worse = store.pair_matrices(rubric, [_lp(0), _lp(1)])
    report = misalignment_filter(rubric, better - worse)
    assert report.stats["edges"]["misaligned"] is None
    assert report.stats["no_evidence_kept"] == ["misaligned"] and not report.removed


def _lp(n: int):
    from rubrickit.refine.verdicts import LabelledPair

    return LabelledPair(f"p{n}", f"p{n}/A", f"p{n}/B")


def test_non_discriminative_criteria_are_removed() -> None:
    rubric = _rubric([("all", "A.", 1.0), ("none", "B.", 1.0), ("some", "C.", 1.0), ("thin", "D.", 1.0)])
    X = np.array([[1, 0, 1, np.nan], [1, 0, 0, np.nan], [1, np.nan, 1, 1]], dtype=float)
    report = nondiscriminative_filter(rubric, X)
    assert {r["id"]: r["detail"].split(" (")[0] for r in report.removed} == {
        "all": "met by every response of the pool", "none": "met by no response of the pool"}
    assert report.stats["no_evidence_kept"] == ["thin"]


def test_a_step_that_would_remove_everything_keeps_the_rubric_and_says_so() -> None:
    rubric = _rubric([("x", "A.", 1.0), ("y", "B.", 1.0)])
    report = nondiscriminative_filter(rubric, np.ones((3, 2)))
    refined = apply_report(rubric, report)
    assert [c.id for c in refined.criteria] == ["x", "y"]
    entry = refined.provenance.history[-1]
    assert "would remove every criterion" in entry["unchanged"] and entry["removed"] == []
    assert entry["stats"]["would_remove"] == ["x", "y"]


def test_verdict_store_reads_score_records_and_verdict_rows(tmp_path: Path) -> None:
    record = ScoreRecord(item_id="p0/A", rubric_id="r", rubric_fingerprint="sha256:x", reward=1.0, coverage=1.0,
                         verdicts=[Verdict(criterion_id="aligned", verdict="met", p_met=0.8)])
    row = {"item_id": "p0/B", "rubric_id": "r", "criterion_id": "aligned", "verdict": "unmet"}
    path = tmp_path / "v.jsonl"
    path.write_text(record.model_dump_json() + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    store = VerdictStore.from_file(path)
    rubric = _rubric(ROWS[:1])
    assert store.matrix(rubric, ["p0/A", "p0/B"]).tolist() == [[0.8], [0.0]]
    assert store.matrix(rubric, ["p0/A"], soft=False).tolist() == [[1.0]]
    path.write_text('{"item_id": "x", "rubric_id": "r", "criterion_id": "c", "verdict": "maybe"}\n',
                    encoding="utf-8")
    with pytest.raises(RubricError, match=r"v.jsonl:1: verdict"):
        VerdictStore.from_file(path)


def _pairwise_script(backend_log: list[str]):
    """Pairwise criterion judge: 'substance' statements hold for the GOOD response, 'lacks' ones for the BAD."""

    def answer(request) -> str:
        user = request.messages[-1].content
        backend_log.append(user)
        a = re.search(r"<response_a>\n(.*?)\n</response_a>", user, re.S).group(1)
        if "<criterion>" not in user:  # direct fallback
            return json.dumps({"rationale": "direct", "winner": "A" if a.startswith(GOOD) else "B"})
        text = re.search(r"<criterion>\n(.*?)\n</criterion>", user, re.S).group(1)
        holds_for_good = "lacks" not in text
        a_is_good = a.startswith(GOOD)
        return json.dumps({"rationale": "scripted", "winner": "A" if a_is_good == holds_for_good else "B"})

    return answer


def test_consistency_filter_removes_criteria_that_do_not_recover_labels() -> None:
    log: list[str] = []
    judge = Judge(FakeBackend(_pairwise_script(log), spec="fake:consistency"), use_cache=False)
    rubric = _rubric(ROWS[:2])
    result = asyncio.run(arefine([rubric], judge=judge, consistency_pairs=_pairs(2)))
    (refined,) = result.rubrics
    assert [c.id for c in refined.criteria] == ["aligned"]
    entry = refined.provenance.history[0]
    assert entry["step"] == "consistency" and entry["removed"][0]["id"] == "misaligned"
    assert entry["stats"]["edges"] == {"aligned": 1.0, "misaligned": -1.0}
    assert len(log) == 2 * 2 * 2  # both orders of each criterion on each pair


def test_consistency_drops_a_rubric_of_a_set_that_gets_the_labels_wrong() -> None:
    log: list[str] = []
    judge = Judge(FakeBackend(_pairwise_script(log), spec="fake:consistency-set"), use_cache=False)
    good = _rubric(ROWS[:1], rid="good", prompt_id="q1")
    bad = _rubric([("wrong", "The response lacks substance.", 1.0)], rid="bad", prompt_id="q2")
    pairs = _pairs(2, "q1") + [PairItem(id="z", prompt="Q?", response_a=GOOD, response_b=BAD, label="A",
                                        prompt_id="q2")]
    result = asyncio.run(arefine([good, bad], judge=judge, consistency_pairs=pairs, in_set=True))
    assert [r.id for r in result.rubrics] == ["good"] and result.dropped == ["bad"]
    dropped = [r for r in result.reports if r.rubric_id == "bad"][0]
    assert "accuracy 0.00" in dropped.drop_rubric


def test_judge_failure_is_unassessed_not_a_verdict() -> None:
    judge = Judge(FakeBackend(lambda r: "no idea", spec="fake:broken"), use_cache=False, reasks=0)
    rubric = _rubric(ROWS[:2])
    result = asyncio.run(arefine([rubric], judge=judge, misaligned_pairs=_pairs(2)))
    entry = result.rubrics[0].provenance.history[0]
    assert entry["removed"] == [] and entry["stats"]["no_evidence_kept"] == ["aligned", "misaligned"]
    assert result.judged_items == 4


def test_missing_verdicts_are_judged_and_stored_ones_reused() -> None:
    backend = FakeBackend(lambda r: json.dumps({"rationale": "x", "verdict": "met"}), spec="fake:met")
    judge = Judge(backend, use_cache=False)
    rubric = _rubric(ROWS[:2])
    store = _store(rubric, pairs=1)  # p0 stored, p1 not
    asyncio.run(arefine([rubric], judge=judge, store=store, misaligned_pairs=_pairs(2)))
    shown = {re.search(r"<response>\n(.*?)\n</response>", r.messages[-1].content, re.S).group(1)
             for r in backend.requests}
    assert len(backend.requests) == 2 * 2  # p1's two responses × 2 criteria; p0 came from the store
    assert shown == {f"{GOOD} #1", f"{BAD} #1"}


def _themes_script(request) -> str:
    return json.dumps({"themes": [{"theme": "The response has real content.", "tips": ["Check it has substance."],
                                   "criteria": ["aligned", "misaligned"]}]})


def test_theme_tips_structuring_keeps_source_ids_and_uncovered_criteria() -> None:
    judge = Judge(FakeBackend(_themes_script, spec="fake:themes"), use_cache=False)
    rubric = _rubric(ROWS[:3])
    result = asyncio.run(arefine([rubric], judge=judge, structure="themes"))
    (refined,) = result.rubrics
    theme, kept = refined.criteria
    assert theme.source_ids == ["aligned", "misaligned"] and "Tips:" in theme.text
    assert kept.id == "penalty-ok"
    entry = refined.provenance.history[0]
    assert entry["step"] == "structure" and {r["reason"] for r in entry["removed"]} == {"structured"}


def test_unusable_themes_reply_keeps_the_flat_criteria() -> None:
    judge = Judge(FakeBackend(lambda r: "Sure! Here are themes.", spec="fake:themes-bad"), use_cache=False)
    rubric = _rubric(ROWS[:3])
    result = asyncio.run(arefine([rubric], judge=judge, structure="themes"))
    assert [c.id for c in result.rubrics[0].criteria] == ["aligned", "misaligned", "penalty-ok"]
    assert "Theme-Tips structuring failed" in result.rubrics[0].provenance.history[0]["unchanged"]
