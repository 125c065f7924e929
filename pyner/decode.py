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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .artifact import AGGREGATIONS
from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

DEFAULT_IGNORE_LABELS = ("O",)
WORD_STRATEGIES = ("first", "average", "max")  # the pipeline's aggregate_words strategies

# One window of a text with its scores: (input_ids (T,), offsets (T, 2), special_tokens_mask (T,), scores (T, L)).
ScoredWindow = tuple


@dataclass(frozen=True)
class PreEntities:
    """gather_pre_entities' result for one window: its ordinary (non-special) tokens, in order."""

    index: np.ndarray  # int64 (n,): token positions inside the window (the entity "index" of `none`)
    scores: np.ndarray  # float32 (n, L)
    words: list[str]  # vocabulary strings (the text slice for UNK tokens)
    starts: list[int]
    ends: list[int]
    is_subword: np.ndarray | None  # bool (n,); None for none/simple, which do not use it


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

    # -- public entry point (pipeline postprocess) -------------------------------------------

    def decode_text(
        self,
        text: str,
        windows: Sequence[ScoredWindow],
        aggregation: str = "simple",
        ignore_labels: Sequence[str] | None = None,
    ) -> list[dict]:
        """Entities of one text. ``windows``: (input_ids int64 (T,), offsets int64 (T, 2) in code
        points, special_tokens_mask (T,) 1 = special, scores float32 (T, L) softmax probabilities).

        Pipeline ``postprocess``: per window gather_pre_entities -> aggregate -> (group_entities,
        ignore_labels filter); then aggregate_overlapping_entities when there are several windows."""
        strategy = check_aggregation(aggregation)
        ignore = _check_ignore_labels(ignore_labels)
        entities: list[dict] = []
        for index, window in enumerate(windows):
            pre = self.gather_pre_entities(text, window, strategy, index)
            if pre is not None:
                entities.extend(self.aggregate(pre, strategy, ignore))
        if len(windows) > 1:
            entities = aggregate_overlapping_entities(entities)
        return entities

    # -- one window, step by step as the pipeline ---------------------------------------------

    def gather_pre_entities(self, text: str, window: ScoredWindow, strategy: str, index: int) -> PreEntities | None:
        """Pipeline ``gather_pre_entities``: drop special tokens; token string, span, subword flag
        (only the word strategies need it), UNK rule. None when the window holds no ordinary token."""
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
        keep = np.flatnonzero(special == 0)
        if keep.size == 0:
            return None
        ids = input_ids[keep]
        starts = offsets[keep, 0]
        ends = offsets[keep, 1]
        words = [self.token(i) for i in ids.tolist()]
        start_list = starts.tolist()
        end_list = ends.tolist()
        is_unk = ids == self.unk_token_id if self.unk_token_id is not None else np.zeros(ids.shape, dtype=bool)
        for k in np.flatnonzero(is_unk).tolist():
            words[k] = text[start_list[k]:end_list[k]]
        is_subword = None  # not needed by none/simple
        if strategy in WORD_STRATEGIES:
            is_subword = self._subword_flags(text, words, starts, ends) & ~is_unk
        return PreEntities(keep, scores[keep], words, start_list, end_list, is_subword)

    def aggregate(self, pre: PreEntities, strategy: str, ignore: frozenset) -> list[dict]:
        """Pipeline ``aggregate`` (then its ignore_labels filter): per-token labels for none/simple,
        aggregate_words for the word strategies; every strategy but none is then grouped."""
        if strategy not in WORD_STRATEGIES:
            label_ids = np.argmax(pre.scores, axis=1)  # first maximum, as ndarray.argmax
            label_scores = pre.scores[np.arange(pre.scores.shape[0]), label_ids].tolist()  # float32 values, exact
            label_ids = label_ids.tolist()
            if strategy == "none":
                return [{"entity": label, "score": label_scores[k], "index": int(pre.index[k]), "word": pre.words[k],
                         "start": pre.starts[k], "end": pre.ends[k]}
                        for k, label in enumerate(self.labels[i] for i in label_ids) if label not in ignore]
            return self.group_entities(label_ids, label_scores, pre.words, pre.starts, pre.ends, ignore)
        return self.group_entities(*self.aggregate_words(pre, strategy), ignore)

    def aggregate_words(self, pre: PreEntities, strategy: str) -> tuple[list, list, list, list, list]:
        """Pipeline ``aggregate_words`` + ``aggregate_word``: a word is a non-subword token followed by
        its subword tokens; its label and score by `first`, `max` or `average`. Returns per word
        (label id, score, token strings, start, end); the word string is decoded lazily by grouping."""
        probs = pre.scores
        word_starts = np.flatnonzero(~pre.is_subword)
        if word_starts.size == 0 or word_starts[0] != 0:
            word_starts = np.concatenate(([0], word_starts))  # the first token always opens a word
        bounds = word_starts.tolist() + [len(pre.words)]
        w_label, w_score, w_word, w_start, w_end = [], [], [], [], []
        row_max = probs.max(axis=1).tolist() if strategy == "max" else None
        for a, b in zip(bounds[:-1], bounds[1:]):
            if strategy == "first":
                row = probs[a]
            elif strategy == "max":
                best = a  # Python max(): the first token whose row maximum is strictly the greatest
                for k in range(a + 1, b):
                    if row_max[k] > row_max[best]:
                        best = k
                row = probs[best]
            else:  # average
                row = mean32_rows(probs[a:b])
            label = int(np.argmax(row))
            w_label.append(label)
            w_score.append(float(row[label]))
            w_word.append(pre.words[a:b])  # decoded lazily: only words in kept groups are needed
            w_start.append(pre.starts[a])
            w_end.append(pre.ends[b - 1])
        return w_label, w_score, w_word, w_start, w_end

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

    def group_entities(self, label_ids, scores, words, starts, ends, ignore) -> list[dict]:
        """Pipeline ``group_entities`` + ``group_sub_entities``, then postprocess's ignore_labels filter.

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
