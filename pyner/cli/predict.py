"""`pyner predict ARTIFACT_DIR [TEXT ...] [-i FILE] [-o FILE]`: the artifact's task, as JSON Lines, in input order.

Per input one `{"id", "text", R}` object, R being `entities` (NER), `labels` (text classification:
ranked `{"label", "score"}`, --top-k, --long-text) or `embedding` (feature extraction: the float32
vector), as docs/tasks.md describes.

Input: texts on the command line, or a file (`-` for stdin) of plain-text lines (one document per
line; id = line number) or JSON Lines objects with `text` and optional `id` (detected from the first
non-blank line). Output: one `{"id", "text", "entities"}` object per input, streamed in chunks so
memory stays bounded on large files.

With -o the output appears only when complete: it is written to a temporary file `.NAME.PID.XXXX.tmp`
beside it, then renamed over it, so an error, Ctrl-C or SIGTERM never leaves a partial file (the
temporary file is removed), and a later run writing the same file removes the leftovers of writers
that were killed outright (SIGKILL: their PID is no longer alive). -o PATH is checked before the
model is loaded: a folder, device, FIFO or socket there, or a parent that is not a folder, is a
usage error (exit 2). A symlink is written through: its target is replaced (atomically) and the link
kept. A new file gets the umask's mode (0644 by default); a replaced file keeps its mode (and its
owner, where the user may give it away).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError, UsageError

CHUNK_TEXTS = 256  # texts per runtime call: bounded memory, still enough for length bucketing


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..artifact import AGGREGATIONS
    from ..runtime import CUDA_BATCH_SIZE, CUDA_MAX_BATCH_TOKENS, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, ON_MISSING_GPU

    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="artifact folder made by `pyner package`")
    p.add_argument("texts", metavar="TEXT", nargs="*", help="texts to recognize (or use -i)")
    p.add_argument("-i", "--input", metavar="FILE", help="plain-text lines or JSON Lines with id/text; '-' reads stdin")
    p.add_argument("-o", "--output", metavar="FILE", help="write JSON Lines here (default: stdout)")
    p.add_argument("--aggregation", default="simple", choices=AGGREGATIONS, help="entity grouping strategy (default: simple)")
    p.add_argument("--ignore-labels", nargs="*", default=None, metavar="LABEL", help="labels to drop after grouping (default: O)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="text classification: labels per text, highest score first (default 1; 0: every label)")
    p.add_argument("--long-text", default=None, choices=("truncate", "average"),
                   help="text classification: truncate (default: the first window, as the pipeline with truncation) "
                        "or average (every window's logits averaged)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"max windows per model call (default {DEFAULT_BATCH_SIZE} on CPU, {CUDA_BATCH_SIZE} on CUDA)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help=f"max padded tokens per model call (default {DEFAULT_MAX_BATCH_TOKENS} on CPU, {CUDA_MAX_BATCH_TOKENS} on CUDA)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N",
                   help="where the model runs (default cpu); cuda needs onnxruntime-gpu (docs/gpu.md)")
    p.add_argument("--on-missing-gpu", default="fail", choices=ON_MISSING_GPU,
                   help="with --device cuda: fail (default) exits naming what is missing; fallback runs on the CPU "
                        "after one warning")
    p.add_argument("--no-check", action="store_true", help="skip the checksum check on load (faster start)")
    p.add_argument("--expect-digest", metavar="sha256:HEX", default=None,
                   help="refuse the artifact unless its digest (printed by `pyner verify` and `pyner package`) is this "
                        "one; checks every file's checksum even with --no-check")
    p.add_argument("--format", choices=("jsonl", "text"), default="jsonl",
                   help="jsonl (default): one JSON object per input; text: the text, then its entities as LABEL 'word' score")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def decoded_lines(binary: Iterable[bytes], name: str) -> Iterator[str]:
    """The UTF-8 lines of a binary stream, split as a text file opened with newline="" splits them
    (after \\n, \\r\\n or a lone \\r; endings kept). A byte that is not UTF-8 is an InputError naming
    its line number and its byte offset in the whole input."""
    lineno, offset = 0, 0
    for raw in binary:  # \n-terminated chunks: \n never occurs inside a UTF-8 sequence
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start]
            line = lineno + 1 + before.count(b"\r") - before.count(b"\r\n")  # a lone \r also ends a line
            raise InputError(
                f"{name}:{line}: not valid UTF-8 ({exc.reason}: byte 0x{raw[exc.start]:02x} at byte offset "
                f"{offset + exc.start} of the input)",
                hint="convert the input to UTF-8, e.g. iconv -f latin1 -t utf-8",
            ) from None
        for part in (_LONE_CR.split(text) if "\r" in text else (text,)):
            if part:
                lineno += 1
                yield part
        offset += len(raw)


def _records_from_lines(stream: Iterable[str], name: str) -> Iterator[tuple[object, str]]:
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


def _task_options(task: str, args: argparse.Namespace) -> dict:
    """The options of `Model.infer` for the artifact's task (docs/tasks.md); another task's flags are refused."""
    from ..artifact import FEATURE_EXTRACTION, TEXT_CLASSIFICATION

    sizes = {"batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens}
    ner_flags = args.aggregation != "simple" or args.ignore_labels is not None
    if task != "token-classification" and ner_flags:
        raise UsageError(f"--aggregation and --ignore-labels are for entities; {args.artifact} is a {task} model")
    if task != TEXT_CLASSIFICATION and (args.top_k is not None or args.long_text is not None):
        raise UsageError(f"--top-k and --long-text are for text classification; {args.artifact} is a {task} model")
    if task == TEXT_CLASSIFICATION:
        return {"top_k": 1 if args.top_k is None else args.top_k, "long_text": args.long_text or "truncate", **sizes}
    if task == FEATURE_EXTRACTION:
        return sizes
    return {"aggregation": args.aggregation, "ignore_labels": args.ignore_labels, **sizes}


def _format(fmt: str, rid: object, text: str, ents, task: str = "token-classification") -> str:
    from ..tasks import RESULT

    if fmt == "jsonl":
        return json.dumps({"id": rid, "text": text, RESULT[task]: ents}, ensure_ascii=False) + "\n"
    if task == "text-classification":
        return f"{text}\n    " + ", ".join(f"{r['label']} {r['score']:.3f}" for r in ents) + "\n"
    if task == "feature-extraction":
        return f"{text}\n    [{', '.join(f'{v:.4f}' for v in ents[:4])}, ...] ({len(ents)} values)\n"
    shown = ", ".join(f"{e.get('entity_group', e.get('entity'))} {e['word']!r} {e['score']:.2f}" for e in ents)
    return f"{text}\n    {shown or '(no entities)'}\n"



# ---- -o: what is there, temporary files, modes --------------------------------------------------

_REFUSED = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def resolve_output(given: str) -> tuple[Path, os.stat_result | None]:
    """Where `-o given` really writes (a symlink's final target) and what is there now (None: nothing).

    Anything but a regular file or a free name in a folder is a UsageError naming it: a folder, a
    device, a FIFO, a socket, or an ancestor that is not a folder. Nothing is created here."""
    target = Path(os.path.realpath(given))  # every symlink followed (a dangling one: its target's name)
    via = f" (where the symlink {given} points)" if target != Path(os.path.abspath(given)) else ""
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None  # a free name, or an ancestor that is not a folder (named below)
    except OSError as exc:
        raise UsageError(f"-o {given}: cannot reach {target}{via} ({exc.strerror})") from None
    if st is not None:
        for test, kind in _REFUSED:
            if test(st.st_mode):
                raise UsageError(f"-o {given}: {target}{via} is {kind}, not a regular file; refusing to replace it",
                                 hint="name a regular file, or leave out -o (or use -o -) to write to stdout")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"-o {given}: {target}{via} is not a regular file; refusing to replace it")
        return target, st
    for parent in target.parents:  # the nearest existing ancestor must be a folder
        try:
            pst = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue  # missing, or below a file: the file is named when the loop reaches it
        except OSError as exc:
            raise UsageError(f"-o {given}: cannot use {parent} ({exc.strerror})") from None
        if not stat.S_ISDIR(pst.st_mode):
            raise UsageError(f"-o {given}: {parent} is not a folder", hint="choose an output path inside a folder")
        break
    return target, None


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it (before Python 3.13's os.getumask)
    os.umask(mask)
    return mask


_TMP_TAIL = re.compile(r"\.(\d+)\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the `.NAME.PID.XXXX.tmp` files beside `target` whose writer no longer runs (a SIGKILL'd
    run's leftovers); see `pyner.artifact.remove_stale`."""
    from .. import artifact

    return artifact.remove_stale(target, _TMP_TAIL)


def open_output(target: Path, existing: os.stat_result | None):
    """(file, path) of a new temporary file beside `target`, already with the mode the result gets:
    the existing file's mode (and owner, where allowed), else the umask's."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"-o {target}: cannot write in {target.parent} ({exc.strerror})") from None
    try:
        if existing is not None:
            try:
                os.fchown(fd, existing.st_uid, existing.st_gid)
            except OSError:
                pass  # not ours to give away: the file becomes ours, with the same mode
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))
        else:
            os.fchmod(fd, 0o666 & ~_umask())
        return os.fdopen(fd, "w", encoding="utf-8"), tmp_name
    except BaseException:
        os.close(fd)
        os.unlink(tmp_name)
        raise


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (the temporary output is removed), then exit 128 + 15."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run(args: argparse.Namespace) -> int:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _run(args)  # only the main thread may install signal handlers (in-process callers)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from .. import runtime
    from ..decode import check_aggregation

    if args.input and args.texts:
        raise UsageError("give texts on the command line or -i FILE, not both")
    if not args.input and not args.texts:
        raise UsageError("nothing to recognize: give TEXT arguments or -i FILE ('-' for stdin)")
    check_aggregation(args.aggregation)
    runtime.parse_device(args.device)
    for flag in ("batch_size", "max_batch_tokens"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.expect_digest is not None:
        from ..artifact import parse_digest

        parse_digest(args.expect_digest, source="--expect-digest")
    # Everything about -o and -i is checked, and the temporary output made, before anything is loaded.
    out_path = existing = None
    if args.output and args.output != "-":
        out_path, existing = resolve_output(args.output)
    path = Path(args.input) if args.input and args.input != "-" else None
    if path is not None and not path.is_file():
        raise InputError(f"input file not found: {path}")

    progress = stream = tmp_name = None
    out = sys.stdout
    count = 0
    try:
        if out_path is not None:
            out, tmp_name = open_output(out_path, existing)
        if path is not None:
            try:
                stream = open(path, "rb")
            except OSError as exc:
                raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        model = runtime.load(args.artifact, threads=args.threads, device=args.device, on_missing_gpu=args.on_missing_gpu,
                             check=not args.no_check, expect_digest=args.expect_digest)
        if args.input:
            name = "<stdin>" if path is None else str(path)
            if path is not None and not args.quiet and sys.stderr.isatty():
                from tqdm import tqdm

                progress = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="predict", file=sys.stderr)
            records = _records_from_lines(decoded_lines(stream if path is not None else sys.stdin.buffer, name), name)
        else:
            records = iter(list(enumerate(args.texts)))
        for chunk in _chunks(records, CHUNK_TEXTS):
            entities = model.infer([t for _, t in chunk], **_task_options(model.task, args))
            for (rid, text), ents in zip(chunk, entities):
                out.write(_format(args.format, rid, text, ents, model.task))
            count += len(chunk)
            if progress is not None:
                progress.update(sum(len(t.encode("utf-8")) + 1 for _, t in chunk))
        if tmp_name is not None:
            out.close()
            os.replace(tmp_name, out_path)
            tmp_name = None
        else:
            out.flush()
    finally:
        if progress is not None:
            progress.close()
        if stream is not None:
            stream.close()
        if tmp_name is not None:
            out.close()
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
    if out_path is not None and not args.quiet:
        print(f"wrote {count} result(s) to {out_path}", file=sys.stderr)
    return 0
