"""The sidecar (`pyner serve`) on loopback: typed API and KServe v2 against the in-process runtime (the
oracle), health, reflection, metrics, batching, overload, deadlines, cancellation, drain, bad input, TLS.

Most tests run the real grpc.aio server in a background thread of this process (ServerThread) on
127.0.0.1 with ephemeral ports. Tests that must control timing wrap the model in `GatedModel`,
whose forward blocks until the test opens the gate: queue states are then exact, not raced.
SIGTERM runs the server as a subprocess. tritonclient runs in a subprocess too: it registers the
same protobuf names (package `inference`) as the server, which one process cannot hold twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

import pyner
from pyner.client import Client
from pyner.golden import GOLDEN_TEXTS
from pyner.serve.batcher import BatcherConfig
from pyner.serve.server import ServeConfig, ServerThread

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [t for _, t in GOLDEN_TEXTS]
STRATEGIES = ("none", "simple", "first", "average", "max")


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(artifact_factory) -> Path:
    return artifact_factory("bert")


@pytest.fixture(scope="module")
def model(artifact):
    return pyner.load(artifact)


@pytest.fixture(scope="module")
def served(artifact):
    with ServerThread(ServeConfig(str(artifact), port=0, metrics_port=0, batcher=BatcherConfig(max_delay_ms=5))) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(served):
    with Client(f"127.0.0.1:{served.port}", timeout=120) as c:
        yield c


def sample(srv: ServerThread, name: str, **labels) -> float:
    return srv.metrics.registry.get_sample_value(name, labels) or 0.0


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def same_entities(got: list[dict], want: list[dict], tol: float) -> None:
    """Labels, offsets, words and index identical; scores within the artifact's tolerance.

    (Scores may differ in the last bits: the server pads a window with other requests' windows.)"""
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in w.items() if k != "score"}
        assert abs(g["score"] - w["score"]) <= tol, (g, w)


def utf16(text: str, cp: int) -> int:
    return len(text[:cp].encode("utf-16-le")) // 2


class GatedModel:
    """The real model, but run_batch() waits for `gate` and records which windows reached the model."""

    def __init__(self, model):
        self._model = model
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.windows_of: dict[str, list] = {}
        self.seen: set[int] = set()
        self._keep: list = []  # keep windows alive so their ids stay unique

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, texts):
        encoded = self._model.encode(texts)
        for e in encoded:
            self.windows_of.setdefault(e.text, []).extend(e.windows)
            self._keep.append(e)
        return encoded

    def run_batch(self, windows, output="scores"):
        self.seen.update(id(w) for w in windows)
        self.entered.set()
        assert self.gate.wait(120), "test never opened the gate"
        return self._model.run_batch(windows, output)

    def reached_model(self, text: str) -> bool:
        return any(id(w) in self.seen for w in self.windows_of.get(text, []))


@pytest.fixture
def gated(model, artifact):
    """A fresh server around a GatedModel; yields (server, gated_model, client)."""
    servers = []

    def make(**batcher_kwargs):
        gm = GatedModel(model)
        srv = ServerThread(ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False,
                                       batcher=BatcherConfig(**batcher_kwargs)), model=gm).start()
        servers.append(srv)
        return srv, gm, Client(f"127.0.0.1:{srv.port}", timeout=60)

    yield make
    for srv in servers:
        srv.stop()


# -- typed API ----------------------------------------------------------------------------------------


def test_typed_api_equals_python_runtime(client, model):
    tol = model.manifest.score_tolerance
    for strategy in STRATEGIES:
        want = model.predict(TEXTS, aggregation=strategy)
        got = client.recognize(TEXTS, strategy)
        assert len(got) == len(TEXTS)
        for text, g, w in zip(TEXTS, got, want):
            same_entities([e.as_pipeline_dict() for e in g], w, tol)
            for e in g:  # UTF-16 offsets, computed independently
                assert (e.start_utf16, e.end_utf16) == (utf16(text, e.start), utf16(text, e.end))
    # ignore_labels: [] keeps "O" groups, like the pipeline
    want = model.predict(TEXTS[:5], ignore_labels=[])
    got = client.recognize(TEXTS[:5], ignore_labels=[])
    for g, w in zip(got, want):
        same_entities([e.as_pipeline_dict() for e in g], w, tol)
    assert any(e["entity_group"] == "O" for w in want for e in w)


def test_utf16_offsets_after_non_bmp_characters(client, model):
    text = "😀🎉 Angela Merkel 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 Paris 😀 Berlin"
    resp = client.recognize_response([text], "none", ignore_labels=[])
    ents = resp.results[0].entities
    assert len(ents) > 0
    for e in ents:
        assert e.start_utf16 == utf16(text, e.start) and e.end_utf16 == utf16(text, e.end)
    assert any(e.start_utf16 != e.start for e in ents)  # the case is exercised
    assert resp.results[0].num_tokens == model.encode([text])[0].n_tokens


def test_model_info(client, model, artifact):
    info = client.model_info()
    assert info["labels"] == model.labels
    assert info["precision"] == model.precision
    assert info["max_length"] == model.max_length and info["stride"] == model.stride
    import hashlib

    assert info["artifact_digest"] == "sha256:" + hashlib.sha256((artifact / "pyner.json").read_bytes()).hexdigest()
    assert set(info["aggregations"]) == set(STRATEGIES)


# -- KServe v2 with tritonclient --------------------------------------------------------------------

TRITON_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tritonclient.grpc as tc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    import grpc
    url, texts = sys.argv[1], json.loads(sys.stdin.read())
    c = tc.InferenceServerClient(url)
    out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready(sys.argv[2])}
    md = c.get_model_metadata(sys.argv[2])
    out["inputs"] = [(t.name, t.datatype) for t in md.inputs]
    # 1. tritonclient's own path: raw_input_contents (length-prefixed BYTES)
    inp = tc.InferInput("TEXT", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=np.object_))
    p = {"aggregation": "first"}
    r = c.infer(sys.argv[2], [inp], outputs=[tc.InferRequestedOutput("ENTITIES")], parameters=p)
    out["raw"] = [json.loads(b) for b in r.as_numpy("ENTITIES")]
    # 2. the typed contents.bytes_contents form, through the generated stub
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    req = service_pb2.ModelInferRequest(model_name=sys.argv[2])
    t = req.inputs.add(name="TEXT", datatype="BYTES", shape=[len(texts)])
    t.contents.bytes_contents.extend(x.encode("utf-8") for x in texts)
    resp = stub.ModelInfer(req)
    out["contents"] = [json.loads(b) for b in resp.outputs[0].contents.bytes_contents]
    out["shape"] = list(resp.outputs[0].shape)
    # 3. an unknown model name
    try:
        c.infer("no-such-model", [inp])
        out["unknown"] = "OK"
    except tc.InferenceServerException as e:
        out["unknown"] = e.status()
    # 4. this client's descriptors, to compare field numbers with pyner's proto
    def fields(d):
        return {f.name: [f.number, f.type, f.is_repeated] for f in d.fields}
    def walk(d, prefix, acc):
        acc[prefix + d.name] = fields(d)
        for n in d.nested_types:
            walk(n, prefix + d.name + ".", acc)
        return acc
    acc = {}
    for d in service_pb2.DESCRIPTOR.message_types_by_name.values():
        walk(d, "", acc)
    out["descriptors"] = acc
    print(json.dumps(out))
