#!/usr/bin/env python
"""Evaluate a hf_seqrec checkpoint with the full-ranking leave-one-out protocol.

    python scripts/evaluate.py --model runs/smollm2-ml100k --split test --output test_metrics.json
"""

import os
import sys

# Python puts this folder first on sys.path, where scripts/evaluate.py would shadow the
# `evaluate` library that hf_seqrec's metrics are built on.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from hf_seqrec.cli import evaluate_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(evaluate_main))
