"""`pyner serve ARTIFACT_DIR`: the gRPC sidecar (pyner.v1 + KServe v2, health, reflection, metrics).

Every flag can also be set by an environment variable (PYNER_<FLAG>, e.g. PYNER_PORT=50052); a
flag on the command line wins. Logs are JSON lines on stderr. SIGTERM/SIGINT drain and exit 0.
See docs/serve.md.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable

from ..errors import UsageError
from ..serve.config import BatcherConfig as B, ServeConfig as S

# flag -> (type, default, help). The defaults are the config classes' (pyner/serve/config.py: one
# definition); the help documents the trade-off; PYNER_<FLAG> overrides the default.
OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "host": (str, S.host, "address to bind; 0.0.0.0 exposes the server to the network (in containers)"),
    "port": (int, S.port, "gRPC port; 0 picks a free one (printed in the 'listening' log line)"),
    "metrics-port": (int, S.metrics_port, "Prometheus /metrics port on the same host (plain HTTP: keep it on a trusted "
                     "network); 0 picks a free one, -1 disables it"),
    "model-name": (str, S.model_name, "the model's name for KServe v2 callers (ModelInfer model_name) and in ModelInfo"),
    "max-batch-tokens": (int, B.max_batch_tokens, "padded tokens (windows x longest) per formed batch: larger batches "
                         "amortize better but keep the model longer and use more memory [2048 on CPU, 16384 on CUDA]"),
    "max-batch-size": (int, B.max_batch_size, "windows per formed batch [32 on CPU, 256 on CUDA]"),
    "max-padding": (float, B.max_padding, "padded tokens per model run may exceed real tokens by this fraction: lower wastes "
                    "less compute on CPU, higher gives fewer, larger model runs (GPUs)"),
    "max-delay-ms": (float, B.max_delay_ms, "how long the oldest request may wait for a fuller batch: throughput vs. latency at low load"),
    "max-queue": (int, B.max_queue, "requests waiting for the model; beyond it requests fail at once with RESOURCE_EXHAUSTED"),
    "max-queue-tokens": (int, B.max_queue_tokens, "tokens waiting for the model (bounds memory: ~70 bytes per token); "
                         "one request alone is always taken"),
    "max-texts": (int, B.max_texts, "texts per request"),
    "max-text-chars": (int, B.max_text_chars, "characters per text (long texts are windowed, never truncated)"),
    "max-request-tokens": (int, B.max_request_tokens, "tokens per request, all its texts; larger requests get INVALID_ARGUMENT"),
    "max-message-bytes": (int, S.max_message_bytes, "largest request message accepted; larger ones get RESOURCE_EXHAUSTED"),
    "threads": (int, S.threads, "ONNX Runtime intra-op threads (default: ONNX Runtime's choice, the physical cores)"),
    "cpu-threads": (int, S.cpu_threads, "threads for tokenization and decoding, which overlap with inference"),
    "model-workers": (int, B.model_workers, "batches run at the same time, each on its own thread; with --threads 1, one "
                      "per core serves many short texts faster (docs/serve.md)"),
    "device": (str, S.device, "where the model runs: cpu, cuda or cuda:N (onnxruntime-gpu; docs/gpu.md)"),
    "on-missing-gpu": (str, S.on_missing_gpu, "with a CUDA device: fail (the server exits naming what is missing) or "
                       "fallback (serve on the CPU after one warning; readiness and ModelInfo say the device used)"),
    "tls-cert": (str, None, "PEM server certificate (with --tls-key): serve over TLS"),
    "tls-key": (str, None, "PEM private key of --tls-cert"),
    "tls-client-ca": (str, None, "PEM CA bundle: require client certificates signed by it (mutual TLS)"),
    "expect-digest": (str, None, "refuse to serve any artifact but the one with this digest (sha256:..., printed by "
                      "`pyner verify` and `pyner package`): pins a deployment to one artifact"),
    "grace-period": (float, S.grace_period, "seconds admitted requests get to finish after SIGTERM (keep below the orchestrator's)"),
    "log-level": (str, "info", "debug, info, warning or error"),
}


# --no-X flags, each turning off a ServeConfig field that is on by default; PYNER_X=0 does the same.
SWITCHES: dict[str, tuple[str, str]] = {
    "no-self-check": ("self_check", "become ready without re-running the artifact's golden fixtures"),
    "no-reflection": ("reflection", "do not serve gRPC server reflection (grpcurl then needs the .proto files)"),
}
OFF = ("0", "false", "no", "off")


def env_name(flag: str) -> str:
    return "PYNER_" + flag.upper().replace("-", "_")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT_DIR", nargs="?", default=None,
                   help="artifact folder made by `pyner package` (env PYNER_ARTIFACT)")
    for flag, (_, default, help_) in OPTIONS.items():
        shown = "the device's" if default is None and help_.endswith("CUDA]") else default
        p.add_argument(f"--{flag}", default=None, help=f"{help_} (default: {shown}; env {env_name(flag)})")
    for flag, (field_name, help_) in SWITCHES.items():
        p.add_argument(f"--{flag}", action="store_true", help=f"{help_} (env {env_name(field_name.replace('_', '-'))}=0)")


def resolve(args: argparse.Namespace, options: dict = OPTIONS) -> dict[str, Any]:
    """Each option from the command line, else its environment variable, else its default."""
    out: dict[str, Any] = {}
    for flag, (conv, default, _) in options.items():
        key = flag.replace("-", "_")
        value = getattr(args, key, None)
        source = f"--{flag}"
        if value is None and env_name(flag) in os.environ:
            value, source = os.environ[env_name(flag)], env_name(flag)
        if value is None:
            out[key] = default
            continue
        try:
            out[key] = conv(value)
        except ValueError:
            raise UsageError(f"{source}: {value!r} is not a valid {getattr(conv, '__name__', 'value')}") from None
    return out


def config_from_args(args: argparse.Namespace):
    from dataclasses import fields

    o = resolve(args)
    artifact = args.artifact or os.environ.get("PYNER_ARTIFACT")
    if not artifact:
        raise UsageError("no artifact folder given", hint="pyner serve ARTIFACT_DIR (or set PYNER_ARTIFACT)")
    for flag, (field_name, _) in SWITCHES.items():
        o[field_name] = not getattr(args, flag.replace("-", "_"), False) and \
            os.environ.get(env_name(field_name.replace("_", "-")), "1").lower() not in OFF
    if o["log_level"].lower() not in ("debug", "info", "warning", "error"):
        raise UsageError(f"--log-level {o['log_level']!r}: choose debug, info, warning or error")
    if o["expect_digest"] is not None:
        from ..artifact import parse_digest

        o["expect_digest"] = parse_digest(o["expect_digest"], source="--expect-digest")
    batcher = B(**{f.name: o[f.name] for f in fields(B)})
    config = S(artifact=artifact, batcher=batcher,
               **{f.name: o[f.name] for f in fields(S) if f.name not in ("artifact", "batcher")}).check()
    return config, o["log_level"]


def run(args: argparse.Namespace) -> int:
    from ..serve.server import serve

    config, log_level = config_from_args(args)
    return serve(config, log_level=log_level)
