"""`pyner package`: a Hugging Face token-classification checkpoint becomes one verified artifact folder.

Stages (`_Build`): check the checkpoint -> load it (eager attention; tokenizer.json, config.json,
serving.properties written) -> PyTorch's reference logits on the guard's windows -> export ONNX
(scores + logits; PyTorch is freed) -> fuse (ONNX Runtime transformer optimizer) -> fp16 / int8 ->
model.onnx (+ model.onnx.data for weights over what one ONNX file holds) -> accuracy guard against
the reference -> golden fixtures (computed by the runtime) -> manifest with every checksum. One
copy of the weights is in memory at a time (peak about 2x the checkpoint). Everything happens in a
temporary folder renamed into place at the end (`pyner.artifact.atomic_dir`): a failure or a
SIGINT/SIGTERM at any step leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyner import artifact as art
from pyner.errors import GuardError, UsageError

from .checkpoint import inspect_checkpoint, resolve_lengths

DEFAULT_OPSET = 17
OPSETS = range(14, 21)  # what the TorchScript exporter and ONNX Runtime 1.29 both handle
STEPS = ("check", "load", "reference", "export", "optimize", "precision", "guard", "golden", "manifest")
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


def check_options(precision: str, opset: int, max_f1_drop: float | None, int8_policy: str | None = None,
                  min_identical: float | None = None) -> None:
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
    if min_identical is not None and not 0.0 <= min_identical <= 1.0:
        raise UsageError(f"--min-identical must be a fraction from 0 to 1, got {min_identical}")


@dataclass
class Options:
    """Everything `pyner package` can be told, checked once (`check`) before any work starts."""

    precision: str = "fp32"
    max_length: int | None = None
    stride: int | None = None
    opset: int = DEFAULT_OPSET
    eval_data: str | os.PathLike | None = None
    max_f1_drop: float | None = None
    min_identical: float | None = None
    guard: bool = True
    force: bool = False
    quiet: bool = False
    int8_policy: str | None = None
    int8_exclude: list[str] | None = None
    external_data: str = "auto"
    task: str | None = None  # None: what the checkpoint is (docs/tasks.md)
    function_to_apply: str | None = None  # text-classification: None = the pipeline's choice

    def check(self) -> "Options":
        from .onnxio import check_mode

        check_options(self.precision, self.opset, self.max_f1_drop, self.int8_policy, self.min_identical)
        if self.task is not None:
            from pyner.tasks import check_task

            check_task(self.task)
        check_mode(self.external_data)
        return self


def check_output(model_dir: Path, out: Path, *, force: bool) -> None:
    """Refuse an -o that would overwrite the checkpoint or anything but a pyner artifact (before any work)."""
    src, dst = Path(model_dir).resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise UsageError(f"-o {out} is inside the checkpoint folder {model_dir}",
                         hint="write the artifact outside MODEL_DIR (an artifact there would be mixed with the checkpoint's files)")
    if dst in src.parents:
        raise UsageError(f"-o {out} contains the checkpoint folder {model_dir}: replacing it would delete the checkpoint",
                         hint="write the artifact elsewhere")
    for parent in dst.parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"-o {out}: {parent} is not a folder")
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        kind = "folder" if out.is_dir() else "path"
        raise art.ArtifactError(f"output {kind} exists: {out.absolute()}", hint="choose another -o, or pass --force to replace it")
    if out.is_symlink() or not out.is_dir():
        raise UsageError(f"-o {out} is {art.describe_path(out)}, not a folder: --force replaces only a pyner artifact "
                         "(a folder holding pyner.json) or an empty folder")
    if not (out / art.MANIFEST).is_file():
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UsageError(f"-o {out} is not a pyner artifact (no {art.MANIFEST}) and holds {len(entries)} entries ({shown}): "
                             "--force replaces only a pyner artifact or an empty folder",
                             hint="choose another -o, or empty the folder yourself")


def package(model_dir, out_dir, options: Options | None = None, **kwargs: Any) -> dict[str, Any]:
    """Package `model_dir` into the artifact folder `out_dir`; return the manifest written.

    Options come as an `Options` or as its fields by keyword. Raises UsageError (bad options, an -o
    that is not replaceable), InputError (bad checkpoint or evaluation file), ArtifactError (output
    exists without `force`), GuardError (accuracy guard refused; nothing written). SIGTERM, like
    SIGINT, stops it and removes everything it wrote; leftovers of a killed run are removed by the next.
    """
    opts = (options or Options(**kwargs)).check()
    out = Path(out_dir)
    check_output(Path(model_dir), out, force=opts.force)
    timings: dict[str, float] = {}
    progress = _Progress(opts.quiet)
    t_all = time.perf_counter()
    try:
        with art.terminate_as_exit():
            t0 = time.perf_counter()
            ckpt = inspect_checkpoint(model_dir, opts.task, opts.function_to_apply)
            max_length, stride = resolve_lengths(ckpt, opts.max_length, opts.stride)
            eval_sentences = None
            if opts.eval_data is not None and ckpt.task != art.TOKEN_CLASSIFICATION:
                raise UsageError(f"--eval-data holds BIO-tagged sentences for token classification; {model_dir} is a "
                                 f"{ckpt.task} model", hint="drop --eval-data; the guard compares against PyTorch on the golden texts")
            if opts.eval_data is not None:
                from .evaldata import read_bio

                eval_sentences = read_bio(opts.eval_data, ckpt.labels)
            digest = ckpt.digest()
            timings["check"] = time.perf_counter() - t0
            progress.step("check")

            with art.atomic_dir(out, force=opts.force) as folder, _quiet_libraries():
                build = _Build(ckpt, folder, opts, max_length=max_length, stride=stride, digest=digest,
                               eval_sentences=eval_sentences, timings=timings, progress=progress)
                manifest = build.run()
                timings["total"] = time.perf_counter() - t_all
                manifest["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
                manifest["peak_rss_mib"] = build.peak_rss
                manifest["rss_after_mib"] = build.rss_after
                manifest = art.finalize_manifest(folder, manifest)
                progress.step("manifest")
    finally:
        progress.close()
    return manifest


def _release_freed_memory() -> None:
    """Hand memory the process freed back to the OS (glibc keeps freed heap pages otherwise: after the
    export, PyTorch's and the exporter's small objects would stay resident through every later stage)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _rss_mib(field: str = "VmRSS:") -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) // 1024
    except (OSError, StopIteration, ValueError):
        return None


