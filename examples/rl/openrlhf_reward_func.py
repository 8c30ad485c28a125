"""Rubric rewards for OpenRLHF as a reward *file* (no server): OpenRLHF imports this file and calls ``reward_func``.

Configure it with environment variables (Ray passes them to the workers with ``--runtime-env-json``), then point
OpenRLHF's remote reward URL at this file::

    export RUBRICKIT_RUBRIC=/work/rubrics/support-reply.yaml   # a rubric, or a rubric set (JSONL) + prompt_id labels
    export RUBRICKIT_JUDGE=openai:Qwen/Qwen3-8B                  # any judge spec
    export RUBRICKIT_BASE_URL=http://judge-host:8001/v1          # a vLLM judge server (+ OPENAI_API_KEY if needed)
    export RUBRICKIT_MODE=per_response RUBRICKIT_CONCURRENCY=128
    export RUBRICKIT_ON_ERROR=0                                  # OpenRLHF cannot train on null rewards

    # 2026 releases (dotted options)
    python3 -m openrlhf.cli.train_ppo_ray ... \\
        --data.prompt_dataset my/prompts --data.input_key messages --data.apply_chat_template \\
        --data.label_key label \\
        --reward.remote_url /work/examples/rl/openrlhf_reward_func.py

    # older releases
    python3 -m openrlhf.cli.train_ppo_ray ... \\
        --prompt_data my/prompts --input_key messages --apply_chat_template --label_key label \\
        --remote_rm_url /work/examples/rl/openrlhf_reward_func.py

Each call gets ``queries`` (prompt + response as decoded, special tokens kept), ``prompts`` (the templated prompts)
and ``labels`` (the ``label_key`` column: a reference answer, a prompt_id, or a JSON object with ``prompt_id``,
``reference``, ``rubric``). The answer is ``{"rewards", "scores", "extra_logs"}`` exactly as ``rubrickit serve``
gives it. OpenRLHF calls the function from many threads at once with one sample each; the calls are coalesced
into batches on one judge (its cache, concurrency and rate limits shared). See docs/rl.md for the recovery rules,
the failure policy and every variable (``RUBRICKIT_LABEL_AS``, ``RUBRICKIT_DROP_SYSTEM``, ``RUBRICKIT_MIN_COVERAGE``,
``RUBRICKIT_NO_CACHE``, ``RUBRICKIT_END_TOKENS``, …).

To configure in code instead of the environment, call
``rubrickit.integrations.openrlhf.configure(rubric=..., judge=..., base_url=..., on_error=0)`` here at import.
"""

from __future__ import annotations

from typing import Any

from rubrickit.integrations.openrlhf import reward_func as _rubric_reward


def reward_func(queries: list[str], prompts: list[str], labels: list[Any] | None = None, **kwargs: Any) -> dict:
    """OpenRLHF's reward function contract: one reward per query, with ``scores`` and ``extra_logs``."""
    return _rubric_reward(queries, prompts, labels, **kwargs)
