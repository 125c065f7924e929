"""What each task makes of a text's windows: the one place the Python runtime dispatches on the task.

An artifact serves one task (its manifest's "task", docs/tasks.md):

- token-classification: every window runs; the windows' per-token `scores` decode to entities
  (`pyner.decode`, identical to transformers' token-classification pipeline).
- text-classification: the first window runs (`long_text="truncate"`, the pipeline with
  truncation=True), or every window and their logits averaged (`"average"`); the result is every label
  with its score, ranked as the pipeline ranks them, cut to `top_k`.
- feature-extraction: the first window runs (sentence-transformers truncates at max_seq_length); the
  result is the graph's pooled (and normalized) float32 `embeddings` row.

The model runtime (`pyner.runtime.Model`) and the sidecar's batcher both go through `plan` (which
windows run, which graph outputs they fetch) and `finish` (what the outputs become). The JVM mirrors
this module in dev.pyner.Task and PynerModel. No onnxruntime here: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .artifact import FEATURE_EXTRACTION, TASKS, TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION
from .errors import UsageError

LONG_TEXT = ("truncate", "average")
FUNCTIONS = ("softmax", "sigmoid", "none")
# The Python method (and the sidecar's RPC) that gives each task's results.
METHOD = {TOKEN_CLASSIFICATION: "predict", TEXT_CLASSIFICATION: "classify", FEATURE_EXTRACTION: "embed"}
RESULT = {TOKEN_CLASSIFICATION: "entities", TEXT_CLASSIFICATION: "labels", FEATURE_EXTRACTION: "embedding"}
# Graph outputs, in the order the export writes them (output 0 is what plain DJL's translator reads).
OUTPUTS = {TOKEN_CLASSIFICATION: ("scores", "logits"), TEXT_CLASSIFICATION: ("logits", "scores"),
           FEATURE_EXTRACTION: ("last_hidden_state", "embeddings")}


def default_function(problem_type: str | None, num_labels: int) -> str:
    """The function transformers' text-classification pipeline applies to a model's logits by default."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return task


def require(task: str, wanted: str, folder: Any, method: str) -> None:
    """Refuse to give another task's output, naming the artifact's task and the method it offers."""
    if task != wanted:
        raise UsageError(f"{folder}: the artifact is a {task} model: {method}() gives {RESULT[wanted]} of a "
                         f"{wanted} model; use {METHOD[task]}() for its {RESULT[task]}")


def check_long_text(value: str) -> str:
    if value not in LONG_TEXT:
        raise UsageError(f"long_text {value!r}: use truncate (the first window, as the pipeline with truncation) or "
                         "average (every window, logits averaged)")
    return value


def check_top_k(top_k: int | None, num_labels: int) -> int:
    """top_k as a count of labels: None or 0 = all; otherwise 1.. (more than the labels = all)."""
    if top_k is None:
        return num_labels
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise UsageError(f"top_k {top_k!r} must be a whole number >= 0 (0 or None: every label)")
    return num_labels if top_k == 0 else min(int(top_k), num_labels)


def rank(scores: np.ndarray, labels: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    """Labels by score, highest first, ties in class order (the pipeline's stable sort), first top_k."""
    values = [float(v) for v in np.asarray(scores, dtype=np.float32)]
    order = sorted(range(len(values)), key=lambda i: -values[i])
    return [{"label": labels[i], "score": values[i]} for i in order[:top_k]]


def average_scores(window_logits: Sequence[np.ndarray], function: str) -> np.ndarray:
    """`long_text="average"` over several windows: the mean logit of each class (float64 sums in window
    order, one division, then float32), and the function applied in float64, rounded to float32.
    The JVM computes exactly this (StrictMath.exp); docs/tasks.md."""
    n = len(window_logits)
    classes = len(window_logits[0])
    means = []
    for j in range(classes):
        total = 0.0
        for w in window_logits:
            total += float(w[j])
        means.append(float(np.float32(total / n)))
    if function == "softmax":
        top = max(means)
        exps = [math.exp(m - top) for m in means]
        total = 0.0
        for e in exps:
            total += e
        out = [e / total for e in exps]
    elif function == "sigmoid":
        out = [1.0 / (1.0 + _exp(-m)) for m in means]
    else:
        out = means
    return np.asarray(out, dtype=np.float32)


def _exp(x: float) -> float:
    """exp, infinite where it overflows (as Java's StrictMath.exp), instead of Python's OverflowError."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Plan:
    """Which of a text's windows run and which graph outputs they fetch, for one call's options."""

    first_window_only: bool
    outputs: tuple[str, ...]


def plan(task: str, long_text: str = "truncate") -> Plan:
    if task == TOKEN_CLASSIFICATION:
        return Plan(False, ("scores",))
    if task == TEXT_CLASSIFICATION:
        if check_long_text(long_text) == "truncate":
            return Plan(True, ("scores",))
        return Plan(False, ("logits", "scores"))
    return Plan(True, ("embeddings",))


# The sidecar batches windows of requests with different options in one run: it fetches, per task,
# every output any option needs.
SERVE_OUTPUTS = {TOKEN_CLASSIFICATION: ("scores",), TEXT_CLASSIFICATION: ("logits", "scores"),
                 FEATURE_EXTRACTION: ("embeddings",)}


def class_scores(outputs: Sequence[dict[str, np.ndarray]], function: str) -> np.ndarray:
    """A text's float32 class scores from its windows' outputs: one window, the graph's `scores`;
    several (long_text average), `average_scores` of their `logits`."""
    if len(outputs) == 1:
        return np.asarray(outputs[0]["scores"], dtype=np.float32)
    return average_scores([o["logits"] for o in outputs], function)


__all__ = ["LONG_TEXT", "FUNCTIONS", "METHOD", "OUTPUTS", "Plan", "plan", "default_function", "check_task", "require",
           "check_long_text", "check_top_k", "rank", "average_scores", "class_scores", "SERVE_OUTPUTS"]
