"""Scenario `worstcase`: the seed's worst case, throughput against batch size at 256 tokens.

Every sequence is a full 256 tokens (no padding), the same random ids for every configuration.
Configurations: PyTorch eager fp32 (the baseline), ONNX Runtime on the plain export, on the
optimized pyner fp32 artifact and on the int8 artifact (the shipped accuracy policy, and the
head-only policy as the speed ceiling of int8); the peers a user would pick on a CPU with bf16
matrix units: PyTorch with bf16 weights and under bf16 autocast, OpenVINO on the plain export at
its default precision (bf16 where the CPU has it) and at f32 (`pip install 'pyner[bench]'`); with a CUDA device also PyTorch fp32 and
fp16 and ONNX Runtime fp16 with IO binding. Before timing, every configuration's logits are
compared with the baseline's on the same inputs (the agreement checks).
"""

from __future__ import annotations

import gc

from . import engines
from .common import Context, MissingBaseline, Skip, gpu_info
from .models import resolve

NAME = "worstcase"
SEQ_LEN = 256
FULL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
QUICK_BATCHES = (1, 4, 16)
CHECK_ROWS = 4
# (config, engine, precision, device, source): source is "checkpoint", "plain" or an artifact precision
CPU_CONFIGS = (
    ("pytorch-fp32", "pytorch", "fp32", "cpu", "checkpoint"),
    ("ort-fp32-plain", "onnxruntime", "fp32", "cpu", "plain"),
    ("ort-fp32-optimized", "onnxruntime", "fp32", "cpu", "fp32"),
    ("ort-int8", "onnxruntime", "int8", "cpu", "int8"),
    ("ort-int8-head-only", "onnxruntime", "int8", "cpu", "int8-head"),
    # the peers a user would pick on a CPU with bf16 matrix units (issue 18)
    ("pytorch-bf16", "pytorch", "bf16", "cpu", "checkpoint"),
    ("pytorch-bf16-autocast", "pytorch", "bf16-autocast", "cpu", "checkpoint"),
    ("openvino-default", "openvino", "default", "cpu", "plain"),
    ("openvino-fp32", "openvino", "fp32", "cpu", "plain"),
)
GPU_CONFIGS = (
    ("pytorch-fp32-cuda", "pytorch", "fp32", "cuda", "checkpoint"),
    ("pytorch-fp16-cuda", "pytorch", "fp16", "cuda", "checkpoint"),
    ("ort-fp16-cuda-iobinding", "onnxruntime", "fp16", "cuda", "fp16"),
)
BASELINE = {"cpu": "pytorch-fp32", "cuda": "pytorch-fp32-cuda"}
# Agreement with the baseline's logits required before a configuration's speed counts.
TOLERANCE = {"fp32": {"max_abs_logit_diff": 2e-3}, "fp16": {"token_agreement": 0.99}, "int8": {"token_agreement": 0.95},
             "bf16": {"token_agreement": 0.95}, "bf16-autocast": {"token_agreement": 0.95}}


def batch_sizes(ctx: Context) -> tuple[int, ...]:
    if ctx.options.get("batch_sizes"):
        return tuple(ctx.options["batch_sizes"])
    return QUICK_BATCHES if ctx.quick else FULL_BATCHES


def seq_len_for(model) -> int:
    """256 tokens, or fewer when the model's positions do not reach that far (a tiny test model)."""
    positions = model.dims.get("positions") or SEQ_LEN + 2
    return min(SEQ_LEN, positions - 2)


def make_runner(model, engine: str, precision: str, device: str, source: str, threads: int):
    cuda = device == "cuda"
    if engine == "pytorch":
        if model.checkpoint is None:
            raise Skip("no PyTorch checkpoint for this model (an artifact folder was given)")
        return engines.TorchRunner(model.checkpoint, threads=threads, precision=precision, cuda=cuda)
    path = model.plain_onnx() if source == "plain" else model.artifact(source) / "model.onnx"
    if engine == "openvino":
        return engines.OpenVinoRunner(path, threads=threads, precision=precision)
    return engines.OrtRunner(path, threads=threads, precision=precision, cuda=cuda)


