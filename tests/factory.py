"""Tiny random Hugging Face token-classification checkpoints, built offline, one per family.

`make_checkpoint(family, path)` trains a small tokenizer on a built-in English + multilingual
corpus with the `tokenizers` library (WordPiece for the BERT-like families and mpnet, byte-level BPE
for roberta, data2vec-text, deberta and modernbert, Unigram with Metaspace for xlm-roberta, camembert,
deberta-v2, albert, rembert and big_bird; see _SPECS), builds a random model with tiny
dimensions from a config, and saves what `transformers` saves: config.json (IOB2 labels over
PER/ORG/LOC/MISC), model.safetensors, tokenizer.json + tokenizer_config.json (a fast tokenizer).

The weights are random but deterministic for a given seed. The classifier is scaled so logits
are spread (std ~2-3) rather than near-uniform: argmax decisions then have real margins, which
makes precision comparisons meaningful and gives the decoders entities to group.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The labelled corpora (WikiGold, Broad Twitter Corpus): $PYNER_DATA_DIR/ner, else ../shared/data/ner
# beside the checkout, as CI lays it out.
NER_DATA = Path(os.environ.get("PYNER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ner"

# Every family pyner_export.checkpoint.SUPPORTED accepts, each proven by the whole matrix (docs/package.md "Families").
FAMILIES = ("bert", "distilbert", "electra", "roberta", "xlm-roberta", "deberta-v2",
            "camembert", "mpnet", "data2vec-text", "ernie", "megatron-bert", "squeezebert", "mobilebert", "roformer",
            "albert", "rembert", "big_bird", "deberta", "modernbert", "longformer")

LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")

# Small, varied, and covering the scripts the golden texts use (accents, CJK, RTL, emoji).
CORPUS = (
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the European Union budget.",
    "Apple Inc. reported record revenue in Cupertino, California, according to Reuters.",
    "The United Nations Security Council voted on a resolution proposed by France and Germany.",
    "Barack Obama was born in Honolulu, Hawaii, and studied at Columbia University in New York.",
    "Microsoft and Google compete in cloud computing; Amazon Web Services leads the market.",
    "The World Health Organization (WHO) warned about a new strain of influenza in Geneva.",
    "Lionel Messi scored twice as Inter Miami beat the New York Red Bulls 3-1 on Saturday.",
    "Dr. Jane Goodall spoke at the University of Oxford about chimpanzees in Tanzania.",
    "The U.S. Federal Reserve raised interest rates by 0.25% on Wednesday, Jerome Powell said.",
    "Shares of Tesla, Inc. fell 5% in early trading on the Nasdaq after Elon Musk's remarks.",
    "She flew from London Heathrow to Tokyo Narita with British Airways last March.",
    "The Eiffel Tower in Paris attracts millions of visitors every year.",
    "The International Monetary Fund (IMF) cut its growth forecast for China and India.",
    "Wikipedia, the free encyclopedia, is run by the Wikimedia Foundation in San Francisco.",
    "e-mail: info@example.com, phone +1 (555) 123-4567, web https://example.org/a?b=c&d=e",
    "Well... what?! (Really?) -- yes; no: maybe. #hashtag @mention 100% $5.99 & more...",
    "Der Bundeskanzler besuchte München und Köln; später traf er Vertreter der Deutschen Bank.",
    "François Hollande a rencontré les élèves du lycée à Besançon, près de la Suisse.",
    "El presidente de España habló en Madrid sobre la economía de América Latina y Perú.",
    "São Paulo e Rio de Janeiro são as maiores cidades do Brasil, disse o ministro.",
    "Zürich, Genève, Ørsted, Łódź, Ærøskøbing, Þórshöfn and Dvořák are hard to spell.",
    "Владимир Путин встретился с представителями Газпрома в Москве.",
    "Ο πρωθυπουργός της Ελλάδας επισκέφθηκε την Αθήνα και τη Θεσσαλονίκη.",
    "東京都の小池百合子知事は記者会見で新しい政策を発表した。",
    "北京大学和清华大学是中国最著名的大学。",
    "삼성전자는 서울에서 새로운 스마트폰을 발표했다.",
    "محمد بن سلمان زار القاهرة والتقى بالرئيس المصري.",
    "בנימין נתניהו נפגש עם נשיא ארצות הברית בירושלים.",
    "Great game today 🎉⚽ Messi 🐐 #ARG 🇦🇷 love it 😀👍",
    "The quick brown fox jumps over the lazy dog near the river bank in Oxford.",
    "In 1969, Neil Armstrong and Buzz Aldrin landed on the Moon aboard Apollo 11 for NASA.",
    "Mount Everest lies on the border between Nepal and the Tibet Autonomous Region of China.",
    "The Mississippi River flows through Minnesota, Louisiana and the Gulf of Mexico.",
    "Volkswagen AG, Siemens and BASF are listed on the Frankfurt Stock Exchange.",
    "Pope Francis celebrated Mass at St. Peter's Basilica in Vatican City.",
    "Tolstoy wrote War and Peace; Dostoevsky wrote Crime and Punishment in St. Petersburg.",
    "THE MEETING IS AT 10:30 AM IN ROOM 4B, BUILDING C, SAID JOHN SMITH OF IBM.",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 42 1999 2024 3.14159 1,000,000",
)


_WORDPIECE = {"kind": "wordpiece", "specials": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
              "pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_ROBERTA_BPE = {"kind": "bpe", "specials": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                "pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>",
                "bos": "<s>", "eos": "</s>", "offset": 2, "types": False}
# byte-level BPE with BERT-style [CLS]/[SEP] specials (DeBERTa v1, ModernBERT): a template post-processor
_CLS_SEP_BPE = {"kind": "bpe", "specials": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "template": True,
                "pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]",
                "bos": "[CLS]", "eos": "[SEP]", "pair_double_sep": False, "offset": 0, "types": False}
_XLMR_UNIGRAM = {"kind": "unigram", "specials": ["<s>", "<pad>", "</s>", "<unk>"], "late_specials": ["<mask>"],
                 "pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>",
                 "bos": "<s>", "eos": "</s>", "pair_double_sep": True, "offset": 2, "types": False}
_CLS_SEP_UNIGRAM = {"kind": "unigram", "specials": ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "late_specials": ["[MASK]"],
                    "pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]",
                    "bos": "[CLS]", "eos": "[SEP]", "pair_double_sep": False, "offset": 0, "types": True}

# Per family: the tokenizer it is trained with (model, normalizer, post-processor) and the model's facts
# (first position id, whether it takes token types). The hub tokenizer classes below rebuild these
# tokenizers with each class's own normalizer/pre-tokenizer/decoder (test_predict proves both).
_SPECS = {
    "bert": dict(_WORDPIECE, lowercase=False, offset=0, types=True),
    "distilbert": dict(_WORDPIECE, lowercase=True, offset=0, types=False),
    "electra": dict(_WORDPIECE, lowercase=True, offset=0, types=True),
    "roberta": _ROBERTA_BPE,
    "xlm-roberta": _XLMR_UNIGRAM,
    "deberta-v2": dict(_CLS_SEP_UNIGRAM, types=True),
    "camembert": _XLMR_UNIGRAM,
    "data2vec-text": _ROBERTA_BPE,
    "ernie": dict(_WORDPIECE, lowercase=True, offset=0, types=True),
    "megatron-bert": dict(_WORDPIECE, lowercase=False, offset=0, types=True),
    "convbert": dict(_WORDPIECE, lowercase=True, offset=0, types=True),
    "squeezebert": dict(_WORDPIECE, lowercase=True, offset=0, types=True),
    "mobilebert": dict(_WORDPIECE, lowercase=True, offset=0, types=True),
    "roformer": dict(_WORDPIECE, lowercase=True, offset=0, types=True),
    # MPNet: WordPiece with RoBERTa's specials (<s> A </s></s> B </s>), positions from padding_idx 1 + 1
    "mpnet": {"kind": "wordpiece", "specials": ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"], "lowercase": True,
              "pad": "<pad>", "unk": "[UNK]", "cls": "<s>", "sep": "</s>", "mask": "<mask>", "bos": "<s>", "eos": "</s>",
              "pair_double_sep": True, "offset": 2, "types": False},
    # ALBERT: SentencePiece Unigram with ALBERT's normalizer (quotes, NFKD, accents stripped, lowercase)
    "albert": dict(_CLS_SEP_UNIGRAM, specials=["<pad>", "<unk>", "[CLS]", "[SEP]"], pad="<pad>", unk="<unk>",
                   normalizer="albert"),
    "rembert": dict(_CLS_SEP_UNIGRAM, specials=["<pad>", "<unk>", "[CLS]", "[SEP]"], pad="<pad>", unk="<unk>"),
    "big_bird": dict(_CLS_SEP_UNIGRAM, specials=["<pad>", "<s>", "</s>", "<unk>", "[SEP]", "[CLS]"], pad="<pad>",
                     unk="<unk>", bos="<s>", eos="</s>"),
    "deberta": _CLS_SEP_BPE,
    "modernbert": _CLS_SEP_BPE,
    "longformer": _ROBERTA_BPE,
}


def _family_spec(family: str) -> dict:
    if family not in _SPECS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(_SPECS)}")
    return _SPECS[family]


def takes_token_types(family: str) -> bool:
    """Whether the family's exported model has a token_type_ids input: its tokenizer returns token types and
    its config (_config) has two of them (deberta-v2's tokenizer returns types its model, type_vocab_size 0, lacks)."""
    return bool(_family_spec(family)["types"]) and family != "deberta-v2"


def train_tokenizer(family: str, vocab_size: int = 1000):
    """Train the family's fast tokenizer (a `tokenizers.Tokenizer`) on CORPUS."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    spec = _family_spec(family)
    corpus = list(CORPUS)
    if spec["kind"] == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=spec["unk"], continuing_subword_prefix="##", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=spec["lowercase"])
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=spec["specials"],
                                            continuing_subword_prefix="##", show_progress=False)
        tok.train_from_iterator(corpus, trainer=trainer)
        _template(tok, spec)
    elif spec["kind"] == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=spec["specials"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(corpus, trainer=trainer)
        if spec.get("template"):
            _template(tok, spec)
        else:
            tok.post_processor = processors.RobertaProcessing(
                (spec["sep"], tok.token_to_id(spec["sep"])), (spec["cls"], tok.token_to_id(spec["cls"])),
                trim_offsets=True, add_prefix_space=False,
            )
    else:
        tok = Tokenizer(models.Unigram())
        if spec.get("normalizer") == "albert":  # what transformers' ALBERT converter writes (less its precompiled map)
            tok.normalizer = normalizers.Sequence([
                normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
                normalizers.StripAccents(), normalizers.Lowercase(), normalizers.Replace(Regex(" {2,}"), " ")])
        else:
            tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=spec["specials"],
                                          unk_token=spec["unk"], show_progress=False)
        tok.train_from_iterator(corpus, trainer=trainer)
        tok.add_special_tokens(spec["late_specials"])
        _template(tok, spec)
    return tok


def _template(tok, spec: dict) -> None:
    """CLS A SEP (pair: CLS A SEP B SEP, or CLS A SEP SEP B SEP with one type, as RoBERTa-style models do)."""
    from tokenizers import processors

    cls, sep = spec["cls"], spec["sep"]
    pair = f"{cls}:0 $A:0 {sep}:0 {sep}:0 $B:0 {sep}:0" if spec.get("pair_double_sep") else f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=pair,
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )


def _config(family: str, vocab_size: int, pad_id: int, max_length: int, spec: dict, spec_ids: dict):
    import transformers as tf

    id2label = {i: label for i, label in enumerate(LABELS)}
    label2id = {label: i for i, label in enumerate(LABELS)}
    common = dict(id2label=id2label, label2id=label2id, vocab_size=vocab_size, pad_token_id=pad_id)
    positions = max_length + spec["offset"]
    bert_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=positions, type_vocab_size=2, **common)
    if family == "bert":
        return tf.BertConfig(**bert_like), tf.BertForTokenClassification
    if family == "electra":
        return tf.ElectraConfig(embedding_size=32, **bert_like), tf.ElectraForTokenClassification
    if family == "distilbert":
        cfg = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=positions, **common)
        return cfg, tf.DistilBertForTokenClassification
    if family == "roberta":
        cfg = tf.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=positions, type_vocab_size=1, bos_token_id=0, eos_token_id=2, **common)
        return cfg, tf.RobertaForTokenClassification
    if family == "xlm-roberta":
        cfg = tf.XLMRobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=positions, type_vocab_size=1, bos_token_id=0, eos_token_id=2, **common)
        return cfg, tf.XLMRobertaForTokenClassification
    roberta_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=positions, type_vocab_size=1, bos_token_id=0, eos_token_id=2, **common)
    if family == "camembert":
        return tf.CamembertConfig(**roberta_like), tf.CamembertForTokenClassification
    if family == "longformer":
        # a 16-token attention window (8 each side): 32- and 64-token windows use the band
        return tf.LongformerConfig(attention_window=16, **roberta_like), tf.LongformerForTokenClassification
    if family == "data2vec-text":
        return tf.Data2VecTextConfig(**roberta_like), tf.Data2VecTextForTokenClassification
    simple = {"ernie": (tf.ErnieConfig, tf.ErnieForTokenClassification, {}),
              "megatron-bert": (tf.MegatronBertConfig, tf.MegatronBertForTokenClassification, {}),
              "convbert": (tf.ConvBertConfig, tf.ConvBertForTokenClassification, {"embedding_size": 32}),
              "squeezebert": (tf.SqueezeBertConfig, tf.SqueezeBertForTokenClassification, {"embedding_size": 32}),
              "roformer": (tf.RoFormerConfig, tf.RoFormerForTokenClassification, {"embedding_size": 32}),
              "albert": (tf.AlbertConfig, tf.AlbertForTokenClassification, {"embedding_size": 16}),
              "mobilebert": (tf.MobileBertConfig, tf.MobileBertForTokenClassification,
                             {"embedding_size": 16, "true_hidden_size": 16, "intra_bottleneck_size": 16,
                              "num_feedforward_networks": 2}),
              "rembert": (tf.RemBertConfig, tf.RemBertForTokenClassification,
                          {"input_embedding_size": 16, "output_embedding_size": 16}),
              # block_sparse as hub BigBird checkpoints are (block 64, 3 random blocks): at most 704 tokens per
              # window, transformers itself runs full attention, which is what the export holds
              "big_bird": (tf.BigBirdConfig, tf.BigBirdForTokenClassification,
                           {"attention_type": "block_sparse", "block_size": 64, "num_random_blocks": 3})}
    if family in simple:
        config_cls, model_cls, extra = simple[family]
        return config_cls(**bert_like, **extra), model_cls
    if family == "mpnet":
        cfg = tf.MPNetConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=positions, relative_attention_num_buckets=32, **common)
        return cfg, tf.MPNetForTokenClassification
    if family == "deberta":
        cfg = tf.DebertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=positions, type_vocab_size=0, relative_attention=True,
                               max_relative_positions=-1, pos_att_type=["p2c", "c2p"], position_biased_input=False, **common)
        return cfg, tf.DebertaForTokenClassification
    if family == "modernbert":
        # local attention (a 16-token window) in every other layer, so that 32- and 64-token windows use it
        cfg = tf.ModernBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=positions, global_attn_every_n_layers=2, local_attention=16,
                                  bos_token_id=spec_ids["cls"], eos_token_id=spec_ids["sep"], cls_token_id=spec_ids["cls"],
                                  sep_token_id=spec_ids["sep"], **common)
        return cfg, tf.ModernBertForTokenClassification
    cfg = tf.DebertaV2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=positions, type_vocab_size=0, relative_attention=True,
                             position_buckets=32, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                             position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True, **common)
    return cfg, tf.DebertaV2ForTokenClassification


# What checkpoints from the hub name in tokenizer_config.json (RoFormer: the WordPiece ones; RoFormerTokenizer's
# jieba pre-tokenizer is Python code that tokenizer.json cannot hold, and pyner refuses it). transformers 5 then REBUILDS the
# tokenizer from the vocabulary with that class's own normalizer/pre-tokenizer/decoder instead of
# using tokenizer.json as saved: pyner must package the tokenizer transformers really uses.
HUB_TOKENIZER_CLASSES = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer", "electra": "ElectraTokenizer",
                         "roberta": "RobertaTokenizer", "xlm-roberta": "XLMRobertaTokenizer", "deberta-v2": "DebertaV2Tokenizer",
                         "camembert": "CamembertTokenizer", "data2vec-text": "RobertaTokenizer", "ernie": "BertTokenizer",
                         "megatron-bert": "BertTokenizer", "convbert": "ConvBertTokenizer",
                         "squeezebert": "SqueezeBertTokenizer", "mobilebert": "MobileBertTokenizer",
                         "roformer": "BertTokenizer", "mpnet": "MPNetTokenizer", "albert": "AlbertTokenizer",
                         "rembert": "RemBertTokenizer", "big_bird": "BigBirdTokenizer", "deberta": "DebertaTokenizer",
                         "modernbert": "PreTrainedTokenizerFast", "longformer": "LongformerTokenizer"}


def save_tokenizer(family: str, path, tok=None, *, max_length: int = 64, vocab_size: int = 1000,
                   hub_tokenizer_class: bool = False) -> None:
    """Save `family`'s tokenizer (`tok`, or one trained here with `vocab_size`) into the checkpoint folder
    `path` as transformers saves a fast tokenizer (also bench/models.py's large random checkpoints)."""
    from transformers import PreTrainedTokenizerFast

    spec = _family_spec(family)
    path = Path(path)
    tok = tok or train_tokenizer(family, vocab_size=vocab_size)
    special = {k: spec[k] for k in ("unk", "pad", "cls", "sep", "mask", "bos", "eos") if k in spec}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=max_length,
        unk_token=special["unk"], pad_token=special["pad"], cls_token=special["cls"],
        sep_token=special["sep"], mask_token=special["mask"],
        **({"bos_token": special["bos"], "eos_token": special["eos"]} if "bos" in special else {}),
        model_input_names=(["input_ids", "token_type_ids", "attention_mask"] if spec["types"]
                           else ["input_ids", "attention_mask"]),
    )
    fast.save_pretrained(path)
    if hub_tokenizer_class:
        cfg_path = path / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["tokenizer_class"] = HUB_TOKENIZER_CLASSES[family]
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")


# Text classification checkpoints: single-label (softmax) over these, multi-label (sigmoid) over MULTI_LABELS.
CLASS_LABELS = ("negative", "neutral", "positive")
MULTI_LABELS = ("politics", "business", "sport", "science", "culture")


def make_checkpoint(family: str, path, *, seed: int = 0, max_length: int = 64, hub_tokenizer_class: bool = False,
                    task: str = "token-classification", multi_label: bool = False) -> Path:
    """Build and save a tiny random `family` checkpoint in `path`; return it.

    task: token-classification (NER labels, the default), text-classification (...ForSequenceClassification
    over CLASS_LABELS, or MULTI_LABELS with problem_type multi_label_classification when `multi_label`),
    feature-extraction (the bare encoder, ...Model).
    hub_tokenizer_class: name the family's tokenizer class in tokenizer_config.json, as hub
    checkpoints do (the default saves the generic PreTrainedTokenizerFast)."""
    import torch
    import transformers as tf

    spec = _family_spec(family)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(family)
    pad_id = tok.token_to_id(spec["pad"])
    spec_ids = {k: tok.token_to_id(spec[k]) for k in ("cls", "sep")}
    config, cls = _config(family, tok.get_vocab_size(), pad_id, max_length, spec, spec_ids)
    if task == "text-classification":
        labels = MULTI_LABELS if multi_label else CLASS_LABELS
        config.id2label = {i: label for i, label in enumerate(labels)}
        config.label2id = {label: i for i, label in enumerate(labels)}
        config.num_labels = len(labels)
        if multi_label:
            config.problem_type = "multi_label_classification"
    torch.manual_seed(seed)
    if task == "text-classification":
        model = tf.AutoModelForSequenceClassification.from_config(config).eval()
    elif task == "feature-extraction":
        model = tf.AutoModel.from_config(config).eval()
    else:
        model = cls(config).eval()
    with torch.no_grad():
        # Random biases and norm parameters (fresh models have zeros/ones everywhere, which the ONNX
        # exporter folds into shared initializers and which would hide a dropped bias).
        g = torch.Generator().manual_seed(seed + 2)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.02, generator=g)
            elif p.dim() == 1 and name.endswith("weight"):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        if task == "token-classification":
            head = model.classifier
            # MobileBERT's NoNorm leaves its output ~18x smaller than a LayerNorm's: a larger head spreads its logits alike
            head.weight.normal_(0.0, 9.0 if family == "mobilebert" else 0.5, generator=torch.Generator().manual_seed(seed + 1))
            head.bias.zero_()
            head.bias[0] = 1.0  # most tokens "O", as in real NER output
        elif task == "text-classification":
            # the last Linear (the one giving the logits): spread so that texts get different labels
            head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == config.num_labels][-1]
            head.weight.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(seed + 1))
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(family, path, tok, max_length=max_length, hub_tokenizer_class=hub_tokenizer_class)
    return path


