"""Python runtime vs the JVM (jvm_bridge through pyjnius), on every family and precision.

The oracle is the Python runtime (itself proven against transformers' pipeline in the runtime
tests): token ids, type ids, offsets, special masks, per-token labels, and the entities of every
aggregation strategy must be identical; scores must be within the artifact's tolerance, and bit
for bit equal when both sides run the same ONNX Runtime version (they do: 1.29.0 on both sides).

This file builds nothing: the jar comes from `make jvm` (the `make test` target builds it first).
A missing jar FAILS the tests with the command to run; it is never a skip. The artifacts are the
ones the Maven build packaged (tests/make_test_artifacts.py, reused when up to date).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_test_artifacts  # noqa: E402
from pyner.errors import ArtifactError, InputError, MissingDependency, UsageError  # noqa: E402

pytestmark = pytest.mark.jvm

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "jvm_bridge" / "target" / "test-artifacts"

_NEWS = ("Angela Merkel 🇩🇪 met Emmanuel Macron 🇫🇷 in Berlin on Tuesday; 東京都の小池百合子知事 and "
         "محمد بن سلمان joined via video 👨‍👩‍👧‍👦. ")

# Hostile texts: non-BMP (ZWJ sequences, flags, skin tones, math alphanumerics), CJK, RTL and bidi
# controls, combining marks, NFKC-sensitive characters, control and zero-width characters, empty and
# whitespace-only, words longer than WordPiece's limit, and documents needing many windows.
HOSTILE = [
    "👨‍👩‍👧‍👦 Family trip to New York with Sarah 👋🏽 and Tom 👍🏿!",
    "🇫🇷🇩🇪🇯🇵🇺🇸 flags: Paris, Berlin, Tokyo, Washington 🏳️‍🌈🏴‍☠️",
    "Keycaps 1️⃣ 2️⃣ #️⃣ and ❤️‍🔥 in São Paulo",
    "𝐀𝐧𝐠𝐞𝐥𝐚 𝔐𝔢𝔯𝔨𝔢𝔩 visited 𝕭𝖊𝖗𝖑𝖎𝖓 \U0010FFFF \ue000",
    "習近平主席は東京で岸田文雄首相と会談した。三星电子在首尔发布了新款手机。",
    "서울에서 문재인 대통령이 기자회견을 열었다.",
    "التقى محمد بن سلمان مع جو بايدن في الرياض\u200f.",
    "בנימין נתניהו נפגש עם עמנואל מקרון בירושלים \u202eevil\u202c.",
    "Zoe\u0308 Saldan\u0303a, Jose\u0301, a\u0301\u0302\u0303\u0304 and Mu\u0308nchen",
    "ﬁrst Ｔｏｋｙｏ office of Ⅸ Corp. at ① Main St., 5㎏, x², ｼﾌﾞﾔ, ＡＢＣ",
    "ctrl\x00nul\x07bell\x1b[31mred\x1b[0m\x7f del \u0085nel\u2028ls\u2029ps",
    "Elon\u200bMusk\u200c and Tesla\u200d Inc.\ufeff met in Austin\u2060 Texas\u00ad.",
    "Jeff Bezos\tfounded Amazon\nin Seattle,\r\nWashington.",
    "",
    " ",
    "\t\n\r \u3000\u00a0\u2003",
    "U.S. and U.K.; O'Neil's e-mail (9:30 a.m.) #tag @user https://ex.com/a?b=c&d=e",
    "Supercalifragilistic" * 8 + " Paris " + "x" * 150,
    "a",
    "🎉",
    _NEWS * 12,
    "東京" * 200,
    ("The U.S. Federal Reserve 🏦 raised rates; Jerome Powell said so in Washington, D.C. " * 15).strip(),
]


def _jar_or_fail() -> None:
    from pyner.jvm import find_classpath

    try:
        find_classpath()
    except MissingDependency as exc:
        pytest.fail(f"{exc} -- run `make jvm` first (hint: {exc.hint})", pytrace=False)


@pytest.fixture(scope="module")
def artifacts() -> dict[tuple[str, str], Path]:
    _jar_or_fail()
    return make_test_artifacts.ensure(ARTIFACTS)


CASES = [(f, p) for f in make_test_artifacts.families() for p in make_test_artifacts.PRECISIONS]


@pytest.mark.slow
@pytest.mark.parametrize("family,precision", CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_python_and_jvm_agree_on_hostile_texts(artifacts, family, precision):
    from pyner.jvm import format_parity, jvm_parity

    report = jvm_parity(artifacts[(family, precision)], HOSTILE)
    text = format_parity(report)
    assert report.ok, text
    assert report.texts >= len(HOSTILE) + 30 and report.tokens > 1000 and report.entities > 100, text
    assert report.windows > report.texts, "no multi-window text was compared: " + text
    assert report.identical_texts == report.texts, text
    if report.python_ort == report.jvm_ort:
        assert report.max_score_diff == 0.0, "same ONNX Runtime on both sides, yet scores differ: " + text


def test_non_bmp_text_reaches_java_intact(artifacts):
    """pyjnius turns str 'a😀b' into a 3-unit Java string 'a\\uf600b'; pyner passes UTF-8 bytes instead."""
    from pyner import runtime
    from pyner.jvm import JvmModel

    art = artifacts[("roberta", "fp32")]
    text = "a\U0001F600b 🇫🇷"
    with JvmModel(art, self_check=False) as jvm:
        [java] = jvm.analyze([text])
        [entities] = jvm.predict([text], aggregation="none", utf16=True)
    [py] = runtime.load(art).encode([text])
    assert java["windows"][0]["input_ids"] == py.windows[0].input_ids.tolist()
    ends = [e for _, e in java["windows"][0]["offsets"]]
    assert max(ends) == len(text)  # code points, as Python counts them
    for e in entities:  # UTF-16 offsets are the code point offsets shifted by the astral characters before them
        assert e["start_utf16"] == len(text[: e["start"]].encode("utf-16-le")) // 2


def test_lone_surrogate_is_a_clear_error(artifacts):
    from pyner.jvm import JvmModel

    with JvmModel(artifacts[("bert", "fp32")], self_check=False) as jvm:
        with pytest.raises(InputError, match=r"texts\[1\] has a lone surrogate '\\ud83d' at index 2"):
            jvm.predict(["fine", "ab\ud83dcd"])
        with pytest.raises(TypeError, match=r"texts\[2\] is int"):
            jvm.predict(["a", "b", 3])
        assert jvm.predict([]) == []


def test_jvm_loads_with_golden_self_check_and_names_tampered_files(artifacts, tmp_path):
    from pyner.jvm import JvmModel

    src = artifacts[("xlm-roberta", "fp32")]
    with JvmModel(src, self_check=True) as jvm:  # golden fixtures re-run inside the JVM on load
        assert jvm.versions()["onnxruntime"] == json.loads((src / "pyner.json").read_text())["onnxruntime_version"]
    bad = tmp_path / "tampered"
    shutil.copytree(src, bad)
    config = bad / "config.json"
    config.write_text(config.read_text() + " ")
    with pytest.raises(ArtifactError, match=r"config\.json: size .* manifest says"):
        JvmModel(bad)


def test_missing_jar_fails_naming_make_jvm(tmp_path):
    from pyner.jvm import JAR_NAME, find_classpath

    with pytest.raises(MissingDependency) as info:
        find_classpath(tmp_path)
    assert f"{JAR_NAME} not found" in str(info.value)
    assert "make jvm" in info.value.hint


def test_verify_cli_compares_the_jvm_and_exits_zero(artifacts, tmp_path):
    import subprocess

    import onnxruntime

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(t.replace("\n", " ").replace("\r", " ").replace("\x85", " ").replace("\u2028", " ")
                               .replace("\u2029", " ") for t in HOSTILE[:8]) + "\n", encoding="utf-8")
    pyner = Path(sys.executable).parent / "pyner"
    art = artifacts[("deberta-v2", "int8")]
    done = subprocess.run([str(pyner), "verify", str(art), "--jvm", "-i", str(texts)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "JVM parity:" in done.stdout and "IDENTICAL (scores bit for bit)" in done.stdout, done.stdout
    # the same ONNX Runtime on both sides (pyproject.toml and jvm_bridge/pom.xml pin one version)
    assert f"onnxruntime: Python {onnxruntime.__version__}, JVM {onnxruntime.__version__}" in done.stdout, done.stdout
    bad = subprocess.run([str(pyner), "verify", str(art), "-i", str(texts)], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "only used with --jvm" in bad.stderr, bad.stderr


# -- text classification and feature extraction (docs/tasks.md) ------------------------------------

CLASSIFICATION = ("bert-cls-fp32", "roberta-cls-fp32", "bert-mlabel-fp32", "bert-cls-int8")
EMBEDDING = ("bert-emb-fp32", "xlm-roberta-emb-fp32", "minilm-emb-fp32")


def _task_artifact(artifacts, name: str) -> Path:
    path = ARTIFACTS / name
    if not (path / "pyner.json").is_file():
        pytest.fail(f"task test artifact {path} missing: tests/make_test_artifacts.py writes it", pytrace=False)
    return path


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classify_is_bit_identical_to_python_in_both_long_text_modes(artifacts, name):
    from pyner import runtime
    from pyner.jvm import JvmModel

    art = _task_artifact(artifacts, name)
    py = runtime.load(art)
    texts = [c["text"] for c in json.loads((art / "golden.json").read_text(encoding="utf-8"))["cases"]] + HOSTILE
    with JvmModel(art) as jvm:  # golden self-check inside the JVM on load
        assert jvm.task == "text-classification" and jvm.labels == py.labels
        compared = 0
        for long_text in ("truncate", "average"):
            for top_k in (0, 1, 2, None):
                want = py.classify(texts, top_k=top_k, long_text=long_text)
                got = jvm.classify(texts, top_k=top_k, long_text=long_text)
                assert got == want, f"{name} long_text={long_text} top_k={top_k}"  # labels and float32 scores, bit for bit
                compared += sum(len(r) for r in got)
        # defaults: top_k 1, truncate
        assert jvm.classify(texts[:3]) == py.classify(texts[:3])
        assert compared > 4 * len(texts)
        with pytest.raises(UsageError, match=r"text-classification model: predict\(\) gives entities .* use classify\(\)"):
            jvm.predict(["Paris"])
        with pytest.raises(UsageError, match="long_text 'mean'"):
            jvm.classify(["Paris"], long_text="mean")
        with pytest.raises(UsageError, match="top_k -1"):
            jvm.classify(["Paris"], top_k=-1)


@pytest.mark.parametrize("name", EMBEDDING)
def test_embed_is_bit_identical_to_python(artifacts, name):
    import numpy as np

    from pyner import runtime
    from pyner.jvm import JvmModel

    art = _task_artifact(artifacts, name)
    py = runtime.load(art)
    texts = [c["text"] for c in json.loads((art / "golden.json").read_text(encoding="utf-8"))["cases"]] + HOSTILE
    with JvmModel(art) as jvm:
        assert jvm.task == "feature-extraction" and jvm.embedding_dim == py.embedding_dim
        got = jvm.embed(texts)
        want = py.embed(texts)
        assert isinstance(got, list) and all(isinstance(v, list) for v in got)
        assert np.asarray(got, dtype=np.float32).shape == want.shape == (len(texts), py.embedding_dim)
        assert got == want.tolist(), name  # every float32 value, bit for bit
        assert jvm.embed([]) == []
        with pytest.raises(UsageError, match=r"feature-extraction model: classify\(\) gives labels .* use embed\(\)"):
            jvm.classify(["Paris"])


@pytest.mark.parametrize("name", CLASSIFICATION + EMBEDDING)
def test_jvm_parity_covers_every_task(artifacts, name):
    from pyner.jvm import format_parity, jvm_parity

    art = _task_artifact(artifacts, name)
    report = jvm_parity(art, HOSTILE)
    text = format_parity(report)
    assert report.ok, text
    assert report.task == json.loads((art / "pyner.json").read_text())["task"], text
    assert report.texts >= len(HOSTILE) + 30 and report.tokens > 1000, text
    assert report.bit_identical_texts == report.texts, text
    if report.task == "text-classification":
        assert report.windows > report.texts, "no multi-window text was compared: " + text
    if report.python_ort == report.jvm_ort:
        assert report.max_score_diff == 0.0 and "IDENTICAL (scores bit for bit)" in text, text
    assert report.task in text.splitlines()[0]


def test_ner_artifacts_refuse_classify_and_embed_through_the_bridge(artifacts):
    from pyner.jvm import JvmModel

    with JvmModel(artifacts[("bert", "fp32")], self_check=False) as jvm:
        assert jvm.task == "token-classification"
        with pytest.raises(UsageError, match=r"token-classification model: embed\(\) gives embedding .* use predict\(\)"):
            jvm.embed(["Paris"])
