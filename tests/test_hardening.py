"""Production hardening of the CLI and the artifact reader (issue 12): what `-o` may replace, file
modes, unreadable artifacts, non-UTF-8 input, confinement of manifest names, the artifact digest
and `--expect-digest`, temporary files of terminated or killed runs.

Every CLI case runs the real command in a subprocess. Cases that need an unprivileged user (the
tests run as root in CI, and root reads any file) fork, drop to uid/gid 65534 (nobody) and call the
CLI's `main()` there: the interpreter lives under /root (mode 0700), so a fresh process started as
nobody could not even run Python; the forked child already has it and every module it needs loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

NOBODY = 65534
CLI = "import sys; from pyner.cli import main; sys.exit(main())"


def run(*args, stdin: str | bytes | None = None, **kw) -> subprocess.CompletedProcess:
    text = not isinstance(stdin, bytes)
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], input=stdin, capture_output=True, text=text,
                          timeout=300, **kw)


def wait_for(condition, what: str, timeout: float = 120.0):
    """Poll `condition()` until it returns something truthy (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def art(artifact_factory):
    return artifact_factory("bert")


@pytest.fixture
def public(tmp_path):
    """A folder every user can traverse (pytest's tmp_path is under a root-only 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="pyner-hardening-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def public_copy(art: Path, public: Path, name: str = "art") -> Path:
    """A copy of the artifact readable by everyone (folder 0755, files 0644), independent of the
    modes the packager gave it."""
    dst = public / name
    shutil.copytree(art, dst)
    dst.chmod(0o755)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def as_nobody(fn) -> tuple[int, str]:
    """Run fn() (-> exit code) as uid/gid 65534 in a forked child; (exit code, its stdout+stderr)."""
    if os.geteuid() != 0:  # already unprivileged: nothing to drop
        pytest.skip("dropping privileges needs root; run as the unprivileged user directly")
    import pyner.cli.predict  # noqa: F401 - load everything the child needs while it still can read it
    import pyner.cli.verify  # noqa: F401
    import pyner.decode  # noqa: F401
    import pyner.golden  # noqa: F401
    import pyner.runtime  # noqa: F401
    import pyner.verify  # noqa: F401

    with tempfile.TemporaryFile() as log:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # pytest's capture objects do not write to fds 1/2
                sys.stderr = open(2, "w", closefd=False)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = int(fn() or 0)
            except BaseException as exc:  # noqa: BLE001 - report anything to the parent
                os.write(2, f"child raised {type(exc).__name__}: {exc}\n".encode())
                code = 71 if not isinstance(exc, SystemExit) else int(exc.code or 0)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        log.seek(0)
        return os.waitstatus_to_exitcode(status), log.read().decode(errors="replace")


def cli_as_nobody(*argv) -> tuple[int, str]:
    from pyner.cli import main

    return as_nobody(lambda: main([str(a) for a in argv]))


# ---- item 1: what -o may replace ------------------------------------------------------------------


def test_output_refuses_devices_fifos_sockets_and_folders_before_loading(tmp_path):
    """Each refusal is exit 2 naming the path, and happens before the artifact is even looked at: the
    artifact does not exist, so a run that loaded first would exit 4."""
    missing_artifact = tmp_path / "no-such-artifact"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [(Path("/dev/full"), "a character device", stat.S_ISCHR), (fifo, "a FIFO (named pipe)", stat.S_ISFIFO),
             (sock_path, "a socket", stat.S_ISSOCK), (folder, "a folder", stat.S_ISDIR)]
    try:
        for path, kind, still in cases:
            r = run("predict", missing_artifact, "Paris", "-o", path)
            assert r.returncode == 2, (path, r.stderr)
            assert f"-o {path}: {path} is {kind}, not a regular file" in r.stderr, r.stderr
            assert "artifact folder not found" not in r.stderr and "Traceback" not in r.stderr
            assert still(os.lstat(path).st_mode), f"{path} was replaced"
        assert not list(tmp_path.glob(".*.tmp")) and not list(Path("/dev").glob(".full.*"))
        # through a symlink: the target is what counts, and both are named
        link = tmp_path / "link-to-fifo"
        link.symlink_to(fifo)
        r = run("predict", missing_artifact, "Paris", "-o", link)
        assert r.returncode == 2 and f"{fifo} (where the symlink {link} points) is a FIFO" in r.stderr, r.stderr
        assert link.is_symlink() and stat.S_ISFIFO(os.stat(link).st_mode)
    finally:
        sock.close()


def test_output_whose_parent_is_a_file_is_a_usage_error_at_once(tmp_path):
    afile = tmp_path / "plain.txt"
    afile.write_text("x")
    for out in (afile / "out.jsonl", afile / "deeper" / "out.jsonl"):
        r = run("predict", tmp_path / "no-such-artifact", "Paris", "-o", out)
        assert r.returncode == 2, r.stderr
        assert f"-o {out}: {afile} is not a folder" in r.stderr
        assert "internal error" not in r.stderr
    assert afile.read_text() == "x"


def test_output_symlink_is_written_through_and_kept(art, tmp_path):
    import pyner

    want = pyner.load(art).predict(["Angela Merkel visited Paris."])
    target = tmp_path / "real" / "results.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(Path("real") / "results.jsonl")  # relative, as people make them
    r = run("predict", art, "Angela Merkel visited Paris.", "-o", link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "results.jsonl")
    assert [json.loads(x)["entities"] for x in target.read_text().splitlines()] == want
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    # a dangling symlink: its target is created
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "real" / "new.jsonl")
    r = run("predict", art, "Paris", "-o", dangling)
    assert r.returncode == 0, r.stderr
    assert dangling.is_symlink() and (tmp_path / "real" / "new.jsonl").is_file()
    assert not list(tmp_path.rglob(".*.tmp"))


# ---- item 2: modes, unreadable artifacts ----------------------------------------------------------


def test_new_output_gets_the_umask_mode_and_a_replaced_one_keeps_its_mode(art, tmp_path):
    for umask, mode in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        out = tmp_path / f"new-{umask:o}.jsonl"
        r = run("predict", art, "Paris", "-o", out, preexec_fn=lambda m=umask: os.umask(m))
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(out.stat().st_mode) == mode, (oct(umask), oct(out.stat().st_mode))
    for mode in (0o644, 0o600, 0o664):
        out = tmp_path / f"old-{mode:o}.jsonl"
        out.write_text("old\n")
        out.chmod(mode)
        r = run("predict", art, "Paris", "-o", out, preexec_fn=lambda: os.umask(0o077))
        assert r.returncode == 0, r.stderr
        assert out.read_text() != "old\n"
        assert stat.S_IMODE(out.stat().st_mode) == mode, (oct(mode), oct(out.stat().st_mode))


@pytest.mark.parametrize("name", ["pyner.json", "model.onnx", "tokenizer.json", "golden.json"])
def test_unreadable_artifact_file_is_exit_4_naming_it(art, public, name):
    a = public_copy(art, public)
    (a / name).chmod(0)
    bad = a / name

    def load(check):
        import pyner
        from pyner.errors import ArtifactError

        try:
            pyner.load(a, check=check)
        except ArtifactError as exc:
            print(f"ArtifactError: {exc}")
            return 4
        return 0

    for check in (True, False):
        code, out = as_nobody(lambda: load(check))
        assert code == 4, (check, out)
        assert f"{bad}: cannot read (Permission denied) as uid {NOBODY}" in out, out
    for argv in (("predict", a, "Paris"), ("predict", a, "Paris", "--no-check"), ("verify", a)):
        code, out = cli_as_nobody(*argv)
        assert code == 4, (argv, out)
        assert f"error: {bad}: cannot read (Permission denied)" in out and "internal error" not in out, out
        assert "hint: make the artifact readable" in out


def test_unreadable_artifact_folder_is_exit_4_not_missing(art, public):
    a = public_copy(art, public)
    a.chmod(0o700)  # root's: what every artifact folder looked like before the packager used the umask
    code, out = cli_as_nobody("predict", a, "Paris")
    assert code == 4, out
    assert f"error: {a / 'pyner.json'}: cannot read (Permission denied)" in out, out
    a.chmod(0o755)
    code, out = cli_as_nobody("predict", a, "Paris")  # the same copy, readable: works as nobody
    assert code == 0, out
    assert json.loads(out.splitlines()[0])["text"] == "Paris"


# ---- item 5: non-UTF-8 input ----------------------------------------------------------------------


def test_non_utf8_input_names_line_and_file_offset(art, tmp_path):
    good = "".join(f"Line {i} about Paris and Berlin, long enough to pass 8 KiB in total.\n" for i in range(1, 401))
    assert len(good.encode()) > 3 * 8192  # the bad byte lies far beyond one read buffer
    bad_line = "Zoë in Köln ".encode() + b"\xff" + b" rest\n"
    data = good.encode() + bad_line + b"after\n"
    offset = len(good.encode()) + len("Zoë in Köln ".encode())
    src = tmp_path / "latin.txt"
    src.write_bytes(data)
    out = tmp_path / "out.jsonl"
    r = run("predict", art, "-i", src, "-o", out)
    assert r.returncode == 3, r.stderr
    assert f"error: {src}:401: not valid UTF-8 (invalid start byte: byte 0xff at byte offset {offset} of the input)" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))
    r = run("predict", art, "-i", "-", stdin=data)
    assert r.returncode == 3
    assert f"<stdin>:401: not valid UTF-8 (invalid start byte: byte 0xff at byte offset {offset}" in r.stderr.decode()
    # a lone \r ends a line (as before), also when counting the bad byte's line
    src.write_bytes(b"Paris\rBerlin\r\nRome\n\xe9t\xe9\n")
    r = run("predict", art, "-i", src)
    assert r.returncode == 3 and f"{src}:4: not valid UTF-8" in r.stderr and "byte offset 19 " in r.stderr, r.stderr
    src.write_bytes(b"Paris\rBerlin\r\nRome\n")
    r = run("predict", art, "-i", src)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["id"], x["text"]) for x in rows] == [(1, "Paris"), (2, "Berlin"), (3, "Rome")]


# ---- item 11: confinement, digest, --expect-digest -----------------------------------------------


def _rewrite_manifest(folder: Path, edit) -> None:
    m = json.loads((folder / "pyner.json").read_text())
    edit(m)
    (folder / "pyner.json").write_text(json.dumps(m))


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.json", "sub/config.json", "..", "a\\b"])
def test_manifest_names_outside_the_folder_are_refused(art, tmp_path, name):
    a = tmp_path / "art"
    shutil.copytree(art, a)
    (tmp_path / "outside.json").write_text("{}")
    (a / "sub").mkdir()
    shutil.copy(a / "config.json", a / "sub" / "config.json")

    def add(m):
        real = Path(name) if name.startswith("/") else a / name
        m["files"][name] = {"sha256": hashlib.sha256(real.read_bytes()).hexdigest() if real.is_file() else "0" * 64,
                            "bytes": real.stat().st_size if real.is_file() else 0}

    _rewrite_manifest(a, add)
    for argv in (("verify", a), ("predict", a, "Paris"), ("predict", a, "Paris", "--no-check")):
        r = run(*argv)
        assert r.returncode == 4, (argv, r.stderr)
        assert f"file name {name!r} is not a plain file name inside the artifact folder" in r.stderr, r.stderr


def test_symlinks_resolving_outside_are_refused_inside_allowed(art, tmp_path):
    a = tmp_path / "art"
    shutil.copytree(art, a)
    outside = tmp_path / "config.json"
    shutil.copy(a / "config.json", outside)  # same bytes: the checksum alone would accept it
    (a / "config.json").unlink()
    (a / "config.json").symlink_to(outside)
    for argv in (("verify", a), ("predict", a, "Paris", "--no-check")):
        r = run(*argv)
        assert r.returncode == 4, r.stderr
        assert f"{a / 'config.json'}: a symlink to {outside}, outside the artifact folder" in r.stderr
    # a symlink to a file inside the folder is fine
    (a / "config.json").unlink()
    shutil.copy(outside, a / ".config-real.json")
    (a / "config.json").symlink_to(".config-real.json")
    r = run("verify", a)
    assert r.returncode == 0, r.stdout + r.stderr


def test_digest_printed_and_expect_digest_refuses_any_other_artifact(art, tmp_path):
    import pyner
    from pyner.artifact import artifact_digest, read_manifest
    from pyner.errors import ArtifactError, UsageError

    digest = "sha256:" + hashlib.sha256((art / "pyner.json").read_bytes()).hexdigest()  # the definition, by hand
    assert artifact_digest((art / "pyner.json").read_bytes()) == read_manifest(art).digest == digest
    r = run("verify", art)
    assert r.returncode == 0 and f"  digest: {digest}\n" in r.stdout
    other = tmp_path / "other"
    shutil.copytree(art, other)
    _rewrite_manifest(other, lambda m: m.update(created_utc="2000-01-01T00:00:00Z"))  # still a valid artifact
    other_digest = "sha256:" + hashlib.sha256((other / "pyner.json").read_bytes()).hexdigest()
    assert run("verify", other).returncode == 0

    assert pyner.load(art, expect_digest=digest.upper().replace("SHA256:", "sha256:")).labels
    with pytest.raises(ArtifactError) as e:
        pyner.load(other, expect_digest=digest, check=False)
    assert other_digest in str(e.value) and digest in str(e.value)
    with pytest.raises(UsageError):
        pyner.load(art, expect_digest="abc")

    out = tmp_path / "out.jsonl"
    for argv in (("verify", other, "--expect-digest", digest), ("predict", other, "Paris", "--expect-digest", digest, "-o", out),
                 ("predict", other, "Paris", "--no-check", "--expect-digest", digest)):
        r = run(*argv)
        assert r.returncode == 4, (argv, r.stderr)
        assert f"artifact digest {other_digest} is not the expected {digest}" in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))
    assert run("verify", art, "--expect-digest", digest).returncode == 0
    r = run("predict", art, "Paris", "--expect-digest", digest)
    assert r.returncode == 0 and json.loads(r.stdout)["text"] == "Paris"
    r = run("predict", art, "Paris", "--expect-digest", "md5:1234")
    assert r.returncode == 2 and "is not an artifact digest" in r.stderr


def test_serve_expect_digest_flag_and_env(art, tmp_path):
    digest = "sha256:" + hashlib.sha256((art / "pyner.json").read_bytes()).hexdigest()
    wrong = "sha256:" + "0" * 64
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNER_")}
    base = ("serve", art, "--port", "0", "--metrics-port", "-1", "--no-self-check")
    r = run(*base, "--expect-digest", wrong, env=env)
    assert r.returncode == 4, r.stderr
    assert f"artifact digest {digest} is not the expected {wrong}" in r.stderr
    r = run(*base, env={**env, "PYNER_EXPECT_DIGEST": wrong})
    assert r.returncode == 4 and f"is not the expected {wrong}" in r.stderr
    r = run(*base, "--expect-digest", "sha256:xyz", env=env)
    assert r.returncode == 2 and "--expect-digest: 'sha256:xyz' is not an artifact digest" in r.stderr
    # the right digest (from the environment): the server becomes ready and stops cleanly on SIGTERM
    p = subprocess.Popen([sys.executable, "-c", CLI, *map(str, base)], env={**env, "PYNER_EXPECT_DIGEST": digest},
                         stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if '"event": "ready"' in line:
                break
        else:
            raise AssertionError(f"the server exited with {p.wait()} before it was ready")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- item 12: temporary files of terminated and killed runs ---------------------------------------


def _start_writer(art: Path, out: Path) -> subprocess.Popen:
    """A predict -o OUT reading stdin, fed more than one chunk and kept waiting for the rest."""
    from pyner.cli.predict import CHUNK_TEXTS

    p = subprocess.Popen([sys.executable, "-c", CLI, "predict", str(art), "-i", "-", "-o", str(out)],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write("".join(f"Doc {i} about Paris and Berlin.\n" for i in range(CHUNK_TEXTS + 10)))
    p.stdin.flush()
    return p


def _temporaries(out: Path, pid: int | None = None) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{pid if pid is not None else '*'}.*.tmp"))


def test_sigterm_removes_the_temporary_output(art, tmp_path):
    out = tmp_path / "out.jsonl"
    p = _start_writer(art, out)
    try:
        tmp = wait_for(lambda: [t for t in _temporaries(out, p.pid) if t.stat().st_size > 0], "partial results")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 128 + signal.SIGTERM
        assert "terminated" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert tmp and not tmp[0].exists() and not _temporaries(out) and not out.exists()


def test_sigkill_leftovers_are_removed_by_the_next_run(art, tmp_path):
    out = tmp_path / "out.jsonl"
    p = _start_writer(art, out)
    try:
        wait_for(lambda: [t for t in _temporaries(out, p.pid) if t.stat().st_size > 0], "partial results")
        p.kill()
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    leftover = _temporaries(out, p.pid)
    assert len(leftover) == 1  # what SIGKILL leaves: nothing can run in the killed process
    # a live writer's temporary file (this test's own pid) and unrelated names stay
    live = tmp_path / f".out.jsonl.{os.getpid()}.abc123.tmp"
    live.write_text("in progress\n")
    unrelated = tmp_path / ".out.jsonl.notapid.tmp"
    unrelated.write_text("x")
    r = run("predict", art, "Paris", "-o", out)
    assert r.returncode == 0, r.stderr
    assert not leftover[0].exists()
    assert live.exists() and unrelated.exists()
    assert json.loads(out.read_text())["text"] == "Paris"


def test_package_prints_the_digest(checkpoint_factory, tmp_path):
    out = tmp_path / "art"
    r = run("package", checkpoint_factory("bert"), "-o", out)
    assert r.returncode == 0, r.stderr
    digest = "sha256:" + hashlib.sha256((out / "pyner.json").read_bytes()).hexdigest()
    assert f"  digest: {digest} " in r.stdout, r.stdout
