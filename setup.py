"""Build hook: the wheel ships the sidecar's gRPC code, generated from proto/ at build time.

All metadata is in pyproject.toml. `build_py` here also runs grpc_tools.protoc (grpcio-tools is a
build requirement, not a runtime dependency) into the build folder's `pyner/serve/_proto/`, with
the generator in pyner/serve/_protogen.py, the same one a source checkout uses on first use. It is
loaded by path: `pyner` itself is not importable while it is being built.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _protogen():
    spec = importlib.util.spec_from_file_location("_pyner_protogen", ROOT / "pyner" / "serve" / "_protogen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithProtos(build_py):
    """build_py, then the generated gRPC package into build_lib (so into the wheel)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install is a source checkout: pyner.serve.protos generates on first use
        dest = Path(self.build_lib) / "pyner" / "serve" / "_proto"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        _protogen().generate(ROOT / "proto", dest)
        self.announce(f"generated the sidecar's gRPC code into {dest}", level=2)


setup(cmdclass={"build_py": BuildPyWithProtos})
