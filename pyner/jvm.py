"""The Java library (jvm_bridge) inside this Python process, through pyjnius, and Python-vs-JVM parity.

    from pyner.jvm import JvmModel, jvm_parity, format_parity
    with JvmModel("artifacts/demo") as m:
        m.predict(["Angela Merkel visited Paris."], aggregation="first")
    print(format_parity(jvm_parity("artifacts/demo")))

Every task of docs/tasks.md: `JvmModel.predict` (token classification), `JvmModel.classify` (text
classification) and `JvmModel.embed` (feature extraction) return what pyner.Model's methods return
(embeddings as lists of floats); `jvm_parity` compares the task's golden schema.

The JVM is started once per process with the class path of the built jar
(jvm_bridge/target/pyner-jvm-<version>.jar plus jvm_bridge/target/classpath.txt, both written by
`make jvm`; PYNER_JVM_CLASSPATH overrides). Texts cross to Java as UTF-8 JSON bytes, never as
Python str: pyjnius corrupts characters outside the Basic Multilingual Plane (emoji, flags) when it
converts str to java.lang.String. Results come back as JSON with the Python runtime's keys.

No torch, no transformers: this module is on the runtime path.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import ArtifactError, InputError, MissingDependency, PynerError, UsageError
from .golden import Comparison, compare_golden, read_golden

JAR_NAME = f"pyner-jvm-{__version__}.jar"  # the Maven build's jar; jvm_bridge/pom.xml carries the same version
BUILD_HINT = "build the Java library with `make jvm` (or: cd jvm_bridge && mvn -B -q install -DskipTests)"
JDK_HINT = "install a JDK 17+ and set JAVA_HOME (e.g. export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64)"

_lock = threading.Lock()
_bridge = None  # the Java class dev.pyner.bridge.PythonBridge once the JVM runs


def default_target() -> Path:
    """jvm_bridge/target of this checkout."""
    return Path(__file__).resolve().parent.parent / "jvm_bridge" / "target"


def find_classpath(target: str | os.PathLike | None = None) -> list[str]:
    """The jar and its dependencies; MissingDependency naming how to build them when absent."""
    env = os.environ.get("PYNER_JVM_CLASSPATH")
    if env and target is None:
        entries = [p for p in env.split(os.pathsep) if p]
        missing = [p for p in entries if not Path(p).exists()]
        if missing:
            raise MissingDependency(f"PYNER_JVM_CLASSPATH names missing files: {', '.join(missing[:3])}", hint=BUILD_HINT)
        return entries
    target = Path(target) if target is not None else default_target()
    jar = target / JAR_NAME
    cp_file = target / "classpath.txt"
    if not jar.is_file():
        raise MissingDependency(f"the pyner JVM library is not built: {jar} not found", hint=BUILD_HINT)
    if not cp_file.is_file():
        raise MissingDependency(f"{cp_file} not found (written by the Maven build next to the jar)", hint=BUILD_HINT)
    deps = [p for p in cp_file.read_text(encoding="utf-8").strip().split(os.pathsep) if p]
    missing = [p for p in deps if not Path(p).exists()]
    if missing:
        raise MissingDependency(f"dependencies listed in {cp_file} are missing from the Maven repository: {missing[0]}",
                                hint=BUILD_HINT)
    return [str(jar)] + deps


def start_jvm(classpath: Sequence[str] | None = None):
    """Start the JVM (once per process) and return the bridge class. Clear errors when the jar,
    pyjnius or a JDK is missing."""
    global _bridge
    with _lock:
        if _bridge is not None:
            return _bridge
        cp = list(classpath) if classpath is not None else find_classpath()
        # DJL must stay offline (no telemetry, no downloads); the Java side sets these too.
        os.environ.setdefault("DJL_OFFLINE", "true")
        os.environ.setdefault("OPT_OUT_TRACKING", "true")
        try:
            import jnius_config
        except ImportError as exc:
            raise MissingDependency(f"pyner.jvm needs pyjnius, which is not installed ({exc})",
                                    hint="pip install pyjnius, and " + JDK_HINT) from exc
        if not jnius_config.vm_running:
            jnius_config.set_classpath(*cp)
            jnius_config.add_options("-Djava.awt.headless=true", "-Dai.djl.offline=true", "-DOPT_OUT_TRACKING=true",
                                     "-DDJL_OFFLINE=true", "-Dslf4j.internal.verbosity=ERROR")
        try:
            import jnius
        except Exception as exc:  # pyjnius raises several types when no JVM can be found or started
            raise MissingDependency(f"cannot start a Java VM through pyjnius ({exc})", hint=JDK_HINT) from exc
        try:
            _bridge = jnius.autoclass("dev.pyner.bridge.PythonBridge")
        except Exception as exc:
            raise MissingDependency(
                f"the running JVM cannot load dev.pyner.bridge.PythonBridge ({exc}); the JVM was started "
                "earlier in this process without the pyner jar on its class path", hint=BUILD_HINT) from exc
        return _bridge


def _java_error(exc: Exception, what: str) -> PynerError:
    """Map a Java exception (pyjnius JavaException) to the pyner error family."""
    cls = getattr(exc, "classname", "") or ""
    msg = getattr(exc, "innermessage", None) or str(exc)
    if cls.endswith("PynerUsageException"):  # another task's output asked for (dev.pyner.Task.require)
        return UsageError(msg)
    if cls.endswith("PynerException"):
        return ArtifactError(msg)
    if cls.endswith("IllegalArgumentException"):
        return InputError(msg)
    if cls.endswith("IllegalStateException"):
        return UsageError(msg)
    return PynerError(f"{what} failed in the JVM: {cls}: {msg}")


def _texts_bytes(texts: Any) -> bytes:
    """Texts as UTF-8 JSON bytes for Java; a lone surrogate (not encodable) is an InputError naming it."""
    from .runtime import check_text_types

    items = check_text_types(texts)
    for i, t in enumerate(items):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"texts[{i}] has a lone surrogate {t[exc.start]!r} at index {exc.start}: it is not valid Unicode "
                "and cannot be passed to Java (nor tokenized)",
                hint="fix the text's encoding, e.g. text.encode('utf-8', 'replace').decode('utf-8')",
            ) from None
    return json.dumps(items, ensure_ascii=False).encode("utf-8")


def _drop_utf16(entities: list[dict]) -> list[dict]:
    for e in entities:
        e.pop("start_utf16", None)
        e.pop("end_utf16", None)
    return entities


class JvmModel:
    """An artifact loaded by the Java library (dev.pyner.PynerModel) in this process."""

    def __init__(self, artifact_dir: str | os.PathLike, *, threads: int | None = None, self_check: bool = True):
        if threads is not None and threads < 0:
            raise UsageError(f"threads must be >= 0, got {threads}")
        bridge = start_jvm()
        self.folder = Path(artifact_dir)
        self.threads = threads
        try:
            self._model = bridge.load(str(self.folder.absolute()).encode("utf-8"), int(threads or 0), bool(self_check))
        except Exception as exc:
            raise _java_error(exc, "loading the artifact") from None
        self._bridge = bridge
        try:
            info = json.loads(bridge.task(self._model))
        except Exception as exc:  # a jar built before the tasks (docs/tasks.md) has no PythonBridge.task
            self._model.close()
            raise MissingDependency(f"the pyner JVM library on the class path predates text classification and "
                                    f"embeddings ({exc})", hint=BUILD_HINT) from None
        self.task: str = info["task"]
        self.labels: list[str] = list(info["labels"])
        self.embedding_dim: int = int(info.get("embedding_dim") or 0)

    def predict(self, texts: Sequence[str], aggregation: str = "simple", *, utf16: bool = False) -> list[list[dict]]:
        """Entities per text, as pyner.Model.predict returns them (utf16=True adds start_utf16/end_utf16)."""
        from .decode import check_aggregation

        aggregation = check_aggregation(aggregation)
        data = _texts_bytes(texts)
        try:
            out = json.loads(self._bridge.predict(self._model, data, aggregation))
        except Exception as exc:
            raise _java_error(exc, "predict") from None
        return out if utf16 else [_drop_utf16(es) for es in out]

    def classify(self, texts: Sequence[str], top_k: int | None = 1, long_text: str = "truncate") -> list[list[dict]]:
        """Text classification, as pyner.Model.classify: per text its labels ranked by score ({"label", "score"}),
        the first `top_k` (0 or None: all); long_text "truncate" (the first window) or "average" (every window,
        logits averaged)."""
        from . import tasks

        long_text = tasks.check_long_text(long_text)
        k = tasks.check_top_k(top_k, max(len(self.labels), 1))
        data = _texts_bytes(texts)
        try:
            return json.loads(self._bridge.classify(self._model, data, int(k), long_text))
        except Exception as exc:
            raise _java_error(exc, "classify") from None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Sentence embeddings, as pyner.Model.embed (one float32 vector per text, as a list of floats)."""
        data = _texts_bytes(texts)
        try:
            return json.loads(self._bridge.embed(self._model, data))
        except Exception as exc:
            raise _java_error(exc, "embed") from None

    def infer(self, texts: Sequence[str], **options: Any) -> list[Any]:
        """The artifact's task on texts: entities, ranked labels or embeddings (as pyner.Model.infer)."""
        if self.task == "text-classification":
            return self.classify(texts, **options)
        if self.task == "feature-extraction":
            return self.embed(texts, **options)
        return self.predict(texts, **options)

    def analyze(self, texts: Sequence[str]) -> list[dict]:
        """Per text, the golden schema of the artifact's task: NER windows (ids, type ids, offsets, special
        mask, labels, float32 scores) and entities per strategy; text classification every window with its
        logits and scores, and the full ranked labels per long_text mode; feature extraction the first
        window's tokens and the embedding."""
        data = _texts_bytes(texts)
        try:
            out = json.loads(self._bridge.analyze(self._model, data))
        except Exception as exc:
            raise _java_error(exc, "analyze") from None
        for t in out:
            for es in t.get("entities", {}).values():
                _drop_utf16(es)
        return out

    def versions(self) -> dict[str, str]:
        return json.loads(self._bridge.versions(self._model))

    def close(self) -> None:
        if getattr(self, "_model", None) is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> "JvmModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- parity ----------------------------------------------------------------------------------------

