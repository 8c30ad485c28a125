"""Trainer adapters over the reward core :mod:`rubrickit.rewards` (DESIGN §10; docs/rl.md).

One small module per framework, imported on demand (importing this package loads none of them):

- :mod:`rubrickit.integrations.trl`: ``reward_function(...)`` for ``GRPOTrainer(reward_funcs=[...])``;
- :mod:`rubrickit.integrations.verl`: ``compute_score`` (per sample, batch and async) for
  ``custom_reward_function``;
- :mod:`rubrickit.integrations.openrlhf`: the ``reward_func`` file variant for OpenRLHF, built on
  :mod:`~rubrickit.integrations.openrlhf_protocol` (recovering responses and prompts from OpenRLHF's decoded
  queries, and the answer it expects) and :mod:`~rubrickit.integrations.batcher` (micro-batching, shared with the
  server);
- :mod:`rubrickit.integrations.server`: ``rubrickit serve``, the HTTP reward server (``POST /get_reward``);
- :mod:`rubrickit.integrations.ray`: scoring, comparing and evaluating on a Ray cluster (``--engine ray``;
  docs/scale.md).
"""
