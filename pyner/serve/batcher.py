"""The dynamic batcher: one asyncio task owns the queue and packs texts of many requests by token budget.

A request is tokenized into windows (in a thread), admitted to a bounded queue, and waits. The
batch task takes windows from the oldest requests first until the batch reaches `max_batch_size`
windows or `max_batch_tokens` tokens, or until the oldest request has waited `max_delay_ms`; the
batch's windows are then sorted by length and each length bucket is padded only to its own longest
window (`plan_buckets`: a bucket closes when padding would exceed its real tokens by
`max_padding`). Inference runs in a single model thread, off the event loop;
decoding runs in a CPU thread while the next batch is already in the model. A request's results
keep the order of its texts; a request larger than one batch is spread over several.

Backpressure: at most `max_queue` admitted requests and `max_queue_tokens` tokens wait for the model
(so memory is bounded); the next request fails at once with Overloaded (gRPC RESOURCE_EXHAUSTED)
and a message saying so. Requests whose deadline passed
or whose caller cancelled are removed before their remaining windows reach the model, and counted
(pyner_requests_dropped_total{reason}).

No gRPC here: the transports (grpc_ner.py, grpc_kserve.py) convert and call `submit`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, Overloaded, PynerError
from .metrics import Metrics

log = logging.getLogger("pyner.serve")


class Unavailable(PynerError):
    """The server is starting (model not loaded/self-checked yet) or draining for shutdown."""

    exit_code = 1
    grpc_code = "UNAVAILABLE"


class DeadlineExpired(PynerError):
    """The request's deadline passed before its texts reached the model."""

    exit_code = 1
    grpc_code = "DEADLINE_EXCEEDED"


