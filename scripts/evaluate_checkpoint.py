#!/usr/bin/env python
"""Evaluate a hf_seqrec checkpoint with the full-ranking leave-one-out protocol (also installed as `hf-seqrec-evaluate`).

    python scripts/evaluate_checkpoint.py --model runs/smollm2-ml100k --split test --output test_metrics.json
"""

import sys

from hf_seqrec.entry_points import evaluate

if __name__ == "__main__":
    sys.exit(evaluate())
