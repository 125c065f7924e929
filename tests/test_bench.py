"""`pyner bench`: a smoke run on a tiny model writes every output and its agreement checks pass;
bad options and a missing baseline dependency get clear messages. Nothing here measures speed.

The oracle for the agreement checks is inside the benchmark itself (PyTorch logits for the ONNX
configurations, transformers' pipeline entities for pyner): this test asserts that they ran and
passed, and that the files a reader needs (JSON, CSV, PNG plots, Markdown) were written.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from pyner.cli import main; sys.exit(main(sys.argv[1:]))"
# Makes `import torch` / `import transformers` fail, as in a runtime-only install.
NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; " + CLI.split("; ", 1)[1]


def pyner_bench(*args: str, prelude: str = CLI, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", prelude, "bench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


@pytest.mark.slow
def test_quick_run_on_tiny_model_writes_results_and_checks_pass(tmp_path, bench_cache):
    out = tmp_path / "results"
    proc = pyner_bench("--quick", "--model", "tiny", "--out", str(out), "--cache", str(bench_cache),
                       "--batch-sizes", "1,2", "--texts", "12", "--seconds", "0", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    sc = data["scenarios"]
    assert set(sc) == {"worstcase", "realtext", "limit", "scaling"}
    for name, s in sc.items():
        assert s["status"] in ("ok", "partial"), (name, s.get("error"), s["skipped"])
        assert s["rows"], name

    # worst case: every CPU configuration measured at both batch sizes, agreement checked against PyTorch
    wc = sc["worstcase"]
    measured = {(r["config"], r["batch_size"]) for r in wc["rows"]}
    peers = ("pytorch-bf16", "pytorch-bf16-autocast", "openvino-default", "openvino-fp32")
    for cfg in ("pytorch-fp32", "ort-fp32-plain", "ort-fp32-optimized", "ort-int8", "ort-int8-head-only", *peers):
        assert {(cfg, 1), (cfg, 2)} <= measured, cfg
    checked = {c["config"]: c for c in wc["checks"]}
    assert set(checked) == {"ort-fp32-plain", "ort-fp32-optimized", "ort-int8", "ort-int8-head-only", *peers}
    assert all(c["passed"] and c["reference"] == "pytorch-fp32" for c in checked.values()), checked
    assert checked["ort-fp32-plain"]["max_abs_logit_diff"] < 2e-3
    # the peers really ran their own precision: OpenVINO f32 matches PyTorch fp32 to float32 rounding, the
    # bf16 ones do not (a bf16 run that silently stayed float32 would be as close as f32)
    assert checked["openvino-fp32"]["max_abs_logit_diff"] < 1e-4
    assert checked["pytorch-bf16"]["max_abs_logit_diff"] > 1e-3
    assert checked["pytorch-bf16-autocast"]["max_abs_logit_diff"] > 1e-3

    # real text: pyner's entities identical to transformers' pipeline on sentences and documents
    rt = {c["config"]: c for c in sc["realtext"]["checks"]}
    for corpus in ("sentences", "documents"):
        c = rt[f"pyner-fp32 ({corpus})"]
        assert c["passed"] and c["identical_texts"] == c["texts"] == 12, c
        assert f"pyner-int8 ({corpus})" in rt
    configs = {r["config"] for r in sc["realtext"]["rows"]}
    assert {"pipeline-pytorch-fp32", "pipeline-pytorch-bf16", "pyner-fp32", "pyner-int8"} <= configs
    bf16 = sc["realtext"]["facts"]["agreement pipeline-pytorch-bf16 (sentences) vs pipeline-pytorch-fp32"]
    assert 0.0 <= bf16["identical_fraction"] <= 1.0

    # the limit: GEMM peaks measured, achieved fractions computed from the worst case of this run
    assert sc["limit"]["facts"]["peak_gflops"]["fp32"] > 0
    assert sc["limit"]["facts"]["peak_gflops"]["bf16"] > 0
    assert sc["limit"]["facts"]["cpu"]["matrix"]  # the CPU's matrix features, named with the figures
    assert {r["config"] for r in sc["limit"]["rows"] if r["group"] == "fraction"} >= {"ort-fp32-optimized", "ort-int8"}

    # scaling: two thread counts and memory points per configuration
    groups = {(r["group"], r["config"]) for r in sc["scaling"]["rows"]}
    assert ("threads", "ort-int8") in groups and ("memory", "ort-fp32-optimized") in groups

    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert len(rows) == sum(len(s["rows"]) for s in sc.values())
    for fig in ("fig_worstcase.png", "fig_realtext.png", "fig_limit.png", "fig_scaling.png"):
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig
    summary = (out / "summary.md").read_text()
    assert "## Targets (issue 8)" in summary and "| 256-token worst case: ORT int8 / PyTorch eager" in summary
    assert "## Targets (issue 18" in summary and "| 256-token worst case: pyner int8 / PyTorch bf16" in summary


@pytest.mark.parametrize("args, needle", [
    (["--scenario", "nosuch"], "unknown scenario 'nosuch'; choose from: worstcase, realtext, limit, scaling"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--batch-sizes", "1,x"], "--batch-sizes '1,x': expected positive integers"),
])
def test_bad_options_name_the_problem(tmp_path, args, needle):
    proc = pyner_bench(*args, "--out", str(tmp_path / "r"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert not (tmp_path / "r" / "results.json").exists()


def test_model_folder_without_config_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    proc = pyner_bench("--model", str(tmp_path / "m"), "--out", str(tmp_path / "r"), timeout=120)
    assert proc.returncode == 2
    assert "holds neither config.json" in proc.stderr


def test_missing_torch_names_the_install_and_keeps_partial_results(tmp_path):
    out = tmp_path / "r"
    proc = pyner_bench("--quick", "--scenario", "worstcase", "limit", "--model", "tiny", "--out", str(out),
                       "--cache", str(tmp_path / "cache"), "--seconds", "0", prelude=NO_TORCH, timeout=300)
    assert proc.returncode == 6, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "pip install 'pyner[export]'" in proc.stderr
    data = json.loads((out / "results.json").read_text())
    wc = data["scenarios"]["worstcase"]
    assert wc["status"] == "skipped" and any(s["missing_dependency"] for s in wc["skipped"])
    assert "torch" in wc["skipped"][0]["why"]
    limit = data["scenarios"]["limit"]
    assert limit["status"] == "ok" and limit["facts"]["peak_gflops"]["fp32"] > 0   # the rest still ran
    assert (out / "summary.md").is_file()


def test_plan_batches_bounds_padding_as_the_benchmark_chose():
    """The batching policy bench/ measured (BENCHMARKS.md): every window once, longest first, and no
    batch padded beyond `max_padding` of its real tokens unless it holds a single window."""
    import random

    from pyner.runtime import DEFAULT_MAX_PADDING, plan_batches

    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(3, 60), rng.randint(100, 512)]) for _ in range(500)]
    for max_padding in (0.0, DEFAULT_MAX_PADDING, 0.3):
        batches = plan_batches(lengths, batch_size=64, max_batch_tokens=4096, max_padding=max_padding)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            longest, real = max(lengths[i] for i in b), sum(lengths[i] for i in b)
            assert len(b) == 1 or (len(b) * longest <= 4096 and len(b) * longest <= real * (1 + max_padding)), b
    # without the bound, the old plan: one batch of 64 equal-budget windows regardless of padding
    loose = plan_batches([100] + [10] * 63, batch_size=64, max_batch_tokens=10_000)
    assert loose == [list(range(64))]
    tight = plan_batches([100] + [10] * 63, batch_size=64, max_batch_tokens=10_000, max_padding=0.05)
    assert tight[0] == [0] and sorted(tight[1]) == list(range(1, 64))
