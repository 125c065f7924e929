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
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError

FORMAT = "pyner-artifact"
FORMAT_VERSION = 1
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


def read_manifest(artifact_dir: str | os.PathLike) -> Manifest:
    """Parse and validate the manifest's shape and version (not the checksums: see `check_files`)."""
    d = Path(artifact_dir)
    if not d.exists():
        raise ArtifactError(f"artifact folder not found: {d}", hint="create one with `pyner package MODEL_DIR -o DIR`")
    if not d.is_dir():
        raise ArtifactError(f"not a folder: {d} (an artifact is a folder holding {MANIFEST})")
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{mpath}: missing; this folder is not a pyner artifact", hint="create one with `pyner package`")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
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
    missing = [f for f in REQUIRED_FILES if f not in raw["files"]]
    if missing:
        raise ArtifactError(f"{mpath}: the manifest lists no checksum for {', '.join(missing)}")
    return Manifest(raw=raw, path=mpath)


def check_files(manifest: Manifest) -> None:
    """Check every file the manifest lists: present, same size, same sha256. Names the first bad file."""
    root = manifest.path.parent
    for name, entry in manifest.files.items():
        p = root / name
        if not p.is_file():
            raise ArtifactError(f"{p}: missing (listed in {MANIFEST})")
        size = p.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise ArtifactError(
                f"{p}: size {size} bytes, manifest says {entry['bytes']} (truncated or modified)",
                hint="re-package the model, or restore the file from the original artifact",
            )
        digest = sha256_file(p)
        if digest != entry.get("sha256"):
            raise ArtifactError(
                f"{p}: sha256 {digest[:16]}... does not match the manifest ({str(entry.get('sha256'))[:16]}...): the file was modified",
                hint="re-package the model, or restore the file from the original artifact",
            )


def load_checked(artifact_dir: str | os.PathLike, *, checksums: bool = True) -> Manifest:
    m = read_manifest(artifact_dir)
    if checksums:
        check_files(m)
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
    manifest.setdefault("format_version", FORMAT_VERSION)
    manifest.setdefault("pyner_version", __version__)
    manifest.setdefault("created_utc", now_utc())
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest["files"] = {n: file_entry(folder / n) for n in names}
    write_json(folder / MANIFEST, manifest)
    return manifest


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success rename it to `target`.

    On any exception the temporary folder is removed and `target` is untouched: nothing
    half-written is ever left behind. With `force`, an existing `target` is replaced only after the
    new folder is complete.
    """
    target = Path(target).absolute()
    if target.exists() and not force:
        raise ArtifactError(f"output folder exists: {target}", hint="choose another -o, or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

