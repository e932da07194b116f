#!/usr/bin/env python
"""Write the top-k recommendations of every user of a data set to a Parquet file.

    accelerate launch scripts/recommend.py --model runs/smollm2-ml100k --dataset movielens-100k \
        --output recs.parquet --top_k 100 --precision int8

`--help` lists the options; the logic is hf_seqrec.inference.batch.
"""

import os
import sys

# Python puts this folder first on sys.path, where scripts/evaluate.py would shadow the
# `evaluate` library that hf_seqrec's metrics are built on.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from hf_seqrec.cli import run_cli
from hf_seqrec.inference.cli import recommend_main

if __name__ == "__main__":
    sys.exit(run_cli(recommend_main))
