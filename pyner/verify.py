"""`pyner verify`: an artifact is complete, unmodified, and reproduces its golden fixtures here."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import artifact as _art
from .errors import ArtifactError
from .golden import Comparison, read_golden


@dataclass
class VerifyReport:
    manifest: _art.Manifest
    comparison: Comparison
    onnxruntime_version: str

    @property
    def ok(self) -> bool:
        return self.comparison.ok

    def lines(self) -> list[str]:
        m = self.manifest.raw
        out = [
            f"artifact: {self.manifest.path.parent}",
            f"  format {m['format_version']}, pyner {m.get('pyner_version')}, {m.get('model_type')} {m['precision']}, "
            f"{len(m['labels'])} labels ({m.get('label_scheme')}), max_length {m['max_length']}, stride {m['stride']}",
            f"  checksums: {len(m['files'])} files OK",
            f"  digest: {self.manifest.digest}",
            f"  onnxruntime: packaged with {m.get('onnxruntime_version')}, running {self.onnxruntime_version}",
            f"  golden: {self.comparison.summary()}",
        ]
        out += [f"  DIFF {d}" for d in self.comparison.differences]
        if self.comparison.total_differences > len(self.comparison.differences):
            out.append(f"  ... and {self.comparison.total_differences - len(self.comparison.differences)} more")
        return out


def verify(artifact_dir: str | os.PathLike, *, threads: int | None = None, expect_digest: str | None = None) -> VerifyReport:
    """Check format, every checksum, then re-run the golden fixtures. Raises ArtifactError for a
    missing/tampered/newer artifact; golden differences are returned in the report (not raised)."""
    import onnxruntime

    from .check import compare_model
    from .runtime import Model

    manifest = _art.load_checked(artifact_dir, checksums=True, expect_digest=expect_digest)
    model = Model(manifest.path.parent, manifest, threads=threads)
    golden = read_golden(manifest.path.parent)
    if not golden.get("cases"):
        raise ArtifactError(f"{manifest.path.parent / _art.GOLDEN_FILE}: holds no golden cases")
    return VerifyReport(manifest, compare_model(model, golden), onnxruntime.__version__)