@dataclass(frozen=True)
class BatcherConfig:
    max_batch_tokens: int = 8192  # tokens (without padding) per formed batch; one longer window runs alone
    max_batch_size: int = 32  # windows per formed batch
    max_delay_ms: float = 2.0  # how long the oldest request may wait for a fuller batch
    max_queue: int = 256  # admitted requests waiting for the model; beyond: RESOURCE_EXHAUSTED
    max_queue_tokens: int = 2_000_000  # tokens waiting for the model (memory); one request alone is always taken
    max_padding: float = 0.25  # a length bucket's padded tokens may exceed its real tokens by this fraction
    max_texts: int = 256  # texts per request
    max_text_chars: int = 2_000_000  # code points per text (long texts are windowed, never truncated)
    # batches the model runs at the same time, each on its own thread. With ONNX Runtime at one
    # intra-op thread (--threads 1), one worker per core keeps every core busy with a whole batch:
    # short texts at moderate concurrency make small batches, which one run split over two threads
    # uses poorly (BENCHMARKS.md).
    model_workers: int = 1

    def check(self) -> "BatcherConfig":
        from ..errors import UsageError

        for name in ("max_batch_tokens", "max_batch_size", "max_queue", "max_queue_tokens", "max_texts", "max_text_chars",
                     "model_workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_delay_ms < 0:
            raise UsageError(f"--max-delay-ms must be >= 0, got {self.max_delay_ms}")
        if self.max_padding < 0:
            raise UsageError(f"--max-padding must be >= 0, got {self.max_padding}")
        return self


@dataclass(frozen=True)
class TextResult:
    entities: list[dict[str, Any]]
    n_tokens: int
    n_windows: int


def check_texts(texts: Sequence[str], config: BatcherConfig) -> None:
    """Reject requests the server will not take, naming the limit and the offending text index."""
    if len(texts) == 0:
        raise InputError("the request holds no texts; send at least one (an empty string is allowed)")
    if len(texts) > config.max_texts:
        raise InputError(
            f"the request holds {len(texts)} texts; this server takes at most {config.max_texts} per request",
            hint="split the batch into several requests (the server batches them together again)",
        )
    for i, t in enumerate(texts):
        if len(t) > config.max_text_chars:
            raise InputError(f"texts[{i}] has {len(t)} characters; this server takes at most {config.max_text_chars}")


def plan_buckets(lengths: Sequence[int], *, max_windows: int, max_tokens: int, max_padding: float) -> list[list[int]]:
    """Cut a formed batch into length buckets, one model run each: longest first; a bucket closes at
    `max_windows` windows, at `max_tokens` padded tokens, or when padding it to its longest window
    would exceed its real tokens by more than `max_padding` (a window alone always runs).

    Requests arrive in random lengths: one run padded to the batch's longest window wasted about
    half the compute on short sentences; buckets bring it back near the offline runtime's, which
    sorts all its texts at once.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    current: list[int] = []
    longest = real = 0
    for i in order:
        n = lengths[i]
        if current:
            padded = longest * (len(current) + 1)
            if len(current) >= max_windows or padded > max_tokens or padded > (real + n) * (1.0 + max_padding):
                buckets.append(current)
                current, real = [], 0
        if not current:
            longest = n
        current.append(i)
        real += n
    if current:
        buckets.append(current)
    return buckets


class _Job:
    """One admitted request: its windows, where they are, and the future its caller awaits."""

    __slots__ = ("encoded", "windows", "scores", "next", "done", "aggregation", "ignore_labels",
                 "future", "admitted", "enqueued", "deadline", "started", "released")

    def __init__(self, encoded, aggregation, ignore_labels, future, admitted, deadline):
        self.encoded = encoded
        self.windows = [w for e in encoded for w in e.windows]
        self.scores: list[np.ndarray | None] = [None] * len(self.windows)
        self.next = 0  # first window not yet handed to the model
        self.done = 0  # windows with scores
        self.aggregation = aggregation
        self.ignore_labels = ignore_labels
        self.future: asyncio.Future = future
        self.admitted = admitted
        self.enqueued = time.monotonic()
        self.deadline = deadline
        self.started = False
        self.released = False  # counted out of the pending (queue) total

    def remaining_tokens(self) -> int:
        return sum(len(w) for w in self.windows[self.next:])


class Batcher:
    def __init__(self, model, config: BatcherConfig, metrics: Metrics, *, cpu_threads: int = 1):
        self.model = model
        self.config = config.check()
        self.metrics = metrics
        self._queue: deque[_Job] = deque()
        self._queued_windows = 0
        self._queued_tokens = 0
        self._pending = 0  # admitted, not all windows in the model yet (bounded by max_queue)
        self._inflight = 0  # admitted, not answered yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._stopped = False
        self._model_pool = ThreadPoolExecutor(self.config.model_workers, thread_name_prefix="pyner-model")
        self._cpu_pool = ThreadPoolExecutor(max(1, cpu_threads), thread_name_prefix="pyner-cpu")
        self._tasks: list[asyncio.Task] = []  # one batch-forming loop per model worker
        self._decoders: set[asyncio.Task] = set()
        self._in_model: set[_Job] = set()  # jobs of the batches the model is running

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop(), name=f"pyner-batcher-{i}") for i in range(self.config.model_workers)]

    @property
    def inflight(self) -> int:
        return self._inflight

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests, finish admitted ones within `timeout` seconds; True if all finished."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        self._closing = True
        self._stopped = True
        self._wakeup.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._queue:  # only after a drain timeout: answer, do not lose
            job = self._queue.popleft()
            self._release(job)
            if not job.future.done():
                job.future.set_exception(Unavailable("the server shut down before this request reached the model"))
        for job in self._in_model:
            if not job.future.done():
                job.future.set_exception(Unavailable("the server shut down (grace period over) while this request was in the model"))
        self._model_pool.shutdown(wait=False, cancel_futures=True)
        self._cpu_pool.shutdown(wait=False, cancel_futures=True)

    # -- the callers' side ----------------------------------------------------------------------

    async def submit(
        self,
        texts: Sequence[str],
        *,
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> list[TextResult]:
        """Entities per text (in order). `deadline` is absolute, on time.monotonic()'s clock."""
        if self._closing:
            raise Unavailable("the server is shutting down and takes no new requests; retry on another replica")
        check_texts(texts, self.config)
        if self._pending >= self.config.max_queue:
            raise Overloaded(
                f"server overloaded: {self._pending} requests are already waiting for the model "
                f"(--max-queue {self.config.max_queue}); retry later with backoff",
            )
        loop = asyncio.get_running_loop()
        admitted = time.monotonic()
        self._pending += 1
        self._inflight += 1
        self._idle.clear()
        self.metrics.pending.set(self._pending)
        self.metrics.inflight.set(self._inflight)
        job: _Job | None = None
        try:
            encoded = await loop.run_in_executor(self._cpu_pool, self.model.encode, list(texts))
            for e in encoded:
                self.metrics.input_tokens.observe(e.n_tokens)
            tokens = sum(e.n_tokens for e in encoded)
            if self._queue and self._queued_tokens + tokens > self.config.max_queue_tokens:
                raise Overloaded(
                    f"server overloaded: {self._queued_tokens} tokens already wait for the model and this request adds "
                    f"{tokens} (--max-queue-tokens {self.config.max_queue_tokens}); retry later with backoff",
                )
            job = _Job(encoded, aggregation, ignore_labels, loop.create_future(), admitted, deadline)
            self._queue.append(job)
            self._queued_windows += len(job.windows)
            self._queued_tokens += job.remaining_tokens()
            self._wakeup.set()
            return await job.future
        finally:
            if job is None:
                self._pending -= 1
                self.metrics.pending.set(self._pending)
            self._inflight -= 1
            self.metrics.inflight.set(self._inflight)
            if self._inflight == 0:
                self._idle.set()

    # -- the batch task -------------------------------------------------------------------------

    def _release(self, job: _Job) -> None:
        if not job.released:
            job.released = True
            self._pending -= 1
            self.metrics.pending.set(self._pending)
            rest = job.windows[job.next:]
            self._queued_windows -= len(rest)
            self._queued_tokens -= sum(len(w) for w in rest)

    def _full(self) -> bool:
        return self._queued_windows >= self.config.max_batch_size or self._queued_tokens >= self.config.max_batch_tokens

    async def _loop(self) -> None:
        delay = self.config.max_delay_ms / 1000.0
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            oldest = self._queue[0].enqueued
            while not self._full() and not self._closing:
                remaining = oldest + delay - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            items, jobs, tokens = self._form_batch()
            if items:
                try:
                    await self._execute(items, jobs, tokens)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let one batch kill the task
                    log.exception("batch failed")

    def _drop(self, job: _Job, now: float) -> None:
        self._queue.popleft()
        self._release(job)
        expired = job.deadline is not None and now >= job.deadline
        self.metrics.dropped.labels(reason="deadline" if expired else "cancelled").inc()
        if not job.future.done():
            job.future.set_exception(DeadlineExpired(
                f"the deadline passed after {now - job.admitted:.3f}s in the queue, before the texts reached the model"))

    def _form_batch(self) -> tuple[list[tuple[_Job, int]], list[_Job], int]:
        cfg = self.config
        now = time.monotonic()
        items: list[tuple[_Job, int]] = []
        jobs: list[_Job] = []
        tokens = 0
        while self._queue and len(items) < cfg.max_batch_size:
            job = self._queue[0]
            if job.future.done() or (job.deadline is not None and now >= job.deadline):
                self._drop(job, now)
                continue
            took = 0
            while job.next < len(job.windows) and len(items) < cfg.max_batch_size:
                n = len(job.windows[job.next])
                if items and tokens + n > cfg.max_batch_tokens:
                    break
                items.append((job, job.next))
                tokens += n
                job.next += 1
                took += 1
                self._queued_windows -= 1
                self._queued_tokens -= n
            if took:
                jobs.append(job)
                if not job.started:
                    job.started = True
                    self.metrics.queue_time.observe(now - job.admitted)
            if job.next == len(job.windows):
                self._queue.popleft()
                self._release(job)
            else:
                break  # the batch is full
        return items, jobs, tokens

    def _forward(self, windows):
        cfg = self.config
        t0 = time.perf_counter()
        scores: list = [None] * len(windows)
        padded = 0
        buckets = plan_buckets([len(w) for w in windows], max_windows=cfg.max_batch_size,
                               max_tokens=cfg.max_batch_tokens, max_padding=cfg.max_padding)
        for bucket in buckets:
            part = [windows[i] for i in bucket]
            out = self.model.forward(part, batch_size=cfg.max_batch_size, max_batch_tokens=cfg.max_batch_tokens)
            for i, s in zip(bucket, out):
                scores[i] = s
            padded += max(len(w) for w in part) * len(part)
        self.metrics.model_runs.inc(len(buckets))
        self.metrics.padded_tokens.inc(padded)
        return scores, time.perf_counter() - t0

    async def _execute(self, items: list[tuple[_Job, int]], jobs: list[_Job], tokens: int) -> None:
        m = self.metrics
        m.batch_windows.observe(len(items))
        m.batch_requests.observe(len(jobs))
        m.batch_tokens.observe(tokens)
        m.model_windows.inc(len(items))
        loop = asyncio.get_running_loop()
        self._in_model.update(jobs)
        try:
            scores, seconds = await loop.run_in_executor(self._model_pool, self._forward, [j.windows[i] for j, i in items])
        except Exception as exc:
            self._in_model.difference_update(jobs)
            log.exception("model failed on a batch of %d windows", len(items))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        # (on cancellation, close() answers the jobs still in _in_model)
        self._in_model.difference_update(jobs)
        m.inference_time.observe(seconds)
        for (job, i), s in zip(items, scores):
            job.scores[i] = s
            job.done += 1
        for job in jobs:
            if job.done == len(job.windows) and not job.future.done():
                task = loop.create_task(self._finish(job))
                self._decoders.add(task)
                task.add_done_callback(self._decoders.discard)

    def _decode(self, job: _Job) -> list[TextResult]:
        out, k = [], 0
        for e in job.encoded:
            n = len(e.windows)
            ents = self.model.decode(e, job.scores[k:k + n], aggregation=job.aggregation, ignore_labels=job.ignore_labels)
            out.append(TextResult(ents, e.n_tokens, n))
            k += n
        return out

    async def _finish(self, job: _Job) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._cpu_pool, self._decode, job)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            self.metrics.texts.inc(len(results))
            job.future.set_result(results)
