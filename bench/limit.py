"""Scenario `limit`: how close to the machine's arithmetic limit each configuration runs.

Measured in the same run: the fp32 GEMM peak (numpy/OpenBLAS, ONNX Runtime's MatMul, PyTorch's
mm when installed), the bf16 peak (PyTorch's mm on bf16 tensors: oneDNN on AMX or AVX512_BF16) and the int8 GEMM peak (ONNX Runtime's MatMulInteger, u8 x s8 -> s32, the
kernel dynamic quantization uses), each on a large square and on the model's own GEMM shapes
(2048 rows = 8 documents x 256 tokens, times the QKV/output, feed-forward up and down weights).
The limit is the best of all of them: the fastest GEMM this machine was seen to run. The model's FLOPs per 256-token document follow
`Model.flops_per_sequence` (2 FLOPs per multiply-add over every weight matrix, plus attention's
QK^T and AV). Achieved fraction = docs/s x GFLOP/doc / peak, for each worst-case configuration
at its best batch size from this run (run `worstcase` in the same invocation).
"""

from __future__ import annotations

import numpy as np

from .common import Context, gpu_info, timeit

NAME = "limit"


def _ort_gemm(m: int, k: int, n: int, threads: int, int8: bool):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from .engines import session_options

    rng = np.random.default_rng(0)
    if int8:
        a = rng.integers(0, 255, size=(m, k), dtype=np.uint8)
        b = rng.integers(-127, 127, size=(k, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])], [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(threads),
                                providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"A": a})


def matrix_features(isa: list[str]) -> str:
    """What the CPU's matrix units offer, from its lscpu flags: the figures mean little without it."""
    have = set(isa)
    parts = []
    if {"amx_tile", "amx_int8"} & have or "amx_bf16" in have:
        parts.append("AMX (" + ", ".join(f for f in ("amx_int8", "amx_bf16") if f in have) + ")")
    if "avx512_vnni" in have or "avx_vnni" in have:
        parts.append("VNNI (" + ", ".join(f for f in ("avx512_vnni", "avx_vnni") if f in have) + ")")
    if "avx512_bf16" in have:
        parts.append("AVX512_BF16")
    if not parts:
        parts.append("no int8/bf16 matrix instructions (" + ("AVX-512" if "avx512f" in have else "AVX2" if "avx2" in have
                                                           else "no AVX2") + " float32 only)")
    return "; ".join(parts)


