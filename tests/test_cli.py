"""`pyner predict` and `pyner verify` from the command line: formats, order, bad input, tampering."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

def run(*args, stdin: str | None = None, cwd=None):
    return subprocess.run([sys.executable, "-c", "import sys; from pyner.cli import main; sys.exit(main())", *map(str, args)],
                          input=stdin, capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def art(artifact_factory):
    return artifact_factory("bert")


def test_predict_args_jsonl_and_text_files_keep_order(art, tmp_path):
    import pyner

    texts = ["Angela Merkel met Emmanuel Macron in Berlin.", "", "Apple Inc. in Cupertino 😀", "U.S. e-mail O'Neil"]
    want = pyner.load(art).predict(texts, aggregation="first")

    r = run("predict", art, *texts, "--aggregation", "first")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["id"] for row in rows] == [0, 1, 2, 3]
    assert [row["entities"] for row in rows] == want

    plain = tmp_path / "in.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = run("predict", art, "-i", plain, "-o", out, "--aggregation", "first", "--batch-size", "1")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3, 4]  # line numbers
    assert [row["text"] for row in rows] == texts
    assert [row["entities"] for row in rows] == want

    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    r = run("predict", art, "-i", "-", "--aggregation", "first", stdin=jl.read_text(encoding="utf-8"))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["id"] for row in rows] == [f"doc-{i}" for i in range(4)]
    assert [row["entities"] for row in rows] == want


def test_predict_text_format(art):
    import pyner

    text = "Angela Merkel met Emmanuel Macron in Berlin."
    ents = pyner.load(art).predict([text])[0]
    r = run("predict", art, "--format", "text", text)  # options between positionals
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == text
    want = ", ".join(f"{e['entity_group']} {e['word']!r} {e['score']:.2f}" for e in ents) or "(no entities)"
    assert lines[1] == "    " + want


def test_predict_streams_more_than_one_chunk(art, tmp_path):
    from pyner.cli.predict import CHUNK_TEXTS

    n = CHUNK_TEXTS * 2 + 3
    src = tmp_path / "many.txt"
    src.write_text("".join(f"Doc {i} about Paris and Berlin.\n" for i in range(n)), encoding="utf-8")
    out = tmp_path / "many.jsonl"
    r = run("predict", art, "-i", src, "-o", out)
    assert r.returncode == 0, r.stderr
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == n
    assert [json.loads(x)["text"] for x in rows[:3]] == ["Doc 0 about Paris and Berlin.", "Doc 1 about Paris and Berlin.", "Doc 2 about Paris and Berlin."]


def test_invalid_json_line_names_the_line_and_leaves_no_output(art, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": 1, "text": "Paris"}\n{"id": 2, "text": "Berlin"}\n{"id": 3, "text": oops}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = run("predict", art, "-i", src, "-o", out)
    assert r.returncode == 3
    assert f"{src}:3: invalid JSON" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))

    src.write_text('{"id": 1, "txt": "Paris"}\n', encoding="utf-8")
    r = run("predict", art, "-i", src, "-o", out)
    assert r.returncode == 3 and f'{src}:1: "text" must be a string' in r.stderr


def test_usage_errors(art):
    r = run("predict", art)
    assert r.returncode == 2 and "nothing to recognize" in r.stderr
    r = run("predict", art, "x", "--aggregation", "mean")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_missing_artifact_is_one_clear_line(tmp_path):
    r = run("predict", tmp_path / "nope", "Paris")
    assert r.returncode == 4
    assert r.stderr.splitlines()[0] == f"error: artifact folder not found: {tmp_path / 'nope'}"
    assert "Traceback" not in r.stderr
    r = run("verify", tmp_path)
    assert r.returncode == 4 and "pyner.json: missing" in r.stderr


def test_verify_ok_and_tampering_named(art, tmp_path):
    r = run("verify", art)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "golden: OK" in r.stdout

    for name in ("model.onnx", "tokenizer.json", "golden.json", "config.json", "serving.properties"):
        bad = tmp_path / f"tampered-{name}"
        shutil.copytree(art, bad)
        p = bad / name
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit, same size
        p.write_bytes(bytes(data))
        r = run("verify", bad)
        assert r.returncode == 4, (name, r.stdout, r.stderr)
        assert f"{p}: sha256" in r.stderr and "modified" in r.stderr

    trunc = tmp_path / "truncated"
    shutil.copytree(art, trunc)
    (trunc / "model.onnx").write_bytes((art / "model.onnx").read_bytes()[:1000])
    r = run("predict", trunc, "Paris")
    assert r.returncode == 4 and "model.onnx: size 1000 bytes" in r.stderr


def test_newer_format_is_refused(art, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(art, newer)
    m = json.loads((newer / "pyner.json").read_text())
    m["format_version"] = 99
    (newer / "pyner.json").write_text(json.dumps(m))
    r = run("verify", newer)
    assert r.returncode == 4 and "format version 99 is newer than this pyner supports (2)" in r.stderr


def test_verify_reports_golden_differences(art, tmp_path):
    """A golden file that no longer matches the model (re-checksummed, so only the comparison can tell)."""
    from pyner.artifact import finalize_manifest

    moved = tmp_path / "moved"
    shutil.copytree(art, moved)
    g = json.loads((moved / "golden.json").read_text())
    w = g["cases"][0]["windows"][0]
    w["labels"][1] = (w["labels"][1] + 1) % 9
    w["scores"][1][0] += 0.01
    g["cases"][0]["entities"]["simple"] = [{"entity_group": "PER", "score": 0.5, "word": "zzz", "start": 0, "end": 3}]
    (moved / "golden.json").write_text(json.dumps(g))
    m = json.loads((moved / "pyner.json").read_text())
    finalize_manifest(moved, {k: v for k, v in m.items() if k != "files"})
    r = run("verify", moved)
    assert r.returncode == 4
    assert "news-01 window 0: label of token 1" in r.stdout
    assert "news-01 window 0: scores differ by 0.01" in r.stdout
    assert "news-01 entities[simple]" in r.stdout
