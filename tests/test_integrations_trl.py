"""The TRL adapter (rubrickit.integrations.trl): a real GRPOTrainer on CPU, and the adapter against the real loopback
OpenAI-compatible judge server."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

trl = pytest.importorskip("trl", reason="the TRL adapter tests need trl (pip install 'rubrickit[rl]')")
torch = pytest.importorskip("torch", reason="the GRPOTrainer test needs torch (pip install 'rubrickit[local]')")

from rubrickit.errors import JudgeUnavailableError, RubricError  # noqa: E402
from rubrickit.integrations.trl import reward_function  # noqa: E402
from rubrickit.judge import score_files  # noqa: E402
from rubrickit.rewards import RewardError, RewardScorer  # noqa: E402
from rubrickit.rubric import RubricSet, load_rubric, parse_rubric  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import Fault, OAIServer, default_reply  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-trl-5e4d3c2b1a09"
JUDGE = "openai:judge-model"

# A check (exact, free) and two judge criteria, with tags for the per-tag sub-scores.
RUBRIC = parse_rubric("""
rubrickit: 1
id: tiny-answer
criteria:
- {id: short, text: The response is at most 20 words., check: {type: max_words, value: 20}, tags: [axis:format]}
- {id: correct, text: The response answers the question correctly., weight: 2, tags: [axis:accuracy]}
- {id: clear, text: The response is clear., tags: [axis:style]}
""")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OAIServer(api_key=KEY) as srv:
        yield srv


def make(server: OAIServer, tmp_path: Path, rubric: Any = RUBRIC, **options: Any) -> Any:
    options.setdefault("cache_dir", tmp_path / "cache")
    return reward_function(rubric, judge=JUDGE, base_url=server.url, **options)


def call(fn: Any, prompts: list[Any], completions: list[Any], **columns: Any) -> tuple[list[Any], dict, dict]:
    """Call the reward function the way GRPOTrainer does (keywords only), on a fresh event loop."""
    metrics: dict[str, float] = {}
    extra: dict[str, list[Any]] = {}

    def log_metric(name: str, value: float) -> None:
        metrics[name] = value

    def log_extra(column: str, values: list[Any]) -> None:
        extra[column] = values

    rewards = asyncio.run(fn(prompts=prompts, completions=completions,
                             completion_ids=[[1, 2, 3]] * len(completions), trainer_state=object(),
                             log_metric=log_metric, log_extra=log_extra, **columns))
    return rewards, metrics, extra


def reference_rewards(server: OAIServer, tmp_path: Path, samples: list[dict[str, Any]], rubric: Any = RUBRIC,
                      **options: Any) -> Any:
    """The reward core on its own (another cache, so every verdict comes from the judge again)."""
    with RewardScorer(rubric, judge=JUDGE, base_url=server.url, cache_dir=tmp_path / "ref-cache", **options) as s:
        return s.score(samples)


def judged_text(server: OAIServer) -> str:
    return json.dumps([r.body["messages"] for r in server.requests if isinstance(r.body, dict)])


# --------------------------------------------------------------------------- a real GRPOTrainer


def tiny_policy() -> tuple[Any, Any]:
    """A random 1-layer Llama and a byte-level tokenizer built in code (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<s>": 2}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        bos_token="<s>")
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<s>assistant: {% endif %}")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return LlamaForCausalLM(config), tokenizer


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")  # transformers 5 renamed it; TRL 1.16
def test_grpo_trainer_awaits_the_reward_on_its_loop_and_logs_metrics(server: OAIServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}], "prompt_id": f"p{i}",
             "reference": f"REF-{2 * i}", "note": "ignored"} for i in range(4)]
    fn = make(server, tmp_path)
    name = fn.__name__
    assert name == "rubric_tiny_answer"

    # Where the scorer runs: TRL awaits async reward functions on its own background loop.
    ran_on: list[tuple[threading.Thread, asyncio.AbstractEventLoop]] = []
    original = fn.scorer.ascore

    async def ascore(samples: Any) -> Any:
        ran_on.append((threading.current_thread(), asyncio.get_running_loop()))
        return await original(samples)

    monkeypatch.setattr(fn.scorer, "ascore", ascore)
    seen: list[dict[str, Any]] = []

    def recorder(prompts: list[Any], completions: list[Any], completion_ids: list[Any], **kwargs: Any) -> list[float]:
        seen.append({"prompts": prompts, "completions": completions, "completion_ids": completion_ids, **kwargs})
        return [0.0] * len(prompts)

    policy, tokenizer = tiny_policy()
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, max_steps=2, logging_steps=1, report_to="none", use_cpu=True,
                      save_strategy="no", log_completions=True, seed=0, bf16=False, disable_tqdm=True,
                      reward_weights=[1.0, 0.0])
    trainer = GRPOTrainer(model=policy, processing_class=tokenizer, reward_funcs=[fn, recorder], args=args,
                          train_dataset=Dataset.from_list(rows))
    try:
        trainer.train()
    finally:
        fn.close()

    # TRL's keywords reached the reward functions: the dataset columns, the trainer state and both loggers.
    assert len(seen) == 2
    for kwargs in seen:
        assert {"prompt_id", "reference", "note", "trainer_state", "log_metric", "log_extra"} <= set(kwargs)
        assert len(kwargs["completion_ids"]) == len(kwargs["completions"]) == 4
    assert len(ran_on) == 2
    assert all(thread is not threading.main_thread() and loop is trainer.async_loop for thread, loop in ran_on)

    # Metrics named after the function: TRL's own and those sent through log_metric.
    steps = [entry for entry in trainer.state.log_history if f"rewards/{name}/mean" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert entry[f"{name}/coverage"] == 1.0 and entry[f"{name}/error_rate"] == 0.0
        assert entry[f"{name}/judge_calls"] > 0
        for tag in ("axis:format", "axis:accuracy", "axis:style"):
            assert f"{name}/tag/{tag}" in entry

    # The rewards TRL received are the reward core's (and `rubrickit score`'s) on the same samples.
    for step, kwargs in enumerate(seen, start=1):
        table = pd.read_parquet(tmp_path / "out" / "completions" / f"completions_{step:05d}.parquet")
        samples = [{"prompt": [dict(m) for m in prompt], "response": completion[0]["content"], "reference": ref}
                   for prompt, completion, ref in zip(kwargs["prompts"], kwargs["completions"],
                                                      kwargs["reference"], strict=True)]
        assert [c[0]["content"] for c in table["completion"]] == [s["response"] for s in samples]
        expected = reference_rewards(server, tmp_path, samples)
        got = [None if math.isnan(value) else value for value in table[name]]
        assert got == pytest.approx(expected.rewards)
        for index, detail in enumerate(expected.details):
            for criterion_id, label in detail.verdict_map().items():
                assert table[f"{name}/{criterion_id}"][index] == label
        data = tmp_path / f"step{step}.jsonl"
        data.write_text("".join(json.dumps(s) + "\n" for s in samples))
        records = score_files(_rubric_file(tmp_path), data, judge=JUDGE, base_url=server.url,
                              cache_dir=tmp_path / "score-cache").records
        assert [r.reward for r in records] == pytest.approx(expected.rewards)

    # The key went to the server and nowhere else.
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in server.requests)
    logged = json.dumps(trainer.state.log_history) + "".join(
        p.read_bytes().decode("latin-1") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert KEY not in logged


def _rubric_file(tmp_path: Path) -> Path:
    from rubrickit.rubric import save_rubric

    path = tmp_path / "tiny-answer.yaml"
    if not path.exists():
        save_rubric(RUBRIC, path)
    return path


# --------------------------------------------------------------------------- the function TRL sees


def test_is_a_coroutine_function_named_for_its_metrics(server: OAIServer, tmp_path: Path) -> None:
    from trl.trainer.utils import get_callable_name, is_async_callable

    fn = make(server, tmp_path)
    assert inspect.iscoroutinefunction(fn) and is_async_callable(fn)
    assert fn.__name__ == get_callable_name(fn) == "rubric_tiny_answer"
    assert isinstance(fn.scorer, RewardScorer) and fn.scorer.spec == JUDGE
    assert make(server, tmp_path, name="support").__name__ == "support"
    assert make(server, tmp_path, rubric=None).__name__ == "rubric_inline"
    rubric_set = tmp_path / "health.rubrics.jsonl"
    rubric_set.write_text(RUBRIC.model_copy(update={"prompt_id": "p1"}).model_dump_json() + "\n")
    assert make(server, tmp_path, rubric=rubric_set).__name__ == "rubric_health"
    assert make(server, tmp_path, rubric=RubricSet([])).__name__ == "rubric_set"
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        make(server, tmp_path, name=" ")
    with pytest.raises(TypeError, match="unknown option 'temprature'"):
        make(server, tmp_path, temprature=0.5)


def test_options_reach_the_scorer_and_group_key_warns(server: OAIServer, tmp_path: Path) -> None:
    fn = make(server, tmp_path, on_error="zero", min_coverage=0.5, scale=2.0, mode="per_response", concurrency=3)
    options, judge = fn.scorer.options, fn.scorer.judge.options
    assert (options.on_error, options.min_coverage, options.scale) == ("zero", 0.5, 2.0)
    assert (judge.mode, judge.concurrency, judge.cache_dir) == ("per_response", 3, tmp_path / "cache")
    with pytest.warns(UserWarning, match="already normalises rewards per group"):
        make(server, tmp_path, group_key="prompt_id")


def test_standard_format_scores_like_the_reward_core(server: OAIServer, tmp_path: Path) -> None:
    prompts = ["What is 2 + 2?", "Name a prime above 10."]
    completions = ["It is 4.", "Eleven is a prime above ten, and so is thirteen, " + "really " * 30]
    rewards, metrics, _ = call(make(server, tmp_path), prompts, completions, reference=["REF-FOUR", "REF-ELEVEN"])
    expected = reference_rewards(server, tmp_path, [
        {"prompt": p, "response": c, "reference": r}
        for p, c, r in zip(prompts, completions, ["REF-FOUR", "REF-ELEVEN"], strict=True)])
    assert rewards == pytest.approx(expected.rewards) and all(isinstance(r, float) for r in rewards)
    assert expected.details[1].verdict_map()["short"] == "unmet"  # the check decided, without a judge call
    sent = judged_text(server)
    assert "Name a prime above 10." in sent and "REF-ELEVEN" in sent and "It is 4." in sent
    assert metrics["rubric_tiny_answer/coverage"] == 1.0


def test_conversational_format_judges_the_assistant_text(server: OAIServer, tmp_path: Path) -> None:
    prompts = [[{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is shown here?"}, {"type": "image"}]}],
               [{"role": "user", "content": "Capital of France?"}]]
    completions = [[{"role": "assistant", "content": "A cat.", "tool_calls": None}],
                   [{"role": "assistant", "content": "Let me check."},
                    {"role": "tool", "content": "TOOL-OUTPUT-SECRET"},
                    {"role": "assistant", "content": [{"type": "text", "text": "It is Paris."}]}]]
    rewards, _, _ = call(make(server, tmp_path), prompts, completions)
    expected = reference_rewards(server, tmp_path, [
        {"prompt": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is shown here?\n[image]"}], "response": "A cat."},
        {"prompt": [{"role": "user", "content": "Capital of France?"}], "response": "Let me check.\n\nIt is Paris."},
    ])
    assert rewards == pytest.approx(expected.rewards)
    sent = judged_text(server)
    assert "Be brief." in sent and "Let me check.\\n\\nIt is Paris." in sent
    assert "TOOL-OUTPUT-SECRET" not in sent


def test_prompt_id_picks_the_rubric_from_a_rubric_set(server: OAIServer, tmp_path: Path) -> None:
    france = parse_rubric("""
rubrickit: 1
id: france
prompt_id: q-france
criteria:
- {id: paris, text: The response names Paris., check: {type: required_keywords, words: [paris]}}
""")
    short = parse_rubric("""
rubrickit: 1
id: brevity
prompt_id: q-short
criteria:
- {id: three-words, text: The response is at most 3 words., check: {type: max_words, value: 3}}
- {id: polite, text: The response is polite.}
""")
    fn = make(server, tmp_path, rubric=RubricSet([france, short]))
    hello = "Hello there, dear friend!"
    rewards, _, extra = call(fn, ["Capital of France?"] * 2 + ["Say hi."], ["Paris.", "London.", hello],
                             prompt_id=["q-france", "q-france", "q-short"])
    assert rewards[:2] == [1.0, 0.0]
    assert rewards[2] == pytest.approx(reference_rewards(server, tmp_path, [
        {"prompt": "Say hi.", "response": hello}], rubric=short).rewards[0])
    assert len(server.requests) == 2  # one judge criterion (twice: the reward core again); checks are local
    # Criteria differ between samples: one verdicts column, not a column per criterion.
    assert extra["rubric_set/verdicts"][:2] == ["paris: met", "paris: unmet"]
    assert extra["rubric_set/verdicts"][2].startswith("three-words: unmet; polite: ")
    calls = len(server.requests)
    with pytest.raises(RubricError, match="has no rubric for prompt_id 'q-other'"):
        call(fn, ["x", "y"], ["a", "b"], prompt_id=["q-france", "q-other"])
    with pytest.raises(RubricError, match="no prompt_id"):
        call(fn, ["x"], ["a"])
    assert len(server.requests) == calls  # refused before any judge call


def test_inline_rubric_column_including_a_datasets_struct(server: OAIServer, tmp_path: Path) -> None:
    from datasets import Dataset

    rows = [
        {"rubric": {"id": "a", "criteria": [{"id": "brief", "text": "At most 2 words.",
                                             "check": {"type": "max_words", "value": 2}}]}},
        {"rubric": {"id": "b", "criteria": [{"id": "thanks", "text": "Says thanks.", "weight": 2,
                                             "check": {"type": "required_keywords", "words": ["thanks"]}}]}},
    ]
    # Arrow merges the two structs: every row now has every key, missing ones set to None.
    column = Dataset.from_list(rows)["rubric"]
    assert column[0]["criteria"][0]["check"]["words"] is None and column[0]["criteria"][0]["weight"] is None
    healthbench = json.dumps([{"criterion": "Mentions a refund.", "points": 5, "tags": ["axis:accuracy"]}])
    fn = make(server, tmp_path, rubric=None)
    rewards, _, extra = call(fn, ["q"] * 4, ["Two words", "No thanks given here", "Thanks!", "We will refund you."],
                             rubric=[column[0], column[0], column[1], healthbench])
    assert rewards[:3] == [1.0, 0.0, 1.0]
    assert rewards[3] is not None and len(server.requests) == 1  # the HealthBench item went to the judge
    assert extra["rubric_inline/verdicts"][:3] == ["brief: met", "brief: unmet", "thanks: met"]


def test_columns_map_dataset_names_and_other_columns_are_ignored(server: OAIServer, tmp_path: Path) -> None:
    fn = make(server, tmp_path, columns={"reference": "solution"})
    rewards, _, _ = call(fn, ["What is 6 x 7?"], ["42."], solution=[4242], answer=["IGNORED-COLUMN"],
                         environments=[object()])
    assert rewards[0] is not None
    sent = judged_text(server)
    assert "4242" in sent and "IGNORED-COLUMN" not in sent
    # A dataset whose 'rubric' column means something else: not read when mapped to None.
    ignoring = make(server, tmp_path, name="rk", columns={"rubric": None})
    rewards, _, extra = call(ignoring, ["q"], ["a."], rubric=["support-v2"])
    assert rewards[0] is not None and set(extra) == {"rk/short", "rk/correct", "rk/clear", "rk/reason"}
    with pytest.raises(RubricError):
        call(make(server, tmp_path), ["q"], ["a."], rubric=["support-v2"])
    with pytest.raises(TypeError, match="unknown sample field 'answer'"):
        make(server, tmp_path, columns={"answer": "solution"})
    with pytest.raises(RewardError, match="column 'solution': expected one value per completion \\(2\\), got 1"):
        call(fn, ["a", "b"], ["x", "y"], solution=["only one"])
    with pytest.raises(RewardError, match="2 prompts for 1 completions"):
        call(fn, ["a", "b"], ["x"])


# --------------------------------------------------------------------------- failures are never a silent 0


def overlong_for_correct(body: dict[str, Any]) -> Any:
    """The judge refuses the 'correct' criterion's request (400, context too long); the others are answered."""
    if "answers the question correctly" in str(body.get("messages", [{}])[-1].get("content", "")):
        return Fault.http_error(400, "This model's maximum context length is 4096 tokens.",
                                code="context_length_exceeded")
    return default_reply(body)


@pytest.mark.parametrize(("on_error", "expected"), [("none", None), ("zero", 0.0)])
def test_judge_errors_give_the_failure_policy_value_and_are_counted(server: OAIServer, tmp_path: Path,
                                                                   on_error: str, expected: float | None) -> None:
    server.script(overlong_for_correct)
    fn = make(server, tmp_path, on_error=on_error)
    rewards, metrics, extra = call(fn, ["What is 2 + 2?", "Capital of France?"], ["4.", "Paris."])
    assert rewards == [expected, expected]
    name = fn.__name__
    assert metrics[f"{name}/error_rate"] == 1.0 and metrics[f"{name}/unscored"] == 2.0
    assert metrics[f"{name}/coverage"] == pytest.approx(2 / 3)
    assert f"{name}/raw_reward_mean" not in metrics
    assert extra[f"{name}/correct"] == ["error", "error"] and extra[f"{name}/short"] == ["met", "met"]
    assert all("1 of 3 criteria errored" in reason for reason in extra[f"{name}/reason"])
    assert fn.scorer.totals.unscored == 2


def test_on_error_raise_stops_the_step_with_the_reason(server: OAIServer, tmp_path: Path) -> None:
    server.script(overlong_for_correct)
    with pytest.raises(RewardError, match=r"1 of 1 samples could not be scored.*criteria errored"):
        call(make(server, tmp_path, on_error="raise"), ["What is 2 + 2?"], ["4."])


def test_unusable_judge_stops_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-000000")
    with OAIServer(api_key=KEY) as srv:
        fn = reward_function(RUBRIC, judge=JUDGE, base_url=srv.url, cache_dir=tmp_path / "cache")
        with pytest.raises(JudgeUnavailableError) as raised:
            call(fn, ["q"], ["a"])
    assert "sk-wrong-key-000000" not in str(raised.value)


def test_log_metric_and_log_extra_give_one_value_per_completion(server: OAIServer, tmp_path: Path) -> None:
    fn = make(server, tmp_path, name="rk")
    prompts, completions = ["a?", "b?", "a?"], ["x.", "y.", "x."]
    rewards, metrics, extra = call(fn, prompts, completions)
    assert set(metrics) >= {"rk/coverage", "rk/error_rate", "rk/error_verdict_rate", "rk/gate_rate", "rk/unscored",
                            "rk/raw_reward_mean", "rk/judge_calls", "rk/cache_hits", "rk/seconds",
                            "rk/tag/axis:format", "rk/tag/axis:accuracy", "rk/tag/axis:style"}
    assert metrics["rk/judge_calls"] == 4 and metrics["rk/cache_hits"] == 2  # the repeated sample cost nothing
    assert metrics["rk/raw_reward_mean"] == pytest.approx(sum(rewards) / 3)
    assert set(extra) == {"rk/short", "rk/correct", "rk/clear", "rk/reason"}
    assert all(len(values) == 3 for values in extra.values())
    assert set(extra["rk/correct"]) <= {"met", "unmet"} and extra["rk/reason"] == [None] * 3
    assert rewards[0] == rewards[2]
    _, _, quiet = call(make(server, tmp_path, name="rk", log_verdicts=False), prompts, completions)
    assert set(quiet) == {"rk/reason"}
    # Without TRL's loggers (TRL < 1.0), the rewards alone.
    assert asyncio.run(fn(prompts=prompts, completions=completions)) == rewards


def test_close_runs_on_the_loop_that_used_the_judge(server: OAIServer, tmp_path: Path) -> None:
    from trl.trainer.utils import shutdown_event_loop_in_daemon, start_event_loop_in_daemon

    thread, loop, ready = start_event_loop_in_daemon(name="trl-like-loop")
    ready.wait()
    try:
        fn = make(server, tmp_path)
        future = asyncio.run_coroutine_threadsafe(fn(prompts=["q"], completions=["a."]), loop)
        assert future.result(timeout=30)[0] is not None
        fn.close()
        assert fn.scorer.judge._closed  # noqa: SLF001
    finally:
        shutdown_event_loop_in_daemon(thread, loop)  # stops the loop and joins the thread, but leaves it open
        loop.close()


# --------------------------------------------------------------------------- the example


def test_rl_example_files_are_valid(tmp_path: Path) -> None:
    from rubrickit.data.items import DataItem
    from rubrickit.rubric.checks import run_check

    rubric = load_rubric(REPO / "examples" / "rl" / "concise-answer.yaml")
    checks = {c.id: c.check for c in rubric.criteria if c.check is not None}
    assert checks and len(checks) < len(rubric.criteria)  # programmatic checks and judge criteria
    assert run_check(checks["finished"], "Paris is the capital of France.").met
    assert not run_check(checks["finished"], "Paris is the capital of").met
    rows = [json.loads(line) for line in (REPO / "examples" / "rl" / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) >= 4
    for row in rows:
        DataItem.model_validate({**row, "response": "x"})
    shown = subprocess.run([sys.executable, str(REPO / "examples" / "rl" / "trl_grpo.py"), "--help"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--max-steps" in shown.stdout
