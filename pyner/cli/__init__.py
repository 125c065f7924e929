"""The `pyner` command line: a lazy registry of verbs, one module each (pyner.cli.<verb>).

Each verb module defines `add_arguments(parser)` and `run(args) -> int`. Only the chosen verb's
module is imported, so `pyner predict` never loads the export stage. Errors of the pyner.errors
family become one `error:` line (plus a `hint:` line) and the class's exit code; `--debug` shows
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import MissingDependency, PynerError, UsageError

# verb -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "package": ("pyner.cli.package", "turn a Hugging Face token-classification checkpoint into a verified artifact"),
    "predict": ("pyner.cli.predict", "recognize entities in texts or files with an artifact"),
    "verify": ("pyner.cli.verify", "check an artifact's checksums and golden fixtures (and the JVM with --jvm)"),
    "serve": ("pyner.cli.serve", "serve an artifact over gRPC (pyner.v1 and KServe v2) with dynamic batching"),
    "loadtest": ("pyner.cli.loadtest", "load-test a running sidecar"),
    "bench": ("pyner.cli.bench", "run the benchmarks (throughput, real text, FLOP limit, scaling)"),
}

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def print_error(exc: PynerError, file=None) -> int:
    """The one rendering of a pyner error for people: `error: <message>` and `hint: <hint>` lines on
    stderr; returns the class's exit code. Every entry point (this CLI, `python -m ...`) uses it."""
    file = file or sys.stderr
    print(f"error: {exc.message}", file=file)
    if exc.hint:
        print(f"hint: {exc.hint}", file=file)
    return exc.exit_code


def _top_parser() -> argparse.ArgumentParser:
    verbs = "\n".join(f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="pyner",
        description="PyTorch NER transformers for JVM pipelines.",
        epilog=f"commands:\n{verbs}\n\nRun `pyner COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"pyner {__version__}")
    p.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PYNER_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    verb = argv[0] if argv and not argv[0].startswith("-") else None
    if verb is None:
        top = _top_parser()
        top.parse_args(argv)  # handles --help / --version
        top.print_help(sys.stderr)
        return UsageError.exit_code
    if verb not in COMMANDS:
        return print_error(UsageError(f"unknown command {verb!r}; choose one of: {', '.join(COMMANDS)}"))
    module_name, summary = COMMANDS[verb]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return print_error(MissingDependency(f"the {verb!r} command is not available in this installation ({exc})"))
    parser = argparse.ArgumentParser(prog=f"pyner {verb}", description=summary[0].upper() + summary[1:] + ".")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    module.add_arguments(parser)
    # intermixed: options may come between positionals (`pyner predict DIR --format text "a text"`)
    args = parser.parse_intermixed_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except PynerError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        return print_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a clear line
        if debug:
            raise
        return print_error(PynerError(f"internal error: {type(exc).__name__}: {exc}",
                                      hint="re-run with --debug for the traceback, and report it"))
