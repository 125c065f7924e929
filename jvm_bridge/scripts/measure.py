"""Measure the JVM against the Python runtime once: parity totals over the test artifacts, and the
in-process throughput ratio on a BERT-small-shaped model (random weights, 4 layers x 256 hidden,
max_length 128) over the WikiGold sentences, Python and JVM alternating in one run.

    .venv/bin/python jvm_bridge/scripts/measure.py [--threads N] [--out FILE] [--artifact DIR] [--skip-parity]

Needs the jar (`make jvm`) and the test artifacts (jvm_bridge/target/test-artifacts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def wikigold_sentences(path: Path) -> list[str]:
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                sents.append(" ".join(cur))
                cur = []
            continue
        cur.append(line.split("\t")[0].split(" ")[0])
    if cur:
        sents.append(" ".join(cur))
    return sents


def small_bert(folder: Path) -> Path:
    import torch
    import transformers as tf
    from factory import LABELS, train_tokenizer

    tok = train_tokenizer("bert", vocab_size=4000)
    cfg = tf.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512, pad_token_id=tok.token_to_id("[PAD]"),
                        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    torch.manual_seed(0)
    tf.BertForTokenClassification(cfg).eval().save_pretrained(folder)
    tf.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, unk_token="[UNK]", pad_token="[PAD]",
                               cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    return folder


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--artifact", default=None, help="measure throughput on this artifact (e.g. artifacts/demo) "
                   "instead of a generated BERT-small-shaped one")
    p.add_argument("--skip-parity", action="store_true", help="only the throughput")
    args = p.parse_args()
    import make_test_artifacts
    from pyner.jvm import JvmModel, jvm_parity, throughput
    from test_jvm_parity import HOSTILE

    result: dict = {"parity": {}}
    arts = {} if args.skip_parity else make_test_artifacts.ensure(ROOT / "jvm_bridge" / "target" / "test-artifacts")
    totals = {"artifacts": 0, "texts": 0, "windows": 0, "tokens": 0, "entities": 0, "identical_texts": 0,
              "differences": 0, "worst_score_diff": 0.0}
    jvm_ort = py_ort = None
    for (family, precision), folder in ([] if args.skip_parity else sorted(arts.items())):
        r = jvm_parity(folder, HOSTILE, threads=args.threads)
        jvm_ort, py_ort = r.jvm_ort, r.python_ort
        totals["artifacts"] += 1
        for k in ("texts", "windows", "tokens", "entities", "identical_texts"):
            totals[k] += getattr(r, k)
        totals["differences"] += r.total_differences
        totals["worst_score_diff"] = max(totals["worst_score_diff"], r.max_score_diff)
    totals["onnxruntime"] = {"python": py_ort, "jvm": jvm_ort}
    result["parity"] = totals
    print(json.dumps(totals, indent=1), flush=True)

    from pyner_export.package import package

    sents = wikigold_sentences(Path(os.environ.get("PYNER_WIKIGOLD", ROOT.parent / "shared/data/ner/wikigold/test.bio")))
    with tempfile.TemporaryDirectory() as tmp:
        if args.artifact:
            art = Path(args.artifact)
        else:
            ckpt = small_bert(Path(tmp) / "ckpt")
            art = Path(tmp) / "art"
            package(ckpt, art, max_length=128, stride=32, quiet=True)
        with JvmModel(art, threads=args.threads) as m:  # golden self-check on load
            pass
        r = jvm_parity(art, sents[:300], threads=args.threads)
        t = throughput(art, sents, threads=args.threads, repeats=3)
        result["small_bert"] = {"parity_ok": r.ok, "bit_identical": r.bit_identical, "parity_texts": r.texts,
                                "worst_score_diff": r.max_score_diff, **t}
    print(json.dumps(result["small_bert"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