@dataclass
class ParityReport(Comparison):
    """Python runtime vs JVM on the same artifact and texts (the golden comparison, plus versions)."""

    artifact: str = ""
    python_ort: str = ""
    jvm_ort: str = ""
    threads: int | None = None
    task: str = "token-classification"
    bit_identical_texts: int = 0  # texts whose every value (scores, logits, embedding) is equal bit for bit


def jvm_parity(artifact_dir: str | os.PathLike, texts: Sequence[str] | None = None, *, threads: int | None = None,
               include_golden: bool = True, jvm: JvmModel | None = None) -> ParityReport:
    """Run the Python runtime and the JVM on the golden texts (and `texts`) and compare, in the golden
    schema of the artifact's task (`pyner.check.golden_cases`; `pyner.golden.compare_golden`, the
    comparison `pyner verify` uses): token ids, type ids, offsets, special masks, and per task the
    per-token labels, scores and entities of every strategy (token classification), every window's
    logits and scores and the full ranked labels of both long_text modes (text classification), or
    the embedding (feature extraction).

    Token-level values, labels, ranking, spans and words must be identical; scores, logits and
    embeddings within the manifest's tolerance (and bit-identical when both sides run the same ONNX
    Runtime version and threads: `bit_identical_texts` counts the texts equal bit for bit).
    """
    import onnxruntime

    from . import runtime
    from .check import golden_cases

    py = runtime.load(artifact_dir, threads=threads)
    all_texts: list[str] = []
    if include_golden or texts is None:
        all_texts += [c["text"] for c in read_golden(artifact_dir)["cases"]]
    if texts is not None:
        all_texts += runtime.check_text_types(texts)
    own = jvm is None
    jvm = jvm or JvmModel(artifact_dir, threads=threads, self_check=False)
    try:
        report = ParityReport(py.manifest.score_tolerance, ("Python", "JVM"), artifact=str(artifact_dir),
                              python_ort=onnxruntime.__version__, jvm_ort=jvm.versions()["onnxruntime"], threads=threads,
                              task=py.manifest.task)
        if jvm.task != py.manifest.task:
            report.add(f"the JVM reads the artifact's task as {jvm.task}, Python as {py.manifest.task}")
            return report
        if all_texts:
            ids = [f"text {i}" for i in range(len(all_texts))]
            ours = golden_cases(py, list(zip(ids, all_texts)))
            theirs = jvm.analyze(all_texts)
            compare_golden(ours, theirs, report.tolerance, where=ids, comparison=report)
            for where, want, got in zip(ids, ours, theirs):  # the same comparison with tolerance 0: bit for bit
                exact = Comparison(0.0, ("Python", "JVM"))
                exact.compare_case(where, got, want)
                report.bit_identical_texts += exact.ok
        return report
    finally:
        if own:
            jvm.close()


