"""The dynamic batcher: one asyncio task owns the queue and packs windows of many requests by token budget.

A request is tokenized into windows (in a thread), admitted to a bounded queue, and waits. The
batch task forms a batch by taking windows round-robin across the admitted requests (one window
of each request per round, the requests least recently served first), so a large request never
holds the model while small ones wait: every request in the queue gets windows into every batch
while there is room. A batch closes at `max_batch_size` windows or `max_batch_tokens` padded tokens
(windows x longest window), or when the oldest request has waited `max_delay_ms`. The runtime's
one batch planner (`pyner.runtime.plan_batches`) then cuts it into ONNX Runtime runs by length
(`max_padding`), and each run is exactly one `Model.run_batch`. Inference runs in model threads
(`model_workers`), off the event loop; decoding runs in a CPU thread while the next batch is already
in the model. A request's results keep the order of its texts.

Backpressure: at most `max_queue` admitted requests and `max_queue_tokens` tokens wait for the model
(so memory is bounded); the next request fails at once with Overloaded (gRPC RESOURCE_EXHAUSTED)
and a message saying so. One request may hold at most `max_request_tokens` tokens (InputError,
INVALID_ARGUMENT: a retry cannot succeed). Requests whose deadline passed or whose caller cancelled
are removed before their remaining windows reach the model, and counted
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

from ..errors import DeadlineExpired, InputError, Overloaded, Unavailable
from ..artifact import TOKEN_CLASSIFICATION
from ..runtime import plan_batches
from ..tasks import require
from .config import BatcherConfig
from .metrics import Metrics

log = logging.getLogger("pyner.serve")

__all__ = ["Batcher", "BatcherConfig", "TextResult", "check_request_limits", "Unavailable", "DeadlineExpired"]

# ignore_labels names labels or entity groups (a model has tens): bound what one request may make
# the decoding thread hash (800,000 entries took 18 s of it).
MAX_IGNORE_LABELS = 1000
MAX_IGNORE_LABEL_CHARS = 256


@dataclass(frozen=True)
class TextResult:
    entities: list[dict[str, Any]]
    n_tokens: int
    n_windows: int


def check_request_limits(texts: Sequence[str], ignore_labels: Sequence[str] | None, config: BatcherConfig) -> frozenset[str] | None:
    """Reject a request over this server's limits (texts, characters per text, ignore_labels), naming
    the limit and the offending index; return ignore_labels as the set decoding uses (None: default)."""
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
    if ignore_labels is None:
        return None
    if len(ignore_labels) > MAX_IGNORE_LABELS:
        raise InputError(f"ignore_labels holds {len(ignore_labels)} entries; this server takes at most {MAX_IGNORE_LABELS}",
                         hint="list the labels or entity groups to drop (the model has few); an empty list keeps every label")
    for i, label in enumerate(ignore_labels):
        if not isinstance(label, str) or len(label) > MAX_IGNORE_LABEL_CHARS:
            raise InputError(f"ignore_labels[{i}] is not a label name of at most {MAX_IGNORE_LABEL_CHARS} characters")
    return frozenset(ignore_labels)


class _Job:
    """One admitted request: its windows, where they are, and the future its caller awaits."""

    __slots__ = ("encoded", "windows", "scores", "next", "taken_from", "done", "aggregation", "ignore_labels",
                 "future", "admitted", "enqueued", "deadline", "started", "released")

    def __init__(self, encoded, aggregation, ignore_labels, future, admitted, deadline):
        self.encoded = encoded
        self.windows = [w for e in encoded for w in e.windows]
        self.scores: list[np.ndarray | None] = [None] * len(self.windows)
        self.next = 0  # first window not yet handed to the model
        self.taken_from = 0  # self.next when the batch being formed began
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
        self.config = config.for_device(getattr(model, "device", None)).check()  # unset batch sizes: the device's
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
        # the sidecar serves entities only (classification and embedding RPCs: not yet, docs/tasks.md)
        require(getattr(self.model, "task", TOKEN_CLASSIFICATION), TOKEN_CLASSIFICATION, self.model.folder, "predict")
        ignore = check_request_limits(texts, ignore_labels, self.config)
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
            if tokens > self.config.max_request_tokens:
                raise InputError(
                    f"the request holds {tokens} tokens; this server takes at most {self.config.max_request_tokens} "
                    "per request (--max-request-tokens)", hint="split the text into several requests")
            if self._queue and self._queued_tokens + tokens > self.config.max_queue_tokens:
                raise Overloaded(
                    f"server overloaded: {self._queued_tokens} tokens already wait for the model and this request adds "
                    f"{tokens} (--max-queue-tokens {self.config.max_queue_tokens}); retry later with backoff",
                )
            job = _Job(encoded, aggregation, ignore, loop.create_future(), admitted, deadline)
            self._queue.append(job)
            self._queued_windows += len(job.windows)
            self._queued_tokens += job.remaining_tokens()
            self._wakeup.set()
            return await job.future
        except asyncio.CancelledError:
            if job is None:  # cancelled (or out of time) while being tokenized: it never queued, count it here
                expired = deadline is not None and time.monotonic() >= deadline
                self.metrics.dropped.labels(reason="deadline" if expired else "cancelled").inc()
            raise
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
            oldest = min(job.enqueued for job in self._queue)
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
        self._release(job)
        expired = job.deadline is not None and now >= job.deadline
        self.metrics.dropped.labels(reason="deadline" if expired else "cancelled").inc()
        if not job.future.done():
            job.future.set_exception(DeadlineExpired(
                f"the deadline passed after {now - job.admitted:.3f}s in the queue, before the texts reached the model"))

    def _form_batch(self) -> tuple[list[tuple[_Job, int]], list[_Job], int]:
        """Windows round-robin across the queued requests, least recently served first: one window of
        each per round until the batch holds max_batch_size windows or max_batch_tokens padded tokens.
        The requests served go to the back of the queue; those the batch had no room for stay in front."""
        cfg = self.config
        now = time.monotonic()
        live: list[_Job] = []
        for job in self._queue:
            if job.future.done() or (job.deadline is not None and now >= job.deadline):
                self._drop(job, now)
            else:
                live.append(job)
        items: list[tuple[_Job, int]] = []
        served: list[_Job] = []
        longest = tokens = 0
        candidates = live
        while candidates and len(items) < cfg.max_batch_size:
            again = []
            for job in candidates:
                if len(items) >= cfg.max_batch_size:
                    break
                n = len(job.windows[job.next])
                if items and (len(items) + 1) * max(longest, n) > cfg.max_batch_tokens:
                    continue  # no room for this window: the job waits for the next batch
                if job.next == job.taken_from:
                    served.append(job)
                items.append((job, job.next))
                job.next += 1
                longest = max(longest, n)
                tokens += n
                self._queued_windows -= 1
                self._queued_tokens -= n
                if job.next < len(job.windows):
                    again.append(job)
            candidates = again
        taken = set(map(id, served))
        for job in served:
            job.taken_from = job.next
            if not job.started:
                job.started = True
                self.metrics.queue_time.observe(now - job.admitted)
            if job.next == len(job.windows):
                self._release(job)
        self._queue = deque([j for j in live if id(j) not in taken] + [j for j in served if j.next < len(j.windows)])
        return items, served, tokens

    def _forward(self, items: list[tuple[_Job, int]], scored) -> float:
        """Score one formed batch in the model thread: the runtime's planner cuts it into runs, each
        exactly one ONNX Runtime run, shortest first; `scored(run_items, outputs)` hands each run's
        scores back to the event loop as soon as it is done, so that a short request in a batch
        with long windows is answered before they are."""
        cfg = self.config
        t0 = time.perf_counter()
        lengths = [len(job.windows[i]) for job, i in items]
        runs = plan_batches(lengths, batch_size=cfg.max_batch_size, max_batch_tokens=cfg.max_batch_tokens,
                            max_padding=cfg.max_padding)
        for run in reversed(runs):  # plan_batches gives the longest first
            out = self.model.run_batch([items[k][0].windows[items[k][1]] for k in run])
            self.metrics.model_runs.inc()
            self.metrics.padded_tokens.inc(len(run) * max(lengths[k] for k in run))
            scored([items[k] for k in run], [out[row, :lengths[k]] for row, k in enumerate(run)])
        return time.perf_counter() - t0

    async def _execute(self, items: list[tuple[_Job, int]], jobs: list[_Job], tokens: int) -> None:
        m = self.metrics
        m.batch_windows.observe(len(items))
        m.batch_requests.observe(len(jobs))
        m.batch_tokens.observe(tokens)
        m.model_windows.inc(len(items))
        loop = asyncio.get_running_loop()
        self._in_model.update(jobs)

        def scored(run_items, outputs) -> None:  # in the model thread
            loop.call_soon_threadsafe(self._scored, run_items, outputs)

        try:
            seconds = await loop.run_in_executor(self._model_pool, self._forward, items, scored)
        except Exception as exc:
            self._in_model.difference_update(jobs)
            log.exception("model failed on a batch of %d windows", len(items))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        # (on cancellation, close() answers the jobs still in _in_model; the runs' callbacks ran before this)
        self._in_model.difference_update(jobs)
        m.inference_time.observe(seconds)

    def _scored(self, run_items: list[tuple[_Job, int]], outputs: list[np.ndarray]) -> None:
        """One run's scores: store them; a request with all its windows scored goes to decoding."""
        loop = asyncio.get_running_loop()
        finished = []
        for (job, i), s in zip(run_items, outputs):
            job.scores[i] = s
            job.done += 1
            if job.done == len(job.windows):
                finished.append(job)
        for job in finished:
            if not job.future.done():
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