""")


def test_kserve_v2_with_tritonclient(served, model):
    texts = TEXTS[:6] + ["", "Zoë in Zürich 😀"]
    proc = subprocess.run([sys.executable, "-c", TRITON_SCRIPT, f"127.0.0.1:{served.port}", served.server.state.info["name"]],
                          input=json.dumps(texts), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["inputs"] == [["TEXT", "BYTES"]]
    tol = model.manifest.score_tolerance
    for got, want in zip(out["raw"], model.predict(texts, aggregation="first")):
        same_entities(got, want, tol)
    for got, want in zip(out["contents"], model.predict(texts)):
        same_entities(got, want, tol)
    assert out["shape"] == [len(texts)]
    assert out["unknown"] == "StatusCode.NOT_FOUND"
    # pyner's inference.* messages use tritonclient's field names, numbers, types and labels
    from pyner.serve import protos

    pb, _ = protos.kserve()
    checked = 0

    def walk(d, prefix):
        nonlocal checked
        theirs = out["descriptors"][prefix + d.name]
        for f in d.fields:
            assert theirs[f.name] == [f.number, f.type, f.is_repeated], (prefix + d.name, f.name)
            checked += 1
        for n in d.nested_types:
            walk(n, prefix + d.name + ".")

    for d in pb.DESCRIPTOR.message_types_by_name.values():
        walk(d, "")
    assert checked > 40


def test_kserve_bad_input(served):
    from pyner.serve import protos

    pb, pb_grpc = protos.kserve()
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{served.port}"))
    name = served.server.state.info["name"]

    def infer(req):
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=30)
        return e.value

    req = pb.ModelInferRequest(model_name=name)
    req.inputs.add(name="TEXT", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    err = infer(req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "BYTES" in err.details()
    req = pb.ModelInferRequest(model_name=name, raw_input_contents=[b"\x05\x00\x00\x00abc"])
    req.inputs.add(name="TEXT", datatype="BYTES", shape=[1])
    err = infer(req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "claims 5 bytes" in err.details()
    req = pb.ModelInferRequest(model_name=name)
    req.inputs.add(name="TEXT", datatype="BYTES", shape=[2]).contents.bytes_contents.append(b"one")
    err = infer(req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "shape" in err.details()
    req = pb.ModelInferRequest(model_name=name)
    req.inputs.add(name="TEXT", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"\xff\xfe")
    err = infer(req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "element 0 is not valid UTF-8" in err.details()
    req = pb.ModelInferRequest(model_name=name)
    req.inputs.add(name="TEXT", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"Paris")
    req.parameters["aggregation"].string_param = "longest"
    err = infer(req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "longest" in err.details()
    assert stub.ServerReady(pb.ServerReadyRequest()).ready


def test_kserve_shapes_must_be_concrete_and_match(served):
    from pyner.serve import protos

    pb, pb_grpc = protos.kserve()
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{served.port}"))

    def details(shape, n=1):
        req = pb.ModelInferRequest(model_name=served.server.state.info["name"])
        req.inputs.add(name="TEXT", datatype="BYTES", shape=shape).contents.bytes_contents.extend([b"Paris"] * n)
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, shape
        return e.value.details()

    assert "negative dimension (-1)" in details([-1, -1])  # multiplied to 1: accepted and echoed before
    assert "negative dimension (-2)" in details([1, -2], 2)
    assert "shape [2] holds 2 elements but 1 were sent" in details([2])
    assert "shape [1, 2] holds 2 elements but 3 were sent" in details([1, 2], 3)
    assert details([]) == "input 'TEXT': shape [] is a scalar; send shape [N] for N texts (1 elements were sent)"
    req = pb.ModelInferRequest(model_name=served.server.state.info["name"])
    req.inputs.add(name="TEXT", datatype="BYTES", shape=[1, 2]).contents.bytes_contents.extend([b"Paris", b"Berlin"])
    assert list(stub.ModelInfer(req, timeout=30).outputs[0].shape) == [1, 2]


def _docs_block(heading_text: str) -> str:
    doc = (ROOT / "docs" / "serve.md").read_text()
    after = doc[doc.index(heading_text):]
    return after[after.index("```python") + len("```python"):].split("```", 1)[0]


def test_docs_triton_example_runs_as_written(artifact, model):
    """docs/serve.md's tritonclient snippet, unchanged but for the port, against --model-name demo."""
    snippet = _docs_block("Triton's client works")
    assert 'c.infer("demo"' in snippet and "127.0.0.1:50051" in snippet
    cfg = ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False, model_name="demo")
    with ServerThread(cfg, model=model) as srv:
        proc = subprocess.run([sys.executable, "-c", snippet.replace("127.0.0.1:50051", f"127.0.0.1:{srv.port}")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert srv.server.state.info["name"] == "demo"
    import ast

    got = ast.literal_eval(proc.stdout.strip())
    for g, w in zip(got, model.predict(["Angela Merkel in Paris", "Apple Inc."])):
        same_entities(g, w, model.manifest.score_tolerance)
    from pyner.errors import UsageError

    with pytest.raises(UsageError, match="--model-name 'my model'"):
        ServeConfig(str(artifact), model_name="my model").check()


# -- health, reflection, metrics ----------------------------------------------------------------------


def test_health_and_reflection(served, client):
    for service in ("", "pyner.v1.NerService", "inference.GRPCInferenceService"):
        assert client.health(service) == "SERVING"
    with pytest.raises(grpc.RpcError) as e:
        client.health("no.such.Service")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"pyner.v1.NerService", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("pyner.v1.NerService")
        assert [m.name for m in svc.methods] == ["Recognize", "GetModelInfo"]
        fields = pool.FindMessageTypeByName("pyner.v1.Entity").fields_by_name
        assert fields["start_utf16"].number == 6


def test_not_serving_until_loaded_then_serving(model, artifact):
    srv = ServerThread(ServeConfig(str(artifact), port=0, metrics_port=-1), model=model).start(load=False)
    try:
        with Client(f"127.0.0.1:{srv.port}") as c:
            assert c.health() == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as e:
                c.recognize(["Paris"])
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in e.value.details()
            srv.load()  # runs the golden self-check
            assert c.health() == "SERVING"
            assert len(c.recognize(["Paris"])) == 1
    finally:
        srv.stop()


def test_tampered_artifact_never_serves(artifact, tmp_path):
    from pyner.errors import ArtifactError

    bad = tmp_path / "artifact"
    shutil.copytree(artifact, bad)
    with open(bad / "golden.json", "r+b") as f:  # a changed byte: the checksum names the file
        f.seek(10)
        f.write(b"#")
    srv = ServerThread(ServeConfig(str(bad), port=0, metrics_port=-1))
    with pytest.raises(ArtifactError, match="golden.json"):
        srv.start()


def test_metrics_endpoint_parses_and_counts(served, client):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict:
        body = urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10).read().decode()
        return {s.name + json.dumps(s.labels, sort_keys=True): s.value for fam in text_string_to_metric_families(body) for s in fam.samples}

    ok_key = 'pyner_requests_total{"api": "pyner.v1", "status": "OK"}'
    bad_key = 'pyner_requests_total{"api": "pyner.v1", "status": "INVALID_ARGUMENT"}'
    before = scrape()
    for i in range(7):
        client.recognize([TEXTS[i]])
    with pytest.raises(grpc.RpcError):
        client.recognize([])
    # a request is counted as its handler returns, which can be just after the client has its answer
    wait_until(lambda: scrape().get(bad_key, 0) - before.get(bad_key, 0) == 1, what="the refused request counted")
    after = scrape()
    assert after[ok_key] - before.get(ok_key, 0) == 7
    assert after[bad_key] - before.get(bad_key, 0) == 1
    assert after["pyner_batch_requests_count{}"] - before.get("pyner_batch_requests_count{}", 0) >= 1
    assert after["pyner_texts_total{}"] - before.get("pyner_texts_total{}", 0) == 7
    for name in ("pyner_queue_duration_seconds_count{}", "pyner_inference_duration_seconds_count{}",
                 'pyner_request_duration_seconds_count{"api": "pyner.v1"}', "pyner_batch_tokens_count{}",
                 "pyner_batch_size_count{}", "pyner_input_length_tokens_count{}", "pyner_pending_requests{}", "pyner_ready{}"):
        assert name in after, name
    assert after["pyner_ready{}"] == 1
    assert any(k.startswith("pyner_model_info{") for k in after)


def test_process_metrics_and_a_bounded_metrics_server(served):
    """/metrics has the standard process collector; 300 idle connections cost no threads, and
    scrapes still work while they are open."""
    import socket

    from prometheus_client.parser import text_string_to_metric_families

    from pyner.serve.metrics import MAX_CONNECTIONS

    def scrape() -> dict:
        body = urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10).read().decode()
        return {s.name: s.value for fam in text_string_to_metric_families(body) for s in fam.samples}

    got = scrape()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert got[name] > 0, name
    threads_before = threading.active_count()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", served.metrics_port), timeout=10))
        wait_until(lambda: served.server._metrics_server.open_connections == MAX_CONNECTIONS, what="idle connections held")
        assert threading.active_count() <= threads_before  # no thread per connection
        for sock in idle[:MAX_CONNECTIONS]:  # free the held slots: a scrape gets in again
            sock.close()
        wait_until(lambda: served.server._metrics_server.open_connections == 0, what="closed connections released")
        assert scrape()["pyner_ready"] == 1
    finally:
        for sock in idle:
            sock.close()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/nothing", timeout=10)
    assert e.value.code == 404


