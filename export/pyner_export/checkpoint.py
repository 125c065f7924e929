"""Validate and load a local Hugging Face checkpoint (token classification, text classification, an encoder).

`inspect_checkpoint` reads only JSON files (no torch) and names the first problem it finds in one
line; `check_weights` / `load_model` import torch lazily and never unpickle arbitrary objects
(`torch.load(weights_only=True)`; safetensors preferred).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyner.errors import InputError, UsageError

from .labels import detect_scheme

# model_type -> offset of the first position id (RoBERTa-style models count positions from pad id + 1).
# Every family here has the full parity proof (tests/factory.FAMILIES; docs/package.md "Families").
SUPPORTED = {
    "bert": 0,
    "distilbert": 0,
    "electra": 0,
    "roberta": 2,
    "xlm-roberta": 2,
    "deberta-v2": 0,
    "camembert": 2,
    "mpnet": 2,
    "data2vec-text": 2,
    "ernie": 0,
    "megatron-bert": 0,
    "squeezebert": 0,
    "mobilebert": 0,
    "roformer": 0,
    "albert": 0,
    "rembert": 0,
    "big_bird": 0,
    "deberta": 0,
    "modernbert": 0,
    "longformer": 2,
}
SUPPORTED_LIST = ", ".join(SUPPORTED)
# Encoder families with a ...ForTokenClassification head that pyner refuses, and why.
REFUSED = {
    "xlm": "transformers has only a slow (Python, Moses-based) tokenizer for XLM and no converter to a fast one",
    "flaubert": "transformers has only a slow (Python, Moses-based) tokenizer for FlauBERT and no converter to a fast one",
    "funnel": "its ONNX export is not faithful: the pooling's relative-position GatherElements fails in ONNX Runtime "
              "at sequence lengths other than the traced one",
    "nystromformer": "transformers' Nystromformer needs the sequence length to be num_landmarks or a multiple of it "
                     "(it fails on other lengths in PyTorch), so a window of arbitrary length cannot be scored",
    "convbert": "its convolutions read the padding: in PyTorch itself a text's logits change with the padding its "
                "batch adds (0.03 on a tiny model), so batched windows cannot equal transformers' pipeline",
}
NOT_YET_PROVEN = "not yet proven (no parity proof against transformers' pipeline and the JVM yet)"
# Families whose position embeddings go beyond BERT's 512 (the window length then comes from the checkpoint).
LONG_CONTEXT = frozenset({"modernbert", "longformer"})
HARD_MAX_LENGTH = 512
# Files that betray a slow (Python/sentencepiece) tokenizer when tokenizer.json is absent.
SLOW_TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spm.model",
                        "spiece.model", "tokenizer.model")


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    model_type: str
    labels: list[str]
    label_scheme: str
    weight_files: list[Path]
    tokenizer_json: Path
    tokenizer_config: dict[str, Any]
    tokenizer: dict[str, Any] = field(default_factory=dict)
    # The tokenizer transformers really uses for this checkpoint (its backend's JSON). It can differ
    # from tokenizer.json: when tokenizer_config.json names a model class (BertTokenizer,
    # XLMRobertaTokenizer, ...), transformers 5 rebuilds the tokenizer from the vocabulary with that
    # class's normalizer, pre-tokenizer and decoder. The artifact carries this one, so that pyner
    # tokenizes exactly as the checkpoint's pipeline does.
    tokenizer_str: str = ""
    tokenizer_rebuilt: bool = False
    task: str = "token-classification"
    embedding: Any = None  # feature-extraction: tasks.Embedding (pooling, normalize, max_seq_length)
    function_to_apply: str | None = None  # text-classification: what the graph's scores apply

    @property
    def num_heads(self) -> int:
        c = self.config
        return int(c.get("num_attention_heads") or c.get("n_heads"))

    @property
    def hidden_size(self) -> int:
        c = self.config
        return int(c.get("hidden_size") or c.get("dim"))

    @property
    def position_limit(self) -> int | None:
        """Longest window the model's position embeddings allow (special tokens included)."""
        n = self.config.get("max_position_embeddings")
        if not isinstance(n, int):
            return None
        return n - SUPPORTED[self.model_type]

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.path).parts))

    def digest(self) -> str:
        """sha256 over the checkpoint's files: each relative name, its size and its content, in sorted order."""
        h = hashlib.sha256()
        for p in self.files():
            rel = p.relative_to(self.path).as_posix()
            h.update(rel.encode("utf-8") + b"\0" + str(p.stat().st_size).encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        return "sha256:" + h.hexdigest()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from exc


def _labels(cpath: Path, config: dict[str, Any], task: str) -> list[str]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise InputError(f"{cpath}: no id2label; a {task} config must name its labels")
    try:
        ids = sorted(int(k) for k in id2label)
    except ValueError as exc:
        raise InputError(f"{cpath}: id2label keys must be integers ({exc})") from exc
    if ids != list(range(len(ids))):
        raise InputError(f"{cpath}: id2label keys must be 0..{len(ids) - 1} without gaps, got {ids}")
    labels = [str(id2label.get(str(i), id2label.get(i))) for i in ids]
    if len(set(labels)) != len(labels):
        raise InputError(f"{cpath}: id2label has duplicate labels: {labels}")
    return labels


def inspect_checkpoint(path, task: str | None = None, function_to_apply: str | None = None) -> Checkpoint:
    """Check that `path` is a supported checkpoint of a task pyner packages (token classification, text
    classification, an encoder for embeddings; `task` overrides what the folder says) with a fast tokenizer."""
    d = Path(path)
    if not d.exists():
        raise InputError(f"checkpoint folder not found: {d}")
    if not d.is_dir():
        raise InputError(f"not a folder: {d} (a Hugging Face checkpoint is a folder holding config.json)")
    cpath = d / "config.json"
    if not cpath.is_file():
        raise InputError(f"{cpath}: missing; {d} is not a Hugging Face checkpoint",
                         hint="save one with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)")
    config = _read_json(cpath, "the model config")
    if not isinstance(config, dict):
        raise InputError(f"{cpath}: not a JSON object")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        why = REFUSED.get(model_type)
        if why is None and isinstance(model_type, str) and _has_token_classification(model_type):
            why = NOT_YET_PROVEN
        reason = f" ({why})" if why else ""
        raise InputError(f"{cpath}: model_type {model_type!r} is not supported{reason}; supported: {SUPPORTED_LIST}")
    from . import tasks

    task = tasks.detect_task(d, config, task)
    if task == tasks.FEATURE_EXTRACTION:
        labels: list[str] = []
    else:
        labels = _labels(cpath, config, task)
    embedding = tasks.embedding_config(d) if task == tasks.FEATURE_EXTRACTION else None
    function = (tasks.classification_function(config, labels, function_to_apply)
                if task == tasks.TEXT_CLASSIFICATION else None)
    if function_to_apply is not None and task != tasks.TEXT_CLASSIFICATION:
        raise UsageError(f"--function-to-apply applies to text-classification models; {d} is {task}")

    weight_files = _find_weights(d)

    tj = d / "tokenizer.json"
    tcfg_path = d / "tokenizer_config.json"
    if not tj.is_file():
        slow = [n for n in SLOW_TOKENIZER_FILES if (d / n).is_file()]
        if slow:
            raise InputError(
                f"{d}: only a slow tokenizer ({', '.join(slow)}), no tokenizer.json; pyner needs a fast tokenizer",
                hint="convert it once: AutoTokenizer.from_pretrained(DIR, use_fast=True).save_pretrained(DIR)",
            )
        raise InputError(f"{tj}: missing; the checkpoint has no tokenizer",
                         hint="save the fast tokenizer with tokenizer.save_pretrained(DIR)")
    tcfg = _read_json(tcfg_path, "the tokenizer config") if tcfg_path.is_file() else {}
    smap_path = d / "special_tokens_map.json"
    if smap_path.is_file():
        smap = _read_json(smap_path, "the special tokens map")
        tcfg = {**{k: v for k, v in smap.items() if isinstance(smap, dict)}, **tcfg}
    ckpt = Checkpoint(path=d.absolute(), config=config, model_type=model_type, labels=labels,
                      label_scheme=detect_scheme(labels) if task == tasks.TOKEN_CLASSIFICATION else "none",
                      weight_files=weight_files, tokenizer_json=tj, tokenizer_config=tcfg, task=task,
                      embedding=embedding, function_to_apply=function)
    ckpt.tokenizer_str = effective_tokenizer(d, tj)
    ckpt.tokenizer_rebuilt = _canonical(ckpt.tokenizer_str) != _canonical(tj.read_text(encoding="utf-8"))
    ckpt.tokenizer = tokenizer_info(ckpt)
    return ckpt


def _has_token_classification(model_type: str) -> bool:
    """Whether transformers has a ...ForTokenClassification model for `model_type`."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES
    except ImportError:
        return False
    return model_type in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES


def _canonical(tokenizer_json: str) -> str:
    raw = json.loads(tokenizer_json)
    raw["truncation"] = None
    raw["padding"] = None
    return json.dumps(raw, sort_keys=True)


def effective_tokenizer(d: Path, tj: Path) -> str:
    """The backend tokenizer JSON that transformers' AutoTokenizer builds for checkpoint `d`."""
    from transformers import AutoTokenizer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except Exception as exc:  # transformers raises many types for a bad tokenizer
        raise InputError(f"{tj}: transformers cannot load this tokenizer ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
        raise InputError(f"{d}: transformers loads a slow tokenizer ({type(tok).__name__}); pyner needs a fast tokenizer",
                         hint="convert it once: AutoTokenizer.from_pretrained(DIR, use_fast=True).save_pretrained(DIR)")
    try:
        return tok.backend_tokenizer.to_str()
    except Exception as exc:  # a custom (Python) component, e.g. RoFormerTokenizer's jieba pre-tokenizer
        raise InputError(f"{d}: transformers' {type(tok).__name__} has a custom Python component that tokenizer.json "
                         f"cannot hold ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); pyner "
                         "needs a tokenizer that both runtimes load from tokenizer.json") from exc


def _find_weights(d: Path) -> list[Path]:
    index = d / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index, "the weights index")
        names = sorted(set((data.get("weight_map") or {}).values())) if isinstance(data, dict) else []
        if not names:
            raise InputError(f"{index}: lists no weight files")
        files = [d / n for n in names]
        for f in files:
            if not f.is_file():
                raise InputError(f"{f}: missing (listed in {index.name})")
        return files
    safetensors = sorted(d.glob("*.safetensors"))
    if safetensors:
        return [d / "model.safetensors"] if (d / "model.safetensors").is_file() else safetensors
    bins = sorted(d.glob("pytorch_model*.bin"))
    if bins:
        return bins
    raise InputError(f"{d}: no weights (model.safetensors or pytorch_model.bin)")


def _token_str(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_info(ckpt: Checkpoint) -> dict[str, Any]:
    """What runtimes need to know about the tokenizer, read from tokenizer.json and its config."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(ckpt.tokenizer_str) if ckpt.tokenizer_str else Tokenizer.from_file(str(ckpt.tokenizer_json))
    except Exception as exc:  # tokenizers raises a bare Exception on bad files
        raise InputError(f"{ckpt.tokenizer_json}: not a valid fast tokenizer ({str(exc).splitlines()[0]})") from exc
    raw = json.loads(ckpt.tokenizer_str) if ckpt.tokenizer_str else _read_json(ckpt.tokenizer_json, "the tokenizer")
    model = raw.get("model") or {}
    kind = model.get("type")
    unk = _token_str(ckpt.tokenizer_config.get("unk_token"))
    if unk is None:
        if kind == "Unigram" and model.get("unk_id") is not None:
            unk = model["vocab"][model["unk_id"]][0]
        else:
            unk = model.get("unk_token")
    pad = _token_str(ckpt.tokenizer_config.get("pad_token"))
    pad_id = tok.token_to_id(pad) if pad is not None else None
    if pad_id is None:
        pad_id = ckpt.config.get("pad_token_id")
    if pad_id is None:
        pad_id = 0
    norm = raw.get("normalizer") or {}
    norms = norm.get("normalizers", [norm]) if isinstance(norm, dict) else []
    lowercase = any((n or {}).get("type") == "Lowercase" or (n or {}).get("lowercase") is True for n in norms)
    return {
        "continuing_subword_prefix": model.get("continuing_subword_prefix"),
        "unk_token": unk,
        "unk_token_id": tok.token_to_id(unk) if unk is not None else None,
        "pad_token_id": int(pad_id),
        "model": kind,
        "lowercase": lowercase,
        "num_special_tokens": tok.post_processor.num_special_tokens_to_add(False) if tok.post_processor else 0,
        "model_max_length": ckpt.tokenizer_config.get("model_max_length"),
    }


def window_limit(ckpt: Checkpoint) -> int:
    """Longest window (special tokens included) the artifact may use: the position embeddings' limit, at most
    512 (LONG_CONTEXT families: their own limit); BigBird with block-sparse attention: at most the length up to
    which transformers itself runs full attention ((5 + 2 * num_random_blocks) * block_size tokens), which is the
    attention the export holds."""
    positions = ckpt.position_limit
    if ckpt.model_type in LONG_CONTEXT:
        limit = positions or HARD_MAX_LENGTH
    else:
        limit = min(HARD_MAX_LENGTH, positions or HARD_MAX_LENGTH)
    c = ckpt.config
    if ckpt.model_type == "big_bird" and c.get("attention_type", "block_sparse") == "block_sparse":
        limit = min(limit, (5 + 2 * int(c.get("num_random_blocks", 3))) * int(c.get("block_size", 64)))
    return limit


def resolve_lengths(ckpt: Checkpoint, max_length: int | None, stride: int | None) -> tuple[int, int]:
    """Default and check the window length and stride (UsageError names the limit)."""
    limit = window_limit(ckpt)
    embedding = ckpt.embedding
    if max_length is None and embedding is not None and embedding.max_seq_length:
        max_length = min(embedding.max_seq_length, limit)  # sentence-transformers' max_seq_length
    if max_length is None:
        tml = ckpt.tokenizer.get("model_max_length")
        max_length = int(tml) if isinstance(tml, (int, float)) and 0 < tml < 1e9 else limit
        max_length = min(max_length, limit)
    elif max_length > limit:
        raise UsageError(f"--max-length {max_length} exceeds what the model allows ({limit} tokens)")
    specials = ckpt.tokenizer.get("num_special_tokens", 0)
    if max_length <= specials + 1:
        raise UsageError(f"--max-length {max_length} is too small: the model adds {specials} special tokens per window")
    if stride is None:
        stride = 0 if embedding is not None else max_length // 4  # embeddings run the first window only
    room = max_length - specials
    if stride < 0 or stride >= room:
        raise UsageError(f"--stride {stride} must be between 0 and {room - 1} (max_length {max_length} minus {specials} special tokens, minus 1)")
    return max_length, stride


def check_weights(path: Path) -> None:
    """Validate one weights file without reading its tensors into memory (a 2 GB checkpoint must not be
    held twice): safetensors' header must cover the whole file; a .bin is opened memory-mapped with
    weights_only (never unpickling arbitrary objects). InputError names a truncated or unsafe file."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                f.keys()
            return
        try:
            torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) format: no mmap
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable or truncated weights ({msg[:200]})",
                         hint="re-save the checkpoint with model.save_pretrained(DIR)") from exc


