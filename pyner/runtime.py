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
        self.labels: list[str] = manifest.labels
        self.precision: str = manifest.precision
        self.max_length: int = manifest.max_length
        self.stride: int = manifest.stride
        self.input_names: list[str] = manifest.inputs
        self.tokenizer = open_tokenizer(self.folder, manifest)
        tok_info = TokenizerInfo.read(manifest.tokenizer, self.tokenizer)
        self.pad_id = tok_info.pad_token_id
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
        self.decoder = Decoder(self.labels, self.tokenizer, unk_token_id=tok_info.unk_token_id,
                               continuing_subword_prefix=tok_info.continuing_subword_prefix)

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
            out = self.run_batch([windows[i] for i in batch], output)
            for row, i in enumerate(batch):
                results[i] = out[row, : len(windows[i])]
        return results  # type: ignore[return-value]

    def run_batch(self, windows: Sequence[TokenWindow], output: str = "scores") -> np.ndarray:
        """Exactly one ONNX Runtime run over exactly these windows, padded to their longest (no
        re-planning): a float32 (n, longest, num_labels) array; rows past a window's length are padding."""
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

    def score(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_padding: float = DEFAULT_MAX_PADDING,
        output: str = "scores",
    ) -> list[ScoredText]:
        """The one scoring path: encode every text, run all their windows together (length-bucketed
        by `plan_batches`), and give each text its windows with their per-window outputs, in input order."""
        encoded = self.encode(texts)
        outputs = iter(self.forward([w for e in encoded for w in e.windows], batch_size=batch_size,
                                    max_batch_tokens=max_batch_tokens, output=output, max_padding=max_padding))
        return [ScoredText(e, tuple(next(outputs) for _ in e.windows)) for e in encoded]

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
        return [self.decode(s.encoded, s.scores, aggregation=aggregation, ignore_labels=ignore_labels)
                for s in self.score(texts, batch_size=batch_size, max_batch_tokens=max_batch_tokens)]

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
    texts = check_text_types(texts)
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
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    check: bool = True,
    expect_digest: str | None = None,
) -> Model:
    """Load an artifact folder: format version, every checksum (unless check=False), then the model.

    providers: ONNX Runtime execution providers ("cpu", "cuda" or full names); default CPU.
    threads: intra-op threads (default: ONNX Runtime's choice, the physical cores).
    expect_digest: "sha256:..." (`pyner verify` prints it): refuse any other artifact (ArtifactError).
    To re-run the artifact's golden fixtures too: `pyner.check.self_check(model)`.
    """
    if threads is not None and threads < 0:
        raise UsageError(f"threads must be >= 0, got {threads}")
    manifest = _art.load_checked(artifact_dir, checksums=check, expect_digest=expect_digest)
    return Model(Path(artifact_dir), manifest, providers=providers, threads=threads)


__all__ = ["Model", "Encoded", "ScoredText", "TokenWindow", "TokenizerInfo", "load", "plan_batches", "check_text_types"]
