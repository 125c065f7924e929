"""Artifacts whose weights live in ONNX external data (`model.onnx.data`), as every model over 2 GiB
must: driven with tiny models through `pyner package --external-data always` (issue: large models).

Oracles: PyTorch (logits), the same checkpoint packaged with embedded weights (identical golden
fixtures: the layout must not change one bit of the computation), and the JVM (parity report).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FAMILIES
from pyner import artifact as art
from pyner.cli import main

from test_package import _fails, _no_leftovers, _run, _session, _torch_reference


def _golden(folder: Path) -> dict:
    return json.loads((folder / art.GOLDEN_FILE).read_text(encoding="utf-8"))


@pytest.mark.parametrize("family", FAMILIES)
def test_external_fp32_equals_pytorch_and_the_embedded_artifact(family, artifact_factory, checkpoint_factory):
    ext = artifact_factory(family, external_data="always")
    embedded = artifact_factory(family)
    m = art.load_checked(ext).raw  # every checksum holds, model.onnx.data's included
    assert m["external_data"] == "model.onnx.data"
    assert sorted(m["files"]) == sorted([*art.REQUIRED_FILES, "model.onnx.data"])
    e = art.load_checked(embedded).raw
    assert e["external_data"] is None
    # the weights moved out of model.onnx (tensors under 1 KiB stay inline)
    assert m["files"]["model.onnx.data"]["bytes"] > m["files"]["model.onnx"]["bytes"]
    assert m["files"]["model.onnx"]["bytes"] < e["files"]["model.onnx"]["bytes"] / 2
    assert sorted(art.load_checked(embedded).raw["files"]) == sorted(art.REQUIRED_FILES)

    enc, want = _torch_reference(checkpoint_factory(family), pairs=family in ("bert", "electra"))
    _, got = _run(_session(ext), enc)
    mask = enc["attention_mask"].astype(bool)
    assert float(np.abs(got - want)[mask].max()) <= 1e-4
    # the same graph, only stored differently: golden fixtures (ids, scores, entities) identical
    assert _golden(ext) == _golden(embedded)
    assert main(["verify", str(ext)]) == 0


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "deberta-v2"])
def test_external_int8_and_fp16_equal_their_embedded_artifacts(family, artifact_factory):
    for precision in ("int8", "fp16"):
        kw = {"guard": False} if precision == "int8" else {}
        ext = artifact_factory(family, precision, external_data="always", **kw)
        embedded = artifact_factory(family, precision, **kw)
        assert art.load_checked(ext).raw["external_data"] == "model.onnx.data"
        assert _golden(ext) == _golden(embedded), f"{family} {precision}"


def test_a_modified_data_file_is_refused(artifact_factory, tmp_path, capsys):
    ext = tmp_path / "a"
    shutil.copytree(artifact_factory("bert", external_data="always"), ext)
    data = bytearray((ext / "model.onnx.data").read_bytes())
    data[len(data) // 2] ^= 0x40
    (ext / "model.onnx.data").write_bytes(bytes(data))
    assert main(["verify", str(ext)]) == 4
    assert "model.onnx.data" in capsys.readouterr().err


def test_a_manifest_naming_external_data_must_list_it(artifact_factory, tmp_path, capsys):
    ext = tmp_path / "a"
    shutil.copytree(artifact_factory("bert", external_data="always"), ext)
    m = json.loads((ext / "pyner.json").read_text())
    del m["files"]["model.onnx.data"]
    (ext / "pyner.json").write_text(json.dumps(m))
    assert main(["verify", str(ext)]) == 4
    assert "model.onnx.data" in capsys.readouterr().err


def test_auto_goes_external_only_over_the_single_file_limit(checkpoint_factory, tmp_path, monkeypatch):
    from pyner_export import onnxio

    ckpt = checkpoint_factory("bert")
    assert main(["package", str(ckpt), "-o", str(tmp_path / "small"), "--quiet"]) == 0
    assert not (tmp_path / "small" / "model.onnx.data").exists()
    monkeypatch.setattr(onnxio, "SINGLE_FILE_LIMIT", 10_000)  # as if the model were over 2 GiB
    assert main(["package", str(ckpt), "-o", str(tmp_path / "big"), "--quiet"]) == 0
    assert json.loads((tmp_path / "big" / "pyner.json").read_text())["external_data"] == "model.onnx.data"
    assert main(["verify", str(tmp_path / "big")]) == 0


def test_never_refuses_a_model_over_the_limit(checkpoint_factory, tmp_path, monkeypatch, capsys):
    from pyner_export import onnxio

    monkeypatch.setattr(onnxio, "SINGLE_FILE_LIMIT", 10_000)
    _fails([checkpoint_factory("bert"), "-o", tmp_path / "out", "--external-data", "never"], capsys, 2,
           "more than one ONNX file can hold")
    _no_leftovers(tmp_path, "out")


def test_bad_external_data_mode(checkpoint_factory, tmp_path, capsys):
    _fails([checkpoint_factory("bert"), "-o", tmp_path / "out", "--external-data", "sometimes"], capsys, 2,
           "unknown --external-data 'sometimes'; choose one of: auto, always, never")


def test_data_file_is_readable_by_others(artifact_factory):
    """onnx writes external data 0600; the artifact's files get the umask's mode like the rest."""
    ext = artifact_factory("bert", external_data="always")
    modes = {p.name: p.stat().st_mode & 0o777 for p in ext.iterdir()}
    assert modes["model.onnx.data"] == modes["model.onnx"] == modes["pyner.json"], modes
    assert modes["model.onnx.data"] & 0o044 == 0o044, modes  # the default umask 022 in CI


# ---------------------------------------------------------------------------------------------
# the JVM loads the same layout (jar from `make jvm`; artifacts from tests/make_test_artifacts.py)


@pytest.mark.jvm
def test_jvm_parity_on_external_data_artifacts():
    import make_test_artifacts
    from test_jvm_parity import ARTIFACTS, HOSTILE, _jar_or_fail

    from pyner.jvm import format_parity, jvm_parity

    _jar_or_fail()
    make_test_artifacts.ensure(ARTIFACTS)
    index = json.loads((ARTIFACTS / "index.json").read_text())
    names = index["external_artifacts"]
    assert len(names) == 2 * len(FAMILIES), names
    for name in names:
        folder = ARTIFACTS / name
        assert (folder / "model.onnx.data").is_file(), name
        report = jvm_parity(folder, HOSTILE)
        assert report.ok and report.identical_texts == report.texts, f"{name}: {format_parity(report)}"
        if report.python_ort == report.jvm_ort:
            assert report.max_score_diff == 0.0, f"{name}: {format_parity(report)}"


def test_the_sidecar_serves_an_external_data_artifact(artifact_factory):
    import pyner
    from pyner.client import Client
    from pyner.golden import GOLDEN_TEXTS
    from pyner.serve.batcher import BatcherConfig
    from pyner.serve.server import ServeConfig, ServerThread

    ext = artifact_factory("xlm-roberta", external_data="always")
    texts = [t for _, t in GOLDEN_TEXTS]
    want = pyner.load(ext).predict(texts)
    with ServerThread(ServeConfig(str(ext), port=0, metrics_port=0, batcher=BatcherConfig(max_delay_ms=5))) as srv, \
            Client(f"127.0.0.1:{srv.port}", timeout=120) as c:
        got = c.recognize(texts)
    assert [[(e.label, e.start, e.end, e.word) for e in g] for g in got] == \
        [[(e["entity_group"], e["start"], e["end"], e["word"]) for e in w] for w in want]
    assert sum(map(len, want)) > 0


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_parked_weights_change_nothing(precision, artifact_factory, checkpoint_factory, tmp_path, monkeypatch):
    """Large models' weights are kept out of the fp16 converter's copies (all of them, as one-row stand-ins,
    converted block by block) and the quantizer's (all it does not read, as shape-only stand-ins, put back):
    the artifact must be the one they would make, to the byte (model.onnx's sha256, then the golden fixtures)."""
    from pyner_export import onnxio
    from pyner_export.package import package

    kw = {"guard": False} if precision == "int8" else {}
    oracle = artifact_factory("xlm-roberta", precision, **kw)  # built first: nothing parked (a tiny model)
    monkeypatch.setattr(onnxio, "PARK_MIN_BYTES", 1)  # park even a tiny model's tables
    monkeypatch.setattr(onnxio, "_rows", lambda t, f, rows=7: _real_rows(t, f, rows))  # many blocks
    parked = tmp_path / "parked"
    package(checkpoint_factory("xlm-roberta"), parked, precision=precision, quiet=True, **kw)
    sha = [json.loads((f / "pyner.json").read_text())["files"]["model.onnx"]["sha256"] for f in (parked, oracle)]
    assert sha[0] == sha[1]
    assert _golden(parked) == _golden(oracle)


_real_rows = __import__("pyner_export.onnxio", fromlist=["_rows"])._rows


def _exports(family, checkpoint_factory, tmp_path, monkeypatch):
    """The checkpoint exported by pyner (weights written from PyTorch into model.onnx.data) and by the
    TorchScript exporter itself with its weights embedded (the oracle), as loaded ONNX graphs."""
    import onnx
    import torch

    from pyner_export.checkpoint import forward_input_names, inspect_checkpoint, load_model
    from pyner_export.onnx_export import OUTPUTS, dummy_inputs, export_onnx
    from pyner_export.tasks import wrapper

    ckpt = inspect_checkpoint(checkpoint_factory(family))
    model = load_model(ckpt)
    names = forward_input_names(model)
    pad, vocab = ckpt.tokenizer["pad_token_id"], int(model.config.vocab_size)
    (tmp_path / "ours").mkdir()
    (tmp_path / "oracle").mkdir()
    ours = export_onnx(wrapper(model, "token-classification"), names, OUTPUTS, tmp_path / "ours" / "model.onnx", opset=17,
                       pad_id=pad, vocab_size=vocab)
    oracle = tmp_path / "oracle" / "model.onnx"
    inputs = dummy_inputs(names, pad, vocab)
    with torch.no_grad():
        torch.onnx.export(wrapper(model, "token-classification"), tuple(inputs[n] for n in names), str(oracle), input_names=names,
                          output_names=OUTPUTS, dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names + OUTPUTS},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    return onnx.load(str(ours)), onnx.load(str(oracle)), ours


def _same_graph(a, b) -> None:
    from onnx import numpy_helper

    assert [n.SerializeToString() for n in a.graph.node] == [n.SerializeToString() for n in b.graph.node]
    assert a.graph.input == b.graph.input and a.graph.output == b.graph.output
    assert [i.name for i in a.graph.initializer] == [i.name for i in b.graph.initializer]
    for x, y in zip(a.graph.initializer, b.graph.initializer):
        assert (x.data_type, list(x.dims)) == (y.data_type, list(y.dims)), x.name
        assert numpy_helper.to_array(x).tobytes() == numpy_helper.to_array(y).tobytes(), x.name


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "deberta-v2", "modernbert", "albert", "squeezebert"])
def test_the_export_writes_the_weights_the_exporter_would_embed(family, checkpoint_factory, tmp_path, monkeypatch):
    """The export never holds an embedded copy of the weights (issue 11: BERT-large's export peaked at 5.5x its
    checkpoint): the graph is exported without them and PyTorch's tensors are written into model.onnx.data.
    The oracle is the exporter's own embedded export: same nodes, inputs, outputs, initializers, bytes."""
    from pyner_export import onnxio

    ours, oracle, path = _exports(family, checkpoint_factory, tmp_path, monkeypatch)
    _same_graph(ours, oracle)
    assert onnxio.external_locations(path) == {"model.onnx.data"}
    assert onnxio.data_file(path).stat().st_size > 0.9 * sum(len(i.raw_data) for i in oracle.graph.initializer)


