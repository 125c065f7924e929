"""What every RPC handler shares: the one mapping from pyner errors to gRPC status codes, deadlines,
per-request metrics and logs. The transports (grpc_ner.py, grpc_kserve.py) stay pure conversion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import grpc

from ..errors import PynerError

log = logging.getLogger("pyner.serve")


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for `exc` (ARCHITECTURE.md, "Errors and exit codes")."""
    if isinstance(exc, PynerError):
        code = getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.INTERNAL)
        return code, exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}: {exc}); the server is still up"


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline on time.monotonic()'s clock, or None without one."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


async def handle(api: str, method: str, metrics, context: grpc.aio.ServicerContext,
                 body: Callable[[], Awaitable[Any]], request_id: str = "") -> Any:
    """Run one RPC body: map errors once, count and time the request, log failures (JSON fields)."""
    t0 = time.perf_counter()
    status = "OK"
    try:
        return await body()
    except asyncio.CancelledError:  # the caller went away, or its deadline passed
        remaining = context.time_remaining()
        status = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        raise
    except Exception as exc:  # every error leaves as a clear status; the server never crashes on a request
        if isinstance(exc, grpc.aio.AbortError):
            raise
        code, message = grpc_status(exc)
        status = code.name
        fields = {"api": api, "method": method, "status": status, "message": message, "request_id": request_id}
        if code is grpc.StatusCode.INTERNAL:
            log.error("request failed", exc_info=exc, extra={"fields": fields})
        else:  # expected refusals: counted in metrics; logged only at debug level (no log floods under overload)
            log.debug("request refused", extra={"fields": fields})
        await context.abort(code, message)
    finally:
        if metrics is not None:
            metrics.requests.labels(api=api, status=status).inc()
            if method in ("Recognize", "ModelInfer"):
                metrics.request_time.labels(api=api).observe(time.perf_counter() - t0)
