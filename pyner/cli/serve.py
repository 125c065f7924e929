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

MiB = 1 << 20

# flag -> (type, default, help). The default documents the trade-off; PYNER_<FLAG> overrides it.
OPTIONS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "host": (str, "127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network (in containers)"),
    "port": (int, 50051, "gRPC port; 0 picks a free one (printed in the 'listening' log line)"),
    "metrics-port": (int, 9464, "Prometheus /metrics port on the same host; 0 picks a free one, -1 disables it"),
    "max-batch-tokens": (int, 8192, "tokens per formed batch: larger batches amortize better but wait longer and use more memory"),
    "max-batch-size": (int, 32, "windows per formed batch"),
    "max-padding": (float, 0.25, "padded tokens per length bucket may exceed real tokens by this fraction: lower wastes less "
                    "compute on CPU, higher gives fewer, larger model runs (GPUs)"),
    "max-delay-ms": (float, 2.0, "how long the oldest request may wait for a fuller batch: throughput vs. latency at low load"),
    "max-queue": (int, 256, "requests waiting for the model; beyond it requests fail at once with RESOURCE_EXHAUSTED"),
    "max-queue-tokens": (int, 2_000_000, "tokens waiting for the model (bounds memory: ~70 bytes per token); one request alone is always taken"),
    "max-texts": (int, 256, "texts per request"),
    "max-text-chars": (int, 2_000_000, "characters per text (long texts are windowed, never truncated)"),
    "max-message-bytes": (int, 4 * MiB, "largest request message accepted; larger ones get RESOURCE_EXHAUSTED"),
    "threads": (int, None, "ONNX Runtime intra-op threads (default: ONNX Runtime's choice, the physical cores)"),
    "cpu-threads": (int, 1, "threads for tokenization and decoding, which overlap with inference"),
    "model-workers": (int, 1, "batches run at the same time, each on its own thread; with --threads 1, one per core "
                      "serves many short texts faster (docs/serve.md)"),
    "providers": (lambda s: [p for p in s.replace(",", " ").split() if p], None, "execution providers, e.g. 'cuda cpu' (default: cpu)"),
    "tls-cert": (str, None, "PEM server certificate (with --tls-key): serve over TLS"),
    "tls-key": (str, None, "PEM private key of --tls-cert"),
    "tls-client-ca": (str, None, "PEM CA bundle: require client certificates signed by it (mutual TLS)"),
    "expect-digest": (str, None, "refuse to serve any artifact but the one with this digest (sha256:..., printed by "
                      "`pyner verify` and `pyner package`): pins a deployment to one artifact"),
    "grace-period": (float, 30.0, "seconds admitted requests get to finish after SIGTERM (keep below the orchestrator's)"),
    "log-level": (str, "info", "debug, info, warning or error"),
}


def env_name(flag: str) -> str:
    return "PYNER_" + flag.upper().replace("-", "_")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT_DIR", nargs="?", default=None,
                   help="artifact folder made by `pyner package` (env PYNER_ARTIFACT)")
    for flag, (_, default, help_) in OPTIONS.items():
        extra = {"nargs": "*"} if flag == "providers" else {}
        p.add_argument(f"--{flag}", default=None, help=f"{help_} (default: {default}; env {env_name(flag)})", **extra)
    p.add_argument("--no-self-check", action="store_true",
                   help="become ready without re-running the artifact's golden fixtures (env PYNER_SELF_CHECK=0)")


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
        if isinstance(value, list):  # --providers a b
            value = " ".join(value)
        try:
            out[key] = conv(value)
        except ValueError:
            raise UsageError(f"{source}: {value!r} is not a valid {getattr(conv, '__name__', 'value')}") from None
    return out


def config_from_args(args: argparse.Namespace):
    from ..serve.batcher import BatcherConfig
    from ..serve.server import ServeConfig

    o = resolve(args)
    artifact = args.artifact or os.environ.get("PYNER_ARTIFACT")
    if not artifact:
        raise UsageError("no artifact folder given", hint="pyner serve ARTIFACT_DIR (or set PYNER_ARTIFACT)")
    self_check = not args.no_self_check and os.environ.get("PYNER_SELF_CHECK", "1") not in ("0", "false", "no")
    if o["log_level"].lower() not in ("debug", "info", "warning", "error"):
        raise UsageError(f"--log-level {o['log_level']!r}: choose debug, info, warning or error")
    batcher = BatcherConfig(
        max_batch_tokens=o["max_batch_tokens"], max_batch_size=o["max_batch_size"], max_delay_ms=o["max_delay_ms"],
        max_padding=o["max_padding"], max_queue=o["max_queue"], max_queue_tokens=o["max_queue_tokens"], max_texts=o["max_texts"], max_text_chars=o["max_text_chars"],
        model_workers=o["model_workers"],
    ).check()
    if o["expect_digest"] is not None:
        from ..artifact import parse_digest

        o["expect_digest"] = parse_digest(o["expect_digest"], source="--expect-digest")
    if o["threads"] is not None and o["threads"] < 0:
        raise UsageError(f"--threads must be >= 0, got {o['threads']}")
    config = ServeConfig(
        artifact=artifact, host=o["host"], port=o["port"], metrics_port=o["metrics_port"], batcher=batcher,
        threads=o["threads"], providers=o["providers"], tls_cert=o["tls_cert"], tls_key=o["tls_key"],
        tls_client_ca=o["tls_client_ca"], max_message_bytes=o["max_message_bytes"], grace_period=o["grace_period"],
        cpu_threads=o["cpu_threads"], self_check=self_check, expect_digest=o["expect_digest"],
    )
    return config, o["log_level"]


def run(args: argparse.Namespace) -> int:
    from ..serve.server import serve

    config, log_level = config_from_args(args)
    return serve(config, log_level=log_level)
