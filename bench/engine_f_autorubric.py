"""Section f of the engine benchmark: the same workload through rubrickit and through the autorubric library.

Alternating runs of section a's 500 calls against the same scripted server, latency and concurrency, reported as
autorubric's wall time ÷ rubrickit's. :func:`_autorubric_run` is also the AutoRubric side of
``bench_throughput.py`` (as ``bench_engine._autorubric_run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import metadata
from typing import Any

from engine_common import (
    CONCURRENCY,
    CRITERIA,
    LATENCY,
    MODEL,
    N_CRITERIA,
    N_ITEMS,
    Meter,
    Section,
    Server,
    engine_run,
    make_items,
    make_rubric,
    median_of,
    openai_judge,
    run_async,
)

__all__ = ["section_f"]


def _autorubric_run(server: Server, items: list[dict[str, Any]], concurrency: int = CONCURRENCY,
                    timeout: float = 120) -> dict[str, Any]:
    from autorubric import Criterion as ACriterion
    from autorubric import LLMConfig
    from autorubric import Rubric as ARubric
    from autorubric.graders import CriterionGrader
    from autorubric.rate_limit import RateLimitPool

    RateLimitPool.reset_instance()  # a fresh per-provider semaphore for this run
    config = LLMConfig(model=f"openai/{MODEL}", api_base=server.url, api_key="EMPTY", temperature=0.0,
                       max_tokens=512, max_parallel_requests=concurrency, cache_enabled=False, timeout=60.0)
    grader = CriterionGrader(judge_model_config=config, seed=0)
    rubric = ARubric([ACriterion(name=cid, weight=weight, requirement=text) for cid, text, weight in CRITERIA])

    async def go() -> dict[str, Any]:
        with Meter() as meter:
            reports = await asyncio.gather(*(rubric.grade(to_grade=item["response"], grader=grader,
                                                          query=item["prompt"]) for item in items))
        failed = 0
        for report in reports:
            failed += sum(1 for c in (report.report or []) if getattr(c, "error", None)) if not report.error else 10
        return {"wall": meter.wall, "cpu": meter.cpu, "errors": failed, "records": len(reports)}

    return run_async(go, timeout)


def _rubrickit_run(server: Server, items: list[dict[str, Any]]) -> dict[str, Any]:
    judge = openai_judge(server)
    try:
        return run_async(lambda: engine_run(judge, make_rubric(), items), 120)
    finally:
        judge.close()


def section_f(server: Server, reps: int) -> Section:
    s = Section("f")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    items = make_items(N_ITEMS, seed=53)
    tasks = N_ITEMS * N_CRITERIA
    s.row("workload", f"{N_ITEMS} items × {N_CRITERIA} criteria = {tasks} judge calls each", "",
          f"same local server, latency {LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY} on both sides, caches off")
    s.row("versions", f"autorubric {metadata.version('autorubric')}, litellm {metadata.version('litellm')}, "
          f"openai {metadata.version('openai')}", "")
    runners = {"rubrickit": lambda: _rubrickit_run(server, items), "autorubric": lambda: _autorubric_run(server, items)}
    warm = make_items(1, seed=99)
    s.attempt("rubrickit warm-up", lambda: _rubrickit_run(server, warm))
    s.attempt("autorubric warm-up", lambda: _autorubric_run(server, warm))
    runs: dict[str, list[dict[str, Any]]] = {"rubrickit": [], "autorubric": []}
    for _ in range(max(reps, 5)):  # alternate, so a burst of load on the machine hits both alike; runs are short
        for name, runner in runners.items():
            def one(name: str = name, runner: Callable[[], dict[str, Any]] = runner) -> None:
                server.reset(LATENCY)
                run = runner()
                served = server.stats()
                run["server_calls"] = served["chat_requests"]
                run["prompt_tokens"] = served["prompt_tokens"]
                run["max_in_flight"] = served["max_in_flight"]
                runs[name].append(run)

            s.attempt(f"{name} run", one)
    walls = {}
    for name, found in runs.items():
        if not found:
            continue
        wall, cpu = median_of(found, "wall"), median_of(found, "cpu")
        walls[name] = wall
        last = found[-1]
        s.row(f"{name}: wall time (median of {len(found)})", wall, "s",
              "runs " + ", ".join(f"{r['wall']:.2f}" for r in found) + f"; client CPU {cpu:.2f} s "
              f"({cpu / tasks * 1000:.2f} ms/call); server received {last['server_calls']} requests, at most "
              f"{last['max_in_flight']} at once, {last['prompt_tokens'] / max(1, last['server_calls']):.0f} prompt "
              f"tokens/request; {last['errors']} errors")
    if len(walls) == 2:
        ratio = walls["autorubric"] / walls["rubrickit"]
        calls = {name: found[-1]["server_calls"] for name, found in runs.items()}
        s.ratio = {"label": "autorubric wall ÷ rubrickit wall", "value": ratio, "target": "—"}
        s.row("**ratio** autorubric ÷ rubrickit (wall time)", ratio, "×",
              "requests per run: " + ", ".join(f"{k} {v}" for k, v in calls.items()))
        same = len(set(calls.values())) == 1 and calls["rubrickit"] == tasks
        auto_cpu = median_of(runs["autorubric"], "cpu")
        auto_tokens = runs["autorubric"][-1]["prompt_tokens"] / max(1, calls["autorubric"])
        rk_tokens = runs["rubrickit"][-1]["prompt_tokens"] / max(1, calls["rubrickit"])
        rk_cpu = median_of(runs["rubrickit"], "cpu")
        s.interpretation = [
            ("Both libraries made exactly the same number of judge calls "
             f"({tasks}, counted by the server), one per item × criterion. " if same else
             f"The call counts differ ({calls}); the comparison is not like for like. ")
            + f"On the same server, latency and concurrency, autorubric takes **{ratio:.2f}×** rubrickit's wall "
            f"time ({walls['autorubric']:.2f} s vs {walls['rubrickit']:.2f} s). autorubric calls litellm, which "
            "calls the same openai SDK underneath (the server sees the SDK's user agent from both), so it pays the "
            "SDK's per-request cost described in section a plus litellm's own (parameter mapping, response "
            f"conversion, cost lookup) and pydantic validation: {auto_cpu / tasks * 1000:.2f} ms of CPU per call "
            f"(process CPU, which counts litellm's helper threads too) against rubrickit's "
            f"{rk_cpu / tasks * 1000:.2f} ms. With 100 ms of latency and 50 slots, per-call client CPU is what "
            "separates the two. autorubric's prompts are also "
            f"{auto_tokens / max(1, rk_tokens):.1f}× longer ({auto_tokens:,.0f} vs {rk_tokens:,.0f} prompt tokens "
            "per request, by the server's count): that costs money with a real API, not time against this server. "
            f"Neither reaches the ideal {tasks * LATENCY / CONCURRENCY:.1f} s on this machine (see section a)."]
    return s
