"""Text classification and sentence embeddings (docs/tasks.md), each against an independent oracle:
transformers' pipeline("text-classification") on the same checkpoint, sentence-transformers on the same
folder (the real all-MiniLM-L6-v2 and a bare encoder), and hand-computed averages; plus the task seam's
errors in the Python runtime and the CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from factory import make_checkpoint
from pyner.golden import GOLDEN_TEXTS

TEXTS = [t for _, t in GOLDEN_TEXTS]
CLASS_FAMILIES = ("bert", "distilbert", "roberta", "xlm-roberta", "deberta-v2", "electra")


@pytest.fixture(scope="module")
def task_artifact(tmp_path_factory):
    """(family, task, multi_label, precision, max_length) -> (checkpoint, artifact)."""
    from pyner_export.package import package

    cache = {}

    def make(family, task, multi_label=False, precision="fp32", max_length=32):
        key = (family, task, multi_label, precision, max_length)
        if key not in cache:
            root = tmp_path_factory.mktemp(f"{family}-{task}")
            ckpt = make_checkpoint(family, root / "ckpt", task=task, multi_label=multi_label)
            out = root / "artifact"
            package(ckpt, out, precision=precision, max_length=max_length, quiet=True, guard=precision == "fp32",
                    **({"stride": 8} if task == "text-classification" else {}))
            cache[key] = ckpt, out
        return cache[key]

    return make


def _pipeline(ckpt):
    from transformers import pipeline

    return pipeline("text-classification", model=str(ckpt), device="cpu")


@pytest.mark.parametrize("family", CLASS_FAMILIES)
def test_classification_equals_the_pipeline(task_artifact, family):
    import pyner

    ckpt, art = task_artifact(family, "text-classification")
    model = pyner.load(art)
    assert model.manifest.raw["format_version"] == 2 and model.task == "text-classification"
    assert model.function_to_apply == "softmax" and model.input_names == ["input_ids", "attention_mask"]
    pipe = _pipeline(ckpt)
    want_all = pipe(TEXTS, top_k=None, truncation=True, max_length=model.max_length)
    got_all = model.classify(TEXTS, top_k=0)
    assert [[r["label"] for r in g] for g in got_all] == [[r["label"] for r in w] for w in want_all]
    worst = max(abs(a["score"] - b["score"]) for g, w in zip(got_all, want_all) for a, b in zip(g, w))
    assert worst <= 1e-5
    want_top = pipe(TEXTS, truncation=True, max_length=model.max_length)  # the pipeline's legacy top-1 form
    assert [g[0]["label"] for g in model.classify(TEXTS)] == [w["label"] for w in want_top]
    assert [len(g) for g in model.classify(TEXTS[:3], top_k=2)] == [2, 2, 2]
    tops = [g[0]["score"] for g in got_all]
    assert max(tops) - min(tops) > 1e-3, "a degenerate model: every text gets the same scores"


def test_multi_label_uses_sigmoid_like_the_pipeline(task_artifact):
    import pyner

    ckpt, art = task_artifact("bert", "text-classification", multi_label=True)
    model = pyner.load(art)
    assert model.function_to_apply == "sigmoid"
    want = _pipeline(ckpt)(TEXTS, top_k=None, truncation=True, max_length=model.max_length)
    got = model.classify(TEXTS, top_k=None)
    assert [[r["label"] for r in g] for g in got] == [[r["label"] for r in w] for w in want]
    assert max(abs(a["score"] - b["score"]) for g, w in zip(got, want) for a, b in zip(g, w)) <= 1e-5
    assert any(sum(r["score"] for r in g) > 1.5 for g in got)  # independent probabilities, not a softmax


def test_long_text_average_is_the_mean_of_the_windows_logits(task_artifact):
    """Oracle: PyTorch's logits of each window (the same windows), averaged and soft-maxed in numpy."""
    import pyner
    import torch
    from transformers import AutoModelForSequenceClassification

    ckpt, art = task_artifact("bert", "text-classification")
    model = pyner.load(art)
    long_text = GOLDEN_TEXTS[-1][1]
    [scored] = model.score([long_text], output="logits")
    assert len(scored.encoded.windows) > 3
    torch_model = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()
    with torch.no_grad():
        logits = np.stack([torch_model(input_ids=torch.tensor([w.input_ids])).logits[0].numpy()
                           for w in scored.encoded.windows])
    mean = logits.astype(np.float64).mean(axis=0)
    want = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    [got] = model.classify([long_text], top_k=0, long_text="average")
    got_scores = {r["label"]: r["score"] for r in got}
    assert np.abs(np.array([got_scores[l] for l in model.labels]) - want).max() < 1e-5
    [trunc] = model.classify([long_text], top_k=0)
    assert trunc != got  # the windows past the first change the answer
    short = TEXTS[0]
    assert model.classify([short], long_text="average", top_k=0) == model.classify([short], top_k=0)


