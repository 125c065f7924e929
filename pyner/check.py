"""Running a model against golden fixtures: compute them at packaging, re-run and compare them.

This module sits above both the runtime (`pyner.runtime`: models) and the artifact format
(`pyner.golden`: the fixture schema, golden.json, the one comparison), so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import artifact as _art
from .artifact import AGGREGATIONS
from .errors import ArtifactError
from .golden import GOLDEN_FORMAT_VERSION, GOLDEN_TEXTS, Comparison, compare_golden, read_golden, save_golden
from .runtime import Model
from .tasks import LONG_TEXT


def _window_tokens(w) -> dict[str, Any]:
    return {"input_ids": w.input_ids.tolist(), "type_ids": w.type_ids.tolist(), "offsets": w.offsets.tolist(),
            "special_tokens_mask": w.special_tokens_mask.tolist()}


def golden_cases(model: Model, texts: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """(id, text) pairs through `model` as golden-schema cases, per the artifact's task (docs/tasks.md):
    NER: per window the token ids, type ids, offsets, special mask, argmax labels and float32 scores
    (Model.score, one batched run), and the entities of every aggregation strategy. Text classification:
    every window with its logits and scores, and the full ranked labels of each long_text mode.
    Feature extraction: the first window's tokens and the embedding."""
    if model.task == _art.TEXT_CLASSIFICATION:
        return _classification_cases(model, texts)
    if model.task == _art.FEATURE_EXTRACTION:
        return _embedding_cases(model, texts)
    cases = []
    for (cid, text), scored in zip(texts, model.score([t for _, t in texts])):
        windows = [
            {
                "input_ids": w.input_ids.tolist(),
                "type_ids": w.type_ids.tolist(),
                "offsets": w.offsets.tolist(),
                "special_tokens_mask": w.special_tokens_mask.tolist(),
                "labels": np.argmax(s, axis=-1).tolist(),
                "scores": s.astype(np.float32).tolist(),
            }
            for w, s in zip(scored.encoded.windows, scored.scores)
        ]
        entities = {a: model.decode(scored.encoded, scored.scores, aggregation=a) for a in AGGREGATIONS}
        cases.append({"id": cid, "text": text, "windows": windows, "entities": entities})
    return cases


def _classification_cases(model: Model, texts: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    plain = [t for _, t in texts]
    scored = model.score(plain, output=("logits", "scores"))
    ranked = {mode: model.classify(plain, top_k=0, long_text=mode) for mode in LONG_TEXT}
    cases = []
    for i, ((cid, text), s) in enumerate(zip(texts, scored)):
        windows = [{**_window_tokens(w), "logits": o["logits"].astype(np.float32).tolist(),
                    "scores": o["scores"].astype(np.float32).tolist()} for w, o in zip(s.encoded.windows, s.scores)]
        cases.append({"id": cid, "text": text, "windows": windows,
                      "classification": {mode: ranked[mode][i] for mode in LONG_TEXT}})
    return cases


def _embedding_cases(model: Model, texts: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    plain = [t for _, t in texts]
    encoded = model.encode(plain)
    vectors = model.embed(plain)
    return [{"id": cid, "text": text, "windows": [_window_tokens(e.windows[0])], "embedding": v.astype(np.float32).tolist()}
            for (cid, text), e, v in zip(texts, encoded, vectors)]


def compute_golden(model: Model, texts: Sequence[tuple[str, str]] = GOLDEN_TEXTS) -> dict[str, Any]:
    """The golden fixtures of `model`: everything other runtimes must reproduce."""
    return {"format_version": GOLDEN_FORMAT_VERSION, "cases": golden_cases(model, texts)}


def package_golden(folder: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Compute the golden fixtures of the model in `folder` (before checksums exist) and write
    golden.json; returns a summary for the packaging report."""
    return save_golden(folder, compute_golden(Model.from_parts(folder, manifest)))


def compare_model(model: Model, golden: dict[str, Any], tolerance: float | None = None, *, limit: int = 20) -> Comparison:
    """Re-run every golden case through `model` and compare windows, per-token outputs and entities."""
    tol = model.manifest.score_tolerance if tolerance is None else tolerance
    cases = golden["cases"]
    got = golden_cases(model, [(c["id"], c["text"]) for c in cases])
    return compare_golden(got, cases, tol, comparison=Comparison(tol, ("this runtime", "golden"), limit))


def self_check(model: Model) -> Comparison:
    """Raise ArtifactError if `model` does not reproduce its artifact's golden fixtures."""
    cmp = compare_model(model, read_golden(model.folder))
    if not cmp.ok:
        raise ArtifactError(
            f"{model.folder / _art.GOLDEN_FILE}: this runtime does not reproduce the golden fixtures: "
            + "; ".join(cmp.differences[:3]),
            hint="run `pyner verify` for the full list",
        )
    return cmp


__all__ = ["golden_cases", "compute_golden", "package_golden", "compare_model", "self_check"]
