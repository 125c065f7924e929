"""pyner's benchmark scenarios (`pyner bench`).

This folder is not an installed package: `pyner/cli/bench.py` loads it by path, as the package
`pyner_bench`, from the source checkout (or from `$PYNER_BENCH_DIR`). Why here and not inside
`pyner_export`: a benchmark is a developer tool that needs the checkout anyway (the WikiGold data,
the JVM jar, the figures committed beside it), it may import torch (its baselines are PyTorch and
transformers' pipeline), and keeping it out of both installed packages keeps the runtime path
free of it by construction. Results go to `bench/results/<timestamp>/` (git-ignored); the figures
of the full run that BENCHMARKS.md shows are committed in `bench/figures/`.

Scenarios (one module each, each with `run(ctx) -> None`):

- `worstcase`: throughput against batch size at 256 tokens, PyTorch against ONNX Runtime variants.
- `realtext`: WikiGold sentences and documents end to end, transformers' pipeline against pyner.
- `limit`: the machine's GEMM peak and each configuration's achieved fraction of it.
- `scaling`: throughput against threads, memory against batch size.
"""

SCENARIOS = ("worstcase", "realtext", "limit", "scaling")
