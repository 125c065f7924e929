"""The installed package, as a new user gets it (issue 12, item 15).

Builds the wheel from a copy of the repository (`pip wheel --no-deps --no-build-isolation`), checks
that it ships the generated gRPC code and names no build-only or export dependency, installs it into
a clean virtual environment that holds the runtime dependencies only, and runs `pyner predict`,
`pyner verify`, `pyner serve` with `python -m pyner.serve.healthcheck` from it as an unprivileged
user (uid/gid 65534) on an artifact that root packaged. `pyner package` there exits 6 naming
`pip install 'pyner[export]'`.

How the clean environment is made, offline: `python -m venv --without-pip` with an interpreter the
unprivileged user can run (the dev interpreter lives under /root, mode 0700, so a system Python of
the same version is used when that one is out of reach); the wheel is installed with the test's own
pip (`pip --python VENV/bin/python install --no-deps`); the runtime dependencies are the closure
of the wheel's own `Requires-Dist` (extras off), their files hard-linked (or copied) from the test's
environment into the venv's site-packages, exactly as `pip install` would lay them out. So torch,
transformers, onnx and grpcio-tools are simply absent there, which the test asserts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
ABSENT = ("torch", "transformers", "onnx", "grpc_tools", "pyner_export.package")  # the last one imports, the rest must not


def _drop_privileges():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYNER_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME="/tmp", PATH="/usr/bin:/bin", **extra)
    return env


def _runs_as_nobody(python: str) -> bool:
    try:
        r = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                           text=True, timeout=60, preexec_fn=_drop_privileges if os.geteuid() == 0 else None, env=_clean_env())
    except OSError:
        return False
    return r.returncode == 0 and r.stdout.strip() == "%d.%d" % sys.version_info[:2]


def _interpreter() -> str:
    """An interpreter of this Python version that uid 65534 can run (compiled wheels need the same one)."""
    version = "%d.%d" % sys.version_info[:2]
    candidates = [getattr(sys, "_base_executable", sys.executable), sys.executable,
                  f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for c in candidates:
        if c and Path(c).is_file() and _runs_as_nobody(c):
            return c
    pytest.fail(f"no Python {version} that uid {NOBODY} can run (tried {', '.join(candidates)}); "
                "the installed-package test needs one (e.g. the distribution's python3)")


def _requirement_closure(wheel_requires: list[str]) -> list[metadata.Distribution]:
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(wheel_requires)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo += dist.requires or []
    return list(seen.values())


def _link_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Lay out an installed distribution's files under `site`, as pip placed them (hard links when possible)."""
    for f in dist.files or []:
        if f.parts and f.parts[0] == "..":
            continue  # console scripts and data outside site-packages: not needed to import it
        src = Path(dist.locate_file(f))
        if not src.is_file():
            continue
        dst = site / f
        if dst.exists():
            continue  # listed twice (a RECORD may)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def public():
    d = Path(tempfile.mkdtemp(prefix="pyner-wheel-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(public):
    src = public / "src"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode == 0:  # a checkout: exactly its files (tracked, or new and not ignored)
        for rel in filter(None, listed.stdout.decode().split("\0")):
            if (ROOT / rel).is_file():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, src / rel)
    else:  # an exported tree
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "_proto", "__pycache__", "build", "dist",
                                                                 "*.egg-info", "target", "artifacts"))
    assert not (src / "pyner" / "serve" / "_proto").exists()  # the build must generate it
    out = public / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("pyner-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(public, wheel):
    v = public / "venv"
    subprocess.run([_interpreter(), "-m", "venv", "--without-pip", str(v)], check=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(v / "bin" / "python"), "install", "--no-deps",
                        "--no-index", "--no-compile", str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    site = Path(subprocess.run([str(v / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    requires = metadata.PathDistribution(next(site.glob("pyner-*.dist-info"))).requires or []
    for dist in _requirement_closure(requires):
        _link_distribution(dist, site)
    return v


def test_wheel_ships_generated_grpc_code_and_only_runtime_dependencies(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        stamp = z.read("pyner/serve/_proto/SOURCE_DIGEST").decode().strip()
    for module in ("pyner/v1/pyner_pb2.py", "pyner/v1/pyner_pb2_grpc.py", "inference/grpc_service_pb2.py",
                   "inference/grpc_service_pb2_grpc.py", "__init__.py", "pyner/__init__.py", "pyner/v1/__init__.py"):
        assert f"pyner/serve/_proto/{module}" in names, module
    from pyner.serve._protogen import source_digest

    assert stamp == source_digest(ROOT / "proto")  # generated from this checkout's .proto files
    runtime = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    names_only = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in runtime}
    assert {"numpy", "onnxruntime", "tokenizers", "grpcio", "protobuf"} <= names_only
    assert not names_only & {"grpcio-tools", "torch", "transformers", "onnx"}, names_only


def test_installed_wheel_predicts_verifies_and_serves_as_an_unprivileged_user(venv, public, checkpoint_factory):
    import pyner

    if os.geteuid() != 0:
        pytest.skip("the unprivileged run drops from root to uid 65534")
    env = _clean_env()
    py = str(venv / "bin" / "python")
    pyner_cli = str(venv / "bin" / "pyner")

    def as_nobody(*cmd, **kw):
        return subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300, env=env, cwd=public,
                              preexec_fn=_drop_privileges, **kw)

    # the clean environment: this wheel's pyner, no export stage dependencies, no grpcio-tools
    probe = "import importlib.util as u, pyner; print(pyner.__file__); print([m for m in %r if u.find_spec(m.split('.')[0])])" % (ABSENT,)
    r = as_nobody(py, "-c", probe)
    assert r.returncode == 0, r.stderr
    where, found = r.stdout.splitlines()
    assert where.startswith(str(venv)), where
    assert found == "['pyner_export.package']", found  # the wheel ships pyner_export; none of its heavy deps

    # an artifact root packaged, with the modes the packager gives it
    art = public / "artifact"
    r = subprocess.run([sys.executable, "-c", "import sys; from pyner.cli import main; sys.exit(main())", "package",
                        str(checkpoint_factory("bert")), "-o", str(art), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    text = "Angela Merkel met Emmanuel Macron in Berlin."
    (want,) = pyner.load(art).predict([text])

    r = as_nobody(pyner_cli, "predict", art, text)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["entities"] == want
    r = as_nobody(pyner_cli, "verify", art)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "golden: OK" in r.stdout and "digest: sha256:" in r.stdout

    # pyner package without the export extra: exit 6, naming the extra
    r = as_nobody(pyner_cli, "package", art, "-o", public / "nope")
    assert r.returncode == 6, r.stderr
    assert "pip install 'pyner[export]'" in r.stderr and "internal error" not in r.stderr

    # serve (its generated gRPC code from the wheel), then the Docker HEALTHCHECK command against it
    p = subprocess.Popen([pyner_cli, "serve", str(art), "--port", "0", "--metrics-port", "-1"], stderr=subprocess.PIPE,
                         text=True, env=env, cwd=public, preexec_fn=_drop_privileges)
    try:
        port = None
        for line in p.stderr:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") == "listening":
                port = event["port"]
            if event.get("event") == "ready":
                break
        else:
            raise AssertionError(f"pyner serve exited with {p.wait()} before it was ready")
        r = as_nobody(py, "-m", "pyner.serve.healthcheck", f"127.0.0.1:{port}")
        assert r.returncode == 0 and r.stdout.strip() == f"127.0.0.1:{port}: SERVING", r.stdout + r.stderr
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
