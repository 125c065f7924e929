"""pyner.decode against the oracle: transformers' own TokenClassificationPipeline.

For each tokenizer kind (WordPiece, byte-level BPE, Unigram/Metaspace; built the way transformers
builds them and as a plain PreTrainedTokenizerFast; one with no decoder) the pipeline runs its own
`preprocess` on a text (with `stride` for long texts), gets sharp random logits in place of a
model forward, and runs its own `postprocess`. The Decoder gets the same ids / offsets / special
masks, taken independently from the artifact-style `tokenizers.Tokenizer` (which the test first
checks equal to the pipeline's chunks), and softmax(logits) as float32. Labels, start, end, word
and index must be identical; scores within 1e-4 (the Decoder's means are float64 by design).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import factory  # noqa: E402
from pyner.artifact import AGGREGATIONS  # noqa: E402
from pyner.decode import Decoder, check_aggregation  # noqa: E402
from pyner.errors import UsageError  # noqa: E402
from pyner.golden import entity_differences  # noqa: E402

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
from transformers.pipelines.token_classification import AggregationStrategy  # noqa: E402

SCORE_TOL = 1e-4
IOB2 = tuple(factory.LABELS)
# Labels exercising get_tag vs the group-name rule: no prefix, an unknown prefix, a dash in the tag.
ODD = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "LOC", "E-MISC", "B-X-Y", "I-X-Y")

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the European Union budget.",
    "The U.S. Federal Reserve raised interest rates by 0.25% on Wednesday, Jerome Powell said.",
    "Mr. O'Neil's e-mail (a.b@c.de) reached the U.S.A. office; don't re-send it!!",
    "e-mail: info@example.com, phone +1 (555) 123-4567, web https://example.org/a?b=c&d=e",
    "Café Zürich naïve Dvořák Ørsted Łódź Þórshöfn São Paulo",
    "Cafe\u0301 e\u0301le\u0300ve n\u0303 A\u030a combining marks",
    "東京都の小池百合子知事は記者会見で新しい政策を発表した。北京大学",
    "삼성전자는 서울에서 새로운 스마트폰을 발표했다.",
    "محمد بن سلمان زار القاهرة والتقى بالرئيس المصري.",
    "בנימין נתניהו נפגש עם נשיא ארצות הברית בירושלים.",
    "Family 👨\u200d👩\u200d👧\u200d👦 flags 🇦🇷🇩🇪 thumbs 👍🏽 Messi 🐐 #ARG",
    "zero\u200bwidth\u200cnon\u200djoin\ufeffbom \u0007bell \x00nul \x1besc \u00adsoft\u2060wj",
    "tab\tseparated\tvalues\nnew line\r\nwindows  double  space \u00a0nbsp\u2003em",
    "THE MEETING IS AT 10:30 AM IN ROOM 4B, BUILDING C, SAID JOHN SMITH OF IBM.",
    "Well... what?! (Really?) -- yes; no: maybe. #hashtag @mention 100% $5.99 & more...",
    "Владимир Путин встретился с представителями Газпрома в Москве.",
    "x",
    ".",
    "",
    " ",
    "   \t\n  ",
    "\u00a0\u2003\u3000",
]

# One long text of several windows (tiny max_length below), mixing the scripts above.
LONG_TEXT = " ".join(TEXTS[:16] + list(factory.CORPUS[:6]))


# -- tokenizers as transformers builds them ---------------------------------------------------

def _vocab_list(tok):
    return [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]


@functools.lru_cache(maxsize=None)
def hf_tokenizer(kind: str, max_length: int):
    """A transformers fast tokenizer of one kind, with model_max_length = max_length."""
    if kind == "wordpiece-fast":  # what the factory's checkpoints carry: cased WordPiece
        tok = factory.train_tokenizer("bert")
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, unk_token="[UNK]",
                                          pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    if kind == "wordpiece-nodecoder":  # no decoder: convert_tokens_to_string is a space join
        tok = factory.train_tokenizer("bert")
        tok.decoder = None
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, unk_token="[UNK]",
                                          pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    if kind == "bert-class":  # BertTokenizer rebuilds the backend: lowercase + accent stripping, WordPiece decoder
        tok = factory.train_tokenizer("bert")
        return tf.BertTokenizer(vocab=tok.get_vocab(), do_lower_case=True, model_max_length=max_length)
    if kind == "bytelevel-fast":
        tok = factory.train_tokenizer("roberta")
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, unk_token="<unk>",
                                          pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                          bos_token="<s>", eos_token="</s>")
    if kind == "roberta-class":
        model = json.loads(factory.train_tokenizer("roberta").to_str())["model"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        return tf.RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=max_length)
    if kind == "unigram-fast":
        tok = factory.train_tokenizer("xlm-roberta")
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, unk_token="<unk>",
                                          pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                          bos_token="<s>", eos_token="</s>")
    if kind == "xlmr-class-never":  # Metaspace with prepend_scheme "never"
        vocab = _vocab_list(factory.train_tokenizer("xlm-roberta"))
        return tf.XLMRobertaTokenizer(vocab=vocab, add_prefix_space=False, model_max_length=max_length)
    if kind == "debertav2-class":  # Metaspace with prepend_scheme "first", punctuation split
        vocab = _vocab_list(factory.train_tokenizer("deberta-v2"))
        return tf.DebertaV2Tokenizer(vocab=vocab, split_by_punct=True, add_prefix_space=False,
                                     model_max_length=max_length)
    raise ValueError(kind)


KINDS = ("wordpiece-fast", "wordpiece-nodecoder", "bert-class", "bytelevel-fast", "roberta-class",
         "unigram-fast", "xlmr-class-never", "debertav2-class")


@functools.lru_cache(maxsize=None)
def oracle_pipeline(kind: str, labels: tuple, max_length: int):
    """The pipeline under test. Its model is never run (logits are supplied), so a tiny BERT will do."""
    cfg = tf.BertConfig(hidden_size=4, num_hidden_layers=1, num_attention_heads=1, intermediate_size=4,
                        vocab_size=8, id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)})
    torch.manual_seed(0)
    return tf.pipeline("token-classification", model=tf.BertForTokenClassification(cfg),
                       tokenizer=hf_tokenizer(kind, max_length), device="cpu")


@functools.lru_cache(maxsize=None)
def artifact_tokenizer(kind: str, max_length: int):
    """What the runtime has: a tokenizers.Tokenizer read from the saved tokenizer.json, no truncation/padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(hf_tokenizer(kind, max_length).backend_tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


@functools.lru_cache(maxsize=None)
def decoder_for(kind: str, labels: tuple, max_length: int) -> Decoder:
    hf = hf_tokenizer(kind, max_length)
    tok = artifact_tokenizer(kind, max_length)
    return Decoder(labels, tok, unk_token_id=hf.unk_token_id,
                   continuing_subword_prefix=getattr(tok.model, "continuing_subword_prefix", None))


# -- logits and the two sides ------------------------------------------------------------------

def sharp_logits(ids, offsets, n_labels: int, seed: int, shared: bool) -> np.ndarray:
    """Sharp logits: each token favours one label (O half the time) by a wide margin; about 8% of
    tokens get an exact tie with a second label. With ``shared`` a token's logits depend only on its
    (id, span), so overlapping windows see identical scores (exercises the merge's tie rule)."""
    out = np.empty((len(ids), n_labels), dtype=np.float32)
    window_rng = np.random.default_rng(seed)
    for t, (tid, (s, e)) in enumerate(zip(ids, offsets)):
        rng = np.random.default_rng([seed, int(tid), int(s), int(e)]) if shared else window_rng
        row = rng.normal(0.0, 1.0, n_labels)
        target = 0 if rng.random() < 0.45 else int(rng.integers(n_labels))
        row[target] += rng.uniform(2.0, 8.0)
        if rng.random() < 0.08:
            row[int(rng.integers(n_labels))] = row[target]
        out[t] = row
    return out


def softmax_like_pipeline(logits: np.ndarray) -> np.ndarray:
    maxes = np.max(logits, axis=-1, keepdims=True)
    shifted_exp = np.exp(logits - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


def run_both(kind, labels, text, aggregation, ignore_labels=None, *, max_length=512, stride=None, seed=0,
             shared=False):
    """(pipeline entities, decoder entities, windows) for one text, with identical inputs."""
    pipe = oracle_pipeline(kind, labels, max_length)
    pre, _, _ = pipe._sanitize_parameters(aggregation_strategy="simple", stride=stride)
    post = {"aggregation_strategy": AggregationStrategy(aggregation)}
    if ignore_labels is not None:
        post["ignore_labels"] = ignore_labels

    tok = artifact_tokenizer(kind, max_length)
    tok.enable_truncation(max_length, stride=stride or 0, strategy="longest_first", direction="right")
    try:
        first = tok.encode(text)
    finally:
        tok.no_truncation()
    encodings = [first] + list(first.overflowing) if stride is not None else [first]

    outputs, windows = [], []
    chunks = list(pipe.preprocess(text, **pre))
    assert len(chunks) == len(encodings)
    for i, (chunk, enc) in enumerate(zip(chunks, encodings)):
        ids = chunk["input_ids"][0].tolist()
        n = len(enc.ids)
        # The runtime's windows (tokenizers alone) equal the pipeline's chunks, up to its padding.
        assert enc.ids == ids[:n] and all(x == hf_tokenizer(kind, max_length).pad_token_id for x in ids[n:])
        assert [list(o) for o in enc.offsets] == chunk["offset_mapping"][0].tolist()[:n]
        assert enc.special_tokens_mask == chunk["special_tokens_mask"][0].tolist()[:n]
        logits = sharp_logits(ids, chunk["offset_mapping"][0].tolist(), len(labels),
                              seed * 1000 + (0 if shared else i), shared)
        model_inputs = {k: v for k, v in chunk.items()
                        if k not in ("special_tokens_mask", "offset_mapping", "sentence", "is_last")}
        outputs.append({"logits": torch.from_numpy(logits)[None], "special_tokens_mask": chunk["special_tokens_mask"],
                        "offset_mapping": chunk["offset_mapping"], "sentence": chunk["sentence"],
                        "is_last": chunk["is_last"], "word_ids": None, "word_to_chars_map": None, **model_inputs})
        windows.append((np.asarray(enc.ids, dtype=np.int64), np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2),
                        np.asarray(enc.special_tokens_mask, dtype=np.int64),
                        softmax_like_pipeline(logits[:n]).astype(np.float32)))
    with np.errstate(all="ignore"):
        expected = pipe.postprocess(outputs, **post)
    got = decoder_for(kind, labels, max_length).decode_text(text, windows, aggregation, ignore_labels)
    return expected, got, windows


def assert_same(expected, got, context):
    """The golden comparison (labels, spans, words, index identical; scores within SCORE_TOL), and
    stricter here: the pipeline's key order, plain Python types, per-token scores exactly equal."""
    diffs = entity_differences(got, expected, SCORE_TOL, where=context, names=("decoder", "pipeline"))
    assert not diffs, f"{diffs[0]}\n{got}\n{expected}"
    for k, (e, g) in enumerate(zip(expected, got)):
        assert list(g) == list(e), f"{context} #{k}: keys {list(g)} != {list(e)}"
        assert type(g["score"]) is float and all(type(g[key]) in (str, int) for key in g if key != "score"), g
        if "entity" in e:  # per-token scores are the float32 values themselves, no mean involved
            assert g["score"] == float(e["score"]) or (g["score"] != g["score"] and e["score"] != e["score"])


# -- parity: single window ---------------------------------------------------------------------

@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_parity_single_window(kind, aggregation):
    n_entities = 0
    for labels in (IOB2, ODD):
        for t, text in enumerate(TEXTS):
            for ignore in (None, [], ["O", "PER"]):
                ignore_arg = ignore if aggregation != "none" or ignore is None else ["O", "B-PER"]
                expected, got, _ = run_both(kind, labels, text, aggregation, ignore_arg, seed=t)
                assert_same(expected, got, f"{kind}/{aggregation}/{labels[5]}/text {t}/ignore {ignore_arg}")
                n_entities += len(got)
    assert n_entities > 100  # the sharp logits produce many entities: the comparison is not vacuous


def test_texts_exercise_unk_and_subwords():
    """Guards the parity tests' coverage: UNK tokens and subwords occur with these texts."""
    for kind in ("wordpiece-fast", "unigram-fast"):
        tok = artifact_tokenizer(kind, 512)
        unk = hf_tokenizer(kind, 512).unk_token_id
        assert any(unk in tok.encode(text).ids for text in TEXTS), kind
    enc = artifact_tokenizer("wordpiece-fast", 512).encode(TEXTS[0])
    assert any(t.startswith("##") for t in enc.tokens)


# -- parity: several windows (pipeline with stride) --------------------------------------------

@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_parity_multi_window(kind, aggregation):
    for max_length, stride in ((24, 0), (24, 6), (40, 15)):
        for shared in (False, True):
            expected, got, windows = run_both(kind, IOB2, LONG_TEXT, aggregation, max_length=max_length,
                                              stride=stride, seed=stride, shared=shared)
            assert len(windows) >= 5
            assert_same(expected, got, f"{kind}/{aggregation}/L{max_length}/S{stride}/shared={shared}")


# -- direct rules the pipeline documents -----------------------------------------------------

class _Vocab:
    """A stand-in tokenizer (id -> token, a real WordPiece decoder) for hand-checked cases."""

    def __init__(self, tokens, decoder):
        self.tokens = tokens
        self.decoder = decoder

    def id_to_token(self, i):
        return self.tokens[i] if 0 <= i < len(self.tokens) else None


def _hand_decoder(labels=IOB2):
    from tokenizers import decoders

    tokens = ["[CLS]", "[SEP]", "[UNK]", "Micro", "##soft", "in", "New", "York", "."]
    return Decoder(labels, _Vocab(tokens, decoders.WordPiece()), unk_token_id=2, continuing_subword_prefix="##")


def _onehot(rows, n=len(IOB2), p=0.9):
    out = np.full((len(rows), n), (1 - p) / (n - 1), dtype=np.float32)
    for t, r in enumerate(rows):
        out[t, r] = p
    return out


def test_hand_checked_first_average_max():
    """"Microsoft in New York ." with Micro=B-ORG, ##soft=I-PER: `simple` splits the word, the word
    strategies do not (the pipeline's own docstring example)."""
    text = "Microsoft in New York ."
    ids = np.array([0, 3, 4, 5, 6, 7, 8, 1])
    offsets = np.array([[0, 0], [0, 5], [5, 9], [10, 12], [13, 16], [17, 21], [22, 23], [0, 0]])
    special = np.array([1, 0, 0, 0, 0, 0, 0, 1])
    rows = [0, 3, 2, 0, 5, 6, 0, 0]  # O, B-ORG, I-PER, O, B-LOC, I-LOC, O, O
    scores = _onehot(rows)
    scores[2, 2] = 0.95  # ##soft is the more confident token: `max` takes its label
    scores[2] /= scores[2].sum()
    window = [(ids, offsets, special, scores)]
    d = _hand_decoder()
    simple = d.decode_text(text, window, "simple")
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in simple] == [
        ("ORG", "Micro", 0, 5), ("PER", "##soft", 5, 9), ("LOC", "New York", 13, 21)]
    first = d.decode_text(text, window, "first")
    assert [(e["entity_group"], e["word"]) for e in first] == [("ORG", "Microsoft"), ("LOC", "New York")]
    assert [(e["entity_group"], e["word"]) for e in d.decode_text(text, window, "max")][0] == ("PER", "Microsoft")
    avg = d.decode_text(text, window, "average")
    # average of B-ORG (0.9, ~0.0067) and I-PER: B-ORG 0.45.. vs I-PER 0.47..: I-PER wins
    m = np.nanmean(np.stack([scores[1], scores[2]]).astype(np.float32), axis=0)  # what the pipeline computes
    assert avg[0]["entity_group"] == "PER" and avg[0]["score"] == float(m[2])
    none = d.decode_text(text, window, "none")
    assert [(e["entity"], e["index"], e["word"]) for e in none] == [
        ("B-ORG", 1, "Micro"), ("I-PER", 2, "##soft"), ("B-LOC", 4, "New"), ("I-LOC", 5, "York")]


