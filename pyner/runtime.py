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

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import artifact as _art
from .artifact import Manifest
from .errors import ArtifactError, UsageError

DEFAULT_BATCH_SIZE = 32
# Measured (bench/, BENCHMARKS.md): on CPU the cost follows padded tokens, not the batch count, and
# attention over a few 512-token windows stays in cache where 16 do not. So batches are cut at a
# smaller token budget and wherever padding would exceed 5% of the real tokens. 2048 (from 4096):
# demo model, 2 threads, all WikiGold: 145 articles 10.05 -> 9.33 s, 1,696 sentences 6.72 -> 6.56 s
# (1024 was faster still on articles, 9.03 s, but slower on sentences, 7.55 s).
DEFAULT_MAX_BATCH_TOKENS = 2048
DEFAULT_MAX_PADDING = 0.05


@dataclass(frozen=True)
class Window:
    """One model window of a text, as the tokenizer produced it (offsets are code points)."""

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
    windows: tuple[Window, ...]

    @property
    def n_tokens(self) -> int:
        return sum(len(w) for w in self.windows)


def check_texts(texts: Any) -> list[str]:
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


def _providers(providers: Sequence[str] | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if not providers:
        return ["CPUExecutionProvider"]
    aliases = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    out = [aliases.get(p.lower(), p) for p in providers]
    missing = [p for p in out if p not in available]
    if missing:
        raise UsageError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime (available: {', '.join(available)})",
            hint="for CUDA install pyner[gpu] (onnxruntime-gpu) in place of onnxruntime",
        )
    return out


