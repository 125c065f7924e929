"""A small typed client for the pyner sidecar (`pyner serve`), service pyner.v1.NerService.

    from pyner.client import Client
    with Client("127.0.0.1:50051") as c:
        c.wait_ready(timeout=60)
        [[e.label, e.start, e.end] for e in c.recognize(["Angela Merkel visited Paris."])[0]]

Errors arrive as `grpc.RpcError` with the server's status code and a message naming the problem:
INVALID_ARGUMENT (bad request), RESOURCE_EXHAUSTED (server overloaded: retry with backoff),
UNAVAILABLE (starting or shutting down), DEADLINE_EXCEEDED. `AsyncClient` is the same on grpc.aio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import grpc

DEFAULT_OPTIONS = (
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 256 << 20),
)


@dataclass(frozen=True)
class Entity:
    """One entity; offsets in code points (`start`, `end`) and UTF-16 units (`start_utf16`, `end_utf16`)."""

    label: str
    score: float
    word: str
    start: int
    end: int
    start_utf16: int
    end_utf16: int
    index: int = -1  # token index inside its window, aggregation "none" only

    def as_pipeline_dict(self) -> dict[str, Any]:
        """The dict transformers' pipeline (and pyner.Model.predict) gives for this entity."""
        if self.index >= 0:
            return {"entity": self.label, "score": self.score, "index": self.index, "word": self.word, "start": self.start, "end": self.end}
        return {"entity_group": self.label, "score": self.score, "word": self.word, "start": self.start, "end": self.end}


def _pb():
    from .serve import protos

    return protos.pyner_v1()


def _channel(api, target, tls_ca, tls_cert, tls_key, options):
    """A channel of `api` (grpc or grpc.aio): TLS when a CA or a client certificate is given."""
    if not (tls_ca or tls_cert):
        return api.insecure_channel(target, options=list(options))

    def read(p):
        return Path(p).read_bytes() if p else None

    creds = grpc.ssl_channel_credentials(root_certificates=read(tls_ca), private_key=read(tls_key), certificate_chain=read(tls_cert))
    return api.secure_channel(target, creds, options=list(options))


def _request(pb, texts, aggregation, ignore_labels, request_id):
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str; wrap one text in a list")
    req = pb.RecognizeRequest(texts=list(texts), aggregation=aggregation or "", request_id=request_id)
    if ignore_labels is not None:
        req.ignore_labels.SetInParent()
        req.ignore_labels.labels.extend(ignore_labels)
    return req


def _entities(response) -> list[list[Entity]]:
    return [[Entity(e.label, e.score, e.word, e.start, e.end, e.start_utf16, e.end_utf16, e.index) for e in r.entities]
            for r in response.results]


def _info(msg) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class Client:
    """Blocking client. `target` is host:port; TLS when `tls_ca` (and mutual TLS with cert and key) is given."""

    def __init__(self, target: str, *, tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 timeout: float | None = 60.0, options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS):
        self.pb, pb_grpc = _pb()
        self.channel = _channel(grpc, target, tls_ca, tls_cert, tls_key, options)
        self.stub = pb_grpc.NerServiceStub(self.channel)
        self.timeout = timeout

    def recognize_response(self, texts: Sequence[str], aggregation: str = "simple", *, ignore_labels: Sequence[str] | None = None,
                           timeout: float | None = None, request_id: str = ""):
        """The raw pyner.v1.RecognizeResponse (num_tokens, num_windows, model digest, ...)."""
        return self.stub.Recognize(_request(self.pb, texts, aggregation, ignore_labels, request_id), timeout=timeout or self.timeout)

    def recognize(self, texts: Sequence[str], aggregation: str = "simple", *, ignore_labels: Sequence[str] | None = None,
                  timeout: float | None = None, request_id: str = "") -> list[list[Entity]]:
        """Entities per text, in order."""
        return _entities(self.recognize_response(texts, aggregation, ignore_labels=ignore_labels, timeout=timeout, request_id=request_id))

    def model_info(self, timeout: float | None = None) -> dict[str, Any]:
        return _info(self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=timeout or self.timeout))

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """The grpc.health.v1 status name: SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        resp = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll the health service until SERVING; TimeoutError naming the last status otherwise."""
        end = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < end:
            try:
                last = self.health(timeout=min(5.0, max(0.1, end - time.monotonic())))
                if last == "SERVING":
                    return
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(0.1)
        raise TimeoutError(f"the server was not ready within {timeout:.0f}s (last health status: {last})")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """The same on grpc.aio (for many concurrent requests from one thread, e.g. `pyner loadtest`)."""

    def __init__(self, target: str, *, tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 timeout: float | None = 60.0, options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS):
        self.pb, pb_grpc = _pb()
        self.channel = _channel(grpc.aio, target, tls_ca, tls_cert, tls_key, options)
        self.stub = pb_grpc.NerServiceStub(self.channel)
        self.timeout = timeout

    async def recognize(self, texts: Sequence[str], aggregation: str = "simple", *, ignore_labels: Sequence[str] | None = None,
                        timeout: float | None = None, request_id: str = "") -> list[list[Entity]]:
        req = _request(self.pb, texts, aggregation, ignore_labels, request_id)
        return _entities(await self.stub.Recognize(req, timeout=timeout or self.timeout))

    async def model_info(self, timeout: float | None = None) -> dict[str, Any]:
        return _info(await self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=timeout or self.timeout))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
