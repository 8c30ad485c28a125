"""rubrickit on Ray Data (issue 14): a local Ray cluster (``ray.init(num_cpus=2)``) against the loopback judge server.

The Ray path must give the local path's records record for record (same verdicts, rewards, errors), write the same
files, resume at the block level, and survive a judge actor killed mid-job with no lost or duplicated rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from oai_server import OAIServer, Reply

from rubrickit.errors import MissingDependencyError, RubrickitError
from rubrickit.judge.engine import JudgeOptions

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'rubrickit[ray]'")

from rubrickit.integrations import ray as rk_ray  # noqa: E402
from rubrickit.integrations.ray import RayOptions, actor_resources  # noqa: E402
from rubrickit.judge.run import compare_files, score_files  # noqa: E402

pytestmark = pytest.mark.timeout(300)

RUBRIC = """\
rubrickit: 1
id: scale-test
version: 1.0.0
aggregation: weighted_mean
criteria:
- id: answers
  text: The response answers the question that was asked.
  weight: 3
- id: polite
  text: The response is polite.
  weight: 1
- id: invents
  text: The response invents facts that the prompt does not support.
  weight: -2
  category: pitfall
"""

TOPICS = ["a refund for a late parcel", "a password reset", "a broken charger", "a double charge on a card",
          "an app that crashes on start", "changing a delivery address", "a missing invoice", "a cancelled flight"]


def _reply(body: dict) -> Reply | str:
    """A verdict that is a function of the request alone; one request in eleven gets prose (a parse error that the
    re-asks cannot fix: an error verdict on both paths alike)."""
    question = next(str(m["content"]) for m in body["messages"] if m["role"] == "user")  # re-asks: the same answer
    digest = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    if digest % 11 == 0:
        return "I think it is fine overall."
    verdict = "met" if digest % 3 else "unmet"
    return json.dumps({"rationale": f"scripted {verdict}", "verdict": verdict})


def _items(n: int) -> list[dict]:
    return [{"id": f"item-{i:04d}", "prompt": f"Customer {i} asks about {TOPICS[i % len(TOPICS)]}.",
             "response": f"Reply {i}: we are sorry, here is what we will do about {TOPICS[(i * 7) % len(TOPICS)]}."}
            for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _comparable(record: dict) -> dict:
    """A record without what differs between two runs of the same judgments (latency, token counts, timings)."""
    keep = {k: v for k, v in record.items() if k not in ("usage", "latency_s", "elapsed_s")}
    keep["verdicts"] = [{k: v for k, v in verdict.items() if k not in ("usage", "latency_s")}
                        for verdict in record.get("verdicts", [])]
    return keep


def _by_key(records: list[dict], *fields: str) -> dict:
    return {tuple(r.get(f) for f in fields): _comparable(r) for r in records}


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("OPENAI_API_KEY", "sk-test-ray-0f1e2d3c4b5a")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", configure_logging=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def judge_server():
    with OAIServer(reply=_reply) as server:
        yield server


@pytest.fixture(scope="module")
def rubric_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rubric") / "scale-test.yaml"
    path.write_text(RUBRIC)
    return path


def _options(**update) -> JudgeOptions:
    return JudgeOptions(**{"mode": "per_criterion", "use_cache": False, "concurrency": 16, **update})


# --------------------------------------------------------------------------- record for record


def test_a_thousand_items_on_ray_equal_the_local_run_record_for_record(cluster, judge_server, rubric_path, tmp_path):
    data = _write_jsonl(tmp_path / "items.jsonl", _items(1000))
    local = score_files(rubric_path, data, judge="openai:judge", base_url=judge_server.url,
                        out=tmp_path / "local.jsonl", options=_options())
    calls_before = len(judge_server.requests)
    remote = rk_ray.score_files_ray(rubric_path, data, judge="openai:judge", base_url=judge_server.url,
                                    out=tmp_path / "ray.jsonl", options=_options(),
                                    ray_options=RayOptions(actors=2))
    a, b = _lines(tmp_path / "local.jsonl"), _lines(tmp_path / "ray.jsonl")
    assert len(a) == len(b) == 1000
    assert _by_key(a, "item_id", "rubric_id", "repeat") == _by_key(b, "item_id", "rubric_id", "repeat")
    errors = sum(r["errors"] for r in b)
    assert errors > 0 and errors == local.errors == remote.errors  # the scripted parse errors, on both paths
    assert remote.accounting["calls"] == len(judge_server.requests) - calls_before  # every call accounted
    assert remote.accounting["calls"] == local.accounting["calls"]
    assert remote.accounting["errors"] == local.accounting["errors"]
    assert remote.accounting["actors"] == 2


def test_pairs_on_ray_equal_the_local_comparison(cluster, judge_server, rubric_path, tmp_path):
    items = _items(120)
    pairs = [{"id": f"pair-{i}", "prompt": items[i]["prompt"], "response_a": items[i]["response"],
              "response_b": items[i + 60]["response"]} for i in range(60)]
    data = _write_jsonl(tmp_path / "pairs.jsonl", pairs)
    compare_files(rubric_path, data, judge="openai:judge", base_url=judge_server.url, out=tmp_path / "local.jsonl",
                  options=_options())
    rk_ray.compare_files_ray(rubric_path, data, judge="openai:judge", base_url=judge_server.url,
                             out=tmp_path / "ray.jsonl", options=_options(), ray_options=RayOptions(actors=2))
    a, b = _lines(tmp_path / "local.jsonl"), _lines(tmp_path / "ray.jsonl")
    assert len(a) == len(b) == 60
    assert _by_key(a, "pair_id", "rubric_id", "repeat") == _by_key(b, "pair_id", "rubric_id", "repeat")


def test_eval_on_ray_gives_the_local_rows_and_metrics(cluster, judge_server, rubric_path, tmp_path):
    from rubrickit import evaluate

    items = _items(80)
    pairs = [{"id": f"pair-{i}", "prompt": items[i]["prompt"], "chosen": items[i]["response"],
              "rejected": items[i + 40]["response"]} for i in range(40)]
    data = _write_jsonl(tmp_path / "labelled.jsonl", pairs)
    common = dict(judge="openai:judge", base_url=judge_server.url, rubrics=[str(rubric_path)], mode="per_criterion",
                  use_cache=False, concurrency=16)
    local = evaluate([data], **common)
    remote = evaluate([data], ray_options=RayOptions(actors=2), **common)
    rows_local = [r for r in local.records if r["type"] == "pair"]
    rows_remote = [r for r in remote.records if r["type"] == "pair"]
    assert [r["pair_id"] for r in rows_remote] == [r["pair_id"] for r in rows_local]  # input order kept
    assert rows_remote == rows_local
    config = local.runs[0].config
    assert remote.runs[0].info["engine"] == {"kind": "ray", "actors": 2}
    assert remote.runs[0].info["accounting"]["calls"] == local.runs[0].info["accounting"]["calls"]
    assert remote.runs[0].config == config


# --------------------------------------------------------------------------- the CLI, resume, faults


def test_cli_engine_ray_writes_the_local_file_and_resumes_at_the_block_level(cluster, judge_server, rubric_path,
                                                                             tmp_path):
    from typer.testing import CliRunner

    from rubrickit.cli import app

    data = _write_jsonl(tmp_path / "items.jsonl", _items(200))
    base = ["--rubric", str(rubric_path), "--data", str(data), "--judge", "openai:judge", "--base-url",
            judge_server.url, "--mode", "per_criterion", "--no-cache", "--concurrency", "8"]
    runner = CliRunner()
    start = len(judge_server.requests)
    local = runner.invoke(app, ["score", *base, "--out", str(tmp_path / "local.jsonl")])
    local_calls = len(judge_server.requests) - start
    assert local.exit_code == 3, local.output  # the scripted parse errors: exit 3 on both engines
    full = _lines(tmp_path / "local.jsonl")

    # A run that stopped after its first blocks: the output holds the records of 80 items (none with errors).
    done = [r for r in full if not r["errors"]][:80]
    out = tmp_path / "ray.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in done))
    before = len(judge_server.requests)
    result = runner.invoke(app, ["score", *base, "--out", str(out), "--resume", "--engine", "ray", "--actors", "2"])
    assert result.exit_code == 3, result.output
    assert "rerun the same command with --resume" in result.output
    assert "resumed: 80 record(s)" in result.output
    calls = len(judge_server.requests) - before
    assert calls == local_calls - 80 * 3  # only the items not in the output were judged (3 criteria each)...
    merged = _lines(out)  # ...and with the judged ones the file holds exactly the local records
    assert len(merged) == 200
    assert _by_key(merged, "item_id", "rubric_id") == _by_key(full, "item_id", "rubric_id")


def test_the_command_starts_a_local_cluster_for_the_job_and_stops_it(judge_server, rubric_path, tmp_path):
    """What a user runs from a shell: no cluster, no address; the job starts one, and the actors read the key from
    the inherited environment (it reaches no output)."""
    import subprocess
    import sys

    data = _write_jsonl(tmp_path / "items.jsonl", _items(30))
    out = tmp_path / "scores.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OPENAI_API_KEY="sk-test-ray-0f1e2d3c4b5a", RAY_AUTH_MODE="disabled")
    done = subprocess.run([sys.executable, "-c", "from rubrickit.cli import main; main()", "score", "--rubric",
                           str(rubric_path), "--data", str(data), "--judge", "openai:judge", "--base-url",
                           judge_server.url, "--mode", "per_criterion", "--no-cache", "--engine", "ray", "--actors",
                           "1", "--max-error-rate", "1", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(_lines(out)) == 30
    assert "judge usage" in done.stderr and "MapBatches(JudgeWorker)" in done.stderr  # Ray's progress, our summary
    assert "sk-test-ray" not in done.stdout + done.stderr + out.read_text()


def _parts(folder: Path) -> list[dict]:
    return [record for part in sorted(folder.glob("part-*.jsonl")) for record in _lines(part)]


def test_a_uri_input_and_a_folder_of_part_files_resume_block_by_block(cluster, judge_server, rubric_path, tmp_path):
    """Ray reads the input itself (any filesystem it reads: here file://); the output is one part file per block
    (an object store cannot append); --resume skips the parts' keys and judges again what holds error verdicts."""
    data = _write_jsonl(tmp_path / "items.jsonl", _items(150))
    score_files(rubric_path, data, judge="openai:judge", base_url=judge_server.url, out=tmp_path / "local.jsonl",
                options=_options())
    local = _by_key(_lines(tmp_path / "local.jsonl"), "item_id", "rubric_id")
    folder = tmp_path / "scores"
    common = dict(judge="openai:judge", base_url=judge_server.url, options=_options(),
                  ray_options=RayOptions(actors=2))
    first = rk_ray.score_files_ray(rubric_path, data.as_uri(), out=f"{folder}/", **common)
    parts = sorted(folder.glob("part-*.jsonl"))
    assert len(parts) >= 2 and first.out is None
    assert _by_key(_parts(folder), "item_id", "rubric_id") == local
    with pytest.raises(RubrickitError, match="pass --resume to continue it or --force"):
        rk_ray.score_files_ray(rubric_path, data.as_uri(), out=f"{folder}/", **common)

    lost = _lines(parts[0])  # a block that never landed
    parts[0].unlink()
    with_errors = sum(1 for r in _parts(folder) if r["errors"])
    before = len(judge_server.requests)
    again = rk_ray.score_files_ray(rubric_path, data.as_uri(), out=str(folder), resume=True, **common)
    assert again.redone == with_errors > 0
    assert len(again.records) == len(lost) + with_errors  # only the lost block and the error records
    assert len(judge_server.requests) - before >= 3 * len(again.records)
    final = _parts(folder)
    assert len(final) == 150 and _by_key(final, "item_id", "rubric_id") == local


def test_a_bad_row_in_a_uri_input_fails_the_job_naming_the_field(cluster, judge_server, rubric_path, tmp_path):
    rows = _items(10)
    rows[4] = {"id": "broken", "prompt": "a question", "answer": "a reply in a column of another name"}
    data = _write_jsonl(tmp_path / "items.jsonl", rows)
    with pytest.raises(RubrickitError, match=r"row 'broken' of the input: response: Field required.*--map"):
        rk_ray.score_files_ray(rubric_path, data.as_uri(), out=tmp_path / "out.jsonl", judge="openai:judge",
                               base_url=judge_server.url, options=_options(), ray_options=RayOptions(actors=1))


def _judge_actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"JudgeWorker" in command:
            pids.append(int(entry.name))
    return pids


def test_a_judge_actor_killed_mid_job_loses_and_duplicates_no_row(cluster, rubric_path, tmp_path):
    data = _write_jsonl(tmp_path / "items.jsonl", _items(300))
    out = tmp_path / "ray.jsonl"
    killed: list[int] = []
    lines_at_kill: list[int] = []
    finished = threading.Event()

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not finished.is_set():
            lines = out.read_text().count("\n") if out.exists() else 0
            pids = _judge_actor_pids()
            if lines >= 40 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                lines_at_kill.append(lines)
                return
            time.sleep(0.05)

    with OAIServer(reply=_reply, latency=0.02) as server:
        killer = threading.Thread(target=kill_one_actor, daemon=True)
        killer.start()
        try:
            result = rk_ray.score_files_ray(rubric_path, data, judge="openai:judge", base_url=server.url, out=out,
                                            options=_options(concurrency=8), ray_options=RayOptions(actors=2))
        finally:
            finished.set()
            killer.join(timeout=5)
        with OAIServer(reply=_reply) as reference_server:
            score_files(rubric_path, data, judge="openai:judge", base_url=reference_server.url,
                        out=tmp_path / "local.jsonl", options=_options())
    assert killed, "no judge actor was found to kill"
    records = _lines(out)
    keys = [(r["item_id"], r["rubric_id"], r["repeat"]) for r in records]
    assert len(keys) == len(set(keys)) == 300  # nothing lost, nothing twice
    assert _by_key(records, "item_id", "rubric_id") == _by_key(_lines(tmp_path / "local.jsonl"), "item_id",
                                                                 "rubric_id")
    # Killed with most of the job still to do (both actors busy: 4 blocks in flight each): its blocks in flight were
    # retried, or rows would be missing. (Which process retries them, the restarted actor or the other one, is Ray
    # Data's choice; the restarted process may come up only after the job ends.)
    assert lines_at_kill[0] < 300
    assert len(result.records) + result.dropped >= 300 and result.accounting["actors_used"] >= 2


# --------------------------------------------------------------------------- the library API


def test_score_dataset_returns_records_ray_writes_natively(cluster, judge_server, rubric_path, tmp_path):
    from rubrickit import load_rubric

    rubric = load_rubric(rubric_path)
    items = _items(50)
    dataset = ray.data.from_items(items)
    scored = rk_ray.score_dataset(dataset, rubric, judge="openai:judge", base_url=judge_server.url,
                                  options=_options(), ray_options=RayOptions(actors=1))
    scored.write_parquet(str(tmp_path / "scores"))
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "scores")
    assert set(table.column_names) == {"item_id", "rubric_id", "repeat", "reward", "coverage", "errors", "record"}
    rows = {r["item_id"]: r for r in table.to_pylist()}
    assert len(rows) == 50
    from rubrickit.judge import Judge

    with Judge("openai:judge", base_url=judge_server.url, options=_options()) as judge:
        for item in items[:10]:
            expected = judge.score(rubric, item)
            row = rows[item["id"]]
            assert row["reward"] == expected.reward and row["errors"] == expected.errors
            assert json.loads(row["record"])["verdicts"][0]["verdict"] == expected.verdicts[0].verdict