def oracle_word_tags(ckpt, word_lists, *, onnx_model=None) -> list[list[str]]:
    """First-subword tag per word straight from transformers (is_split_into_words + word_ids), independent of pyner.

    The oracle for word-level predictions (entity F1): one list of words per sentence in, one list of tags out.
    With `onnx_model` (a path), the logits come from that graph in plain ONNX Runtime instead of PyTorch, on
    transformers' own encoding: what an artifact's graph predicts, without pyner's tokenizer or decoder.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForTokenClassification.from_pretrained(str(ckpt)).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    session = None
    if onnx_model is not None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
    out = []
    for words in word_lists:
        enc = tok(list(words), is_split_into_words=True, return_tensors="pt")
        if session is not None:
            feed = {k: v.numpy().astype("int64") for k, v in enc.items() if k in wanted}
            ids = session.run(["logits"], feed)[0][0].argmax(-1).tolist()
        else:
            with torch.no_grad():
                ids = model(**enc).logits[0].argmax(-1).tolist()
        tags, seen = [], set()
        for pos, wid in enumerate(enc.word_ids(0)):
            if wid is not None and wid not in seen:
                seen.add(wid)
                tags.append(labels[ids[pos]])
        out.append(tags)
    return out


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte -> printable-character table that byte-level BPE uses (as docs/decoding.md states it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
