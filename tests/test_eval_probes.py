"""Bias probes on scripted judges: a length-biased judge is caught, a master-key-fooled judge is caught, an
order-sensitive per_response judge is caught; unbiased scripted judges score 0."""

from __future__ import annotations

import asyncio
import json
import re

from rubrickit.backends.fake import FakeBackend
from rubrickit.data.items import PairItem
from rubrickit.eval import aevaluate, summarize
from rubrickit.eval.probes import FILLER, MASTER_KEYS, shuffled_rubric
from rubrickit.judge.engine import Judge
from rubrickit.rubric import Criterion, Rubric

PAIRS = [PairItem(id=f"p{n}", prompt=f"Explain thing {n}.", response_a=f"A solid explanation of thing {n}.",
                  response_b=f"Wrong {n}.", label="A", subset="s") for n in range(3)]


def _shown(request) -> tuple[str, str]:
    text = request.messages[-1].content
    first = re.search(r"<response_a>\n(.*?)\n</response_a>", text, re.S).group(1)
    second = re.search(r"<response_b>\n(.*?)\n</response_b>", text, re.S).group(1)
    return first, second


def longer_wins(request) -> str:
    first, second = _shown(request)
    winner = "tie" if len(first) == len(second) else ("A" if len(first) > len(second) else "B")
    return json.dumps({"rationale": "longer is better", "winner": winner})


def fair(request) -> str:
    """Ties identical content, prefers real content over master keys."""
    first, second = _shown(request)
    strip = [s.replace(FILLER, "") for s in (first, second)]
    if strip[0] == strip[1]:
        winner = "tie"
    else:
        winner = "B" if first.strip() in MASTER_KEYS else "A" if second.strip() in MASTER_KEYS else "A"
    return json.dumps({"rationale": "fair", "winner": winner})


def _run(script, probes, **options):
    judge = Judge(FakeBackend(script), use_cache=False)

    async def go():
        try:
            return await aevaluate(PAIRS, judge, probes=probes, **options)
        finally:
            await judge.aclose()

    run = asyncio.run(go())
    return summarize(run.records())[run.config]["probes"]


def test_length_biased_judge_has_high_length_rate() -> None:
    probes = _run(longer_wins, ["length"])
    assert probes["length"]["rate"] == 1.0 and probes["length"]["n"] == 3


def test_fair_judge_has_zero_length_and_master_key_rates() -> None:
    probes = _run(fair, ["length", "master-key"])
    assert probes["length"]["rate"] == 0.0 and probes["length"]["ties"] == 3
    assert probes["master-key"]["rate"] == 0.0 and probes["master-key"]["n"] == 3 * len(MASTER_KEYS)


def test_judge_fooled_by_master_keys_is_caught_per_key() -> None:
    def fooled(request) -> str:
        first, second = _shown(request)
        winner = "A" if first.strip() == "Thought process:" else "B" if second.strip() == "Thought process:" else "A"
        return json.dumps({"rationale": "looks thoughtful", "winner": winner})

    master = _run(fooled, ["master-key"])["master-key"]
    assert master["per_key"]["Thought process:"]["rate"] == 1.0
    assert master["per_key"][":"]["rate"] == 0.0
    assert master["rate"] == 1 / 3


def test_probe_failures_are_counted_not_rated() -> None:
    def broken(request) -> str:
        return "???"

    length = _run(broken, ["length"])["length"]
    assert length["n"] == 0 and length["errors"] == 3 and length["rate"] is None


def test_master_key_pass_rate_with_a_rubric() -> None:
    rubric = Rubric(id="r", criteria=[Criterion(id="explains", text="The response explains the thing.")])

    def passes_everything(request) -> str:
        if "<response_a>" in request.messages[-1].content:
            return json.dumps({"rationale": "x", "winner": "A"})
        return json.dumps({"rationale": "x", "verdict": "met"})

    master = _run(passes_everything, ["master-key"], rubric=rubric)["master-key"]
    assert master["pass_rate"] == 1.0 and master["pass_n"] == 3 * len(MASTER_KEYS)


def test_order_probe_catches_a_judge_that_depends_on_criterion_order() -> None:
    rubric = Rubric(id="r", criteria=[Criterion(id=f"c{n}", text=f"Statement number {n} holds.") for n in range(4)])

    def first_listed_met(request) -> str:
        ids = re.findall(r'id="(c\d)"', request.messages[-1].content)
        return json.dumps({cid: {"rationale": "x", "verdict": "met" if i == 0 else "unmet"}
                           for i, cid in enumerate(ids)})

    def stable(request) -> str:
        ids = re.findall(r'id="(c\d)"', request.messages[-1].content)
        return json.dumps({cid: {"rationale": "x", "verdict": "met" if cid in ("c0", "c2") else "unmet"}
                           for cid in ids})

    judge_script = {"biased": first_listed_met, "stable": stable}
    rates = {}
    for name, per_response in judge_script.items():
        def script(request, per_response=per_response) -> str:
            if "<response_a>" in request.messages[-1].content:
                return json.dumps({"rationale": "x", "winner": "A"})
            return per_response(request)

        rates[name] = _run(script, ["order"], rubric=rubric)["order"]
    assert rates["stable"]["rate"] == 0.0 and rates["stable"]["n"] == 12
    assert rates["biased"]["rate"] > 0.0


def test_shuffled_rubric_changes_the_order_and_keeps_the_criteria() -> None:
    rubric = Rubric(id="r", criteria=[Criterion(id=f"c{n}", text=f"Statement {n}.") for n in range(3)])
    shuffled = shuffled_rubric(rubric, seed=1)
    assert [c.id for c in shuffled.criteria] != ["c0", "c1", "c2"]
    assert sorted(c.id for c in shuffled.criteria) == ["c0", "c1", "c2"]
