"""`pyner package`: a Hugging Face token-classification checkpoint becomes one verified artifact folder.

Steps: check the checkpoint -> load it (eager attention) -> export ONNX (scores + logits) ->
fuse (ONNX Runtime transformer optimizer) -> fp16 / int8 -> write tokenizer.json, config.json,
serving.properties -> accuracy guard against PyTorch -> golden fixtures (computed by the runtime)
-> manifest with every checksum. Everything happens in a temporary folder renamed into place at
the end (`pyner.artifact.atomic_dir`): a failure at any step leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from pyner import artifact as art
from pyner.errors import GuardError, UsageError

from .checkpoint import inspect_checkpoint, resolve_lengths

DEFAULT_OPSET = 17
OPSETS = range(14, 21)  # what the TorchScript exporter and ONNX Runtime 1.29 both handle
STEPS = ("check", "load", "export", "optimize", "precision", "write", "guard", "golden", "manifest")
FP16_NOTE = ("fp16 is a GPU format: run it with the CUDA execution provider; on CPU it is slower than fp32 "
             "(use int8 for fast CPU inference)")


class _Progress:
    """One tqdm bar over the packaging steps on stderr; silent when quiet or not a terminal."""

    def __init__(self, quiet: bool):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=len(STEPS), desc="pyner package", unit="step", file=sys.stderr, leave=False)
            except ImportError:  # pragma: no cover - tqdm is a runtime dependency
                self.bar = None

    def step(self, done: str) -> None:
        """Mark step `done` finished and show the one now running."""
        if self.bar is not None:
            i = STEPS.index(done)
            self.bar.set_postfix_str(STEPS[i + 1] if i + 1 < len(STEPS) else "done", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _quiet_libraries():
    """Exporter/optimizer chatter (TracerWarnings, ORT constant-folding warnings, quantizer tips) off stdout/stderr."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _write_tokenizer(ckpt, dst: Path) -> None:
    # the tokenizer transformers really uses (see Checkpoint.tokenizer_str), not necessarily the file
    raw = json.loads(ckpt.tokenizer_str or ckpt.tokenizer_json.read_text(encoding="utf-8"))
    raw["truncation"] = None
    raw["padding"] = None
    dst.write_text(json.dumps(raw, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_config(ckpt, dst: Path) -> None:
    config = dict(ckpt.config)
    config["id2label"] = {str(i): label for i, label in enumerate(ckpt.labels)}
    config["label2id"] = {label: i for i, label in enumerate(ckpt.labels)}
    dst.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def serving_properties(input_names: list[str], max_length: int) -> str:
    return "\n".join([
        "# DJL: plain TokenClassificationTranslatorFactory over this folder (written by pyner package).",
        "# Output 0 of model.onnx is already a softmax, so the translator must not apply one.",
        "engine=OnnxRuntime",
        "translatorFactory=ai.djl.huggingface.translator.TokenClassificationTranslatorFactory",
        f"includeTokenTypes={'true' if 'token_type_ids' in input_names else 'false'}",
        "softmax=false",
        f"maxLength={max_length}",
        "modelName=model",
        "",
    ])


def check_options(precision: str, opset: int, max_f1_drop: float | None, int8_policy: str | None = None) -> None:
    if precision not in art.PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(art.PRECISIONS)}")
    if int8_policy is not None:
        from .int8 import POLICIES

        if int8_policy not in POLICIES:
            raise UsageError(f"unknown --int8-policy {int8_policy!r}; choose one of: {', '.join(POLICIES)}")
        if precision != "int8":
            raise UsageError(f"--int8-policy applies to --precision int8 only (got --precision {precision})")
    if opset not in OPSETS:
        raise UsageError(f"--opset {opset} is not supported; choose {OPSETS.start}..{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    if max_f1_drop is not None and not max_f1_drop >= 0:
        raise UsageError(f"--max-f1-drop must be >= 0 points, got {max_f1_drop}")


def package(model_dir, out_dir, *, precision: str = "fp32", max_length: int | None = None, stride: int | None = None,
            opset: int = DEFAULT_OPSET, eval_data=None, max_f1_drop: float | None = None, guard: bool = True,
            force: bool = False, quiet: bool = False, int8_policy: str | None = None,
            int8_exclude: list[str] | None = None) -> dict[str, Any]:
    """Package `model_dir` into the artifact folder `out_dir`; return the manifest written.

    Raises UsageError (bad options), InputError (bad checkpoint or evaluation file), ArtifactError
    (output exists without `force`), GuardError (accuracy guard refused; nothing written).
    """
    check_options(precision, opset, max_f1_drop, int8_policy)
    out = Path(out_dir)
    if out.exists() and not force:
        raise art.ArtifactError(f"output folder exists: {out.absolute()}", hint="choose another -o, or pass --force to replace it")
    timings: dict[str, float] = {}
    progress = _Progress(quiet)
    t_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        ckpt = inspect_checkpoint(model_dir)
        max_length, stride = resolve_lengths(ckpt, max_length, stride)
        eval_sentences = None
        if eval_data is not None:
            from .evaldata import read_bio

            eval_sentences = read_bio(eval_data, ckpt.labels)
        digest = ckpt.digest()
        timings["check"] = time.perf_counter() - t0
        progress.step("check")

        with art.atomic_dir(out, force=force) as folder, tempfile.TemporaryDirectory(prefix="pyner-export-") as work, \
                _quiet_libraries():
            work = Path(work)
            manifest = _build(ckpt, folder, work, precision=precision, max_length=max_length, stride=stride,
                              opset=opset, eval_sentences=eval_sentences, eval_name=str(eval_data) if eval_data else None,
                              max_f1_drop=max_f1_drop, guard=guard, int8_policy=int8_policy, int8_exclude=int8_exclude, digest=digest,
                              timings=timings, progress=progress)
            timings["total"] = time.perf_counter() - t_all
            manifest["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
            manifest = art.finalize_manifest(folder, manifest)
            progress.step("manifest")
    finally:
        progress.close()
    return manifest


def _build(ckpt, folder: Path, work: Path, *, precision, max_length, stride, opset, eval_sentences, eval_name,
           max_f1_drop, guard, int8_policy, int8_exclude, digest, timings, progress) -> dict[str, Any]:
    import onnxruntime

    from pyner.golden import GOLDEN_TEXTS, write_golden
    from pyner.runtime import Model

    from .checkpoint import forward_input_names, load_model
    from .guard import run_guard
    from .onnx_export import OUTPUTS, export_onnx
    from .optimize import optimize, probe_feed, to_fp16

    t0 = time.perf_counter()
    model = load_model(ckpt)
    input_names = forward_input_names(model)
    pad_id = ckpt.tokenizer["pad_token_id"]
    vocab = int(model.config.vocab_size)
    timings["load"] = time.perf_counter() - t0
    progress.step("load")

    t0 = time.perf_counter()
    raw = export_onnx(model, input_names, work / "raw.onnx", opset=opset, pad_id=pad_id, vocab_size=vocab)
    timings["export"] = time.perf_counter() - t0
    progress.step("export")

    t0 = time.perf_counter()
    feed = probe_feed(input_names, pad_id, vocab)
    optimized = work / "optimized.onnx"
    optimization = optimize(raw, optimized, num_heads=ckpt.num_heads, hidden_size=ckpt.hidden_size, feed=feed)
    timings["optimize"] = time.perf_counter() - t0
    progress.step("optimize")

    t0 = time.perf_counter()
    target = folder / art.MODEL_FILE
    quantization = None
    precision_info: dict[str, Any] | None = None
    if precision == "fp32":
        os.replace(optimized, target)
    elif precision == "fp16":
        precision_info = to_fp16(optimized, target)
    else:
        from .int8 import POLICY, quantize_int8

        quantization = quantize_int8(optimized, target, policy=int8_policy or POLICY, exclude=int8_exclude)
    timings["precision"] = time.perf_counter() - t0
    progress.step("precision")

    _write_tokenizer(ckpt, folder / art.TOKENIZER_FILE)
    _write_config(ckpt, folder / art.CONFIG_FILE)
    (folder / art.SERVING_FILE).write_text(serving_properties(input_names, max_length), encoding="utf-8")
    tok = dict(ckpt.tokenizer)
    tok.pop("num_special_tokens", None)
    tok.pop("model_max_length", None)
    manifest: dict[str, Any] = {
        "format": art.FORMAT,
        "format_version": art.FORMAT_VERSION,
        "source": {"path": str(ckpt.path), "digest": digest,
                   "files": [p.relative_to(ckpt.path).as_posix() for p in ckpt.files()]},
        "model_type": ckpt.model_type,
        "labels": ckpt.labels,
        "label_scheme": ckpt.label_scheme,
        "precision": precision,
        "opset": opset,
        "onnxruntime_version": onnxruntime.__version__,
        "max_length": max_length,
        "stride": stride,
        "inputs": input_names,
        "outputs": list(OUTPUTS),
        "tokenizer": {**tok, "rebuilt_by_transformers": ckpt.tokenizer_rebuilt},
        "optimization": optimization,
        "quantization": quantization,
        "guard": None,
        "golden": {"file": art.GOLDEN_FILE, "score_tolerance": art.SCORE_TOLERANCE[precision]},
    }
    if precision_info is not None:
        manifest["fp16"] = precision_info
        manifest["notes"] = [FP16_NOTE]
    progress.step("write")

    t0 = time.perf_counter()
    runtime_model = Model.from_parts(folder, manifest)
    report = run_guard(runtime_model, model, precision=precision, texts=[t for _, t in GOLDEN_TEXTS],
                       input_names=input_names, pad_id=pad_id, eval_sentences=eval_sentences, eval_name=eval_name,
                       label_scheme=ckpt.label_scheme, max_f1_drop=max_f1_drop, enabled=guard)
    manifest["guard"] = report
    timings["guard"] = time.perf_counter() - t0
    progress.step("guard")
    if guard and not report["passed"]:
        raise GuardError(
            f"accuracy guard refused the {precision} export of {ckpt.path}: " + "; ".join(report["failures"]),
            hint="try another --precision, raise --max-f1-drop, or pass --no-guard to write it anyway (recorded in the manifest)",
        )
    del runtime_model

    t0 = time.perf_counter()
    manifest["golden_summary"] = write_golden(folder, manifest)
    timings["golden"] = time.perf_counter() - t0
    progress.step("golden")
    return manifest


def summary_lines(out: Path, manifest: dict[str, Any]) -> list[str]:
    """What `pyner package` prints once the artifact is in place."""
    files = manifest.get("files", {})
    size = sum(int(f.get("bytes", 0)) for f in files.values())
    model_bytes = int(files.get(art.MODEL_FILE, {}).get("bytes", 0))
    g = manifest.get("guard") or {}
    opt = manifest.get("optimization") or {}
    fused = {k: v for k, v in (opt.get("fused_ops") or {}).items() if v}
    lines = [
        f"artifact: {out}",
        f"  digest: {art.artifact_digest((Path(out) / art.MANIFEST).read_bytes())} (pin it: --expect-digest)",
        f"  {manifest['model_type']} {manifest['precision']}, {len(manifest['labels'])} labels ({manifest['label_scheme']}), "
        f"max_length {manifest['max_length']}, stride {manifest['stride']}, inputs {', '.join(manifest['inputs'])}",
        f"  size: model.onnx {model_bytes / 1e6:.2f} MB, folder {size / 1e6:.2f} MB; "
        f"packaged in {manifest.get('timings_s', {}).get('total', 0):.1f} s",
        f"  fusions: {', '.join(f'{k} {v}' for k, v in fused.items()) or 'none'}"
        + (f" ({opt['fallback']})" if opt.get("fallback") else ""),
    ]
    q = manifest.get("quantization")
    if q:
        lines.append(f"  int8: {q['weight_type']} per-channel, policy {q['policy']!r}, {len(q['nodes_excluded'])} node(s) kept float32")
    guard_line = (f"  guard ({'on' if g.get('enabled') else 'OFF: --no-guard'}): "
                  f"{'passed' if g.get('passed') else 'FAILED'}, agreement with PyTorch {100 * g.get('token_agreement', 0):.2f}% "
                  f"of {g.get('tokens', 0)} tokens, max |logit diff| {g.get('max_abs_logit_diff', 0):.2g}")
    if g.get("f1"):
        f = g["f1"]
        guard_line += f", F1 {f['pytorch']:.2f} -> {f['artifact']:.2f} ({f['sentences']} sentences)"
    lines.append(guard_line)
    gs = manifest.get("golden_summary") or {}
    lines.append(f"  golden: {gs.get('cases', '?')} texts, {gs.get('tokens', '?')} tokens (score tolerance "
                 f"{manifest['golden']['score_tolerance']:g})")
    if manifest["precision"] == "fp16":
        lines.append(f"  note: {FP16_NOTE}")
    return lines
