"""`pyner loadtest TARGET`: drive a running sidecar with N concurrent callers; report throughput and latency.

TARGET is host:port. Texts come from --input (one per line) or the golden texts every artifact
carries. Each request holds --texts-per-request texts, taken in turn. Every request is counted by
its gRPC status; the report gives requests/s, texts/s and p50/p95/p99 latency of the successful
ones. `measure()` is the same as a function (used by the tests and the benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="host:port of a `pyner serve`")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent callers (default 8)")
    p.add_argument("--requests", type=int, default=1000, help="requests in total (default 1000)")
    p.add_argument("--texts-per-request", type=int, default=1, help="texts in each request (default 1)")
    p.add_argument("-i", "--input", metavar="FILE", help="texts, one per line (default: the golden texts)")
    p.add_argument("--aggregation", default="simple", help="aggregation strategy (default simple)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request deadline in seconds (default 60)")
    p.add_argument("--warmup", type=int, default=None, help="untimed requests first (default: concurrency)")
    p.add_argument("--tls-ca", help="PEM CA to verify the server (TLS)")
    p.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--tls-key", help="PEM key of --tls-cert")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def default_texts() -> list[str]:
    from ..golden import GOLDEN_TEXTS

    return [t for _, t in GOLDEN_TEXTS]


async def measure_async(target: str, texts: Sequence[str], *, concurrency: int = 8, requests: int = 1000,
                        texts_per_request: int = 1, aggregation: str = "simple", timeout: float = 60.0,
                        warmup: int | None = None, tls: dict[str, str | None] | None = None) -> dict[str, Any]:
    import grpc

    from ..client import AsyncClient

    if concurrency < 1 or requests < 1 or texts_per_request < 1:
        raise UsageError("--concurrency, --requests and --texts-per-request must be at least 1")
    if not texts:
        raise InputError("no texts to send")
    texts = list(texts)
    batches = [[texts[(i * texts_per_request + j) % len(texts)] for j in range(texts_per_request)] for i in range(min(requests, len(texts)))]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    async with AsyncClient(target, timeout=timeout, **(tls or {})) as client:
        for i in range(concurrency if warmup is None else warmup):
            try:
                await client.recognize(batches[i % len(batches)], aggregation)
            except grpc.RpcError:
                pass
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                t0 = time.perf_counter()
                try:
                    await client.recognize(batches[i % len(batches)], aggregation)
                    latencies.append(time.perf_counter() - t0)
                    statuses["OK"] = statuses.get("OK", 0) + 1
                except grpc.RpcError as exc:
                    name = exc.code().name
                    statuses[name] = statuses.get(name, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    latencies.sort()
    ok = statuses.get("OK", 0)
    return {
        "target": target, "concurrency": concurrency, "requests": requests, "texts_per_request": texts_per_request,
        "statuses": statuses, "seconds": seconds,
        "requests_per_s": ok / seconds, "texts_per_s": ok * texts_per_request / seconds,
        "latency_ms": {k: 1000 * percentile(latencies, q) for k, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
    }


def measure(target: str, texts: Sequence[str], **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(measure_async(target, texts, **kwargs))


def run(args: argparse.Namespace) -> int:
    if args.input:
        p = Path(args.input)
        if not p.is_file():
            raise InputError(f"input file not found: {p}")
        texts = [line.rstrip("\r\n") for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = default_texts()
    tls = {"tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key}
    report = measure(args.target, texts, concurrency=args.concurrency, requests=args.requests,
                     texts_per_request=args.texts_per_request, aggregation=args.aggregation, timeout=args.timeout,
                     warmup=args.warmup, tls=tls)
    if args.json:
        print(json.dumps(report))
    else:
        lat = report["latency_ms"]
        print(f"target       {report['target']}  concurrency {report['concurrency']}  requests {report['requests']}"
              f"  texts/request {report['texts_per_request']}")
        print("statuses     " + ", ".join(f"{k} {v}" for k, v in sorted(report["statuses"].items())))
        print(f"throughput   {report['requests_per_s']:.1f} requests/s, {report['texts_per_s']:.1f} texts/s in {report['seconds']:.2f}s")
        print(f"latency ms   p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  max {lat['max']:.1f}")
    sys.stdout.flush()
    return 0 if report["statuses"].get("OK", 0) == report["requests"] else 1
