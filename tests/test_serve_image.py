"""What can be checked of the Docker image and the Kubernetes manifests without Docker or a cluster.

Docker cannot run on these machines, so the image is checked by reading the Dockerfile and by
rebuilding its file layout by hand: the runtime stage installs only requirements/runtime.txt,
copies no export stage and no torch, generates the gRPC code at build time, runs as non-root, and
its ENTRYPOINT + CMD and HEALTHCHECK commands work on exactly the files it copies. The manifests
are parsed and checked for the properties the sidecar relies on (probes on the gRPC health
service, drain time below the termination grace period, an HPA metric the server exports).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) for each Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out, stage = [], "(args)"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            stage = m.group(1) if m else rest
        out.append((stage, word, rest.strip()))
    return out


def stage_of(name: str) -> list[tuple[str, str]]:
    return [(w, a) for s, w, a in instructions() if s == name]


def test_runtime_stage_has_no_torch_no_export_and_only_runtime_requirements():
    ins = instructions()
    stages = [s for s, w, _ in ins if w == "FROM"]
    assert stages[-1] == "runtime", "the last stage is the image"
    for stage, word, args in ins:
        if word in ("RUN", "COPY", "ADD"):
            assert "torch" not in args and "transformers" not in args, (stage, args)
        if word in ("COPY", "ADD"):
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            assert not any(s.startswith("export") or s.startswith("tests") for s in sources), args
    # the runtime stage takes files only from the build stage
    for word, args in stage_of("runtime"):
        if word == "COPY":
            assert args.startswith("--from=build "), args
        assert word != "ADD"
    # the build stage installs requirements/runtime.txt, plus the GPU wheel and a throwaway protoc
    pips = [a for w, a in stage_of("build") if w == "RUN" and "pip install" in a]
    copied = [a for w, a in stage_of("build") if w == "COPY"]
    assert "requirements/runtime.txt /tmp/requirements-runtime.txt" in copied
    assert {"pyner /opt/pyner/pyner", "proto /opt/pyner/proto"} <= set(copied)
    assert len(copied) == 3
    installed = []
    for run in pips:
        for cmd in re.findall(r"pip install ([^&;]+)", run):
            words = cmd.split()
            args = [w for i, w in enumerate(words) if not w.startswith("--") and not (i and words[i - 1] == "--target")]
            installed.append(" ".join(args))
    assert sorted(installed) == sorted(['"grpcio-tools==${grpcio}"', '"onnxruntime-gpu==${ort}"', "-r /tmp/requirements-runtime.txt"])
    assert "rm -rf /tmp/protoc" in " ".join(pips)
    runtime_txt = (ROOT / "requirements" / "runtime.txt").read_text()
    assert not re.search(r"^(torch|transformers|onnx|grpcio-tools)\b", runtime_txt, re.M)
    # the build context itself leaves out everything but the runtime files
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] [:3] == ["!requirements/runtime.txt", "!pyner/", "!proto/"]


def test_image_is_non_root_with_health_check_and_default_command():
    rt = dict((w, a) for w, a in stage_of("runtime"))
    user = rt["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert "useradd" in " ".join(a for w, a in stage_of("runtime") if w == "RUN")
    assert json.loads(rt["CMD"]) == ["serve", "/models/artifact", "--host", "0.0.0.0"]
    assert json.loads(rt["ENTRYPOINT"]) == ["python", "-m", "pyner"]
    assert "pyner.serve.healthcheck" in rt["HEALTHCHECK"]
    assert set(rt["EXPOSE"].split()) == {"50051", "9464"}
    assert "PYTHONPATH=/opt/pyner" in rt["ENV"] and "PYNER_PORT=50051" in rt["ENV"]
    variants = [a for s, w, a in instructions() if w == "FROM"]
    assert any("CUDA_IMAGE" in v for v in variants) and any("base-${VARIANT}" in v for v in variants)
    gpu = " ".join(a for w, a in stage_of("build") if w == "RUN")
    assert "onnxruntime-gpu" in gpu and "pip uninstall -y onnxruntime" in gpu


def test_entrypoint_and_healthcheck_run_on_the_files_the_image_copies(tmp_path):
    """Rebuild /opt/pyner as the build stage does (pyner/ + proto/, then generate the gRPC code) and
    run ENTRYPOINT + CMD with --help, and the HEALTHCHECK command, with PYTHONPATH=/opt/pyner only."""
    opt = tmp_path / "opt" / "pyner"
    shutil.copytree(ROOT / "pyner", opt / "pyner", ignore=shutil.ignore_patterns("_proto", "__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "proto", opt / "proto")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNER_")}
    env.update(PYTHONPATH=str(opt), PYNER_PORT="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=opt, env=env, capture_output=True, text=True, timeout=300)

    built = run("-m", "pyner.serve.protos")
    assert built.returncode == 0, built.stderr
    assert (opt / "pyner" / "serve" / "_proto" / "SOURCE_DIGEST").is_file()
    # the copied tree is what runs (not the checkout), and serve --help pulls in no torch
    probe = run("-c", "import sys, runpy\nsys.argv = ['pyner', 'serve', '--help']\ntry:\n runpy.run_module('pyner', run_name='__main__')\n"
                      "except SystemExit as e:\n assert e.code == 0, e.code\nimport pyner\nprint('FILE', pyner.__file__)\n"
                      "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'pyner_export') if m in sys.modules))")
    assert probe.returncode == 0, probe.stderr
    assert f"FILE {opt / 'pyner' / '__init__.py'}" in probe.stdout
    assert "HEAVY []" in probe.stdout
    assert "--max-queue" in probe.stdout and "PYNER_MAX_QUEUE" in probe.stdout
    # the HEALTHCHECK command exists there and fails cleanly when nothing serves (port 1)
    health = run("-m", "pyner.serve.healthcheck")
    assert health.returncode == 1 and "127.0.0.1:1: UNAVAILABLE" in health.stdout


def test_kubernetes_manifests_fit_the_server():
    import yaml  # PyYAML: in the dev environment (a transformers dependency)
    k8s = ROOT / "deploy" / "k8s"
    docs = {d["kind"]: d for f in sorted(k8s.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": int(env["PYNER_PORT"]), "metrics": int(env["PYNER_METRICS_PORT"])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == ports["grpc"], probe
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + float(env["PYNER_GRACE_PERIOD"])
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "--host" in c["args"] and c["args"][c["args"].index("--host") + 1] == "0.0.0.0"
    # every PYNER_* variable is one the CLI reads
    from pyner.cli.serve import OPTIONS, env_name

    assert set(env) <= {env_name(f) for f in OPTIONS}
    svc_ports = {p["name"]: p["port"] for p in docs["Service"]["spec"]["ports"]}
    assert svc_ports == ports
    # the HPA's custom metric is produced by the adapter rule from a histogram the server exports
    hpa_metric = docs["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["rules"]
    rule = next(r for r in rules if r["name"]["as"] == hpa_metric)
    from pyner.serve.metrics import Metrics

    exported = {s.name for m in Metrics().registry.collect() for s in m.samples} | \
               {f"{m.name}_{suffix}" for m in Metrics().registry.collect() if m.type == "histogram" for suffix in ("sum", "count")}
    for name in re.findall(r"pyner_[a-z_]+", rule["seriesQuery"] + rule["metricsQuery"]):
        assert name in exported, name
