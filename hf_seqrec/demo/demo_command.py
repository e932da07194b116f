"""``scripts/demo.py``: serve the demo page for one checkpoint, or two side by side.

    python scripts/demo.py --model runs/smollm2-ml100k [--compare runs/sasrec-ml100k] [--host 127.0.0.1] [--port 7860] [--share false]

The page listens on the loopback address unless ``--host`` says otherwise, and is never shared
through a public link unless ``--share true``. It reads the checkpoints named here and, when its
button is pressed, the built-in MovieLens-100K; nothing else.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .model import DemoModel

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``scripts/demo.py``: the checkpoints, where to listen, and whether to share."""
    parser = argparse.ArgumentParser(
        description="A Gradio page over a checkpoint: build a history by title, see pipeline(\"next-item\")'s "
        "recommendations, explain one, add a new item, compare two checkpoints."
    )
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub repo id")
    parser.add_argument("--compare", default=None, metavar="MODEL",
                        help="a second checkpoint that answers the same history side by side (e.g. a SASRec run)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument("--share", type=_boolean, default=False, metavar="{false,true}",
                        help="also serve through a temporary public gradio.live link (default: false; needs internet)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser  # fmt: skip


def demo_main(argv: list[str] | None = None) -> int:
    """Load the checkpoints, build the page and serve it until interrupted."""
    args = build_parser().parse_args(argv)
    try:  # the optional "demo" extra: a one-line hint instead of a traceback when it is missing
        import gradio  # noqa: F401
    except ImportError:
        print('error: the demo needs Gradio: pip install -e ".[demo]" (or pip install "hf_seqrec[demo]")', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from .app import build_app, launch  # imports Gradio: only once it is known to be installed

    models = [DemoModel.load(args.model)]
    if args.compare:
        models.append(DemoModel.load(args.compare))
        if models[1].name == models[0].name:  # two runs called the same: tell them apart on the page
            models[0].name, models[1].name = args.model, args.compare
    launch(build_app(models), host=args.host, port=args.port, share=args.share)
    return 0
