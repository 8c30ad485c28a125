"""OpenRLHF's reward contract: query/prompt recovery rules, the reward server (``rubrickit serve``) on a real uvicorn
socket judged by the real loopback OpenAI-compatible server, and the ``reward_func`` file variant.

The requests are exactly OpenRLHF's (``openrlhf/utils/agent.py``): one sample per POST, ``{"query": [...],
"prompts": [...], "labels": [...]}``, a fresh aiohttp session per request, many at once; the queries are rendered as
chat templates render them (special tokens kept, left padding as older releases decoded batches).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from rubrickit.integrations import openrlhf
from rubrickit.integrations.openrlhf import (
    QueryError,
    RecoveryOptions,
    answer,
    build_samples,
    judge_prompt,
    label_fields,
    split_query,
)
from rubrickit.integrations.server import BackgroundServer, ServeOptions, build_scorer
from rubrickit.judge import score_files
from rubrickit.rewards import RewardDetail, RewardScorer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oai_server import OAIServer, Reply  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUBRIC = """\
rubrickit: 1
id: rl-support
criteria:
- {id: addresses, text: The response addresses the customer's problem., weight: 3}
- {id: next-step, text: The response gives the customer a concrete next step., weight: 2}
- {id: polite, text: The response is polite., weight: 1}
"""
SECRET = "sk-test-SECRETKEY-0123456789abcdef"
TOKEN = "serve-token-4242abcd"


# --------------------------------------------------------------------------- chat templates, as rendered


def chatml(messages: list[dict], generation: str = "") -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n" + generation


def llama3(messages: list[dict]) -> str:
    text = "<|begin_of_text|>" + "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in messages)
    return text + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def gemma(messages: list[dict]) -> str:
    roles = {"user": "user", "assistant": "model"}
    text = "<bos>" + "".join(f"<start_of_turn>{roles[m['role']]}\n{m['content'].strip()}<end_of_turn>\n"
                             for m in messages)
    return text + "<start_of_turn>model\n"


def mistral(messages: list[dict]) -> str:
    text = "<s>"
    for m in messages:
        text += f"[INST] {m['content']} [/INST]" if m["role"] == "user" else f" {m['content']}</s>"
    return text


def phi3(messages: list[dict]) -> str:
    return "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages) + "<|assistant|>\n"


# name → (render, left pad token, end-of-turn token, whether system messages are kept)
TEMPLATES = {
    "chatml": (chatml, "<|endoftext|>", "<|im_end|>", True),
    "llama3": (llama3, "<|end_of_text|>", "<|eot_id|>", True),
    "gemma": (gemma, "<pad>", "<end_of_turn>", False),
    "mistral": (mistral, "</s>", "</s>", False),
    "phi3": (phi3, "<|endoftext|>", "<|end|>", True),
}


def openrlhf_query(template: str, messages: list[dict], response: str, left_pad: int = 0, right_pad: int = 0
                   ) -> tuple[str, str]:
    """(query, prompt) as OpenRLHF sends them: the prompt's and the response's tokens decoded with special tokens
    kept (older releases: a left-padded batch, pads after the end token)."""
    render, pad, end, _ = TEMPLATES[template]
    prompt = render(messages)
    return pad * left_pad + prompt + response + end + pad * right_pad, prompt


# --------------------------------------------------------------------------- recovery rules (unit)


USER = [{"role": "user", "content": "My order #123 arrived broken. What now?"}]
SYSTEM_USER = [{"role": "system", "content": "You are a support agent."}, *USER]
MULTI = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "My order #123 arrived broken."}]


@pytest.mark.parametrize("template", list(TEMPLATES))
@pytest.mark.parametrize("pads", [(0, 0), (3, 2)])
def test_response_and_user_prompt_are_recovered_for_each_template(template: str, pads: tuple[int, int]) -> None:
    query, prompt = openrlhf_query(template, USER, "Sorry about that! A replacement ships today.", *pads)
    assert split_query(query, prompt) == "Sorry about that! A replacement ships today."
    assert judge_prompt(prompt) == USER[0]["content"]  # one user message: the plain text a data row holds


@pytest.mark.parametrize("template", [t for t, spec in TEMPLATES.items() if spec[3]])
def test_system_prompt_is_kept_as_a_chat_or_dropped(template: str) -> None:
    _, prompt = openrlhf_query(template, SYSTEM_USER, "ok")
    assert judge_prompt(prompt) == SYSTEM_USER
    assert judge_prompt(prompt, RecoveryOptions(drop_system=True)) == USER[0]["content"]


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_multi_turn_prompt_becomes_a_chat(template: str) -> None:
    query, prompt = openrlhf_query(template, MULTI, "I'm sorry! Send a photo and we'll replace it.")
    assert judge_prompt(prompt) == MULTI
    assert split_query(query, prompt) == "I'm sorry! Send a photo and we'll replace it."


def test_other_templates_and_variants() -> None:
    llama2 = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is 2+2? [/INST]"
    assert judge_prompt(llama2) == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "What is 2+2?"}]
    tekken = "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]What is 2+2?[/INST]"
    assert judge_prompt(tekken, RecoveryOptions(drop_system=True)) == "What is 2+2?"
    deepseek = "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\n"
    assert judge_prompt(deepseek) == "What is 2+2?"
    assert split_query(deepseek + "Four.<｜end▁of▁sentence｜>", deepseek) == "Four."
    qwen3 = chatml(USER, generation="<think>\n\n</think>\n\n")  # enable_thinking=False
    assert judge_prompt(qwen3) == USER[0]["content"]
    assert split_query(qwen3 + "Sorry!<|im_end|>", qwen3) == "Sorry!"
    phi4 = "<|im_start|>user<|im_sep|>What is 2+2?<|im_end|><|im_start|>assistant<|im_sep|>"
    assert judge_prompt(phi4) == "What is 2+2?"
    # No template (OpenRLHF's input_template, or a base model): the judge sees the prompt text as it is.
    plain = "Question: What is 2+2?\nAnswer:"
    assert judge_prompt(plain) == plain
    assert split_query(plain + " 4</s>", plain) == "4"
    # A template that does not parse completely is shown as it is, not half-parsed.
    broken = "<|im_start|>user\nunfinished"
    assert judge_prompt(broken) == broken
    assert judge_prompt(chatml(USER), RecoveryOptions(parse_template=False)) == chatml(USER)


def test_decode_whitespace_differences_are_tolerated() -> None:
    # SentencePiece decode / clean_up_tokenization_spaces can add or drop spaces inside the prompt text.
    prompt = "<s>[INST] Hello , world ! [/INST]"
    query = "<s> [INST] Hello, world! [/INST] Hi there.</s>"
    assert split_query(query, prompt) == "Hi there."
    # The BOS token may be on one side only.
    assert split_query("[INST] Hi [/INST] Yo</s>", "<s>[INST] Hi [/INST]") == "Yo"


def test_end_tokens_are_configurable() -> None:
    options = RecoveryOptions(end_tokens=("<|custom_end|>",))
    assert split_query("P: hi\nA: yo<|custom_end|>", "P: hi\nA:", options) == "yo"
    assert split_query("P: hi\nA: yo<|im_end|>", "P: hi\nA:", options) == "yo<|im_end|>"


def test_a_query_that_does_not_start_with_its_prompt_is_an_error_with_the_reason() -> None:
    query, prompt = openrlhf_query("chatml", USER, "Sorry!")
    with pytest.raises(QueryError, match=r"sample 4: the query does not start with its prompt .*differ at") as info:
        split_query(query.replace("#123", "#124"), prompt, index=4)
    assert info.value.index == 4
    # A prompt OpenRLHF cut from the left (longer than max_len - max_new_tokens) is named as such.
    long_user = [{"role": "user", "content": "word " * 200 + "the end of a long ticket."}]
    query, prompt = openrlhf_query("chatml", long_user, "Sorry!")
    with pytest.raises(QueryError, match="cuts prompts longer than max_len"):
        split_query(query[300:], prompt)
    with pytest.raises(QueryError, match="shorter than its prompt"):
        split_query(prompt[:40], prompt)
    with pytest.raises(QueryError, match="prompt is empty"):
        split_query("anything", "<s>")


def test_labels_give_prompt_id_reference_or_rubric() -> None:
    rubric_items = [{"criterion": "Says sorry", "points": 2}]
    assert label_fields(None) == {} and label_fields("") == {}
    assert label_fields("Paris") == {"reference": "Paris"}
    assert label_fields("p17", rubric_set=True) == {"prompt_id": "p17"}
    assert label_fields(42) == {"reference": "42"}
    assert label_fields({"prompt_id": "p1", "reference": "r", "id": 7}) == {"prompt_id": "p1", "reference": "r",
                                                                            "id": "7"}
    assert label_fields('{"prompt_id": "p1"}') == {"prompt_id": "p1"}  # a string holding a JSON object
    assert label_fields('{"prompt_id": "p1"}', RecoveryOptions(label_as="reference")) == \
        {"reference": '{"prompt_id": "p1"}'}
    assert label_fields({"rubrics": rubric_items}) == {"rubric": rubric_items}
    assert label_fields(rubric_items) == {"rubric": rubric_items}
    assert label_fields("p9", RecoveryOptions(label_as="prompt_id")) == {"prompt_id": "p9"}
    assert label_fields("anything", RecoveryOptions(label_as="ignore")) == {}
    with pytest.raises(QueryError, match="label must be"):
        label_fields(True)
    with pytest.raises(QueryError, match="label.prompt_id must be a string"):
        label_fields({"prompt_id": ["x"]})


def test_build_samples_checks_the_lists() -> None:
    query, prompt = openrlhf_query("llama3", USER, "Sorry!")
    assert build_samples([query], [prompt], ["ref"]) == [
        {"prompt": USER[0]["content"], "response": "Sorry!", "reference": "ref"}]
    with pytest.raises(QueryError, match="1 queries but 2 prompts"):
        build_samples([query], [prompt, prompt], None)
    with pytest.raises(QueryError, match="prompts must be a list"):
        build_samples([query], None, None)
    with pytest.raises(QueryError, match="labels must be null or a list of 1"):
        build_samples([query], [prompt], ["a", "b"])


def test_answer_lists_and_failure_policy() -> None:
    scored = RewardDetail(reward=0.5, scored=True, raw_reward=0.25, coverage=1.0, total=3, assessed=3)
    unscored = RewardDetail(reward=None, scored=False, reason="1 of 3 criteria errored", coverage=2 / 3, errors=1,
                            total=3, assessed=2)
    result = answer([scored, unscored])
    assert result["rewards"] == [0.5, None] and result["scores"] == [0.25, None]
    assert result["extra_logs"]["rubrickit/scored"] == [1.0, 0.0]
    assert result["extra_logs"]["rubrickit/error_verdicts"] == [0.0, 1.0]
    # The same keys, numbers only, for every sample: OpenRLHF makes a tensor of each and merges them by key.
    assert all(len(v) == 2 and all(isinstance(x, float) for x in v) for v in result["extra_logs"].values())
    assert answer([unscored], on_error="zero")["rewards"] == [0.0]
    assert answer([unscored], on_error=-1)["rewards"] == [-1.0]
    assert answer([unscored], on_error=-1)["scores"] == [-1.0]


# --------------------------------------------------------------------------- the server, end to end


@pytest.fixture
def rubric_path(tmp_path: Path) -> Path:
    path = tmp_path / "rl-support.yaml"
    path.write_text(RUBRIC)
    return path


def make_samples(n: int) -> list[dict[str, Any]]:
    """n distinct samples, rendered by rotating templates, with labels of every kind."""
    out = []
    for i in range(n):
        template = list(TEMPLATES)[i % len(TEMPLATES)]
        user = [{"role": "user", "content": f"Ticket {i}: my order #{1000 + i} arrived with a cracked screen."}]
        messages = [{"role": "system", "content": "You are a support agent."}, *user] \
            if i % 4 == 1 and TEMPLATES[template][3] else user
        response = f"Sorry about order #{1000 + i}! Reply with a photo and a replacement ships in {i % 5 + 1} days."
        query, prompt = openrlhf_query(template, messages, response, left_pad=i % 3, right_pad=i % 2)
        reference = f"Apologise and offer a replacement for order {1000 + i}."
        label = [None, reference, {"reference": reference}][i % 3]
        row: dict[str, Any] = {"id": f"s{i}", "prompt": messages if len(messages) > 1 else user[0]["content"],
                               "response": response}
        if label is not None:
            row["reference"] = reference
        out.append({"query": query, "prompt": prompt, "label": label, "row": row})
    return out


async def post_like_openrlhf(url: str, sample: dict[str, Any], **kwargs: Any) -> tuple[int, dict, dict]:
    """One request exactly as OpenRLHF's ``_fetch_rewards_via_http`` sends it (a new session per request)."""
    payload = {"query": [sample["query"]], "prompts": [sample["prompt"]], "labels": [sample["label"]]}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.post(url, json=payload, **kwargs) as response:
            return response.status, await response.json(), dict(response.headers)


@pytest.fixture
def judge() -> OAIServer:
    with OAIServer(latency=0.05) as server:
        yield server


def scorer_for(judge: OAIServer, rubric: Any, **options: Any) -> RewardScorer:
    options.setdefault("use_cache", False)
    options.setdefault("concurrency", 16)
    return build_scorer(rubric, judge="openai:judge-model", base_url=judge.url, **options)


def test_concurrent_openrlhf_requests_are_batched_and_equal_rubrickit_score(
        judge: OAIServer, rubric_path: Path, tmp_path: Path) -> None:
    samples = make_samples(32)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(s["row"]) + "\n" for s in samples))
    expected = {r.item_id: r for r in score_files(rubric_path, data, judge="openai:judge-model", base_url=judge.url,
                                                  use_cache=False).records}
    options = ServeOptions(port=0, batch_window_ms=20)
    with BackgroundServer(scorer_for(judge, rubric_path), options) as server:
        async def clients() -> list[tuple[int, dict, dict]]:
            return await asyncio.gather(*(post_like_openrlhf(server.url + "/get_reward", s) for s in samples))

        answers = asyncio.run(clients())
        health = httpx.get(server.url + "/health").json()
    for sample, (status, body, _) in zip(samples, answers, strict=True):
        assert status == 200, body
        record = expected[sample["row"]["id"]]
        assert record.errors == 0 and record.reward is not None
        assert body["rewards"] == [pytest.approx(record.reward)], sample["row"]["id"]
        assert body["scores"] == [pytest.approx(record.reward)]
        assert body["extra_logs"]["rubrickit/scored"] == [1.0]
    batches = health["batches"]
    assert batches["samples"] == 32 and batches["max_size"] > 1 and batches["count"] < 32, batches
    assert health["status"] == "ok" and health["requests"]["ok"] == 32
    assert health["judge_calls"] == 32 * 3


