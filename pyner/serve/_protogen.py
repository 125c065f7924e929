"""Generate the sidecar's protobuf/gRPC modules from `proto/` with grpc_tools.protoc.

The one generator, used at build time by setup.py (which loads this file by path, before `pyner` is
importable: standard library and grpc_tools only, no relative imports) and, in a source checkout,
by `pyner.serve.protos` on first use.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

PROTO_FILES = ("pyner/v1/pyner.proto", "inference/grpc_service.proto")
STAMP = "SOURCE_DIGEST"


def source_digest(root: Path) -> str:
    """A digest of the .proto sources, stored beside the generated code to tell when it is stale."""
    h = hashlib.sha256()
    for rel in PROTO_FILES:
        h.update(rel.encode() + b"\0" + (Path(root) / rel).read_bytes() + b"\0")
    return h.hexdigest()


def generate(root: Path, dest: Path) -> None:
    """Write the generated package (`pyner.v1.pyner_pb2`, `inference.grpc_service_pb2`, their
    `_pb2_grpc` and `.pyi` files, `__init__.py` everywhere, the source digest) into the empty folder
    `dest`. Raises ImportError without grpcio-tools, RuntimeError when protoc fails."""
    import importlib.resources

    from grpc_tools import protoc

    root, dest = Path(root), Path(dest)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = ["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", f"--python_out={dest}", f"--pyi_out={dest}",
            f"--grpc_python_out={dest}", *[str(root / p) for p in PROTO_FILES]]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(PROTO_FILES)} in {root} (see the messages above)")
    # protoc writes absolute imports (`from pyner.v1 import pyner_pb2`), which would resolve to the
    # real `pyner` package: make the sibling imports relative.
    for grpc_file in dest.rglob("*_pb2_grpc.py"):
        text = grpc_file.read_text()
        text = re.sub(r"^from [\w.]+ import (\w+_pb2) as ", r"from . import \1 as ", text, flags=re.M)
        grpc_file.write_text(text)
    for d in [dest, *[p for p in dest.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    (dest / STAMP).write_text(source_digest(root) + "\n")
