"""The HTTP service: `create_app` wraps a `pipeline("next-item")` in a FastAPI app.

    from hf_seqrec.serving import create_app
    app = create_app("runs/smollm2-ml100k", api_key="...")     # then: uvicorn.run(app, port=8000)

Routes:

- ``POST /recommend``: ``{"history": [...], "top_k": 5, ...}`` -> ``{"recommendations": [...], "warnings": [...]}``,
  or ``{"inputs": [{"history": [...]}, ...], ...}`` -> ``{"results": [{"recommendations", "warnings"}, ...], "warnings"}``;
  the recommendations are exactly the pipeline's output for the same input and parameters;
- ``GET /healthz``: liveness and readiness (open even with an API key, for load balancers);
- ``GET /metrics``: Prometheus text (see `hf_seqrec.serving.metrics`).

Status codes: 200; 401 (API key missing or wrong); 413 (a body over ``max_body_bytes``, refused before
it is parsed); 422 (the body does not validate, or the pipeline refuses it: ``detail[].loc`` names the
field, e.g. ``["body", "top_k"]``); 503 (too many histories waiting, or no answer within
``request_timeout_s``); 500 (a bug: the traceback goes to the server log, not to the client).

Histories with some unknown items are answered, as the pipeline does, with the items skipped and
a warning in ``warnings`` naming them; a history with no known item is a 422 naming them.
Concurrent requests are batched into shared forward passes (`hf_seqrec.serving.batching`).
"""

import contextlib
import logging
import math
from typing import Any, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..inference.loading import load_pipeline
from ..modeling.precision import inference_precision
from ..option_checks import check_positive_int
from .auth import api_key_dependency
from .batching import MicroBatcher, Overloaded
from .engine import JobResult, RecommendEngine, RecommendJob
from .limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT_S, RequestLimitsMiddleware
from .metrics import MetricsMiddleware, ServiceMetrics, model_name, model_revision
from .schemas import request_models

logger = logging.getLogger(__name__)

DEFAULT_MAX_HISTORY = 1024
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_INPUTS = 64
DEFAULT_MAX_PENDING = 1024


