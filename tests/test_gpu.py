"""Issue 16, what a CPU can prove: the device policy (cpu / cuda / cuda:N, fail or fallback), its
errors, IO binding on the CPU provider (bit-identical to a plain run), batch defaults that follow
the device actually used, the sidecar's device settings, and scripts/gpu-check's dry run.

The CUDA failures are reached by replacing, one at a time, the probes pyner.runtime asks in order
(onnxruntime's provider list, the CUDA provider library, the CUDA device count, the session's
providers); each test checks the error names exactly the missing piece. No GPU figure is measured
here: docs/gpu.md says how scripts/gpu-check measures them on a GPU machine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import pyner
from pyner import runtime as rt
from pyner.errors import MissingDependency, UsageError

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["Angela Merkel met Emmanuel Macron in Berlin.", "", "Apple Inc. in Cupertino",
         " ".join(["Paris Hilton visited Paris, Texas, and the U.N. in New York."] * 30)]  # several windows


@pytest.fixture(scope="module")
def art(artifact_factory):
    return artifact_factory("bert", max_length=32, stride=8)


@pytest.fixture(scope="module")
def art16(artifact_factory):
    return artifact_factory("bert", precision="fp16", max_length=32, stride=8)


@pytest.fixture(scope="module")
def cpu_model(art):
    return pyner.load(art)


def _scores(model, texts=TEXTS, **kw):
    return [s for st in model.score(texts, **kw) for s in st.scores]


def _gpu_build(monkeypatch):
    """Pretend this onnxruntime is the GPU build (its provider list names CUDA)."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])


def _warnings(caplog):
    return [r for r in caplog.records if r.name.startswith("pyner") and r.levelno >= logging.WARNING]


# -- device names -------------------------------------------------------------------------------


def test_device_names():
    assert str(rt.parse_device(None)) == str(rt.parse_device("cpu")) == str(rt.parse_device(" CPU ")) == "cpu"
    assert rt.parse_device("cuda") == rt.parse_device("cuda:0") == rt.Device("cuda", 0)
    assert str(rt.parse_device("cuda:3")) == "cuda:3"
    for bad in ("gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:0:1", "tensorrt", ""):
        with pytest.raises(UsageError, match="use cpu, cuda or cuda:N"):
            rt.parse_device(bad)
    with pytest.raises(UsageError, match="fail .*fallback"):
        rt.check_on_missing_gpu("cpu")


def test_bad_device_is_refused_before_the_artifact_is_read(tmp_path):
    with pytest.raises(UsageError, match="device 'gpu'"):
        pyner.load(tmp_path / "no-such-artifact", device="gpu")  # not an ArtifactError about the folder
    with pytest.raises(UsageError, match="on_missing_gpu 'maybe'"):
        pyner.load(tmp_path / "no-such-artifact", device="cuda", on_missing_gpu="maybe")


# -- fail: each missing piece named -------------------------------------------------------------


def test_fail_names_the_missing_gpu_build(art, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])  # the CPU build
    with pytest.raises(MissingDependency) as info:
        pyner.load(art, device="cuda")
    e = info.value
    assert e.exit_code == 6
    assert "device cuda:0" in e.message and "not the GPU build (onnxruntime-gpu)" in e.message
    assert "CUDAExecutionProvider is not among its providers (CPUExecutionProvider)" in e.message
    assert "pip uninstall -y onnxruntime" in e.hint and "onnxruntime-gpu" in e.hint


def test_the_real_cpu_build_is_refused_for_cuda(art):
    """No monkeypatching: this machine's onnxruntime, whichever it is, answers cuda:0 consistently."""
    if "CUDAExecutionProvider" in ort.get_available_providers():  # a GPU build: it must then really run there
        model = pyner.load(art, device="cuda", on_missing_gpu="fallback")
        assert str(model.device) in ("cuda:0", "cpu") and (str(model.device) == "cpu") == bool(model.fallback_reason)
        return
    with pytest.raises(MissingDependency, match="not the GPU build"):
        pyner.load(art, device="cuda")