def test_reflection_can_be_switched_off(artifact, model, monkeypatch):
    import argparse

    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    from pyner.cli import serve as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.config_from_args(parser.parse_args(["art"]))[0].reflection is True
    assert cli.config_from_args(parser.parse_args(["art", "--no-reflection"]))[0].reflection is False
    monkeypatch.setenv("PYNER_REFLECTION", "0")
    assert cli.config_from_args(parser.parse_args(["art"]))[0].reflection is False
    cfg = ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False, reflection=False)
    with ServerThread(cfg, model=model) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        with pytest.raises(grpc.RpcError) as e:
            list(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with Client(f"127.0.0.1:{srv.port}") as c:  # the APIs themselves are unaffected
            assert c.recognize(["Paris"]) and c.health() == "SERVING"


# -- batching, overload, deadlines, cancellation, drain ----------------------------------------------


class CountingSession:
    """An ONNX Runtime session that counts its runs and the padded tokens fed to them."""

    def __init__(self, session):
        self._session = session
        self.runs = 0
        self.padded = 0

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, outputs, feeds):
        self.runs += 1
        self.padded += int(feeds["input_ids"].size)
        return self._session.run(outputs, feeds)


@pytest.fixture(scope="module")
def long_artifact(artifact_factory) -> Path:
    return artifact_factory("bert", checkpoint_max_length=128, max_length=128, stride=16)


def text_of_tokens(model, n: int) -> str:
    """A text of exactly n tokens (one window, special tokens included)."""
    words = ["Paris", "and", "Berlin", "met", "Angela", "in", "the", "city", "a", "x", "."]
    text, k = "", 0
    while (got := model.encode([text])[0].n_tokens) < n:
        fits = [t for t in ((text + " " + w).strip() for w in words[k % len(words):] + words) if model.encode([t])[0].n_tokens <= n]
        assert fits, f"cannot build a text of exactly {n} tokens"
        text, k = fits[0], k + 1
    assert got == n and len(model.encode([text])[0].windows) == 1
    return text


