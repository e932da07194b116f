#!/usr/bin/env python
"""Serve a hf_seqrec checkpoint over HTTP: POST /recommend, GET /healthz, GET /metrics (also installed as `hf-seqrec-serve`).

    pip install -e ".[serve]"
    python scripts/serve.py --model runs/smollm2-ml100k --host 127.0.0.1 --port 8000 [--api_key_env SEQREC_API_KEY]
"""

import sys

from hf_seqrec.entry_points import serve

if __name__ == "__main__":
    sys.exit(serve())