def run(ctx: Context) -> None:
    res = ctx.results
    n = 1024 if ctx.quick else 2048
    dims = res.scenario("worstcase")["facts"].get("model") if "worstcase" in res.data["scenarios"] else None
    h, i = (dims["hidden"], dims["intermediate"]) if dims else (768, 3072)
    rows = 2048  # 8 documents x 256 tokens
    shapes = {"square": (n, n, n), "model-qkvo": (rows, h, h), "model-ffn-up": (rows, h, i), "model-ffn-down": (rows, i, h)}
    if ctx.quick:
        shapes.pop("model-qkvo")
        shapes.pop("model-ffn-down")
    peaks = {"fp32": 0.0, "int8": 0.0, "bf16": 0.0}
    cpu = ctx.results.data["meta"]["machine"].get("cpu", {})  # bench/run.py's machine_info()
    matrix = matrix_features(cpu.get("isa", []))
    res.fact(NAME, "cpu", {"model": cpu.get("model"), "matrix": matrix})
    ctx.log(f"[{NAME}] CPU {cpu.get('model')}: {matrix}")
    peak_kernel: dict[str, str] = {}
    ctx.log(f"[{NAME}] GEMM peaks (the best of every kernel and shape), {ctx.threads} threads")

    def point(kernel: str, precision: str, shape_name: str, fn, shape):
        t = timeit(fn, min_time=ctx.seconds, min_reps=max(3, ctx.min_reps()), warmup=1, clock=ctx.clock)
        m, k, nn = shape
        gflops = 2.0 * m * k * nn / t["min_s"] / 1e9
        res.row(NAME, group="gemm", config=f"{kernel} {shape_name} {m}x{k}x{nn}", engine=kernel, precision=precision,
                threads=ctx.threads, seconds=t["min_s"], gflops=gflops, unit="GOP/s" if precision == "int8" else "GFLOP/s",
                reps=t["reps"])
        ctx.log(f"    {kernel:12s} {precision} {shape_name:14s} {m}x{k}x{nn}: {gflops:7.1f} G/s")
        if gflops > peaks[precision]:
            peaks[precision] = gflops
            peak_kernel[precision] = f"{kernel} {m}x{k}x{nn}"

    for shape_name, (m, k, nn) in shapes.items():
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, nn), dtype=np.float32)
        point("numpy", "fp32", shape_name, lambda: a @ b, (m, k, nn))
        point("onnxruntime", "fp32", shape_name, _ort_gemm(m, k, nn, ctx.threads, False), (m, k, nn))
        point("onnxruntime", "int8", shape_name, _ort_gemm(m, k, nn, ctx.threads, True), (m, k, nn))
    try:
        import torch  # optional: a third fp32 kernel (oneDNN / MKL)

        torch.set_num_threads(ctx.threads)
        for shape_name, (m, k, nn) in shapes.items():
            ta, tb = torch.randn(m, k), torch.randn(k, nn)
            point("pytorch", "fp32", shape_name, lambda: torch.mm(ta, tb), (m, k, nn))
            ha, hb = ta.bfloat16(), tb.bfloat16()  # oneDNN: AMX or AVX512_BF16 where the CPU has them
            point("pytorch", "bf16", shape_name, lambda: torch.mm(ha, hb), (m, k, nn))
        if gpu_info() and torch.cuda.is_available():  # tensor-core peak for the GPU configurations
            for precision, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
                ga, gb = torch.randn(8192, 8192, device="cuda", dtype=dtype), torch.randn(8192, 8192, device="cuda", dtype=dtype)

                def gemm(ga=ga, gb=gb):
                    torch.mm(ga, gb)
                    torch.cuda.synchronize()

                t = timeit(gemm, min_time=ctx.seconds, min_reps=5, warmup=2)
                g = 2.0 * 8192 ** 3 / t["min_s"] / 1e9
                peaks[f"cuda-{precision}"] = g
                res.row(NAME, group="gemm", config=f"pytorch cuda {precision} 8192x8192x8192", engine="pytorch-cuda",
                        precision=precision, seconds=t["min_s"], gflops=g, unit="GFLOP/s", reps=t["reps"])
                ctx.log(f"    pytorch-cuda {precision} 8192^3: {g:9.1f} GFLOP/s")
    except ImportError:
        res.note(NAME, "PyTorch not installed: its GEMM is not part of the fp32 peak")
    res.fact(NAME, "peak_gflops", peaks)
    res.fact(NAME, "peak_kernel", peak_kernel)
    res.fact(NAME, "flops_formula", "per document of s tokens: s x (layers x (8h^2 + 4hi + 4sh) + 2h x labels)")
    fractions(ctx, peaks)


def fractions(ctx: Context, peaks: dict) -> None:
    """Achieved fraction of the peak for every worst-case configuration at its best batch size."""
    res = ctx.results
    rows = [r for r in res.rows("worstcase") if r.get("group") == "batch"]
    if not rows:
        res.note(NAME, "no worst-case measurements in this run: run `--scenario worstcase limit` for achieved fractions")
        return
    best: dict[str, dict] = {}
    for r in rows:
        if r["config"] not in best or r["throughput"] > best[r["config"]]["throughput"]:
            best[r["config"]] = r
    for config, r in best.items():
        if r.get("device", "cpu") == "cuda":
            peak_key = f"cuda-{r['precision']}"
        else:
            peak_key = "int8" if r["precision"] == "int8" else "bf16" if r["precision"].startswith("bf16") else "fp32"
        peak = peaks.get(peak_key) or 0.0
        frac = r["gflops"] / peak if peak else None
        fp32_frac = r["gflops"] / peaks["fp32"] if peaks.get("fp32") else None
        res.row(NAME, group="fraction", config=config, precision=r["precision"], batch_size=r["batch_size"],
                threads=r["threads"], throughput=r["throughput"], unit="docs/s", gflop_per_item=r["gflop_per_item"],
                gflops=r["gflops"], fraction_of_peak=frac, peak=peak_key, fraction_of_fp32_peak=fp32_frac)
        ctx.log(f"    {config:22s} best batch {r['batch_size']:3d}: {r['gflops']:7.1f} GFLOP/s = "
                + (f"{frac:.0%} of the {peak_key} peak" if frac is not None else "n/a"))