def load_model(ckpt: Checkpoint):
    """The PyTorch model in eval mode, eager attention (traceable), with every weight from the files."""
    import torch
    from transformers import AutoConfig

    from .tasks import auto_class, ignorable_missing

    for f in ckpt.weight_files:  # validate every file safely before transformers reads them
        check_weights(f)
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(str(ckpt.path))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = auto_class(ckpt.task).from_pretrained(
            str(ckpt.path), config=config, attn_implementation="eager", output_loading_info=True,
            dtype=torch.float32,
        )
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{ckpt.path}: transformers could not load the model ({str(exc).splitlines()[0][:300]})") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    missing = [k for k in info.get("missing_keys", []) if not ignorable_missing(ckpt.task, k)]
    if missing:
        raise InputError(
            f"{ckpt.path}: the weights do not match the config; {len(missing)} missing, e.g. {', '.join(sorted(missing)[:3])}",
        )
    if ckpt.model_type == "longformer":
        _exportable_longformer(model)
    if ckpt.model_type == "big_bird":
        # windows are at most window_limit() tokens, where BigBird runs full attention (it switches itself)
        model.base_model.set_attention_type("original_full")
    return model.eval()


def _exportable_longformer(model) -> None:
    """Longformer's local attention in a form the TorchScript exporter keeps for every sequence length.

    transformers pads each batch to a multiple of the attention window and computes the band with
    chunked matmuls whose shapes the trace freezes. The same math without padding: every query attends
    to the keys within one_sided_attn_window_size positions of it that the mask keeps (padded keys get
    finfo.min added, as Longformer does; padded queries get zero probabilities), as one masked
    (L x L) attention. Global attention (global_attention_mask) is not an input of the artifact and the
    token-classification pipeline never passes it. Checked against the unchanged model on a probe batch
    longer than the window: a checkpoint where the two differ is refused."""
    import math

    import torch

    base = model.base_model
    length = min(2 * max(_windows(model.config)) + 7, int(model.config.max_position_embeddings) - SUPPORTED["longformer"])
    probe = torch.randint(5, max(6, model.config.vocab_size), (2, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(probe)
    mask[1, probe.shape[1] // 2:] = 0
    probe[mask == 0] = model.config.pad_token_id
    with torch.no_grad():
        want = _main_output(model(input_ids=probe, attention_mask=mask))

    def attention(self, hidden_states, attention_mask=None, is_index_masked=None, is_index_global_attn=None,
                  is_global_attn=None, output_attentions=False):
        b, n, _ = hidden_states.shape
        shape = (b, n, self.num_heads, self.head_dim)
        q = (self.query(hidden_states) / math.sqrt(self.head_dim)).view(shape).transpose(1, 2)
        k = self.key(hidden_states).view(shape).transpose(1, 2)
        v = self.value(hidden_states).view(shape).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2))
        low = torch.finfo(scores.dtype).min
        scores = scores + (attention_mask != 0).to(scores.dtype)[:, None, None, :] * low
        pos = torch.arange(n, device=hidden_states.device)
        outside = (pos[None, :] - pos[:, None]).abs() > self.one_sided_attn_window_size
        scores = scores.masked_fill(outside[None, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        probs = probs.masked_fill(is_index_masked[:, None, :, None], 0.0)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, n, self.embed_dim)
        return (out,)

    def no_padding(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, pad_token_id):
        return 0, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds

    for layer in base.encoder.layer:
        layer.attention.self.forward = attention.__get__(layer.attention.self)
    base._pad_to_window_size = no_padding.__get__(base)
    with torch.no_grad():
        got = _main_output(model(input_ids=probe, attention_mask=mask))
    keep = mask.bool() if got.dim() >= 2 and got.shape[:2] == mask.shape else torch.ones(got.shape[0], dtype=torch.bool)
    diff = float((got - want).abs()[keep].max())
    if not diff <= 1e-4:
        raise InputError(f"model_type 'longformer': pyner's exportable local attention differs from transformers' by "
                         f"{diff:.3g} in logits on this checkpoint; not packaged")


def _main_output(out):
    """A model's logits, or an encoder's last hidden state."""
    logits = getattr(out, "logits", None)
    return logits if logits is not None else out.last_hidden_state


def _windows(config) -> list[int]:
    w = config.attention_window
    return [int(w)] if isinstance(w, int) else [int(x) for x in w]


def forward_input_names(model) -> list[str]:
    """ONNX input names: input_ids, attention_mask, and token_type_ids when the model takes them.

    A model takes token types when its forward accepts them and it has more than one type
    (RoBERTa and XLM-R accept the argument but have a single type; DeBERTa-v3 has none).
    """
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    types = getattr(model.config, "type_vocab_size", 0) or 0
    if "token_type_ids" in params and types > 1:
        names.append("token_type_ids")
    return names