# --------------------------------------------------------------------------- knobs (no cluster needed)


def test_rate_limits_are_a_cluster_budget_split_across_the_actors(tmp_path):
    opts = rk_ray._split_budget(JudgeOptions(rpm=600, tpm=90_000, cache_dir=tmp_path), 4)
    assert (opts.rpm, opts.tpm, opts.progress, opts.cache_dir) == (150, 22_500, False, tmp_path)
    no_limit = rk_ray._split_budget(JudgeOptions(), 3)
    assert no_limit.rpm is None and no_limit.tpm is None and no_limit.cache_dir is not None  # fixed for the actors


def test_actor_resources_follow_the_judge_kind_unless_given():
    assert actor_resources("openai:gpt-4.1-mini", RayOptions()) == {"num_cpus": 0.25, "num_gpus": 0.0}
    assert actor_resources("vllm:Qwen/Qwen3-8B", RayOptions()) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert actor_resources(None, RayOptions()) == {"num_cpus": 1.0, "num_gpus": 0.0}  # embedded
    assert actor_resources("hf:/models/judge", RayOptions(num_gpus=1, num_cpus=2)) == {"num_cpus": 2, "num_gpus": 1}


class _RecordingDataset:
    def map_batches(self, fn, **kwargs):
        self.fn, self.kwargs = fn, kwargs
        return self