@pytest.mark.parametrize("max_padding, runs", [(0.2, 1), (0.05, 2)])
def test_max_padding_is_honoured_and_metrics_count_the_real_runs(long_artifact, max_padding, runs):
    """Windows of 100 and 90 tokens: padded together 200 = 1.053 x 190 real tokens, so one run at
    --max-padding 0.2 and two at 0.05; the metrics equal ONNX Runtime's own runs and fed tokens."""
    m = pyner.load(long_artifact)
    texts = [text_of_tokens(m, 100), text_of_tokens(m, 90)]
    want = m.predict(texts)
    counting = CountingSession(m.session)
    m.session = counting
    cfg = ServeConfig(str(long_artifact), port=0, metrics_port=-1, self_check=False,
                      batcher=BatcherConfig(max_padding=max_padding, max_delay_ms=0))
    with ServerThread(cfg, model=m) as srv, Client(f"127.0.0.1:{srv.port}", timeout=60) as c:
        got = c.recognize(texts)  # one request: both windows in one formed batch
        assert counting.runs == runs
        assert sample(srv, "pyner_model_runs_total") == runs
        assert sample(srv, "pyner_model_padded_tokens_total") == counting.padded == (200 if runs == 1 else 190)
    for g, w in zip(got, want):
        same_entities([e.as_pipeline_dict() for e in g], w, m.manifest.score_tolerance)


def test_a_small_request_is_not_stuck_behind_a_huge_one(gated, model):
    """Head-of-line blocking: windows are taken round-robin across requests, so a one-sentence request
    submitted after a many-window one completes first (order of completion, not wall-clock)."""
    srv, gm, c = gated(max_batch_size=4, max_delay_ms=0)
    huge = " ".join(TEXTS[:12]) * 3
    n_windows = len(model.encode([huge])[0].windows)
    assert n_windows > 12  # at least 3 more batches than the small request needs
    done: list[str] = []
    gm.gate.clear()
    big = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=[huge]), timeout=120)
    big.add_done_callback(lambda f: done.append("huge"))
    wait_until(gm.entered.is_set, what="the huge request's first batch in the model")
    small = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["Angela Merkel visited Paris."]), timeout=120)
    small.add_done_callback(lambda f: done.append("small"))
    wait_until(lambda: sample(srv, "pyner_pending_requests") == 2, what="the small request queued behind the huge one")
    gm.gate.set()
    assert small.result().results and big.result().results
    wait_until(lambda: len(done) == 2, what="both callbacks")
    assert done == ["small", "huge"]
    assert len(big.result().results[0].entities) == len(model.predict([huge])[0])
    assert sample(srv, "pyner_batch_requests_bucket", le="1.0") < sample(srv, "pyner_batch_requests_count")


def test_a_short_request_is_answered_before_the_long_runs_of_its_batch(gated, model):
    """One formed batch holding a short window and long ones: the planner cuts them into separate
    runs, the short run goes first, and its request is answered before the long run even starts."""
    # a delay, so that the second request always joins the first one's batch (with 0 the batcher could form
    # the huge request's batch before the short one arrived: the test then waited for nothing)
    srv, gm, c = gated(max_batch_size=32, max_batch_tokens=1 << 16, max_delay_ms=500, max_padding=0.05)
    long_text = " ".join(TEXTS[:12])
    assert len(model.encode([long_text])[0].windows) >= 3
    small_done = threading.Event()
    inner = gm.run_batch
    long_run_waited = []

    def run_batch(windows, output="scores"):
        if max(len(w) for w in windows) == model.max_length:  # the long run
            long_run_waited.append(small_done.wait(60))
        return inner(windows, output)

    gm.run_batch = run_batch
    gm.gate.clear()
    blocker = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["the blocker"]), timeout=120)
    wait_until(gm.entered.is_set, what="the blocker in the model")
    big = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=[long_text]), timeout=120)
    small = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["Paris"]), timeout=120)
    small.add_done_callback(lambda f: small_done.set())
    wait_until(lambda: sample(srv, "pyner_pending_requests") == 2, what="both requests queued")
    gm.gate.set()
    assert blocker.result().results and small.result().results and big.result().results
    assert long_run_waited and all(long_run_waited)  # the short request was answered first, every time
    assert sample(srv, "pyner_batch_requests_bucket", le="1.0") < sample(srv, "pyner_batch_requests_count")  # one batch held both


