"""The sidecar's settings, defined once: the defaults here are the CLI's (pyner/cli/serve.py reads
them for its flag table and help) and the library's (`ServerThread(ServeConfig(...))`).

Standard library only, so that `pyner --help` does not import the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UsageError

MiB = 1 << 20
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class BatcherConfig:
    # padded tokens (windows x longest window) per formed batch, the cost of running it as one
    # batch; plan_batches then cuts it into runs by --max-padding. One longer window runs alone.
    # None: the device's default, the runtime's (`Device.max_batch_tokens`, tested equal): on CPU
    # 2048 (measured there: a batch is also the longest a newly arrived request waits for the model,
    # 8192 held it ~4x longer, bench/hol.py); on CUDA 16384 (docs/gpu.md).
    max_batch_tokens: int | None = None
    max_batch_size: int | None = None  # windows per formed batch; None: 32 on CPU, 256 on CUDA
    max_delay_ms: float = 2.0  # how long the oldest request may wait for a fuller batch
    max_queue: int = 256  # admitted requests waiting for the model; beyond: RESOURCE_EXHAUSTED
    max_queue_tokens: int = 2_000_000  # tokens waiting for the model (memory); one request alone is always taken
    max_padding: float = 0.25  # a run's padded tokens may exceed its real tokens by this fraction
    max_texts: int = 256  # texts per request
    max_text_chars: int = 2_000_000  # code points per text (long texts are windowed, never truncated)
    # tokens per request (all its texts, special tokens of every window included); beyond:
    # INVALID_ARGUMENT (a retry cannot succeed). ~4 characters of English per token.
    max_request_tokens: int = 1_000_000
    # batches the model runs at the same time, each on its own thread. With ONNX Runtime at one
    # intra-op thread (--threads 1), one worker per core keeps every core busy with a whole batch:
    # short texts at moderate concurrency make small batches, which one run split over two threads
    # uses poorly (BENCHMARKS.md).
    model_workers: int = 1

    def for_device(self, device) -> "BatcherConfig":
        """This config with the batch sizes left at None set to the defaults of `device` (a
        pyner.runtime.Device; None: the CPU's)."""
        from dataclasses import replace

        from ..runtime import CPU

        device = device or CPU
        return replace(self, max_batch_tokens=device.max_batch_tokens if self.max_batch_tokens is None else self.max_batch_tokens,
                       max_batch_size=device.batch_size if self.max_batch_size is None else self.max_batch_size)

    def check(self) -> "BatcherConfig":
        for name in ("max_batch_tokens", "max_batch_size", "max_queue", "max_queue_tokens", "max_texts", "max_text_chars",
                     "max_request_tokens", "model_workers"):
            if name in ("max_batch_tokens", "max_batch_size") and getattr(self, name) is None:
                continue  # the device's default, set by for_device
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_delay_ms < 0:
            raise UsageError(f"--max-delay-ms must be >= 0, got {self.max_delay_ms}")
        if not self.max_padding >= 0:
            raise UsageError(f"--max-padding must be >= 0, got {self.max_padding}")
        return self


@dataclass
class ServeConfig:
    artifact: str
    host: str = "127.0.0.1"
    port: int = 50051  # 0: any free port (logged in the "listening" line)
    metrics_port: int = 9464  # 0: any free port; -1: no metrics endpoint
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    model_name: str = "model"  # the name KServe v2 callers use (and ModelInfo.name)
    threads: int | None = None  # ONNX Runtime intra-op threads (default: its choice)
    device: str = "cpu"  # cpu, cuda or cuda:N (docs/gpu.md)
    on_missing_gpu: str = "fail"  # fail: the server does not start without the GPU; fallback: CPU, one warning
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None  # mutual TLS: clients must present a certificate signed by this CA
    max_message_bytes: int = 4 * MiB  # largest request accepted (RESOURCE_EXHAUSTED beyond)
    grace_period: float = 30.0  # seconds admitted requests get to finish after SIGTERM
    cpu_threads: int = 1  # tokenization/decoding threads
    self_check: bool = True  # run the artifact's golden fixtures before becoming ready
    reflection: bool = True  # gRPC server reflection (grpcurl list/describe)
    expect_digest: str | None = None  # sha256:...: refuse any other artifact (ArtifactError)

    def check(self) -> "ServeConfig":
        self.batcher.check()
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise UsageError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.max_message_bytes < 1024:
            raise UsageError(f"--max-message-bytes must be at least 1024, got {self.max_message_bytes}")
        if self.threads is not None and self.threads < 0:
            raise UsageError(f"--threads must be >= 0, got {self.threads}")
        from ..runtime import check_on_missing_gpu, parse_device  # not at import: `pyner --help` stays light

        parse_device(self.device)
        check_on_missing_gpu(self.on_missing_gpu)
        if self.cpu_threads < 1:
            raise UsageError(f"--cpu-threads must be at least 1, got {self.cpu_threads}")
        if not MODEL_NAME.fullmatch(self.model_name or ""):
            raise UsageError(f"--model-name {self.model_name!r}: use 1-128 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
        return self
