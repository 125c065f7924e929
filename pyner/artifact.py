"""The artifact folder: the contract between the export stage, the Python runtime and the JVM.

This module reads, checks and writes the folder's bookkeeping (manifest, checksums) and provides
the atomic-write helper every producer uses. It imports nothing heavy: no onnxruntime, no torch.
See ARCHITECTURE.md ("The artifact") for the format.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError, UsageError

FORMAT = "pyner-artifact"
# The newest format this pyner reads. An artifact is written with the lowest version that describes it
# (`format_version_for`): NER artifacts stay version 1, which every earlier reader loads; the other
# tasks need version 2, which earlier readers refuse by name instead of running them as token classifiers.
FORMAT_VERSION = 2
TOKEN_CLASSIFICATION = "token-classification"
TEXT_CLASSIFICATION = "text-classification"
FEATURE_EXTRACTION = "feature-extraction"
TASKS = (TOKEN_CLASSIFICATION, TEXT_CLASSIFICATION, FEATURE_EXTRACTION)
MANIFEST = "pyner.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
SERVING_FILE = "serving.properties"
GOLDEN_FILE = "golden.json"
# Every file the manifest must list (and checksum), in a stable order.
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE, SERVING_FILE, GOLDEN_FILE)
PRECISIONS = ("fp32", "fp16", "int8")
AGGREGATIONS = ("none", "simple", "first", "average", "max")
# Per-token score tolerance recorded in the manifest (same ORT version and threads: bit-identical).
SCORE_TOLERANCE = {"fp32": 1e-5, "fp16": 2e-3, "int8": 2e-3}


def format_version_for(task: str) -> int:
    """The format version an artifact of `task` is written with (docs/tasks.md)."""
    return 1 if task == TOKEN_CLASSIFICATION else 2


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


@dataclass
class Manifest:
    """The parsed `pyner.json`; `raw` keeps every field, the attributes are the ones runtimes use."""

    raw: dict[str, Any]
    path: Path
    digest: str | None = None  # artifact_digest() of the exact bytes read (set by read_manifest)

    @property
    def task(self) -> str:
        """The artifact's task; a manifest without one (format version 1) is token classification."""
        return str(self.raw.get("task", TOKEN_CLASSIFICATION))

    @property
    def labels(self) -> list[str]:
        return list(self.raw["labels"])

    @property
    def precision(self) -> str:
        return self.raw["precision"]

    @property
    def max_length(self) -> int:
        return int(self.raw["max_length"])

    @property
    def stride(self) -> int:
        return int(self.raw["stride"])

    @property
    def inputs(self) -> list[str]:
        return list(self.raw["inputs"])

    @property
    def tokenizer(self) -> dict[str, Any]:
        return dict(self.raw.get("tokenizer", {}))

    @property
    def score_tolerance(self) -> float:
        return float(self.raw.get("golden", {}).get("score_tolerance", SCORE_TOLERANCE.get(self.precision, 1e-5)))

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return dict(self.raw.get("files", {}))


DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def artifact_digest(manifest_bytes: bytes) -> str:
    """The artifact's digest: "sha256:" + hex sha256 of the exact bytes of `pyner.json`.

    The manifest holds every file's sha256, so this one value pins the whole folder. It detects any
    change, but proves nothing about who made the artifact: compare it with a digest you obtained
    from a source you trust (`--expect-digest`). The JVM computes the same value.
    """
    return DIGEST_PREFIX + hashlib.sha256(manifest_bytes).hexdigest()


def parse_digest(value: str, *, source: str = "expect_digest") -> str:
    """Validate an expected digest ("sha256:" + 64 hex digits, any case); returns it lower-cased."""
    v = value.strip().lower() if isinstance(value, str) else ""
    if not _DIGEST_RE.fullmatch(v):
        raise UsageError(f"{source}: {value!r} is not an artifact digest (\"sha256:\" followed by 64 hex digits)",
                         hint="`pyner verify ARTIFACT_DIR` and `pyner package` print an artifact's digest")
    return v


def check_digest(manifest: Manifest, expected: str) -> None:
    """Refuse any artifact whose digest is not `expected`, naming both digests."""
    want = parse_digest(expected)
    if manifest.digest != want:
        raise ArtifactError(
            f"{manifest.path.parent}: artifact digest {manifest.digest} is not the expected {want}: a different "
            "or modified artifact",
            hint="deploy the artifact you pinned, or update the expected digest after checking where this one comes from",
        )


