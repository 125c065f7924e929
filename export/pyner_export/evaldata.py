"""Evaluation data (BIO two-column files) and word-level predictions for entity F1.

File format: one token per line, `WORD<TAB>TAG` or `WORD TAG` (any run of spaces), a blank line
between sentences; `-DOCSTART-` lines are skipped. Errors name the file, the line and the reason.

Word-level predictions use the first sub-word of each word (the usual CoNLL evaluation): the
sentence is joined with single spaces, tokenized by the artifact's runtime into windows, and a
word's label is the label of the first non-special token overlapping it. The same helper serves
the ONNX artifact and PyTorch, so both are scored on identical tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pyner.errors import InputError

from .labels import detect_scheme, split_tag

Sentence = tuple[list[str], list[str]]


def read_bio(path, labels: Sequence[str] | None = None) -> list[Sentence]:
    """Read a two-column BIO file into [(words, tags)]; check tags against the model's `labels`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"evaluation file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc})") from exc
    known = set(labels) if labels is not None else None
    scheme = detect_scheme(labels) if labels is not None else None
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    previous = "O"
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if words:
                sentences.append((words, tags))
            words, tags, previous = [], [], "O"
            continue
        if line.startswith("-DOCSTART-"):
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        cols = [c.strip() for c in cols]
        if len(cols) != 2 or not cols[0] or not cols[1]:
            raise InputError(f"{p}:{lineno}: expected 2 columns (word and tag), found {len([c for c in cols if c])}: {line[:60]!r}")
        word, tag = cols
        if known is not None:
            _check_tag(p, lineno, tag, previous, known, scheme, labels)
        words.append(word)
        tags.append(tag)
        previous = tag
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise InputError(f"{p}: no sentences (expected WORD TAG lines, blank lines between sentences)")
    return sentences


def _check_tag(p: Path, lineno: int, tag: str, previous: str, known: set[str], scheme: str | None, labels) -> None:
    prefix, kind = split_tag(tag)
    if tag not in known:
        file_scheme = detect_scheme([tag]) if prefix in ("E", "S", "L", "U") else None
        if file_scheme and scheme and file_scheme != scheme:
            raise InputError(f"{p}:{lineno}: tag {tag!r} uses the {file_scheme} scheme but the model's labels are {scheme}")
        raise InputError(f"{p}:{lineno}: unknown tag {tag!r}; the model's labels are: {', '.join(labels)}")
    if scheme == "IOB2" and prefix == "I":
        pprefix, pkind = split_tag(previous)
        if pprefix not in ("B", "I") or pkind != kind:
            raise InputError(
                f"{p}:{lineno}: tag {tag!r} starts an entity after {previous!r} (IOB1 style) but the model's labels are IOB2",
                hint="convert the file to IOB2: an entity's first word is tagged B-",
            )


def sentence_text(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join words with single spaces; return the text and each word's [start, end) in code points."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def first_subword_labels(spans: Sequence[tuple[int, int]], windows, window_label_ids: Sequence[np.ndarray],
                         labels: Sequence[str], default: str = "O") -> list[str]:
    """The label of each word's first token (first window that holds it); `default` when none does."""
    out: list[str | None] = [None] * len(spans)
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    for w, ids in zip(windows, window_label_ids):
        for t in range(len(w)):
            if w.special_tokens_mask[t]:
                continue
            a, b = int(w.offsets[t][0]), int(w.offsets[t][1])
            if b <= a:
                continue
            hit = np.nonzero((starts < b) & (ends > a))[0]
            for k in hit:
                if out[k] is None:
                    out[k] = labels[int(ids[t])]
    return [x if x is not None else default for x in out]


def encode_sentences(encode: Callable[[list[str]], list], sentences: Sequence[Sentence]) -> tuple[list, list]:
    """Runtime windows (`encode`: texts -> [Encoded]) and word spans of each sentence's text."""
    texts, spans = [], []
    for words, _ in sentences:
        text, sp = sentence_text(words)
        texts.append(text)
        spans.append(sp)
    return encode(texts), spans


def word_tags(encoded: Sequence, spans: Sequence, window_logits: Sequence[np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    """Word-level tags of each sentence from its windows' logits (flattened over all sentences)."""
    out, k = [], 0
    for e, sp in zip(encoded, spans):
        n = len(e.windows)
        ids = [np.argmax(x, axis=-1) for x in window_logits[k:k + n]]
        k += n
        out.append(first_subword_labels(sp, e.windows, ids, labels))
    return out


def predict_word_tags(model, sentences: Sequence[Sentence],
                      window_logits: Callable[[list], list[np.ndarray]] | None = None) -> list[list[str]]:
    """Word-level tags for each sentence from a pyner runtime `model`.

    `window_logits(windows) -> [array (T, num_labels)]` computes the scores or logits of windows;
    default: the artifact itself (`model.forward(windows, output="logits")`). Pass a PyTorch
    function (see `pyner_export.guard.torch_window_logits`) to score the same windows with PyTorch.
    """
    if window_logits is None:
        def window_logits(ws):
            return model.forward(ws, output="logits")
    encoded, spans = encode_sentences(model.encode, sentences)
    flat = [w for e in encoded for w in e.windows]
    return word_tags(encoded, spans, window_logits(flat) if flat else [], model.labels)


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "IOB2") -> float:
    """Entity-level micro F1 in points (0-100), seqeval strict mode for IOB2/IOBES, conlleval otherwise."""
    from seqeval.metrics import f1_score

    if scheme == "IOB2":
        from seqeval.scheme import IOB2

        return 100.0 * float(f1_score(list(map(list, gold)), list(map(list, pred)), mode="strict", scheme=IOB2))
    if scheme == "IOBES":
        from seqeval.scheme import IOBES

        return 100.0 * float(f1_score(list(map(list, gold)), list(map(list, pred)), mode="strict", scheme=IOBES))
    return 100.0 * float(f1_score(list(map(list, gold)), list(map(list, pred))))
