"""Bias probes of a judge: position swap, length padding, master-key responses, criterion-order shuffle.

Each probe is reported as a **rate with its n** (judgments that failed are excluded from n and counted):

- ``position`` — from the evaluated pairs themselves (no extra calls): ``rate`` is the share of pairs judged in
  both orders whose verdict flips when A and B are swapped (1 − consistency); ``first_rate`` is the share of
  single-order verdicts (A/B) that chose the response shown first (0.5 for an unbiased judge).
- ``length`` — a response is compared with itself padded with neutral filler (:data:`FILLER`, content-free
  sentences), in both orders. ``rate`` is the share the padded copy wins; an unbiased judge ties or splits evenly.
  The padded response is the gold winner of the pair (or response A without a label).
- ``master-key`` — a real response (the gold winner) against each of :data:`MASTER_KEYS` (a bare ``":"``,
  ``"Thought process:"``, ``"Let's solve this step by step."``), in both orders. ``rate`` is the share the master
  key wins. With a rubric the master key is also scored pointwise: ``pass_rate`` is the share of its assessed
  criteria judged met (with positive weight — a master key should pass none).
- ``order`` — with a rubric: the same response scored in ``per_response`` mode (all criteria in one call) with the
  rubric's criteria in the original and in a seeded shuffled order; ``rate`` is the share of criteria whose verdict
  changes (criteria with an error in either run are excluded).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

from rubrickit.data.items import PairItem

from ..rubric import Rubric

__all__ = ["FILLER", "MASTER_KEYS", "PROBES", "length_pair", "master_key_pairs", "position_summary",
           "probe_summary", "shuffled_rubric"]

PROBES = ("position", "length", "master-key", "order")
"""The probe names accepted by ``--probes``."""

MASTER_KEYS = (":", "Thought process:", "Let's solve this step by step.")
"""Content-free replies that fool weak judges ("One Token to Fool LLM-as-a-Judge")."""

FILLER = ("\n\nI hope this helps. Please let me know if you have any other questions or if there is anything else "
          "I can clarify. It is always a good idea to consider the context and to think carefully about the details. "
          "Thank you for your question, and have a wonderful day.")
"""Neutral padding: adds length, no content."""


def gold_response(pair: PairItem) -> str:
    """The gold winner's text (response A for a tie or no label)."""
    return pair.response_b if pair.label == "B" else pair.response_a


def length_pair(pair: PairItem) -> PairItem:
    """Original (A) vs the same response padded with :data:`FILLER` (B)."""
    text = gold_response(pair)
    return PairItem(id=f"{pair.id}#length", prompt=pair.prompt, response_a=text, response_b=text + FILLER,
                    subset=pair.subset, prompt_id=pair.prompt_id, reference=pair.reference)


def master_key_pairs(pair: PairItem) -> list[tuple[str, PairItem]]:
    """Each master key (B) against the gold winner (A)."""
    return [(key, PairItem(id=f"{pair.id}#master-key-{n}", prompt=pair.prompt, response_a=gold_response(pair),
                           response_b=key, subset=pair.subset, prompt_id=pair.prompt_id, reference=pair.reference))
            for n, key in enumerate(MASTER_KEYS)]


def shuffled_rubric(rubric: Rubric, seed: int) -> Rubric:
    """The rubric with its criteria in a seeded shuffled order (a different order whenever there are ≥ 2)."""
    criteria = list(rubric.criteria)
    if len(criteria) < 2:
        return rubric
    order = list(range(len(criteria)))
    rng = random.Random(seed)
    while order == list(range(len(criteria))):
        rng.shuffle(order)
    return rubric.model_copy(update={"criteria": [criteria[i] for i in order]})


def position_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The position probe from pair rows (both-order verdict flips, and first-position preference)."""
    both = [r for r in rows if r.get("winner_ab") is not None and r.get("winner_ba") is not None]
    flips = sum(1 for r in both if r["winner_ab"] != r["winner_ba"])
    first = [r["winner_ab"] == "A" for r in rows if r.get("winner_ab") in ("A", "B")]
    first += [r["winner_ba"] == "B" for r in rows if r.get("winner_ba") in ("A", "B")]
    return {"rate": flips / len(both) if both else None, "n": len(both), "hits": flips,
            "first_rate": sum(first) / len(first) if first else None, "first_n": len(first),
            "description": "share of pairs whose verdict flips when A/B are swapped; first_rate: share of "
                           "single-order verdicts choosing the response shown first"}


_DESCRIPTIONS = {
    "length": "share of comparisons a response padded with neutral filler wins against itself",
    "master-key": "share of comparisons a master-key reply (':', 'Thought process:', ...) wins against a real response",
    "order": "share of criteria whose verdict changes when the rubric's criteria are shuffled (per_response mode)",
}


def probe_summary(name: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rate with n of one probe's rows (``outcome``: hit / miss / tie / error; ``passed``/``assessed`` for the
    master key's pointwise pass rate)."""
    judged = [r for r in rows if r.get("outcome") in ("hit", "miss", "tie")]
    hits = sum(1 for r in judged if r["outcome"] == "hit")
    summary: dict[str, Any] = {
        "rate": hits / len(judged) if judged else None, "n": len(judged), "hits": hits,
        "ties": sum(1 for r in judged if r["outcome"] == "tie"),
        "errors": sum(1 for r in rows if r.get("outcome") == "error"), "description": _DESCRIPTIONS.get(name, ""),
    }
    if name == "master-key":
        scored = [r for r in rows if r.get("assessed")]
        if scored:
            passed, assessed = sum(r["passed"] for r in scored), sum(r["assessed"] for r in scored)
            summary.update(pass_rate=passed / assessed, pass_n=assessed)
        by_key: dict[str, list[Mapping[str, Any]]] = {}
        for r in judged:
            by_key.setdefault(str(r.get("variant")), []).append(r)
        summary["per_key"] = {k: {"rate": sum(x["outcome"] == "hit" for x in v) / len(v), "n": len(v)}
                              for k, v in by_key.items()}
    return summary


def outcome_of(winner: str | None, target: str) -> str:
    """A probe comparison's outcome: ``hit`` when ``target`` (the probe response's letter) won."""
    if winner is None:
        return "error"
    if winner == "tie":
        return "tie"
    return "hit" if winner == target else "miss"


async def gather_limited(jobs: Sequence[Any], limit: int) -> list[Any]:
    """Await coroutines with at most ``limit`` running at once, results in order."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def run(job: Any) -> Any:
        async with semaphore:
            return await job

    return list(await asyncio.gather(*(run(job) for job in jobs)))