def test_average_vector_is_numpys_float32_nanmean():
    """The average strategy's label is an argmax over the mean vector: it must equal the pipeline's
    np.nanmean(axis=0) on float32 bit for bit (a float64 mean flips near-ties)."""
    from pyner.decode import mean32_rows

    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 7, 8, 9, 31, 130):
        block = rng.dirichlet(np.full(9, 0.3), size=n).astype(np.float32)
        if n > 2:
            block[1, 3] = np.nan
        assert np.array_equal(mean32_rows(block), np.nanmean(block, axis=0), equal_nan=True)


def test_group_score_is_float64_sequential_mean():
    text = "New York"
    ids = np.array([0, 6, 7, 1])
    offsets = np.array([[0, 0], [0, 3], [4, 8], [0, 0]])
    scores = _onehot([0, 5, 6, 0])
    scores[1, 5], scores[2, 6] = np.float32(0.7), np.float32(0.3000001)
    (e,) = _hand_decoder().decode_text(text, [(ids, offsets, np.array([1, 0, 0, 1]), scores)], "simple")
    assert e["score"] == (float(np.float32(0.7)) + float(np.float32(0.3000001))) / 2


def test_argmax_ties_take_the_first_label():
    ids, offsets = np.array([0, 6, 1]), np.array([[0, 0], [0, 3], [0, 0]])
    scores = np.zeros((3, len(IOB2)), dtype=np.float32)
    scores[:, 5] = scores[:, 3] = 0.5
    (e,) = _hand_decoder().decode_text("New", [(ids, offsets, np.array([1, 0, 1]), scores)], "none")
    assert e["entity"] == "B-ORG"


