"""verl's reward contract (rubrickit.integrations.verl) against the real loopback OpenAI-compatible judge server.

Two parts:

- tests that always run (no verl needed): the calls exactly as verl 0.9.1 makes them — keywords
  ``data_source=, solution_str=, ground_truth=, extra_info=`` plus the merged ``reward_kwargs`` per sample
  (``verl/experimental/reward_loop/reward_manager/naive.py``, ``verl/workers/reward_manager/naive.py``), and
  ``data_sources=, solution_strs=, ground_truths=, extra_infos=`` for the legacy batch manager
  (``verl/workers/reward_manager/batch.py``) — configuration from ``reward_kwargs`` and ``RUBRICKIT_*``, one scorer
  per configuration, the failure policy under scripted server faults, the keys, and the async variants;
- tests that run only where verl imports (``make test-verl`` builds ``.venv-verl`` with verl 0.9.1): verl's own
  loader (``get_custom_reward_fn`` on a config composed from verl's ``ppo_trainer.yaml``) and verl's own reward
  managers (reward-loop worker and managers, legacy naive and batch) on a ``DataProto`` built the way verl's
  trainer builds it (a parquet file read by ``RLHFDataset``, ``collate_fn``, ``repeat``, rollout tensors), and, with
  Ray, the ``RewardLoopManager`` the trainer runs; the rewards must equal ``RewardScorer`` on the same samples.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rubrickit.errors import RubrickitError
from rubrickit.integrations import verl as rk_verl
from rubrickit.integrations.verl import (
    EXTRA_KEYS,
    compute_score,
    compute_score_async,
    compute_score_batch,
    compute_score_batch_async,
)
from rubrickit.rewards import RewardError, RewardScorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import Fault, OAIServer, Reply, default_reply  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUBRIC = """\
rubrickit: 1
id: rl-support
criteria:
- {id: addresses, text: The response addresses the customer's problem., weight: 3}
- {id: next-step, text: The response gives the customer a concrete next step., weight: 2}
- {id: polite, text: The response is polite., weight: 1}
- {id: brief, text: The response is at most 40 words., kind: hard, check: {type: max_words, value: 40}}
"""
TICKETS = [
    "My order #123 arrived broken. What now?",
    "I was charged twice for my subscription this month.",
    "How do I change the email address on my account?",
]
RESPONSES = [
    "Sorry about that! Reply with a photo and we will ship a replacement today.",
    "Thanks for telling us. We have refunded the second charge; it shows in 3-5 days.",
    "Go to Settings, then Account, and edit the email field.",
]
REFERENCES = ["Apologise and offer a replacement.", "Refund the duplicate charge.", "Point to account settings."]
BROKEN = "BROKEN-JUDGE-INPUT"
"""A response the scripted judge cannot read a verdict for (every LLM criterion errors)."""


def judge_reply(body: dict[str, Any]) -> Any:
    """The default deterministic judge, except that it rambles (no readable verdict) about :data:`BROKEN`."""
    text = json.dumps(body.get("messages"))
    return Reply("The statement is not met. It is not met.") if BROKEN in text else default_reply(body)


@pytest.fixture(autouse=True)
def _fresh_scorers() -> Iterator[None]:
    """Every test starts and ends with no scorer in the process (they are per-process singletons)."""
    rk_verl.close()
    yield
    rk_verl.close()


@pytest.fixture
def server() -> Iterator[OAIServer]:
    with OAIServer(reply=judge_reply) as srv:
        yield srv


@pytest.fixture
def rubric_path(tmp_path: Path) -> Path:
    path = tmp_path / "rl-support.yaml"
    path.write_text(RUBRIC)
    return path


def kwargs_for(server: OAIServer, rubric_path: Path | None, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """``reward_kwargs`` as ``+reward.custom_reward_function.reward_kwargs.*`` would give them."""
    out: dict[str, Any] = {"judge": "openai:judge-model", "base_url": server.url, "cache_dir": str(tmp_path / "c"),
                           "reasks": 0}
    if rubric_path is not None:
        out["rubric"] = str(rubric_path)
    return {**out, **extra}


def expected(server: OAIServer, rubric: Any, tmp_path: Path, samples: list[dict[str, Any]], **options: Any) -> Any:
    """The same samples through ``RewardScorer`` directly (its own cache, so the judge really answers again)."""
    options.setdefault("on_error", 0.0)
    with RewardScorer(rubric, judge="openai:judge-model", base_url=server.url, cache_dir=tmp_path / "expected",
                      reasks=0, **options) as scorer:
        return scorer.score(samples)


def assert_result(result: dict[str, Any]) -> None:
    """The same keys, in order, for every sample; plain finite numbers only (verl builds arrays and tensors)."""
    assert tuple(result) == EXTRA_KEYS
    for key, value in result.items():
        assert type(value) in (int, float), (key, value)
        assert math.isfinite(value), (key, value)
    assert result["scored"] in (0, 1) and result["gated"] in (0, 1)


# --------------------------------------------------------------------------- the calls verl makes


def test_per_sample_call_as_verl_makes_it(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path)
    results = []
    for index, (ticket, response, reference) in enumerate(zip(TICKETS, RESPONSES, REFERENCES, strict=True)):
        # verl 0.9.1, reward-loop naive manager: keywords, extra_info with verl's own additions, reward_kwargs merged
        extra_info = {"split": "train", "index": index, "prompt": ticket, "num_turns": 2, "rollout_reward_scores": {}}
        results.append(compute_score(data_source="rubrickit/support", solution_str=response, ground_truth=reference,
                                     extra_info=extra_info, **kwargs))
    want = expected(server, rubric_path, tmp_path, [
        {"prompt": t, "response": r, "reference": g} for t, r, g in zip(TICKETS, RESPONSES, REFERENCES, strict=True)])
    assert [r["score"] for r in results] == pytest.approx(want.rewards)
    assert [r["coverage"] for r in results] == pytest.approx([d.coverage for d in want.details])
    assert [r["scored"] for r in results] == [1, 1, 1]
    for result in results:
        assert_result(result)
    # verl's main_eval passes the first three positionally
    again = compute_score("rubrickit/support", RESPONSES[0], REFERENCES[0], {"prompt": TICKETS[0]}, **kwargs)
    assert again == results[0]


def test_batch_call_as_verl_makes_it(rubric_path: Path, tmp_path: Path) -> None:
    with OAIServer(reply=judge_reply, latency=0.05) as server:
        kwargs = kwargs_for(server, rubric_path, tmp_path, concurrency=32)
        n = 4  # rollouts per prompt, interleaved like DataProto.repeat(interleave=True)
        responses = [f"{RESPONSES[i]} (variant {j})" for i in range(3) for j in range(n)]
        responses[5] = BROKEN
        extra_infos = np.array([{"index": i, "prompt": TICKETS[i], "rollout_reward_scores": {}}
                                for i in range(3) for _ in range(n)], dtype=object)
        started = time.monotonic()
        results = compute_score_batch(
            data_sources=np.array(["rubrickit/support"] * 12, dtype=object), solution_strs=responses,
            ground_truths=[REFERENCES[i] for i in range(3) for _ in range(n)], extra_infos=extra_infos, **kwargs)
        elapsed = time.monotonic() - started
        want = expected(server, rubric_path, tmp_path, [
            {"prompt": TICKETS[i], "response": responses[i * n + j], "reference": REFERENCES[i]}
            for i in range(3) for j in range(n)])
        assert server.max_in_flight > 8  # one concurrent scorer call, not twelve in a row
    assert elapsed < 12 * 3 * 0.05  # faster than judging the samples one after another
    assert len(results) == 12
    assert [r["score"] for r in results] == pytest.approx(want.rewards)
    assert [r["scored"] for r in results] == [int(d.scored) for d in want.details]
    assert results[5]["scored"] == 0 and results[5]["score"] == 0.0 and results[5]["errors"] == 3
    for result in results:
        assert_result(result)


def test_group_key_normalises_within_the_batch_and_is_refused_per_sample(
        server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path, group_key="index")
    responses = [f"{RESPONSES[i % 3]} {'detail ' * (i % 4)}" for i in range(8)]
    extra_infos = [{"index": i // 4, "prompt": TICKETS[i // 4]} for i in range(8)]
    raw = compute_score_batch(data_sources=["s"] * 8, solution_strs=responses, ground_truths=[None] * 8,
                              extra_infos=extra_infos, **{**kwargs, "group_key": None})
    grouped = compute_score_batch(data_sources=["s"] * 8, solution_strs=responses, ground_truths=[None] * 8,
                                  extra_infos=extra_infos, **kwargs)
    for members in (range(0, 4), range(4, 8)):
        values = [raw[i]["score"] for i in members]
        mean, std = statistics.fmean(values), statistics.pstdev(values)
        for i in members:
            assert grouped[i]["score"] == pytest.approx((values[i - members[0]] - mean) / (std + 1e-6))
    with pytest.raises(RubrickitError, match="group_key='index' needs whole groups.*compute_score_batch"):
        compute_score(data_source="s", solution_str="x", ground_truth=None, extra_info=extra_infos[0], **kwargs)


# --------------------------------------------------------------------------- samples: prompt, reference, rubric


def test_reference_rule_and_prompt_shapes(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path, mode="per_response")

    def sent(**call: Any) -> str:
        server.requests.clear()
        compute_score(data_source="s", **call, **kwargs)
        return json.dumps([r.body["messages"] for r in server.requests if r.body])

    # ground_truth is the reference when extra_info has none ...
    assert "GT-REFERENCE-42" in sent(solution_str="a", ground_truth="GT-REFERENCE-42", extra_info={"prompt": "q1"})
    # ... extra_info's reference wins over it ...
    shown = sent(solution_str="b", ground_truth="GT-IGNORED", extra_info={"prompt": "q2", "reference": "EXTRA-REF-7"})
    assert "EXTRA-REF-7" in shown and "GT-IGNORED" not in shown
    # ... a non-string ground truth is shown as JSON, and ground_truth_as=ignore leaves it out
    assert '[\\"4\\", \\"four\\"]' in sent(solution_str="c", ground_truth=np.array(["4", "four"], dtype=object),
                                           extra_info={"prompt": "q3"})
    kwargs["ground_truth_as"] = "ignore"
    assert "GT-SECRET-9" not in sent(solution_str="d", ground_truth="GT-SECRET-9", extra_info={"prompt": "q4"})
    kwargs.pop("ground_truth_as")
    # chat prompts (as parquet gives them back: a NumPy array of message dicts), and verl's 'question' key
    chat = np.array([{"role": "system", "content": "You are support."},
                     {"role": "user", "content": "CHAT-PROMPT-TEXT"}], dtype=object)
    assert "CHAT-PROMPT-TEXT" in sent(solution_str="e", ground_truth=None, extra_info={"prompt": chat})
    assert "QUESTION-KEY-TEXT" in sent(solution_str="f", ground_truth="", extra_info={"question": "QUESTION-KEY-TEXT"})


def test_inline_rubrics_from_extra_info_or_ground_truth(server: OAIServer, tmp_path: Path) -> None:
    healthbench = [{"criterion": "The response apologises.", "points": 2, "tags": ["axis:tone"]},
                   {"criterion": "The response is rude.", "points": -3, "tags": None}]  # a parquet struct's None
    kwargs = kwargs_for(server, None, tmp_path)
    from_extra = compute_score(data_source="s", solution_str=RESPONSES[0], ground_truth=REFERENCES[0],
                               extra_info={"prompt": TICKETS[0], "rubric": np.array(healthbench, dtype=object)},
                               **kwargs)
    from_truth = compute_score(data_source="s", solution_str=RESPONSES[0], ground_truth=healthbench,
                               extra_info={"prompt": TICKETS[0]}, **kwargs, ground_truth_as="rubric")
    want = expected(server, None, tmp_path, [{"prompt": TICKETS[0], "response": RESPONSES[0],
                                              "reference": REFERENCES[0], "rubric": healthbench[:1] + [
                                                  {k: v for k, v in healthbench[1].items() if v is not None}]}])
    assert from_extra["criteria"] == from_truth["criteria"] == 2
    assert from_extra["score"] == pytest.approx(want.rewards[0])
    with pytest.raises(RewardError, match=r"no rubric: set \+reward.custom_reward_function.reward_kwargs.rubric="
                                          r".*RUBRICKIT_RUBRIC"):
        compute_score(data_source="s", solution_str="x", ground_truth="y", extra_info={"prompt": "q"}, **kwargs)


def test_rubric_set_by_prompt_id(server: OAIServer, tmp_path: Path) -> None:
    rows = [{"prompt_id": pid, "id": f"r-{pid}", "criteria": [
        {"id": "c1", "text": f"The response is helpful for {pid}."}, *([{"id": "c2", "text": "It is polite."}] *
                                                                        (pid == "p2"))]} for pid in ("p1", "p2")]
    path = tmp_path / "set.rubrics.jsonl"
    path.write_text("".join(json.dumps({"rubrickit": 1, "scope": "prompt", **row}) + "\n" for row in rows))
    kwargs = kwargs_for(server, path, tmp_path)
    by_extra = compute_score(data_source="s", solution_str="ok", ground_truth=None,
                             extra_info={"prompt": "q", "prompt_id": "p2"}, **kwargs)
    by_truth = compute_score(data_source="s", solution_str="ok", ground_truth="p1", extra_info={"prompt": "q"},
                             **kwargs, ground_truth_as="prompt_id")
    assert (by_extra["criteria"], by_truth["criteria"]) == (2, 1)


def test_bad_samples_are_named(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path)
    with pytest.raises(RewardError, match=r"sample 0: extra_info has no 'prompt' \(or 'question'\)"):
        compute_score(data_source="s", solution_str="x", ground_truth="y", extra_info={"index": 3}, **kwargs)
    with pytest.raises(RewardError, match="sample 0: extra_info has no 'prompt'"):
        compute_score(data_source="s", solution_str="x", ground_truth="y", **kwargs)
    with pytest.raises(RewardError, match="sample 1: solution_str must be the decoded response text"):
        compute_score_batch(data_sources=["s", "s"], solution_strs=["x", [1, 2]], ground_truths=[None, None],
                            extra_infos=[{"prompt": "q"}] * 2, **kwargs)
    with pytest.raises(RewardError, match="verl passed 1 extra_infos for 2 solution_strs"):
        compute_score_batch(data_sources=["s", "s"], solution_strs=["x", "y"], ground_truths=[None, None],
                            extra_infos=[{"prompt": "q"}], **kwargs)
    assert server.requests == []  # checked before any judge call


# --------------------------------------------------------------------------- configuration


def test_configuration_from_environment_variables(server: OAIServer, rubric_path: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICKIT_RUBRIC", str(rubric_path))
    monkeypatch.setenv("RUBRICKIT_JUDGE", "openai:judge-model")
    monkeypatch.setenv("RUBRICKIT_BASE_URL", server.url)
    monkeypatch.setenv("RUBRICKIT_MODE", "logprob")
    monkeypatch.setenv("RUBRICKIT_ON_ERROR", "-0.25")
    monkeypatch.setenv("RUBRICKIT_CONCURRENCY", "3")
    monkeypatch.setenv("RUBRICKIT_NO_CACHE", "1")
    result = compute_score(data_source="s", solution_str=RESPONSES[0], ground_truth=None,
                           extra_info={"prompt": TICKETS[0]})
    scorer = rk_verl.get_scorer()
    assert scorer.judge.options.mode == "logprob" and scorer.judge.options.concurrency == 3
    assert scorer.judge.options.use_cache is False and scorer.options.on_error == -0.25
    assert all(r.body["max_tokens"] == 1 for r in server.requests if r.body)  # one-token logprob verdicts
    assert result["scored"] == 1
    # reward_kwargs win over the environment (a different configuration: a second scorer)
    compute_score(data_source="s", solution_str=RESPONSES[0], ground_truth=None, extra_info={"prompt": TICKETS[0]},
                  mode="per_criterion")
    assert rk_verl.get_scorer(mode="per_criterion") is not scorer
    assert rk_verl.get_scorer(mode="per_criterion").judge.options.mode == "per_criterion"
    monkeypatch.setenv("RUBRICKIT_CONCURRENCY", "many")
    with pytest.raises(RubrickitError, match="RUBRICKIT_CONCURRENCY='many': expected a number"):
        rk_verl.get_scorer()


def test_missing_and_wrong_settings_are_named(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    call = {"data_source": "s", "solution_str": "x", "ground_truth": None, "extra_info": {"prompt": "q"}}
    with pytest.raises(RubrickitError, match=r"no judge configured.*reward_kwargs.judge=.*RUBRICKIT_JUDGE"):
        compute_score(**call, rubric=str(rubric_path))
    with pytest.raises(RubrickitError, match="on_error='none' cannot be used with verl"):
        compute_score(**call, **kwargs_for(server, rubric_path, tmp_path, on_error="none"))
    with pytest.raises(TypeError, match="unknown option 'on_eror'.*reward options:.*on_error"):
        compute_score(**call, **kwargs_for(server, rubric_path, tmp_path, on_eror=0))
    with pytest.raises(RubrickitError, match="ground_truth_as='label'"):
        compute_score(**call, **kwargs_for(server, rubric_path, tmp_path, ground_truth_as="label"))
    for bad in ({"api_key": "sk-SECRET-123"}, {"backend_options": {"api_key": "sk-SECRET-123"}}):
        with pytest.raises(RubrickitError, match="API key was passed in reward_kwargs") as info:
            compute_score(**call, **kwargs_for(server, rubric_path, tmp_path, **bad))
        assert "sk-SECRET" not in str(info.value)
    assert server.requests == []


def test_one_scorer_per_configuration_reused_across_calls(server: OAIServer, rubric_path: Path,
                                                          tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path)
    scorers = set()
    for _ in range(5):
        compute_score(data_source="s", solution_str=RESPONSES[1], ground_truth=REFERENCES[1],
                      extra_info={"prompt": TICKETS[1]}, **kwargs)
        scorers.add(id(rk_verl.get_scorer(**kwargs)))
    assert len(scorers) == 1
    scorer = rk_verl.get_scorer(**kwargs)
    assert scorer.totals.samples == 5
    assert scorer.totals.calls == 3 and scorer.totals.cache_hits == 12  # judged once, then the judge's cache
    assert len(server.requests) == 3
    # verl's reward loop runs a sync compute_score in executor threads, many at once: still one scorer, one loop
    with_threads = {**kwargs, "cache_dir": str(tmp_path / "threads")}
    outcomes: list[Any] = []

    def call(i: int) -> None:
        outcomes.append(compute_score(data_source="s", solution_str=f"{RESPONSES[i % 3]} #{i}", ground_truth=None,
                                      extra_info={"prompt": TICKETS[i % 3]}, **with_threads))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 16 and all(o["scored"] == 1 for o in outcomes)
    threaded = rk_verl.get_scorer(**with_threads)
    assert threaded.totals.samples == 16
    assert sum(1 for t in threading.enumerate() if t.name == "rubrickit-judge") == 2  # one loop per scorer
    assert rk_verl.totals().samples == 21


def test_reward_router_address_becomes_the_base_url(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path)
    del kwargs["base_url"]
    address = server.url.removeprefix("http://").removesuffix("/v1")
    result = compute_score(data_source="s", solution_str="ok", ground_truth=None, extra_info={"prompt": "q"},
                           reward_router_address=address, reward_model_tokenizer=object(), **kwargs)
    assert result["scored"] == 1 and len(server.requests) == 3


# --------------------------------------------------------------------------- failure policy


@pytest.mark.parametrize(("on_error", "value"), [(None, 0.0), (-1, -1.0), ("0.5", 0.5)])
def test_unscored_samples_get_the_policy_value_and_are_counted(
        rubric_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, on_error: Any, value: float) -> None:
    def faulty(body: dict[str, Any]) -> Any:  # HTTP 503 for every question about the BROKEN response
        return Fault.server_error(503) if BROKEN in json.dumps(body) else judge_reply(body)

    with OAIServer(reply=faulty) as server:
        kwargs = kwargs_for(server, rubric_path, tmp_path, max_retries=0, on_error=on_error)
        with caplog.at_level(logging.WARNING, logger="rubrickit.integrations.verl"):
            results = compute_score_batch(data_sources=["s"] * 3, solution_strs=[RESPONSES[0], BROKEN, RESPONSES[2]],
                                          ground_truths=[None] * 3, extra_infos=[{"prompt": t} for t in TICKETS],
                                          **kwargs)
    assert [r["scored"] for r in results] == [1, 0, 1]
    assert results[1]["score"] == value and results[1]["errors"] == 3 and results[1]["coverage"] == 0.25
    for result in results:
        assert_result(result)
    assert rk_verl.totals().unscored == 1 and rk_verl.totals().samples == 3
    [record] = [r for r in caplog.records if r.name == "rubrickit.integrations.verl"]
    assert "could not be scored" in record.getMessage() and "1 of 3 samples so far" in record.getMessage()
    assert "3 of 4 criteria errored" in record.getMessage()


def test_parse_failures_and_raise_policy(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path)
    result = compute_score(data_source="s", solution_str=BROKEN, ground_truth=None, extra_info={"prompt": "q"},
                           **kwargs)
    assert result == {"score": 0.0, "scored": 0, "gated": 0, "coverage": 0.25, "errors": 3, "criteria": 4}
    with pytest.raises(RewardError, match=r"1 of 1 samples could not be scored \(on_error='raise'\)"):
        compute_score(data_source="s", solution_str=BROKEN, ground_truth=None, extra_info={"prompt": "q"},
                      **{**kwargs, "on_error": "raise"})
    assert rk_verl.totals().unscored == 2


def test_gate_and_every_outcome_have_the_same_keys(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    long = "word " * 60
    results = compute_score_batch(data_sources=["s"] * 3, solution_strs=[RESPONSES[0], long, BROKEN],
                                  ground_truths=[None] * 3, extra_infos=[{"prompt": TICKETS[0]}] * 3,
                                  **kwargs_for(server, rubric_path, tmp_path, gate_value=-2))
    assert [(r["scored"], r["gated"]) for r in results] == [(1, 0), (1, 1), (0, 0)]
    assert results[1]["score"] == -2.0
    for result in results:
        assert_result(result)


# --------------------------------------------------------------------------- async variants


def test_async_variants_are_detected_as_verl_detects_them() -> None:
    # get_custom_reward_fn wraps an async function in functools.partial of an async merger of reward_kwargs; the
    # reward-loop managers then test the partial with inspect.iscoroutinefunction
    async def merge_kwargs(raw_fn: Any, extra: dict, *args: Any, **kwargs: Any) -> Any:
        return await raw_fn(*args, **{**kwargs, **extra})

    assert inspect.iscoroutinefunction(functools.partial(merge_kwargs, compute_score_async, {}))
    assert inspect.iscoroutinefunction(compute_score_async)
    assert inspect.iscoroutinefunction(compute_score_batch_async)
    assert not inspect.iscoroutinefunction(compute_score)
    assert not inspect.iscoroutinefunction(compute_score_batch)
    assert list(inspect.signature(compute_score_async).parameters) == list(inspect.signature(compute_score).parameters)


def test_async_per_sample_calls_run_concurrently_on_the_callers_loop(rubric_path: Path, tmp_path: Path) -> None:
    with OAIServer(reply=judge_reply, latency=0.05) as server:
        kwargs = kwargs_for(server, rubric_path, tmp_path, concurrency=64)

        async def step() -> list[dict[str, Any]]:
            # what verl's RewardLoopWorker.compute_score_batch does: one task per sample, gathered
            tasks = [asyncio.create_task(compute_score_async(
                data_source="s", solution_str=f"{RESPONSES[i % 3]} #{i}", ground_truth=REFERENCES[i % 3],
                extra_info={"prompt": TICKETS[i % 3], "index": i % 3}, **kwargs)) for i in range(12)]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                await rk_verl.aclose()  # on the loop whose connection pool it closes

        started = time.monotonic()
        results = asyncio.run(step())
        elapsed = time.monotonic() - started
        want = expected(server, rubric_path, tmp_path, [
            {"prompt": TICKETS[i % 3], "response": f"{RESPONSES[i % 3]} #{i}", "reference": REFERENCES[i % 3]}
            for i in range(12)])
    assert server.max_in_flight > 8 and elapsed < 12 * 3 * 0.05
    assert [r["score"] for r in results] == pytest.approx(want.rewards)


def test_async_batch_variant(server: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    kwargs = kwargs_for(server, rubric_path, tmp_path)

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        batch = await compute_score_batch_async(data_sources=["s"] * 3, solution_strs=[*RESPONSES[:2], BROKEN],
                                                ground_truths=REFERENCES, extra_infos=[{"prompt": t} for t in TICKETS],
                                                **kwargs)
        single = [await compute_score_async("s", r, g, {"prompt": t}, **kwargs)
                  for t, r, g in zip(TICKETS, [*RESPONSES[:2], BROKEN], REFERENCES, strict=True)]
        await rk_verl.aclose()
        return batch, single

    batch, single = asyncio.run(main())
    assert batch == single
    assert [r["scored"] for r in batch] == [1, 1, 0]


# =========================================================================== against verl itself

VERL_REASON = "verl is not installed here; `make test-verl` runs these in .venv-verl (verl 0.9.1)"
third_party_deprecations = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
"""verl 0.9.1 imports deprecated Ray, Hydra and transformers APIs: their warnings are not ours to fail on."""
ROLLOUTS = 2
ROWS = [
    {"ticket": TICKETS[0], "reference": REFERENCES[0], "responses": [RESPONSES[0], BROKEN]},
    {"ticket": TICKETS[1], "reference": REFERENCES[1], "responses": [RESPONSES[1], "word " * 50]},
    {"ticket": TICKETS[2], "reference": REFERENCES[2], "responses": [RESPONSES[2], "Sorry, I can't help."],
     "rubric": [{"criterion": "The response names the settings page.", "points": 3, "tags": ["axis:accuracy"]},
                {"criterion": "The response is rude.", "points": -2}]},
]


def make_tokenizer(path: Path) -> Any:
    """A byte-level BPE tokenizer trained here on the test texts (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [*TICKETS, *RESPONSES, *REFERENCES, BROKEN]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   clean_up_tokenization_spaces=False)
    fast.save_pretrained(path)
    return fast


@pytest.fixture
def verl_setup(tmp_path: Path, rubric_path: Path, server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """verl's config (composed from its ppo_trainer.yaml with the documented overrides), a tokenizer, and a rollout
    batch built as verl's trainer builds it."""
    pytest.importorskip("verl", reason=VERL_REASON)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    import datasets
    import torch
    import verl
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    tokenizer = make_tokenizer(tmp_path / "tokenizer")
    # the dataset as verl's example preprocessors write it
    parquet = tmp_path / "train.parquet"
    records = []
    for index, row in enumerate(ROWS):
        extra = {"split": "train", "index": index, "prompt": row["ticket"]}
        if "rubric" in row:
            extra["rubric"] = row["rubric"]
        records.append({"data_source": "rubrickit/support", "prompt": [{"role": "user", "content": row["ticket"]}],
                        "ability": "support", "reward_model": {"style": "model", "ground_truth": row["reference"]},
                        "extra_info": extra})
    datasets.Dataset.from_list(records).to_parquet(str(parquet))
    dataset = RLHFDataset(data_files=[str(parquet)], tokenizer=tokenizer,
                          config=OmegaConf.create({"filter_overlong_prompts": False,
                                                   "cache_dir": str(tmp_path / "verl-cache")}))
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(len(dataset))]))
    batch.non_tensor_batch["uid"] = np.array([f"uid-{i}" for i in range(len(batch))], dtype=object)
    batch = batch.repeat(repeat_times=ROLLOUTS, interleave=True)
    # the rollout: left-padded prompts, right-padded responses ending in EOS
    prompts = [tokenizer.encode(row["ticket"], add_special_tokens=False) for row in ROWS for _ in range(ROLLOUTS)]
    responses = [tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
                 for row in ROWS for text in row["responses"]]
    p_len, r_len = max(map(len, prompts)), max(map(len, responses)) + 3
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    prompt_mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) for p in prompts])
    response_mask = torch.tensor([[1] * len(r) + [0] * (r_len - len(r)) for r in responses])
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    rollout = DataProto.from_dict(tensors={
        "prompts": prompt_ids, "responses": response_ids, "response_mask": response_mask,
        "input_ids": torch.cat([prompt_ids, response_ids], dim=1), "attention_mask": attention_mask,
        "position_ids": torch.clamp(torch.cumsum(attention_mask, dim=1) - 1, min=0)})
    batch = batch.union(rollout)
    for text, ids in zip([t for row in ROWS for t in row["responses"]], responses, strict=True):
        assert tokenizer.decode(ids, skip_special_tokens=True) == text  # the decode verl does gives our texts

    config_dir = Path(verl.__file__).parent / "trainer" / "config"

    def config(name: str = "compute_score", manager: str = "naive", **reward_kwargs: Any) -> Any:
        kwargs = {"rubric": str(rubric_path), "judge": "openai:judge-model", "base_url": server.url,
                  "cache_dir": str(tmp_path / "verl-judge-cache"), "reasks": 0, **reward_kwargs}
        overrides = ["reward.custom_reward_function.path=pkg://rubrickit.integrations.verl",
                     f"reward.custom_reward_function.name={name}", f"reward.reward_manager.name={manager}",
                     f"actor_rollout_ref.model.path={tmp_path / 'tokenizer'}", "reward.num_workers=2",
                     "trainer.experiment_name=rubrickit-test"]
        overrides += [f"+reward.custom_reward_function.reward_kwargs.{k}={v}" for k, v in kwargs.items()]
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            return compose(config_name="ppo_trainer", overrides=overrides)

    samples = []
    for row in ROWS:
        for text in row["responses"]:
            sample = {"prompt": row["ticket"], "response": text, "reference": row["reference"]}
            if "rubric" in row:
                sample["rubric"] = row["rubric"]
            samples.append(sample)
    want = expected(server, rubric_path, tmp_path, samples)
    return {"config": config, "tokenizer": tokenizer, "batch": batch, "want": want}


