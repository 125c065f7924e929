"""`pyner package`: every family exports faithfully (PyTorch is the oracle), precisions are guarded,
bad input gets one clear line and a non-zero exit, and nothing half-written is ever left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import FAMILIES, LABELS
from factory import oracle_word_tags, takes_token_types
from pyner import artifact as art
from pyner.cli import main

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the European Union budget.",
    "x",
    "",
    "Zürich, Genève and Łódź; François visited São Paulo!!! (Really?)",
    "東京都の小池百合子知事は記者会見で発表した。",
    "محمد بن سلمان زار القاهرة",
    "Great game 🎉⚽ Messi 🐐 #ARG",
    " ".join(["The International Monetary Fund cut its forecast for China and India."] * 6),  # truncated at max_length
]
PAIRS = ["Apple Inc.", "a second segment", "", "Paris", "x", "y", "z", "w"]


def _torch_reference(ckpt: Path, pairs: bool):
    """Independent oracle: transformers' own tokenizer (padding, truncation) and model (default attention)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForTokenClassification.from_pretrained(str(ckpt)).eval()
    enc = tok(TEXTS, PAIRS if pairs else None, padding=True, truncation=True, max_length=64, return_tensors="np")
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    return enc, logits


def _session(folder: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def _run(sess, enc):
    names = [i.name for i in sess.get_inputs()]
    feed = {n: enc[n].astype(np.int64) for n in names}
    return sess.run(["scores", "logits"], feed)


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")] == []


# ---------------------------------------------------------------------------------------------
# fp32: every family equals PyTorch


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_logits_equal_pytorch(family, artifact_factory, checkpoint_factory):
    folder = artifact_factory(family)
    manifest = art.load_checked(folder).raw  # every checksum holds
    sess = _session(folder)
    assert [o.name for o in sess.get_outputs()] == ["scores", "logits"]
    assert [i.name for i in sess.get_inputs()] == manifest["inputs"]
    takes_types = takes_token_types(family)
    assert ("token_type_ids" in manifest["inputs"]) == takes_types

    enc, want = _torch_reference(checkpoint_factory(family), pairs=takes_types)
    assert enc["attention_mask"].min() == 0  # the batch really is padded
    if takes_types:
        assert enc["token_type_ids"].max() == 1  # second segments exercise the token-type input
    scores, got = _run(sess, enc)
    assert scores.dtype == np.float32 and got.dtype == np.float32
    mask = enc["attention_mask"].astype(bool)
    diff = float(np.abs(got - want)[mask].max())
    assert diff <= 1e-4, f"{family}: ORT logits differ from PyTorch by {diff}"
    # scores are the float32 softmax of the logits, computed in the graph
    e = np.exp(want - want.max(-1, keepdims=True))
    assert np.abs(scores - e / e.sum(-1, keepdims=True))[mask].max() <= 1e-5
    # the guard saw the same thing on the golden texts: logits within float32 rounding of PyTorch's, so a
    # token's label can differ only where its two best logits tie within 2e-4 (a random tiny model has a
    # few such ties: CI on an AVX-512 machine saw one of 2,940 ernie tokens flip, 99.97%)
    assert manifest["guard"]["passed"] and manifest["guard"]["max_abs_logit_diff"] <= 1e-4
    assert manifest["guard"]["token_agreement"] >= 0.999


def test_manifest_and_files(artifact_factory, checkpoint_factory):
    folder = artifact_factory("bert")
    m = art.load_checked(folder).raw
    for key in ("format", "format_version", "pyner_version", "created_utc", "source", "model_type", "labels",
                "label_scheme", "precision", "opset", "onnxruntime_version", "max_length", "stride", "inputs",
                "outputs", "tokenizer", "optimization", "quantization", "guard", "golden", "files"):
        assert key in m, key
    ckpt = checkpoint_factory("bert")
    assert m["source"]["path"] == str(ckpt.absolute())
    assert sorted(m["source"]["files"]) == sorted(p.name for p in ckpt.iterdir())
    assert m["source"]["digest"].startswith("sha256:") and len(m["source"]["digest"]) == 71
    assert m["labels"] == list(LABELS) and m["label_scheme"] == "IOB2"
    assert (m["model_type"], m["precision"], m["opset"], m["onnxruntime_version"]) == ("bert", "fp32", 17, ort.__version__)
    assert (m["max_length"], m["stride"]) == (64, 16)  # tokenizer's model_max_length; max_length // 4
    assert m["outputs"] == ["scores", "logits"]
    assert m["tokenizer"] == {"continuing_subword_prefix": "##", "unk_token": "[UNK]", "unk_token_id": 1,
                              "pad_token_id": 0, "model": "WordPiece", "lowercase": False,
                              "rebuilt_by_transformers": False}
    assert m["golden"] == {"file": "golden.json", "score_tolerance": art.SCORE_TOLERANCE["fp32"]}
    assert sorted(m["files"]) == sorted(art.REQUIRED_FILES)
    assert m["optimization"]["gelu_approximation"] is False and m["optimization"]["fused_ops"]

    tok = json.loads((folder / "tokenizer.json").read_text())
    assert tok["truncation"] is None and tok["padding"] is None
    src_tok = json.loads((ckpt / "tokenizer.json").read_text())
    assert tok["model"] == src_tok["model"]
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)} and config["model_type"] == "bert"
    props = dict(line.split("=", 1) for line in (folder / "serving.properties").read_text().splitlines()
                 if line and not line.startswith("#"))
    assert props == {"engine": "OnnxRuntime",
                     "translatorFactory": "ai.djl.huggingface.translator.TokenClassificationTranslatorFactory",
                     "includeTokenTypes": "true", "softmax": "false", "maxLength": "64", "modelName": "model"}
    roberta = artifact_factory("roberta")
    assert "includeTokenTypes=false" in (roberta / "serving.properties").read_text()
    rm = json.loads((roberta / "pyner.json").read_text())
    assert rm["tokenizer"]["continuing_subword_prefix"] is None and rm["tokenizer"]["pad_token_id"] == 1


