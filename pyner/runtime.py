"""The Python runtime: load an artifact, tokenize into windows, batch by length, run ONNX Runtime, decode.

This is the reference semantics that the JVM bridge and the sidecar reproduce (ARCHITECTURE.md,
"Runtime semantics"). It imports onnxruntime, tokenizers and numpy only: never torch or transformers.

    >>> import pyner
    >>> model = pyner.load("artifacts/demo")
    >>> model.predict(["Angela Merkel met Emmanuel Macron in Paris."])
    [[{'entity_group': 'PER', 'score': 0.99, 'word': 'angela merkel', 'start': 0, 'end': 13}, ...]]

A `Model` is thread-safe and reusable: ONNX Runtime sessions and `tokenizers` tokenizers may be
called from several threads at once, and the model keeps no per-call state.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import artifact as _art
from . import tasks as _tasks
from .artifact import Manifest
from .errors import ArtifactError, MissingDependency, UsageError

DEFAULT_BATCH_SIZE = 32
# Measured (bench/, BENCHMARKS.md): on CPU the cost follows padded tokens, not the batch count, and
# attention over a few 512-token windows stays in cache where 16 do not. So batches are cut at a
# smaller token budget and wherever padding would exceed 5% of the real tokens. 2048 (from 4096):
# demo model, 2 threads, all WikiGold: 145 articles 10.05 -> 9.33 s, 1,696 sentences 6.72 -> 6.56 s
# (1024 was faster still on articles, 9.03 s, but slower on sentences, 7.55 s).
DEFAULT_MAX_BATCH_TOKENS = 2048
DEFAULT_MAX_PADDING = 0.05
# On a GPU the cost of a run is nearly flat up to thousands of tokens (the launches and the weights'
# reads dominate small runs), so a batch is cut much later: 16384 padded tokens, the budget Hugging
# Face's text-embeddings-inference uses for BERT-class encoders on one GPU (its --max-batch-tokens
# default), i.e. 64 windows of 256 tokens or 32 of 512, with room for 256 short ones. Not yet
# measured on this project's GPU (docs/gpu.md): scripts/gpu-check times batch 1 to 256.
CUDA_BATCH_SIZE = 256
CUDA_MAX_BATCH_TOKENS = 16384
# What a missing GPU does when a CUDA device is asked for: "fail" raises (the default), "fallback"
# runs on the CPU after one logged warning naming why.
ON_MISSING_GPU = ("fail", "fallback")

log = logging.getLogger("pyner.runtime")


@dataclass(frozen=True)
class TokenWindow:
    """One model window of a text, as the tokenizer produced it (offsets are code points); no scores."""

    input_ids: np.ndarray  # int64 (T,)
    type_ids: np.ndarray  # int64 (T,)
    offsets: np.ndarray  # int64 (T, 2)
    special_tokens_mask: np.ndarray  # int8 (T,), 1 = special token

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class Encoded:
    """A text and its windows: the encoding followed by its overflowing encodings (never truncated)."""

    text: str
    windows: tuple[TokenWindow, ...]

    @property
    def n_tokens(self) -> int:
        return sum(len(w) for w in self.windows)


@dataclass(frozen=True)
class ScoredText:
    """A text's windows and, per window, the model's float32 (T, num_labels) output."""

    encoded: Encoded
    scores: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class TokenizerInfo:
    """The tokenizer facts the runtime needs: the manifest's "tokenizer" section, else tokenizer.json's
    model for the subword prefix and the unknown token. The one parser of them in Python."""

    pad_token_id: int
    unk_token_id: int | None
    continuing_subword_prefix: str | None

    @classmethod
    def read(cls, info: dict[str, Any], tokenizer) -> "TokenizerInfo":
        need_model = "continuing_subword_prefix" not in info or (info.get("unk_token_id") is None and "unk_token" not in info)
        model = json.loads(tokenizer.to_str()).get("model", {}) if need_model else {}
        unk_id = info.get("unk_token_id")
        if unk_id is None:
            unk = info.get("unk_token", model.get("unk_token"))
            unk_id = tokenizer.token_to_id(unk) if unk else None
        return cls(int(info.get("pad_token_id") or 0), unk_id, info.get("continuing_subword_prefix", model.get("continuing_subword_prefix")))


def check_text_types(texts: Any) -> list[str]:
    """Validate `texts` (a sequence of str); raise TypeError naming the first bad index."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"texts must be a sequence of str, not a single {type(texts).__name__}; wrap one text in a list")
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a sequence of str, not {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, not str" + ("; decode bytes first" if isinstance(t, bytes) else ""))
    return items


def _session_options(threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    # Kept identical in jvm_bridge (PynerModel): same options -> bit-identical scores.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or 0)
    so.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning. Measured (bench/, 2 cores shared with other
    # processes, as in a JVM pipeline or beside a sidecar): spinning cost 27-50% wall time at 2
    # threads; it only pays on an otherwise idle machine. Results are unaffected.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


@dataclass(frozen=True)
class Device:
    """Where a model runs: the CPU, or CUDA device `index` (ONNX Runtime's CUDAExecutionProvider)."""

    kind: str  # "cpu" or "cuda"
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def batch_size(self) -> int:
        """The default windows per run on this device."""
        return CUDA_BATCH_SIZE if self.kind == "cuda" else DEFAULT_BATCH_SIZE

    @property
    def max_batch_tokens(self) -> int:
        """The default padded tokens per run on this device (2048 measured on CPU; 16384 on CUDA)."""
        return CUDA_MAX_BATCH_TOKENS if self.kind == "cuda" else DEFAULT_MAX_BATCH_TOKENS


CPU = Device("cpu")


def parse_device(spec: "str | Device | None") -> Device:
    """"cpu", "cuda" (= "cuda:0") or "cuda:N" (also a Device, or None for the CPU); anything else is a UsageError."""
    if isinstance(spec, Device):
        return spec
    text = "cpu" if spec is None else str(spec).strip().lower()
    if text == "cpu":
        return CPU
    kind, colon, index = text.partition(":")
    if kind == "cuda" and (index.isdigit() if colon else True):
        return Device("cuda", int(index or 0))
    raise UsageError(f"device {spec!r}: use cpu, cuda or cuda:N (N a device id, 0 first)")


def check_on_missing_gpu(value: str) -> str:
    if value not in ON_MISSING_GPU:
        raise UsageError(f"on_missing_gpu {value!r}: use fail (raise when the GPU cannot be used) or fallback (run on "
                         "the CPU with one warning)")
    return value


class GpuUnavailable(Exception):
    """Why a CUDA device cannot be used; `error()` is what "fail" raises."""

    def __init__(self, message: str, *, hint: str | None = None, usage: bool = False):
        super().__init__(message)
        self.message, self.hint, self.usage = message, hint, usage

    def error(self) -> Exception:
        return (UsageError if self.usage else MissingDependency)(self.message, hint=self.hint)


_GPU_BUILD_HINT = ("install the GPU build in place of the CPU one (both are the module onnxruntime): pip uninstall -y "
                   "onnxruntime && pip install --force-reinstall 'onnxruntime-gpu[cuda,cudnn]==1.29.0'; see docs/gpu.md")
_CUDA_LIBS_HINT = ("onnxruntime-gpu needs CUDA 13 and cuDNN 9 of the major version it was built for: pip install "
                   "'onnxruntime-gpu[cuda,cudnn]', put their lib folders on LD_LIBRARY_PATH, or import torch (a CUDA "
                   "build of the same major version) before pyner; see docs/gpu.md")


def _preload_cuda_libraries(ort) -> str:
    """onnxruntime.preload_dlls() (loads CUDA/cuDNN from the nvidia-* wheels when they are installed),
    its printed complaints captured instead of written to stdout (predict writes results there)."""
    out = io.StringIO()
    if hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(out):
            try:
                ort.preload_dlls()
            except Exception as exc:  # a missing folder etc.: the checks below name what is missing
                print(f"preload_dlls: {exc}")
    return " ".join(out.getvalue().split())


def _load_cuda_provider_library(ort) -> None:
    """dlopen ONNX Runtime's CUDA provider library, which names the first CUDA library it cannot
    find (ONNX Runtime itself would only log that and go on without CUDA). Raises OSError."""
    import ctypes

    ctypes.CDLL(str(Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"))


def _cuda_device_count() -> tuple[int | None, str]:
    """(CUDA devices visible to this process, "") by the CUDA runtime's cudaGetDeviceCount, or
    (None, why) when the runtime library cannot be loaded or answers with an error."""
    import ctypes

    for name in ("libcudart.so.13", "libcudart.so.12", "libcudart.so"):
        try:
            cudart = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None, "the CUDA runtime (libcudart) cannot be loaded"
    count = ctypes.c_int(0)
    code = cudart.cudaGetDeviceCount(ctypes.byref(count))
    if code != 0:
        cudart.cudaGetErrorString.restype = ctypes.c_char_p
        return None, f"cudaGetDeviceCount failed: error {code} ({cudart.cudaGetErrorString(code).decode(errors='replace')})"
    return int(count.value), ""


def cuda_providers(device: Device) -> list:
    """ONNX Runtime providers for a CUDA device, after checking, in this order, that this onnxruntime
    is the GPU build, that its CUDA provider library finds the CUDA libraries, and that the device id
    exists. Raises GpuUnavailable naming the first thing missing."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise GpuUnavailable(
            f"device {device}: this onnxruntime {ort.__version__} is not the GPU build (onnxruntime-gpu): "
            f"CUDAExecutionProvider is not among its providers ({', '.join(available)})", hint=_GPU_BUILD_HINT)
    preload = _preload_cuda_libraries(ort)
    try:
        _load_cuda_provider_library(ort)
    except OSError as exc:
        raise GpuUnavailable(f"device {device}: the CUDA libraries that onnxruntime-gpu {ort.__version__} needs "
                             f"cannot be loaded ({exc})" + (f"; {preload}" if preload else ""), hint=_CUDA_LIBS_HINT) from None
    count, why = _cuda_device_count()
    if count == 0:
        raise GpuUnavailable(f"device {device}: no CUDA device is visible to this process "
                             f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})",
                             hint="check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES")
    if count is None:
        raise GpuUnavailable(f"device {device}: no usable CUDA device ({why})", hint="check nvidia-smi and the NVIDIA driver")
    if device.index >= count:
        raise GpuUnavailable(f"device {device}: device id {device.index} is out of range: this process sees {count} CUDA "
                             f"device(s), cuda:0 to cuda:{count - 1}", usage=True)
    # TF32 off: an fp32 artifact's golden fixtures hold on the GPU as on the CPU (fp16 matmuls are unaffected).
    return [("CUDAExecutionProvider", {"device_id": str(device.index), "use_tf32": "0"}), "CPUExecutionProvider"]


def create_session(path: Path, so, device: Device, on_missing_gpu: str = "fail"):
    """(session, the device it runs on, why it is not the one asked for or None).

    CUDA: on anything missing, "fail" raises (MissingDependency, or UsageError for a device id out of
    range); "fallback" logs one warning naming why and returns a CPU session."""
    import onnxruntime as ort

    check_on_missing_gpu(on_missing_gpu)
    if device.kind == "cuda":
        try:
            try:
                session = ort.InferenceSession(str(path), sess_options=so, providers=cuda_providers(device),
                                               enable_fallback=0)  # no silent CPU retry by onnxruntime itself
            except GpuUnavailable:
                raise
            except Exception as exc:
                if not any(k in str(exc).lower() for k in ("cuda", "cudnn", "cublas", "gpu", "device")):
                    raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
                raise GpuUnavailable(f"device {device}: the CUDA provider cannot create a session ({exc})",
                                     hint=_CUDA_LIBS_HINT) from None
            if "CUDAExecutionProvider" not in session.get_providers():
                raise GpuUnavailable(f"device {device}: ONNX Runtime did not start its CUDA provider (the CUDA or cuDNN "
                                     f"libraries; providers now {session.get_providers()})", hint=_CUDA_LIBS_HINT)
            return session, device, None
        except GpuUnavailable as exc:
            if on_missing_gpu == "fail":
                raise exc.error() from None
            log.warning("%s; running on the CPU instead (on_missing_gpu=fallback)", exc.message,
                        extra={"fields": {"event": "gpu_fallback", "requested": str(device), "device": "cpu"}})
            reason = exc.message
    else:
        reason = None
    try:
        session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
    return session, CPU, reason


class Model:
    """An artifact loaded for inference. Create with `pyner.load(path)`."""

    def __init__(self, folder: Path, manifest: Manifest, *, device: "str | Device | None" = None, on_missing_gpu: str = "fail",
                 threads: int | None = None, io_binding: bool | None = None):
        from .decode import Decoder

        self.folder = Path(folder)
        self.manifest = manifest
        self.labels: list[str] = manifest.labels
        self.precision: str = manifest.precision
        self.max_length: int = manifest.max_length
        self.stride: int = manifest.stride
        self.input_names: list[str] = manifest.inputs
        self.tokenizer = open_tokenizer(self.folder, manifest)
        tok_info = TokenizerInfo.read(manifest.tokenizer, self.tokenizer)
        self.pad_id = tok_info.pad_token_id
        self.threads = threads
        self.requested_device = parse_device(device)
        # device: where the session really runs; fallback_reason: why that is the CPU when CUDA was asked for.
        self.session, self.device, self.fallback_reason = create_session(
            self.folder / _art.MODEL_FILE, _session_options(threads), self.requested_device, on_missing_gpu)
        # IO binding: inputs copied to the device once per run, only `scores` bound as an output and
        # copied back. The default on CUDA; on the CPU it gives the same bits as a plain run (tested).
        self.io_binding = self.device.kind == "cuda" if io_binding is None else bool(io_binding)
        self.batch_size = self.device.batch_size
        self.max_batch_tokens = self.device.max_batch_tokens
        session_inputs = [i.name for i in self.session.get_inputs()]
        if sorted(session_inputs) != sorted(self.input_names):
            raise ArtifactError(f"{self.folder / _art.MODEL_FILE}: graph inputs {session_inputs} differ from the manifest's {self.input_names}")
        self._uses_types = "token_type_ids" in self.input_names
        self.task: str = manifest.task
        # text-classification: the function the graph's `scores` apply (for averaged windows, tasks.average_scores)
        self.function_to_apply: str | None = manifest.raw.get("function_to_apply")
        self.embedding_dim: int | None = manifest.raw.get("embedding_dim")
        self.decoder = (Decoder(self.labels, self.tokenizer, unk_token_id=tok_info.unk_token_id,
                                continuing_subword_prefix=tok_info.continuing_subword_prefix)
                        if self.task == _art.TOKEN_CLASSIFICATION else None)

    @classmethod
    def from_parts(cls, folder: str | os.PathLike, manifest: dict[str, Any], **kwargs: Any) -> "Model":
        """Load from a folder and an in-memory manifest (used while packaging, before checksums exist)."""
        folder = Path(folder)
        return cls(folder, Manifest(raw=dict(manifest), path=folder / _art.MANIFEST), **kwargs)

    # -- pieces ---------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenize texts into windows of at most max_length tokens overlapping by `stride`."""
        return encode_texts(self.tokenizer, texts)

    def forward(
        self,
        windows: Sequence[TokenWindow],
        *,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        output: "str | tuple[str, ...]" = "scores",
        max_padding: float = DEFAULT_MAX_PADDING,
    ) -> list:
        """Run the model on windows, length-bucketed; return per window, in input order, the output's float32
        row: (T, num_labels) for per-token outputs, (num_labels,) or (dim,) for per-text ones; with a tuple
        of output names, a dict of name -> row. batch_size / max_batch_tokens None: the device's defaults
        (`self.batch_size`, `self.max_batch_tokens`)."""
        batch_size = self.batch_size if batch_size is None else batch_size
        max_batch_tokens = self.max_batch_tokens if max_batch_tokens is None else max_batch_tokens
        if batch_size < 1 or max_batch_tokens < 1:
            raise UsageError(f"batch_size ({batch_size}) and max_batch_tokens ({max_batch_tokens}) must be positive")
        if not max_padding >= 0:
            raise UsageError(f"max_padding ({max_padding}) must be >= 0")
        results: list[np.ndarray | None] = [None] * len(windows)
        lengths = [len(w) for w in windows]
        for batch in plan_batches(lengths, batch_size=batch_size, max_batch_tokens=max_batch_tokens, max_padding=max_padding):
            out = self.run_batch([windows[i] for i in batch], output)
            for row, i in enumerate(batch):
                results[i] = ({name: window_row(a, row, lengths[i]) for name, a in zip(output, out)}
                              if isinstance(output, tuple) else window_row(out, row, lengths[i]))
        return results  # type: ignore[return-value]

    def run_batch(self, windows: Sequence[TokenWindow], output: "str | tuple[str, ...]" = "scores"):
        """Exactly one ONNX Runtime run over exactly these windows, padded to their longest (no
        re-planning): the output's float32 array, (n, longest, num_labels) for per-token outputs (rows past
        a window's length are padding) or (n, ...) for per-text ones; a list of them for a tuple of names."""
        names = list(output) if isinstance(output, tuple) else [output]
        shape = (len(windows), max(len(w) for w in windows))
        ids, mask = np.full(shape, self.pad_id, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._uses_types:
            feeds["token_type_ids"] = np.zeros(shape, dtype=np.int64)
        for r, w in enumerate(windows):
            ids[r, : len(w)] = w.input_ids
            mask[r, : len(w)] = 1
            if self._uses_types:
                feeds["token_type_ids"][r, : len(w)] = w.type_ids
        if not self.io_binding:
            outs = self.session.run(names, feeds)
        else:
            binding = self.session.io_binding()  # one per run: runs on several threads do not share it
            for name, array in feeds.items():
                binding.bind_cpu_input(name, array)
            for name in names:
                binding.bind_output(name, self.device.kind, self.device.index)
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            outs = binding.copy_outputs_to_cpu()
        return list(outs) if isinstance(output, tuple) else outs[0]

    def decode(
        self,
        encoded: Encoded,
        window_scores: Sequence[np.ndarray],
        *,
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Entities of one text from its windows' scores, exactly as transformers' pipeline decodes them."""
        _tasks.require(self.task, _art.TOKEN_CLASSIFICATION, self.folder, "predict")
        parts = [(w.input_ids, w.offsets, w.special_tokens_mask, s) for w, s in zip(encoded.windows, window_scores)]
        return self.decoder.decode_text(encoded.text, parts, aggregation=aggregation, ignore_labels=ignore_labels)

    # -- the whole path -------------------------------------------------------------------------

    def score(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_padding: float = DEFAULT_MAX_PADDING,
        output: "str | tuple[str, ...]" = "scores",
        first_window_only: bool = False,
    ) -> list[ScoredText]:
        """The one scoring path: encode every text, run all their windows together (length-bucketed
        by `plan_batches`), and give each text its windows with their per-window outputs, in input order.
        first_window_only: each text keeps (and runs) only its first window (classification with
        truncation, embeddings)."""
        encoded = self.encode(texts)
        if first_window_only:
            encoded = [Encoded(e.text, e.windows[:1]) for e in encoded]
        outputs = iter(self.forward([w for e in encoded for w in e.windows], batch_size=batch_size,
                                    max_batch_tokens=max_batch_tokens, output=output, max_padding=max_padding))
        return [ScoredText(e, tuple(next(outputs) for _ in e.windows)) for e in encoded]

    def predict(
        self,
        texts: Sequence[str],
        *,
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Entities per text, in input order, with transformers' pipeline keys (see ARCHITECTURE.md)."""
        from .decode import check_aggregation

        _tasks.require(self.task, _art.TOKEN_CLASSIFICATION, self.folder, "predict")
        aggregation = check_aggregation(aggregation)
        return [self.decode(s.encoded, s.scores, aggregation=aggregation, ignore_labels=ignore_labels)
                for s in self.score(texts, batch_size=batch_size, max_batch_tokens=max_batch_tokens)]

    def classify(
        self,
        texts: Sequence[str],
        *,
        top_k: int | None = 1,
        long_text: str = "truncate",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Text classification: per text, its labels ranked by score (keys label, score), the first `top_k`
        (0 or None: every label), as transformers' pipeline("text-classification", top_k=...) gives them.
        long_text: "truncate" (default: the first window, the pipeline with truncation=True) or "average"
        (every window, their logits averaged; docs/tasks.md)."""
        _tasks.require(self.task, _art.TEXT_CLASSIFICATION, self.folder, "classify")
        k = _tasks.check_top_k(top_k, len(self.labels))
        return [_tasks.rank(s, self.labels, k)
                for s in self.class_scores(texts, long_text=long_text, batch_size=batch_size, max_batch_tokens=max_batch_tokens)]

    def class_scores(self, texts: Sequence[str], *, long_text: str = "truncate", batch_size: int | None = None,
                     max_batch_tokens: int | None = None) -> list[np.ndarray]:
        """Text classification: per text, the float32 score of every class in class order (before ranking)."""
        _tasks.require(self.task, _art.TEXT_CLASSIFICATION, self.folder, "classify")
        plan = _tasks.plan(self.task, long_text)
        scored = self.score(texts, output=plan.outputs, first_window_only=plan.first_window_only,
                            batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        return [_tasks.class_scores([o if isinstance(o, dict) else {plan.outputs[0]: o} for o in s.scores],
                                    self.function_to_apply or "none") for s in scored]

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None,
              max_batch_tokens: int | None = None) -> np.ndarray:
        """Sentence embeddings: a float32 (len(texts), dim) array, row i the embedding of texts[i] (its first
        window: truncation at max_length, as sentence-transformers truncates at max_seq_length)."""
        _tasks.require(self.task, _art.FEATURE_EXTRACTION, self.folder, "embed")
        scored = self.score(texts, output="embeddings", first_window_only=True, batch_size=batch_size,
                            max_batch_tokens=max_batch_tokens)
        if not scored:
            return np.zeros((0, int(self.embedding_dim or 0)), dtype=np.float32)
        return np.stack([np.asarray(s.scores[0], dtype=np.float32) for s in scored])

    def infer(self, texts: Sequence[str], **options: Any) -> list[Any]:
        """The artifact's task on texts, one result per text: entities (predict's options), ranked labels
        (classify's), or an embedding as a list of floats. What the CLI prints."""
        if self.task == _art.TEXT_CLASSIFICATION:
            return self.classify(texts, **options)
        if self.task == _art.FEATURE_EXTRACTION:
            return [row.tolist() for row in self.embed(texts, **options)]
        return self.predict(texts, **options)

    def __repr__(self) -> str:
        return (f"pyner.Model({str(self.folder)!r}, task={self.task}, precision={self.precision}, labels={len(self.labels)}, "
                f"max_length={self.max_length}, device={self.device})")


def open_tokenizer(folder: str | os.PathLike, manifest: Manifest):
    """The artifact's tokenizer, set up as the runtime uses it: no padding, truncation at max_length with
    the artifact's stride (overflowing windows). Needs no ONNX Runtime session: the export stage tokenizes
    its guard texts with it before the model is converted (one model in memory at a time)."""
    from tokenizers import Tokenizer

    path = Path(folder) / _art.TOKENIZER_FILE
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot be loaded by tokenizers ({exc})") from exc
    tokenizer.no_padding()
    if manifest.stride >= manifest.max_length - 2 or manifest.stride < 0:
        raise ArtifactError(f"{manifest.path}: stride {manifest.stride} must be >= 0 and well below max_length {manifest.max_length}")
    tokenizer.enable_truncation(manifest.max_length, stride=manifest.stride, strategy="longest_first", direction="right")
    return tokenizer


def encode_texts(tokenizer, texts: Sequence[str]) -> list[Encoded]:
    """Tokenize texts into windows with a tokenizer from `open_tokenizer` (see `Model.encode`)."""
    texts = check_text_types(texts)
    if not texts:
        return []
    encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
    return [Encoded(text, tuple(_window(e) for e in [enc, *enc.overflowing])) for text, enc in zip(texts, encodings)]


def window_row(out: np.ndarray, row: int, length: int) -> np.ndarray:
    """One window's row of a run's output: per-token outputs (batch, sequence, ...) cut to its length."""
    return out[row, :length] if out.ndim >= 3 else out[row]


def plan_batches(
    lengths: Sequence[int], *, batch_size: int, max_batch_tokens: int, max_padding: float | None = None
) -> list[list[int]]:
    """Group indices into batches: longest first, at most `batch_size` per batch and at most
    `max_batch_tokens` padded tokens (count x longest); a window longer than the budget runs alone.
    With `max_padding`, a batch also closes when padding it to its longest window would exceed its
    real tokens by more than that fraction (None: no such bound). Mirrored by the JVM's Batches.plan."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    real = 0
    for i in order:
        n = lengths[i]
        if current and (
            len(current) >= batch_size
            or (len(current) + 1) * longest > max_batch_tokens
            or (max_padding is not None and (len(current) + 1) * longest > (real + n) * (1.0 + max_padding))
        ):
            batches.append(current)
            current = []
        if not current:
            longest = n
            real = 0
        current.append(i)
        real += n
    if current:
        batches.append(current)
    return batches


def _window(enc) -> TokenWindow:
    return TokenWindow(
        input_ids=np.asarray(enc.ids, dtype=np.int64),
        type_ids=np.asarray(enc.type_ids, dtype=np.int64),
        offsets=np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2),
        special_tokens_mask=np.asarray(enc.special_tokens_mask, dtype=np.int8),
    )


def load(
    artifact_dir: str | os.PathLike,
    *,
    device: "str | Device | None" = None,
    on_missing_gpu: str = "fail",
    threads: int | None = None,
    check: bool = True,
    expect_digest: str | None = None,
    io_binding: bool | None = None,
) -> Model:
    """Load an artifact folder: format version, every checksum (unless check=False), then the model.

    device: "cpu" (default), "cuda" (= "cuda:0") or "cuda:N": ONNX Runtime's CUDAExecutionProvider
      (onnxruntime-gpu), CPU for the nodes it does not take. `model.device` says where it runs.
    on_missing_gpu: for a CUDA device, "fail" (default) raises when it cannot be used, naming what is
      missing: the onnxruntime-gpu build or the CUDA libraries (MissingDependency, exit 6), the device
      id (UsageError, exit 2); "fallback" runs on the CPU after one logged warning (model.fallback_reason).
    io_binding: bind inputs/outputs (default: on CUDA only); same results either way (docs/gpu.md).
    threads: intra-op threads (default: ONNX Runtime's choice, the physical cores).
    The batch defaults follow the device: 32 windows / 2048 padded tokens on CPU, 256 / 16384 on CUDA.
    expect_digest: "sha256:..." (`pyner verify` prints it): refuse any other artifact (ArtifactError).
    To re-run the artifact's golden fixtures too: `pyner.check.self_check(model)`.
    """
    if threads is not None and threads < 0:
        raise UsageError(f"threads must be >= 0, got {threads}")
    parse_device(device)
    check_on_missing_gpu(on_missing_gpu)
    manifest = _art.load_checked(artifact_dir, checksums=check, expect_digest=expect_digest)
    return Model(Path(artifact_dir), manifest, device=device, on_missing_gpu=on_missing_gpu, threads=threads,
                 io_binding=io_binding)


__all__ = ["Model", "Device", "Encoded", "ScoredText", "TokenWindow", "TokenizerInfo", "load", "parse_device", "plan_batches",
           "check_text_types"]
