"""A Gradio page over a hf_seqrec checkpoint: build a history, see the recommendations, ask why, add an item.

    python scripts/demo.py --model runs/smollm2-ml100k [--compare runs/sasrec-ml100k]

Needs the ``demo`` extra (``pip install -e ".[demo]"``). The modules: ``model`` (one checkpoint behind
``pipeline("next-item")``), ``search`` (titles to items), ``users`` (MovieLens-100K test users),
``render`` (HTML and the explanation chart), ``callbacks`` (what each click does), ``app`` (the
layout), ``demo_command`` (``scripts/demo.py``) and ``browser`` (driving the page in headless Chromium).
"""

import os

# Before Gradio is first imported (by the modules below): it reads this once, and would otherwise
# report usage and check for a newer version over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from .errors import DemoError  # noqa: E402
from .model import DemoModel  # noqa: E402

__all__ = ["DemoError", "DemoModel"]