def test_max_length_and_stride_flags(artifact_factory):
    folder = artifact_factory("distilbert", max_length=32, stride=5)
    m = json.loads((folder / "pyner.json").read_text())
    assert (m["max_length"], m["stride"]) == (32, 5)
    assert "maxLength=32" in (folder / "serving.properties").read_text()
    golden = json.loads((folder / "golden.json").read_text())
    assert max(len(w["input_ids"]) for c in golden["cases"] for w in c["windows"]) == 32


# ---------------------------------------------------------------------------------------------
# fp16 and int8: agreement computed, recorded, and independently re-checked


@pytest.mark.parametrize("family,precision", [("bert", "fp16"), ("xlm-roberta", "fp16"), ("bert", "int8"), ("deberta-v2", "int8")])
def test_reduced_precision_agreement(family, precision, artifact_factory, checkpoint_factory):
    folder = artifact_factory(family, precision)
    m = art.load_checked(folder).raw
    guard = m["guard"]
    floor = {"fp16": 0.995, "int8": 0.98}[precision]  # the guard's per-precision agreement floor
    assert guard["enabled"] and guard["passed"] and guard["min_agreement"] == floor
    assert floor <= guard["token_agreement"] <= 1.0 and guard["tokens"] > 1000
    assert m["golden"]["score_tolerance"] == art.SCORE_TOLERANCE[precision]
    sess = _session(folder)
    enc, want = _torch_reference(checkpoint_factory(family), pairs="token_type_ids" in m["inputs"])
    scores, got = _run(sess, enc)
    assert scores.dtype == np.float32 and got.dtype == np.float32
    assert np.isfinite(scores).all() and np.isfinite(got).all()  # padded rows included
    mask = enc["attention_mask"].astype(bool)
    agreement = float((got.argmax(-1) == want.argmax(-1))[mask].mean())
    assert agreement >= 0.98, agreement
    # the output softmax runs in float32 even in fp16 graphs: rows sum to 1 at float32 precision
    assert np.abs(scores.sum(-1) - 1.0)[mask].max() <= 1e-5
    graph = onnx.load(str(folder / "model.onnx"))
    ops = [n.op_type for n in graph.graph.node]
    if precision == "fp16":
        assert m["quantization"] is None and "GPU" in " ".join(m["notes"])
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)
    else:
        q = m["quantization"]
        assert q["per_channel"] is True and q["weight_type"] == "QInt8" and q["policy"] == "head+ffn_out"
        assert "MatMulInteger" in ops and q["nodes_excluded"]
        kept = {n.name: n.op_type for n in graph.graph.node}
        assert all(kept.get(name) == "MatMul" for name in q["nodes_excluded"])  # excluded nodes stay float32


