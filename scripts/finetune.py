#!/usr/bin/env python
"""Fine-tune a next-item recommender with LoRA on a pretrained causal LM.

    accelerate launch scripts/finetune.py --config configs/cpu.yaml
    accelerate launch scripts/finetune.py --backbone tiny-llama --num_epochs 1 --output_dir runs/smoke

Every option of hf_seqrec.training.FinetuneConfig is a flag; `--help` lists them.
"""

import os
import sys

# Python puts this folder first on sys.path, where scripts/evaluate.py would shadow the
# `evaluate` library that hf_seqrec's metrics are built on.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from hf_seqrec.cli import finetune_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(finetune_main))
