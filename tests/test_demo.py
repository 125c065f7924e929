"""The embedded demo model: trained once and cached, packaged with real labelled data, guarded.

The demo checkpoint comes from `ensure_demo_checkpoint()`: the first run on a machine trains it
(a few minutes on 2 cores) into the user cache; later runs find it there. The evaluation slice is
the first sentences of the Broad Twitter Corpus *dev* split (held out from training), written by
the tests into a temporary file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from factory import NER_DATA, oracle_word_tags
from pyner import artifact as art
from pyner.cli import main

BTC_DEV = NER_DATA / "broad_twitter_corpus" / "dev.bio"
SLICE = 40  # sentences: enough for a meaningful F1, fast to score
NEWS = [
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the European Union budget.",
    "Apple shares rose after Tim Cook spoke in Cupertino, California.",
]


@pytest.fixture(scope="session")
def demo_ckpt() -> Path:
    from pyner_export.demo import ensure_demo_checkpoint

    return ensure_demo_checkpoint(progress=False)


def _dev_sentences(n: int = SLICE):
    from pyner_export.demo import LABELS
    from pyner_export.evaldata import read_bio

    assert BTC_DEV.is_file(), f"{BTC_DEV}: the BTC dev split is needed (set PYNER_DATA_DIR to the folder holding ner/)"
    return read_bio(BTC_DEV, LABELS)[:n]


def _write_bio(path: Path, sentences) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(ws, ts)) for ws, ts in sentences) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def dev_slice(tmp_path) -> Path:
    return _write_bio(tmp_path / "btc-dev-slice.bio", _dev_sentences())


def _f1(gold, pred) -> float:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    return 100.0 * f1_score(gold, pred, mode="strict", scheme=IOB2)


# ---------------------------------------------------------------------------------------------
# The checkpoint


@pytest.mark.slow
def test_demo_checkpoint_is_a_proper_token_classifier(demo_ckpt):
    from pyner_export.checkpoint import inspect_checkpoint
    from pyner_export.demo import LABELS, META_FILE

    ckpt = inspect_checkpoint(demo_ckpt)
    assert ckpt.labels == list(LABELS) and ckpt.label_scheme == "IOB2"
    assert ckpt.tokenizer["model_max_length"] == 512
    raw = json.loads((demo_ckpt / "tokenizer.json").read_text(encoding="utf-8"))
    assert raw["truncation"] is None and raw["padding"] is None
    meta = json.loads((demo_ckpt / META_FILE).read_text(encoding="utf-8"))
    assert meta["train_sentences"] == 6338 and meta["truncated_words"] < 100  # words past 128 pieces in a few long tweets


@pytest.mark.slow
def test_demo_checkpoint_is_cached_not_retrained(demo_ckpt, monkeypatch):
    import pyner_export.demo as demo

    def no_training(*a, **k):
        raise AssertionError("the demo model was retrained although it is cached")

    monkeypatch.setattr(demo, "train", no_training)
    assert demo.ensure_demo_checkpoint(progress=False) == demo_ckpt
    # what determines the weights is in the key: other hyper-parameters, another folder
    assert demo.cache_key(demo.HyperParams(epochs=3)) != demo.cache_key()


@pytest.mark.slow
def test_demo_model_finds_entities_in_news(demo_ckpt, tmp_path):
    """Hand-checked: the people, places and companies of two news sentences."""
    from pyner.runtime import load

    out = tmp_path / "demo"
    assert main(["package", str(demo_ckpt), "-o", str(out), "--quiet"]) == 0
    ents = load(out).predict(NEWS)
    found = [{(e["entity_group"], e["word"]) for e in text} for text in ents]
    assert ("PER", "angela merkel") in found[0] and ("PER", "emmanuel macron") in found[0]
    assert ("LOC", "berlin") in found[0]
    assert ("PER", "tim cook") in found[1]


# ---------------------------------------------------------------------------------------------
# `pyner package --eval-data` on the demo model


@pytest.mark.slow
def test_package_demo_with_eval_data_f1_matches_transformers(demo_ckpt, dev_slice, tmp_path):
    out = tmp_path / "fp32"
    assert main(["package", str(demo_ckpt), "-o", str(out), "--eval-data", str(dev_slice), "--quiet"]) == 0
    guard = art.load_checked(out).raw["guard"]
    assert guard["passed"] is True and guard["f1"]["sentences"] == SLICE
    sentences = _dev_sentences()
    want = _f1([t for _, t in sentences], oracle_word_tags(demo_ckpt, [w for w, _ in sentences]))
    assert guard["f1"]["pytorch"] == pytest.approx(want, abs=1e-3)
    assert guard["f1"]["artifact"] == pytest.approx(want, abs=1e-3)  # fp32: the same predictions
    assert want > 40.0  # a trained model (random weights score ~0 on this slice)


@pytest.mark.slow
def test_package_demo_int8_keeps_the_policy_nodes_float(demo_ckpt, dev_slice, tmp_path):
    """The default policy's nodes stay float32 MatMuls, the rest is int8, F1 on real data holds,
    and the guard's int8 limits (agreement >= 98%, F1 drop <= 1 point) accept it by default."""
    import onnx

    out = tmp_path / "int8"
    rc = main(["package", str(demo_ckpt), "-o", str(out), "--precision", "int8", "--eval-data", str(dev_slice), "--quiet"])
    assert rc == 0
    m = art.load_checked(out).raw
    assert m["guard"]["enabled"] is True and m["guard"]["passed"] is True
    assert m["guard"]["min_agreement"] == 0.98 and m["guard"]["max_f1_drop"] == 1.0
    q = m["quantization"]
    assert q["per_channel"] is True and q["policy"] == "head+ffn_out"
    g = onnx.load(str(out / "model.onnx"))
    float_matmuls = {n.name for n in g.graph.node if n.op_type == "MatMul"}
    # the classifier and the 6 feed-forward output projections (one per layer) stayed float32 MatMuls
    assert len(q["nodes_excluded"]) == 7 and set(q["nodes_excluded"]) <= float_matmuls
    assert sum("/output/dense/" in n for n in q["nodes_excluded"]) == 6 and any("classifier" in n for n in q["nodes_excluded"])
    quantized = [n for n in g.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")]
    assert len(quantized) == 30  # q, k, v, attention output and FFN input of 6 layers
    f1 = m["guard"]["f1"]
    assert f1["sentences"] == SLICE and abs(f1["drop"]) <= 1.0


def _damage_classifier(monkeypatch, o_shift: float):
    """Raise the exported graph's O logit: PyTorch stays right, the artifact misses entities (F1 drops)."""
    import onnx
    import pyner_export.onnx_export as ox

    original = ox.export_onnx

    def damaged(*args, **kw):
        path = original(*args, **kw)
        g = onnx.load(str(path))
        hit = 0
        for init in g.graph.initializer:
            if "classifier" in init.name and list(init.dims) == [7]:  # the head's bias, one value per label
                arr = onnx.numpy_helper.to_array(init).copy()
                arr[0] += o_shift
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
                hit += 1
        assert hit == 1, "the classifier bias was not found in the exported graph"
        onnx.save(g, str(path))
        return path

    monkeypatch.setattr(ox, "export_onnx", damaged)


@pytest.mark.slow
def test_guard_refuses_a_damaged_demo_export(demo_ckpt, dev_slice, tmp_path, monkeypatch, capsys):
    _damage_classifier(monkeypatch, o_shift=3.0)
    out = tmp_path / "damaged"
    rc = main(["package", str(demo_ckpt), "-o", str(out), "--eval-data", str(dev_slice), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 5, err
    assert "accuracy guard refused" in err and "entity F1 drops" in err and str(dev_slice) in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".damaged")] == []
    # the same damage written anyway with --no-guard: the manifest records the F1 the guard saw
    assert main(["package", str(demo_ckpt), "-o", str(out), "--eval-data", str(dev_slice), "--no-guard", "--quiet"]) == 0
    f1 = art.load_checked(out).raw["guard"]["f1"]
    assert f1["drop"] > 5.0 and f1["pytorch"] > 40.0


# ---------------------------------------------------------------------------------------------
# Malformed --eval-data: file, line number and reason; exit 3; nothing written


@pytest.mark.slow
@pytest.mark.parametrize("lines,lineno,reason", [
    (["Angela\tB-PER", "Merkel\tI-PER\textra"], 2, "expected 2 columns"),
    (["Angela\tB-PER", "", "Olympics\tB-MISC"], 3, "unknown tag 'B-MISC'"),
    (["Angela\tB-PER", "Merkel\tE-PER"], 2, "uses the IOBES scheme but the model's labels are IOB2"),
    (["in\tO", "Paris\tI-LOC"], 2, "IOB1 style"),
])
def test_malformed_eval_data_names_file_line_and_reason(demo_ckpt, tmp_path, capsys, lines, lineno, reason):
    bio = tmp_path / "bad.bio"
    bio.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["package", str(demo_ckpt), "-o", str(out), "--eval-data", str(bio), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert f"{bio}:{lineno}:" in err and reason in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Training: missing data is an error (never random weights); training is deterministic


def test_missing_training_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import pyner_export.demo as demo

    monkeypatch.setattr(demo, "TRAIN_FILE", tmp_path / "nowhere" / "train.bio")
    monkeypatch.setenv("PYNER_CACHE", str(tmp_path / "cache"))
    rc = main(["package", "-o", str(tmp_path / "demo"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert f"demo training data not found: {tmp_path / 'nowhere' / 'train.bio'}" in err and "hint:" in err
    assert not (tmp_path / "demo").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_training_is_deterministic_and_checks_its_data(tmp_path):
    """Two short runs on a few sentences give bit-identical weights; a bad tag names its line."""
    import pyner_export.demo as demo
    from pyner.errors import InputError

    sentences = [s for s in demo.read_bio(demo.TRAIN_FILE)[:24]]
    small = _write_bio(tmp_path / "small.bio", sentences)
    hp = demo.HyperParams(epochs=1, batch_size=8)
    demo.train(tmp_path / "a", hp, train_file=small, progress=False)
    demo.train(tmp_path / "b", hp, train_file=small, progress=False)
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a == b
    # training moved the upper encoder layers away from the pretrained weights, and kept the
    # embeddings and the lowest `freeze_lower_layers` layers frozen
    from safetensors.numpy import load_file

    pre = load_file(str(demo.encoder_dir() / "model.safetensors"))
    got = load_file(str(tmp_path / "a" / "model.safetensors"))
    name = "encoder.layer.5.output.dense.weight"
    assert not np.array_equal(got["bert." + name], pre[name])
    for frozen in ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                   f"encoder.layer.{hp.freeze_lower_layers - 1}.output.dense.weight"]:
        assert np.array_equal(got["bert." + frozen], pre[frozen]), frozen
    assert not np.array_equal(got["bert." + f"encoder.layer.{hp.freeze_lower_layers}.output.dense.weight"],
                              pre[f"encoder.layer.{hp.freeze_lower_layers}.output.dense.weight"])

    bad = tmp_path / "bad.bio"
    bad.write_text("Angela\tB-PER\nMerkel\tI-PERSON\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{bad}:2: unknown tag 'I-PERSON'"):
        demo.train(tmp_path / "d", hp, train_file=bad, progress=False)
    shutil.rmtree(tmp_path / "a")