def test_request_limits_tokens_and_ignore_labels(gated, model):
    limit = sum(e.n_tokens for e in model.encode(TEXTS[:3]))
    srv, gm, c = gated(max_request_tokens=limit)
    text = " ".join(TEXTS[:6])
    n = model.encode([text])[0].n_tokens
    assert n > limit
    with pytest.raises(grpc.RpcError) as e:
        c.recognize([text])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{n} tokens" in e.value.details() and "--max-request-tokens" in e.value.details()
    from pyner.serve.batcher import MAX_IGNORE_LABELS

    with pytest.raises(grpc.RpcError) as e:
        c.recognize(["Paris"], ignore_labels=[f"X{i}" for i in range(MAX_IGNORE_LABELS + 1)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{MAX_IGNORE_LABELS + 1} entries" in e.value.details() and str(MAX_IGNORE_LABELS) in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        c.recognize(["Paris"], ignore_labels=["O", "x" * 300])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ignore_labels[1]" in e.value.details()
    # at the cap it is accepted, and answers like the runtime
    labels = ["O", "PER"] + [f"X{i}" for i in range(MAX_IGNORE_LABELS - 2)]
    got = c.recognize(TEXTS[:3], ignore_labels=labels)
    for g, w in zip(got, model.predict(TEXTS[:3], ignore_labels=labels)):
        same_entities([e.as_pipeline_dict() for e in g], w, model.manifest.score_tolerance)
    assert gm.seen  # the accepted request reached the model
    assert sample(srv, "pyner_requests_total", api="pyner.v1", status="INVALID_ARGUMENT") == 3


def test_batches_hold_many_requests_under_32_concurrent_clients(gated, model):
    srv, gm, c = gated(max_batch_size=64, max_batch_tokens=1 << 16, max_delay_ms=5)
    texts = [f"{TEXTS[i % 20]} (request {i})" for i in range(32)]
    gm.gate.clear()
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(c.recognize, [t]) for t in texts]
        wait_until(lambda: gm.entered.is_set() and sample(srv, "pyner_inflight_requests") == 32,
                   what="32 requests admitted while the model is busy")
        gm.gate.set()
        results = [f.result(60) for f in futures]
    tol = model.manifest.score_tolerance
    for t, r in zip(texts, results):  # request by request, the same as the runtime alone
        same_entities([e.as_pipeline_dict() for e in r[0]], model.predict([t])[0], tol)
    n_batches = sample(srv, "pyner_batch_requests_count")
    n_requests_in_batches = sample(srv, "pyner_batch_requests_sum")
    assert n_requests_in_batches >= 32
    assert n_batches < 32  # so at least one batch held more than one request
    assert sample(srv, "pyner_batch_requests_bucket", le="1.0") < n_batches


def test_model_workers_run_batches_at_the_same_time(gated, model):
    """--model-workers 2: a second batch enters the model while the first is still in it; answers unchanged."""
    srv, gm, c = gated(max_batch_size=1, max_delay_ms=0, model_workers=2)
    lock, active, peak = threading.Lock(), [0], [0]
    inner = gm.run_batch

    def counting(windows, output="scores"):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return inner(windows, output)
        finally:
            with lock:
                active[0] -= 1

    gm.run_batch = counting
    texts = TEXTS[:6]
    gm.gate.clear()
    with ThreadPoolExecutor(len(texts)) as pool:
        futures = [pool.submit(c.recognize, [t]) for t in texts]
        wait_until(lambda: peak[0] == 2, what="two batches inside the model at once")
        gm.gate.set()
        results = [f.result(60) for f in futures]
    assert peak[0] == 2  # never more than the workers
    tol = model.manifest.score_tolerance
    for t, r in zip(texts, results):
        same_entities([e.as_pipeline_dict() for e in r[0]], model.predict([t])[0], tol)
    with pytest.raises(pyner.errors.UsageError, match="--model-workers must be at least 1"):
        BatcherConfig(model_workers=0).check()


def test_overload_each_request_gets_a_result_or_resource_exhausted(gated, model):
    srv, gm, c = gated(max_queue=4, max_delay_ms=0)
    gm.gate.clear()
    first = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["Angela Merkel in Paris"]), timeout=60)
    wait_until(gm.entered.is_set, what="the first request in the model")
    futures = [c.stub.Recognize.future(c.pb.RecognizeRequest(texts=[f"{TEXTS[i]} #{i}"]), timeout=60) for i in range(10)]
    # with the model blocked, 4 requests wait and the other 6 are refused at once
    wait_until(lambda: sum(f.done() for f in futures) == 6, what="6 refusals while the model is blocked")
    refused = [f for f in futures if f.done()]
    for f in refused:
        assert f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "overloaded" in f.details() and "--max-queue 4" in f.details()
    assert sample(srv, "pyner_pending_requests") == 4
    gm.gate.set()
    assert first.result().results
    ok = [f for f in futures if f not in refused]
    for f in ok:
        assert f.result().results
    assert sample(srv, "pyner_requests_total", api="pyner.v1", status="OK") == 5
    assert sample(srv, "pyner_requests_total", api="pyner.v1", status="RESOURCE_EXHAUSTED") == 6

    # a burst of 64 concurrent callers with larger requests: each gets a result or RESOURCE_EXHAUSTED,
    # the queue (memory) stays bounded, and the server keeps serving afterwards
    peak = 0
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.wait(0.001):
            peak = max(peak, sample(srv, "pyner_pending_requests"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    codes: dict[str, int] = {}

    def call(i):
        try:
            c.recognize(TEXTS[i % 10:i % 10 + 8])
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(64) as pool:
        for code in pool.map(call, range(256)):
            codes[code] = codes.get(code, 0) + 1
    stop.set()
    watcher.join()
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert sum(codes.values()) == 256
    assert peak <= 4
    assert c.health() == "SERVING" and c.recognize(["Paris"])
    print(f"overload burst: {codes}, peak queue {peak}")


def test_queued_tokens_are_bounded_too(gated, model):
    srv, gm, c = gated(max_queue_tokens=300, max_delay_ms=0)
    long_text = " ".join(TEXTS[:12])
    n = model.encode([long_text])[0].n_tokens
    assert n > 300  # a request larger than the budget is still taken when the queue is empty
    gm.gate.clear()
    blocker = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["the blocker"]), timeout=60)
    wait_until(gm.entered.is_set, what="the blocker in the model")
    queued = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=[long_text]), timeout=60)
    wait_until(lambda: sample(srv, "pyner_pending_requests") == 1, what="the long request queued")
    with pytest.raises(grpc.RpcError) as e:
        c.recognize(["Paris"])
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-queue-tokens 300" in e.value.details()
    gm.gate.set()
    assert blocker.result().results and queued.result().results
    assert c.recognize(["Paris"])


def test_expired_and_cancelled_work_never_reaches_the_model(gated):
    srv, gm, c = gated(max_delay_ms=0)
    gm.gate.clear()
    blocker = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["the blocker"]), timeout=60)
    wait_until(gm.entered.is_set, what="the blocker in the model")
    late, gone = "a text whose deadline passes in the queue", "a text whose caller cancels"
    with pytest.raises(grpc.RpcError) as e:
        c.recognize([late], timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    cancelled = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=[gone]), timeout=60)
    wait_until(lambda: sample(srv, "pyner_pending_requests") == 2, what="the cancelled request queued")
    assert cancelled.cancel()
    wait_until(lambda: sample(srv, "pyner_inflight_requests") == 1, what="the server to see the cancellation")
    gm.gate.set()
    assert blocker.result().results
    wait_until(lambda: sample(srv, "pyner_requests_dropped_total", reason="cancelled") == 1, what="the cancel counted")
    assert sample(srv, "pyner_requests_dropped_total", reason="deadline") == 1
    assert gm.windows_of[late] and gm.windows_of[gone]  # both were tokenized and queued ...
    assert not gm.reached_model(late) and not gm.reached_model(gone)  # ... and never reached the model
    assert gm.reached_model("the blocker")
    assert sample(srv, "pyner_pending_requests") == 0
    assert c.recognize(["Paris"])


def test_drain_finishes_admitted_work_and_refuses_new(gated):
    srv, gm, c = gated(max_delay_ms=0)
    gm.gate.clear()
    inflight = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["admitted before the drain"]), timeout=60)
    wait_until(gm.entered.is_set, what="a request in the model")
    queued = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["queued before the drain"]), timeout=60)
    wait_until(lambda: sample(srv, "pyner_pending_requests") == 1, what="a queued request")
    done = srv.stop_async(grace=30)
    wait_until(lambda: c.health() == "NOT_SERVING", what="health NOT_SERVING while draining")
    with pytest.raises(grpc.RpcError) as e:
        c.recognize(["arrives during the drain"])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in e.value.details()
    gm.gate.set()
    assert inflight.result().results and queued.result().results
    counts = done.result(60)
    assert counts["unfinished"] == 0
    assert counts["requests"]["pyner.v1:OK"] == 2 and counts["requests"]["pyner.v1:UNAVAILABLE"] == 1


