"""Shared fixtures: tiny random checkpoints per family and artifacts packaged from them.

Both are built once per test session (packaging takes seconds per family) and cached by their
arguments, so every test file can ask for `artifact_factory("bert")` without paying twice.

    def test_something(artifact_factory):
        folder = artifact_factory("roberta")                    # fp32, guard on
        folder16 = artifact_factory("bert", precision="fp16")
        custom = artifact_factory("bert", max_length=32, stride=8)

Artifacts are shared: treat them as read-only (copy one with shutil.copytree before tampering).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from factory import FAMILIES as _FAMILIES, LABELS, make_checkpoint  # noqa: E402

FAMILIES = list(_FAMILIES)
__all__ = ["FAMILIES", "LABELS"]


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """`checkpoint_factory(family, seed=0, max_length=64) -> Path` of a tiny random checkpoint."""
    cache: dict[tuple, Path] = {}

    def make(family: str, *, seed: int = 0, max_length: int = 64, hub_tokenizer_class: bool = False) -> Path:
        key = (family, seed, max_length, hub_tokenizer_class)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"ckpt-{family}-s{seed}-L{max_length}")
            cache[key] = make_checkpoint(family, folder, seed=seed, max_length=max_length, hub_tokenizer_class=hub_tokenizer_class)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def artifact_factory(tmp_path_factory, checkpoint_factory):
    """`artifact_factory(family, precision="fp32", **package_kwargs) -> Path` of a packaged artifact.

    `package_kwargs` go to `pyner_export.package.package` (max_length, stride, opset, eval_data,
    max_f1_drop, guard); `seed` and `checkpoint_max_length` pick the source checkpoint.
    """
    cache: dict[tuple, Path] = {}

    def make(family: str, precision: str = "fp32", **package_kwargs) -> Path:
        from pyner_export.package import package

        seed = package_kwargs.pop("seed", 0)
        ckpt_len = package_kwargs.pop("checkpoint_max_length", 64)
        hub = package_kwargs.pop("hub_tokenizer_class", False)
        key = (family, precision, seed, ckpt_len, hub, tuple(sorted((k, str(v)) for k, v in package_kwargs.items())))
        if key not in cache:
            ckpt = checkpoint_factory(family, seed=seed, max_length=ckpt_len, hub_tokenizer_class=hub)
            out = tmp_path_factory.mktemp(f"art-{family}-{precision}") / "artifact"
            package(ckpt, out, precision=precision, quiet=True, **package_kwargs)
            cache[key] = out
        return cache[key]

    return make
