"""The export stage's one place per task: which task a checkpoint is, which transformers class loads it,
which graph head the export adds, and what the guard compares (docs/tasks.md).

- token-classification: `...ForTokenClassification`; outputs `scores` (softmax) and `logits`.
- text-classification: `...ForSequenceClassification`; outputs `logits` and `scores` (the pipeline's
  function: softmax, sigmoid or none, in float32 in the graph).
- feature-extraction: a sentence-transformers folder (`modules.json`) or a bare encoder; outputs
  `last_hidden_state` and `embeddings` (sentence-transformers' pooling, then its Normalize, in the graph).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyner.artifact import FEATURE_EXTRACTION, TASKS, TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION
from pyner.errors import InputError, UsageError
from pyner.tasks import FUNCTIONS, OUTPUTS, default_function

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
# sentence-transformers' Pooling config keys -> pyner's mode names (one mode at a time)
_ST_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
               "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
_ST_UNSUPPORTED = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
ST_TRANSFORMER = "sentence_transformers.models.Transformer"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_NORMALIZE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class Embedding:
    """How a feature-extraction checkpoint pools: sentence-transformers' modules, or its defaults for a bare encoder."""

    mode: str
    normalize: bool
    max_seq_length: int | None
    source: str  # "sentence-transformers" or "defaults (bare encoder)"