def _unreadable(path: Path, exc: OSError) -> ArtifactError:
    return ArtifactError(
        f"{path}: cannot read ({exc.strerror or exc}) as uid {os.geteuid()}",
        hint="make the artifact readable by this user, e.g. chmod -R a+rX on its folder",
    )


def confined_path(root: Path, name: object, mpath: Path) -> Path:
    """`root / name` for a manifest file name, refusing anything that is not a plain file name inside `root`:
    absolute paths, "..", path separators, and symlinks that resolve outside the folder."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name
            or os.path.isabs(name)):
        raise ArtifactError(f"{mpath}: file name {name!r} is not a plain file name inside the artifact folder",
                            hint="the manifest was modified: re-package the model, or restore the original artifact")
    p = root / name
    try:
        is_link = stat.S_ISLNK(os.lstat(p).st_mode)
    except FileNotFoundError:
        return p
    except PermissionError as exc:
        raise _unreadable(p, exc) from None
    if is_link:
        real = Path(os.path.realpath(p))
        if not real.is_relative_to(Path(os.path.realpath(root))):
            raise ArtifactError(f"{p}: a symlink to {real}, outside the artifact folder",
                                hint="copy the file into the folder (artifacts are self-contained)")
    return p


def read_manifest(artifact_dir: str | os.PathLike) -> Manifest:
    """Parse and validate the manifest's shape and version (not the checksums: see `check_files`)."""
    d = Path(artifact_dir)
    if not d.exists():
        raise ArtifactError(f"artifact folder not found: {d}", hint="create one with `pyner package MODEL_DIR -o DIR`")
    if not d.is_dir():
        raise ArtifactError(f"not a folder: {d} (an artifact is a folder holding {MANIFEST})")
    mpath = d / MANIFEST
    try:
        data = mpath.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ArtifactError(f"{mpath}: missing; this folder is not a pyner artifact", hint="create one with `pyner package`") from None
    except PermissionError as exc:
        raise _unreadable(mpath, exc) from None
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: not a pyner manifest (\"format\" is not \"{FORMAT}\")")
    version = raw.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{mpath}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: artifact format version {version} is newer than this pyner supports ({FORMAT_VERSION})",
            hint="upgrade pyner, or re-package the model with this version",
        )
    for key in ("labels", "precision", "max_length", "stride", "inputs", "outputs", "files"):
        if key not in raw:
            raise ArtifactError(f"{mpath}: required field {key!r} is missing")
    task = raw.get("task", TOKEN_CLASSIFICATION)
    if task not in TASKS:
        raise ArtifactError(f"{mpath}: task {task!r} is not one this pyner runs ({', '.join(TASKS)})",
                            hint="upgrade pyner, or re-package the model with this version")
    if version < format_version_for(task):
        raise ArtifactError(f"{mpath}: a {task} artifact must have format_version {format_version_for(task)}, not {version}")
    if not isinstance(raw["files"], dict):
        raise ArtifactError(f"{mpath}: \"files\" is not an object of file name -> checksum")
    missing = [f for f in REQUIRED_FILES if f not in raw["files"]]
    if missing:
        raise ArtifactError(f"{mpath}: the manifest lists no checksum for {', '.join(missing)}")
    external = raw.get("external_data")
    if external is not None and external not in raw["files"]:
        raise ArtifactError(f"{mpath}: the model's external data {external!r} has no checksum in \"files\"")
    for name in [*raw["files"], *([raw["external_data"]] if raw.get("external_data") is not None else [])]:
        confined_path(d, name, mpath)
    return Manifest(raw=raw, path=mpath, digest=artifact_digest(data))


