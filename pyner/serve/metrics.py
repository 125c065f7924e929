"""Prometheus metrics of the sidecar, declared once, here.

Names: `pyner_` prefix; durations in seconds with a `_seconds` suffix; counters end in `_total`
(prometheus_client adds it). Each server instance owns a registry, so several servers in one
process (tests) do not mix counts. Buckets are chosen per kind in one place (`_BUCKETS`).

The HorizontalPodAutoscaler in deploy/k8s scales on the average queue time:
    rate(pyner_queue_duration_seconds_sum[1m]) / rate(pyner_queue_duration_seconds_count[1m])
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.model_runs = Counter("pyner_model_runs", "ONNX Runtime runs (length buckets of the formed batches).", registry=r)
        self.padded_tokens = Counter("pyner_model_padded_tokens", "Tokens the model computed, padding included.", registry=r)
        self.queue_time = hist("queue_duration_seconds", "Time from admission until a request's first window enters the model.", "seconds")
        self.inference_time = hist("inference_duration_seconds", "Model time per formed batch (ONNX Runtime, all its length buckets).", "seconds")
        self.request_time = hist("request_duration_seconds", "End-to-end time per request inside the server, by API.", "seconds", ("api",))
        self.batch_windows = hist("batch_size", "Windows per formed batch.", "windows")
        self.batch_requests = hist("batch_requests", "Requests with windows in a formed batch.", "requests")
        self.batch_tokens = hist("batch_tokens", "Tokens (without padding) per formed batch.", "tokens")
        self.input_tokens = hist("input_length_tokens", "Tokens per input text (special tokens of every window included).", "tokens")
        self.pending = Gauge("pyner_pending_requests", "Admitted requests whose texts have not all reached the model yet.", registry=r)
        self.inflight = Gauge("pyner_inflight_requests", "Admitted requests not answered yet.", registry=r)
        self.ready = Gauge("pyner_ready", "1 while the server takes requests (model loaded and self-checked, not draining).", registry=r)
        self.model_info = Gauge(
            "pyner_model_info", "The served model (value 1).",
            ("name", "artifact_digest", "precision", "max_length", "labels", "pyner_version"), registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
