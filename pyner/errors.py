"""One error family for pyner, mapped once to CLI exit codes and once to gRPC status codes.

Every error carries a one-line message that names the problem (the file, the line, the text index)
and, where there is one, a hint saying what to do. The CLI prints ``error: <message>`` and
``hint: <hint>`` and exits with the class's ``exit_code``; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class PynerError(Exception):
    """Base class: a failure pyner understands and can explain in one line."""

    exit_code = 1
    grpc_code = "INTERNAL"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PynerError, ValueError):
    """Bad flags or a bad combination of options."""

    exit_code = 2
    grpc_code = "INVALID_ARGUMENT"


class InputError(PynerError, ValueError):
    """Bad user input: a checkpoint, an input file, a text."""

    exit_code = 3
    grpc_code = "INVALID_ARGUMENT"


class ArtifactError(PynerError):
    """A missing, tampered, truncated or too-new artifact, or a verify mismatch."""

    exit_code = 4
    grpc_code = "FAILED_PRECONDITION"


class GuardError(PynerError):
    """The accuracy guard refused to write an artifact."""

    exit_code = 5
    grpc_code = "FAILED_PRECONDITION"


class MissingDependency(PynerError):
    """An optional dependency is not installed; the message names what to install."""

    exit_code = 6
    grpc_code = "UNIMPLEMENTED"


class Overloaded(PynerError):
    """The server's queue is full."""

    exit_code = 7
    grpc_code = "RESOURCE_EXHAUSTED"


# The sidecar's refusals (pyner/serve/). Only a server raises them, so they keep the CLI's generic
# exit code 1; what a caller sees is the gRPC status.


class Unavailable(PynerError):
    """The server is starting (model not loaded/self-checked yet) or draining for shutdown: retry elsewhere."""

    exit_code = 1
    grpc_code = "UNAVAILABLE"


class DeadlineExpired(PynerError):
    """The request's deadline passed before its texts reached the model."""

    exit_code = 1
    grpc_code = "DEADLINE_EXCEEDED"


class NotFound(PynerError):
    """A model name or version this server does not serve (KServe v2)."""

    exit_code = 1
    grpc_code = "NOT_FOUND"


def require(module: str, *, extra: str, purpose: str):
    """Import an optional dependency or raise MissingDependency naming how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised in runtime-only installs
        raise MissingDependency(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which is not installed ({exc})",
            hint=f"pip install 'pyner[{extra}]'",
        ) from exc