def check_files(manifest: Manifest) -> None:
    """Check every file the manifest lists: present, same size, same sha256. Names the first bad file."""
    root = manifest.path.parent
    for name, entry in manifest.files.items():
        p = confined_path(root, name, manifest.path)
        if not p.is_file():
            raise ArtifactError(f"{p}: missing (listed in {MANIFEST})")
        size = p.stat().st_size
        if not isinstance(entry, dict):
            raise ArtifactError(f"{manifest.path}: the entry of {name!r} is not an object with sha256 and bytes")
        if "bytes" in entry and size != entry["bytes"]:
            raise ArtifactError(
                f"{p}: size {size} bytes, manifest says {entry['bytes']} (truncated or modified)",
                hint="re-package the model, or restore the file from the original artifact",
            )
        try:
            digest = sha256_file(p)
        except PermissionError as exc:
            raise _unreadable(p, exc) from None
        if digest != entry.get("sha256"):
            raise ArtifactError(
                f"{p}: sha256 {digest[:16]}... does not match the manifest ({str(entry.get('sha256'))[:16]}...): the file was modified",
                hint="re-package the model, or restore the file from the original artifact",
            )


def check_readable(manifest: Manifest) -> None:
    """Every listed file can be opened for reading (what check_files proves on the way, without hashing)."""
    root = manifest.path.parent
    for name in manifest.files:
        p = confined_path(root, name, manifest.path)
        try:
            with open(p, "rb"):
                pass
        except FileNotFoundError:
            raise ArtifactError(f"{p}: missing (listed in {MANIFEST})") from None
        except PermissionError as exc:
            raise _unreadable(p, exc) from None


def load_checked(artifact_dir: str | os.PathLike, *, checksums: bool = True, expect_digest: str | None = None) -> Manifest:
    """read_manifest, then the pinned digest (if any), then every file's checksum (`checksums=False`:
    only that each file is readable). A pinned digest always checks the files too: it vouches for
    them only through their checksums."""
    if expect_digest is not None:
        parse_digest(expect_digest)  # a malformed pin is a usage error, before any reading
    m = read_manifest(artifact_dir)
    if expect_digest is not None:
        check_digest(m, expect_digest)
    if checksums or expect_digest is not None:
        check_files(m)
    else:
        check_readable(m)
    return m


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def finalize_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Fill in format fields and every file's checksum, then write `pyner.json` into `folder`."""
    from . import __version__

    manifest = dict(manifest)
    manifest.setdefault("format", FORMAT)
    manifest.setdefault("format_version", format_version_for(manifest.get("task", TOKEN_CLASSIFICATION)))
    manifest.setdefault("pyner_version", __version__)
    manifest.setdefault("created_utc", now_utc())
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest["files"] = {n: file_entry(folder / n) for n in names}
    write_json(folder / MANIFEST, manifest)
    return manifest


def describe_path(p: Path) -> str:
    """What is at `p`, in words ("a symlink", "a FIFO", ...), for errors that refuse to replace it."""
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return "missing"
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """While inside, SIGTERM raises SystemExit(143) in the main thread, so that every `finally` and
    `atomic_dir` cleans up exactly as on SIGINT (KeyboardInterrupt). Elsewhere: a no-op."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# `atomic_dir`'s folders beside a target NAME: .NAME.tmp-PID-XXXX (being written), .NAME.old-PID (being replaced)
ATOMIC_DIR_TAIL = re.compile(r"\.(?:tmp|old)-(\d+)(?:-.*)?")


def remove_stale(target: Path, tail: re.Pattern = ATOMIC_DIR_TAIL) -> list[Path]:
    """Remove what dead writers left beside `target`: entries named `.NAME` + `tail` (its group 1 is the
    writer's pid) whose process no longer runs (a SIGKILL, a power cut); return what was removed. A live
    writer's entry, our own, and any other name are left alone (a reused pid only delays the cleanup)."""
    target = Path(target).absolute()
    prefix = f".{target.name}"
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for n in names:
        m = tail.fullmatch(n[len(prefix):]) if n.startswith(prefix) else None
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        p = target.parent / n
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success rename it to `target`.

    On any exception (SIGINT included; SIGTERM too inside `terminate_as_exit`) the temporary folder is
    removed and `target` is untouched: nothing half-written is ever left behind. Temporary folders of
    processes that died without cleaning up (SIGKILL) are removed first. With `force`, an existing
    `target` is replaced only after the new folder is complete. The folder gets the umask's mode
    (0755 by default), not mkdtemp's 0700, so other users (a container's non-root uid) can read it.
    """
    target = Path(target).absolute()
    if target.exists() and not force:
        raise ArtifactError(f"output folder exists: {target}", hint="choose another -o, or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
