"""The accuracy guard: the exported artifact against PyTorch, on identical windows.

The runtime's tokenizer makes the windows (the golden texts, and the evaluation sentences when given);
PyTorch scores them first (`torch_reference`, before the export, so PyTorch's weights can be freed),
then the artifact scores the same windows (`run_guard`). Per-token argmax agreement and the largest |logit| difference are
taken over unpadded positions. With evaluation data, entity F1 (seqeval) of both is compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Per-precision thresholds. fp32 must reproduce PyTorch's logits (its F1 is then PyTorch's); fp16
# may lose at most 0.1 F1 point, int8 at most 1.0 (the accuracy targets). Per-token agreement on the
# golden texts is a sanity floor that also applies without --eval-data: int8 rounds every
# activation, so near-tie tokens flip (the demo model's int8 agrees on 99.2% with the default policy
# and 98.4% with --int8-policy head, both within 1 F1 point on the test sets); a broken export
# agrees on far less.
MIN_AGREEMENT = {"fp32": 0.995, "fp16": 0.995, "int8": 0.98}
DEFAULT_MAX_F1_DROP = {"fp32": 0.1, "fp16": 0.1, "int8": 1.0}
# Fidelity beside F1: the share of evaluation sentences whose word tags are identical to PyTorch's
# (hence their entities). F1 can hold while answers change (errors that cancel out); users notice the
# changed answers. Floors, per precision, below what the demo model measures (docs/package.md).
DEFAULT_MIN_IDENTICAL = {"fp32": 0.99, "fp16": 0.97, "int8": 0.85}
FP32_MAX_LOGIT_DIFF = 1e-3


def padded_batches(windows, pad_id: int, batch_size: int):
    """Right-padded int64 batches of windows, longest first: yields (window indices, ids, mask, type ids)."""
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        longest = max(len(windows[i]) for i in idx)
        ids = np.full((len(idx), longest), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for r, i in enumerate(idx):
            w = windows[i]
            ids[r, :len(w)] = w.input_ids
            mask[r, :len(w)] = 1
            types[r, :len(w)] = w.type_ids
        yield idx, ids, mask, types


def torch_window_logits(torch_model, input_names: Sequence[str], pad_id: int, *, batch_size: int = 16):
    """A function windows -> [float32 (T, num_labels)] running PyTorch on right-padded batches."""
    import torch

    def run(windows) -> list[np.ndarray]:
        torch_model.eval()
        out: list[np.ndarray | None] = [None] * len(windows)
        for idx, ids, mask, types in padded_batches(windows, pad_id, batch_size):
            feed = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            if "token_type_ids" in input_names:
                feed["token_type_ids"] = torch.from_numpy(types)
            with torch.no_grad():
                logits = torch_model(**feed).logits.float().numpy()
            for r, i in enumerate(idx):
                out[i] = logits[r, :len(windows[i])]
        return out  # type: ignore[return-value]

    return run


@dataclass
class Reference:
    """PyTorch's logits on the guard's windows, taken before the export so that PyTorch's copy of the
    weights can be freed before ONNX Runtime loads its own (one model in memory at a time)."""

    texts: list[str]
    encoded: list  # pyner.runtime.Encoded per golden text
    logits: list[np.ndarray]  # PyTorch logits per window of `encoded`, flattened
    eval_name: str | None = None
    eval_encoded: list | None = None
    eval_spans: list | None = None
    eval_gold: list | None = None
    eval_logits: list[np.ndarray] | None = None


def _flat(encoded) -> list:
    return [w for e in encoded for w in e.windows]


def torch_window_outputs(wrapper, input_names: Sequence[str], pad_id: int, index: int, *, batch_size: int = 16):
    """A function windows -> [float32 row] running the export's wrapper (pyner_export.tasks.wrapper) in
    PyTorch and keeping its output `index` (text classification: logits; embeddings: the pooled rows)."""
    import torch

    def run(windows) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(windows)
        for idx, ids, mask, _ in padded_batches(windows, pad_id, batch_size):
            with torch.no_grad():
                rows = wrapper(torch.from_numpy(ids), torch.from_numpy(mask))[index].float().numpy()
            for r, i in enumerate(idx):
                out[i] = rows[r]
        return out  # type: ignore[return-value]

    return run


def torch_reference(torch_model, encode, *, texts: Sequence[str], input_names: Sequence[str], pad_id: int,
                    eval_sentences=None, eval_name: str | None = None, task: str = "token-classification",
                    wrapper=None) -> Reference:
    """Tokenize the guard's texts with the runtime's tokenizer (`encode`: texts -> [Encoded]) and score
    every window with PyTorch (NER: per-token logits; text classification: every window's logits;
    embeddings: the first window's pooled embedding, from the export's own wrapper)."""
    from .evaldata import encode_sentences

    if task != "token-classification":
        encoded = encode(list(texts))
        if task == "feature-extraction":
            encoded = [type(e)(e.text, e.windows[:1]) for e in encoded]
        run = torch_window_outputs(wrapper, input_names, pad_id, 0 if task == "text-classification" else 1)
        return Reference(texts=list(texts), encoded=encoded, logits=run(_flat(encoded)))
    run = torch_window_logits(torch_model, input_names, pad_id)
    encoded = encode(list(texts))
    ref = Reference(texts=list(texts), encoded=encoded, logits=run(_flat(encoded)))
    if eval_sentences:
        ref.eval_name = eval_name
        ref.eval_encoded, ref.eval_spans = encode_sentences(encode, eval_sentences)
        ref.eval_gold = [tags for _, tags in eval_sentences]
        ref.eval_logits = run(_flat(ref.eval_encoded))
    return ref


def compare_tokens(got: Sequence[np.ndarray], want: Sequence[np.ndarray], *, texts: int) -> dict[str, Any]:
    """Agreement and max |logit| difference between the artifact's logits (`got`) and PyTorch's, per window."""
    tokens = agree = same_windows = 0
    worst = 0.0
    for g, w in zip(got, want):
        if len(g) == 0:
            same_windows += 1
            continue
        tokens += len(g)
        hits = int((np.argmax(g, -1) == np.argmax(w, -1)).sum())
        agree += hits
        same_windows += hits == len(g)
        worst = max(worst, float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()))
    return {"texts": texts, "windows": len(got), "tokens": tokens,
            "token_agreement": agree / tokens if tokens else 1.0, "max_abs_logit_diff": worst,
            "identical_windows": same_windows / len(got) if len(got) else 1.0}


def run_guard(model, ref: Reference, *, precision: str, label_scheme: str = "IOB2",
              max_f1_drop: float | None = None, min_identical: float | None = None,
              enabled: bool = True) -> dict[str, Any]:
    """Compute the guard report (the manifest's "guard") of the runtime `model` against the PyTorch
    reference `ref`; `passed` says whether the thresholds hold.

    `max_f1_drop` and `min_identical` None take the precision's defaults (DEFAULT_MAX_F1_DROP,
    DEFAULT_MIN_IDENTICAL); both are judged on the evaluation sentences, when there are any."""
    from .evaldata import entity_f1, word_tags

    if model.task == "feature-extraction":
        return _embedding_guard(model, ref, precision=precision, enabled=enabled)
    if model.task == "text-classification":
        return _classification_guard(model, ref, precision=precision, enabled=enabled)
    min_agreement = MIN_AGREEMENT[precision]
    if max_f1_drop is None:
        max_f1_drop = DEFAULT_MAX_F1_DROP[precision]
    report: dict[str, Any] = {"enabled": bool(enabled), "reference": "pytorch"}
    report.update(compare_tokens(model.forward(_flat(ref.encoded), output="logits"), ref.logits, texts=len(ref.texts)))
    report["min_agreement"] = min_agreement
    report["max_logit_diff"] = FP32_MAX_LOGIT_DIFF if precision == "fp32" else None
    report["max_f1_drop"] = max_f1_drop
    if min_identical is None:
        min_identical = DEFAULT_MIN_IDENTICAL[precision]
    report["min_identical"] = min_identical
    failures = []
    if report["token_agreement"] < min_agreement:
        failures.append(f"per-token agreement with PyTorch {100 * report['token_agreement']:.2f}% "
                        f"is below {100 * min_agreement:.1f}% for {precision} ({report['tokens']} tokens of the golden texts)")
    if precision == "fp32" and not report["max_abs_logit_diff"] <= FP32_MAX_LOGIT_DIFF:
        failures.append(f"fp32 logits differ from PyTorch by {report['max_abs_logit_diff']:.3g} (limit {FP32_MAX_LOGIT_DIFF:g})")
    report["f1"] = None
    if ref.eval_encoded:
        eval_name = ref.eval_name
        artifact_logits = model.forward(_flat(ref.eval_encoded), output="logits")
        pred_artifact = word_tags(ref.eval_encoded, ref.eval_spans, artifact_logits, model.labels)
        pred_torch = word_tags(ref.eval_encoded, ref.eval_spans, ref.eval_logits, model.labels)
        f_torch = entity_f1(ref.eval_gold, pred_torch, label_scheme)
        f_art = entity_f1(ref.eval_gold, pred_artifact, label_scheme)
        drop = f_torch - f_art
        same = sum(a == t for a, t in zip(pred_artifact, pred_torch))
        identical = same / len(pred_torch) if pred_torch else 1.0
        report["f1"] = {"file": eval_name, "sentences": len(ref.eval_gold), "pytorch": round(f_torch, 4),
                        "artifact": round(f_art, 4), "drop": round(drop, 4), "mode": "seqeval strict " + label_scheme
                        if label_scheme in ("IOB2", "IOBES") else "seqeval conlleval",
                        "identical_sentences": same, "identical_fraction": round(identical, 4)}
        if drop > max_f1_drop:
            failures.append(f"entity F1 drops {drop:.2f} points ({f_torch:.2f} -> {f_art:.2f}) on {eval_name}, "
                            f"more than the {precision} limit --max-f1-drop {max_f1_drop:g}")
        if identical < min_identical:
            failures.append(f"{same} of {len(pred_torch)} sentences of {eval_name} ({100 * identical:.1f}%) keep "
                            f"PyTorch's tags, fewer than the {precision} limit --min-identical {min_identical:g}")
    report["passed"] = not failures
    report["failures"] = failures
    return report


# Embeddings: the least cosine similarity to PyTorch's embedding any golden text may have, per precision
# (fp32 0.9999: the bar; the others leave room for rounding that keeps neighbours in place).
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}


def _classification_guard(model, ref: Reference, *, precision: str, enabled: bool) -> dict[str, Any]:
    """Every window of the golden texts: top-1 agreement of the artifact's logits with PyTorch's (a
    window counts as one "token" of compare_tokens) and the largest |logit| difference."""
    got = [np.asarray(o).reshape(1, -1) for o in model.forward(_flat(ref.encoded), output="logits")]
    want = [np.asarray(o).reshape(1, -1) for o in ref.logits]
    report: dict[str, Any] = {"enabled": bool(enabled), "reference": "pytorch", "task": model.task}
    report.update(compare_tokens(got, want, texts=len(ref.texts)))
    min_agreement = MIN_AGREEMENT[precision]
    report.update({"min_agreement": min_agreement, "max_logit_diff": FP32_MAX_LOGIT_DIFF if precision == "fp32" else None,
                   "f1": None})
    failures = []
    if report["token_agreement"] < min_agreement:
        failures.append(f"top-1 agreement with PyTorch {100 * report['token_agreement']:.2f}% of {report['tokens']} "
                        f"windows is below {100 * min_agreement:.1f}% for {precision}")
    if precision == "fp32" and not report["max_abs_logit_diff"] <= FP32_MAX_LOGIT_DIFF:
        failures.append(f"fp32 logits differ from PyTorch by {report['max_abs_logit_diff']:.3g} (limit {FP32_MAX_LOGIT_DIFF:g})")
    report["passed"] = not failures
    report["failures"] = failures
    return report


def _embedding_guard(model, ref: Reference, *, precision: str, enabled: bool) -> dict[str, Any]:
    """Each golden text's embedding (its first window) against PyTorch's: cosine similarity and the
    largest |value| difference."""
    got = model.forward(_flat(ref.encoded), output="embeddings")
    cosines, worst = [], 0.0
    for g, w in zip(got, ref.logits):
        g64, w64 = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        denom = float(np.linalg.norm(g64) * np.linalg.norm(w64))
        cosines.append(float(g64 @ w64) / denom if denom > 0 else (1.0 if not g64.any() and not w64.any() else 0.0))
        worst = max(worst, float(np.abs(g64 - w64).max()) if g64.size else 0.0)
    bound = MIN_COSINE[precision]
    least = min(cosines) if cosines else 1.0
    report: dict[str, Any] = {
        "enabled": bool(enabled), "reference": "pytorch", "task": model.task, "texts": len(ref.texts),
        "windows": len(got), "tokens": sum(len(w) for w in _flat(ref.encoded)),
        "min_cosine": least, "mean_cosine": float(np.mean(cosines)) if cosines else 1.0,
        "token_agreement": 1.0, "max_abs_logit_diff": worst, "min_cosine_bound": bound, "f1": None}
    failures = []
    if not least >= bound:
        i = int(np.argmin(cosines))
        failures.append(f"the embedding of golden text {i} has cosine similarity {least:.6f} to PyTorch's, below "
                        f"{bound} for {precision}")
    report["passed"] = not failures
    report["failures"] = failures
    return report
