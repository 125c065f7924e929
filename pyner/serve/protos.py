"""Generated protobuf/gRPC code for the sidecar: shipped in the wheel, built from `proto/` in a checkout.

Generated code is not committed. Building the wheel runs the generator (`pyner/serve/_protogen.py`,
called by setup.py's build_py, grpcio-tools being a build requirement), so an installed pyner
carries `pyner/serve/_proto/` and only imports it: grpcio-tools is not a runtime dependency. In a
source checkout (a `proto/` folder beside `pyner/`) or with $PYNER_PROTO_DIR set, `_proto/` is
(re)generated on first use when it is missing or was built from different .proto files (a content
digest is stored beside it); the build happens in a temporary folder under a file lock and is
renamed into place, so concurrent processes never see half-written modules. Images built from the
source tree generate it ahead of time: `python -m pyner.serve.protos`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from ..errors import ArtifactError, MissingDependency
from ._protogen import PROTO_FILES, STAMP, generate, source_digest

HERE = Path(__file__).resolve().parent
OUT = HERE / "_proto"
__all__ = ["PROTO_FILES", "STAMP", "ensure_built", "kserve", "proto_root", "pyner_v1", "source_digest"]


def proto_root() -> Path:
    """The folder holding `pyner/v1/pyner.proto`: $PYNER_PROTO_DIR, else `proto/` beside the `pyner/`
    package folder (a source checkout, or the Docker build stage's copy of one)."""
    env = os.environ.get("PYNER_PROTO_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(HERE.parent.parent / "proto")
    for c in candidates:
        if (c / PROTO_FILES[0]).is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise ArtifactError(
        f"the sidecar's generated gRPC code ({OUT}) is missing and its .proto files were not found (looked in {looked})",
        hint="reinstall pyner from its wheel (which ships the generated code), or set PYNER_PROTO_DIR to the folder "
             "holding pyner/v1/pyner.proto",
    )


def _is_fresh(digest: str | None) -> bool:
    stamp = OUT / STAMP
    if not stamp.is_file():
        return False
    return digest is None or stamp.read_text().strip() == digest


def _compile(root: Path, digest: str) -> None:
    try:
        import grpc_tools  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(
            f"the sidecar's gRPC code is not built yet ({OUT}) and building it needs grpcio-tools ({exc})",
            hint="pip install grpcio-tools, or build it ahead of time with `python -m pyner.serve.protos`",
        ) from exc
    tmp = Path(tempfile.mkdtemp(prefix="._proto.tmp-", dir=HERE))
    try:
        try:
            generate(root, tmp)
        except RuntimeError as exc:
            raise ArtifactError(str(exc)) from None
        if (tmp / STAMP).read_text().strip() != digest:
            raise ArtifactError(f"the .proto files in {root} changed while the gRPC code was generated; run again")
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the code from other users of a shared checkout
        if OUT.exists():
            old = HERE / f"._proto.old-{os.getpid()}"
            os.replace(OUT, old)
            os.replace(tmp, OUT)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, OUT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_built() -> None:
    """Build `_proto/` if it is missing or stale. Without the .proto sources (an installed wheel), the
    shipped copy is used as is."""
    try:
        root = proto_root()
    except ArtifactError:
        if _is_fresh(None):
            return  # an image that ships only the generated code
        raise
    digest = source_digest(root)
    if _is_fresh(digest):
        return
    if not os.access(HERE, os.W_OK):
        raise ArtifactError(
            f"the sidecar's gRPC code in {OUT} is missing or stale and {HERE} is not writable",
            hint="run `python -m pyner.serve.protos` once as the user who installed pyner",
        )
    import fcntl

    lock_path = Path(tempfile.gettempdir()) / f"pyner-proto-{hashlib.sha256(str(HERE).encode()).hexdigest()[:16]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_fresh(digest):  # another process may have built it while we waited
            _compile(root, digest)
    importlib.invalidate_caches()


def _import(name: str) -> tuple[ModuleType, ModuleType]:
    ensure_built()
    base = f"{__package__}._proto.{name}"
    return importlib.import_module(base + "_pb2"), importlib.import_module(base + "_pb2_grpc")


def pyner_v1() -> tuple[ModuleType, ModuleType]:
    """(pyner_pb2, pyner_pb2_grpc) of package pyner.v1."""
    return _import("pyner.v1.pyner")


def kserve() -> tuple[ModuleType, ModuleType]:
    """(grpc_service_pb2, grpc_service_pb2_grpc) of package `inference` (KServe v2).

    Imported only by the server: its message names are registered in protobuf's default pool, so a
    process that also imports tritonclient.grpc (which registers the same names) cannot load both.
    """
    return _import("inference.grpc_service")


if __name__ == "__main__":
    ensure_built()
    print(f"built {OUT}", file=sys.stderr)
