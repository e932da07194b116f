#!/usr/bin/env python
"""Fine-tune a next-item recommender with LoRA on a pretrained causal LM (also installed as `hf-seqrec-finetune`).

    accelerate launch scripts/finetune.py --config configs/cpu.yaml
    accelerate launch scripts/finetune.py --backbone tiny-llama --num_epochs 1 --output_dir runs/smoke

Every option of hf_seqrec.training.FinetuneConfig is a flag; `--help` lists them.
"""

import sys

from hf_seqrec.entry_points import finetune

if __name__ == "__main__":
    sys.exit(finetune())
