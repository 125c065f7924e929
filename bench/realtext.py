"""Scenario `realtext`: WikiGold sentences and whole documents, end to end (tokenize, infer, decode).

Contenders, on the same model and the same strings, aggregation "simple":
- transformers' pipeline (PyTorch fp32, batch_size 8; documents with the artifact's stride),
  the baseline; the same pipeline with the model in bf16 (`dtype=torch.bfloat16`), a peer;
- pyner's Python runtime (`pyner.load(...).predict`, what `pyner predict` runs) on the fp32 and
  the int8 artifact, and on an int8 variant that keeps only the head float32 (the speed the
  shipped accuracy policy gives up);
- the JVM in-process (dev.pyner.PynerModel timed inside a JVM by bench/JvmBench.java), fp32 artifact;
- the sidecar (`pyner serve`) with 32 concurrent clients, one text per request, fp32 artifact.

Entity agreement: pyner fp32 against the pipeline (identical label, start, end, word; score within
1e-4), the JVM and the sidecar against pyner fp32 (the same artifact), int8 as entity F1 against
the pipeline. A breakdown of pyner's time (tokenize / ONNX Runtime / decode) is recorded too.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import data
from .common import BENCH_DIR, Context, MissingBaseline, Skip, require_baseline, timeit
from .models import resolve

NAME = "realtext"
BASELINE = "pipeline-pytorch-fp32"
QUICK_SENTENCES = 150
QUICK_DOCS = 8
SCORE_TOL = 1e-4
CONCURRENCY = 32
INT8_MIN_ENTITY_F1 = 0.85  # int8 entities against the fp32 pipeline (see the check below)


def entity_key(e: dict) -> tuple:
    return (e.get("entity_group", e.get("entity")), int(e["start"]), int(e["end"]), e["word"])


def compare(got: list[list[dict]], ref: list[list[dict]]) -> dict:
    """Texts with identical entities (label, start, end, word), worst score difference, entity F1."""
    same_texts = 0
    worst = 0.0
    tp = n_got = n_ref = 0
    first_diff = None
    for i, (g, r) in enumerate(zip(got, ref)):
        gk, rk = [entity_key(e) for e in g], [entity_key(e) for e in r]
        n_got += len(gk)
        n_ref += len(rk)
        tp += len(set(gk) & set(rk))
        if gk == rk:
            same_texts += 1
            for a, b in zip(g, r):
                worst = max(worst, abs(float(a["score"]) - float(b["score"])))
        elif first_diff is None:
            first_diff = {"text": i, "got": [list(k) for k in gk[:5]], "reference": [list(k) for k in rk[:5]]}
    p = tp / n_got if n_got else 1.0
    r_ = tp / n_ref if n_ref else 1.0
    f1 = 2 * p * r_ / (p + r_) if p + r_ else 0.0
    return {"texts": len(ref), "identical_texts": same_texts, "identical_fraction": same_texts / max(1, len(ref)),
            "max_score_diff": worst, "entities": n_got, "reference_entities": n_ref, "entity_f1": f1,
            "first_difference": first_diff}


def run(ctx: Context) -> None:
    res = ctx.results
    model_name = ctx.model
    if model_name is None:
        try:
            model = resolve("demo", ctx.cache / "models")
        except Skip as exc:
            res.note(NAME, f"demo model unavailable ({exc}); using the random bert-base")
            model = resolve("bert-base", ctx.cache / "models")
    else:
        model = resolve(model_name, ctx.cache / "models")
    limit = ctx.options.get("texts")
    sents = data.sentences(limit or (QUICK_SENTENCES if ctx.quick else None))
    docs, how = data.documents(limit or (QUICK_DOCS if ctx.quick else None))
    res.fact(NAME, "model", {"name": model.name, **model.dims, "total_params_approx": model.total_params()})
    res.fact(NAME, "documents_from", how)
    artifacts = {}
    for precision in ("fp32", "int8", "int8-head"):
        try:
            artifacts[precision] = model.artifact(precision)
        except Skip as exc:
            res.skip(NAME, f"pyner-{precision}", str(exc))
    missing = None
    for corpus, texts, unit in (("sentences", sents, "sentences/s"), ("documents", docs, "docs/s")):
        ctx.log(f"[{NAME}] {corpus}: {len(texts)} texts, model {model.name}")
        try:
            _corpus(ctx, model, artifacts, corpus, texts, unit)
        except MissingBaseline as exc:
            missing = exc
    if missing:
        raise missing


def _corpus(ctx: Context, model, artifacts: dict, corpus: str, texts: list[str], unit: str) -> None:
    res = ctx.results
    outputs: dict[str, list] = {}
    speed: dict[str, float] = {}
    stride = None
    if "fp32" in artifacts:
        stride = json.loads((artifacts["fp32"] / "pyner.json").read_text(encoding="utf-8")).get("stride")
    tokens = None

    def record(config: str, seconds: float, reps: int, *, engine: str, precision: str, extra: dict | None = None):
        tp = len(texts) / seconds
        speed[config] = tp
        ratio = tp / speed[BASELINE] if BASELINE in speed and config != BASELINE else None
        res.row(NAME, group=corpus, config=config, engine=engine, precision=precision, items=len(texts), unit=unit,
                seconds=seconds, throughput=tp, threads=ctx.threads, baseline=BASELINE, ratio=ratio, reps=reps,
                tokens=tokens, **(extra or {}))
        ctx.log(f"    {config:28s} {tp:9.2f} {unit}" + (f"  ({ratio:.2f}x pipeline)" if ratio else ""))

    # 1. transformers' pipeline (the baseline)
    missing = None
    try:
        outputs[BASELINE], secs, reps = _pipeline(ctx, model, texts, stride if corpus == "documents" else None)
        record(BASELINE, secs, reps, engine="pytorch", precision="fp32")
    except MissingBaseline as exc:
        res.skip(NAME, f"{BASELINE} ({corpus})", str(exc), missing_dependency=True)
        missing = exc
    except Skip as exc:
        res.skip(NAME, f"{BASELINE} ({corpus})", str(exc))
    gc.collect()
    # 1b. the same pipeline with the model loaded in bf16: the one-line change a user makes on a CPU with
    # bf16 matrix units (its speed, and the share of texts whose entities stay those of fp32)
    bf16 = "pipeline-pytorch-bf16"
    try:
        outputs[bf16], secs, reps = _pipeline(ctx, model, texts, stride if corpus == "documents" else None, bf16=True)
        record(bf16, secs, reps, engine="pytorch", precision="bf16")
    except Skip as exc:
        res.skip(NAME, f"{bf16} ({corpus})", str(exc))
    gc.collect()

    # 2. pyner in-process, fp32 and int8
    for precision, art in artifacts.items():
        config = f"pyner-{precision}"
        import pyner

        m = pyner.load(art, threads=ctx.threads)
        m.predict(texts[:16])
        t = timeit(lambda: outputs.__setitem__(config, m.predict(texts, aggregation="simple")),
                   min_time=ctx.seconds, min_reps=min(2, ctx.min_reps()), warmup=0, clock=ctx.clock)
        enc = m.encode(texts)
        tokens = sum(e.n_tokens for e in enc)
        record(config, t["median_s"], t["reps"], engine="onnxruntime", precision=precision.split("-")[0],
               extra={"breakdown_s": _breakdown(m, texts)})
        del m
        gc.collect()

    # 3. the JVM in-process, fp32 artifact
    if "fp32" in artifacts:
        try:
            ents, secs, reps = _jvm(ctx, artifacts["fp32"], texts)
            outputs["jvm-fp32"] = ents
            record("jvm-fp32", secs, reps, engine="onnxruntime-java", precision="fp32")
        except Skip as exc:
            res.skip(NAME, f"jvm-fp32 ({corpus})", str(exc))

    # 4. the sidecar at concurrency 32, fp32 artifact
    if "fp32" in artifacts:
        try:
            ents, secs = _sidecar(ctx, artifacts["fp32"], texts)
            outputs[f"sidecar-c{CONCURRENCY}-fp32"] = ents
            record(f"sidecar-c{CONCURRENCY}-fp32", secs, 1, engine="grpc+onnxruntime", precision="fp32",
                   extra={"concurrency": CONCURRENCY})
        except Skip as exc:
            res.skip(NAME, f"sidecar-c{CONCURRENCY}-fp32 ({corpus})", str(exc))

    # agreement
    pairs = [("pyner-fp32", BASELINE, "identical"), ("pyner-int8", BASELINE, "f1"), ("pyner-int8-head", BASELINE, "report"),
             ("pipeline-pytorch-bf16", BASELINE, "report"),
             ("jvm-fp32", "pyner-fp32", "identical"), (f"sidecar-c{CONCURRENCY}-fp32", "pyner-fp32", "identical")]
    for got, ref, kind in pairs:
        if got not in outputs or ref not in outputs:
            continue
        cmp = compare(outputs[got], outputs[ref])
        if kind == "identical":
            res.check(NAME, config=f"{got} ({corpus})", reference=ref, metric="identical_fraction",
                      value=cmp["identical_fraction"], threshold=1.0,
                      passed=cmp["identical_fraction"] == 1.0 and cmp["max_score_diff"] <= SCORE_TOL, **cmp)
        elif kind == "f1":
            # int8 against the fp32 pipeline: a sanity floor that a broken quantization falls far
            # below. Measured with the demo model: 0.925-0.937 on all of WikiGold, 0.890 on the
            # --quick slice of articles (one flipped near-tie splits an entity under "simple"); its
            # accuracy against gold labels is bench/accuracy.py's business (within 0.2 F1 point).
            res.check(NAME, config=f"{got} ({corpus})", reference=ref, metric="entity_f1", value=cmp["entity_f1"],
                      threshold=INT8_MIN_ENTITY_F1, passed=cmp["entity_f1"] >= INT8_MIN_ENTITY_F1, **cmp)
        else:  # a variant shown for its speed only: its agreement is reported, not required
            res.fact(NAME, f"agreement {got} ({corpus}) vs {ref}",
                     {k: cmp[k] for k in ("entity_f1", "identical_fraction", "entities", "reference_entities")})
    if missing:
        raise missing


def _pipeline(ctx: Context, model, texts: list[str], stride: int | None, *, bf16: bool = False):
    torch = require_baseline("torch", "transformers' pipeline baseline")
    tf = require_baseline("transformers", "transformers' pipeline baseline")
    if model.checkpoint is None:
        raise Skip("no PyTorch checkpoint for this model (an artifact folder was given)")
    torch.set_num_threads(ctx.threads)
    nlp = tf.pipeline("token-classification", model=str(model.checkpoint), tokenizer=str(model.checkpoint),
                      aggregation_strategy="simple", device="cpu", **({"dtype": torch.bfloat16} if bf16 else {}))
    kwargs = {"batch_size": 8}
    if stride is not None:
        kwargs["stride"] = stride
    nlp(texts[:8], **kwargs)
    out: list = []
    t = timeit(lambda: out.__setitem__(slice(None), nlp(texts, **kwargs)), min_time=0.0, min_reps=1, warmup=0,
               clock=ctx.clock)
    ents = [[{**e, "score": float(e["score"])} for e in r] for r in out]
    del nlp
    return ents, t["median_s"], t["reps"]


def _breakdown(m, texts: list[str]) -> dict:
    """Seconds spent tokenizing, in ONNX Runtime, and decoding, for one pass over `texts`."""
    t0 = time.perf_counter()
    enc = m.encode(texts)
    t1 = time.perf_counter()
    flat = [w for e in enc for w in e.windows]
    scores = m.forward(flat)
    t2 = time.perf_counter()
    k = 0
    for e in enc:
        n = len(e.windows)
        m.decode(e, scores[k:k + n], aggregation="simple")
        k += n
    t3 = time.perf_counter()
    return {"tokenize": t1 - t0, "onnxruntime": t2 - t1, "decode": t3 - t2}


def jvm_classpath() -> str:
    """The jvm_bridge classes (or jar) and their dependencies, from a Maven build of jvm_bridge/."""
    if os.environ.get("PYNER_JVM_CLASSPATH"):
        return os.environ["PYNER_JVM_CLASSPATH"]
    target = BENCH_DIR.parent / "jvm_bridge" / "target"
    deps = target / "classpath.txt"
    jars = sorted(p for p in target.glob("*.jar") if not p.name.endswith(("-sources.jar", "-javadoc.jar", "-tests.jar")))
    own = [str(jars[0])] if jars else ([str(target / "classes")] if (target / "classes" / "dev").is_dir() else [])
    if not own or not deps.is_file():
        raise Skip(f"the JVM bridge is not built (no classes or classpath.txt in {target}): "
                   "run `mvn -q -f jvm_bridge/pom.xml package -DskipTests`")
    return os.pathsep.join(own + [deps.read_text(encoding="utf-8").strip()])


def _jvm(ctx: Context, art: Path, texts: list[str]):
    """Time dev.pyner.PynerModel inside a JVM (bench/JvmBench.java): no Python in the measured path."""
    import shutil

    java = shutil.which("java") or (os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else None)
    if not java:
        raise Skip("no `java` found: install a JDK 17 (or set JAVA_HOME)")
    cp = jvm_classpath()
    with tempfile.TemporaryDirectory(prefix="pyner-bench-jvm-") as tmp:
        src = Path(tmp) / "texts.json"
        dst = Path(tmp) / "out.json"
        src.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        cmd = [java, "-cp", cp, str(BENCH_DIR / "JvmBench.java"), str(art), str(src), str(dst),
               str(ctx.threads), str(ctx.seconds), str(min(2, ctx.min_reps())), ctx.clock]
        env = dict(os.environ, DJL_OFFLINE="true", OPT_OUT_TRACKING="true")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0 or not dst.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise Skip(f"the JVM run failed (exit {proc.returncode}): {' | '.join(tail)}")
        out = json.loads(dst.read_text(encoding="utf-8"))
    return out["entities"], out["median_s"], out["reps"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sidecar(ctx: Context, art: Path, texts: list[str]):
    import importlib.util

    if importlib.util.find_spec("pyner.cli.serve") is None:
        raise Skip("`pyner serve` (pyner.cli.serve) is not available yet")
    from pyner.client import AsyncClient, Client

    port, mport = _free_port(), _free_port()
    cmd = [sys.executable, "-c", "import sys; from pyner.cli import main; sys.exit(main(sys.argv[1:]))",
           "serve", str(art), "--port", str(port), "--metrics-port", str(mport),
           # throughput setting on CPU: one model worker per core, one ONNX Runtime thread each
           "--threads", "1", "--model-workers", str(ctx.threads)]
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    target = f"127.0.0.1:{port}"
    try:
        with Client(target) as c:
            try:
                c.wait_ready(timeout=180)
            except TimeoutError as exc:
                log.seek(0)
                raise Skip(f"the sidecar did not become ready: {exc}; log: {log.read()[-300:]}") from exc

        async def drive(items: list[str]) -> list:
            out: list = [None] * len(items)
            nxt = iter(range(len(items)))
            async with AsyncClient(target, timeout=600) as client:
                async def worker():
                    for i in nxt:
                        ents = await client.recognize([items[i]], "simple")
                        out[i] = [e.as_pipeline_dict() for e in ents[0]]
                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return out

        asyncio.run(drive(texts[:CONCURRENCY]))  # warm-up
        import psutil

        server = psutil.Process(proc.pid)
        c0 = sum(server.cpu_times()[:2])
        t0 = time.perf_counter()
        ents = asyncio.run(drive(texts))
        secs = time.perf_counter() - t0
        if ctx.clock == "cpu":  # the server's CPU time (all its threads), not the client's
            secs = sum(server.cpu_times()[:2]) - c0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    return ents, secs
