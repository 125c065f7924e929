"""`pyner bench`: measure pyner against its baselines and write JSON, CSV, plots and a summary.

The scenarios live in the checkout's `bench/` folder (not an installed package: they are a
developer tool and may import torch for their PyTorch baselines); this handler loads that folder
by path as the package `pyner_bench`. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import MissingDependency, UsageError

SCENARIOS = ("worstcase", "realtext", "limit", "scaling")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a few batch sizes, a slice of the texts, short timings: minutes on 2 cores")
    parser.add_argument("--scenario", nargs="+", action="extend", metavar="NAME",
                        help=f"scenarios to run (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--model", metavar="NAME|DIR",
                        help="bert-base (random weights, default), large (~335M), demo (the trained demo model), "
                             "tiny (smoke tests), or a folder: a Hugging Face checkpoint or a pyner artifact")
    parser.add_argument("--out", metavar="DIR", help="results folder (default: bench/results/<UTC timestamp>)")
    parser.add_argument("--threads", type=int, metavar="N", help="threads for every engine (default: all cores)")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help="minimum measuring time per point (default 3, --quick 0.5)")
    parser.add_argument("--batch-sizes", metavar="LIST", help="worst-case batch sizes, comma separated (e.g. 1,8,64)")
    parser.add_argument("--texts", type=int, metavar="N", help="use only the first N WikiGold sentences/documents")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default), or CPU time of the measured process: with --threads 1 it is what "
                             "a run takes on an idle core, on a machine shared with others")
    parser.add_argument("--cache", metavar="DIR",
                        help="where built checkpoints and artifacts are kept between runs "
                             "(default: $PYNER_BENCH_CACHE or ~/.cache/pyner/bench)")


def bench_dir() -> Path:
    """The checkout's bench/ folder (or $PYNER_BENCH_DIR)."""
    env = os.environ.get("PYNER_BENCH_DIR")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "bench"
    if not (d / "__init__.py").is_file():
        raise UsageError(f"pyner bench needs the benchmark scenarios of a source checkout; no bench/ folder at {d}",
                         hint="run it from a clone of the pyner repository, or set PYNER_BENCH_DIR to its bench/ folder")
    return d


def load_bench():
    """Import the bench/ folder as the package `pyner_bench` (once per process)."""
    if "pyner_bench" in sys.modules:
        return sys.modules["pyner_bench"]
    d = bench_dir()
    spec = importlib.util.spec_from_file_location("pyner_bench", d / "__init__.py", submodule_search_locations=[str(d)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pyner_bench"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["pyner_bench"]
        raise
    return module


def _batch_sizes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--batch-sizes {text!r}: expected positive integers separated by commas, e.g. 1,8,64")
    return sizes


def run(args: argparse.Namespace) -> int:
    for flag in ("threads", "texts"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag} {value}: must be at least 1")
    if args.seconds is not None and args.seconds < 0:
        raise UsageError(f"--seconds {args.seconds}: must not be negative")
    sizes = _batch_sizes(args.batch_sizes)
    load_bench()
    driver = importlib.import_module("pyner_bench.run")
    try:
        code, out, missing = driver.main(
            scenarios=args.scenario, quick=args.quick, model=args.model, out=args.out, threads=args.threads,
            seconds=args.seconds, batch_sizes=sizes, cache=args.cache, texts=args.texts,
            clock=args.clock, argv=sys.argv)
    except driver.BenchUsage as exc:
        raise UsageError(str(exc)) from exc
    if missing:
        raise MissingDependency(
            f"some baselines could not run (missing dependency); partial results are in {out}",
            hint=" ; ".join(missing))
    return code


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m pyner.cli.bench`), for use before or beside the CLI registry."""
    from ..errors import PynerError
    from . import print_error

    parser = argparse.ArgumentParser(prog="pyner bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PynerError as exc:
        return print_error(exc)


if __name__ == "__main__":
    sys.exit(main())