def test_vllm_judges_get_a_gpu_per_actor_and_build_their_requests_with_the_vllm_backend(tmp_path):
    """The pool for ``vllm:`` judges: one GPU and one engine per actor; the actor's judge is the ``vllm:`` backend
    itself (the request building is that backend's, not a copy)."""
    recorded = _RecordingDataset()
    rk_ray._map(recorded, "score", "vllm:/models/judge", None, base_url=None,
                options=JudgeOptions(concurrency=256, rpm=1200, cache_dir=tmp_path), backend_options={"dtype": "bf16"},
                ray_options=RayOptions(actors=4))
    kwargs = recorded.kwargs
    assert recorded.fn is rk_ray.JudgeWorker
    assert (kwargs["num_gpus"], kwargs["num_cpus"], kwargs["batch_size"]) == (1.0, 1.0, 256)
    assert kwargs["compute"].min_size == kwargs["compute"].max_size == 4
    assert kwargs["fn_constructor_args"] == ("score", "vllm:/models/judge", None)
    assert kwargs["fn_constructor_kwargs"]["backend_options"] == {"dtype": "bf16"}
    assert kwargs["fn_constructor_kwargs"]["options"].rpm == 300  # a quarter of the cluster's budget


def test_ray_options_refuse_nonsense():
    with pytest.raises(RubrickitError, match="--actors"):
        RayOptions(actors=0)
    with pytest.raises(RubrickitError, match="--batch-size"):
        RayOptions(batch_size=0)


