"""The reward core (rubrickit.rewards) and best-of-N ranking, against the real loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rubrickit import aggregate
from rubrickit.errors import JudgeUnavailableError, RubricError
from rubrickit.judge import score_files
from rubrickit.rewards import RewardError, RewardOptions, RewardScorer, inline_rubric
from rubrickit.rewards.rank import preference_pairs, rank_files
from rubrickit.rubric import RubricSet, load_rubric, parse_rubric

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import Fault, OAIServer, Reply, default_reply  # noqa: E402
from test_cli_score import run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUBRIC_PATH = REPO / "rubrics" / "support-reply.yaml"
TICKETS = [json.loads(line) for line in (REPO / "examples" / "support-tickets.jsonl").read_text().splitlines()]

# Two programmatic checks and three judge criteria: what a policy could game if errors were renormalised away.
MIXED = parse_rubric("""
rubrickit: 1
id: mixed
criteria:
- {id: short, text: The response is at most 80 words., check: {type: max_words, value: 80}}
- {id: polite, text: The response says thank you., check: {type: required_keywords, words: [thank]}}
- {id: correct, text: The response answers the question correctly., weight: 3}
- {id: clear, text: The response is clear., weight: 2}
- {id: safe, text: The response gives no dangerous advice., weight: 2}
""")
SAMPLES = [
    {"prompt": "What is 2 + 2?", "response": "Thank you for asking: 4."},
    {"prompt": "Capital of France?", "response": "Thank you! It is Paris."},
    {"prompt": "Boil an egg?", "response": "Thank you. Ten minutes in boiling water."},
]


@pytest.fixture
def server() -> OAIServer:
    with OAIServer() as srv:
        yield srv


def scorer(server: OAIServer, tmp_path: Path, rubric: Any = MIXED, **options: Any) -> RewardScorer:
    options.setdefault("cache_dir", tmp_path / "cache")
    return RewardScorer(rubric, judge="openai:judge-model", base_url=server.url, **options)


def garbage_for_llm_criteria(body: dict[str, Any]) -> Any:
    """The judge never writes a readable verdict (a small local model rambling): every LLM criterion errors."""
    return Reply("The statement is not met. The statement is not met.")


# --------------------------------------------------------------------------- same verdicts as `rubrickit score`


def test_rewards_equal_score_records_in_input_order(server: OAIServer, tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(t) + "\n" for t in TICKETS))
    result = score_files(RUBRIC_PATH, data, judge="openai:judge-model", base_url=server.url,
                         cache_dir=tmp_path / "score-cache")
    by_id = {r.item_id: r for r in result.records}
    with scorer(server, tmp_path, RUBRIC_PATH, mode="per_criterion") as s:
        batch = s.score(TICKETS)
    for ticket, detail in zip(TICKETS, batch.details, strict=True):
        record = by_id[ticket["id"]]
        assert detail.record is not None and detail.record.item_id == ticket["id"]
        assert [(v.criterion_id, v.verdict) for v in detail.record.verdicts] == \
            [(v.criterion_id, v.verdict) for v in record.verdicts]
        if record.errors:
            assert detail.reward is None and not detail.scored
        else:
            assert detail.scored and detail.reward == pytest.approx(record.reward)
    assert batch.rewards == [d.reward for d in batch.details]
    assert batch.stats.samples == 3 and batch.stats.scored + batch.stats.unscored == 3


def test_second_batch_is_served_from_the_cache(server: OAIServer, tmp_path: Path) -> None:
    with scorer(server, tmp_path) as s:
        first = s.score(SAMPLES)
        calls = len(server.requests)
        second = s.score(SAMPLES)
    assert calls == 3 * len(SAMPLES)  # three judge criteria each; the checks run locally
    assert len(server.requests) == calls
    assert second.rewards == first.rewards
    assert second.stats.calls == 0 and second.stats.cache_hits == 3 * len(SAMPLES)
    assert s.totals.samples == 2 * len(SAMPLES)


def test_concurrent_batch_uses_the_engine_concurrency(tmp_path: Path) -> None:
    with OAIServer(latency=0.05) as srv, scorer(srv, tmp_path, concurrency=16) as s:
        batch = s.score([{"prompt": f"q{i}", "response": f"Thank you, answer {i}."} for i in range(20)])
    assert batch.stats.samples == 20
    assert srv.max_in_flight > 4


# --------------------------------------------------------------------------- failure policy


def test_all_llm_criteria_errored_is_not_scored_even_though_checks_pass(tmp_path: Path) -> None:
    with OAIServer(reply=garbage_for_llm_criteria) as srv, scorer(srv, tmp_path, reasks=0) as s:
        batch = s.score(SAMPLES[:1])
    detail = batch.details[0]
    # The aggregate over what succeeded is a perfect score: the reward a policy would learn to farm.
    assert detail.record is not None and detail.record.reward == 1.0
    assert detail.record.coverage == pytest.approx(2 / 5)
    assert detail.reward is None and not detail.scored and detail.raw_reward is None
    assert detail.reason is not None and "3 of 5 criteria errored" in detail.reason
    assert batch.stats.unscored == 1 and batch.stats.error_verdicts == 3
    assert batch.stats.metrics()["error_rate"] == 1.0
    assert batch.stats.reasons == {"criteria errored": 1}


@pytest.mark.parametrize(("on_error", "expected"), [("none", None), ("zero", 0.0), (-1, -1.0), ("-0.5", -0.5)])
def test_failure_policy_values(tmp_path: Path, on_error: Any, expected: float | None) -> None:
    with OAIServer(reply=garbage_for_llm_criteria) as srv, scorer(srv, tmp_path, reasks=0, on_error=on_error) as s:
        batch = s.score(SAMPLES[:2])
    assert batch.rewards == [expected, expected]
    assert batch.stats.unscored == 2


def test_failure_policy_raise_names_the_reason(tmp_path: Path) -> None:
    with OAIServer(reply=garbage_for_llm_criteria) as srv, scorer(srv, tmp_path, reasks=0, on_error="raise") as s:
        with pytest.raises(RewardError, match=r"2 of 2 samples could not be scored.*criteria errored"):
            s.score(SAMPLES[:2])
        assert s.totals.unscored == 2  # counted before raising


def test_min_coverage_accepts_partial_errors(tmp_path: Path) -> None:
    def one_fails(body: dict[str, Any]) -> Any:
        last = str(body["messages"][-1]["content"])
        return Reply("rambling") if "The response is clear." in last else default_reply(body)

    with OAIServer(reply=one_fails) as srv:
        with scorer(srv, tmp_path, reasks=0) as strict:
            refused = strict.score(SAMPLES[:1]).details[0]
        with scorer(srv, tmp_path, reasks=0, min_coverage=0.75) as lenient:
            accepted = lenient.score(SAMPLES[:1]).details[0]
        with scorer(srv, tmp_path, reasks=0, min_coverage=0.9) as too_high:
            below = too_high.score(SAMPLES[:1]).details[0]
    assert refused.errors == 1 and not refused.scored
    assert accepted.scored and accepted.coverage == pytest.approx(4 / 5)
    assert accepted.reward == pytest.approx(aggregate(MIXED, accepted.record.verdicts).reward)
    assert not below.scored


def test_unusable_judge_stops_instead_of_scoring(tmp_path: Path) -> None:
    with OAIServer(reply=Fault.http_error(401, "Incorrect API key provided")) as srv, scorer(srv, tmp_path) as s:
        with pytest.raises(JudgeUnavailableError):
            s.score(SAMPLES[:1])


def test_on_error_is_validated() -> None:
    with pytest.raises(ValidationError, match="on_error"):
        RewardOptions(on_error="skip")
    with pytest.raises(ValidationError):
        RewardOptions(on_error=float("nan"))
    assert RewardOptions(on_error=None).fallback() is None
    with pytest.raises(TypeError, match="unknown option 'on_eror'"):
        RewardScorer(MIXED, judge="fake:x", on_eror="zero")


# --------------------------------------------------------------------------- scale, gates, aggregation, groups


def test_scale_shift_and_aggregation_override(server: OAIServer, tmp_path: Path) -> None:
    with scorer(server, tmp_path) as plain:
        base = plain.score(SAMPLES)
    with scorer(server, tmp_path, scale=2.0, shift=-1.0) as mapped:
        moved = mapped.score(SAMPLES)
    with scorer(server, tmp_path, aggregation="sum") as summed:
        sums = summed.score(SAMPLES)
    for b, m, s in zip(base.details, moved.details, sums.details, strict=True):
        assert m.reward == pytest.approx(b.reward * 2 - 1)
        assert m.raw_reward == pytest.approx(b.raw_reward)
        expected = aggregate(MIXED.model_copy(update={"aggregation": "sum"}), b.record.verdicts).reward
        assert s.reward == pytest.approx(expected)
    assert any(s.reward > 1 for s in sums.details)  # unnormalised


def test_failed_gate_gives_the_gate_value(server: OAIServer, tmp_path: Path) -> None:
    gated = parse_rubric("""