def _peak_rss_mib() -> int | None:
    """This process's peak resident memory so far (Linux VmHWM; not reset, so that /usr/bin/time still
    sees the whole command's peak): recorded after each stage, the stage that raised it is the one
    whose value jumps. None where /proc is not available."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration, ValueError):
        return None


class _Build:
    """The packaging stages, in the order that keeps one copy of the weights in memory at a time:
    load PyTorch -> PyTorch's reference logits on the guard's windows -> export (then PyTorch is freed)
    -> fuse -> precision -> place model.onnx (+ model.onnx.data) -> guard (ONNX Runtime) -> golden.
    Intermediate graphs live in `<temporary artifact folder>/.work`, so one folder holds everything a
    run writes (removed on failure, on SIGINT/SIGTERM, and by the next run after a SIGKILL)."""

    def __init__(self, ckpt, folder: Path, opts: Options, *, max_length: int, stride: int, digest: str,
                 eval_sentences, timings: dict[str, float], progress: _Progress):
        self.ckpt, self.folder, self.opts = ckpt, folder, opts
        self.work = folder / ".work"
        self.max_length, self.stride, self.digest = max_length, stride, digest
        self.eval_sentences = eval_sentences
        self.timings, self.progress = timings, progress
        self.peak_rss: dict[str, int | None] = {}
        self.rss_after: dict[str, int | None] = {}  # resident memory once each stage has finished
        self.manifest: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        import shutil

        for name, stage in (("load", self.load), ("reference", self.reference), ("export", self.export),
                            ("optimize", self.optimize), ("precision", self.precision), ("guard", self.guard),
                            ("golden", self.golden)):
            t0 = time.perf_counter()
            stage()
            self.timings[name] = time.perf_counter() - t0
            self.peak_rss[name] = _peak_rss_mib()
            _release_freed_memory()
            self.rss_after[name] = _rss_mib()
            self.progress.step(name)
        shutil.rmtree(self.work, ignore_errors=True)
        return self.manifest

    # -- stages ------------------------------------------------------------------------------------

    def load(self) -> None:
        import onnxruntime

        from . import tasks
        from .checkpoint import forward_input_names, load_model

        ckpt, opts = self.ckpt, self.opts
        self.torch_model = load_model(ckpt)
        self.input_names = tasks.input_names(ckpt.task, forward_input_names(self.torch_model))
        self.wrapper = tasks.wrapper(self.torch_model, ckpt.task, function=ckpt.function_to_apply, pooling=ckpt.embedding)
        self.pad_id = ckpt.tokenizer["pad_token_id"]
        self.vocab = int(self.torch_model.config.vocab_size)
        _write_tokenizer(ckpt, self.folder / art.TOKENIZER_FILE)
        _write_config(ckpt, self.folder / art.CONFIG_FILE)
        (self.folder / art.SERVING_FILE).write_text(
            tasks.serving_properties(ckpt.task, self.input_names, self.max_length, ckpt.embedding), encoding="utf-8")
        tok = dict(ckpt.tokenizer)
        tok.pop("num_special_tokens", None)
        tok.pop("model_max_length", None)
        self.manifest = {
            "format": art.FORMAT,
            "format_version": art.format_version_for(ckpt.task),
            "task": ckpt.task,
            "source": {"path": str(ckpt.path), "digest": self.digest,
                       "files": [p.relative_to(ckpt.path).as_posix() for p in ckpt.files()]},
            "model_type": ckpt.model_type,
            "labels": ckpt.labels,
            "label_scheme": ckpt.label_scheme,
            "precision": opts.precision,
            "opset": opts.opset,
            "onnxruntime_version": onnxruntime.__version__,
            "max_length": self.max_length,
            "stride": self.stride,
            "inputs": self.input_names,
            "outputs": tasks.outputs(ckpt.task),
            "tokenizer": {**tok, "rebuilt_by_transformers": ckpt.tokenizer_rebuilt},
            "external_data": None,
            "optimization": None,
            "quantization": None,
            "guard": None,
            "golden": {"file": art.GOLDEN_FILE, "score_tolerance": art.SCORE_TOLERANCE[opts.precision]},
        }
        if ckpt.task == art.TEXT_CLASSIFICATION:
            self.manifest["problem_type"] = ckpt.config.get("problem_type")
            self.manifest["function_to_apply"] = ckpt.function_to_apply
        if ckpt.task == art.FEATURE_EXTRACTION:
            e = ckpt.embedding
            self.manifest["pooling"] = {"mode": e.mode, "normalize": e.normalize, "source": e.source}
            self.manifest["embedding_dim"] = ckpt.hidden_size

    def reference(self) -> None:
        from pyner.golden import GOLDEN_TEXTS
        from pyner.runtime import encode_texts, open_tokenizer

        from .guard import torch_reference

        tokenizer = open_tokenizer(self.folder, art.Manifest(raw=self.manifest, path=self.folder / art.MANIFEST))
        self.ref = torch_reference(
            self.torch_model, lambda texts: encode_texts(tokenizer, texts), texts=[t for _, t in GOLDEN_TEXTS],
            input_names=self.input_names, pad_id=self.pad_id, eval_sentences=self.eval_sentences,
            eval_name=str(self.opts.eval_data) if self.opts.eval_data else None, task=self.ckpt.task, wrapper=self.wrapper)

    def export(self) -> None:
        from . import onnx_export

        (self.work / "raw").mkdir(parents=True)
        self.raw = onnx_export.export_onnx(self.wrapper, self.input_names, self.manifest["outputs"],
                                           self.work / "raw" / art.MODEL_FILE, opset=self.opts.opset, pad_id=self.pad_id,
                                           vocab_size=self.vocab)
        del self.torch_model, self.wrapper  # the reference logits are taken: PyTorch's copy of the weights goes

    def optimize(self) -> None:
        from .optimize import optimize, probe_feed

        feed = probe_feed(self.input_names, self.pad_id, self.vocab)
        self.fused, self.manifest["optimization"] = optimize(
            self.raw, self.raw.with_name("fused.onnx"), num_heads=self.ckpt.num_heads,
            hidden_size=self.ckpt.hidden_size, feed=feed)

    def precision(self) -> None:
        import shutil

        from . import onnxio
        from .optimize import to_fp16

        precision = self.opts.precision
        graph = self.fused
        if precision == "fp16":
            graph = self.work / "fp16" / art.MODEL_FILE
            self.manifest["fp16"] = to_fp16(self.fused, graph)
            self.manifest["notes"] = [FP16_NOTE]
        elif precision == "int8":
            from .int8 import POLICY, quantize_int8

            graph = self.fused.with_name("int8.onnx")  # beside the fused graph: it shares its embedding tables
            self.manifest["quantization"] = quantize_int8(self.fused, graph, policy=self.opts.int8_policy or POLICY,
                                                          exclude=self.opts.int8_exclude)
        if graph.parent != self.raw.parent:
            shutil.rmtree(self.raw.parent, ignore_errors=True)  # disk: only the graph in use is kept
        external = onnxio.wants_external(self.opts.external_data, onnxio.graph_bytes(graph), precision)
        self.manifest["external_data"] = onnxio.place(graph, self.folder, external=external)

    def guard(self) -> None:
        from pyner.runtime import Model

        from .guard import run_guard

        opts, ckpt = self.opts, self.ckpt
        runtime_model = Model.from_parts(self.folder, self.manifest)
        report = run_guard(runtime_model, self.ref, precision=opts.precision, label_scheme=ckpt.label_scheme,
                           max_f1_drop=opts.max_f1_drop, min_identical=opts.min_identical, enabled=opts.guard)
        del runtime_model
        self.manifest["guard"] = report
        if opts.guard and not report["passed"]:
            raise GuardError(
                f"accuracy guard refused the {opts.precision} export of {ckpt.path}: " + "; ".join(report["failures"]),
                hint="try another --precision, raise --max-f1-drop or lower --min-identical, or pass --no-guard to write it anyway (recorded in the manifest)",
            )

    def golden(self) -> None:
        from pyner.check import package_golden

        self.manifest["golden_summary"] = package_golden(self.folder, self.manifest)


def summary_lines(out: Path, manifest: dict[str, Any]) -> list[str]:
    """What `pyner package` prints once the artifact is in place."""
    files = manifest.get("files", {})
    size = sum(int(f.get("bytes", 0)) for f in files.values())
    model_bytes = int(files.get(art.MODEL_FILE, {}).get("bytes", 0))
    ext = manifest.get("external_data")
    ext_note = f" + {ext} {int(files.get(ext, {}).get('bytes', 0)) / 1e6:.2f} MB" if ext else ""
    g = manifest.get("guard") or {}
    opt = manifest.get("optimization") or {}
    fused = {k: v for k, v in (opt.get("fused_ops") or {}).items() if v}
    lines = [
        f"artifact: {out}",
        f"  digest: {art.artifact_digest((Path(out) / art.MANIFEST).read_bytes())} (pin it: --expect-digest)",
        f"  {manifest['model_type']} {manifest['precision']}, {len(manifest['labels'])} labels ({manifest['label_scheme']}), "
        f"max_length {manifest['max_length']}, stride {manifest['stride']}, inputs {', '.join(manifest['inputs'])}",
        f"  size: model.onnx {model_bytes / 1e6:.2f} MB{ext_note}, folder {size / 1e6:.2f} MB; "
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
        guard_line += (f", F1 {f['pytorch']:.2f} -> {f['artifact']:.2f} ({f['sentences']} sentences, "
                       f"{100 * f.get('identical_fraction', 1.0):.1f}% with PyTorch's tags)")
    lines.append(guard_line)
    gs = manifest.get("golden_summary") or {}
    lines.append(f"  golden: {gs.get('cases', '?')} texts, {gs.get('tokens', '?')} tokens (score tolerance "
                 f"{manifest['golden']['score_tolerance']:g})")
    if manifest["precision"] == "fp16":
        lines.append(f"  note: {FP16_NOTE}")
    return lines
