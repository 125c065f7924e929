"""`pyner verify ARTIFACT_DIR`: format version, checksums, golden fixtures re-run here."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="artifact folder made by `pyner package`")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: physical cores)")


def run(args: argparse.Namespace) -> int:
    from ..verify import verify

    report = verify(args.artifact, threads=args.threads)
    for line in report.lines():
        print(line)
    if not report.ok:
        print(f"error: {args.artifact}: golden fixtures differ ({len(report.comparison.differences)} difference(s) listed above)", file=sys.stderr)
        return 4
    return 0
