"""The sidecar process: a grpc.aio server with pyner.v1, KServe v2, health and reflection; a metrics endpoint.

Lifecycle:
  1. bind (127.0.0.1 unless told otherwise; TLS / mutual TLS when given files, checked first so that
     a bad file is named), start the metrics endpoint; health answers NOT_SERVING;
  2. load the artifact (checksums), run its golden self-check, start the batcher; health SERVING;
  3. on SIGTERM/SIGINT: health NOT_SERVING, new requests get UNAVAILABLE, admitted requests finish
     within the grace period, then the process exits 0 without gRPC's own stop(): that stop cancels
     the calls it has received but not yet handed to a handler (CANCELLED, which clients do not
     retry); a closed connection is UNAVAILABLE, which they do.
Logs are one JSON object per line on stderr.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

import grpc

from .. import __version__
from ..artifact import artifact_digest
from ..errors import ArtifactError, Unavailable, UsageError
from .batcher import Batcher
from .config import MiB, BatcherConfig, ServeConfig
from .metrics import Metrics, MetricsServer

log = logging.getLogger("pyner.serve")

__all__ = ["Server", "ServerThread", "ServeConfig", "BatcherConfig", "serve"]

# Answers can be larger than requests (a 1 MB text with aggregation "none"): a fixed generous cap.
MAX_SEND_MESSAGE_BYTES = 256 * MiB
# After the queue is empty, refuse new requests with UNAVAILABLE this long before closing the port.
DRAIN_LINGER_SECONDS = 0.5


class State:
    """What the handlers see: readiness, the batcher, the model's description, the metrics."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.batcher: Batcher | None = None
        self.info: dict[str, Any] | None = None
        self.ready = False
        self.draining = False

    def require_ready(self) -> Batcher:
        if self.draining:
            raise Unavailable("the server is shutting down and takes no new requests; retry on another replica")
        if not self.ready or self.batcher is None:
            raise Unavailable("the model is still loading (health: NOT_SERVING); retry shortly")
        return self.batcher


def model_info(model, config: ServeConfig) -> dict[str, Any]:
    """The fields of pyner.v1.ModelInfo, from the artifact's manifest and the server's limits."""
    from ..decode import AGGREGATIONS

    raw = model.manifest.raw
    manifest_bytes = Path(model.manifest.path).read_bytes() if Path(model.manifest.path).is_file() else json.dumps(raw).encode()
    return {
        "name": config.model_name,
        "artifact_digest": model.manifest.digest or artifact_digest(manifest_bytes),  # the digest load() checked
        "source_digest": str(raw.get("source", {}).get("digest", "")),
        "labels": list(model.labels),
        "label_scheme": str(raw.get("label_scheme", "")),
        "model_type": str(raw.get("model_type", "")),
        "precision": str(model.precision),
        "max_length": int(model.max_length),
        "stride": int(model.stride),
        "format_version": int(raw.get("format_version", 0)),
        "pyner_version": __version__,
        "onnxruntime_version": _ort_version(),
        "aggregations": list(AGGREGATIONS),
        "max_texts_per_request": config.batcher.max_texts,
        "max_text_chars": config.batcher.max_text_chars,
        "device": str(getattr(model, "device", "cpu")),  # where it runs (the CPU after a fallback)
    }


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} file not found: {p}")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot be read ({exc.strerror})") from None


def _reason(exc: ssl.SSLError) -> str:
    return (exc.reason or str(exc)).replace("_", " ").lower()


