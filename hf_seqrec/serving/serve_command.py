"""``scripts/serve.py``: serve a checkpoint over HTTP with uvicorn.

    python scripts/serve.py --model runs/smollm2-ml100k --host 127.0.0.1 --port 8000 --api_key_env SEQREC_API_KEY

The API key is read from the environment variable named by ``--api_key_env`` (never from the command
line, where other users of the machine could read it in the process list).
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import uvicorn

from ..modeling.precision import PRECISIONS
from ..option_checks import is_positive_int
from .app import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_INPUTS, DEFAULT_MAX_PENDING, create_app
from .limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT_S


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not is_positive_int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The options of ``scripts/serve.py``; the limits default to ``create_app``'s own."""
    parser = argparse.ArgumentParser(description="Serve pipeline(\"next-item\") over HTTP (POST /recommend, GET /healthz, GET /metrics).")
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub repo id")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help="passed to the pipeline (default: its own)")
    parser.add_argument("--device", default=None, help='e.g. "cpu" or "cuda:0" (default: the pipeline\'s choice)')
    parser.add_argument("--api_key_env", default=None, metavar="NAME",
                        help="environment variable holding the API key; /recommend and /metrics then require it")
    parser.add_argument("--batch_wait_ms", type=float, default=DEFAULT_BATCH_WAIT_MS,
                        help="how long the first waiting request waits for others to share its forward pass")
    parser.add_argument("--max_batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="histories per forward pass at most")
    parser.add_argument("--max_history", type=int, default=None, help="longest history accepted (default: max(1024, model max_len))")
    parser.add_argument("--max_top_k", type=int, default=None, help="largest top_k accepted (default: the catalogue size)")
    parser.add_argument("--max_inputs", type=int, default=DEFAULT_MAX_INPUTS, help="histories per batch request at most")
    parser.add_argument("--max_pending", type=int, default=DEFAULT_MAX_PENDING, help="waiting histories beyond which requests get 503")
    parser.add_argument("--max_body_bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body accepted, in bytes; a larger one gets 413 before it is parsed (default: 1000000, 1 MB)")
    parser.add_argument("--request_timeout_s", type=_positive_seconds, default=DEFAULT_REQUEST_TIMEOUT_S,
                        help="seconds a request may take before it is answered 503 (default: 30)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--log_level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument("--no_access_log", action="store_true", help="do not log one line per request")
    return parser


def serve_main(argv: list[str] | None = None) -> int:
    """Load the checkpoint and serve it until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"--api_key_env {args.api_key_env}: that environment variable is not set or empty")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    app = create_app(
        args.model,
        precision=args.precision,
        device=args.device,
        api_key=api_key,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_history=args.max_history,
        max_top_k=args.max_top_k,
        max_inputs=args.max_inputs,
        max_pending=args.max_pending,
        max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.request_timeout_s,
        name=args.model,
    )
    # uvicorn's access log is one line per request (client, method, path, status), never headers.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log)
    return 0
