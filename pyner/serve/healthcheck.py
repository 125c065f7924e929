"""`python -m pyner.serve.healthcheck [HOST:PORT]`: exit 0 when the sidecar's gRPC health service says SERVING.

Used by the Docker HEALTHCHECK and by exec probes where Kubernetes' native gRPC probes cannot go
(they speak plaintext only: deploy/k8s/tls/). It reads the server's own settings, so that the same
environment serves and checks:

- PYNER_PORT: the target is 127.0.0.1:$PYNER_PORT (50051) unless HOST:PORT is given;
- PYNER_TLS_CERT set: TLS. The server is verified against PYNER_HEALTHCHECK_TLS_CA if set, else
  PYNER_TLS_CLIENT_CA (an internal CA often signs both sides), else PYNER_TLS_CERT itself (a
  self-signed certificate, or one whose file holds the chain up to its CA). The name checked is
  PYNER_HEALTHCHECK_SERVER_NAME if set, else the first DNS name in the certificate;
- PYNER_TLS_CLIENT_CA set (mutual TLS): the check presents PYNER_HEALTHCHECK_TLS_CERT/KEY if set,
  else the server's own certificate and key (PYNER_TLS_CERT/KEY: signed by the client CA).

Imports grpcio and grpc_health only: fast, and no model or generated code.
"""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"healthcheck: {what} {path}: {exc.strerror}") from None


def server_name(cert_path: str) -> str | None:
    """The first DNS subjectAltName of a PEM certificate (else its common name), or None."""
    try:
        decoded = ssl._ssl._test_decode_cert(cert_path)  # the standard library's own parser
    except Exception:
        return None
    for kind, value in decoded.get("subjectAltName", ()):
        if kind == "DNS":
            return value
    for rdn in decoded.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def tls_settings() -> dict | None:
    """What the check needs for TLS, from the PYNER_* environment; None for plaintext."""
    cert, key = _env("PYNER_TLS_CERT"), _env("PYNER_TLS_KEY")
    if cert is None:
        return None
    client_ca = _env("PYNER_TLS_CLIENT_CA")
    root = _env("PYNER_HEALTHCHECK_TLS_CA") or client_ca or cert
    out = {"root": _read(root, "CA"), "name": _env("PYNER_HEALTHCHECK_SERVER_NAME") or server_name(cert),
           "cert": None, "key": None}
    if client_ca is not None:
        own_cert, own_key = _env("PYNER_HEALTHCHECK_TLS_CERT") or cert, _env("PYNER_HEALTHCHECK_TLS_KEY") or key
        if own_key is None:
            raise SystemExit("healthcheck: mutual TLS needs PYNER_TLS_KEY or PYNER_HEALTHCHECK_TLS_KEY")
        out["cert"], out["key"] = _read(own_cert, "client certificate"), _read(own_key, "client key")
    return out


def check(target: str, service: str = "", timeout: float = 3.0, tls: dict | None = None) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls is None:
        channel = grpc.insecure_channel(target)
    else:
        creds = grpc.ssl_channel_credentials(root_certificates=tls["root"], private_key=tls["key"], certificate_chain=tls["cert"])
        options = [("grpc.ssl_target_name_override", tls["name"])] if tls["name"] else []
        channel = grpc.secure_channel(target, creds, options=options)
    with channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = argv[0] if argv else f"127.0.0.1:{os.environ.get('PYNER_PORT', '50051')}"
    tls = tls_settings()
    status = check(target, tls=tls)
    print(f"{target}{' (TLS)' if tls else ''}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