def run(ctx: Context) -> None:
    res = ctx.results
    model = resolve(ctx.model, ctx.cache / "models", default="bert-base")
    sizes = batch_sizes(ctx)
    seq_len = seq_len_for(model)
    flops = model.flops_per_sequence(seq_len)
    res.fact(NAME, "model", {"name": model.name, **model.dims, "encoder_params": model.encoder_params(),
                             "total_params_approx": model.total_params()})
    res.fact(NAME, "seq_len", seq_len)
    res.fact(NAME, "gflop_per_doc", flops / 1e9)
    res.fact(NAME, "batch_sizes", list(sizes))
    ctx.log(f"[{NAME}] model {model.name} ({model.total_params() / 1e6:.0f}M parameters), {seq_len} tokens, "
            f"{flops / 1e9:.1f} GFLOP/doc, batch sizes {list(sizes)}, {ctx.threads} threads")
    data = engines.random_batch(max(sizes + (CHECK_ROWS,)), seq_len, vocab=model.dims["vocab"] or 30522)
    check = engines.take(data, CHECK_ROWS)

    configs = list(CPU_CONFIGS)
    if gpu_info():
        configs += GPU_CONFIGS
    else:
        for name, *_ in GPU_CONFIGS:
            res.skip(NAME, name, "no CUDA device on this machine")
    reference: dict[str, object] = {}
    baseline_tp: dict[tuple[str, int], float] = {}
    missing: MissingBaseline | None = None
    for name, engine, precision, device, source in configs:
        try:
            runner = make_runner(model, engine, precision, device, source, ctx.threads)
        except MissingBaseline as exc:
            res.skip(NAME, name, str(exc), missing_dependency=True)
            missing = missing or exc
            continue
        except Skip as exc:
            res.skip(NAME, name, str(exc))
            continue
        precision = getattr(runner, "precision", precision)  # OpenVINO's default: the precision it chose here
        ctx.log(f"[{NAME}] {name} ({precision})")
        logits = runner.logits(check)
        base = BASELINE[device]
        if name == base or device not in reference:
            reference.setdefault(device, (name, logits))
        ref_name, ref_logits = reference[device]
        ok = True
        if ref_name != name:
            agree = engines.agreement(logits, ref_logits)
            for metric, threshold in TOLERANCE[precision].items():
                value = agree[metric]
                passed = value <= threshold if metric == "max_abs_logit_diff" else value >= threshold
                res.check(NAME, config=name, reference=ref_name, metric=metric, value=value,
                          threshold=threshold, passed=passed, **agree)
                ok = ok and passed
        for bs in sizes:
            prepared = runner.prepare(engines.take(data, bs))
            t = timeit_point(ctx, lambda: runner.run(prepared))
            tp = bs / t["median_s"]
            ratio = None
            if name == base:
                baseline_tp[(device, bs)] = tp
            elif (device, bs) in baseline_tp:
                ratio = tp / baseline_tp[(device, bs)]
            res.row(NAME, group="batch", config=name, engine=engine, precision=precision, device=device,
                    batch_size=bs, threads=ctx.threads, seq_len=seq_len, unit="docs/s", seconds=t["median_s"],
                    throughput=tp, baseline=base, ratio=ratio, gflop_per_item=flops / 1e9,
                    gflops=tp * flops / 1e9, agreement_ok=ok, reps=t["reps"], load=t["load_after"])
            ctx.log(f"    batch {bs:4d}: {tp:8.2f} docs/s" + (f"  ({ratio:.2f}x {base})" if ratio else "")
                    + f"  [{t['reps']} reps, load {t['load_after']}]")
        del runner, prepared
        gc.collect()
    if missing:
        raise missing


def timeit_point(ctx: Context, fn) -> dict:
    """Time one point; long points (one run over ~2 s) get fewer repetitions in a full run."""
    import time

    from .common import timeit

    t0 = time.perf_counter()
    fn()  # warm-up, also sizes the repetitions
    first = time.perf_counter() - t0
    reps = ctx.min_reps()
    if not ctx.quick and first > 2.0:
        reps = 2
    return timeit(fn, min_time=ctx.seconds, min_reps=reps, warmup=0, clock=ctx.clock)
