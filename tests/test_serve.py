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
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
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
    """The real model, but forward() waits for `gate` and records which windows reached the model."""

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

    def forward(self, windows, **kwargs):
        self.seen.update(id(w) for w in windows)
        self.entered.set()
        assert self.gate.wait(120), "test never opened the gate"
        return self._model.forward(windows, **kwargs)

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


# -- batching, overload, deadlines, cancellation, drain ----------------------------------------------


def test_length_buckets_bound_padding_and_keep_every_window():
    from pyner.serve.batcher import plan_buckets

    # hand-checked: 100 and 90 pad to 200 <= 1.25 * 190; 40 would pad 300 > 1.25 * 230
    assert plan_buckets([40, 100, 90, 35, 38], max_windows=8, max_tokens=10_000, max_padding=0.25) == [[1, 2], [0, 4, 3]]
    import random

    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(3, 300) for _ in range(rng.randint(1, 60))]
        buckets = plan_buckets(lengths, max_windows=16, max_tokens=4096, max_padding=0.25)
        assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
        for b in buckets:
            ls = [lengths[i] for i in b]
            assert ls == sorted(ls, reverse=True) and len(b) <= 16
            assert len(b) == 1 or (max(ls) * len(b) <= 4096 and max(ls) * len(b) <= 1.25 * sum(ls))


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
    inner = gm.forward

    def counting(windows, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return inner(windows, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    gm.forward = counting
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
        while not stop.is_set():
            peak = max(peak, sample(srv, "pyner_pending_requests"))
            time.sleep(0.001)

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
    time.sleep(0.2)  # let the server see the cancellation
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
        statuses: dict[str, int] = {}
        lock = threading.Lock()
        ok_after_term = [0]
        term_sent = threading.Event()

        def caller(k: int) -> None:
            with Client(target, timeout=60) as c:
                for i in range(400):  # bounded: stops at the first refusal
                    try:
                        c.recognize(TEXTS[(k + i) % len(TEXTS):(k + i) % len(TEXTS) + 3])
                        code = "OK"
                        if term_sent.is_set():
                            with lock:
                                ok_after_term[0] += 1
                    except grpc.RpcError as exc:
                        code = exc.code().name
                    with lock:
                        statuses[code] = statuses.get(code, 0) + 1
                    if code != "OK":
                        return

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        wait_until(lambda: statuses.get("OK", 0) >= 40, 120, "requests flowing")
        proc.send_signal(signal.SIGTERM)
        term_sent.set()
        for t in threads:
            t.join(120)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    stopped = [json.loads(line) for line in logs if '"event": "stopped"' in line]
    assert stopped, "".join(logs)
    # every request got a result or a clear refusal; nothing the server finished went missing
    assert set(statuses) <= {"OK", "UNAVAILABLE"}, statuses
    assert statuses.get("UNAVAILABLE", 0) >= 1
    assert stopped[0]["unfinished"] == 0
    assert stopped[0]["requests"].get("pyner.v1:OK", 0) == statuses["OK"]
    print(f"sigterm: client statuses {statuses}, server {stopped[0]['requests']}, OK after SIGTERM {ok_after_term[0]}")


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


# -- CLI, loadtest, generated code ------------------------------------------------------------------


def test_serve_flags_read_environment_variables(monkeypatch):
    import argparse

    from pyner.cli import serve as cli
    from pyner.errors import UsageError

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    monkeypatch.setenv("PYNER_MAX_QUEUE", "7")
    monkeypatch.setenv("PYNER_PORT", "6000")
    monkeypatch.setenv("PYNER_PROVIDERS", "cpu")
    config, level = cli.config_from_args(parser.parse_args(["art", "--port", "6001"]))
    assert config.batcher.max_queue == 7 and config.port == 6001 and config.providers == ["cpu"]
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
    with pytest.raises(UsageError, match="--tls-key file not found"):
        ServerThread(ServeConfig(str(artifact), port=0, metrics_port=-1, tls_cert="/nonexistent.pem",
                                 tls_key="/nonexistent.key"), model=model).start()
    with pytest.raises(UsageError, match=f"127.0.0.1:{served.port}.*in use"):  # no silent port sharing
        ServerThread(ServeConfig(str(artifact), port=served.port, metrics_port=-1), model=model).start()
    with pytest.raises(UsageError, match="metrics"):
        ServerThread(ServeConfig(str(artifact), port=0, metrics_port=served.metrics_port), model=model).start()


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