def test_without_the_exporters_internals_the_embedded_export_is_moved_out(checkpoint_factory, tmp_path, monkeypatch):
    """Under a torch whose exporter lacks the internals the weights are captured from, the embedded export is
    written and its weights moved into model.onnx.data: the same graph, and no other file left beside it."""
    from pyner_export import onnx_export, onnxio

    monkeypatch.setattr(onnx_export._ParamsCapture, "available", lambda self: False)
    ours, oracle, path = _exports("bert", checkpoint_factory, tmp_path, monkeypatch)
    _same_graph(ours, oracle)
    assert sorted(f.name for f in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert onnxio.external_locations(path) == {"model.onnx.data"}


def test_an_embedded_artifact_is_written_without_loading_its_weights(checkpoint_factory, tmp_path):
    """`onnxio.write_embedded` streams the weights from model.onnx.data into the one-file protobuf (onnx's own
    save holds five copies of them): onnx must read back the model `onnx.save_model` writes (the oracle), and
    ONNX Runtime must give the same logits."""
    import onnx
    import onnxruntime as ort

    from pyner_export import onnxio

    src = _exports("xlm-roberta", checkpoint_factory, tmp_path, None)[2]
    ours = tmp_path / "ours.onnx"
    onnxio.write_embedded(src, ours)
    oracle = tmp_path / "oracle.onnx"
    onnx.save_model(onnx.load(str(src)), str(oracle))
    expected = onnx.load(str(oracle))
    for init in expected.graph.initializer:  # onnx marks the tensors it moved back in DEFAULT; pyner writes
        assert init.data_location == onnx.TensorProto.DEFAULT  # every embedded tensor without the field
        init.ClearField("data_location")
    assert onnx.load(str(ours)) == expected
    assert onnxio.external_locations(ours) == set()
    feed = {"input_ids": np.array([[0, 7, 9, 11, 2]]), "attention_mask": np.ones((1, 5), dtype=np.int64)}
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], feed)[0] for p in (ours, oracle))
    assert np.array_equal(a, b)
