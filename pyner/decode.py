"""Entity decoding, identical to transformers' ``TokenClassificationPipeline.postprocess``.

The reference is transformers 5.23 ``pipelines/token_classification.py``; every rule below names
the pipeline method it mirrors. ``docs/decoding.md`` states the same algorithm language-neutrally
for the JVM port. Inputs are one text and its windows (the tokenizer's encoding followed by its
overflowing encodings); each window is decoded on its own and, when a text has more than one,
the windows' entities are merged with the pipeline's ``aggregate_overlapping_entities``.

Deliberate differences from the pipeline (documented in docs/decoding.md):

* Group scores are means computed in float64 by sequential summation in token order and one
  division by the count, so the JVM reproduces them bit for bit (numpy's float32 pairwise mean
  differs by ~1e-7; a group score decides nothing). The ``average`` strategy's mean score vector,
  whose argmax decides a word's label, is computed exactly as numpy does (``mean32_rows``).
* ``none`` with several windows: the pipeline refuses ``stride`` with ``none``; here the same
  overlap merge applies (the same token seen in two windows is kept once: the higher score wins,
  ties keep the earlier window).
* ``ignore_labels`` must be a sequence of strings (the pipeline would do a substring test on a
  bare string, and a ``None`` entry would drop every entity); anything else is a UsageError.

No torch, no transformers: numpy and a ``tokenizers.Tokenizer`` only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

AGGREGATIONS = ("none", "simple", "first", "average", "max")
DEFAULT_IGNORE_LABELS = ("O",)

Window = tuple  # (input_ids (T,), offsets (T, 2), special_tokens_mask (T,), scores (T, L))


def check_aggregation(name) -> str:
    """Return the canonical (lower-case) strategy name, or raise UsageError listing the valid ones.

    Like the pipeline (``AggregationStrategy[name.upper()]``) the name is case-insensitive.
    """
    if isinstance(name, str) and name.lower() in AGGREGATIONS:
        return name.lower()
    raise UsageError(
        f"unknown aggregation strategy {name!r}; valid: {', '.join(AGGREGATIONS)}",
        hint="use --aggregation simple (the default) to group B-/I- tokens into entities",
    )


def _check_ignore_labels(ignore_labels) -> frozenset[str]:
    if ignore_labels is None:
        return frozenset(DEFAULT_IGNORE_LABELS)
    if isinstance(ignore_labels, (str, bytes)) or not all(isinstance(x, str) for x in ignore_labels):
        raise UsageError(
            f"ignore_labels must be a list of label strings, got {ignore_labels!r}",
            hint='e.g. ignore_labels=["O"]; an empty list keeps every label',
        )
    return frozenset(ignore_labels)


def get_tag(label: str) -> tuple[str, str]:
    """Pipeline ``get_tag``: "B-X" -> ("B", "X"), "I-X" -> ("I", "X"), anything else -> ("I", label)."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_name(label: str) -> str:
    """Pipeline ``group_sub_entities``: the group is named ``label.split("-", 1)[-1]`` of its first member.

    Note this differs from ``get_tag`` for labels such as "E-PER" (group "PER", tag "E-PER").
    """
    return label.split("-", 1)[-1]


def mean64(values) -> float:
    """Mean in float64: sequential sum in the given order, NaNs skipped (np.nanmean), one division.

    An all-NaN (or empty) input gives NaN, as np.nanmean does.
    """
    total = 0.0
    count = 0
    for v in values:
        v = float(v)
        if v == v:  # not NaN
            total += v
            count += 1
    return total / count if count else math.nan


def mean32_rows(rows: np.ndarray) -> np.ndarray:
    """Column-wise mean of a (n, L) float32 block, bit-identical to the pipeline's
    ``np.nanmean(rows, axis=0)``: float32 sums sequential over rows (numpy reduces the outer axis
    sequentially), NaNs skipped, one division in float64 rounded to float32. The ``average``
    strategy takes its argmax, so it must equal the pipeline exactly; the JVM mirrors these steps."""
    total = np.zeros(rows.shape[1], dtype=np.float32)
    count = np.zeros(rows.shape[1], dtype=np.int64)
    for row in rows:
        ok = ~np.isnan(row)
        total = total + np.where(ok, row, np.float32(0.0))
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total.astype(np.float64) / count).astype(np.float32)