def test_drain_past_the_grace_period_still_answers_every_request(gated):
    srv, gm, c = gated(max_delay_ms=0)
    gm.gate.clear()
    stuck = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["in the model when time runs out"]), timeout=60)
    wait_until(gm.entered.is_set, what="a request in the model")
    waiting = c.stub.Recognize.future(c.pb.RecognizeRequest(texts=["still queued when time runs out"]), timeout=60)
    wait_until(lambda: sample(srv, "pyner_pending_requests") == 1, what="a queued request")
    counts = srv.stop_async(grace=0.5).result(60)
    gm.gate.set()
    assert counts["unfinished"] == 2
    for f, where in ((stuck, "in the model"), (waiting, "before this request reached the model")):
        assert f.exception(30) is not None and f.code() == grpc.StatusCode.UNAVAILABLE and where in f.details()


def _read_lines(stream, sink: list) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)


@pytest.mark.slow
def test_sigterm_during_load_loses_nothing_and_exits_0(artifact):
    """SIGTERM under load (8,000 requests at concurrency 128 on one channel, callers that keep
    calling): every request gets OK or UNAVAILABLE, never CANCELLED (which clients do not retry)."""
    import asyncio

    cmd = [sys.executable, "-c", "import sys; from pyner.cli import main; sys.exit(main())", "serve", str(artifact),
           "--port", "0", "--metrics-port", "-1", "--grace-period", "30", "--max-delay-ms", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    logs: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, logs), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any('"event": "ready"' in line for line in logs) or proc.poll() is not None, 120, "the server ready")
        ready = [json.loads(line) for line in logs if '"event": "ready"' in line]
        assert ready, "".join(logs)
        target = f"127.0.0.1:{ready[0]['port']}"
        with Client(target, timeout=60) as c:
            before = c.recognize(TEXTS[:1])
        statuses: dict[str, int] = {}

        async def load() -> None:
            from pyner.client import AsyncClient

            flowing = asyncio.Event()
            left = [8000]
            async with AsyncClient(target, timeout=60) as ac:
                async def caller(k: int) -> None:
                    while left[0] > 0:
                        left[0] -= 1
                        try:
                            await ac.recognize(TEXTS[k % len(TEXTS):k % len(TEXTS) + 1])
                            code = "OK"
                        except grpc.RpcError as exc:
                            code = exc.code().name
                        statuses[code] = statuses.get(code, 0) + 1
                        if statuses.get("OK", 0) >= 300:
                            flowing.set()

                callers = asyncio.gather(*(caller(k) for k in range(128)))
                await flowing.wait()
                proc.send_signal(signal.SIGTERM)
                await callers

        asyncio.run(load())
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    stopped = [json.loads(line) for line in logs if '"event": "stopped"' in line]
    assert stopped, "".join(logs)
    assert before
    # every request got a result or a clear, retryable refusal; nothing the server finished went missing
    assert set(statuses) <= {"OK", "UNAVAILABLE"}, statuses
    assert statuses.get("OK", 0) >= 1 and statuses.get("UNAVAILABLE", 0) >= 1, statuses
    assert sum(statuses.values()) == 8000
    assert stopped[0]["unfinished"] == 0
    assert stopped[0]["requests"].get("pyner.v1:OK", 0) == statuses["OK"] + 1  # + the request before the load
    print(f"sigterm: client statuses {statuses}, server {stopped[0]['requests']}")


# -- bad input ------------------------------------------------------------------------------------------


def test_bad_input_gets_clear_statuses_and_the_server_stays_up(artifact, model):
    cfg = ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False, max_message_bytes=2 << 20,
                      batcher=BatcherConfig(max_texts=16))
    with ServerThread(cfg, model=model) as srv, Client(f"127.0.0.1:{srv.port}", timeout=120) as c:
        def refused(texts, aggregation="simple"):
            with pytest.raises(grpc.RpcError) as e:
                c.recognize(texts, aggregation)
            return e.value

        err = refused([])
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "no texts" in err.details()
        err = refused(["Paris"] * 17)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "17 texts" in err.details() and "16" in err.details()
        err = refused(["Paris"], "longest")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "'longest'" in err.details() and "average" in err.details()
        err = refused(["x" * (3 << 20)])  # over --max-message-bytes
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert c.recognize(["", "", "Paris"])[:2] == [[], []]  # empty strings: no entities
        # a 1 MB text: windowed, never truncated; entities up to its very end, as the runtime finds them
        para = TEXTS[0] + " " * 9000 + "\n"
        big = (para * (1_000_000 // len(para) + 1))[:1_000_000]
        resp = c.recognize_response([big], timeout=300)
        enc = model.encode([big])[0]
        assert resp.results[0].num_windows == len(enc.windows) > 1
        assert resp.results[0].num_tokens == enc.n_tokens
        got = [{"entity_group": e.label, "score": e.score, "word": e.word, "start": e.start, "end": e.end} for e in resp.results[0].entities]
        want = model.predict([big])[0]
        same_entities(got, want, model.manifest.score_tolerance)
        assert want and max(e["end"] for e in want) > len(big) - len(para)
        assert c.health() == "SERVING" and c.recognize(["Paris"])


# -- TLS ----------------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def test_tls_and_mutual_tls(artifact, model, certs):
    d = certs
    cfg = ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False,
                      tls_cert=str(d / "server.pem"), tls_key=str(d / "server.key"))
    with ServerThread(cfg, model=model) as srv:
        with Client(f"127.0.0.1:{srv.port}", tls_ca=str(d / "ca.pem"), timeout=20) as c:
            assert c.recognize(["Paris"])
        with Client(f"127.0.0.1:{srv.port}", timeout=3) as plain, pytest.raises(grpc.RpcError) as e:
            plain.recognize(["Paris"])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    cfg.tls_client_ca = str(d / "ca.pem")
    with ServerThread(cfg, model=model) as srv:
        with Client(f"127.0.0.1:{srv.port}", tls_ca=str(d / "ca.pem"), tls_cert=str(d / "client.pem"),
                    tls_key=str(d / "client.key"), timeout=20) as c:
            assert c.recognize(["Paris"])
        with Client(f"127.0.0.1:{srv.port}", tls_ca=str(d / "ca.pem"), timeout=3) as nocert, pytest.raises(grpc.RpcError) as e:
            nocert.recognize(["Paris"])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bad_tls_files_are_named_with_their_problem(artifact, model, certs, tmp_path):
    from pyner.errors import UsageError

    d = certs
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")

    def refused(cert, key, ca=None) -> str:
        cfg = ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False, tls_cert=str(cert), tls_key=str(key),
                          tls_client_ca=str(ca) if ca else None)
        with pytest.raises(UsageError) as e:
            ServerThread(cfg, model=model).start()
        assert "port in use" not in str(e.value)
        return str(e.value)

    assert refused(garbage, d / "server.key") == f"--tls-cert {garbage}: not a PEM certificate (no '-----BEGIN CERTIFICATE-----' block)"
    assert refused(broken, d / "server.key").startswith(f"--tls-cert {broken}: the certificate cannot be parsed")
    assert refused(d / "server.pem", d / "server.pem").startswith(f"--tls-key {d / 'server.pem'}: not a PEM private key")
    assert refused(d / "server.pem", d / "client.key") == \
        f"--tls-key {d / 'client.key'} is not the private key of --tls-cert {d / 'server.pem'}"
    assert refused(d / "server.pem", d / "server.key", garbage).startswith(f"--tls-client-ca {garbage}: not a PEM certificate")


