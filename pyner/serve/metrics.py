"""Prometheus metrics of the sidecar, declared once, here.

Names: `pyner_` prefix; durations in seconds with a `_seconds` suffix; counters end in `_total`
(prometheus_client adds it). Each server instance owns a registry, so several servers in one
process (tests) do not mix counts. Buckets are chosen per kind in one place (`_BUCKETS`).

The HorizontalPodAutoscaler in deploy/k8s scales on the average queue time:
    rate(pyner_queue_duration_seconds_sum[1m]) / rate(pyner_queue_duration_seconds_count[1m])

Each registry also holds prometheus_client's standard process collector (process_resident_memory_bytes,
process_cpu_seconds_total, process_open_fds, ...). `MetricsServer` serves the registry over plain
HTTP on the server's event loop: no thread per connection, at most MAX_CONNECTIONS open at once, and
a connection that sends no request within READ_TIMEOUT seconds is closed. /metrics has no TLS and no
authentication: keep its port on a trusted network (docs/serve.md).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

log = logging.getLogger("pyner.serve")

# A Prometheus server scrapes over one connection at a time; a few spare for people with curl.
MAX_CONNECTIONS = 64
READ_TIMEOUT = 10.0  # seconds for a connection to send its request line and headers
MAX_REQUEST_BYTES = 16 * 1024

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUCKETS = {
    "seconds": _LATENCY,
    "windows": (1, 2, 4, 8, 16, 32, 64, 128, 256),
    "requests": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128),
    "tokens": (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
}


class Metrics:
    """Every metric the server exports; `registry` is what the metrics endpoint serves."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)

        def hist(name: str, doc: str, kind: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(f"pyner_{name}", doc, labels, buckets=_BUCKETS[kind], registry=r)

        self.requests = Counter(
            "pyner_requests", "Finished requests by API and gRPC status code (OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...).",
            ("api", "status"), registry=r)
        self.dropped = Counter(
            "pyner_requests_dropped",
            "Requests removed from the queue before their texts reached the model, by reason (deadline, cancelled).",
            ("reason",), registry=r)
        self.texts = Counter("pyner_texts", "Texts answered.", registry=r)
        self.model_windows = Counter("pyner_model_windows", "Windows run through the model.", registry=r)
        self.model_runs = Counter("pyner_model_runs", "ONNX Runtime runs (Model.run_batch calls: the runs plan_batches cut the formed batches into).", registry=r)
        self.padded_tokens = Counter("pyner_model_padded_tokens", "Tokens the model computed, padding included.", registry=r)
        self.queue_time = hist("queue_duration_seconds", "Time from admission until a request's first window enters the model.", "seconds")
        self.inference_time = hist("inference_duration_seconds", "Model time per formed batch (ONNX Runtime, all its runs).", "seconds")
        self.request_time = hist("request_duration_seconds", "End-to-end time per request inside the server, by API.", "seconds", ("api",))
        self.batch_windows = hist("batch_size", "Windows per formed batch.", "windows")
        self.batch_requests = hist("batch_requests", "Requests with windows in a formed batch.", "requests")
        self.batch_tokens = hist("batch_tokens", "Real tokens (padding excluded) per formed batch.", "tokens")
        self.input_tokens = hist("input_length_tokens", "Tokens per input text (special tokens of every window included).", "tokens")
        self.pending = Gauge("pyner_pending_requests", "Admitted requests whose texts have not all reached the model yet.", registry=r)
        self.inflight = Gauge("pyner_inflight_requests", "Admitted requests not answered yet.", registry=r)
        self.ready = Gauge("pyner_ready", "1 while the server takes requests (model loaded and self-checked, not draining).", registry=r)
        self.model_info = Gauge(
            "pyner_model_info", "The served model (value 1).",
            ("name", "artifact_digest", "precision", "max_length", "labels", "pyner_version", "device"), registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """GET /metrics (or /) -> the registry in Prometheus' text format; anything else 404 (HEAD 200, no body).

    Runs on the caller's event loop: no threads. Connections beyond MAX_CONNECTIONS are closed at once."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_BYTES, reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._open):
                w.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"only GET\n", "text/plain; charset=utf-8"
            elif path in ("/metrics", "/"):
                status, body, ctype = "200 OK", generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST
            else:
                status, body, ctype = "404 Not Found", b"the metrics are at /metrics\n", "text/plain; charset=utf-8"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode("latin-1") + (b"" if method == "HEAD" else body))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # silent: an idle, slow or broken connection is closed
        finally:
            self._open.discard(writer)
            writer.close()
