"""Package the tiny test artifacts that the JVM tests (JUnit) and the JVM parity test (pytest) read.

    .venv/bin/python tests/make_test_artifacts.py OUTDIR

Writes, atomically (a temporary folder renamed into place):

    OUTDIR/<family>-<precision>/   one artifact per family (tests/factory.py) and precision
                                   (fp32, fp16, int8), max_length 32 and stride 8 so that the golden
                                   set's long document needs many windows
    OUTDIR/<family>-fp32-L64/      fp32 with max_length 64: most golden texts fit one window
    OUTDIR/<family>-fp32-ext/      fp32 and int8 with `--external-data always`: the weights in
    OUTDIR/<family>-int8-ext/      model.onnx.data beside model.onnx, as a model over 2 GiB has them
    OUTDIR/decoders.json           tokenizer-decoder cases: token lists and what the Rust `tokenizers`
                                   decoders (through Python) return; the oracle for the Java decoders
    OUTDIR/index.json              what is there, and the versions that made it
    OUTDIR/key.txt                 the up-to-date key

Nothing is re-packaged when OUTDIR/key.txt equals the key of the current sources: a hash of the
exporter (export/pyner_export/*.py), the runtime (pyner/{artifact,runtime,decode,golden,check,errors}.py), tests/factory.py, this script, and the versions of
torch, transformers, onnx, onnxruntime and tokenizers. Change any of them and the next build packages
again. `ensure(OUTDIR)` does the same from Python and returns the artifact folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

PRECISIONS = ("fp32", "fp16", "int8")
MAX_LENGTH = 32
STRIDE = 8
LONG_MAX_LENGTH = 64
EXTERNAL_PRECISIONS = ("fp32", "int8")
KEY_FILE = "key.txt"
# Other tasks (docs/tasks.md): (folder, family, task, multi-label, precision); plus minilm-emb-fp32, the real model.
TASK_ARTIFACTS = (("bert-cls-fp32", "bert", "text-classification", False, "fp32"),
                  ("roberta-cls-fp32", "roberta", "text-classification", False, "fp32"),
                  ("bert-mlabel-fp32", "bert", "text-classification", True, "fp32"),
                  ("bert-cls-int8", "bert", "text-classification", False, "int8"),
                  ("bert-emb-fp32", "bert", "feature-extraction", False, "fp32"),
                  ("xlm-roberta-emb-fp32", "xlm-roberta", "feature-extraction", False, "fp32"))
# The runtime modules that compute the golden fixtures (pyner/jvm.py, the CLI and serving do not).
RUNTIME_FILES = ("__init__.py", "artifact.py", "errors.py", "runtime.py", "decode.py", "golden.py", "check.py", "tasks.py")


def families() -> tuple[str, ...]:
    from factory import FAMILIES

    return tuple(FAMILIES)


def source_key() -> str:
    """Hash of everything that determines the artifacts' contents."""
    h = hashlib.sha256()
    files = sorted((ROOT / "export" / "pyner_export").glob("*.py")) + [ROOT / "pyner" / f for f in RUNTIME_FILES]
    files += [ROOT / "tests" / "factory.py", Path(__file__).resolve()]
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    for mod in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers"):
        h.update(f"{mod}={_version(mod)}\n".encode())
    h.update(f"{families()} {PRECISIONS} {MAX_LENGTH} {STRIDE} {LONG_MAX_LENGTH} {EXTERNAL_PRECISIONS}".encode())
    return h.hexdigest()


def _version(mod: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(mod)
    except metadata.PackageNotFoundError:
        return "absent"


def artifact_dirs(outdir: Path) -> dict[tuple[str, str], Path]:
    return {(f, p): Path(outdir) / f"{f}-{p}" for f in families() for p in PRECISIONS}


def is_up_to_date(outdir: Path) -> bool:
    keyfile = Path(outdir) / KEY_FILE
    return keyfile.is_file() and keyfile.read_text().strip() == source_key()


# -- decoder cases ---------------------------------------------------------------------------------

DECODER_SPECS = {
    "wordpiece": {"type": "WordPiece", "prefix": "##", "cleanup": True},
    "wordpiece-nocleanup": {"type": "WordPiece", "prefix": "##", "cleanup": False},
    "bytelevel": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "metaspace-always": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "metaspace-first": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
    "metaspace-never": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": True},
    "bpe": {"type": "BPEDecoder", "suffix": "</w>"},
    "ctc": {"type": "CTC", "pad_token": "<pad>", "word_delimiter_token": "|", "cleanup": True},
    "llama": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ]},
    "replace-regex": {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": "_"},
}


def _byte_level_tokens(text: str) -> list[str]:
    """GPT-2 byte-level token strings of `text`, one per byte (so multi-byte characters split)."""
    from factory import bytes_to_unicode

    table = bytes_to_unicode()
    return [table[b] for b in text.encode("utf-8")]