def _healthcheck(env: dict[str, str], target: str | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYNER_")}
    return subprocess.run([sys.executable, "-m", "pyner.serve.healthcheck", *([target] if target else [])],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_healthcheck_reads_the_servers_tls_settings(artifact, model, certs):
    """The HEALTHCHECK / exec probe, given the server's own PYNER_* environment, passes under TLS and
    mutual TLS; it fails against plaintext expectations."""
    d = certs
    tls = {"PYNER_TLS_CERT": str(d / "server.pem"), "PYNER_TLS_KEY": str(d / "server.key")}
    cfg = ServeConfig(str(artifact), port=0, metrics_port=-1, self_check=False, tls_cert=tls["PYNER_TLS_CERT"],
                      tls_key=tls["PYNER_TLS_KEY"])
    with ServerThread(cfg, model=model) as srv:
        port = {"PYNER_PORT": str(srv.port)}
        ok = _healthcheck({**port, **tls, "PYNER_HEALTHCHECK_TLS_CA": str(d / "ca.pem")})
        assert ok.returncode == 0 and ok.stdout.strip() == f"127.0.0.1:{srv.port} (TLS): SERVING", ok.stdout + ok.stderr
        plain = _healthcheck(port)
        assert plain.returncode == 1 and "UNAVAILABLE" in plain.stdout
    cfg.tls_client_ca = str(d / "ca.pem")
    mtls = {**tls, "PYNER_TLS_CLIENT_CA": str(d / "ca.pem")}
    with ServerThread(cfg, model=model) as srv:
        port = {"PYNER_PORT": str(srv.port)}
        ok = _healthcheck({**port, **mtls})  # verifies with the client CA, presents the server's own certificate
        assert ok.returncode == 0 and "(TLS): SERVING" in ok.stdout, ok.stdout + ok.stderr
        ok = _healthcheck({**port, **mtls, "PYNER_HEALTHCHECK_TLS_CERT": str(d / "client.pem"),
                           "PYNER_HEALTHCHECK_TLS_KEY": str(d / "client.key")})
        assert ok.returncode == 0, ok.stdout + ok.stderr
        nocert = _healthcheck({**port, **tls, "PYNER_HEALTHCHECK_TLS_CA": str(d / "ca.pem")})  # TLS without a client certificate
        assert nocert.returncode == 1 and "UNAVAILABLE" in nocert.stdout


def test_kubernetes_tls_variant_probes_pass(artifact, model, certs, tmp_path):
    """deploy/k8s/tls/deployment.yaml: its exec probes, run with its environment (the secret's files
    mounted here), pass against a server started from the same environment."""
    import argparse

    import yaml

    from pyner.cli import serve as cli
    from pyner.serve import healthcheck

    doc = yaml.safe_load((ROOT / "deploy" / "k8s" / "tls" / "deployment.yaml").read_text())
    pod = doc["spec"]["template"]["spec"]
    c = pod["containers"][0]
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "tls")
    secret = tmp_path / "tls"
    secret.mkdir()
    for src, dst in (("server.pem", "tls.crt"), ("server.key", "tls.key"), ("ca.pem", "ca.crt")):
        shutil.copy(certs / src, secret / dst)
    env = {e["name"]: e["value"].replace(mount, str(secret)) for e in c["env"]}
    assert env["PYNER_TLS_CERT"].startswith(str(secret)) and env["PYNER_TLS_CLIENT_CA"].startswith(str(secret))
    served_vars = {cli.env_name(f) for f in cli.OPTIONS}
    assert {k for k in env if k.startswith("PYNER_")} <= served_vars | set(re.findall(r"PYNER_[A-Z_]+", healthcheck.__doc__))
    probes = [c[p]["exec"]["command"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert all(p == probes[0] for p in probes) and probes[0][:3] == ["python", "-m", "pyner.serve.healthcheck"]
    # the server, configured from the manifest's own environment (port 0 here)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    old = dict(os.environ)
    try:
        os.environ.update({k: v for k, v in env.items() if k in served_vars})
        os.environ["PYNER_PORT"], os.environ["PYNER_METRICS_PORT"] = "0", "-1"
        config, _ = cli.config_from_args(parser.parse_args([str(artifact), "--no-self-check"]))
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert config.tls_client_ca  # the variant is mutual TLS
    with ServerThread(config, model=model) as srv:
        probe = _healthcheck({**env, "PYNER_PORT": str(srv.port)})
        assert probe.returncode == 0 and "(TLS): SERVING" in probe.stdout, probe.stdout + probe.stderr


# -- CLI, loadtest, generated code ------------------------------------------------------------------


def test_serve_flags_read_environment_variables(monkeypatch):
    import argparse

    from pyner.cli import serve as cli
    from pyner.errors import UsageError

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    monkeypatch.setenv("PYNER_MAX_QUEUE", "7")
    monkeypatch.setenv("PYNER_PORT", "6000")
    monkeypatch.setenv("PYNER_DEVICE", "cuda:1")
    monkeypatch.setenv("PYNER_ON_MISSING_GPU", "fallback")
    config, level = cli.config_from_args(parser.parse_args(["art", "--port", "6001"]))
    assert config.batcher.max_queue == 7 and config.port == 6001
    assert (config.device, config.on_missing_gpu) == ("cuda:1", "fallback")
    assert config.host == "127.0.0.1" and level == "info"
    monkeypatch.setenv("PYNER_MAX_DELAY_MS", "soon")
    with pytest.raises(UsageError, match="PYNER_MAX_DELAY_MS"):
        cli.config_from_args(parser.parse_args(["art"]))
    monkeypatch.delenv("PYNER_MAX_DELAY_MS")
    with pytest.raises(UsageError, match="max-queue"):
        cli.config_from_args(parser.parse_args(["art", "--max-queue", "0"]))


def test_bad_server_options_are_usage_errors(served, model, artifact):
    from pyner.errors import UsageError

    with pytest.raises(UsageError, match="--tls-cert and --tls-key go together"):
        ServerThread(ServeConfig(str(artifact), tls_cert="server.pem"))
    with pytest.raises(UsageError, match="--tls-client-ca"):
        ServerThread(ServeConfig(str(artifact), tls_client_ca="ca.pem"))
    with pytest.raises(UsageError, match="--tls-cert file not found"):
        ServerThread(ServeConfig(str(artifact), port=0, metrics_port=-1, tls_cert="/nonexistent.pem",
                                 tls_key="/nonexistent.key"), model=model).start()
    with pytest.raises(UsageError, match=f"127.0.0.1:{served.port}.*in use"):  # no silent port sharing
        ServerThread(ServeConfig(str(artifact), port=served.port, metrics_port=-1), model=model).start()
    with pytest.raises(UsageError, match="metrics"):
        ServerThread(ServeConfig(str(artifact), port=0, metrics_port=served.metrics_port), model=model).start()


def test_serve_defaults_are_defined_once():
    """The CLI's flag table takes its defaults from BatcherConfig/ServeConfig: every field has its
    flag, with the same default, and parsing no flags gives the default configuration."""
    import argparse
    from dataclasses import MISSING, fields

    from pyner.cli import serve as cli

    table = {f.replace("-", "_"): default for f, (_, default, _) in cli.OPTIONS.items()}
    switches = {name for name, _ in cli.SWITCHES.values()}
    for cls in (BatcherConfig, ServeConfig):
        for f in fields(cls):
            if f.name in ("artifact", "batcher"):
                continue
            if f.name in switches:
                assert f.default is True, f.name
                continue
            assert f.name in table, f"{cls.__name__}.{f.name} has no --{f.name.replace('_', '-')} flag"
            assert table[f.name] == (f.default if f.default is not MISSING else f.default_factory()), f.name
    assert set(table) - {f.name for c in (BatcherConfig, ServeConfig) for f in fields(c)} == {"log_level"}
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config, level = cli.config_from_args(parser.parse_args(["art"]))
    assert config == ServeConfig("art") and level == "info"
    from pyner.runtime import CPU, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS

    cpu = BatcherConfig().for_device(CPU)  # unset batch sizes are the device's: on CPU the runtime's measured budget
    assert (cpu.max_batch_tokens, cpu.max_batch_size) == (DEFAULT_MAX_BATCH_TOKENS, 32) and DEFAULT_BATCH_SIZE == 32


def test_every_error_maps_to_a_real_status_and_exit_code():
    """pyner.errors is the one family: each class has a gRPC status the sidecar can send and a CLI
    exit code, and ARCHITECTURE.md's table says the same as the code."""
    import inspect

    from pyner import errors
    from pyner.serve.rpc import grpc_status

    classes = {n: c for n, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.PynerError) and c is not errors.PynerError}
    assert {"Unavailable", "DeadlineExpired", "NotFound", "Overloaded", "UsageError"} <= set(classes)
    doc = (ROOT / "ARCHITECTURE.md").read_text()
    table = doc[doc.index("## Errors and exit codes"):]
    rows = {m[0]: (int(m[1]), m[2]) for m in re.findall(r"^\| `(\w+)`[^|]*\| (\d+) \| ([A-Z_]+) \|$", table, re.M)}
    for name, cls in classes.items():
        code, message = grpc_status(cls("a problem", hint="what to do"))
        assert code.name == cls.grpc_code and code is not grpc.StatusCode.OK, name
        assert code is not grpc.StatusCode.INTERNAL, name  # INTERNAL is for bugs only
        assert message == "a problem (hint: what to do)"
        assert isinstance(cls.exit_code, int) and 1 <= cls.exit_code <= 125, name
        assert rows.get(name) == (cls.exit_code, cls.grpc_code), f"ARCHITECTURE.md's row for {name}: {rows.get(name)}"
    assert grpc_status(KeyError("x"))[0] is grpc.StatusCode.INTERNAL


def test_loadtest_reports_throughput_and_percentiles(served):
    from pyner.cli.loadtest import measure

    report = measure(f"127.0.0.1:{served.port}", TEXTS, concurrency=4, requests=40)
    assert report["statuses"] == {"OK": 40}
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    proc = subprocess.run([sys.executable, "-c", "import sys; from pyner.cli import main; sys.exit(main())", "loadtest",
                           f"127.0.0.1:{served.port}", "--concurrency", "2", "--requests", "10", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["statuses"] == {"OK": 10}


def test_healthcheck_module(served):
    from pyner.serve.healthcheck import main

    assert main([f"127.0.0.1:{served.port}"]) == 0
    assert main(["127.0.0.1:1"]) == 1  # nothing listens there


def test_generated_code_is_not_committed_and_rebuilds_when_stale(tmp_path, monkeypatch):
    tracked = subprocess.run(["git", "ls-files", "pyner/serve/_proto"], cwd=ROOT, capture_output=True, text=True).stdout
    assert tracked == ""
    from pyner.serve import protos

    root = protos.proto_root()
    assert protos._is_fresh(protos.source_digest(root))
    # a changed .proto gives another digest: the build is then redone
    changed = tmp_path / "proto"
    shutil.copytree(root, changed)
    with open(changed / protos.PROTO_FILES[0], "a") as f:
        f.write("\n// changed\n")
    assert protos.source_digest(changed) != protos.source_digest(root)
    assert not protos._is_fresh(protos.source_digest(changed))
