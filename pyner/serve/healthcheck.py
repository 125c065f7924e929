"""`python -m pyner.serve.healthcheck [HOST:PORT]`: exit 0 when the sidecar's gRPC health service says SERVING.

Used by the Docker HEALTHCHECK (Kubernetes uses its native gRPC probes instead). The target
defaults to 127.0.0.1:$PYNER_PORT (50051). Plaintext only, like Kubernetes' gRPC probes.
Imports grpcio and grpc_health only: fast, and no model or generated code.
"""

from __future__ import annotations

import os
import sys


def check(target: str, service: str = "", timeout: float = 3.0) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = argv[0] if argv else f"127.0.0.1:{os.environ.get('PYNER_PORT', '50051')}"
    status = check(target)
    print(f"{target}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
