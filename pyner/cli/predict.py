"""`pyner predict ARTIFACT_DIR [TEXT ...] [-i FILE] [-o FILE]`: entities as JSON Lines, in input order.

Input: texts on the command line, or a file (`-` for stdin) of plain-text lines (one document per
line; id = line number) or JSON Lines objects with `text` and optional `id` (detected from the first
non-blank line). Output: one `{"id", "text", "entities"}` object per input, streamed in chunks so
memory stays bounded on large files. With -o the output appears only when complete (written to a
temporary file, then renamed): an error never leaves a partial file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError, UsageError

CHUNK_TEXTS = 256  # texts per runtime call: bounded memory, still enough for length bucketing


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..artifact import AGGREGATIONS
    from ..runtime import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS

    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="artifact folder made by `pyner package`")
    p.add_argument("texts", metavar="TEXT", nargs="*", help="texts to recognize (or use -i)")
    p.add_argument("-i", "--input", metavar="FILE", help="plain-text lines or JSON Lines with id/text; '-' reads stdin")
    p.add_argument("-o", "--output", metavar="FILE", help="write JSON Lines here (default: stdout)")
    p.add_argument("--aggregation", default="simple", choices=AGGREGATIONS, help="entity grouping strategy (default: simple)")
    p.add_argument("--ignore-labels", nargs="*", default=None, metavar="LABEL", help="labels to drop after grouping (default: O)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"max windows per model call (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS, help=f"max padded tokens per model call (default {DEFAULT_MAX_BATCH_TOKENS})")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--providers", nargs="*", default=None, help="execution providers, e.g. cuda cpu (default: cpu)")
    p.add_argument("--no-check", action="store_true", help="skip the checksum check on load (faster start)")
    p.add_argument("--format", choices=("jsonl", "text"), default="jsonl",
                   help="jsonl (default): one JSON object per input; text: the text, then its entities as LABEL 'word' score")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _records_from_lines(stream: io.TextIOBase, name: str) -> Iterator[tuple[object, str]]:
    """Yield (id, text) from plain-text lines or JSON Lines, validating as it goes."""
    mode = None
    leading: list[tuple[int, str]] = []  # blank lines before the first content decide nothing yet
    for lineno, line in enumerate(stream, start=1):
        body = line[:-1] if line.endswith("\n") else line
        if body.endswith("\r"):
            body = body[:-1]
        if mode is None:
            if not body.strip():
                leading.append((lineno, body))
                continue
            mode = "jsonl" if body.lstrip().startswith("{") else "text"
            if mode == "text":
                yield from leading
        if mode == "text":
            yield lineno, body
            continue
        if not body.strip():
            continue  # blank lines are allowed between JSON records
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{name}:{lineno}: expected a JSON object with a \"text\" field, got {type(obj).__name__}")
        text = obj.get("text")
        if not isinstance(text, str):
            raise InputError(f"{name}:{lineno}: \"text\" must be a string, got {type(text).__name__ if text is not None else 'nothing'}")
        yield obj.get("id", lineno), text
    if mode is None:
        yield from leading  # only blank lines: plain text, every line a document


def _chunks(records: Iterator[tuple[object, str]], n: int) -> Iterator[list[tuple[object, str]]]:
    chunk: list[tuple[object, str]] = []
    for r in records:
        chunk.append(r)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _format(fmt: str, rid: object, text: str, ents: list[dict]) -> str:
    if fmt == "jsonl":
        return json.dumps({"id": rid, "text": text, "entities": ents}, ensure_ascii=False) + "\n"
    shown = ", ".join(f"{e.get('entity_group', e.get('entity'))} {e['word']!r} {e['score']:.2f}" for e in ents)
    return f"{text}\n    {shown or '(no entities)'}\n"


def run(args: argparse.Namespace) -> int:
    from .. import runtime

    if args.input and args.texts:
        raise UsageError("give texts on the command line or -i FILE, not both")
    if not args.input and not args.texts:
        raise UsageError("nothing to recognize: give TEXT arguments or -i FILE ('-' for stdin)")
    model = runtime.load(args.artifact, threads=args.threads, providers=args.providers, check=not args.no_check)
    from ..decode import check_aggregation

    check_aggregation(args.aggregation)

    progress = None
    if args.input:
        if args.input == "-":
            stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
            name = "<stdin>"
        else:
            path = Path(args.input)
            if not path.is_file():
                raise InputError(f"input file not found: {path}")
            stream = open(path, encoding="utf-8", errors="strict", newline="")
            name = str(path)
            if not args.quiet and sys.stderr.isatty():
                from tqdm import tqdm

                progress = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="predict", file=sys.stderr)
        records = _records_from_lines(stream, name)
    else:
        stream = None
        name = "<args>"
        records = iter(list(enumerate(args.texts)))

    out_path = Path(args.output) if args.output and args.output != "-" else None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
        out = os.fdopen(fd, "w", encoding="utf-8")
    else:
        out = sys.stdout
        tmp_name = None
    count = 0
    try:
        try:
            for chunk in _chunks(records, CHUNK_TEXTS):
                entities = model.predict(
                    [t for _, t in chunk],
                    aggregation=args.aggregation,
                    ignore_labels=args.ignore_labels,
                    batch_size=args.batch_size,
                    max_batch_tokens=args.max_batch_tokens,
                )
                for (rid, text), ents in zip(chunk, entities):
                    out.write(_format(args.format, rid, text, ents))
                count += len(chunk)
                if progress is not None:
                    progress.update(sum(len(t.encode("utf-8")) + 1 for _, t in chunk))
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not valid UTF-8 ({exc.reason} at byte {exc.start} of a line)") from None
        if tmp_name is not None:
            out.close()
            os.replace(tmp_name, out_path)
            tmp_name = None
        else:
            out.flush()
    finally:
        if progress is not None:
            progress.close()
        if stream is not None and stream is not sys.stdin:
            stream.close()
        if tmp_name is not None:
            out.close()
            os.unlink(tmp_name)
    if out_path is not None and not args.quiet:
        print(f"wrote {count} result(s) to {out_path}", file=sys.stderr)
    return 0