def create_app(
    pipeline_or_model: Any,
    *,
    precision: Optional[str] = None,
    device: Any = None,
    api_key: Optional[str] = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    max_history: Optional[int] = None,
    max_top_k: Optional[int] = None,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    max_pending: int = DEFAULT_MAX_PENDING,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    name: Optional[str] = None,
) -> FastAPI:
    """A FastAPI app serving ``pipeline_or_model``: a built next-item pipeline, or what `load_pipeline` takes.

    ``api_key``: when set, ``/recommend`` and ``/metrics`` answer 401 without it. ``max_history``
    bounds a history's length (default the larger of 1024 and the model's ``max_len``: the pipeline
    reads the last ``max_len`` items, so clients may send whole histories); ``max_top_k`` bounds
    ``top_k`` (default: the catalogue size). ``max_batch_size`` histories at most share a forward
    pass, collected for up to ``batch_wait_ms``; more than ``max_pending`` waiting histories get 503.
    A body over ``max_body_bytes`` gets 413 before it is parsed, and a request without an answer after
    ``request_timeout_s`` seconds gets 503 (`hf_seqrec.serving.limits`).
    """
    if hasattr(pipeline_or_model, "preprocess") and hasattr(pipeline_or_model, "catalog"):
        pipe = pipeline_or_model
        if precision is not None or device is not None:
            raise ValueError("precision and device apply when create_app loads the model; the pipeline given is already built")
    else:
        pipe = load_pipeline(pipeline_or_model, precision=precision, device=device)
    catalogue_size = len(pipe.catalog)
    max_history = max_history or max(DEFAULT_MAX_HISTORY, int(getattr(pipe, "max_len", 0)))
    max_top_k = max_top_k or catalogue_size
    for option, value in (("max_history", max_history), ("max_top_k", max_top_k), ("max_inputs", max_inputs),
                          ("max_batch_size", max_batch_size), ("max_pending", max_pending), ("max_body_bytes", max_body_bytes)):
        check_positive_int(option, value)
    if isinstance(request_timeout_s, bool) or not isinstance(request_timeout_s, (int, float)) or not 0 < request_timeout_s < math.inf:
        raise ValueError(f"request_timeout_s must be a positive number of seconds; got {request_timeout_s!r}")
    RecommendRequest = request_models(
        max_history=max_history, max_top_k=max_top_k, max_candidates=catalogue_size, max_inputs=max_inputs
    )

    revision, revision_source = model_revision(pipe.model)
    info = {
        "name": name or model_name(pipe.model),
        "revision": revision,
        "revision_source": revision_source,
        "backbone": str(getattr(pipe.model.config, "backbone_name_or_path", "")),
        "precision": inference_precision(pipe.model),
    }
    metrics = ServiceMetrics(info)
    engine = RecommendEngine(pipe, max_batch_size=max_batch_size, on_forward=metrics.batch_size.observe)

    def process(jobs: list[RecommendJob]) -> list[JobResult]:
        with metrics.batch_seconds.time():
            return engine.run(jobs)

    batcher = MicroBatcher(
        process,
        max_batch_size=max_batch_size,
        wait_ms=batch_wait_ms,
        max_pending=max_pending,
        size=lambda job: len(job.histories),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        logger.info(
            "serving %s (revision %s, %s; precision %s): max_batch_size=%d, batch_wait_ms=%s, max_history=%d, "
            "max_top_k=%d, max_body_bytes=%d, request_timeout_s=%g, API key %s", info["name"], revision, revision_source,
            info["precision"], max_batch_size, batch_wait_ms, max_history, max_top_k, max_body_bytes, request_timeout_s,
            "required" if api_key else "not required",
        )
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="hf_seqrec next-item recommendations",
        description="Top-k next items for a user's history, from a hf_seqrec checkpoint.",
        lifespan=lifespan,
    )
    # Added first, so it runs inside the metrics middleware, which then counts its 413s and 503s too.
    app.add_middleware(
        RequestLimitsMiddleware, max_body_bytes=max_body_bytes, request_timeout_s=request_timeout_s,
        on_reject=lambda reason: metrics.rejected.labels(reason).inc(),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.pipeline, app.state.engine, app.state.batcher, app.state.metrics = pipe, engine, batcher, metrics
    app.state.model_info = info
    protected = [Depends(api_key_dependency(api_key))]

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Open to all: says only whether the service can answer (no model details)."""
        if not batcher.running:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", dependencies=protected)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/recommend", dependencies=protected)
    async def recommend(body: RecommendRequest) -> JSONResponse:  # type: ignore[valid-type]
        job = RecommendJob(histories=body.histories(), params=body.parameters(), batch=body.is_batch)
        try:
            result: JobResult = await batcher.submit(job)
        except Overloaded as error:
            return JSONResponse({"detail": f"overloaded: {error}; retry shortly"}, status_code=503, headers={"Retry-After": "1"})
        except Exception:  # noqa: BLE001  (a bug: logged with its traceback, reported without details)
            logger.exception("scoring failed")
            return JSONResponse({"detail": "internal error while scoring; see the server log"}, status_code=500)
        if result.failure is not None:
            logger.error("scoring failed", exc_info=result.failure)
            return JSONResponse({"detail": "internal error while scoring; see the server log"}, status_code=500)
        if result.error is not None:
            error = result.error
            detail = [{"type": error.kind, "loc": ["body", *error.field], "msg": error.message}]
            return JSONResponse({"detail": detail}, status_code=422)
        if not job.batch:
            warnings = result.parameter_warnings + result.warnings[0]
            return JSONResponse({"recommendations": _finite(result.recommendations[0]), "warnings": warnings})
        results = [
            {"recommendations": _finite(recommendations), "warnings": warnings}
            for recommendations, warnings in zip(result.recommendations, result.warnings)
        ]
        return JSONResponse({"results": results, "warnings": result.parameter_warnings})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, minus the echo of the offending input (a history can be long and personal)."""
        detail = [{key: value for key, value in item.items() if key not in ("input", "ctx", "url")} for item in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    return app


def _finite(recommendations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON has no infinities: a score of -inf (an item the model cannot rank) becomes null."""
    for recommendation in recommendations:
        score = recommendation.get("score")
        if isinstance(score, float) and not math.isfinite(score):
            recommendation["score"] = None
    return recommendations