def tls_files(cert: str, key: str, client_ca: str | None) -> tuple[bytes, bytes, bytes | None]:
    """Read and check the TLS files before gRPC sees them (its own error says only that it cannot
    listen): each is PEM of the right kind and parses, and the key belongs to the certificate."""
    cert_pem, key_pem, ca_pem = _read(cert, "--tls-cert"), _read(key, "--tls-key"), _read(client_ca, "--tls-client-ca")
    for flag, path, pem, kinds in (("--tls-cert", cert, cert_pem, ("CERTIFICATE",)),
                                   ("--tls-key", key, key_pem, ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")),
                                   ("--tls-client-ca", client_ca, ca_pem, ("CERTIFICATE",))):
        if pem is None:
            continue
        if not any(f"-----BEGIN {k}-----".encode() in pem for k in kinds):
            raise UsageError(f"{flag} {path}: not a PEM {kinds[0].lower()} (no '-----BEGIN {kinds[0]}-----' block)")
        if kinds[0] == "CERTIFICATE":
            try:
                ssl.create_default_context(cadata=pem.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError) as exc:
                raise UsageError(f"{flag} {path}: the certificate cannot be parsed ({exc})") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise UsageError(f"--tls-key {key} is not the private key of --tls-cert {cert}") from None
        raise UsageError(f"--tls-key {key}: the private key cannot be loaded ({_reason(exc)}; an encrypted key is not "
                         "supported)") from None
    return cert_pem, key_pem, ca_pem


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class Server:
    """One sidecar. `await start()`, `await load()`, later `await shutdown()`; or `run_forever`."""

    def __init__(self, config: ServeConfig, *, model=None):
        self.config = config.check()
        self.metrics = Metrics()
        self.state = State(self.metrics)
        self._model = model
        self._grpc: grpc.aio.Server | None = None
        self._health = None
        self._metrics_server: MetricsServer | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None

    # -- start ----------------------------------------------------------------------------------

    async def start(self) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        from . import grpc_kserve, grpc_ner

        cfg = self.config
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a second server on the same port fails instead of sharing it
        ])
        names = [grpc_ner.add_to_server(self.state, server), grpc_kserve.add_to_server(self.state, server)]
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self._health_names = ["", *names]
        for n in self._health_names:
            await self._health.set(n, health_pb2.HealthCheckResponse.NOT_SERVING)
        if cfg.reflection:
            reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

        address = _address(cfg.host, cfg.port)
        creds = None
        if cfg.tls_cert:
            cert, key, ca = tls_files(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
        try:
            if creds is not None:
                port = server.add_secure_port(address, creds)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise UsageError(f"cannot listen on {address} ({exc}); is the port in use?") from exc
        if not port:
            raise UsageError(f"cannot listen on {address}; is the port in use?")
        self.port = port
        self._grpc = server
        await server.start()

        if cfg.metrics_port >= 0:
            self._metrics_server = MetricsServer(self.metrics)
            try:
                self.metrics_port = await self._metrics_server.start(cfg.host, cfg.metrics_port)
            except OSError as exc:
                await server.stop(None)
                raise UsageError(f"cannot serve metrics on {_address(cfg.host, cfg.metrics_port)} ({exc.strerror or exc})") from exc
        log.info("listening", extra={"fields": {
            "event": "listening", "host": cfg.host, "port": self.port, "metrics_port": self.metrics_port,
            "tls": bool(cfg.tls_cert), "mutual_tls": bool(cfg.tls_client_ca)}})

    async def load(self) -> None:
        """Load and self-check the model off the event loop, then become ready (health SERVING)."""
        from grpc_health.v1 import health_pb2

        cfg = self.config
        loop = asyncio.get_running_loop()
        model = self._model
        if model is None:
            from ..runtime import load

            model = await loop.run_in_executor(None, lambda: load(cfg.artifact, device=cfg.device, on_missing_gpu=cfg.on_missing_gpu,
                                                                  threads=cfg.threads, expect_digest=cfg.expect_digest))
        if cfg.self_check:
            from ..check import self_check

            await loop.run_in_executor(None, self_check, model)
        self._model = model
        info = model_info(model, cfg)
        self.state.info = info
        self.metrics.model_info.labels(
            name=info["name"], artifact_digest=info["artifact_digest"], precision=info["precision"],
            max_length=str(info["max_length"]), labels=str(len(info["labels"])), pyner_version=__version__,
            device=info["device"]).set(1)
        batching = cfg.batcher.for_device(getattr(model, "device", None))  # batch sizes left unset: the device's
        batcher = Batcher(model, batching, self.metrics, cpu_threads=cfg.cpu_threads)
        batcher.start()
        self.state.batcher = batcher
        if self.state.draining:
            return
        self.state.ready = True
        self.metrics.ready.set(1)
        for n in self._health_names:
            await self._health.set(n, health_pb2.HealthCheckResponse.SERVING)
        log.info("ready", extra={"fields": {"event": "ready", "port": self.port, "metrics_port": self.metrics_port,
                                            "model": info["name"], "artifact_digest": info["artifact_digest"],
                                            "precision": info["precision"], "self_check": cfg.self_check,
                                            "device": info["device"], "requested_device": cfg.device,
                                            "fallback_reason": getattr(model, "fallback_reason", None),
                                            "max_batch_tokens": batching.max_batch_tokens,
                                            "max_batch_size": batching.max_batch_size}})

    # -- stop -----------------------------------------------------------------------------------

    async def shutdown(self, grace: float | None = None, *, stop_grpc: bool = True) -> dict[str, Any]:
        """Drain: NOT_SERVING, refuse new requests, let admitted ones finish, stop. Returns counts.

        stop_grpc=False leaves the port open (still refusing with UNAVAILABLE) for a process that
        exits next: see the module's docstring."""
        grace = self.config.grace_period if grace is None else grace
        self.state.draining = True
        self.state.ready = False
        self.metrics.ready.set(0)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        batcher = self.state.batcher
        inflight = batcher.inflight if batcher else 0
        log.info("draining", extra={"fields": {"event": "draining", "inflight": inflight, "grace_period": grace}})
        t0 = asyncio.get_running_loop().time()
        finished = await batcher.drain(grace) if batcher else True
        unfinished = 0 if finished else batcher.inflight
        # Keep refusing with UNAVAILABLE a little longer before closing the port: callers racing
        # the shutdown then get a clear refusal instead of a stream cancelled by the closing server.
        linger = min(DRAIN_LINGER_SECONDS, max(0.0, grace - (asyncio.get_running_loop().time() - t0)))
        if linger > 0 and self.state.info is not None:
            await asyncio.sleep(linger)
        if batcher:
            await batcher.close()
        if self._metrics_server is not None:
            await self._metrics_server.close()
        if self._grpc is not None and stop_grpc:
            await self._grpc.stop(1.0)
        counts = {"event": "stopped", "unfinished": unfinished, "requests": self._request_counts()}
        log.info("stopped", extra={"fields": counts})
        return counts

    def _request_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for metric in self.metrics.requests.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    key = f"{s.labels['api']}:{s.labels['status']}"
                    out[key] = out.get(key, 0) + int(s.value)
        return out


# -- running it -------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        d.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            d["exception"] = self.formatException(record.exc_info)
        return json.dumps(d, ensure_ascii=False, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("pyner")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


async def serve_until_signal(config: ServeConfig) -> int:
    """Run one server until SIGTERM/SIGINT, drain, and end the process: exit code 0 on a clean stop
    (1 if some requests could not finish in the grace period). Raises on a failed start."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second signal: stop waiting for the drain
            log.warning("second signal: exiting without finishing the drain", extra={"fields": {"event": "forced", "signal": sig.name}})
            os._exit(128 + sig.value)
        log.info("signal: draining", extra={"fields": {"event": "signal", "signal": sig.name}})
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    server = Server(config)
    await server.start()
    loading = asyncio.create_task(server.load())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done() and loading.exception() is not None:
            await server.shutdown(0)
            raise loading.exception()
        await stopping
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    counts = await server.shutdown(stop_grpc=False)
    code = 0 if counts["unfinished"] == 0 else 1
    # Exit here, with the port still refusing: the kernel closes every connection at once, and a
    # caller racing the shutdown sees UNAVAILABLE (gRPC's stop() would answer it CANCELLED).
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def serve(config: ServeConfig, *, log_level: str = "info") -> int:
    configure_logging(log_level)
    try:
        return asyncio.run(serve_until_signal(config))
    except ArtifactError as exc:
        log.error("artifact refused", extra={"fields": {"event": "failed", "error": exc.message}})
        raise


class ServerThread:
    """A server on its own event loop in a background thread (tests, benchmarks, notebooks).

    Its stop() uses gRPC's stop(): a call racing it may get CANCELLED (the process entry point,
    serve_until_signal, exits instead; see the module's docstring).

        with ServerThread(ServeConfig(artifact, port=0, metrics_port=0)) as srv:
            client = pyner.client.Client(f"127.0.0.1:{srv.port}")
    """

    def __init__(self, config: ServeConfig, *, model=None):
        self.server = Server(config, model=model)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pyner-serve", daemon=True)
        self.stopped: dict[str, Any] | None = None
        self._stopping = None

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = 300, *, load: bool = True) -> "ServerThread":
        self._thread.start()
        try:
            self._call(self.server.start(), timeout)
            if load:
                self.load(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def load(self, timeout: float = 300) -> None:
        self._call(self.server.load(), timeout)

    @property
    def port(self) -> int:
        return self.server.port  # type: ignore[return-value]

    @property
    def metrics_port(self) -> int | None:
        return self.server.metrics_port

    @property
    def metrics(self) -> Metrics:
        return self.server.metrics

    def stop_async(self, grace: float = 5.0):
        """Begin the drain (as SIGTERM would); returns a concurrent.futures.Future of the final counts."""
        if self._stopping is None:
            self._stopping = asyncio.run_coroutine_threadsafe(self.server.shutdown(grace), self._loop)
        return self._stopping

    def stop(self, grace: float = 5.0) -> dict[str, Any] | None:
        if self._thread.is_alive():
            try:
                self.stopped = self.stop_async(grace).result(grace + 30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
                self._loop.close()
        return self.stopped

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
