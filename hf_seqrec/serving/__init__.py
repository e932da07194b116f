"""Serve `pipeline("next-item")` over HTTP: FastAPI app, micro-batching, API key, Prometheus metrics.

Needs the ``serve`` extra (``pip install "hf_seqrec[serve]"``: fastapi, uvicorn, prometheus_client).
``python scripts/serve.py --model CHECKPOINT`` runs it; `create_app` builds the app for other servers.
"""

from ..inference.loading import load_pipeline
from .app import create_app
from .batching import MicroBatcher, Overloaded
from .engine import RecommendEngine, RecommendJob

__all__ = ["MicroBatcher", "Overloaded", "RecommendEngine", "RecommendJob", "create_app", "load_pipeline"]