rubrickit: 1
id: gated
criteria:
- {id: brief, text: The response is at most 5 words., kind: hard, check: {type: max_words, value: 5}}
- {id: good, text: The response is good., weight: 2}
""")
    samples = [{"prompt": "q", "response": "one two three four five six seven"},
               {"prompt": "q", "response": "short"}]
    with scorer(server, tmp_path, gated, gate_value=-1.0, shift=0.5) as s:
        batch = s.score(samples)
    assert batch.details[0].gates_failed == ["brief"] and batch.rewards[0] == -1.0 and batch.details[0].scored
    assert batch.details[1].gates_failed == [] and batch.rewards[1] == pytest.approx(batch.details[1].raw_reward + 0.5)
    assert batch.stats.gated == 1


def test_group_normalisation(server: OAIServer, tmp_path: Path) -> None:
    samples = [{"prompt": f"q{g}", "response": f"Thank you. Answer {i} " + "word " * (40 * (i % 3)),
                "group": g} for g in ("a", "b") for i in range(4)]
    with scorer(server, tmp_path) as plain:
        raw = plain.score(samples).rewards
    with scorer(server, tmp_path, group_key="group") as grouped:
        normalised = grouped.score(samples).rewards
    with scorer(server, tmp_path, group_key="group", group_std=False) as centred:
        shifted = centred.score(samples).rewards
    for members in (range(0, 4), range(4, 8)):
        values = [raw[i] for i in members]
        mean, std = statistics.fmean(values), statistics.pstdev(values)
        for i in members:
            assert shifted[i] == pytest.approx(raw[i] - mean)
            assert normalised[i] == pytest.approx((raw[i] - mean) / (std + 1e-6))
        assert math.fsum(normalised[i] for i in members) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(RewardError, match="group_key 'group' is missing"), scorer(server, tmp_path,
                                                                                 group_key="group") as s:
        s.score(SAMPLES[:1])


# --------------------------------------------------------------------------- choosing the rubric


def test_rubric_set_by_prompt_id_and_inline_rubrics(server: OAIServer, tmp_path: Path) -> None:
    first = MIXED.model_copy(update={"id": "first", "prompt_id": "p1", "scope": "prompt"})
    second = MIXED.model_copy(update={"id": "second", "prompt_id": "p2", "scope": "prompt",
                                      "criteria": MIXED.criteria[:2]})
    with scorer(server, tmp_path, RubricSet([first, second])) as s:
        batch = s.score([{**SAMPLES[0], "prompt_id": "p1"}, {**SAMPLES[0], "prompt_id": "p2"}])
        assert [d.record.rubric_id for d in batch.details] == ["first", "second"]
        assert batch.details[1].total == 2 and batch.details[1].reward == 1.0
        with pytest.raises(RubricError, match="sample 0: the rubric set has no rubric for prompt_id 'p9'"):
            s.score([{**SAMPLES[0], "prompt_id": "p9"}])
        with pytest.raises(RubricError, match="sample 0: no prompt_id"):
            s.score([SAMPLES[0]])
    healthbench = [{"criterion": "The response says thank you.", "points": 2, "tags": ["axis:tone"]},
                   {"criterion": "The response is rude.", "points": -3}]
    with scorer(server, tmp_path, None) as s:
        batch = s.score([{**SAMPLES[0], "rubric": healthbench},
                         {**SAMPLES[0], "rubric": json.dumps(healthbench)},
                         {**SAMPLES[0], "rubric": MIXED.model_dump(mode="json")},
                         {**SAMPLES[0], "rubric": RUBRIC_PATH.read_text()}])
        assert [d.total for d in batch.details] == [2, 2, 5, len(load_rubric(RUBRIC_PATH).criteria)]
        with pytest.raises(RubricError, match="sample 0: no rubric"):
            s.score(SAMPLES[:1])
        with pytest.raises(RubricError, match="sample 0: rubric"):
            s.score([{**SAMPLES[0], "rubric": {"criteria": [{"id": "Bad Id", "text": "x"}]}}])


def test_inline_rubric_rejects_other_shapes() -> None:
    with pytest.raises(RubricError, match="expected a rubric"):
        inline_rubric(42)
    with pytest.raises(RubricError, match="not valid JSON"):
        inline_rubric("[{]")


def test_samples_are_checked_before_any_call(server: OAIServer, tmp_path: Path) -> None:
    with scorer(server, tmp_path) as s:
        with pytest.raises(RewardError, match="sample 1: 'response' is missing"):
            s.score([SAMPLES[0], {"prompt": "q"}])
        with pytest.raises(RewardError, match="sample 0: expected a mapping"):
            s.score(["just text"])  # type: ignore[list-item]
    assert server.requests == []


def test_conversational_prompt_and_reference_reach_the_judge(server: OAIServer, tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime above 10."}]
    with scorer(server, tmp_path) as s:
        batch = s.score([{"prompt": chat, "response": "Thank you: 11.", "reference": "REF-ANSWER-13"}])
    assert batch.details[0].scored
    sent = json.dumps([r.body["messages"] for r in server.requests])
    assert "Name a prime above 10." in sent and "REF-ANSWER-13" in sent


# --------------------------------------------------------------------------- rank (best-of-N) and DPO pairs


def _candidates(tmp_path: Path) -> Path:
    rows = [
        {"id": "r1", "prompt": "What is 2 + 2?",
         "responses": ["Thank you: 4.", "4", "Thank you. " + "word " * 100]},
        {"id": "r2", "prompt": [{"role": "user", "content": "Capital of France?"}],
         "responses": ["Thank you! Paris.", "Thank you! Paris."]},  # a tie
    ]
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rank_cli_ranks_and_writes_dpo_pairs(server: OAIServer, tmp_path: Path) -> None:
    rubric = tmp_path / "mixed.yaml"
    from rubrickit.rubric import save_rubric

    save_rubric(MIXED, rubric)
    out, pairs = tmp_path / "ranked.jsonl", tmp_path / "pairs.jsonl"
    code, output = run("rank", "--rubric", rubric, "--data", _candidates(tmp_path), "--judge", "openai:judge-model",
                       "--base-url", server.url, "--cache-dir", tmp_path / "cache", "-o", out, "--pairs-out", pairs)
    assert code == 0, output
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    first = records["r1"]
    assert first["ranking"][0] == first["best"]
    assert [first["rewards"][i] for i in first["ranking"]] == sorted(first["rewards"], reverse=True)
    assert first["rewards"][2] < first["rewards"][0]  # the long one fails the word limit
    written = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(written) == 1  # r2 is a tie: no pair
    pair = written[0]
    assert pair["prompt"] == "What is 2 + 2?" and pair["chosen"] == first["responses"][first["best"]]
    assert pair["rejected"] == first["responses"][first["ranking"][-1]]
    assert pair["chosen_reward"] > pair["rejected_reward"]
    assert "1 tie(s)" in output
    code, output = run("rank", "--rubric", rubric, "--data", _candidates(tmp_path), "--judge", "openai:judge-model",
                       "--base-url", server.url, "-o", out)
    assert code != 0 and "--resume" in output


def test_rank_leaves_unscored_candidates_out_and_exits_3_with_resume(tmp_path: Path) -> None:
    rubric = tmp_path / "mixed.yaml"
    from rubrickit.rubric import save_rubric

    save_rubric(MIXED, rubric)
    out = tmp_path / "ranked.jsonl"
    data = _candidates(tmp_path)
    with OAIServer(reply=garbage_for_llm_criteria) as srv:
        code, output = run("rank", "--rubric", rubric, "--data", data, "--judge", "openai:judge-model",
                           "--base-url", srv.url, "--cache-dir", tmp_path / "cache", "-o", out)
    assert code == 3, output
    assert "--resume" in output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["ranking"] == [] and r["best"] is None and r["errors"] == len(r["responses"]) for r in records)
    with OAIServer() as srv:
        code, output = run("rank", "--rubric", rubric, "--data", data, "--judge", "openai:judge-model",
                           "--base-url", srv.url, "--cache-dir", tmp_path / "cache", "-o", out, "--resume")
    assert code == 0, output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(r["errors"] == 0 and r["best"] is not None for r in records)


def test_preference_pairs_modes_and_margins(server: OAIServer, tmp_path: Path) -> None:
    result = rank_files(MIXED_PATH(tmp_path), _candidates(tmp_path), judge="openai:judge-model",
                        base_url=server.url, cache_dir=tmp_path / "cache")
    records = result.records
    best_worst, stats = preference_pairs(records)
    everything, all_stats = preference_pairs(records, mode="all")
    assert stats.pairs == 1 and stats.ties == 1
    r1 = next(r for r in records if r.id == "r1")
    distinct = {(a, b) for a in r1.ranking for b in r1.ranking
                if r1.ranking.index(a) < r1.ranking.index(b) and r1.rewards[a] > r1.rewards[b]}
    assert {(p["chosen"], p["rejected"]) for p in everything if p["id"] == "r1"} == \
        {(r1.responses[a], r1.responses[b]) for a, b in distinct}
    assert all_stats.pairs == len(distinct)
    none, margin_stats = preference_pairs(records, min_margin=10.0)
    assert none == [] and margin_stats.ties == 2
    conversational = [r for r in records if r.id == "r2"][0]
    assert isinstance(conversational.prompt, list)


def MIXED_PATH(tmp_path: Path) -> Path:  # noqa: N802 - reads like the constant it writes
    from rubrickit.rubric import save_rubric

    path = tmp_path / "mixed.yaml"
    save_rubric(MIXED, path)
    return path


def test_candidate_rows_from_csv_and_located_errors(tmp_path: Path) -> None:
    from rubrickit.data.items import load_candidates

    csv = tmp_path / "c.csv"
    csv.write_text('id,prompt,responses\nc1,hello,"[""a"", ""b b""]"\n')
    assert load_candidates(csv)[0].responses == ["a", "b b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "prompt": "p", "responses": []}\n{"id": "y", "prompt": "p", "response": "r"}\n')
    with pytest.raises(RubricError) as caught:
        load_candidates(bad)
    message = str(caught.value)
    assert "bad.jsonl:1" in message and "responses" in message
    assert "bad.jsonl:2" in message