def assert_extras(got: Any, want: Any) -> None:
    """verl's per-key lists (or arrays) of the extra keys equal those of ``RewardScorer``'s details."""
    results = [rk_verl._result(detail) for detail in want.details]  # noqa: SLF001 - the dicts verl should get
    assert sorted(got) == sorted(EXTRA_KEYS)
    for key in EXTRA_KEYS:
        assert list(got[key]) == pytest.approx([r[key] for r in results]), key


@third_party_deprecations
def test_verl_reward_loop_worker_with_async_and_sync_compute_score(verl_setup: Any) -> None:
    """verl 0.9.1's trainer path without Ray: the ``RewardLoopWorker`` class its Ray actors run, which builds the
    reward-loop ``naive`` manager with ``load_reward_manager`` → ``get_custom_reward_fn`` and gathers
    ``run_single`` over the samples (``compute_score_batch``)."""
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    want, batch = verl_setup["want"], verl_setup["batch"]
    assert want.stats.unscored == 1 and want.stats.gated == 1  # the batch has every outcome
    for name in ("compute_score_async", "compute_score"):
        config = verl_setup["config"](name)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            worker = RewardLoopWorker(config)
            assert worker.reward_manager.is_async_reward_score is (name == "compute_score_async")
            outputs = loop.run_until_complete(worker.compute_score_batch(batch))
            if name == "compute_score_async":
                loop.run_until_complete(rk_verl.aclose())
        finally:
            rk_verl.close()
            asyncio.set_event_loop(None)
            loop.close()
        scores = [o["reward_score"] for o in outputs]
        assert scores == pytest.approx(want.rewards)
        assert_extras({k: [o["reward_extra_info"][k] for o in outputs] for k in EXTRA_KEYS}, want)
        rm_scores = resolve_reward_manager_cls(config).assemble_rm_scores(batch, scores)  # verl's own assembly
        assert rm_scores.sum(dim=-1).tolist() == pytest.approx(want.rewards)