def test_default_int8_exclusions_finds_the_classifier(checkpoint_factory, tmp_path):
    from pyner_export.int8 import default_int8_exclusions

    out = tmp_path / "a"
    assert main(["package", str(checkpoint_factory("electra")), "-o", str(out), "--quiet"]) == 0
    graph = onnx.load(str(out / "model.onnx"))
    names = default_int8_exclusions(graph)
    assert len(names) == 1 + 2  # the head, and the feed-forward output projection of each of the 2 layers
    nodes = {n.name: n for n in graph.graph.node}
    inits = {i.name: i for i in graph.graph.initializer}
    dims = [list(next(inits[x] for x in nodes[name].input if x in inits).dims) for name in names]
    assert dims[0][-1] == len(LABELS)  # first the projection to the 9 labels
    assert all(d == [64, 32] for d in dims[1:])  # then intermediate (64) -> hidden (32): FFN outputs


def test_fast_int8_policy_keeps_only_the_head_float(checkpoint_factory, tmp_path):
    """--int8-policy head: the classifier is the one float32 MatMul left; the FFN outputs are quantized too."""
    ckpt = checkpoint_factory("bert")
    out = tmp_path / "fast"
    assert main(["package", str(ckpt), "-o", str(out), "--precision", "int8", "--int8-policy", "head", "--quiet"]) == 0
    m = art.load_checked(out).raw
    q = m["quantization"]
    assert q["policy"] == "head" and len(q["nodes_excluded"]) == 1
    graph = onnx.load(str(out / "model.onnx"))
    inits = {i.name: i for i in graph.graph.initializer}
    float_matmuls = [n for n in graph.graph.node if n.op_type == "MatMul" and any(x in inits for x in n.input)]
    assert [n.name for n in float_matmuls] == q["nodes_excluded"]
    assert list(next(inits[x] for x in float_matmuls[0].input if x in inits).dims)[-1] == len(LABELS)
    # 2 layers x (q, k, v, attention output, FFN in, FFN out) weight MatMuls, all quantized
    quantized = [n for n in graph.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")]
    assert len(quantized) == 12
    assert m["guard"]["passed"] is True and m["guard"]["min_agreement"] == 0.98


# ---------------------------------------------------------------------------------------------
# The guard


def _damage_export(monkeypatch, scale: float = 25.0):
    """Make the exported graph wrong: the classifier weights are scrambled after a correct export."""
    import pyner_export.onnx_export as ox

    original = ox.export_onnx

    def damaged(*args, **kw):
        path = original(*args, **kw)
        g = onnx.load(str(path))
        rng = np.random.default_rng(0)
        for init in g.graph.initializer:
            if "classifier" in init.name:
                arr = onnx.numpy_helper.to_array(init)
                init.CopyFrom(onnx.numpy_helper.from_array((arr + rng.normal(0, scale, arr.shape)).astype(arr.dtype), init.name))
        onnx.save(g, str(path))
        return path

    monkeypatch.setattr(ox, "export_onnx", damaged)


def test_guard_refuses_a_damaged_export_and_writes_nothing(checkpoint_factory, tmp_path, monkeypatch, capsys):
    _damage_export(monkeypatch)
    rc = main(["package", str(checkpoint_factory("bert")), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 5, err
    assert "accuracy guard refused" in err and "agreement" in err
    _no_leftovers(tmp_path, "out")


def test_guard_refusal_keeps_an_existing_artifact(checkpoint_factory, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["package", str(checkpoint_factory("distilbert")), "-o", str(out), "--quiet"]) == 0
    before = (out / "pyner.json").read_bytes()
    _damage_export(monkeypatch)
    assert main(["package", str(checkpoint_factory("distilbert")), "-o", str(out), "--force", "--quiet"]) == 5
    assert (out / "pyner.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_no_guard_writes_and_records_the_failure(checkpoint_factory, tmp_path, monkeypatch, capsys):
    _damage_export(monkeypatch)
    out = tmp_path / "out"
    assert main(["package", str(checkpoint_factory("bert")), "-o", str(out), "--no-guard"]) == 0
    captured = capsys.readouterr()
    assert "guard (OFF: --no-guard): FAILED" in captured.out and "warning" in captured.err
    g = art.load_checked(out).raw["guard"]
    assert g["enabled"] is False and g["passed"] is False and g["token_agreement"] < 0.995


def _write_bio(path: Path, sentences) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n", encoding="utf-8")
    return path


EVAL = [
    [("Angela", "B-PER"), ("Merkel", "I-PER"), ("visited", "O"), ("Paris", "B-LOC"), (".", "O")],
    [("Apple", "B-ORG"), ("Inc.", "I-ORG"), ("hired", "O"), ("John", "B-PER"), ("Smith", "I-PER")],
    [("The", "O"), ("Olympics", "B-MISC"), ("in", "O"), ("Tokyo", "B-LOC"), ("ended", "O")],
    [("Microsoft", "B-ORG"), ("and", "O"), ("Google", "B-ORG"), ("compete", "O"), ("in", "O"), ("Europe", "B-LOC")],
]


def _oracle_word_tags(ckpt: Path, sentences):
    return oracle_word_tags(ckpt, [[w for w, _ in s] for s in sentences])


def test_eval_data_f1_matches_a_transformers_oracle(artifact_factory, checkpoint_factory, tmp_path):
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    bio = _write_bio(tmp_path / "eval.bio", EVAL)
    folder = artifact_factory("bert", "int8", eval_data=bio)
    f1 = art.load_checked(folder).raw["guard"]["f1"]
    assert f1["sentences"] == len(EVAL) and f1["file"] == str(bio)
    gold = [[t for _, t in s] for s in EVAL]
    want = 100 * f1_score(gold, _oracle_word_tags(checkpoint_factory("bert"), EVAL), mode="strict", scheme=IOB2)
    assert f1["pytorch"] == pytest.approx(want, abs=1e-3)
    assert f1["drop"] == pytest.approx(f1["pytorch"] - f1["artifact"], abs=1e-3)
    assert f1["drop"] <= 0.5


def test_f1_drop_over_the_limit_refuses(checkpoint_factory, tmp_path, monkeypatch, capsys):
    # every word gold-tagged with what PyTorch predicts: PyTorch F1 is high, a damaged graph's is lower
    ckpt = checkpoint_factory("bert")
    sentences = []
    for s, tags in zip(EVAL, _oracle_word_tags(ckpt, EVAL)):
        fixed, prev = [], "O"
        for (w, _), t in zip(s, tags):
            if t.startswith("I-") and prev[2:] != t[2:]:
                t = "B-" + t[2:]  # keep the file valid IOB2 (the model may start entities with I-)
            fixed.append((w, t))
            prev = t
        sentences.append(fixed)
    bio = _write_bio(tmp_path / "eval.bio", sentences)
    _damage_export(monkeypatch, scale=3.0)
    rc = main(["package", str(ckpt), "-o", str(tmp_path / "out"), "--eval-data", str(bio), "--no-guard", "--quiet"])
    assert rc == 0
    f1 = json.loads((tmp_path / "out" / "pyner.json").read_text())["guard"]["f1"]
    assert f1["pytorch"] >= 50.0  # gold is (nearly) PyTorch's own output
    assert f1["drop"] > 0.5
    rc = main(["package", str(ckpt), "-o", str(tmp_path / "out2"), "--eval-data", str(bio), "--quiet"])
    assert rc == 5 and "F1 drops" in capsys.readouterr().err
    _no_leftovers(tmp_path, "out2")


def test_guard_counts_the_sentences_whose_tags_changed(checkpoint_factory, tmp_path, monkeypatch, capsys):
    """Fidelity beside F1: the share of evaluation sentences whose tags stay PyTorch's. The oracle: transformers'
    own word tags from PyTorch and from the artifact's graph run in plain ONNX Runtime (no pyner code)."""
    ckpt = checkpoint_factory("bert")
    bio = _write_bio(tmp_path / "eval.bio", EVAL)
    _damage_export(monkeypatch, scale=3.0)
    out = tmp_path / "out"
    assert main(["package", str(ckpt), "-o", str(out), "--eval-data", str(bio), "--no-guard", "--quiet"]) == 0
    g = json.loads((out / "pyner.json").read_text())["guard"]
    words = [[w for w, _ in s] for s in EVAL]
    torch_tags = oracle_word_tags(ckpt, words)
    graph_tags = oracle_word_tags(ckpt, words, onnx_model=out / "model.onnx")
    same = sum(a == b for a, b in zip(torch_tags, graph_tags))
    assert same < len(EVAL)  # the damage changes some sentences' tags
    assert g["f1"]["identical_sentences"] == same and g["f1"]["identical_fraction"] == round(same / len(EVAL), 4)
    assert g["min_identical"] == 0.99
    assert any("keep PyTorch's tags, fewer than the fp32 limit --min-identical 0.99" in f for f in g["failures"])
    rc = main(["package", str(ckpt), "-o", str(tmp_path / "out2"), "--eval-data", str(bio), "--quiet"])
    assert rc == 5 and "--min-identical" in capsys.readouterr().err
    _no_leftovers(tmp_path, "out2")
    # a floor at what was measured is met (the other checks still fail on this damaged graph)
    out3 = tmp_path / "out3"
    assert main(["package", str(ckpt), "-o", str(out3), "--eval-data", str(bio), "--no-guard", "--quiet",
                 "--min-identical", str(same / len(EVAL))]) == 0
    assert not any("--min-identical" in f for f in json.loads((out3 / "pyner.json").read_text())["guard"]["failures"])


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line, the right exit code, nothing written


def _copy(checkpoint_factory, tmp_path, family="bert") -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(checkpoint_factory(family), dst)
    return dst


def _edit_config(ckpt: Path, **changes):
    cfg = json.loads((ckpt / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (ckpt / "config.json").write_text(json.dumps(cfg))


def _fails(args, capsys, code: int, *needles: str, out: Path | None = None) -> str:
    capsys.readouterr()  # what building fixtures printed is not this command's output
    rc = main(["package", *map(str, args), "--quiet"])
    err = capsys.readouterr().err
    assert rc == code, err
    first = err.splitlines()[0]
    assert first.startswith("error: ")
    for n in needles:
        assert n in first, (n, first)
    if out is not None:
        _no_leftovers(out.parent, out.name)
    return first


def test_missing_folder(tmp_path, capsys):
    _fails([tmp_path / "nope", "-o", tmp_path / "out"], capsys, 3, "checkpoint folder not found", "nope", out=tmp_path / "out")


def test_no_config(checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    (ckpt / "config.json").unlink()
    _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "config.json: missing", out=tmp_path / "out")


def test_no_id2label(checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    _edit_config(ckpt, id2label=None, label2id=None)
    _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "config.json", "no id2label", out=tmp_path / "out")


def test_unsupported_architecture_lists_the_supported(checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    _edit_config(ckpt, model_type="gpt2", architectures=["GPT2ForTokenClassification"])
    line = _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "'gpt2' is not supported", out=tmp_path / "out")
    assert "bert, distilbert, electra, roberta, xlm-roberta, deberta-v2" in line


@pytest.mark.parametrize("model_type,why", [
    ("convbert", "convolutions read the padding"),  # tried: PyTorch's own logits depend on the batch's padding
    ("xlm", "only a slow (Python, Moses-based) tokenizer"),
    ("funnel", "GatherElements fails"),
    ("layoutlm", "not yet proven"),  # a ...ForTokenClassification family nobody has proven
])
def test_refused_family_says_why(model_type, why, checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    _edit_config(ckpt, model_type=model_type, architectures=["SomeForTokenClassification"])
    capsys.readouterr()  # what building the checkpoint printed
    line = _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, f"{model_type!r} is not supported", why, out=tmp_path / "out")
    assert "modernbert" in line  # the supported list


def test_not_token_classification(checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    _edit_config(ckpt, architectures=["BertForMaskedLM"])
    _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "BertForMaskedLM", "is not a model pyner packages",
           out=tmp_path / "out")


def test_slow_only_tokenizer(checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    vocab = json.loads((ckpt / "tokenizer.json").read_text())["model"]["vocab"]
    (ckpt / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    (ckpt / "tokenizer.json").unlink()
    _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "only a slow tokenizer", "vocab.txt", "fast tokenizer",
           out=tmp_path / "out")


def test_truncated_weights(checkpoint_factory, tmp_path, capsys):
    ckpt = _copy(checkpoint_factory, tmp_path)
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "model.safetensors", "truncated", out=tmp_path / "out")


def test_bin_weights_load_safely(checkpoint_factory, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    ckpt = _copy(checkpoint_factory, tmp_path, "distilbert")
    state = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    assert main(["package", str(ckpt), "-o", str(tmp_path / "ok"), "--quiet"]) == 0
    # a pickle carrying arbitrary objects is refused by weights_only loading, naming the file
    torch.save({"weights": state, "payload": _Payload()}, ckpt / "pytorch_model.bin")
    _fails([ckpt, "-o", tmp_path / "out"], capsys, 3, "pytorch_model.bin", out=tmp_path / "out")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_existing_output_needs_force(artifact_factory, checkpoint_factory, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(artifact_factory("bert"), out)
    before = (out / "pyner.json").read_bytes()
    capsys.readouterr()  # what packaging the fixture printed
    _fails([checkpoint_factory("bert"), "-o", out], capsys, 4, "output folder exists", str(out))
    assert (out / "pyner.json").read_bytes() == before
    # --force replaces a pyner artifact (once the new one is complete)
    assert main(["package", str(checkpoint_factory("bert", seed=1)), "-o", str(out), "--force", "--quiet"]) == 0
    assert (out / "pyner.json").read_bytes() != before and art.load_checked(out)
    # ... and an empty folder
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["package", str(checkpoint_factory("bert")), "-o", str(empty), "--force", "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_force_never_deletes_what_is_not_an_artifact(checkpoint_factory, tmp_path, capsys):
    """--force replaces only a pyner artifact or an empty folder; anything else is exit 2 naming it."""
    ckpt = checkpoint_factory("bert")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    _fails([ckpt, "-o", mine, "--force"], capsys, 2, "is not a pyner artifact", "thesis.tex", str(mine))
    assert (mine / "thesis.tex").read_text() == "mine"
    regular = tmp_path / "file.txt"
    regular.write_text("keep")
    _fails([ckpt, "-o", regular, "--force"], capsys, 2, "a regular file", str(regular))
    assert regular.read_text() == "keep"
    link = tmp_path / "link"
    link.symlink_to(mine)
    _fails([ckpt, "-o", link, "--force"], capsys, 2, "a symlink")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "link", "mine"]  # no .old-PID, no .tmp


def test_output_inside_or_around_the_checkpoint_is_refused(checkpoint_factory, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoint_factory("bert"), ckpt)
    files = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    _fails([ckpt, "-o", ckpt, "--force"], capsys, 2, "is inside the checkpoint folder")
    _fails([ckpt, "-o", ckpt / "artifact"], capsys, 2, "is inside the checkpoint folder")
    _fails([ckpt, "-o", tmp_path, "--force"], capsys, 2, "contains the checkpoint folder")
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == files  # the weights are intact
    parent_file = tmp_path / "plain"
    parent_file.write_text("x")
    _fails([ckpt, "-o", parent_file / "out"], capsys, 2, f"{parent_file} is not a folder")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_artifact_modes_follow_the_umask(umask, checkpoint_factory, tmp_path):
    """mkdtemp's 0700 would keep the Docker image's non-root user out of an artifact root packaged."""
    import os

    old = os.umask(umask)
    try:
        assert main(["package", str(checkpoint_factory("bert")), "-o", str(tmp_path / "out"), "--quiet",
                     "--external-data", "always"]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in out.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


def _package_proc(ckpt: Path, out: Path):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "pyner", "package", str(ckpt), "-o", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_work(parent: Path, name: str, proc, what: str = ".work") -> Path:
    """Block until the run has a temporary folder with `what` inside (it is mid-export), or fail if it ended."""
    import time

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for p in parent.glob(f".{name}.tmp-*"):
            if (p / what).exists():
                return p
        if proc.poll() is not None:
            pytest.fail(f"pyner package ended (rc {proc.returncode}) before it was interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("pyner package never started its export")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_removes_everything_the_run_wrote(signame, checkpoint_factory, tmp_path):
    import signal

    proc = _package_proc(checkpoint_factory("deberta-v2"), tmp_path / "out")
    _wait_for_work(tmp_path, "out", proc)
    proc.send_signal(getattr(signal, signame))
    rc = proc.wait(timeout=300)
    assert rc == {"SIGTERM": 143, "SIGINT": 130}[signame], proc.stderr.read()
    _no_leftovers(tmp_path, "out")


def test_the_next_run_removes_what_a_killed_run_left(checkpoint_factory, tmp_path):
    import signal

    ckpt = checkpoint_factory("deberta-v2")
    proc = _package_proc(ckpt, tmp_path / "out")
    left = _wait_for_work(tmp_path, "out", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert left.is_dir()  # SIGKILL cannot be caught: its folder stays ...
    live = tmp_path / ".out.tmp-1-alive"  # ... and a live writer's (pid 1 always runs) is never touched
    live.mkdir()
    assert main(["package", str(ckpt), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert not left.exists() and live.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


@pytest.mark.parametrize("args,needle", [
    (["--precision", "fp8"], "unknown precision 'fp8'; choose one of: fp32, fp16, int8"),
    (["--opset", "9"], "--opset 9"),
    (["--max-length", "4096"], "exceeds what the model allows (64 tokens)"),
    (["--stride", "63"], "--stride 63"),
    (["--max-f1-drop", "-1"], "--max-f1-drop"),
    (["--min-identical", "1.5"], "--min-identical"),
    (["--precision", "int8", "--int8-policy", "none"], "unknown --int8-policy 'none'; choose one of: head+ffn_out, head"),
    (["--int8-policy", "head"], "--int8-policy applies to --precision int8 only"),
])
def test_bad_flags(args, needle, checkpoint_factory, tmp_path, capsys):
    _fails([checkpoint_factory("bert"), "-o", tmp_path / "out", *args], capsys, 2, needle, out=tmp_path / "out")


def test_output_required_with_model_dir(checkpoint_factory, capsys):
    _fails([checkpoint_factory("bert")], capsys, 2, "-o ARTIFACT_DIR is required")


def test_bad_eval_data_names_file_and_line(checkpoint_factory, tmp_path, capsys):
    bio = tmp_path / "bad.bio"
    bio.write_text("Angela\tB-PER\nMerkel\tI-PER\n\nParis\tB-CITY\n")
    _fails([checkpoint_factory("bert"), "-o", tmp_path / "out", "--eval-data", bio], capsys, 3,
           f"{bio}:4", "unknown tag 'B-CITY'", out=tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# read_bio


def test_read_bio_reads_tabs_spaces_docstart_and_blank_lines(tmp_path):
    from pyner_export.evaldata import read_bio

    p = tmp_path / "a.bio"
    p.write_text("-DOCSTART- O\n\nAngela B-PER\nMerkel\tI-PER\n\n\n\nin O\nParis   B-LOC\n")
    assert read_bio(p, LABELS) == [(["Angela", "Merkel"], ["B-PER", "I-PER"]), (["in", "Paris"], ["O", "B-LOC"])]


@pytest.mark.parametrize("content,needle", [
    ("Angela B-PER\nMerkel I-PER extra\n", ":2: expected 2 columns"),
    ("Angela\n", ":1: expected 2 columns"),
    ("Angela B-PER\n\nParis B-TOWN\n", ":3: unknown tag 'B-TOWN'"),
    ("Angela S-PER\n", ":1: tag 'S-PER' uses the IOBES scheme but the model's labels are IOB2"),
    ("in O\nParis I-LOC\n", ":2: tag 'I-LOC' starts an entity after 'O' (IOB1 style)"),
    ("", "no sentences"),
])
def test_read_bio_errors(content, needle, tmp_path):
    from pyner.errors import InputError
    from pyner_export.evaldata import read_bio

    p = tmp_path / "a.bio"
    p.write_text(content)
    with pytest.raises(InputError) as e:
        read_bio(p, LABELS)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_label_scheme_detection():
    from pyner_export.labels import detect_scheme

    assert detect_scheme(LABELS) == "IOB2"
    assert detect_scheme(["O", "I-PER", "I-LOC", "B-LOC"]) == "IOB1"
    assert detect_scheme(["O", "B-PER", "I-PER", "E-PER", "S-PER"]) == "IOBES"
    assert detect_scheme(["O", "PER", "LOC"]) == "none"


def test_no_model_dir_packages_the_demo_into_artifacts_demo(checkpoint_factory, tmp_path, monkeypatch):
    import pyner_export.demo as demo

    calls = []

    def fake_demo(**kw):
        calls.append(kw)
        return checkpoint_factory("distilbert")

    monkeypatch.setattr(demo, "ensure_demo_checkpoint", fake_demo)
    monkeypatch.chdir(tmp_path)
    assert main(["package", "--quiet"]) == 0
    assert calls and art.load_checked(tmp_path / "artifacts" / "demo").raw["model_type"] == "distilbert"


def test_source_digest_covers_every_file_and_not_the_path(checkpoint_factory, tmp_path):
    from pyner_export.checkpoint import inspect_checkpoint

    ckpt = _copy(checkpoint_factory, tmp_path)
    original = inspect_checkpoint(checkpoint_factory("bert")).digest()
    assert inspect_checkpoint(ckpt).digest() == original  # same content elsewhere: same digest
    cfg = ckpt / "tokenizer_config.json"
    cfg.write_text(cfg.read_text() + " ")
    assert inspect_checkpoint(ckpt).digest() != original
    assert inspect_checkpoint(checkpoint_factory("bert", seed=1)).digest() != original