def aggregate_overlapping_entities(entities: list[dict]) -> list[dict]:
    """Pipeline ``aggregate_overlapping_entities``: merge the entities of a text's windows.

    Stable sort by start; an entity starting inside the kept one (kept.start <= e.start < kept.end)
    replaces it only when longer, or equally long with a strictly higher score.
    """
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged = []
    previous = entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length = entity["end"] - entity["start"]
            previous_length = previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


class Decoder:
    """Turns per-token scores of a text's windows into entities, exactly as the pipeline does.

    ``labels``: class names by id (id2label order). ``tokenizer``: the artifact's tokenizer (used
    for id -> token strings and its decoder, which is transformers' ``convert_tokens_to_string``).
    ``unk_token_id``: the unknown token's id, or None. ``continuing_subword_prefix``: the
    tokenizer model's prefix ("##" for WordPiece); when falsy the space heuristic decides subwords.
    Thread-safe: decoding keeps no state beyond a token-string cache filled with immutable values.
    """

    def __init__(
        self,
        labels: Sequence[str],
        tokenizer: "tokenizers.Tokenizer",
        *,
        unk_token_id: int | None,
        continuing_subword_prefix: str | None,
    ):
        self.labels = [str(x) for x in labels]
        if not self.labels:
            raise ValueError("Decoder needs at least one label")
        self.tokenizer = tokenizer
        self.unk_token_id = None if unk_token_id is None else int(unk_token_id)
        self.word_aware = bool(continuing_subword_prefix)
        self._decoder = tokenizer.decoder
        self._token_cache: dict[int, str] = {}
        # Per-label grouping facts, computed once (pipeline get_tag / group_sub_entities).
        tags = [get_tag(label) for label in self.labels]
        tag_ids: dict[str, int] = {}
        self._tag_id = np.array([tag_ids.setdefault(tag, len(tag_ids)) for _, tag in tags], dtype=np.int64)
        self._is_b = np.array([bi == "B" for bi, _ in tags], dtype=bool)
        self._group_name = [group_name(label) for label in self.labels]

    # -- token strings ----------------------------------------------------------------------

    def token(self, token_id: int) -> str:
        """``convert_ids_to_tokens``: the vocabulary string of one id (added tokens included)."""
        token = self._token_cache.get(token_id)
        if token is None:
            token = self.tokenizer.id_to_token(token_id)
            if token is None:
                raise ValueError(f"token id {token_id} is not in the tokenizer's vocabulary")
            self._token_cache[token_id] = token
        return token

    def tokens_to_string(self, tokens: list[str]) -> str:
        """transformers' fast ``convert_tokens_to_string``: the backend decoder, else a space join."""
        if self._decoder is None:
            return " ".join(tokens)
        return self._decoder.decode(tokens)

    # -- public entry point -----------------------------------------------------------------

    def decode_text(
        self,
        text: str,
        windows: Sequence[Window],
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[dict]:
        """Entities of one text. ``windows``: (input_ids int64 (T,), offsets int64 (T, 2) in code
        points, special_tokens_mask (T,) 1 = special, scores float32 (T, L) softmax probabilities)."""
        strategy = check_aggregation(aggregation)
        ignore = _check_ignore_labels(ignore_labels)
        entities: list[dict] = []
        for index, window in enumerate(windows):
            entities.extend(self._decode_window(text, window, strategy, ignore, index))
        if len(windows) > 1:
            entities = aggregate_overlapping_entities(entities)
        return entities

    # -- one window (pipeline postprocess body) ---------------------------------------------

    def _decode_window(self, text: str, window: Window, strategy: str, ignore: frozenset, index: int) -> list[dict]:
        input_ids, offsets, special, scores = window
        input_ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        special = np.asarray(special).reshape(-1)
        scores = np.asarray(scores, dtype=np.float32)
        n = input_ids.shape[0]
        if offsets.shape[0] != n or special.shape[0] != n or scores.ndim != 2 or scores.shape[0] != n:
            raise ValueError(
                f"window {index}: input_ids {input_ids.shape}, offsets {offsets.shape}, "
                f"special_tokens_mask {special.shape} and scores {scores.shape} disagree on the token count"
            )
        if scores.shape[1] != len(self.labels):
            raise ValueError(f"window {index}: scores have {scores.shape[1]} classes but there are {len(self.labels)} labels")

        # gather_pre_entities: drop special tokens; token string, span, subword flag, UNK rule.
        keep = np.flatnonzero(special == 0)
        if keep.size == 0:
            return []
        ids = input_ids[keep]
        starts = offsets[keep, 0]
        ends = offsets[keep, 1]
        probs = scores[keep]
        start_list = starts.tolist()
        end_list = ends.tolist()
        words = [self.token(i) for i in ids.tolist()]
        is_unk = ids == self.unk_token_id if self.unk_token_id is not None else np.zeros(ids.shape, dtype=bool)
        for k in np.flatnonzero(is_unk).tolist():
            words[k] = text[start_list[k]:end_list[k]]
        if strategy in ("first", "average", "max"):
            is_subword = self._subword_flags(text, words, starts, ends) & ~is_unk
        else:
            is_subword = None  # not needed by none/simple

        if strategy in ("none", "simple"):
            label_ids = np.argmax(probs, axis=1)  # first maximum, as ndarray.argmax
            label_scores = probs[np.arange(probs.shape[0]), label_ids].tolist()  # float32 values, exact
            label_ids = label_ids.tolist()
            if strategy == "none":
                out = []
                for k in range(len(words)):
                    label = self.labels[label_ids[k]]
                    if label in ignore:
                        continue
                    out.append({"entity": label, "score": label_scores[k], "index": int(keep[k]),
                                "word": words[k], "start": start_list[k], "end": end_list[k]})
                return out
            return self._group(label_ids, label_scores, words, start_list, end_list, ignore)

        # aggregate_words: a word is a non-subword token followed by its subword tokens.
        word_starts = np.flatnonzero(~is_subword)
        if word_starts.size == 0 or word_starts[0] != 0:
            word_starts = np.concatenate(([0], word_starts))  # the first token always opens a word
        bounds = word_starts.tolist() + [len(words)]
        w_label, w_score, w_word, w_start, w_end = [], [], [], [], []
        row_max = probs.max(axis=1).tolist() if strategy == "max" else None
        for a, b in zip(bounds[:-1], bounds[1:]):
            if strategy == "first":
                row = probs[a]
                label = int(np.argmax(row))
                score = float(row[label])
            elif strategy == "max":
                best = a  # Python max(): the first token whose row maximum is strictly the greatest
                for k in range(a + 1, b):
                    if row_max[k] > row_max[best]:
                        best = k
                row = probs[best]
                label = int(np.argmax(row))
                score = float(row[label])
            else:  # average
                mean = mean32_rows(probs[a:b])
                label = int(np.argmax(mean))
                score = float(mean[label])
            w_label.append(label)
            w_score.append(score)
            w_word.append(words[a:b])  # decoded lazily: only words in kept groups are needed
            w_start.append(start_list[a])
            w_end.append(end_list[b - 1])
        return self._group(w_label, w_score, w_word, w_start, w_end, ignore)

    def _subword_flags(self, text: str, words: list[str], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """gather_pre_entities' is_subword, before the UNK override."""
        n = len(text)
        if self.word_aware:
            # len(token) != len(text[start:end]) (Python slice length, clamped to the text).
            token_len = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
            ref_len = np.maximum(0, np.minimum(ends, n) - np.minimum(starts, n))
            return token_len != ref_len
        # Fallback heuristic: start > 0 and " " not in text[start-1:start+1] (U+0020 only).
        space = np.zeros(n + 1, dtype=bool)
        if n:
            space[:n] = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 0x20
        before = space[np.clip(starts - 1, 0, n)]
        at = space[np.clip(starts, 0, n)]
        return (starts > 0) & ~before & ~at

    def _group(self, label_ids, scores, words, starts, ends, ignore) -> list[dict]:
        """group_entities + group_sub_entities, then the ignore_labels filter.

        A member joins the open group when its tag equals the tag of the group's LAST member and
        it is not a "B-" label. ``words`` items are token strings, or token lists (word-level
        strategies) that are first turned into a word with the decoder, as aggregate_word does.
        """
        if not label_ids:
            return []
        labels = np.asarray(label_ids, dtype=np.int64)
        tag = self._tag_id[labels]
        opens = np.ones(labels.shape[0], dtype=bool)
        opens[1:] = (tag[1:] != tag[:-1]) | self._is_b[labels[1:]]
        bounds = np.flatnonzero(opens).tolist() + [labels.shape[0]]
        out = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            name = self._group_name[label_ids[a]]
            if name in ignore:  # filtering after grouping; the word is not needed then
                continue
            members = words[a:b]
            if members and isinstance(members[0], list):
                members = [self.tokens_to_string(m) for m in members]
            out.append({"entity_group": name, "score": mean64(scores[a:b]),
                        "word": self.tokens_to_string(members), "start": starts[a], "end": ends[b - 1]})
        return out
