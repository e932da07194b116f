"""Run many independent recommendation requests through shared `pipeline("next-item")` forward passes.

A request's parameters change how its histories are prepared and ranked, never the forward pass, so
requests with different parameters still share it. The engine runs the steps of a pipeline call,
which the pipeline makes public: each request's parameters are checked (``call_parameters``) and
each of its histories prepared (``prepare``) on its own, so a bad request fails alone, with the
pipeline's own message and the field the pipeline names, and its warnings are its own; the prepared
histories of all requests are scored together (``score``, ``max_batch_size`` at most per pass); each
is ranked with its own request's parameters (``finish``). A served result therefore equals
``pipe(inputs, **params)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..pipelines import PreparedHistory, RequestError


@dataclass
class RecommendJob:
    """One HTTP request: its histories (pipeline input dicts), its call parameters, and whether it was a batch."""

    histories: list[dict[str, Any]]
    params: dict[str, Any]
    batch: bool = False


@dataclass
class JobError(Exception):
    """The pipeline refused a request: ``field`` is where in the request body (e.g. ``inputs.1.history``)."""

    field: tuple[str | int, ...]
    message: str
    kind: str = "value_error"

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.field))}: {self.message}"


@dataclass
class JobResult:
    """The recommendations of each history of a job, the warnings the pipeline gave, or the error."""

    recommendations: list[list[dict[str, Any]]] = field(default_factory=list)
    warnings: list[list[dict[str, Any]]] = field(default_factory=list)  # per history
    parameter_warnings: list[dict[str, Any]] = field(default_factory=list)  # about the call parameters
    error: JobError | None = None
    failure: BaseException | None = None  # an unexpected exception for this job alone (answered as a 500)

    @property
    def failed(self) -> bool:
        return self.error is not None or self.failure is not None


@dataclass
class _Prepared:
    job_index: int
    history_index: int
    history: PreparedHistory


class RecommendEngine:
    """Score a list of `RecommendJob` with a `NextItemPipeline`; meant to run in one worker thread."""

    def __init__(self, pipe: Any, *, max_batch_size: int = 64, on_forward: Callable[[int], None] | None = None) -> None:
        self.pipe = pipe
        self.max_batch_size = max_batch_size
        self.on_forward = on_forward  # called with the number of histories of each forward pass
        self.forward_passes = 0

    def run(self, jobs: Sequence[RecommendJob]) -> list[JobResult]:
        results = [JobResult() for _ in jobs]
        prepared: list[_Prepared] = []
        for index, job in enumerate(jobs):
            try:
                prepared.extend(self._prepare(index, job, results[index]))
            except JobError as error:
                results[index] = JobResult(error=error)
        for start in range(0, len(prepared), self.max_batch_size):
            self._score(prepared[start : start + self.max_batch_size], jobs, results)
        return results

    # ------------------------------------------------------------------ steps
    def _prepare(self, index: int, job: RecommendJob, result: JobResult) -> list[_Prepared]:
        with _Recorder() as caught:
            try:
                params = self.pipe.call_parameters(**job.params)
            except RequestError as error:
                raise _job_error(error, _parameter_field(error, job.params)) from None
        result.parameter_warnings = [self._describe(w, ("candidates",), job.params.get("candidates")) for w in caught]
        prepared = []
        result.recommendations = [[] for _ in job.histories]
        result.warnings = [[] for _ in job.histories]
        for position, history in enumerate(job.histories):
            # One history per call, so that each history's warnings are its own.
            with _Recorder() as caught:
                try:
                    [ready] = self.pipe.prepare([history], params, start=position)
                except RequestError as error:
                    raise _job_error(error, _history_field(error, job)) from None
            where = ("inputs", position) if job.batch else ()
            key = "history_text" if "history_text" in history else "history"
            result.warnings[position] = [self._describe(w, where + (key,), history.get(key) if key == "history" else None) for w in caught]
            prepared.append(_Prepared(index, position, ready))
        return prepared

    def _score(self, group: list[_Prepared], jobs: Sequence[RecommendJob], results: list[JobResult]) -> None:
        scores = self.pipe.score([item.history for item in group])
        self.forward_passes += 1
        if self.on_forward is not None:
            self.on_forward(len(group))
        for row, item in enumerate(group):
            result = results[item.job_index]
            if result.failed:
                continue
            with _Recorder() as caught:
                try:
                    result.recommendations[item.history_index] = self.pipe.finish(scores[row], item.history)
                except RequestError as error:
                    field_ = _parameter_field(error, jobs[item.job_index].params)
                    results[item.job_index] = JobResult(error=_job_error(error, field_))
                    continue
                except Exception as error:  # noqa: BLE001  (e.g. an optional dependency missing): this job only
                    results[item.job_index] = JobResult(failure=error)
                    continue
            result.warnings[item.history_index] += [self._describe(w, (), None) for w in caught]

    def _describe(self, caught: warnings.WarningMessage, where: tuple, values: Any) -> dict[str, Any]:
        """A warning as JSON; an unknown-item warning about ids also lists the ids it skipped."""
        described: dict[str, Any] = {"type": caught.category.__name__, "message": str(caught.message)}
        if where:
            described["field"] = ".".join(map(str, where))
        if caught.category.__name__ == "UnknownItemWarning" and isinstance(values, list):
            catalog = getattr(self.pipe, "catalog", None)
            if catalog is not None:
                described["items"] = catalog.rows_for_ids(values)[1]
        return described


class _Recorder(warnings.catch_warnings):
    """Record every warning raised inside (the pipeline's UserWarnings included, repeats too).

    The warnings machinery is process-wide: a warning another thread raises meanwhile lands here too.
    Only the one worker thread runs the pipeline, so what lands here is the pipeline's.
    """

    def __init__(self) -> None:
        super().__init__(record=True)

    def __enter__(self) -> list[warnings.WarningMessage]:
        caught = super().__enter__()
        warnings.simplefilter("always")
        return caught


def _job_error(error: RequestError, where: tuple[str | int, ...]) -> JobError:
    return JobError(where, str(error), "type_error" if isinstance(error, TypeError) else "value_error")


def _parameter_field(error: RequestError, params: dict[str, Any]) -> tuple[str, ...]:
    """The call parameter the pipeline blames, where the request gave it; else the whole body.

    A parameter the request left out (its value the pipeline's default) is no place in the body.
    """
    return (error.field,) if error.field is not None and error.field in params else ()


def _history_field(error: RequestError, job: RecommendJob) -> tuple[str | int, ...]:
    """Where a refused history's field is in the body: ``inputs.<index>.<field>`` in a batch, ``<field>`` alone."""
    where: tuple[str | int, ...] = ("inputs", error.index) if job.batch else ()
    return where + ((error.field,) if error.field is not None else ())
