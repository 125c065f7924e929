"""What every scenario shares: the run context, the results recorder, timing, machine facts.

Results are written after every measurement (JSON, CSV), so an interrupted or failing run still
leaves everything measured so far. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = Path(os.environ.get("PYNER_DATA_DIR", REPO.parent / "shared" / "data"))  # ../shared beside the checkout


class Skip(Exception):
    """A part of a scenario cannot run here; the message says why (and what to install)."""


class MissingBaseline(Skip):
    """A baseline's dependency is missing: the run still writes partial results, then exits 6."""

    def __init__(self, message: str, install: str):
        super().__init__(f"{message}; install it with: {install}")
        self.install = install


def require_baseline(module: str, purpose: str, install: str = "pip install 'pyner[export]'"):
    """Import a baseline dependency (torch, transformers) or raise MissingBaseline naming the install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingBaseline(f"{purpose} needs the Python package '{module}' ({exc})", install) from exc


# ---------------------------------------------------------------- timing


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def timeit(fn: Callable[[], Any], *, min_time: float, min_reps: int, warmup: int = 1, max_reps: int = 1000,
           clock: str = "wall") -> dict:
    """Run `fn` `warmup` times, then until both `min_reps` runs and `min_time` seconds are done.

    Returns the median, minimum and all durations (seconds). The median is what throughputs use:
    on a shared machine it is robust to a neighbour's burst. `clock="cpu"` measures this process's
    CPU time instead of wall time: with one thread per engine it is what the run would take on an
    otherwise idle core, whatever the neighbours do (used with --threads 1 on a shared machine).
    """
    now = CLOCK[clock]
    for _ in range(warmup):
        fn()
    times: list[float] = []
    load0 = os.getloadavg()[0]
    total = 0.0
    while len(times) < max_reps and (len(times) < min_reps or total < min_time):
        t0 = now()
        fn()
        dt = now() - t0
        times.append(dt)
        total += dt
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": len(times),
            "times_s": [round(t, 6) for t in times], "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2)}


# ---------------------------------------------------------------- machine


def machine_info() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpu_count": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        flags = set(fields.get("Flags", "").split())
        info["cpu"] = {
            "model": fields.get("Model name"),
            "vendor": fields.get("Vendor ID"),
            "cores": fields.get("CPU(s)"),
            "threads_per_core": fields.get("Thread(s) per core"),
            "l2": fields.get("L2 cache"), "l3": fields.get("L3 cache"),
            "hypervisor": fields.get("Hypervisor vendor"),
            "isa": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
                    if f in flags],
        }
    except (OSError, subprocess.SubprocessError, ValueError):
        info["cpu"] = {"model": platform.processor()}
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info["versions"] = versions()
    info["gpu"] = gpu_info()
    return info


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for dist in ("numpy", "onnxruntime", "onnxruntime-gpu", "tokenizers", "torch", "transformers", "onnx", "openvino"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def gpu_info() -> dict | None:
    """The CUDA device if ONNX Runtime and PyTorch can both use one, else None (never imports torch)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    name, _, mem = out.stdout.strip().splitlines()[0].partition(",")
    return {"name": name.strip(), "memory": mem.strip()}


# ---------------------------------------------------------------- results

ROW_ORDER = ["scenario", "group", "config", "precision", "engine", "batch_size", "threads", "seq_len", "items",
             "unit", "seconds", "throughput", "baseline", "ratio", "gflop_per_item", "gflops", "fraction_of_peak",
             "rss_mib", "peak_rss_mib", "note"]


class Results:
    """The run's results: `results.json` (everything), `results.csv` (one row per measurement)."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {"meta": meta, "scenarios": {}}
        self.flush()

    def scenario(self, name: str) -> dict:
        return self.data["scenarios"].setdefault(
            name, {"status": "running", "rows": [], "checks": [], "skipped": [], "notes": [], "facts": {}})

    def row(self, scenario: str, **row) -> dict:
        row = {"scenario": scenario, **{k: v for k, v in row.items() if v is not None}}
        self.scenario(scenario)["rows"].append(row)
        self.flush()
        return row

    def check(self, scenario: str, *, config: str, reference: str, metric: str, value, threshold, passed: bool,
              **extra) -> dict:
        item = {"config": config, "reference": reference, "metric": metric, "value": value,
                "threshold": threshold, "passed": bool(passed), **extra}
        self.scenario(scenario)["checks"].append(item)
        flag = "ok" if passed else "FAILED"
        print(f"  check [{flag}] {config} vs {reference}: {metric} = {_fmt(value)} (threshold {threshold})", flush=True)
        self.flush()
        return item

    def skip(self, scenario: str, what: str, why: str, *, missing_dependency: bool = False) -> None:
        self.scenario(scenario)["skipped"].append({"what": what, "why": why, "missing_dependency": missing_dependency})
        print(f"  skipped: {what}: {why}", flush=True)
        self.flush()

    def note(self, scenario: str, text: str) -> None:
        self.scenario(scenario)["notes"].append(text)
        print(f"  note: {text}", flush=True)
        self.flush()

    def fact(self, scenario: str, key: str, value) -> None:
        self.scenario(scenario)["facts"][key] = value
        self.flush()

    def rows(self, scenario: str | None = None) -> list[dict]:
        out = []
        for name, sc in self.data["scenarios"].items():
            if scenario is None or name == scenario:
                out.extend(sc["rows"])
        return out

    def flush(self) -> None:
        _atomic_write(self.out / "results.json", json.dumps(self.data, indent=1, default=_jsonable) + "\n")
        rows = self.rows()
        keys = [k for k in ROW_ORDER if any(k in r for r in rows)]
        keys += sorted({k for r in rows for k in r} - set(keys))
        tmp = self.out / ".results.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()})
        os.replace(tmp, self.out / "results.csv")


def _jsonable(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------- context


@dataclass
class Context:
    """What a scenario gets: the options, the recorder, the model catalogue, the scratch folder."""

    results: Results
    quick: bool
    threads: int
    model: str | None            # None: each scenario's own default
    cache: Path                  # built checkpoints and artifacts, reused across runs
    out: Path
    seconds: float               # minimum measuring time per point
    options: dict = field(default_factory=dict)
    clock: str = "wall"          # "cpu": process CPU time (meaningful with --threads 1)

    def min_reps(self) -> int:
        return 1 if self.quick else 3

    def log(self, text: str) -> None:
        print(text, flush=True)

    def python(self) -> str:
        return sys.executable