def test_average_scores_by_hand():
    from pyner.tasks import average_scores

    logits = [np.array([1.0, 2.0, 0.5], dtype=np.float32), np.array([3.0, 0.0, 0.5], dtype=np.float32)]
    means = [2.0, 1.0, 0.5]
    e = [math.exp(m - 2.0) for m in means]
    assert average_scores(logits, "softmax").tolist() == [np.float32(x / sum(e)) for x in e]
    assert average_scores(logits, "sigmoid").tolist() == [np.float32(1 / (1 + math.exp(-m))) for m in means]
    assert average_scores(logits, "none").tolist() == means
    assert average_scores([np.array([-1e30], dtype=np.float32)] * 2, "sigmoid").tolist() == [0.0]  # no overflow error


def test_embeddings_equal_sentence_transformers_on_minilm(tmp_path):
    """The embedded all-MiniLM-L6-v2 as it ships (`pyner package --task feature-extraction`, no MODEL_DIR)."""
    import pyner
    from pyner_export.demo import encoder_dir
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "minilm"
    r = subprocess.run([sys.executable, "-m", "pyner", "package", "--task", "feature-extraction", "-o", str(out), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = pyner.load(out)
    m = model.manifest.raw
    assert (m["task"], m["pooling"]["mode"], m["pooling"]["normalize"], m["embedding_dim"], m["max_length"]) == \
        ("feature-extraction", "mean", True, 384, 256)
    texts = TEXTS + [" ".join(["Berlin"] * 400)]  # past max_seq_length: both truncate at 256 tokens
    got = model.embed(texts)
    want = SentenceTransformer(str(encoder_dir()), device="cpu").encode(texts, convert_to_numpy=True)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    assert cos.min() >= 0.9999 and np.abs(got - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cfg = (out / "serving.properties").read_text()
    assert "TextEmbeddingTranslatorFactory" in cfg and "pooling=mean" in cfg and "normalize=true" in cfg


@pytest.mark.parametrize("family", ("bert", "xlm-roberta"))
def test_bare_encoder_embeddings_equal_sentence_transformers(task_artifact, family):
    """A bare encoder: sentence-transformers' own defaults for it (mean pooling, no Normalize)."""
    import pyner
    from sentence_transformers import SentenceTransformer

    ckpt, art = task_artifact(family, "feature-extraction")
    model = pyner.load(art)
    assert model.manifest.raw["pooling"] == {"mode": "mean", "normalize": False, "source": "defaults (bare encoder)"}
    st = SentenceTransformer(str(ckpt), device="cpu")
    st.max_seq_length = model.max_length
    want = st.encode(TEXTS, convert_to_numpy=True)
    got = model.embed(TEXTS)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999


def test_golden_fixtures_hold_per_task(task_artifact):
    import pyner
    from pyner.check import self_check
    from pyner.golden import read_golden

    for task in ("text-classification", "feature-extraction"):
        _, art = task_artifact("bert", task)
        model = pyner.load(art)
        cmp = self_check(model)
        assert cmp.ok and cmp.bit_identical and cmp.texts == len(GOLDEN_TEXTS)
        case = read_golden(art)["cases"][0]
        assert ("classification" in case) == (task == "text-classification") and ("embedding" in case) == (task != "text-classification")


def test_a_changed_golden_value_is_caught(task_artifact, tmp_path):
    import pyner
    from pyner.check import compare_model
    from pyner.golden import read_golden

    for task, field in (("text-classification", "classification"), ("feature-extraction", "embedding")):
        _, art = task_artifact("bert", task)
        golden = read_golden(art)
        case = golden["cases"][0]
        if field == "embedding":
            case["embedding"][3] += 1e-3
        else:
            case["classification"]["truncate"].reverse()
        cmp = compare_model(pyner.load(art), golden)
        assert not cmp.ok and field in cmp.differences[0]


def test_wrong_task_is_a_clear_usage_error(task_artifact, artifact_factory):
    import pyner
    from pyner.errors import UsageError

    _, cls = task_artifact("bert", "text-classification")
    _, emb = task_artifact("bert", "feature-extraction")
    ner = artifact_factory("bert")
    with pytest.raises(UsageError, match="text-classification model: predict\\(\\) gives entities.*use classify\\(\\)"):
        pyner.load(cls).predict(["Paris"])
    with pytest.raises(UsageError, match="feature-extraction model: classify\\(\\).*use embed\\(\\)"):
        pyner.load(emb).classify(["Paris"])
    with pytest.raises(UsageError, match="token-classification model: embed\\(\\).*use predict\\(\\)"):
        pyner.load(ner).embed(["Paris"])
    with pytest.raises(UsageError, match="top_k"):
        pyner.load(cls).classify(["Paris"], top_k=-1)
    with pytest.raises(UsageError, match="long_text"):
        pyner.load(cls).classify(["Paris"], long_text="middle")
    r = subprocess.run([sys.executable, "-m", "pyner", "predict", str(cls), "Paris", "--aggregation", "first"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "text-classification model" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyner", "predict", str(cls), "Paris", "--top-k", "0"], capture_output=True, text=True)
    assert r.returncode == 0 and len(json.loads(r.stdout)["labels"]) == 3
    r = subprocess.run([sys.executable, "-m", "pyner", "predict", str(emb), "Paris"], capture_output=True, text=True)
    assert r.returncode == 0 and len(json.loads(r.stdout)["embedding"]) == 32


def test_format_versions_per_task(task_artifact, artifact_factory, tmp_path):
    """NER stays version 1 (earlier readers load it); other tasks are 2; a version claiming less, or
    newer than this reader, is refused by name."""
    import pyner
    from pyner.errors import ArtifactError

    assert json.loads((artifact_factory("bert") / "pyner.json").read_text())["format_version"] == 1
    _, cls = task_artifact("bert", "text-classification")
    for version, message in ((1, "must have format_version 2"), (3, "format version 3 is newer than this pyner supports \\(2\\)")):
        bad = tmp_path / f"v{version}"
        shutil.copytree(cls, bad)
        m = json.loads((bad / "pyner.json").read_text())
        m["format_version"] = version
        (bad / "pyner.json").write_text(json.dumps(m))
        with pytest.raises(ArtifactError, match=message):
            pyner.load(bad, check=False)


def test_int8_classification_packages_and_ranks_like_fp32(task_artifact):
    import pyner

    _, fp32 = task_artifact("bert", "text-classification")
    _, int8 = task_artifact("bert", "text-classification", precision="int8")
    a, b = pyner.load(fp32).classify(TEXTS), pyner.load(int8).classify(TEXTS)
    assert pyner.load(int8).manifest.raw["quantization"] is not None
    assert sum(x[0]["label"] == y[0]["label"] for x, y in zip(a, b)) >= len(TEXTS) - 2


def test_eval_data_is_refused_for_other_tasks(tmp_path):
    from pyner.errors import UsageError
    from pyner_export.package import package

    ckpt = make_checkpoint("bert", tmp_path / "ckpt", task="text-classification")
    bio = tmp_path / "eval.bio"
    bio.write_text("Paris B-LOC\n\n")
    with pytest.raises(UsageError, match="--eval-data"):
        package(ckpt, tmp_path / "out", eval_data=bio, quiet=True)
    assert not (tmp_path / "out").exists()


def test_the_sidecar_names_the_task_when_asked_for_entities(task_artifact):
    import grpc

    from pyner.client import Client
    from pyner.serve.config import ServeConfig
    from pyner.serve.server import ServerThread

    _, cls = task_artifact("bert", "text-classification")
    with ServerThread(ServeConfig(str(cls), port=0, metrics_port=-1)) as srv, \
            Client(f"127.0.0.1:{srv.port}", timeout=60) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.recognize(["Paris"])
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "text-classification model" in e.value.details() and "classify()" in e.value.details()