@third_party_deprecations
def test_verl_legacy_naive_and_batch_reward_managers(verl_setup: Any) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager import BatchRewardManager, NaiveRewardManager

    want, batch, tokenizer = verl_setup["want"], verl_setup["batch"], verl_setup["tokenizer"]
    naive = NaiveRewardManager(tokenizer=tokenizer, num_examine=0,
                               compute_score=get_custom_reward_fn(verl_setup["config"]("compute_score")))
    batched = BatchRewardManager(tokenizer=tokenizer, num_examine=0,
                                 compute_score=get_custom_reward_fn(verl_setup["config"]("compute_score_batch")))
    for manager in (naive, batched):
        out = manager(batch, return_dict=True)
        assert out["reward_tensor"].sum(dim=-1).tolist() == pytest.approx(want.rewards)
        assert_extras(out["reward_extra_info"], want)
    # the same reward_kwargs: one scorer for both managers and every call (6 per-sample calls, one batch of 6)
    assert len(rk_verl._entries) == 1  # noqa: SLF001
    assert rk_verl.totals().samples == 12 and rk_verl.totals().unscored == 2


@third_party_deprecations
def test_verl_0_9_refuses_the_batch_manager_name(verl_setup: Any) -> None:
    """verl 0.9.1's trainer resolves managers from the reward-loop registry only: ``batch`` is not there (use
    ``compute_score_async`` with the ``naive`` manager; the legacy ``batch`` contract is tested above)."""
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    with pytest.raises(ValueError, match="Unknown reward manager: batch"):
        resolve_reward_manager_cls(verl_setup["config"]("compute_score_batch", manager="batch"))


@third_party_deprecations
def test_verl_reward_loop_manager_on_ray(verl_setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's own ``RewardLoopManager``: two Ray reward-worker actors, each importing
    ``pkg://rubrickit.integrations.verl`` and awaiting ``compute_score_async``; rewards and extra keys come back in
    the trainer's ``DataProto`` (``rm_scores``, ``reward_extra_keys``) and through verl's ``extract_reward``."""
    ray = pytest.importorskip("ray", reason=VERL_REASON)
    from verl.experimental.reward_loop import RewardLoopManager
    from verl.trainer.ppo.reward import extract_reward

    want, batch = verl_setup["want"], verl_setup["batch"]
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                       "RAY_USAGE_STATS_ENABLED": "0"}})
    try:
        manager = RewardLoopManager(verl_setup["config"]("compute_score_async"))
        reward = manager.compute_rm_score(batch)
    finally:
        ray.shutdown()
    tensor, extras = extract_reward(batch.union(reward))
    assert tensor.sum(dim=-1).tolist() == pytest.approx(want.rewards)
    assert_extras(extras, want)