def test_cli_refuses_an_unknown_engine_and_ray_knobs_without_ray(tmp_path):
    from typer.testing import CliRunner

    from rubrickit.cli import app

    args = ["score", "--rubric", "rubrics/support-reply.yaml", "--data", "examples/support-tickets.jsonl"]
    result = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert result.exit_code == 1 and "--engine 'spark': use local or ray" in result.output
    result = CliRunner().invoke(app, [*args, "--actor-gpus", "1"])
    assert result.exit_code == 1 and "--actor-gpus only apply with --engine ray" in result.output


def test_the_actor_accounting_sums_the_newest_snapshot_of_each_actor():
    accounts = rk_ray._Accounts()
    accounts.take("a", json.dumps({"sequence": 1, "calls": 5, "cost": 0.5, "judge": "openai:x"}))
    accounts.take("a", json.dumps({"sequence": 3, "calls": 9, "cost": 0.75, "judge": "openai:x"}))
    accounts.take("a", json.dumps({"sequence": 2, "calls": 7, "cost": 0.6, "judge": "openai:x"}))  # late, older
    accounts.take("b", json.dumps({"sequence": 1, "calls": 4, "cost": None, "judge": "openai:x"}))
    accounts.take("b", None)
    total = accounts.total(1.5, 4)
    assert total["calls"] == 13 and total["cost"] is None and total["judge"] == "openai:x"
    assert (total["actors"], total["actors_used"], total["elapsed_s"]) == (4, 2, 1.5)


