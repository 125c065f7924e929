"""The benchmark driver behind `pyner bench`: validate options, run scenarios, write everything.

Every scenario runs even if an earlier one failed; results are flushed after each measurement,
then the plots and `summary.md` are made from whatever was measured.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import sys
import traceback
from pathlib import Path

from . import SCENARIOS
from .common import BENCH_DIR, Context, MissingBaseline, Results, Skip, machine_info
from .models import NAMED, describe_models


class BenchUsage(ValueError):
    """Bad options: the CLI turns this into pyner's UsageError."""


def default_cache() -> Path:
    if os.environ.get("PYNER_BENCH_CACHE"):
        return Path(os.environ["PYNER_BENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pyner" / "bench"


def validate(scenarios: list[str] | None, model: str | None) -> list[str]:
    chosen = list(dict.fromkeys(scenarios or SCENARIOS))
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise BenchUsage(f"unknown scenario {', '.join(map(repr, unknown))}; choose from: {', '.join(SCENARIOS)}")
    if model is not None and model not in NAMED:
        p = Path(model)
        if not p.exists():
            raise BenchUsage(f"unknown model {model!r}: not a known name and no such folder; expected {describe_models()}")
        if not ((p / "config.json").is_file() or (p / "pyner.json").is_file()):
            raise BenchUsage(f"model folder {p} holds neither config.json (a Hugging Face checkpoint) nor pyner.json "
                             f"(a pyner artifact)")
    return chosen


def _command(argv) -> str:
    import shlex

    argv = list(argv or [])
    args = argv[argv.index("bench") + 1:] if "bench" in argv else argv[1:]
    return "pyner bench " + shlex.join(args)


def main(*, scenarios=None, quick=False, model=None, out=None, threads=None, seconds=None, batch_sizes=None,
         cache=None, texts=None, clock="wall", argv=None) -> tuple[int, Path, list[str]]:
    """Run the benchmark. Returns (exit code, results folder, missing-dependency install hints)."""
    chosen = validate(scenarios, model)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out else BENCH_DIR / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or os.cpu_count() or 1
    meta = {"started_utc": stamp, "command": _command(argv), "quick": quick,
            "scenarios": chosen, "model": model, "threads": threads, "clock": clock, "machine": machine_info()}
    results = Results(out, meta)
    ctx = Context(results=results, quick=quick, threads=threads, model=model,
                  cache=Path(cache) if cache else default_cache(), out=out,
                  seconds=seconds if seconds is not None else (0.5 if quick else 3.0),
                  options={"batch_sizes": batch_sizes, "texts": texts}, clock=clock)
    ctx.cache.mkdir(parents=True, exist_ok=True)
    print(f"pyner bench: results in {out}", flush=True)
    missing: list[str] = []
    failed = False
    for name in chosen:
        sc = results.scenario(name)
        try:
            importlib.import_module(f"{__package__}.{name}").run(ctx)
            sc["status"] = "partial" if sc["skipped"] else "ok"
        except MissingBaseline as exc:
            sc["status"] = "partial" if sc["rows"] else "skipped"
            if not any(s["why"] == str(exc) for s in sc["skipped"]):
                results.skip(name, name, str(exc), missing_dependency=True)
            missing.append(exc.install)
        except Skip as exc:
            sc["status"] = "skipped"
            results.skip(name, name, str(exc))
        except Exception as exc:  # a broken scenario must not lose the others' results
            failed = True
            sc["status"] = "error"
            sc["error"] = f"{type(exc).__name__}: {exc}"
            sc["traceback"] = traceback.format_exc()
            print(f"[{name}] ERROR: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if any(not c["passed"] for c in sc["checks"]):
            failed = True
        results.flush()
    results.data["meta"]["finished_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    results.flush()
    from . import report

    try:
        report.make_plots(results)
    except Exception as exc:  # plots are a view of results.json; never lose the run over them
        print(f"plots failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        failed = True
    report.write_summary(results)
    print(f"pyner bench: wrote {out / 'summary.md'}", flush=True)
    code = 1 if failed else 0
    return code, out, sorted(set(missing))
