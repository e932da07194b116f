"""An asyncio micro-batcher: requests that arrive within a few milliseconds share one forward pass.

A forward pass over 8 histories costs far less than 8 passes over one (the matmuls get wider, the
per-call overhead is paid once), so under concurrent load the service is faster per request when it
waits a moment and scores together. Requests are collected until ``max_batch_size`` histories are
waiting or the oldest has waited ``wait_ms``; the batch then runs in one worker thread, so the event
loop keeps accepting requests meanwhile and those pile up for the next batch.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


class Overloaded(RuntimeError):
    """More histories are waiting than the batcher accepts (``max_pending``); the client should retry."""


@dataclass
class _Pending:
    job: Any
    size: int
    future: asyncio.Future
    enqueued: float


@dataclass
class BatchStats:
    """What the batcher has done so far (for tests and metrics)."""

    batches: int = 0
    jobs: int = 0


class MicroBatcher(Generic[Job, Result]):
    """Collect jobs from concurrent coroutines and run them in batches in one worker thread.

    ``process(jobs)`` is called in the worker thread with a list of jobs and must return one result
    per job, in order. An exception it raises is given to every job of that batch. ``size(job)``
    counts the histories of a job (a batch request holds several), which ``max_batch_size`` bounds.
    """

    def __init__(
        self,
        process: Callable[[list[Job]], Sequence[Result]],
        *,
        max_batch_size: int = 32,
        wait_ms: float = 5.0,
        max_pending: int = 1024,
        size: Callable[[Job], int] = lambda job: 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1; got {max_batch_size}")
        if wait_ms < 0:
            raise ValueError(f"wait_ms must be 0 or more; got {wait_ms}")
        self.process = process
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000
        self.max_pending = max_pending
        self.size = size
        self.stats = BatchStats()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_size = 0
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the collecting task on the running event loop (the app's lifespan calls this)."""
        if self._task is not None:
            return
        self._arrived, self._full = asyncio.Event(), asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqrec-batch")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="seqrec-micro-batcher")

    async def stop(self) -> None:
        """Stop collecting; jobs still waiting are cancelled, a batch already running finishes."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._pending:
            self._pending.popleft().future.cancel()
        self._pending_size = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ submitting
    async def submit(self, job: Job) -> Result:
        """Queue ``job`` and wait for its result (raises what ``process`` raised for its batch)."""
        if not self.running:
            raise RuntimeError("the micro-batcher is not running; start it from the app's lifespan (MicroBatcher.start)")
        size = max(1, int(self.size(job)))
        if self._pending_size + size > self.max_pending:
            raise Overloaded(f"{self._pending_size} histories are already waiting (max_pending={self.max_pending})")
        loop = asyncio.get_running_loop()
        pending = _Pending(job, size, loop.create_future(), loop.time())
        self._pending.append(pending)
        self._pending_size += size
        self._arrived.set()
        if self._pending_size >= self.max_batch_size:
            self._full.set()
        return await pending.future

    # ------------------------------------------------------------------ the collecting loop
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            if not self._pending:
                self._arrived.clear()
                continue
            # The window runs from when the oldest job arrived: jobs that queued up while the
            # previous batch ran have waited already and go at once.
            remaining = self._pending[0].enqueued + self.wait_s - loop.time()
            if remaining > 0 and self._pending_size < self.max_batch_size:
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            batch = self._take_batch()
            jobs = [p for p in batch if not p.future.cancelled()]  # a client that went away needs no result
            if not jobs:
                continue
            self.stats.batches += 1
            self.stats.jobs += len(jobs)
            try:
                results = await loop.run_in_executor(self._executor, self.process, [p.job for p in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"the batch function returned {len(results)} results for {len(jobs)} jobs")
            except Exception as error:  # noqa: BLE001  (handed to the waiting requests, which report it)
                for p in jobs:
                    if not p.future.done():
                        p.future.set_exception(error)
                continue
            for p, result in zip(jobs, results):
                if not p.future.done():
                    p.future.set_result(result)

    def _take_batch(self) -> list[_Pending]:
        """The oldest jobs up to ``max_batch_size`` histories (always at least one job)."""
        batch, size = [], 0
        while self._pending and (not batch or size + self._pending[0].size <= self.max_batch_size):
            pending = self._pending.popleft()
            batch.append(pending)
            size += pending.size
        self._pending_size -= size
        if self._pending_size < self.max_batch_size:
            self._full.clear()
        if not self._pending:
            self._arrived.clear()
        return batch
