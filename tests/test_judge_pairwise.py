"""Pairwise comparison: both orders with the swapped answer mapped back, margins, the tie fallback, direct mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rubrickit.backends.base import CompletionRequest, RetryableBackendError
from rubrickit.backends.fake import FakeBackend
from rubrickit.errors import RubrickitError
from rubrickit.judge import Journal, Judge, PairItem, PairRecord, RetryPolicy, compare_files
from rubrickit.judge.journal import PAIR_KEY_FIELDS
from rubrickit.rubric import Criterion, Rubric, save_rubric

NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, max_retry_after=0.0)
GOOD, BAD = "A complete, correct and polite answer.", "nope"

RUBRIC = Rubric(id="pair-rubric", criteria=[
    Criterion(id="complete", text="The response is complete.", weight=2),
    Criterion(id="rude", text="The response is rude.", weight=-1),
    Criterion(id="short", text="At most 3 words.", check={"type": "max_words", "value": 3}),
])
PAIR = PairItem(id="p1", prompt="Help me.", response_a=GOOD, response_b=BAD, label="A")


def shown(request: CompletionRequest) -> tuple[str, str, str | None]:
    """(first response shown, second response shown, criterion text or None for a direct judgment)."""
    user = request.messages[-1].content
    first = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
    second = user.split("<response_b>\n", 1)[1].split("\n</response_b>", 1)[0]
    criterion = user.split("<criterion>\n", 1)[1].split("\n</criterion>", 1)[0] if "<criterion>\n" in user else None
    return first, second, criterion


def truthful(holds: dict[str | None, str | None]):
    """A judge that answers with the letter of the response the statement holds for (``None``: tie)."""
    def answer(request: CompletionRequest) -> str:
        first, second, criterion = shown(request)
        target = holds.get(criterion)
        letter = "tie" if target is None else ("A" if first == target else "B")
        return json.dumps({"rationale": f"{criterion}: {letter}", "winner": letter})
    return answer


def make_judge(backend, tmp_path: Path, **options) -> Judge:
    options.setdefault("cache_dir", tmp_path / "cache")
    options.setdefault("retry", NO_WAIT)
    return Judge(backend, **options)


def details(record: PairRecord) -> dict:
    return {d.criterion_id: d for d in record.details}


def test_each_criterion_is_judged_in_both_orders_and_the_swap_is_mapped_back(tmp_path: Path) -> None:
    fake = FakeBackend(truthful({"The response is complete.": GOOD, "The response is rude.": BAD}))
    with make_judge(fake, tmp_path) as judge:
        record = judge.compare(RUBRIC, PAIR)
    assert len(fake.requests) == 4  # two judged criteria × two orders; the check needs no call
    orders = sorted((shown(r)[2], shown(r)[0] == GOOD) for r in fake.requests)
    assert orders == [("The response is complete.", False), ("The response is complete.", True),
                      ("The response is rude.", False), ("The response is rude.", True)]
    complete, rude, short = details(record)["complete"], details(record)["rude"], details(record)["short"]
    assert (complete.pref_ab, complete.pref_ba, complete.preference) == (1, 1, 1.0)
    assert (rude.pref_ab, rude.pref_ba, rude.preference) == (-1, -1, -1.0)  # the flaw is in B
    assert (short.pref_ab, short.pref_ba) == (-1, -1) and "A: " in short.rationale  # check: B is short, A is not
    # margin Σ w·pref: complete 2·1, rude −1·−1 (the penalty favours A, where the flaw is absent), short 1·−1
    assert record.margin == pytest.approx(2 + 1 - 1)
    assert (record.winner, record.method, record.consistent) == ("A", "rubric", True)
    assert (record.label, record.correct, record.rubric_id, record.judge) == ("A", True, "pair-rubric",
                                                                              "fake:scripted")
    assert complete.rationale == "The response is complete.: A"
    assert complete.rationale_swapped == "The response is complete.: B"


def test_a_penalty_that_holds_for_a_makes_b_win(tmp_path: Path) -> None:
    rubric = Rubric(id="only-penalty", criteria=[RUBRIC.criteria[1]])
    fake = FakeBackend(truthful({"The response is rude.": GOOD}))
    with make_judge(fake, tmp_path) as judge:
        record = judge.compare(rubric, PAIR)
    assert record.margin == pytest.approx(-1.0) and record.winner == "B" and record.correct is False


def test_a_position_biased_judge_cancels_out_and_the_tie_falls_back(tmp_path: Path) -> None:
    def first_always(request: CompletionRequest) -> str:
        return json.dumps({"rationale": "the first one", "winner": "A"})

    rubric = Rubric(id="r", criteria=[RUBRIC.criteria[0]])
    fake = FakeBackend(first_always)
    with make_judge(fake, tmp_path) as judge:
        record = judge.compare(rubric, PAIR)
    complete, direct = details(record)["complete"], details(record)["_direct"]
    assert (complete.pref_ab, complete.pref_ba, complete.preference) == (1, -1, 0.0)
    assert record.margin == 0 and record.consistent is False
    assert record.method == "rubric+direct" and direct.preference == 0 and record.winner == "tie"
    assert len(fake.requests) == 4


def test_a_tied_margin_is_decided_by_the_direct_judgment(tmp_path: Path) -> None:
    fake = FakeBackend(truthful({None: GOOD}))  # every criterion ties; the direct judgment prefers GOOD
    rubric = Rubric(id="r", criteria=RUBRIC.criteria[:2])
    with make_judge(fake, tmp_path) as judge:
        record = judge.compare(rubric, PAIR)
    assert record.margin == 0 and record.method == "rubric+direct" and record.winner == "A"
    direct_requests = [r for r in fake.requests if shown(r)[2] is None]
    assert len(direct_requests) == 2 and {shown(r)[0] for r in direct_requests} == {GOOD, BAD}
    with make_judge(FakeBackend(truthful({None: GOOD})), tmp_path, pairwise_fallback=False) as judge:
        plain = judge.compare(rubric, PAIR)
    assert (plain.winner, plain.method) == ("tie", "rubric")


def test_without_a_rubric_the_direct_judgment_runs_in_both_orders(tmp_path: Path) -> None:
    pair = PAIR.model_copy(update={"label": "B"})
    fake = FakeBackend(truthful({None: GOOD}))
    with make_judge(fake, tmp_path) as judge:
        record = judge.compare(None, pair)
    first, second = fake.requests
    assert {shown(first)[:2], shown(second)[:2]} == {(GOOD, BAD), (BAD, GOOD)}
    assert "Which response is better" in first.messages[-1].content
    assert (record.rubric_id, record.method, record.winner, record.margin) == (None, "direct", "A", 1.0)
    assert record.consistent is True and record.correct is False


def test_a_failed_order_uses_the_other_and_total_failure_has_no_winner(tmp_path: Path) -> None:
    def half(request: CompletionRequest):
        if shown(request)[0] == BAD:
            return RetryableBackendError("503")
        return truthful({None: GOOD})(request)

    with make_judge(FakeBackend(half), tmp_path) as judge:
        record = judge.compare(None, PAIR)
    (direct,) = record.details
    assert (direct.pref_ab, direct.pref_ba, direct.preference) == (1, None, 1.0)
    assert record.winner == "A" and record.consistent is None and record.errors == 1 and "503" in direct.error
    with make_judge(FakeBackend([RetryableBackendError("down")]), tmp_path) as judge:
        failed = judge.compare(RUBRIC.model_copy(update={"criteria": RUBRIC.criteria[:2]}), PAIR)
    assert failed.winner is None and failed.margin is None and failed.correct is None and failed.errors == 4


def test_compare_many_journals_and_compare_files_resume(tmp_path: Path) -> None:
    pairs = [PairItem(id=f"p{n}", prompt="Q", response_a=GOOD, response_b=f"{BAD} {n}", label="A")
             for n in range(3)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(p.model_dump_json(exclude={"meta"}) + "\n" for p in pairs), encoding="utf-8")
    out = tmp_path / "direct.jsonl"
    result = compare_files(None, data, judge=FakeBackend(truthful({None: GOOD})), out=out,
                           cache_dir=tmp_path / "cache", retry=NO_WAIT)
    assert [r.correct for r in result.records] == [True, True, True]
    assert len(out.read_text().splitlines()) == 3
    again = compare_files(None, data, judge=FakeBackend(), out=out, resume=True, cache_dir=tmp_path / "cache")
    assert again.records == [] and again.resumed == 3
    rubric_path = save_rubric(RUBRIC, tmp_path / "r.yaml", schema_file=False)
    fake = FakeBackend(truthful({"The response is complete.": GOOD}))
    with make_judge(fake, tmp_path) as judge, pytest.raises(RubrickitError, match="PAIR_KEY_FIELDS"):
        list(judge.compare_many(RUBRIC, pairs, journal=Journal(None)))
    keyed = Journal(tmp_path / "rubric.jsonl", key_fields=PAIR_KEY_FIELDS)
    with make_judge(fake, tmp_path, repeat=2) as judge, keyed as journal:
        records = list(judge.compare_many(Rubric.model_validate(RUBRIC.model_dump()), pairs, journal=journal))
    assert sorted((r.pair_id, r.repeat) for r in records) == [(p.id, r) for p in pairs for r in (0, 1)]
    assert len((tmp_path / "rubric.jsonl").read_text().splitlines()) == 6
    plan = compare_files(rubric_path, data, judge=FakeBackend(), dry_run=True, cache_dir=tmp_path / "empty")
    assert plan.plan is not None and plan.plan.calls == 3 * 2 * 2 and plan.plan.programmatic == 3


def test_acompare_in_a_running_loop(tmp_path: Path) -> None:
    async def main():
        async with make_judge(FakeBackend(truthful({None: GOOD})), tmp_path) as judge:
            direct = await judge.acompare(None, PAIR.model_dump())
            return direct, judge.compare(None, PAIR)

    direct, sync = asyncio.run(main())
    assert direct.winner == sync.winner == "A"


# --------------------------------------------------------------------------- one-token A/B path (logprob mode)


class _ChoiceFake(FakeBackend):
    """A choice scorer: P(first shown) from a function of the request; records every score_choices call."""

    def __init__(self, p_first) -> None:
        super().__init__(spec="fake:choice")
        self.p_first = p_first
        self.groups: list[tuple[int, tuple[str, ...]]] = []

    async def score_choices(self, requests, choices):
        self.groups.append((len(requests), tuple(choices)))
        self.requests.extend(requests)
        return [{"A": self.p_first(r), "B": 1 - self.p_first(r)} for r in requests]


def test_logprob_mode_on_a_choice_scorer_asks_one_token_and_keeps_p_a() -> None:
    def p_first(request: CompletionRequest) -> float:
        first, _, _ = shown(request)
        return 0.8 if first == GOOD else 0.3

    backend = _ChoiceFake(p_first)
    with Judge(backend, mode="logprob", use_cache=False) as judge:
        record = judge.compare(None, PAIR)
    (detail,) = record.details
    assert backend.groups == [(2, ("A", "B"))]  # both orders in one score_choices call
    assert all("Answer with exactly one letter: A or B" in r.messages[0].content for r in backend.requests)
    assert detail.p_a_ab == pytest.approx(0.8) and detail.p_a_ba == pytest.approx(0.7)
    assert detail.pref_ab == 1 and detail.pref_ba == 1 and record.consistent is True
    assert detail.preference == pytest.approx(((2 * 0.8 - 1) + (2 * 0.7 - 1)) / 2)
    assert record.winner == "A" and record.margin == pytest.approx(0.5)


def test_one_token_rubric_comparison_sends_every_criterion_in_one_group() -> None:
    backend = _ChoiceFake(lambda r: 0.9 if shown(r)[0] == GOOD else 0.1)
    with Judge(backend, mode="logprob", use_cache=False) as judge:
        record = judge.compare(RUBRIC, PAIR)
    # 2 judged criteria x 2 orders (the check runs locally): one score_choices call per order, sharing the prefix
    assert backend.groups == [(2, ("A", "B")), (2, ("A", "B"))]
    assert len({r.messages[-1].content.split("<criterion>")[0] for r in backend.requests[:2]}) == 1
    complete = next(d for d in record.details if d.criterion_id == "complete")
    assert complete.p_a_ab == pytest.approx(0.9) and complete.p_a_ba == pytest.approx(0.9)


def test_position_biased_one_token_judge_is_inconsistent_and_near_tie() -> None:
    backend = _ChoiceFake(lambda r: 0.9)  # always prefers the response shown first
    with Judge(backend, mode="logprob", use_cache=False) as judge:
        record = judge.compare(None, PAIR)
    assert record.consistent is False and record.margin == pytest.approx(0.0) and record.winner == "tie"


def test_logprob_mode_reads_a_b_from_logprobs_or_text_and_counts_garbage() -> None:
    from rubrickit.backends.base import Capabilities, Completion, TokenLogprob, Usage

    def reply(request: CompletionRequest):
        first, _, _ = shown(request)
        if first == GOOD:
            token = TokenLogprob(token="A", logprob=-0.2, top={"A": -0.2, "B": -1.8})
            return Completion(text="A", logprobs=(token,), usage=Usage(input_tokens=5, output_tokens=1))
        return "maybe"

    backend = FakeBackend(reply, capabilities=Capabilities(logprobs=True))
    with Judge(backend, mode="logprob", use_cache=False, reasks=0) as judge:
        record = judge.compare(None, PAIR)
        errors = judge.accounting.as_dict()["errors"]
    (detail,) = record.details
    assert detail.p_a_ab is not None and detail.p_a_ab > 0.5 and detail.pref_ba is None
    assert record.errors == 1 and errors == 1 and record.consistent is None
    assert all(r.max_tokens == 1 for r in backend.requests)


def test_other_modes_keep_the_json_pairwise_contract() -> None:
    backend = _ChoiceFake(lambda r: 0.5)
    backend._script = lambda r: json.dumps({"rationale": "x", "winner": "A"})
    with Judge(backend, use_cache=False) as judge:
        judge.compare(None, PAIR)
    assert backend.groups == [] and all('"winner"' in r.messages[0].content for r in backend.requests)


def test_no_swap_judges_the_order_shown_only() -> None:
    from rubrickit.judge.pairwise import compare_pair

    backend = FakeBackend(lambda r: json.dumps({"rationale": "x", "winner": "A"}))
    judge = Judge(backend, use_cache=False)

    async def go():
        try:
            return await compare_pair(judge, None, PAIR, swap=False)
        finally:
            await judge.aclose()

    record = asyncio.run(go())
    assert len(backend.requests) == 1 and record.winner == "A" and record.consistent is None