def test_fail_names_the_missing_cuda_library(art, monkeypatch):
    _gpu_build(monkeypatch)

    def dlopen(_ort):
        raise OSError("libcublasLt.so.13: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(rt, "_load_cuda_provider_library", dlopen)
    monkeypatch.setattr(rt, "_preload_cuda_libraries", lambda _ort: "Failed to load libcublasLt.so.13")
    with pytest.raises(MissingDependency) as info:
        pyner.load(art, device="cuda:0")
    assert "the CUDA libraries that onnxruntime-gpu" in info.value.message
    assert "libcublasLt.so.13: cannot open shared object file" in info.value.message
    assert "cuDNN 9" in info.value.hint and "LD_LIBRARY_PATH" in info.value.hint


@pytest.mark.parametrize("count, index, error, words", [
    (1, 3, UsageError, "device id 3 is out of range: this process sees 1 CUDA device(s), cuda:0 to cuda:0"),
    (2, 2, UsageError, "device id 2 is out of range: this process sees 2 CUDA device(s), cuda:0 to cuda:1"),
    (0, 0, MissingDependency, "no CUDA device is visible to this process"),
    (None, 0, MissingDependency, "no usable CUDA device (cudaGetDeviceCount failed: error 35"),
])
def test_fail_names_the_device(art, monkeypatch, count, index, error, words):
    _gpu_build(monkeypatch)
    monkeypatch.setattr(rt, "_load_cuda_provider_library", lambda _ort: None)
    monkeypatch.setattr(rt, "_preload_cuda_libraries", lambda _ort: "")
    monkeypatch.setattr(rt, "_cuda_device_count", lambda: (count, "cudaGetDeviceCount failed: error 35 (driver too old)"))
    with pytest.raises(error) as info:
        pyner.load(art, device=f"cuda:{index}")
    assert words in info.value.message
    assert info.value.exit_code == (2 if error is UsageError else 6)


def test_fail_when_onnxruntime_drops_the_cuda_provider(art, monkeypatch):
    """Every probe passes but the session comes up without CUDA (what onnxruntime does, with only a
    log line, when cuDNN or a CUDA library fails inside the provider): still an error naming it."""
    monkeypatch.setattr(rt, "cuda_providers", lambda device: ["CPUExecutionProvider"])
    with pytest.raises(MissingDependency, match=r"did not start its CUDA provider .*providers now \['CPUExecutionProvider'\]"):
        pyner.load(art, device="cuda")


def test_a_provider_error_is_a_missing_dependency_and_a_bad_model_an_artifact_error(art, tmp_path, monkeypatch):
    from pyner.errors import ArtifactError

    def boom(*a, **k):
        raise RuntimeError("CUDA failure 101: invalid device ordinal ; GPU=7")

    monkeypatch.setattr(rt, "cuda_providers", lambda device: ["CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", boom)
    with pytest.raises(MissingDependency, match="the CUDA provider cannot create a session .*invalid device ordinal"):
        pyner.load(art, device="cuda")
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Protobuf parsing failed")))
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load it .*Protobuf parsing failed"):
        pyner.load(art, device="cuda")


# -- fallback: the CPU, one warning ---------------------------------------------------------------


@pytest.mark.parametrize("missing", ["build", "library", "device"])
def test_fallback_runs_on_the_cpu_after_exactly_one_warning(art, cpu_model, monkeypatch, caplog, missing):
    if missing == "build":
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
        why = "not the GPU build (onnxruntime-gpu)"
    else:
        _gpu_build(monkeypatch)
        monkeypatch.setattr(rt, "_preload_cuda_libraries", lambda _ort: "")
        if missing == "library":
            monkeypatch.setattr(rt, "_load_cuda_provider_library",
                                lambda _ort: (_ for _ in ()).throw(OSError("libcudart.so.13: cannot open shared object file")))
            why = "libcudart.so.13"
        else:
            monkeypatch.setattr(rt, "_load_cuda_provider_library", lambda _ort: None)
            monkeypatch.setattr(rt, "_cuda_device_count", lambda: (1, ""))
            why = "device id 1 is out of range"
    caplog.set_level(logging.DEBUG, logger="pyner")
    model = pyner.load(art, device="cuda:1", on_missing_gpu="fallback")
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert why in warnings[0].getMessage() and "running on the CPU instead" in warnings[0].getMessage()
    assert warnings[0].fields == {"event": "gpu_fallback", "requested": "cuda:1", "device": "cpu"}
    assert str(model.device) == "cpu" and str(model.requested_device) == "cuda:1" and why in model.fallback_reason
    assert model.session.get_providers() == ["CPUExecutionProvider"] and not model.io_binding
    # the CPU defaults, since the CPU is what it runs on; and the CPU model's very results
    assert (model.batch_size, model.max_batch_tokens) == (rt.DEFAULT_BATCH_SIZE, rt.DEFAULT_MAX_BATCH_TOKENS) == (32, 2048)
    assert all(np.array_equal(a, b) for a, b in zip(_scores(model), _scores(cpu_model)))
    caplog.clear()
    model.predict(TEXTS)
    assert _warnings(caplog) == []  # one warning at load, none per call


def test_cpu_asks_nothing_of_cuda(art, monkeypatch, caplog):
    def probe(*a):
        raise AssertionError("a CPU load must not probe CUDA")

    for name in ("cuda_providers", "_load_cuda_provider_library", "_cuda_device_count", "_preload_cuda_libraries"):
        monkeypatch.setattr(rt, name, probe)
    caplog.set_level(logging.DEBUG, logger="pyner")
    model = pyner.load(art, device="cpu", on_missing_gpu="fail")
    assert str(model.device) == "cpu" and model.fallback_reason is None and _warnings(caplog) == []


# -- IO binding and batch defaults ----------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_io_binding_on_the_cpu_gives_the_plain_runs_bits(art, art16, precision, monkeypatch):
    folder = art if precision == "fp32" else art16
    plain, bound = pyner.load(folder), pyner.load(folder, io_binding=True)
    assert not plain.io_binding and bound.io_binding
    want = _scores(plain)

    def no_plain_run(*a, **k):
        raise AssertionError("IO binding must not call session.run")

    monkeypatch.setattr(bound.session, "run", no_plain_run)  # proves the bound path is the one taken
    got = _scores(bound)
    assert len(got) == len(want) > len(TEXTS)  # the long text has several windows
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a, b)
    assert bound.predict(TEXTS) == plain.predict(TEXTS)
    windows = [w for e in plain.encode(TEXTS) for w in e.windows][:5]
    assert np.array_equal(bound.run_batch(windows), plain.run_batch(windows))  # padding rows included


def test_batch_defaults_follow_the_device(art, monkeypatch):
    assert (rt.CPU.batch_size, rt.CPU.max_batch_tokens) == (32, 2048)
    assert (rt.Device("cuda", 1).batch_size, rt.Device("cuda", 1).max_batch_tokens) == (256, 16384)
    real = rt.create_session

    def as_if_cuda(path, so, device, on_missing_gpu="fail"):  # a CPU session that says it runs on `device`
        session, _, _ = real(path, so, rt.CPU, on_missing_gpu)
        return session, device, None

    monkeypatch.setattr(rt, "create_session", as_if_cuda)
    model = pyner.load(art, device="cuda:1", io_binding=False)
    assert str(model.device) == "cuda:1" and (model.batch_size, model.max_batch_tokens) == (256, 16384)
    assert pyner.load(art, device="cuda").io_binding  # IO binding is CUDA's default
    seen = []

    def spy(lengths, **kw):
        seen.append(kw)
        return [[i] for i in range(len(lengths))]

    monkeypatch.setattr(rt, "plan_batches", spy)
    model.score(TEXTS)
    model.score(TEXTS, batch_size=3, max_batch_tokens=100)
    assert [(k["batch_size"], k["max_batch_tokens"]) for k in seen] == [(256, 16384), (3, 100)]
    seen.clear()
    pyner.load(art).score(TEXTS)
    assert (seen[0]["batch_size"], seen[0]["max_batch_tokens"]) == (32, 2048)


# -- the CLI ----------------------------------------------------------------------------------------


def test_predict_device_flags(art, cpu_model, monkeypatch, capsys, tmp_path):
    from pyner.cli import main

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert main(["predict", str(art), TEXTS[0], "--device", "cuda"]) == 6
    err = capsys.readouterr().err
    assert "error: device cuda:0: this onnxruntime" in err and "onnxruntime-gpu" in err
    assert main(["predict", str(art), TEXTS[0], "--device", "gpu"]) == 2
    assert "device 'gpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse's choices
        main(["predict", str(art), TEXTS[0], "--device", "cuda", "--on-missing-gpu", "never"])
    assert exited.value.code == 2 and "invalid choice: 'never'" in capsys.readouterr().err
    assert main(["predict", str(art), TEXTS[0], "--max-batch-tokens", "0"]) == 2
    assert "--max-batch-tokens must be at least 1" in capsys.readouterr().err
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(art), *TEXTS, "--device", "cuda:0", "--on-missing-gpu", "fallback", "-o", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["entities"] for r in rows] == cpu_model.predict(TEXTS)