def decoder_cases() -> list[dict]:
    """Token lists for every decoder, with what `tokenizers` (the Rust crate via Python) decodes them to."""
    from tokenizers import Tokenizer, models

    words = ["Hello", "##world", "!", "do", "not", "it", "'", "s", "##n't", " ", "", "é", "Ġhello", "Ġwörld",
             "\u2581New", "\u2581York", "\u2581\u2581a\u2581", "<0x41>", "<0xE2>", "<0x82>", "<0xAC>", "<0xFF>", "<0x4>",
             "<pad>", "|", "a", "a", "b</w>", "c</w>", "🇫🇷", "👨‍👩‍👧", "\u2581", "ab\tc", "x  y"]
    token_lists = [[w] for w in words]
    token_lists += [
        ["Hello", "##world", "!"], ["Hello", ",", "world", "."], ["it", "'", "s", "do", "not", "can", "##n't"],
        ["Jean", "-", "Baptiste"], ["U", ".", "S", "."], ["##a", "##b", "c"], ["[UNK]", "##x", "y"],
        ["\u2581New", "\u2581York", "\u2581City"], ["\u2581\u2581a\u2581", "b\u2581c", "\u2581"],
        ["<0xE2>", "<0x82>", "<0xAC>", "x"], ["<0xE2>", "<0x82>", "y"], ["<0x41>", "<0x42>"],
        ["<pad>", "a", "a", "<pad>", "b", "|", "c", "|"], ["b</w>", "c</w>", "d"],
        [" hello", " wörld"], ["héllo", "wörld"], ["hello", "world"],
    ]
    # byte-level tokens of hostile text: whole, split at every byte, and partial characters
    for text in ["Hello wörld", "Paris 🇫🇷 and 👨‍👩‍👧‍👦!", "東京都", "é", "naïve café", "a\u200bb"]:
        bl = _byte_level_tokens(text)
        token_lists.append(["".join(bl)])
        token_lists.append(bl)
        token_lists.append(bl[:-1])
        token_lists.append(bl[1:])
        token_lists.append(["".join(bl[:2]), "".join(bl[2:])])
    token_lists += [["Ġhello", "Ġwörld"], ["Ġ", "Ġ"], ["ðŁĺ", "Ģ"], ["ðŁĺ"], ["Ģ", "ðŁĺ"]]

    cases = []
    for name, spec in DECODER_SPECS.items():
        tok = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
        tok_json = json.loads(tok.to_str())
        tok_json["decoder"] = spec
        decoder = Tokenizer.from_str(json.dumps(tok_json)).decoder
        for tokens in token_lists:
            try:
                out = decoder.decode(tokens)
            except Exception as exc:  # a decoder that refuses an input is skipped, not a case
                print(f"  decoder {name} refused {tokens!r}: {exc}", file=sys.stderr)
                continue
            cases.append({"decoder": name, "tokens": tokens, "decoded": out})
    return [{"spec": DECODER_SPECS[c["decoder"]], **c} for c in cases]


# -- packaging -------------------------------------------------------------------------------------

def build(outdir: Path) -> None:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Writing model shards" bars in build logs
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - the export stage needs transformers anyway
        pass
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # optimizer constant-folding warnings are not build output
    from factory import make_checkpoint
    from pyner.artifact import atomic_dir
    from pyner_export.package import package

    outdir = Path(outdir)
    key = source_key()
    t0 = time.perf_counter()
    with atomic_dir(outdir, force=True) as tmp:
        ckpts = tmp / ".checkpoints"
        made, long_made, external_made = [], [], []
        for family in families():
            ckpt = make_checkpoint(family, ckpts / family, seed=0, max_length=64)
            for precision in PRECISIONS:
                t = time.perf_counter()
                dst = tmp / f"{family}-{precision}"
                # The guard is for accuracy, not parity: random tiny models need not pass it in fp16/int8.
                package(ckpt, dst, precision=precision, max_length=MAX_LENGTH, stride=STRIDE,
                        guard=precision == "fp32", quiet=True)
                made.append(dst.name)
                print(f"  packaged {dst.name} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
            # Longer windows, so that most golden texts fit one window: what plain DJL (which truncates)
            # is measured on (jvm_bridge DjlPlainTest).
            dst = tmp / f"{family}-fp32-L{LONG_MAX_LENGTH}"
            package(ckpt, dst, precision="fp32", max_length=LONG_MAX_LENGTH, stride=LONG_MAX_LENGTH // 4, quiet=True)
            long_made.append(dst.name)
            for precision in EXTERNAL_PRECISIONS:
                dst = tmp / f"{family}-{precision}-ext"
                package(ckpt, dst, precision=precision, max_length=MAX_LENGTH, stride=STRIDE,
                        guard=precision == "fp32", external_data="always", quiet=True)
                external_made.append(dst.name)
        task_made = []
        for name, family, task, multi, precision in TASK_ARTIFACTS:
            ckpt = make_checkpoint(family, ckpts / name, seed=0, max_length=64, task=task, multi_label=multi)
            dst = tmp / name
            package(ckpt, dst, precision=precision, max_length=MAX_LENGTH, stride=STRIDE if task != "feature-extraction" else 0,
                    guard=precision == "fp32", quiet=True)
            task_made.append(dst.name)
        from pyner_export.demo import encoder_dir

        package(encoder_dir(), tmp / "minilm-emb-fp32", quiet=True)  # the real all-MiniLM-L6-v2, as it ships
        task_made.append("minilm-emb-fp32")
        shutil.rmtree(ckpts)
        (tmp / "decoders.json").write_text(json.dumps({"cases": decoder_cases()}, ensure_ascii=False, indent=0) + "\n",
                                           encoding="utf-8")
        index = {"artifacts": made, "long_artifacts": long_made, "external_artifacts": external_made,
                 "task_artifacts": task_made,
                 "max_length": MAX_LENGTH, "stride": STRIDE,
                 "versions": {m: _version(m) for m in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers")}}
        (tmp / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        (tmp / KEY_FILE).write_text(key + "\n")
    print(f"test artifacts: {len(made)} packaged into {outdir} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)


def ensure(outdir: Path) -> dict[tuple[str, str], Path]:
    """Package into `outdir` unless it is up to date; return {(family, precision): folder}."""
    outdir = Path(outdir)
    if not is_up_to_date(outdir):
        build(outdir)
    return artifact_dirs(outdir)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_test_artifacts.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    if is_up_to_date(outdir):
        print(f"test artifacts in {outdir} are up to date", file=sys.stderr)
        return 0
    build(outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