def test_unk_word_is_the_text_and_never_a_subword():
    text = "Micro☃x"
    ids = np.array([0, 3, 2, 1])  # Micro, [UNK] spanning "☃x" (glued: would be a subword by length)
    offsets = np.array([[0, 0], [0, 5], [5, 7], [0, 0]])
    scores = _onehot([0, 3, 4, 0])
    got = _hand_decoder().decode_text(text, [(ids, offsets, np.array([1, 0, 0, 1]), scores)], "first")
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == [("ORG", "Micro ☃x", 0, 7)]


def test_check_aggregation():
    assert check_aggregation("SIMPLE") == "simple"
    with pytest.raises(UsageError, match="none, simple, first, average, max"):
        check_aggregation("mean")
    with pytest.raises(UsageError):
        check_aggregation(None)
    with pytest.raises(UsageError, match="ignore_labels"):
        _hand_decoder().decode_text("", [], "simple", ignore_labels="O")


def test_empty_windows_and_all_special():
    d = _hand_decoder()
    assert d.decode_text("", [], "simple") == []
    window = (np.array([0, 1]), np.array([[0, 0], [0, 0]]), np.array([1, 1]), _onehot([3, 3]))
    for strategy in AGGREGATIONS:
        assert d.decode_text("", [window], strategy) == []


