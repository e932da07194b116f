#!/usr/bin/env python
"""Evaluate a hf_seqrec checkpoint with the full-ranking leave-one-out protocol.

    python scripts/evaluate.py --model runs/smollm2-ml100k --split test --output test_metrics.json
"""

import sys

from hf_seqrec.cli import evaluate_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(evaluate_main))
