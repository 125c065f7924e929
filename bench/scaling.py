"""Scenario `scaling`: throughput against threads, and memory against batch size.

Threads: PyTorch fp32, ONNX Runtime fp32 (optimized artifact) and int8 at one batch of 256-token
documents, with 1 and 2 threads (and all cores when there are more); the ratio is to the same
configuration on 1 thread. Memory: each (configuration, batch size) runs in a fresh process that
loads the model and runs one batch; it reports the resident set after loading and the peak
(ru_maxrss), so one point's memory never leaks into the next.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

from . import engines
from .common import BENCH_DIR, Context, MissingBaseline, Skip
from .models import resolve
from .worstcase import make_runner, seq_len_for, timeit_point

NAME = "scaling"
CONFIGS = (
    ("pytorch-fp32", "pytorch", "fp32", "cpu", "checkpoint"),
    ("ort-fp32-optimized", "onnxruntime", "fp32", "cpu", "fp32"),
    ("ort-int8", "onnxruntime", "int8", "cpu", "int8"),
)


def run(ctx: Context) -> None:
    res = ctx.results
    model = resolve(ctx.model, ctx.cache / "models", default="bert-base")
    batch = 4 if ctx.quick else 8
    threads = sorted({1, 2, os.cpu_count() or 1} if not ctx.quick else {1, 2})
    mem_batches = tuple(ctx.options.get("batch_sizes") or ((1, 8) if ctx.quick else (1, 8, 32, 128)))
    seq_len = seq_len_for(model)
    data = engines.random_batch(batch, seq_len, vocab=model.dims["vocab"] or 30522)
    flops = model.flops_per_sequence(seq_len)
    ctx.log(f"[{NAME}] threads {threads} at batch {batch} x {seq_len} tokens; memory at batches {list(mem_batches)}")
    missing = None
    for name, engine, precision, device, source in CONFIGS:
        one = None
        for n in threads:
            try:
                runner = make_runner(model, engine, precision, device, source, n)
            except MissingBaseline as exc:
                res.skip(NAME, f"{name} threads", str(exc), missing_dependency=True)
                missing = missing or exc
                break
            except Skip as exc:
                res.skip(NAME, f"{name} threads", str(exc))
                break
            prepared = runner.prepare(data)
            t = timeit_point(ctx, lambda: runner.run(prepared))
            tp = batch / t["median_s"]
            one = one or tp
            res.row(NAME, group="threads", config=name, engine=engine, precision=precision, batch_size=batch,
                    threads=n, seq_len=seq_len, unit="docs/s", seconds=t["median_s"], throughput=tp,
                    baseline=f"{name} @1 thread", ratio=tp / one, gflops=tp * flops / 1e9, reps=t["reps"])
            ctx.log(f"    {name:20s} {n} thread(s): {tp:7.2f} docs/s ({tp / one:.2f}x 1 thread)")
            del runner, prepared
            gc.collect()
    for name, engine, precision, device, source in CONFIGS:
        for bs in mem_batches:
            try:
                point = _memory(ctx, name, bs, seq_len)
            except Skip as exc:
                res.skip(NAME, f"{name} memory at batch {bs}", str(exc))
                break
            res.row(NAME, group="memory", config=name, engine=engine, precision=precision, batch_size=bs,
                    threads=ctx.threads, seq_len=seq_len, unit="MiB", rss_mib=point["rss_loaded_mib"],
                    peak_rss_mib=point["peak_rss_mib"], baseline_rss_mib=point["rss_start_mib"])
            ctx.log(f"    {name:20s} batch {bs:3d}: loaded {point['rss_loaded_mib']:7.0f} MiB, "
                    f"peak {point['peak_rss_mib']:7.0f} MiB")
    if missing:
        raise missing


def _memory(ctx: Context, name: str, batch: int, seq_len: int) -> dict:
    spec = {"model": ctx.model or "bert-base", "cache": str(ctx.cache / "models"), "config": name,
            "batch": batch, "seq_len": seq_len, "threads": ctx.threads}
    from .models import _export_source_digest

    env = dict(os.environ, PYNER_BENCH_EXPORT_DIGEST=_export_source_digest())
    proc = subprocess.run([sys.executable, str(BENCH_DIR / "mem_worker.py"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=1800, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise Skip(f"memory worker failed (exit {proc.returncode}): {' | '.join(tail)}")
    out = json.loads(lines[-1])
    if "skip" in out:
        raise Skip(out["skip"])
    return out
