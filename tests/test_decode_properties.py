"""Property tests (hypothesis) of pyner.decode: the pipeline parity of tests/test_decode.py on
arbitrary text, and the word-construction rules of docs/decoding.md section 5 against the real
tokenizers decoders. Without hypothesis only this file skips; the oracle tests in test_decode.py run.
"""

from __future__ import annotations

import functools
import json
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import factory  # noqa: E402
from pyner.artifact import AGGREGATIONS  # noqa: E402
from test_decode import IOB2, KINDS, ODD, assert_same, hf_tokenizer, run_both  # noqa: E402

# -- properties (hypothesis) -------------------------------------------------------------------

ALPHABET = list("abcXYZ  .,'-#!?()") + list("éüñ") + ["e\u0301", "\u0301", "\t", "\n", "\r\n", "\u00a0",
           "\u200b", "\u200d", "\ufeff", "\x00", "\x07", "東", "京", "都", "م", "ح", "ש", "ל", "😀", "👍🏽",
           "👨\u200d👩", "🇦🇷", "U.S.", "O'Neil", "e-mail", "Berlin", "Merkel", "the ", "##"]
texts = st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join)


def _compact(s: str) -> str:
    """Drop what WordPiece (BertNormalizer) drops or turns into spaces: whitespace and C* characters."""
    return "".join(c for c in s if not c.isspace() and not unicodedata.category(c).startswith("C"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(KINDS),
       aggregation=st.sampled_from(AGGREGATIONS))
def test_property_parity_and_spans(text, seed, kind, aggregation):
    expected, got, _ = run_both(kind, ODD, text, aggregation, [], seed=seed)
    assert_same(expected, got, f"{kind}/{aggregation}/{text!r}")
    for e in got:
        assert 0 <= e["start"] <= e["end"] <= len(text)
    starts = [e["start"] for e in got]
    assert starts == sorted(starts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, seed=st.integers(0, 2**31 - 1), aggregation=st.sampled_from(AGGREGATIONS),
       max_length=st.sampled_from([12, 20]), stride=st.sampled_from([0, 3, 5]))
def test_property_wordpiece_words_and_order(text, seed, aggregation, max_length, stride):
    """Cased WordPiece: each word is text[start:end] as the pipeline derives it: the same characters
    up to whitespace and the control/format characters the normalizer removes; a group that starts on
    a continuation token keeps its "##" (the decoder leaves the first token alone). Aggregated spans
    are ordered and do not overlap, across windows too."""
    expected, got, _ = run_both("wordpiece-fast", IOB2, text, aggregation, [], max_length=max_length,
                                stride=stride, seed=seed)
    assert_same(expected, got, f"{aggregation}/{text!r}")
    for e in got:
        word, ref = _compact(e["word"]), _compact(text[e["start"]:e["end"]])
        assert word == ref or (word.startswith("##") and word[2:] == ref), (e, text[e["start"]:e["end"]])
    if aggregation != "none":
        for a, b in zip(got, got[1:]):
            assert a["end"] <= b["start"], (a, b)


# -- the word-construction rules of docs/decoding.md, checked against the real decoders ---------

_CHAR_BYTES = {c: b for b, c in factory.bytes_to_unicode().items()}
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def spec_decode(decoder: dict | None, tokens: list[str]) -> str:
    """docs/decoding.md section 5, written from the text of the spec (not from tokenizers' code)."""
    if decoder is None:
        return " ".join(tokens)
    kind = decoder["type"]
    if kind == "WordPiece":
        out = []
        for i, token in enumerate(tokens):
            if i > 0:
                token = token[len(decoder["prefix"]):] if token.startswith(decoder["prefix"]) else " " + token
            if decoder["cleanup"]:
                for a, b in _CLEANUP:
                    token = token.replace(a, b)
            out.append(token)
        return "".join(out)
    if kind == "ByteLevel":
        data = bytearray()
        for token in tokens:
            if all(c in _CHAR_BYTES for c in token):
                data.extend(_CHAR_BYTES[c] for c in token)
            else:
                data.extend(token.encode("utf-8"))
        return data.decode("utf-8", errors="replace")
    if kind == "Metaspace":
        scheme = decoder.get("prepend_scheme", "always")
        rep = decoder["replacement"]
        return "".join(t.replace(rep, "") if i == 0 and scheme != "never" else t.replace(rep, " ")
                       for i, t in enumerate(tokens))
    raise NotImplementedError(kind)


@functools.lru_cache(maxsize=None)
def _byte_level_tokens() -> tuple:
    return tuple(hf_tokenizer("bytelevel-fast", 512).backend_tokenizer.get_vocab())


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["wordpiece", "wordpiece-nocleanup", "bytelevel", "metaspace-always",
                                              "metaspace-first", "metaspace-never", "none"]))
def test_spec_word_construction_matches_tokenizers(data, kind):
    from tokenizers import decoders

    pieces = st.sampled_from(["##", "##a", "a", "U", ".", "'", "s", "n't", "do not", " do not", "?", ",", "!",
                              "\u2581", "\u2581New", "New\u2581York", "York", "\u0120New", " York", "\u00f0\u0141",
                              "\u013a", "\u0122", "\u00e9", "\u6771", "\U0001F600", "", " "])
    if kind == "bytelevel":
        pieces = st.one_of(pieces, st.sampled_from(_byte_level_tokens()))
    tokens = data.draw(st.lists(st.one_of(pieces, st.text(max_size=4)), max_size=6))
    real = {"wordpiece": decoders.WordPiece(), "wordpiece-nocleanup": decoders.WordPiece(cleanup=False),
            "bytelevel": decoders.ByteLevel(), "none": None,
            "metaspace-always": decoders.Metaspace(prepend_scheme="always"),
            "metaspace-first": decoders.Metaspace(prepend_scheme="first"),
            "metaspace-never": decoders.Metaspace(prepend_scheme="never")}[kind]
    as_json = None if real is None else json.loads(real.__getstate__())
    expected = " ".join(tokens) if real is None else real.decode(tokens)
    assert spec_decode(as_json, tokens) == expected
