"""Prometheus metrics of the service, and which model revision it serves.

Each app has its own registry (two apps in one process, as in tests, do not share counters):

- ``seqrec_requests_total{route,method,status}``: requests answered, by route template and status;
- ``seqrec_request_duration_seconds{route}``: latency histogram, from request start to response end;
- ``seqrec_batch_size``: histories per forward pass (how well concurrent requests are batched);
- ``seqrec_batch_duration_seconds``: worker time per batch (its rate: how busy the model is);
- ``seqrec_rejected_requests_total{reason}``: requests refused by `hf_seqrec.serving.limits`, ``body_too_large``
  (413) or ``timeout`` (503);
- ``seqrec_model_info{name,revision,revision_source,backbone,precision}``: always 1, names the model.

The revision is the Hub commit when the checkpoint came from the Hub (its snapshot folder is named
after the commit), else a SHA-256 over the checkpoint's files that change its recommendations
(`hf_seqrec.modeling.checkpoint_location.checkpoint_revision`, as the batch job's resume check), so two
servers report the same revision exactly when they load the same files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

from ..modeling.checkpoint_location import checkpoint_revision
from .limits import BODY_TOO_LARGE, TIMEOUT

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The service's metrics in a registry of their own."""

    def __init__(self, model_info: dict[str, str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "seqrec_requests", "HTTP requests answered, by route and status code.", ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "seqrec_request_duration_seconds", "Time from request start to the end of the response.", ("route",),
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "seqrec_batch_size", "Histories scored per forward pass.", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "seqrec_batch_duration_seconds",
            "Time the worker spent on one batch (validation by the pipeline, forward pass, ranking); "
            "its rate is the share of time the model was busy.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.rejected = Counter(
            "seqrec_rejected_requests",
            "Requests refused by the service's limits: a body over max_body_bytes (body_too_large, 413) or no "
            "answer within request_timeout_s (timeout, 503).",
            ("reason",), registry=self.registry,
        )
        for reason in (BODY_TOO_LARGE, TIMEOUT):
            self.rejected.labels(reason)  # reported as 0 from the start, not only after the first refusal
        Info("seqrec_model", "The model served: name, revision and how the revision was determined.", registry=self.registry).info(
            model_info
        )


class MetricsMiddleware:
    """ASGI middleware counting every HTTP response by route template (not raw path) and status."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            # The router stores the matched route in the scope; unmatched paths share one label so
            # that scanners cannot grow the label set without bound.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def model_revision(model: Any) -> tuple[str, str]:
    """``(revision, source)`` of a loaded model (see `checkpoint_revision`), or ``("unknown", "none")`` for a
    model that was not loaded from a checkpoint.

    The checkpoint directory is the model's ``name_or_path``: ``from_pretrained`` sets it to the local
    directory it read (a Hub repo's snapshot folder, named after the commit)."""
    directory = getattr(model, "name_or_path", None)
    if not directory:
        return "unknown", "none"
    return checkpoint_revision(directory)


def model_name(model: Any) -> str:
    """A Hub repo id for a Hub snapshot (``owner/name``), else the checkpoint directory's path."""
    directory = getattr(model, "name_or_path", None)
    if not directory:
        return type(model).__name__
    path = Path(directory)
    for parent in path.parents:
        if parent.name.startswith("models--"):
            return parent.name[len("models--") :].replace("--", "/")
    return str(path)
