"""Run many independent recommendation requests through one `pipeline("next-item")` forward pass.

The pipeline's call parameters split into preprocessing (``fallback``), forward and postprocessing
(``top_k``, ``exclude_seen``, ``candidates``, ``return_scores``) parameters. Only forward parameters
change the forward pass, so requests that differ in the others still share it: each request is
validated and preprocessed on its own (a bad request fails alone, with the pipeline's own message,
and its warnings are its own), requests with equal forward parameters are scored together, and each
is postprocessed with its own parameters. The steps are the pipeline's own ``_sanitize_parameters``,
``preprocess``, ``forward`` and ``postprocess``, so a served result equals ``pipe(inputs, **params)``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..pipelines.next_item import _collate


@dataclass
class RecommendJob:
    """One HTTP request: its histories (pipeline input dicts), its call parameters, and whether it was a batch."""

    histories: list[dict[str, Any]]
    params: dict[str, Any]
    batch: bool = False


@dataclass
class RequestError(Exception):
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
    error: RequestError | None = None
    failure: BaseException | None = None  # an unexpected exception for this job alone (answered as a 500)

    @property
    def failed(self) -> bool:
        return self.error is not None or self.failure is not None


@dataclass
class _Prepared:
    job_index: int
    history_index: int
    record: dict[str, Any]
    forward_params: dict[str, Any]
    postprocess_params: dict[str, Any]


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
            except RequestError as error:
                results[index] = JobResult(error=error)
        # Equal forward parameters share a forward pass (today the pipeline has none, so all do).
        groups: dict[str, list[_Prepared]] = {}
        for item in prepared:
            if not results[item.job_index].failed:
                groups.setdefault(_key(item.forward_params), []).append(item)
        for group in groups.values():
            for start in range(0, len(group), self.max_batch_size):
                self._score(group[start : start + self.max_batch_size], jobs, results)
        return results

    # ------------------------------------------------------------------ steps
    def _prepare(self, index: int, job: RecommendJob, result: JobResult) -> list[_Prepared]:
        pipe = self.pipe
        with _Recorder() as caught:
            try:
                pre, forward, post = pipe._sanitize_parameters(**job.params)
            except (TypeError, ValueError) as error:
                raise RequestError(_parameter_field(error, job.params), str(error), _kind(error)) from None
        result.parameter_warnings = [self._describe(w, ("candidates",), job.params.get("candidates")) for w in caught]
        pre, forward, post = pipe.with_defaults(pre, forward, post)  # parameters given when the pipeline was built
        prepared = []
        result.recommendations = [[] for _ in job.histories]
        result.warnings = [[] for _ in job.histories]
        for position, history in enumerate(job.histories):
            where: tuple[str | int, ...] = ("inputs", position) if job.batch else ()
            with _Recorder() as caught:
                try:
                    record = pipe.preprocess(history, **pre)
                except (TypeError, ValueError) as error:
                    raise RequestError(where + (_history_field(error, history),), str(error), _kind(error)) from None
            key = "history_text" if "history_text" in history else "history"
            result.warnings[position] = [self._describe(w, where + (key,), history.get(key) if key == "history" else None) for w in caught]
            prepared.append(_Prepared(index, position, record, forward, post))
        return prepared

    def _score(self, group: list[_Prepared], jobs: Sequence[RecommendJob], results: list[JobResult]) -> None:
        outputs = self.pipe.forward(_collate([item.record for item in group]), **group[0].forward_params)
        self.forward_passes += 1
        if self.on_forward is not None:
            self.on_forward(len(group))
        for row, item in enumerate(group):
            result = results[item.job_index]
            if result.failed:
                continue
            one = {key: value[row : row + 1] for key, value in outputs.items()}
            with _Recorder() as caught:
                try:
                    result.recommendations[item.history_index] = self.pipe.postprocess(one, **item.postprocess_params)
                except (TypeError, ValueError) as error:
                    field_ = _parameter_field(error, jobs[item.job_index].params)
                    results[item.job_index] = JobResult(error=RequestError(field_, str(error), _kind(error)))
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


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def _kind(error: Exception) -> str:
    return "type_error" if isinstance(error, TypeError) else "value_error"


def _parameter_field(error: Exception, params: dict[str, Any]) -> tuple[str, ...]:
    """The call parameter an error message is about (the pipeline names it), else the whole body."""
    message = str(error)
    # Strictest first: "unknown parameter(s) ['topk']" lists the known names too, after the quoted one.
    word = lambda name: rf"(?<!\w){re.escape(name)}(?!\w)"  # noqa: E731  ("explain" is not in "explain_method")
    for matches in (
        lambda name: repr(name) in message,
        lambda name: re.match(word(name), message) is not None,
        lambda name: re.search(word(name), message) is not None,
    ):
        for name in params:
            if matches(name):
                return (name,)
    return ()


def _history_field(error: Exception, history: dict[str, Any]) -> str:
    if "timestamp" in str(error) and "timestamps" in history:
        return "timestamps"
    return "history_text" if "history_text" in history else "history"
