"""pyner predict == transformers' TokenClassificationPipeline (the oracle), for every family and strategy.

The oracle runs PyTorch on the source checkpoint; pyner runs the fp32 ONNX artifact. Labels,
start, end and word must be identical; scores within 1e-4. Two engines agree to ~1e-6, so a token
whose two best labels are closer than 1e-4 may legitimately rank them differently: a text whose
entities differ only in regions holding such a near-tie token is counted, not failed (and such texts
must stay rare). Long documents (3-10x max_length) go through the pipeline with the artifact's
stride, which is what pyner's windows mirror.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAMILIES
from factory import NER_DATA

from pyner.artifact import AGGREGATIONS
from pyner.golden import ENTITY_KEYS, GOLDEN_TEXTS, entity_differences

SHARED = NER_DATA


def _bio_sentences(path: Path, limit: int) -> list[str]:
    out, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                out.append(" ".join(words))
                words = []
                if len(out) >= limit:
                    break
            continue
        words.append(line.split()[0])
    return out


def oracle_texts(max_length: int) -> tuple[list[str], list[str]]:
    """(short texts that fit one window, long documents of 3-10x max_length)."""
    texts = [t for _, t in GOLDEN_TEXTS if len(t) < 400]
    texts += [
        "U.S. officials met O'Neil by e-mail.",
        "Zoë Saldaña and Beyoncé Knowles-Carter in Montréal",
        "naïve café owners in Kraków, Poland",
        "\u05e9\u05dc\u05d5\u05dd Jerusalem \u0645\u0631\u062d\u0628\u0627 Cairo",
        "🇺🇸🇨🇦 flags and 👩🏽‍💻 coders at Google",
        "a\u0000b\u001fc Berlin\u00adTegel \u2028 Paris",
        "\t\tTabs\tand\nnewlines\r\nin London\n",
    ]
    if SHARED.exists():
        texts += _bio_sentences(SHARED / "wikigold" / "test.bio", 25)
        texts += _bio_sentences(SHARED / "broad_twitter_corpus" / "test.bio", 15)
    news = " ".join(_bio_sentences(SHARED / "wikigold" / "test.bio", 120)) if SHARED.exists() else GOLDEN_TEXTS[-1][1]
    words = news.split()
    # roughly 1-2 tokens per word for the tiny tokenizers: pick word counts for ~3x and ~10x max_length
    longs = [" ".join(words[: 2 * max_length]), " ".join(words[: 6 * max_length]), GOLDEN_TEXTS[-1][1][: 40 * max_length]]
    return texts, longs


_PIPES: dict = {}

NEAR_TIE = 1e-4  # two labels closer than this: PyTorch and ONNX Runtime may rank them differently
MAX_WORD_TOKENS = 8  # the longest word (in tokens) whose averaged scores are checked for a near tie


def near_tie_spans(model, text: str) -> list[tuple[int, int]]:
    """Spans (code points) of the tokens of `text` whose two best labels are within NEAR_TIE in the
    artifact's scores. PyTorch and ONNX Runtime agree to ~1e-6, so only such a token can
    legitimately take another label in the two engines; a difference anywhere else is a bug."""
    import numpy as np

    [scored] = model.score([text])
    spans = []
    for w, s in zip(scored.encoded.windows, scored.scores):
        top2 = np.sort(s, axis=-1)[:, -2:]
        for t in np.flatnonzero((top2[:, 1] - top2[:, 0] < NEAR_TIE) & (w.special_tokens_mask == 0)).tolist():
            spans.append(tuple(w.offsets[t].tolist()))
        # The "average" strategy labels a word by the argmax of its tokens' mean scores: a word (a run of
        # consecutive tokens) can be a near tie without any of its tokens being one.
        n = len(s)
        for length in range(2, min(MAX_WORD_TOKENS, n) + 1):
            means = np.stack([s[i:i + length].mean(axis=0) for i in range(n - length + 1)])
            top2 = np.sort(means, axis=-1)[:, -2:]
            for i in np.flatnonzero(top2[:, 1] - top2[:, 0] < NEAR_TIE).tolist():
                if not w.special_tokens_mask[i:i + length].any():
                    spans.append((int(w.offsets[i][0]), int(w.offsets[i + length - 1][1])))
    return spans


def differing_regions(got: list[dict], want: list[dict]) -> list[tuple[int, int]]:
    """The text regions where two entity lists differ: the spans of the entities one side has and the
    other lacks (compared by label, span, word and index), merged where they overlap or touch."""
    def key(e):
        return tuple(None if e.get(k) is None else (int(e[k]) if k in ("start", "end", "index") else e[k]) for k in ENTITY_KEYS)

    ours, theirs = {key(e) for e in got}, {key(e) for e in want}
    spans = sorted((int(e["start"]), int(e["end"])) for e in [*got, *want] if (key(e) in ours) != (key(e) in theirs))
    regions: list[list[int]] = []
    for a, b in spans:
        if regions and a <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], b)
        else:
            regions.append([a, b])
    return [(a, b) for a, b in regions]


def compare_with_pipeline(model, texts, ours, theirs, where: str) -> int:
    """Entities equal text by text (the golden comparison's rules, scores within 1e-4). A text may
    differ only where a near-tie token lies: every region where its entities differ must contain one
    (and a difference in scores alone is never excused). Returns how many texts were excused."""
    ties = 0
    for i, (text, got, want) in enumerate(zip(texts, ours, theirs)):
        diffs = entity_differences(got, want, 1e-4, where=f"{where}/text {i}", names=("pyner", "pipeline"))
        if not diffs:
            continue
        regions = differing_regions(got, want)
        ties_at = near_tie_spans(model, text)
        unexplained = [(a, b) for a, b in regions if not any(s < b and e > a or s == a == b for s, e in ties_at)]
        assert regions and not unexplained, (
            f"{diffs[0]}; differing regions {regions}, near-tie tokens at {ties_at}\n got={got}\nwant={want}")
        ties += 1
    return ties


def hf_pipeline(ckpt: Path, aggregation: str, stride: int | None):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    key = (str(ckpt), aggregation, stride)
    if key not in _PIPES:
        model = AutoModelForTokenClassification.from_pretrained(ckpt, attn_implementation="eager").eval()
        tok = AutoTokenizer.from_pretrained(ckpt)
        kwargs = {"stride": stride} if stride is not None else {}
        _PIPES[key] = pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy=aggregation, device="cpu", **kwargs)
    return _PIPES[key]


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_equals_pipeline(family, artifact_factory, checkpoint_factory):
    import pyner

    ckpt = checkpoint_factory(family)
    folder = artifact_factory(family)
    model = pyner.load(folder)
    short, longs = oracle_texts(model.max_length)
    compared = ties = 0
    for agg in AGGREGATIONS:
        ours = model.predict(short + longs, aggregation=agg)
        if agg == "none":
            # the pipeline refuses stride with aggregation none: compare the texts that fit one window
            pipe = hf_pipeline(ckpt, agg, None)
            fits = [i for i, e in enumerate(model.encode(short)) if len(e.windows) == 1]
            theirs = pipe([short[i] for i in fits])
            ties += compare_with_pipeline(model, [short[i] for i in fits], [ours[i] for i in fits], theirs, f"{family}/{agg}")
            compared += len(fits)
            continue
        pipe = hf_pipeline(ckpt, agg, model.stride)
        theirs = pipe(short + longs)
        ties += compare_with_pipeline(model, short + longs, ours, theirs, f"{family}/{agg}")
        compared += len(theirs)
    # the long documents really needed several windows
    assert all(len(e.windows) >= 3 for e in model.encode(longs))
    assert compared > 4 * len(short) and ties < compared // 10, f"{ties} of {compared} texts excused by near-ties"


def test_batching_does_not_change_results(artifact_factory):
    import pyner

    model = pyner.load(artifact_factory("bert"))
    short, longs = oracle_texts(model.max_length)
    texts = short + longs
    ref = model.predict(texts, batch_size=1)
    _close(ref, model.predict(texts, batch_size=64, max_batch_tokens=100_000))
    rev = model.predict(texts[::-1], batch_size=7, max_batch_tokens=300)[::-1]
    _close(ref, rev)


def _close(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert not entity_differences(x, y, 1e-5, where=f"text {i}")


def test_bad_texts(artifact_factory):
    import pyner

    model = pyner.load(artifact_factory("bert"))
    assert model.predict([]) == []
    assert model.predict(["", "   ", "\n\t"]) == [[], [], []]
    for bad, name in ((None, "NoneType"), (b"Paris", "bytes"), (3, "int")):
        with pytest.raises(TypeError, match=rf"texts\[1\] is {name}"):
            model.predict(["ok", bad])
    with pytest.raises(TypeError, match="single str"):
        model.predict("Paris")
    with pytest.raises(ValueError, match="none, simple, first, average, max"):
        model.predict(["Paris"], aggregation="mean")


def test_runtime_never_imports_torch(artifact_factory, tmp_path):
    folder = artifact_factory("bert")
    code = f"""
import sys, json
import pyner
from pyner.verify import verify
m = pyner.load({str(folder)!r})
m.predict(["Angela Merkel visited Paris."], aggregation="average")
assert verify({str(folder)!r}).ok
from pyner.cli import main
rc = main(["predict", {str(folder)!r}, "Berlin is big.", "--quiet"])
print(json.dumps({{"rc": rc, "heavy": sorted(k for k in sys.modules if k.split('.')[0] in ("torch", "transformers", "pyner_export", "openvino"))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_equals_pipeline_with_hub_tokenizer_class(family, artifact_factory, checkpoint_factory):
    """Hub checkpoints name their tokenizer class (BertTokenizer, XLMRobertaTokenizer, ...), and
    transformers then rebuilds the tokenizer from the vocabulary rather than using tokenizer.json as
    saved. The artifact must carry the tokenizer the pipeline really uses."""
    import pyner

    ckpt = checkpoint_factory(family, hub_tokenizer_class=True)
    model = pyner.load(artifact_factory(family, hub_tokenizer_class=True))
    short, longs = oracle_texts(model.max_length)
    ties = 0
    for agg in ("simple", "average"):
        ours = model.predict(short + longs, aggregation=agg)
        theirs = hf_pipeline(ckpt, agg, model.stride)(short + longs)
        ties += compare_with_pipeline(model, short + longs, ours, theirs, f"{family}/hub/{agg}")


def test_near_tie_excuse_covers_only_the_region_of_the_tie():
    """Hand-checked: "New York" (pyner) vs "New" + "York" (pipeline) is excused by a near-tie at
    "York"; the same tie does not excuse a difference at "Paris", nor a score-only difference."""
    import numpy as np

    from pyner.runtime import Encoded, ScoredText, TokenWindow

    text = "New York Paris"
    offsets = np.array([[0, 0], [0, 3], [4, 8], [9, 14], [0, 0]])
    window = TokenWindow(np.arange(5), np.zeros(5, dtype=np.int64), offsets, np.array([1, 0, 0, 0, 1], dtype=np.int8))
    scores = np.array([[1, 0, 0], [0.1, 0.8, 0.1], [0.1, 0.45, 0.45], [0.9, 0.05, 0.05], [1, 0, 0]], dtype=np.float32)

    class Model:
        def score(self, texts):
            return [ScoredText(Encoded(text, (window,)), (scores,))]

    def ent(label, start, end, score=0.9):
        return {"entity_group": label, "score": score, "word": text[start:end], "start": start, "end": end}

    paris = ent("LOC", 9, 14)
    ours = [[ent("LOC", 0, 8), paris]]
    assert compare_with_pipeline(Model(), [text], ours, [[ent("LOC", 0, 3), ent("ORG", 4, 8), paris]], "hand") == 1
    with pytest.raises(AssertionError, match="differing regions"):
        compare_with_pipeline(Model(), [text], ours, [[ent("LOC", 0, 8), ent("PER", 9, 14)]], "hand")
    with pytest.raises(AssertionError, match="differing regions"):
        compare_with_pipeline(Model(), [text], ours, [[ent("LOC", 0, 8, 0.5), paris]], "hand")
