"""Section d of the engine benchmark: a re-run of a finished job from the cache.

The 500-call job of section a with the cache on in a fresh folder, then the same job again: the re-run must make no
backend call; its wall time is reported against the first run's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from engine_common import (
    CONCURRENCY,
    LATENCY,
    N_CRITERIA,
    N_ITEMS,
    Section,
    Server,
    engine_run,
    make_items,
    make_rubric,
    openai_judge,
    run_async,
)

__all__ = ["section_d"]


def section_d(server: Server) -> Section:
    s = Section("d")
    rubric, items = make_rubric(), make_items(N_ITEMS, seed=31)
    tasks = N_ITEMS * N_CRITERIA
    s.row("workload", f"{N_ITEMS} items × {N_CRITERIA} criteria = {tasks} calls", "",
          f"latency {LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY}, cache on in a fresh folder")
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rubrickit-bench-cache-") as folder:
        for name in ("first run", "re-run"):
            def one(name: str = name) -> None:
                server.reset(LATENCY)
                judge = openai_judge(server, use_cache=True, cache_dir=Path(folder))
                try:
                    run = run_async(lambda judge=judge: engine_run(judge, rubric, items), 60)
                finally:
                    judge.close()
                run["server_calls"] = server.stats()["chat_requests"]
                runs[name] = run
                summary = run["summary"]
                s.row(f"{name}: wall time", run["wall"], "s",
                      f"server received {run['server_calls']} requests; engine: {summary['calls']} calls, "
                      f"{summary['cache_hits']} cache hits, {run['errors']} errors")

            s.attempt(name, one)
    first, again = runs.get("first run"), runs.get("re-run")
    if first and again:
        s.row("**re-run: calls made**", again["server_calls"], "", "must be 0")
        s.ratio = {"label": "re-run wall ÷ first run wall", "value": again["wall"] / first["wall"],
                   "target": "calls = 0"}
        s.row("**ratio** re-run ÷ first run (wall time)", again["wall"] / first["wall"], "×",
              f"{first['wall'] / again['wall']:.0f}× faster")
        verdict = ("made **no** backend call" if again["server_calls"] == 0 and again["summary"]["calls"] == 0
                   else f"made **{again['server_calls']}** backend calls — the contract is broken")
        s.interpretation = [
            f"The re-run {verdict}: all {again['summary']['cache_hits']} requests were answered from the SQLite "
            f"cache, in {again['wall']:.2f} s instead of {first['wall']:.2f} s "
            f"({again['wall'] / tasks * 1000:.2f} ms per judgment: rendering the prompt, hashing it and one SQLite "
            "lookup)."]
    return s
