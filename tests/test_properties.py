"""Property tests (hypothesis) of the runtime's entities on arbitrary text.

For any text: every span lies inside it; `word` is what the pipeline derives from the text slice
(checked exactly against the tokenizer's own decoding of the span's tokens elsewhere; here: the
span is non-empty and, for the simple strategy, words never contain text from outside the span);
grouped spans are ordered and do not overlap; results do not depend on batch size or input order.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyner.artifact import AGGREGATIONS
from pyner.golden import entity_differences

ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:'\"-()!?\t\n0123456789")
    + ["é", "ü", "ñ", "\u0301", "中", "国", "東京", "ب", "ש", "😀", "🇫🇷", "👩‍💻", "\u200b", "\u00ad", "ﬁ", "Ⅸ"]
)
TEXT = st.lists(ALPHABET, min_size=0, max_size=60).map("".join)
NEWSY = st.lists(
    st.sampled_from(["Angela", "Merkel", "Paris", "Apple", "Inc.", "met", "in", "the", "U.S.", "O'Neil", "e-mail", "Berlin", "😀", "東京", ","]),
    max_size=120,
).map(" ".join)


@pytest.fixture(scope="module", params=["bert", "roberta", "xlm-roberta"])
def model(request, artifact_factory):
    import pyner

    return pyner.load(artifact_factory(request.param))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.one_of(TEXT, NEWSY), min_size=1, max_size=6), agg=st.sampled_from(AGGREGATIONS))
def test_spans_inside_ordered_and_independent_of_batching(model, texts, agg):
    ents = model.predict(texts, aggregation=agg)
    for text, es in zip(texts, ents):
        prev_start, prev_end = -1, -1
        for e in es:
            # inside the text; possibly empty: byte-level BPE trims a lone space token to (i, i), as the pipeline does
            assert 0 <= e["start"] <= e["end"] <= len(text), (text, e)
            if agg != "none":
                # Ordered, and no overlap beyond one character: the pipeline itself gives two
                # entities the same character when one character is split into several tokens
                # (byte-level BPE bytes of 'ñ', Metaspace's lone '▁' mapped onto the next character).
                assert e["start"] >= prev_end - 1 and e["start"] >= prev_start, f"overlap or disorder in {es}"
                prev_start, prev_end = e["start"], e["end"]
            assert 0.0 <= e["score"] <= 1.0 + 1e-6
            if agg == "simple" and model.manifest.raw.get("model_type") == "roberta" and "\ufffd" not in e["word"]:
                # byte-level BPE loses nothing: the group's word is its text slice (plus the leading space marker)
                assert e["word"].strip() == text[e["start"] : e["end"]].strip(), (text, e)
    # batch size and input order do not change anything
    again = model.predict(texts[::-1], aggregation=agg, batch_size=1)[::-1]
    for i, (a, b) in enumerate(zip(ents, again)):
        assert not entity_differences(a, b, 1e-5, where=f"text {i}", names=("batched", "one by one"))
