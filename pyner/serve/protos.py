"""Generated protobuf/gRPC code for the sidecar, built from `proto/` on first use.

Generated code is not committed. `load()` compiles `proto/pyner/v1/pyner.proto` and
`proto/inference/grpc_service.proto` with grpc_tools.protoc into the git-ignored package
`pyner/serve/_proto/` when it is missing or was built from different .proto files (a content
digest is stored beside it), then imports it. The build happens in a temporary folder under a file
lock and is renamed into place, so concurrent processes never see half-written modules.
Images and read-only installs build it once ahead of time: `python -m pyner.serve.protos`.

grpcio-tools is needed only when the code must be (re)built.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from ..errors import ArtifactError, MissingDependency

HERE = Path(__file__).resolve().parent
OUT = HERE / "_proto"
STAMP = "SOURCE_DIGEST"
PROTO_FILES = ("pyner/v1/pyner.proto", "inference/grpc_service.proto")


def proto_root() -> Path:
    """The folder holding `pyner/v1/pyner.proto`: $PYNER_PROTO_DIR, else `proto/` of the source tree."""
    env = os.environ.get("PYNER_PROTO_DIR")
    candidates = [Path(env)] if env else []
    candidates += [HERE.parent.parent / "proto", HERE / "proto"]
    for c in candidates:
        if (c / PROTO_FILES[0]).is_file():
            return c
    raise ArtifactError(
        f"the sidecar's .proto files were not found (looked in {', '.join(str(c) for c in candidates)})",
        hint="set PYNER_PROTO_DIR to the folder holding pyner/v1/pyner.proto",
    )


def source_digest(root: Path) -> str:
    h = hashlib.sha256()
    for rel in PROTO_FILES:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()


def _is_fresh(digest: str | None) -> bool:
    stamp = OUT / STAMP
    if not stamp.is_file():
        return False
    return digest is None or stamp.read_text().strip() == digest


def _compile(root: Path, digest: str) -> None:
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise MissingDependency(
            f"the sidecar's gRPC code is not built yet ({OUT}) and building it needs grpcio-tools ({exc})",
            hint="pip install grpcio-tools, or build it ahead of time with `python -m pyner.serve.protos`",
        ) from exc
    import importlib.resources

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    tmp = Path(tempfile.mkdtemp(prefix="._proto.tmp-", dir=HERE))
    try:
        args = ["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *[str(root / p) for p in PROTO_FILES]]
        if protoc.main(args) != 0:
            raise ArtifactError(f"protoc failed on {', '.join(PROTO_FILES)} in {root} (see the messages above)")
        # protoc writes absolute imports (`from pyner.v1 import pyner_pb2`), which would resolve to
        # the real `pyner` package: make the sibling imports relative.
        for grpc_file in tmp.rglob("*_pb2_grpc.py"):
            text = grpc_file.read_text()
            text = re.sub(r"^from [\w.]+ import (\w+_pb2) as ", r"from . import \1 as ", text, flags=re.M)
            grpc_file.write_text(text)
        for d in [tmp, *[p for p in tmp.rglob("*") if p.is_dir()]]:
            (d / "__init__.py").touch()
        (tmp / STAMP).write_text(digest + "\n")
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
    """Build `_proto/` if it is missing or stale. Without the .proto sources, a built copy is used as is."""
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