def test_decode_module_imports_no_torch():
    import subprocess

    code = "import sys, pyner.decode; bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- end to end: the pipeline as users run it, on every family's tiny checkpoint ----------------

@pytest.mark.parametrize("family", factory.FAMILIES)
def test_parity_real_pipeline_call(family, checkpoint_factory):
    """`pipeline("token-classification", model=<checkpoint>)(text, aggregation_strategy=..., stride=...)`,
    tokenizer loaded by AutoTokenizer, against the Decoder fed with the checkpoint's tokenizer.json
    (what the artifact carries) and the same model's logits on the same windows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads only add contention on a shared machine
    try:
        _real_pipeline_parity(family, checkpoint_factory)
    finally:
        torch.set_num_threads(threads)


def _real_pipeline_parity(family, checkpoint_factory):
    from tokenizers import Tokenizer

    ckpt = checkpoint_factory(family)
    pipe = tf.pipeline("token-classification", model=str(ckpt), device="cpu")
    model = pipe.model.eval()
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    tok.no_padding()
    labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    decoder = Decoder(labels, tok, unk_token_id=pipe.tokenizer.unk_token_id,
                      continuing_subword_prefix=getattr(tok.model, "continuing_subword_prefix", None))
    max_length, stride = pipe.tokenizer.model_max_length, 16
    pad_id = pipe.tokenizer.pad_token_id
    checked = 0
    for text in TEXTS + [LONG_TEXT]:
        tok.enable_truncation(max_length, stride=stride, strategy="longest_first", direction="right")
        first = tok.encode(text)
        encodings = [first] + list(first.overflowing)
        windows = []
        for enc in encodings:
            n = len(enc.ids)
            # The pipeline pads every chunk to the longest (max_length when there are several): do the same.
            width = max_length if len(encodings) > 1 else n
            ids = torch.tensor([enc.ids + [pad_id] * (width - n)])
            mask = torch.tensor([[1] * n + [0] * (width - n)])
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits[0, :n].numpy()
            windows.append((np.asarray(enc.ids), np.asarray(enc.offsets).reshape(-1, 2),
                            np.asarray(enc.special_tokens_mask), softmax_like_pipeline(logits).astype(np.float32)))
        # The pipeline's own path (preprocess -> forward -> postprocess), one forward for all strategies.
        pre, _, _ = pipe._sanitize_parameters(aggregation_strategy="simple", stride=stride)
        outputs = [pipe.forward(chunk) for chunk in pipe.preprocess(text, **pre)]
        assert len(outputs) == len(encodings)
        for aggregation in AGGREGATIONS:
            if aggregation == "none" and len(encodings) > 1:
                continue  # the pipeline refuses stride with none
            expected = pipe.postprocess(outputs, aggregation_strategy=AggregationStrategy(aggregation))
            got = decoder.decode_text(text, windows, aggregation)
            assert_same(expected, got, f"{family}/{aggregation}/{text[:30]!r}")
            checked += len(got)
    assert checked > 50