def _read(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from exc


def is_sentence_transformers(d: Path) -> bool:
    return (Path(d) / "modules.json").is_file()


def detect_task(d: Path, config: dict[str, Any], requested: str | None) -> str:
    """The task of checkpoint `d`: `requested` (--task) if given, else a sentence-transformers folder is
    feature-extraction, else its first architecture: ...ForTokenClassification, ...ForSequenceClassification,
    or a bare encoder (...Model) for feature-extraction. InputError names what it found otherwise."""
    if requested is not None:
        if requested not in TASKS:
            raise UsageError(f"--task {requested!r}: choose one of {', '.join(TASKS)}")
        return requested
    if is_sentence_transformers(d):
        return FEATURE_EXTRACTION
    archs = config.get("architectures") or []
    if not isinstance(archs, list):
        archs = []
    for a in map(str, archs):
        if a.endswith("ForTokenClassification"):
            return TOKEN_CLASSIFICATION
        if a.endswith("ForSequenceClassification"):
            return TEXT_CLASSIFICATION
        if a.endswith("Model") and not a.endswith("PreTrainedModel"):
            return FEATURE_EXTRACTION
    raise InputError(
        f"{d / 'config.json'}: architectures {archs} is not a model pyner packages (expected *ForTokenClassification, "
        "*ForSequenceClassification, a bare encoder *Model, or a sentence-transformers folder)",
        hint="save the model you fine-tuned (AutoModelFor...Classification), or name the task: --task")


def embedding_config(d: Path) -> Embedding:
    """The pooling of a sentence-transformers folder (modules.json, its Pooling config, a Normalize
    module, sentence_bert_config.json's max_seq_length), or sentence-transformers' defaults for a bare
    encoder (mean pooling, no normalization)."""
    d = Path(d)
    if not is_sentence_transformers(d):
        return Embedding("mean", False, None, "defaults (bare encoder)")
    modules = _read(d / "modules.json", "sentence-transformers' modules")
    if not isinstance(modules, list):
        raise InputError(f"{d / 'modules.json'}: not a list of modules")
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    known = {ST_TRANSFORMER, ST_POOLING, ST_NORMALIZE}
    other = [t for t in types if t not in known]
    if other:
        raise InputError(f"{d / 'modules.json'}: module {other[0]!r} is not one pyner exports "
                         "(supported: Transformer, Pooling, Normalize)")
    transformer = next((m for m in modules if m.get("type") == ST_TRANSFORMER), None)
    if transformer is None or transformer.get("path", "") not in ("", "."):
        raise InputError(f"{d / 'modules.json'}: the Transformer module must be the folder itself (path \"\")",
                         hint="pyner reads config.json and the weights from the folder's top level")
    mode = "mean"
    pooling = next((m for m in modules if m.get("type") == ST_POOLING), None)
    if pooling is not None:
        cfg = _read(d / str(pooling.get("path", "1_Pooling")) / "config.json", "the Pooling config")
        on = [name for key, name in _ST_POOLING.items() if cfg.get(key)]
        unsupported = [k for k in _ST_UNSUPPORTED if cfg.get(k)]
        if unsupported or len(on) != 1:
            raise InputError(f"{d}: pooling {unsupported or on or 'none'} is not one pyner exports "
                             f"(exactly one of {', '.join(POOLING_MODES)})")
        mode = on[0]
    max_seq = None
    sb = d / "sentence_bert_config.json"
    if sb.is_file():
        value = _read(sb, "sentence-transformers' config").get("max_seq_length")
        max_seq = int(value) if isinstance(value, int) and value > 0 else None
    return Embedding(mode, any(t == ST_NORMALIZE for t in types), max_seq, "sentence-transformers")


def classification_function(config: dict[str, Any], labels: list[str], override: str | None) -> str:
    if override is not None:
        if override not in FUNCTIONS:
            raise UsageError(f"--function-to-apply {override!r}: choose one of {', '.join(FUNCTIONS)}")
        return override
    return default_function(config.get("problem_type"), len(labels))


def auto_class(task: str):
    import transformers

    return {TOKEN_CLASSIFICATION: transformers.AutoModelForTokenClassification,
            TEXT_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
            FEATURE_EXTRACTION: transformers.AutoModel}[task]


def ignorable_missing(task: str, key: str) -> bool:
    """Weights a checkpoint may lack without changing the task's output: position ids everywhere; the
    pooler of an encoder used for embeddings (sentence-transformers never uses it)."""
    return key.endswith("position_ids") or (task == FEATURE_EXTRACTION and "pooler" in key)


def wrapper(model, task: str, *, function: str | None = None, pooling: Embedding | None = None):
    """The module the export traces: the checkpoint's model with the task's outputs (OUTPUTS[task])."""
    import torch

    class _Base(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def run(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs, return_dict=True)

    class TokenScores(_Base):
        def forward(self, input_ids, attention_mask, token_type_ids=None):
            logits = self.run(input_ids, attention_mask, token_type_ids).logits.float()
            return torch.softmax(logits, dim=-1), logits

    class TextScores(_Base):
        def forward(self, input_ids, attention_mask):
            logits = self.run(input_ids, attention_mask).logits.float()
            if function == "softmax":
                scores = torch.softmax(logits, dim=-1)
            elif function == "sigmoid":
                scores = torch.sigmoid(logits)
            else:
                scores = logits * 1.0  # a node of its own: ONNX outputs need distinct tensors
            return logits, scores

    class Embeddings(_Base):
        def forward(self, input_ids, attention_mask):
            hidden = self.run(input_ids, attention_mask).last_hidden_state.float()
            return hidden, pool(hidden, attention_mask, pooling)

    cls = {TOKEN_CLASSIFICATION: TokenScores, TEXT_CLASSIFICATION: TextScores, FEATURE_EXTRACTION: Embeddings}[task]
    return cls(model).eval()


def pool(hidden, attention_mask, pooling: Embedding):
    """sentence-transformers' Pooling (and Normalize) on float32 hidden states, as its modules compute them."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling.mode == "cls":
        out = hidden[:, 0]
    elif pooling.mode == "max":
        out = torch.max(hidden.masked_fill(mask == 0, -1e9), dim=1).values
    else:
        summed = torch.sum(hidden * mask, dim=1)
        count = torch.clamp(mask.sum(dim=1), min=1e-9)
        out = summed / (torch.sqrt(count) if pooling.mode == "mean_sqrt_len" else count)
    if pooling.normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=1)
    return out


def outputs(task: str) -> list[str]:
    return list(OUTPUTS[task])


def input_names(task: str, token_classification_names: list[str]) -> list[str]:
    """NER keeps token types when the model takes them; one-text tasks feed only ids and mask (every type
    id of a single text is 0, what every family does without the input, and what plain DJL feeds)."""
    return token_classification_names if task == TOKEN_CLASSIFICATION else ["input_ids", "attention_mask"]


def serving_properties(task: str, input_names: list[str], max_length: int, pooling: Embedding | None = None) -> str:
    """serving.properties for plain DJL: its own translator for the task, over the artifact's folder."""
    head = {
        TOKEN_CLASSIFICATION: ["# DJL: plain TokenClassificationTranslatorFactory over this folder (written by pyner package).",
                               "# Output 0 of model.onnx is already a softmax, so the translator must not apply one.",
                               "engine=OnnxRuntime",
                               "translatorFactory=ai.djl.huggingface.translator.TokenClassificationTranslatorFactory",
                               f"includeTokenTypes={'true' if 'token_type_ids' in input_names else 'false'}",
                               "softmax=false"],
        TEXT_CLASSIFICATION: ["# DJL: plain TextClassificationTranslatorFactory over this folder (written by pyner package).",
                              "# Output 0 of model.onnx is the logits; the translator applies the function config.json implies.",
                              "engine=OnnxRuntime",
                              "translatorFactory=ai.djl.huggingface.translator.TextClassificationTranslatorFactory",
                              "includeTokenTypes=false"],
        FEATURE_EXTRACTION: ["# DJL: plain TextEmbeddingTranslatorFactory over this folder (written by pyner package).",
                             "# Output 0 of model.onnx is last_hidden_state; the translator pools it as configured here.",
                             "engine=OnnxRuntime",
                             "translatorFactory=ai.djl.huggingface.translator.TextEmbeddingTranslatorFactory",
                             "includeTokenTypes=false",
                             f"pooling={pooling.mode if pooling else 'mean'}",
                             f"normalize={'true' if pooling and pooling.normalize else 'false'}"],
    }[task]
    return "\n".join([*head, f"maxLength={max_length}", "modelName=model", ""])
