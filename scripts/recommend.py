#!/usr/bin/env python
"""Write the top-k recommendations of every user of a data set to a Parquet file (also installed as `hf-seqrec-recommend`).

    accelerate launch scripts/recommend.py --model runs/smollm2-ml100k --dataset movielens-100k \
        --output recs.parquet --top_k 100 --precision int8

`--help` lists the options; the logic is hf_seqrec.inference.batch.
"""

import sys

from hf_seqrec.entry_points import recommend

if __name__ == "__main__":
    sys.exit(recommend())