def format_parity(report: ParityReport) -> str:
    """The parity report for people: counts, verdict, worst score difference, versions, first differences."""
    r = report
    same_ort = r.python_ort == r.jvm_ort
    if r.bit_identical:
        verdict = "IDENTICAL (scores bit for bit)"
    elif r.ok:
        verdict = f"OK within tolerance {r.tolerance:g}"
    else:
        verdict = f"DIFFERENT: {r.total_differences} difference(s)"
    compared = {
        "text-classification": "ranked labels (truncate and average), logits and scores",
        "feature-extraction": "embeddings",
    }.get(r.task, f"{r.entities} entities (5 strategies)")
    lines = [
        f"JVM parity: {r.artifact}" + ("" if r.task == "token-classification" else f" ({r.task})"),
        f"  {verdict}",
        f"  compared: {r.texts} texts, {r.windows} windows, {r.tokens} tokens, {compared}",
        f"  identical texts: {r.identical_texts}/{r.texts} (bit for bit: {r.bit_identical_texts}/{r.texts}); "
        f"worst score difference {r.max_score_diff:.3g} (tolerance {r.tolerance:g})",
        f"  onnxruntime: Python {r.python_ort}, JVM {r.jvm_ort}"
        + ("" if same_ort else "  (versions differ: scores can differ in the last bits, hence the tolerance)"),
        f"  threads: {r.threads if r.threads is not None else 'default'} on both sides",
    ]
    lines += [f"  DIFF {d}" for d in r.differences]
    if r.total_differences > len(r.differences):
        lines.append(f"  ... and {r.total_differences - len(r.differences)} more")
    return "\n".join(lines)