def test_predict_fallback_warns_once_on_stderr_and_keeps_stdout_clean(art, cpu_model):
    """A real process on this machine's (CPU) onnxruntime: stdout holds only the results."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime is the GPU build: the fallback is tested above with the build probe replaced")
    r = subprocess.run([sys.executable, "-m", "pyner", "predict", str(art), *TEXTS, "--device", "cuda",
                        "--on-missing-gpu", "fallback"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["entities"] for line in r.stdout.splitlines()] == cpu_model.predict(TEXTS)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not the GPU build" in lines[0] and "running on the CPU instead" in lines[0], r.stderr


# -- the sidecar ------------------------------------------------------------------------------------


def test_serve_device_flags_and_env(monkeypatch):
    import argparse

    from pyner.cli import serve as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config, _ = cli.config_from_args(parser.parse_args(["art"]))
    assert (config.device, config.on_missing_gpu) == ("cpu", "fail")
    assert config.batcher.max_batch_tokens is None and config.batcher.max_batch_size is None  # the device's
    monkeypatch.setenv("PYNER_DEVICE", "cuda:2")
    config, _ = cli.config_from_args(parser.parse_args(["art", "--on-missing-gpu", "fallback", "--max-batch-tokens", "4096"]))
    assert (config.device, config.on_missing_gpu, config.batcher.max_batch_tokens) == ("cuda:2", "fallback", 4096)
    for argv, words in ((["art", "--device", "gpu0"], "device 'gpu0'"), (["art", "--on-missing-gpu", "cpu"], "on_missing_gpu 'cpu'"),
                        (["art", "--max-batch-size", "0"], "--max-batch-size must be at least 1")):
        with pytest.raises(UsageError, match=words):
            cli.config_from_args(parser.parse_args(argv))
    help_text = parser.format_help()
    assert "--device" in help_text and "PYNER_ON_MISSING_GPU" in help_text and "--providers" not in help_text


def test_batcher_sizes_follow_the_served_models_device():
    from pyner.serve.config import BatcherConfig

    cuda = rt.Device("cuda", 0)
    assert (BatcherConfig().for_device(cuda).max_batch_tokens, BatcherConfig().for_device(cuda).max_batch_size) == (16384, 256)
    assert BatcherConfig().for_device(None).max_batch_tokens == 2048
    given = BatcherConfig(max_batch_tokens=4096, max_batch_size=8).for_device(cuda)
    assert (given.max_batch_tokens, given.max_batch_size) == (4096, 8)  # what the user set wins


def test_sidecar_fallback_reports_the_device_it_uses(art, monkeypatch, caplog):
    import urllib.request

    from pyner.client import Client
    from pyner.serve.server import ServeConfig, ServerThread

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    caplog.set_level(logging.INFO, logger="pyner")
    cfg = ServeConfig(str(art), port=0, metrics_port=0, device="cuda", on_missing_gpu="fallback")
    with ServerThread(cfg) as srv, Client(f"127.0.0.1:{srv.port}", timeout=60) as client:
        assert client.model_info()["device"] == "cpu"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10).read().decode()
        assert 'device="cpu"' in next(line for line in metrics.splitlines() if line.startswith("pyner_model_info{"))
        assert client.recognize([TEXTS[0]])[0]  # it serves
        batcher = srv.server.state.batcher
        assert (batcher.config.max_batch_tokens, batcher.config.max_batch_size) == (2048, 32)
    ready = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "ready"]
    assert len(ready) == 1
    f = ready[0].fields
    assert (f["device"], f["requested_device"], f["max_batch_tokens"]) == ("cpu", "cuda", 2048)
    assert "not the GPU build" in f["fallback_reason"]
    assert [r.fields["event"] for r in _warnings(caplog)] == ["gpu_fallback"]


def test_sidecar_fail_does_not_start_and_names_the_gpu_build(art, monkeypatch):
    from pyner.serve.server import ServeConfig, ServerThread

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(MissingDependency, match="not the GPU build"):
        ServerThread(ServeConfig(str(art), port=0, metrics_port=-1, device="cuda")).start()


# -- scripts/gpu-check ------------------------------------------------------------------------------


def _gpu_check():
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("gpu_check", str(REPO / "scripts" / "gpu-check"))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    """The whole script on the CPU: split, stash, join and verify a stand-in wheel, install it into a
    venv that shadows the base environment, build tiny checkpoints and artifacts, and every measuring
    step; the JSON and the table are written and each target has a value (never a GPU figure)."""
    out, stage = tmp_path / "out", tmp_path / "stage"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu-check"), "--dry-run", "--out", str(out), "--stage", str(stage),
                        "--budget", "300"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    data = json.loads((out / "gpu-check.json").read_text())
    steps = data["steps"]
    want = ["prepare", "assemble", "install", "environment", "peak", "build-tiny", "golden", "worstcase-tiny", "sidecar"]
    assert list(steps) == want and all(steps[n]["status"] == "ok" for n in want), {n: s.get("error") for n, s in steps.items()}
    assert steps["prepare"]["result"]["calls"] > 1  # the stand-in really went through several call folders
    assert steps["install"]["result"]["module"].startswith(str(stage / "venv"))  # the venv's copy shadows
    rows = steps["worstcase-tiny"]["result"]["rows"]
    assert {r["config"] for r in rows} == {"pytorch-fp32", "pytorch-fp16", "ort-fp16-iobinding"}
    assert all(r["docs_per_s"] > 0 for r in rows) and {r["batch"] for r in rows} == {1, 4}
    assert steps["golden"]["result"]["tiny-fp16"]["passed"] is True
    assert steps["golden"]["result"]["demo-fp16"]["status"] == "skipped"  # with its reason
    assert steps["sidecar"]["result"]["sidecar_device"] == "cpu" and steps["sidecar"]["result"]["ratio"] > 0
    assert set(data["targets"]) == {"ort_fp16_vs_pytorch_fp32", "ort_fp16_vs_pytorch_fp16", "fraction_of_fp16_peak",
                                    "sidecar_c64_vs_in_process"}
    assert all(t["value"] is not None and t["met"] in (True, False) for t in data["targets"].values())
    table = (out / "gpu-check.md").read_text()
    assert table.startswith("# gpu-check: DRY RUN") and "| worstcase-tiny | ok |" in table and "(dry run)" in table


def test_gpu_check_parts_fit_the_device_tool_and_a_bad_part_is_named(tmp_path):
    """Parts under --part-mib, call folders under --call-mib (the 64 MiB per call minus the tree), each
    with the manifest; --stash refuses a damaged part and names the call folders still missing;
    assemble refuses an incomplete set and reproduces the wheel's bytes from a complete one."""
    gc = _gpu_check()
    wheel = gc._probe_wheel(tmp_path / "w")
    m = gc.prepare(tmp_path / "prep", wheel=wheel, demo=None, call_mib=0.01, part_mib=0.004, dry=True)
    calls = sorted((tmp_path / "prep").glob("call-*"))
    assert len(calls) == m["calls"] > 1 and len(m["parts"]) >= m["calls"]
    for folder in calls:
        assert (folder / "manifest.json").is_file()
        assert sum(f.stat().st_size for f in folder.glob("payload.part*")) <= 0.01 * gc.MiB
    assert all(p["bytes"] <= 0.004 * gc.MiB for p in m["parts"])
    run_md = (tmp_path / "prep" / "RUN.md").read_text()
    assert run_md.count("carry=[") == m["calls"] and run_md.count("scripts/gpu-check --stash ") == m["calls"] and "--run --out $OUT" in run_md
    stage = tmp_path / "stage"
    state = gc.stash(calls[0], stage)
    assert {p["call"] for p in state["missing"]} == {c.name for c in calls[1:]}
    with pytest.raises(RuntimeError, match="parts missing .*carry call-2"):
        gc.assemble(stage)
    broken = tmp_path / "broken"
    shutil_copy = __import__("shutil").copytree
    shutil_copy(calls[1], broken)
    part = next(broken.glob("payload.part*"))
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(SystemExit, match="sha256 differs"):
        gc.stash(broken, stage)
    for folder in calls[1:]:
        assert gc.stash(folder, stage)["missing"] == [] or folder != calls[-1]
    payload = gc.assemble(stage)
    assert (payload / wheel.name).read_bytes() == wheel.read_bytes()