def test_bad_requests_are_400_naming_the_sample(judge: OAIServer, rubric_path: Path) -> None:
    good, bad = make_samples(2)
    with BackgroundServer(scorer_for(judge, rubric_path), ServeOptions(port=0)) as server:
        url = server.url + "/get_reward"
        response = httpx.post(url, json={"query": [good["query"], bad["query"].replace("Ticket 1", "Ticket 9")],
                                         "prompts": [good["prompt"], bad["prompt"]], "labels": None})
        assert response.status_code == 400
        assert response.json()["sample"] == 1
        assert "sample 1: the query does not start with its prompt" in response.json()["detail"]
        response = httpx.post(url, content=b"{not json")
        assert response.status_code == 400 and "not JSON" in response.json()["detail"]
        response = httpx.post(url, json={"query": [good["query"]]})
        assert response.status_code == 400 and "prompts must be a list" in response.json()["detail"]
        response = httpx.post(url, json={"query": [good["query"]], "prompts": [good["prompt"]],
                                         "labels": [{"rubric": "not: [a rubric"}]})
        assert response.status_code == 400 and response.json()["sample"] == 0
    assert not judge.requests  # nothing bad reached the judge


def test_token_is_required_when_set(judge: OAIServer, rubric_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (sample,) = make_samples(1)
    body = {"query": [sample["query"]], "prompts": [sample["prompt"]], "labels": [sample["label"]]}
    with BackgroundServer(scorer_for(judge, rubric_path), ServeOptions(port=0, token=TOKEN)) as server:
        url = server.url + "/get_reward"
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.post(f"{url}?token={TOKEN}", json=body).status_code == 200  # OpenRLHF sends no headers
        assert httpx.get(server.url + "/health").status_code == 200
    assert TOKEN not in caplog.text


def test_full_queue_answers_503_with_retry_after(rubric_path: Path) -> None:
    samples = make_samples(12)
    options = ServeOptions(port=0, max_queue=2, max_batch=1, max_batches=1, batch_window_ms=0)
    with OAIServer(latency=0.3) as slow, BackgroundServer(scorer_for(slow, rubric_path), options) as server:
        async def clients() -> list[tuple[int, dict, dict]]:
            return await asyncio.gather(*(post_like_openrlhf(server.url + "/get_reward", s) for s in samples))

        answers = asyncio.run(clients())
        too_big = httpx.post(server.url + "/get_reward", json={
            "query": [s["query"] for s in samples[:3]], "prompts": [s["prompt"] for s in samples[:3]]})
        assert too_big.status_code == 413 and "more than the queue holds" in too_big.json()["detail"]
        health = httpx.get(server.url + "/health").json()
    statuses = [status for status, _, _ in answers]
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
    for status, body, headers in answers:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1 and "--max-queue 2" in body["detail"]
        else:
            assert status == 200 and isinstance(body["rewards"][0], float)
    assert health["requests"]["overloaded"] == statuses.count(503)


def test_empty_request_health_and_draining(judge: OAIServer, rubric_path: Path) -> None:
    (sample,) = make_samples(1)
    body = {"query": [sample["query"]], "prompts": [sample["prompt"]], "labels": [sample["label"]]}
    with BackgroundServer(scorer_for(judge, rubric_path), ServeOptions(port=0)) as server:
        url = server.url + "/get_reward"
        # Several comma-separated reward URLs: OpenRLHF shards its one sample over them, the others get empty lists.
        empty = httpx.post(url, json={"query": [], "prompts": [], "labels": []})
        assert empty.status_code == 200 and empty.json()["rewards"] == [] and empty.json()["scores"] == []
        health = httpx.get(server.url + "/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["judge"] == "openai:judge-model" and health.json()["rubric"] == "rl-support"
        assert "base_url" not in health.text and judge.url not in health.text
        server.app.state.rubrickit.draining = True  # what SIGTERM sets before the listening socket closes
        refused = httpx.post(url, json=body)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "shutting down" in refused.json()["detail"]
        assert httpx.get(server.url + "/health").status_code == 503
    assert not judge.requests


def unreadable(body: dict[str, Any]) -> Reply:
    return Reply("I cannot decide.")


@pytest.mark.parametrize(("on_error", "status", "reward"), [("none", 200, None), ("0", 200, 0.0),
                                                            ("raise", 500, None)])
def test_unscored_samples_follow_the_failure_policy(rubric_path: Path, on_error: str, status: int,
                                                    reward: float | None) -> None:
    (sample,) = make_samples(1)
    body = {"query": [sample["query"]], "prompts": [sample["prompt"]], "labels": [sample["label"]]}
    with OAIServer(reply=unreadable) as bad, \
            BackgroundServer(scorer_for(bad, rubric_path, reasks=0), ServeOptions(port=0, on_error=on_error)) as srv:
        response = httpx.post(srv.url + "/get_reward", json=body)
        health = httpx.get(srv.url + "/health").json()
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["rewards"] == [reward]  # never a silent number: null, or the policy's value …
        assert response.json()["extra_logs"]["rubrickit/scored"] == [0.0]  # … and counted
    else:
        assert "sample 0 could not be scored: 3 of 3 criteria errored" in response.json()["detail"]
    assert health["batches"]["unscored"] == 1


def test_a_judge_that_cannot_answer_is_502(rubric_path: Path) -> None:
    (sample,) = make_samples(1)
    body = {"query": [sample["query"]], "prompts": [sample["prompt"]], "labels": [sample["label"]]}
    with OAIServer(api_key=SECRET) as locked, \
            BackgroundServer(scorer_for(locked, rubric_path,
                                        backend_options={"api_key": "sk-wrong-0000000000000000"}),
                             ServeOptions(port=0)) as srv:
        response = httpx.post(srv.url + "/get_reward", json=body)
    assert response.status_code == 502 and "judge is unavailable" in response.json()["detail"]


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(rubric_path: Path) -> None:
    samples = make_samples(4)
    with OAIServer(latency=1.0, api_key=SECRET) as judge:
        env = {**os.environ, "OPENAI_API_KEY": SECRET, "RUBRICKIT_SERVE_TOKEN": TOKEN}
        proc = subprocess.Popen(
            [sys.executable, "-c", "from rubrickit.cli import main; main()", "serve", "--rubric", str(rubric_path),
             "--judge", "openai:judge-model", "--base-url", judge.url, "--port", "0", "--no-cache", "-c", "16"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 30
            while not any("listening on" in line for line in lines):
                assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
                time.sleep(0.05)
            url = next(line for line in lines if "listening on" in line).split("listening on ")[1].split()[0]
            endpoint = f"{url}/get_reward?token={TOKEN}"

            async def in_flight() -> list[tuple[int, dict, dict]]:
                return await asyncio.gather(*(post_like_openrlhf(endpoint, s) for s in samples[:3]))

            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(asyncio.run, in_flight())
                while len(judge.requests) < 3:  # the samples are being judged (1 s each)
                    assert not pending.done(), pending.result()
                    assert time.monotonic() < deadline, (len(judge.requests), "".join(lines))
                    time.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.05)
                try:  # new requests are refused: 503 while the socket closes, then connection refused
                    late = httpx.post(endpoint, json={"query": [samples[3]["query"]],
                                                      "prompts": [samples[3]["prompt"]], "labels": [None]})
                    assert late.status_code == 503 and "shutting down" in late.json()["detail"]
                except httpx.ConnectError:
                    pass
                answers = pending.result(timeout=30)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
            proc.stderr.close()
    for status, body, _ in answers:
        assert status == 200 and isinstance(body["rewards"][0], float), body
    log = "".join(lines)
    assert "received SIGTERM" in log and "stopped: " in log
    assert "POST /get_reward 200" in log
    assert SECRET not in log and TOKEN not in log


# --------------------------------------------------------------------------- the reward_func file variant


def test_reward_func_file_loaded_like_openrlhf_gives_the_server_answers(
        judge: OAIServer, rubric_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = make_samples(8)
    with BackgroundServer(scorer_for(judge, rubric_path), ServeOptions(port=0)) as server:
        async def clients() -> list[tuple[int, dict, dict]]:
            return await asyncio.gather(*(post_like_openrlhf(server.url + "/get_reward", s) for s in samples))

        served = [body for _, body, _ in asyncio.run(clients())]
    for name, value in {"RUBRICKIT_RUBRIC": str(rubric_path), "RUBRICKIT_JUDGE": "openai:judge-model",
                        "RUBRICKIT_BASE_URL": judge.url, "RUBRICKIT_NO_CACHE": "1", "RUBRICKIT_ON_ERROR": "0",
                        "RUBRICKIT_CONCURRENCY": "16"}.items():
        monkeypatch.setenv(name, value)
    # OpenRLHF: importlib.util.spec_from_file_location("reward_func", path), then reward_func from many threads
    # at once (asyncio.to_thread), one sample per call.
    spec = importlib.util.spec_from_file_location("reward_func", REPO / "examples" / "rl" / "openrlhf_reward_func.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda s: module.reward_func([s["query"]], [s["prompt"]], [s["label"]]),
                                    samples))
        assert openrlhf._runtime is not None and openrlhf._runtime.batcher.stats.samples == 8
        with pytest.raises(QueryError, match="sample 0: the query does not start"):
            module.reward_func(["nope"], [samples[0]["prompt"]], [None])
    finally:
        runtime, openrlhf._runtime = openrlhf._runtime, None
        if runtime is not None:
            runtime.close()
    assert results == served
