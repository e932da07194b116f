#!/usr/bin/env python
"""A Gradio page over a hf_seqrec checkpoint: history by title, recommendations, explanations, new items.

    pip install -e ".[demo]"
    python scripts/demo.py --model runs/smollm2-ml100k [--compare runs/sasrec-ml100k] [--host 127.0.0.1] [--port 7860] [--share false]
"""

import sys

from hf_seqrec.demo.demo_command import demo_main
from hf_seqrec.entry_points import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(demo_main))
