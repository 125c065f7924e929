"""`pyner verify ARTIFACT_DIR [--jvm [-i FILE]]`: format version, checksums, golden fixtures re-run here.

With --jvm, the Java library (jvm_bridge, through pyjnius) also runs the golden texts (and the texts
of -i FILE: plain-text lines or JSON Lines with "text") and a parity report compares it with the
Python runtime: token ids, per-token labels and scores, entities of every strategy. Any difference
beyond the artifact's score tolerance exits non-zero (4).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ArtifactError, InputError, UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="artifact folder made by `pyner package`")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--jvm", action="store_true",
                   help="also compare the JVM library (jvm_bridge, built by `make jvm`) with the Python runtime")
    p.add_argument("--expect-digest", metavar="sha256:HEX", default=None,
                   help="refuse the artifact unless its digest (printed by verify and package) is this one")
    p.add_argument("-i", "--input", metavar="FILE",
                   help="with --jvm: more texts to compare (plain-text lines or JSON Lines with \"text\"; '-' reads stdin)")


def _read_texts(name: str) -> list[str]:
    from .predict import _records_from_lines

    if name == "-":
        return [t for _, t in _records_from_lines(sys.stdin, "<stdin>")]
    try:
        with open(name, encoding="utf-8", newline="") as f:
            return [t for _, t in _records_from_lines(f, name)]
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def run(args: argparse.Namespace) -> int:
    from ..verify import verify

    if args.input and not args.jvm:
        raise UsageError("-i FILE is only used with --jvm (the golden texts are always verified)")
    texts = _read_texts(args.input) if args.input else None
    report = verify(args.artifact, threads=args.threads, expect_digest=args.expect_digest)
    for line in report.lines():
        print(line)
    status = 0
    if not report.ok:
        print(f"error: {args.artifact}: golden fixtures differ ({report.comparison.total_differences} difference(s))", file=sys.stderr)
        status = ArtifactError.exit_code
    if args.jvm:
        from ..jvm import format_parity, jvm_parity

        parity = jvm_parity(args.artifact, texts, threads=args.threads)
        print(format_parity(parity))
        if not parity.ok:
            print(f"error: {args.artifact}: the JVM differs from the Python runtime ({parity.total_differences} difference(s))",
                  file=sys.stderr)
            status = ArtifactError.exit_code
    return status