def throughput(artifact_dir: str | os.PathLike, texts: Sequence[str], *, threads: int | None = None,
               repeats: int = 3, aggregation: str = "simple") -> dict[str, Any]:
    """Texts per second of the Python runtime and of the JVM in this process, same artifact, texts
    and threads, measured alternately in one run (best of `repeats`); the ratio is JVM / Python."""
    from . import runtime

    texts = list(texts)
    py = runtime.load(artifact_dir, threads=threads)
    with JvmModel(artifact_dir, threads=threads, self_check=False) as jvm:
        py.predict(texts[:8], aggregation=aggregation)  # warm-up
        jvm.predict(texts[:8], aggregation=aggregation)
        best_py = best_jvm = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            py.predict(texts, aggregation=aggregation)
            best_py = min(best_py, time.perf_counter() - t)
            t = time.perf_counter()
            jvm.predict(texts, aggregation=aggregation)
            best_jvm = min(best_jvm, time.perf_counter() - t)
    return {"texts": len(texts), "python_texts_per_s": len(texts) / best_py, "jvm_texts_per_s": len(texts) / best_jvm,
            "ratio_jvm_over_python": best_py / best_jvm, "threads": threads, "repeats": repeats}


__all__ = ["JvmModel", "ParityReport", "jvm_parity", "format_parity", "find_classpath", "start_jvm", "throughput"]