class Model:
    """An artifact loaded for inference. Create with `pyner.load(path)`."""

    def __init__(self, folder: Path, manifest: Manifest, *, providers: Sequence[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        from .decode import Decoder

        self.folder = Path(folder)
        self.manifest = manifest
        raw = manifest.raw
        self.labels: list[str] = manifest.labels
        self.precision: str = manifest.precision
        self.max_length: int = manifest.max_length
        self.stride: int = manifest.stride
        self.input_names: list[str] = manifest.inputs
        tok_info = manifest.tokenizer
        self.tokenizer = open_tokenizer(self.folder, manifest)
        self.pad_id = int(tok_info.get("pad_token_id") or 0)
        self.threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.folder / _art.MODEL_FILE), sess_options=_session_options(threads), providers=_providers(providers)
            )
        except UsageError:
            raise
        except Exception as exc:
            raise ArtifactError(f"{self.folder / _art.MODEL_FILE}: ONNX Runtime cannot load it ({exc})") from exc
        session_inputs = [i.name for i in self.session.get_inputs()]
        if sorted(session_inputs) != sorted(self.input_names):
            raise ArtifactError(f"{self.folder / _art.MODEL_FILE}: graph inputs {session_inputs} differ from the manifest's {self.input_names}")
        self._uses_types = "token_type_ids" in self.input_names
        prefix = tok_info.get("continuing_subword_prefix", _tokenizer_model_field(self.tokenizer, "continuing_subword_prefix"))
        unk_id = tok_info.get("unk_token_id")
        if unk_id is None:
            unk = tok_info.get("unk_token", _tokenizer_model_field(self.tokenizer, "unk_token"))
            unk_id = self.tokenizer.token_to_id(unk) if unk else None
        self.decoder = Decoder(self.labels, self.tokenizer, unk_token_id=unk_id, continuing_subword_prefix=prefix)

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
        windows: Sequence[Window],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        output: str = "scores",
        max_padding: float = DEFAULT_MAX_PADDING,
    ) -> list[np.ndarray]:
        """Run the model on windows, length-bucketed; return per window a float32 (T, num_labels) array, in input order."""
        if batch_size < 1 or max_batch_tokens < 1:
            raise UsageError(f"batch_size ({batch_size}) and max_batch_tokens ({max_batch_tokens}) must be positive")
        if not max_padding >= 0:
            raise UsageError(f"max_padding ({max_padding}) must be >= 0")
        results: list[np.ndarray | None] = [None] * len(windows)
        lengths = [len(w) for w in windows]
        for batch in plan_batches(lengths, batch_size=batch_size, max_batch_tokens=max_batch_tokens, max_padding=max_padding):
            out = self._run([windows[i] for i in batch], output)
            for row, i in enumerate(batch):
                results[i] = out[row, : len(windows[i])]
        return results  # type: ignore[return-value]

    def _run(self, windows: Sequence[Window], output: str) -> np.ndarray:
        longest = max(len(w) for w in windows)
        n = len(windows)
        ids = np.full((n, longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, longest), dtype=np.int64)
        types = np.zeros((n, longest), dtype=np.int64) if self._uses_types else None
        for r, w in enumerate(windows):
            t = len(w)
            ids[r, :t] = w.input_ids
            mask[r, :t] = 1
            if types is not None:
                types[r, :t] = w.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            feeds["token_type_ids"] = types
        return self.session.run([output], feeds)[0]

    def decode(
        self,
        encoded: Encoded,
        window_scores: Sequence[np.ndarray],
        *,
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Entities of one text from its windows' scores, exactly as transformers' pipeline decodes them."""
        parts = [(w.input_ids, w.offsets, w.special_tokens_mask, s) for w, s in zip(encoded.windows, window_scores)]
        return self.decoder.decode_text(encoded.text, parts, aggregation=aggregation, ignore_labels=ignore_labels)

    # -- the whole path -------------------------------------------------------------------------

    def predict(
        self,
        texts: Sequence[str],
        *,
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> list[list[dict[str, Any]]]:
        """Entities per text, in input order, with transformers' pipeline keys (see ARCHITECTURE.md)."""
        from .decode import check_aggregation

        aggregation = check_aggregation(aggregation)
        encoded = self.encode(texts)
        flat = [w for e in encoded for w in e.windows]
        scores = self.forward(flat, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        out, k = [], 0
        for e in encoded:
            n = len(e.windows)
            out.append(self.decode(e, scores[k : k + n], aggregation=aggregation, ignore_labels=ignore_labels))
            k += n
        return out

    def __repr__(self) -> str:
        return f"pyner.Model({str(self.folder)!r}, precision={self.precision}, labels={len(self.labels)}, max_length={self.max_length})"


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
    texts = check_texts(texts)
    if not texts:
        return []
    encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
    return [Encoded(text, tuple(_window(e) for e in [enc, *enc.overflowing])) for text, enc in zip(texts, encodings)]


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


def _window(enc) -> Window:
    return Window(
        input_ids=np.asarray(enc.ids, dtype=np.int64),
        type_ids=np.asarray(enc.type_ids, dtype=np.int64),
        offsets=np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2),
        special_tokens_mask=np.asarray(enc.special_tokens_mask, dtype=np.int8),
    )


def _tokenizer_model_field(tokenizer, name: str):
    try:
        return json.loads(tokenizer.to_str()).get("model", {}).get(name)
    except Exception:  # pragma: no cover - defensive
        return None


def load(
    artifact_dir: str | os.PathLike,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    check: bool = True,
    self_check: bool = False,
    expect_digest: str | None = None,
) -> Model:
    """Load an artifact folder: format version, every checksum (unless check=False), then the model.

    providers: ONNX Runtime execution providers ("cpu", "cuda" or full names); default CPU.
    threads: intra-op threads (default: ONNX Runtime's choice, the physical cores).
    self_check: also re-run the golden fixtures and raise ArtifactError on any difference.
    expect_digest: "sha256:..." (`pyner verify` prints it): refuse any other artifact (ArtifactError).
    """
    if threads is not None and threads < 0:
        raise UsageError(f"threads must be >= 0, got {threads}")
    manifest = _art.load_checked(artifact_dir, checksums=check, expect_digest=expect_digest)
    model = Model(Path(artifact_dir), manifest, providers=providers, threads=threads)
    if self_check:
        from .golden import self_check as _self_check

        _self_check(model)
    return model


__all__ = ["Model", "Encoded", "Window", "load", "plan_batches", "check_texts"]