def test_missing_ray_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rubrickit\[ray\]'"):
        rk_ray._import_ray()


# --------------------------------------------------------------------------- GPUs


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        return 0


@pytest.mark.skipif(_gpus() == 0, reason="needs a GPU and vLLM: an actor pool of vllm: judges, one GPU each")
def test_vllm_judges_on_a_gpu_actor_pool(tmp_path):  # pragma: no cover - runs where GPUs exist
    pytest.importorskip("vllm", reason="vLLM is not installed")
    model = os.environ.get("RUBRICKIT_TEST_VLLM_MODEL")
    if not model:
        pytest.skip("set RUBRICKIT_TEST_VLLM_MODEL to a local model folder (no downloads at test time)")
    from rubrickit import load_rubric

    if ray.is_initialized():
        ray.shutdown()  # the CPU-only cluster of the other tests
    ray.init(num_gpus=_gpus(), include_dashboard=False)
    try:
        scored = rk_ray.score_dataset(ray.data.from_items(_items(32)), load_rubric("rubrics/support-reply.yaml"),
                                      judge=f"vllm:{model}", options=JudgeOptions(mode="logprob", use_cache=False),
                                      ray_options=RayOptions(actors=_gpus()))
        rows = scored.take_all()
        assert len(rows) == 32 and all(r["errors"] == 0 for r in rows)
    finally:
        ray.shutdown()
