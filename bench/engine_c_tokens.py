"""Section c of the engine benchmark: input tokens per response, per_response vs per_criterion mode.

Ten items on the 10-criterion rubric in each mode, with the tokens the scripted server reports in ``usage`` and the
engine's own accounting (including the share served from the server's emulated prefix cache).
"""

from __future__ import annotations

from typing import Any

from engine_common import (
    N_CRITERIA,
    Section,
    Server,
    engine_run,
    make_items,
    make_rubric,
    openai_judge,
    run_async,
)

__all__ = ["section_c"]


def section_c(server: Server) -> Section:
    s = Section("c")
    n_items = 10
    rubric, items = make_rubric(), make_items(n_items, seed=23)
    s.row("workload", f"{n_items} items × {N_CRITERIA} criteria", "", "zero latency, cache off; tokens as the "
          "server reports them in `usage` (its word-level count), which the engine's accounting records")
    found: dict[str, dict[str, Any]] = {}
    for mode in ("per_criterion", "per_response"):
        def one(mode: str = mode) -> None:
            server.reset(0.0)
            judge = openai_judge(server, mode=mode)
            try:
                run = run_async(lambda judge=judge: engine_run(judge, rubric, items), 60)
            finally:
                judge.close()
            served = server.stats()
            summary = run["summary"]
            found[mode] = {"calls": served["chat_requests"], "server_in": served["prompt_tokens"],
                           "engine_in": summary["input_tokens"], "cached": summary["cached_tokens"],
                           "out": summary["output_tokens"], "errors": run["errors"]}
            s.row(f"{mode}: input tokens per response", served["prompt_tokens"] / n_items, "tokens",
                  f"{served['chat_requests']} calls; engine accounting {summary['input_tokens'] / n_items:,.0f}/"
                  f"response; of which served from the (emulated) prefix cache "
                  f"{summary['cached_tokens'] / max(1, summary['input_tokens']):.0%}; output "
                  f"{summary['output_tokens'] / n_items:,.0f}/response; {run['errors']} errors")

        s.attempt(mode, one)
    pc, pr = found.get("per_criterion"), found.get("per_response")
    if pc and pr:
        ratio = pc["server_in"] / pr["server_in"]
        uncached = (pc["engine_in"] - pc["cached"]) / max(1, pr["engine_in"] - pr["cached"])
        s.ratio = {"label": "per_criterion ÷ per_response input tokens per response", "value": ratio,
                   "target": "—"}
        s.row("**ratio** per_criterion ÷ per_response (input tokens)", ratio, "×",
              f"uncached input tokens only: {uncached:.2f}×")
        s.interpretation = [
            f"per_criterion sends the instructions, conversation and response once per criterion, so a response costs "
            f"**{ratio:.1f}×** the input tokens of per_response ({pc['server_in'] / n_items:,.0f} vs "
            f"{pr['server_in'] / n_items:,.0f}) and {pc['calls'] // max(1, pr['calls'])}× the calls. Because the "
            "prompt puts the criterion last, everything before it is a shared prefix: with a provider's prompt "
            f"caching (emulated here by the server in 64-character blocks) {pc['cached'] / max(1, pc['engine_in']):.0%}"
            f" of per_criterion's input is a cache hit, and the uncached input is {uncached:.1f}× per_response's. "
            "per_response also asks for every criterion's rationale in one reply, so it is the cheaper mode; "
            "per_criterion buys independent judgments (criteria cannot influence each other) at that price."]
    return s
