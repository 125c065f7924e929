"""Head-of-line blocking in the sidecar: latency of one-sentence requests while one large text is processed.

    .venv/bin/python bench/hol.py [ARTIFACT] [--kb 300] [--callers 4] [--threads N] [--json]

Starts `pyner serve` in this process (ServerThread, 127.0.0.1, an ephemeral port, no self-check)
on ARTIFACT (default artifacts/demo), sends one text of --kb kilobytes (WikiGold articles joined,
else the golden texts repeated), and while it is in the server, --callers clients each send
one-sentence requests (WikiGold sentences) back to back. Reported: the large request's time, and
p50/p95/p99/max latency of the one-sentence requests that were sent and answered while the large
one was in the server. The target of issue 12 item 7: p99 < 2 s for the 300 KB text on the demo model.
Every request must succeed; any other status is reported and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def texts(kb: int) -> tuple[str, list[str], str]:
    """(large text, sentences, where they came from)."""
    try:
        from bench.data import documents, sentences

        docs, _ = documents()
        short = sentences(2000)
        source = "WikiGold"
    except Exception:  # no corpus here: the golden texts every artifact carries
        from pyner.golden import GOLDEN_TEXTS

        docs = short = [t for _, t in GOLDEN_TEXTS]
        source = "golden texts"
    big, i = [], 0
    while sum(len(d) + 2 for d in big) < kb * 1000:
        big.append(docs[i % len(docs)])
        i += 1
    return "\n\n".join(big)[: kb * 1000], [s for s in short if s.strip()], source


def percentile(values: list[float], q: float) -> float:
    from pyner.cli.loadtest import percentile as p

    return p(sorted(values), q)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("artifact", nargs="?", default=str(REPO / "artifacts" / "demo"))
    ap.add_argument("--kb", type=int, default=300, help="size of the large text in kilobytes (default 300)")
    ap.add_argument("--callers", type=int, default=4, help="concurrent one-sentence callers (default 4)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its choice)")
    ap.add_argument("--max-batch-tokens", type=int, default=None, help="the server's --max-batch-tokens (default: its default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import grpc

    from pyner.client import Client
    from pyner.serve.config import BatcherConfig, ServeConfig
    from pyner.serve.server import ServerThread

    big, short, source = texts(args.kb)
    batcher = BatcherConfig() if args.max_batch_tokens is None else BatcherConfig(max_batch_tokens=args.max_batch_tokens)
    cfg = ServeConfig(args.artifact, port=0, metrics_port=-1, self_check=False, threads=args.threads, batcher=batcher)
    with ServerThread(cfg) as srv:
        target = f"127.0.0.1:{srv.port}"
        with Client(target, timeout=120) as c:  # warm-up
            c.recognize(short[:8])
        big_done = threading.Event()
        big_started = threading.Event()
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        lock = threading.Lock()
        result: dict = {}

        def large() -> None:
            with Client(target, timeout=600) as c:
                t0 = time.perf_counter()
                big_started.set()
                resp = c.recognize_response([big])
                result["seconds"] = time.perf_counter() - t0
                result["windows"] = resp.results[0].num_windows
                result["tokens"] = resp.results[0].num_tokens
            big_done.set()

        def caller(k: int) -> None:
            big_started.wait()
            with Client(target, timeout=30) as c:
                i = k
                while not big_done.is_set():
                    t0 = time.perf_counter()
                    try:
                        c.recognize([short[i % len(short)]])
                        code = "OK"
                    except grpc.RpcError as exc:
                        code = exc.code().name
                    seconds = time.perf_counter() - t0
                    with lock:
                        statuses[code] = statuses.get(code, 0) + 1
                        if code == "OK" and not big_done.is_set():  # answered while the large text was in the server
                            latencies.append(seconds)
                    i += args.callers

        threads = [threading.Thread(target=large)] + [threading.Thread(target=caller, args=(k,)) for k in range(args.callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        runs = srv.metrics.registry.get_sample_value("pyner_model_runs_total")
    report = {
        "artifact": args.artifact, "large_text_chars": len(big), "source": source, "callers": args.callers,
        "threads": args.threads, "max_batch_tokens": cfg.batcher.max_batch_tokens,
        "large_seconds": round(result["seconds"], 2), "large_windows": result["windows"], "large_tokens": result["tokens"],
        "small_requests": len(latencies), "statuses": statuses, "model_runs": runs,
        "small_latency_ms": {k: round(1000 * percentile(latencies, q), 1) for k, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
    }
    if args.json:
        print(json.dumps(report))
    else:
        lat = report["small_latency_ms"]
        print(f"large text   {len(big):,} chars ({source}), {result['windows']} windows, {result['tokens']:,} tokens, "
              f"answered in {result['seconds']:.1f} s")
        print(f"one-sentence {len(latencies)} requests from {args.callers} callers while it ran; statuses {statuses}")
        print(f"latency ms   p50 {lat['p50']:.0f}  p95 {lat['p95']:.0f}  p99 {lat['p99']:.0f}  max {lat['max']:.0f}")
    return 0 if set(statuses) <= {"OK"} and latencies else 1


if __name__ == "__main__":
    sys.exit(main())
