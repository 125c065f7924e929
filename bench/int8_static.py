"""Int8 recipes against each other at the seed's worst case (issue 18): is static QDQ faster than dynamic?

On one fp32 pyner artifact (the bench's random BERT-base by default), at batch 8 x 256 tokens, one
thread, process CPU time, every recipe timed interleaved (round-robin, so that a noisy neighbour
hits all of them alike):

- `fp32`: the artifact as packaged;
- `dynamic-default`: pyner's int8 (`quantize_dynamic`, per-channel QInt8 weights, the `head+ffn_out`
  policy: what `pyner package --precision int8` ships);
- `dynamic-head`: the same with only the head kept float32 (`--int8-policy head`);
- `static-qdq-head` / `static-qdq-default`: `quantize_static` in QDQ form (uint8 activations with
  calibrated scales, per-channel int8 weights: uint8 x int8, the pair MLAS has VNNI/AMX kernels for),
  MinMax calibration on `--calib` sequences, the same exclusions.

Per recipe: sequences per CPU-second, the ratio to fp32 and to dynamic-default, and the worst
absolute logit difference from fp32 on the timed batch (the random model says nothing about F1:
fidelity on real text is bench/realtext.py's and the guard's business).

    .venv/bin/python bench/int8_static.py                       # the bench's cached bert-base
    .venv/bin/python bench/int8_static.py --artifact DIR --calib 32 --rounds 3

Writes bench/results/int8_static.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.common import machine_info  # noqa: E402


def _static(src: Path, dst: Path, exclude: list[str], calib: list[dict]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from pyner_export.optimize import _with_types

    # ONNX shape inference does not know ONNX Runtime's fused operators (SkipLayerNormalization, BiasGelu):
    # without types after them the quantizer skips those MatMuls. The typed graph (one ORT run, as the fp16
    # converter gets it) is what it quantizes.
    typed = _with_types(onnx.load(str(src), load_external_data=False), src.parent)
    staged = src.with_name(dst.stem + "-typed.onnx")
    onnx.save_model(typed, str(staged))
    src = staged

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=exclude, use_external_data_format=True,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    staged.unlink()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", type=Path, help="a pyner fp32 artifact (default: the bench's cached bert-base)")
    ap.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "cache")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--calib", type=int, default=16, help="calibration sequences (default 16)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "int8_static.json")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort

    from pyner_export.int8 import POLICIES, quantize_int8

    art = args.artifact
    if art is None:
        from bench.models import resolve

        art = resolve("bert-base", args.cache / "models").artifact("fp32")
    src = Path(art) / "model.onnx"
    graph = onnx.load(str(src), load_external_data=False)
    vocab = json.loads((Path(art) / "config.json").read_text()).get("vocab_size", 30522)
    data = engines.random_batch(args.batch + args.calib, args.seq_len, vocab=vocab, seed=1)
    names = [i.name for i in graph.graph.input]
    timed = {k: v[: args.batch] for k, v in data.items() if k in names}
    calib = [{k: v[i:i + 1] for k, v in data.items() if k in names} for i in range(args.batch, args.batch + args.calib)]

    recipes: dict[str, Path] = {"fp32": src}
    made: dict[str, float] = {}
    try:
        for policy, name in (("head+ffn_out", "default"), ("head", "head")):
            exclude = POLICIES[policy][0](graph)
            t0 = time.perf_counter()
            dyn = src.parent / f"int8-dyn-{name}.onnx"  # beside the weights they refer to
            quantize_int8(src, dyn, policy=policy)
            made[f"dynamic-{name}"] = time.perf_counter() - t0
            recipes[f"dynamic-{name}"] = dyn
            t0 = time.perf_counter()
            sta = src.parent / f"int8-qdq-{name}.onnx"
            print(f"calibrating static QDQ ({name}) on {len(calib)} sequences ...", flush=True)
            _static(src, sta, exclude, calib)
            made[f"static-qdq-{name}"] = time.perf_counter() - t0
            recipes[f"static-qdq-{name}"] = sta
        opts = engines.session_options(1)
        sessions = {k: ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
                    for k, p in recipes.items()}
        ref = sessions["fp32"].run(["logits"], timed)[0]
        diff = {k: float(np.abs(s.run(["logits"], timed)[0] - ref).max()) for k, s in sessions.items()}
        per: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):
            for k, s in sessions.items():
                c0 = time.process_time()
                s.run(["logits"], timed)
                per[k].append(args.batch / (time.process_time() - c0))
        counts = {k: {} for k in recipes}
        for k, p in recipes.items():
            for n in onnx.load(str(p), load_external_data=False).graph.node:
                if n.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear",
                                 "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
                    counts[k][n.op_type] = counts[k].get(n.op_type, 0) + 1
    finally:
        for p in recipes.values():
            if p != src:
                for f in p.parent.glob(p.name + "*"):
                    f.unlink()
    med = {k: float(np.median(v)) for k, v in per.items()}
    rows = [{"recipe": k, "seq_per_cpu_s": med[k], "runs": per[k], "x_fp32": med[k] / med["fp32"],
             "x_dynamic_default": med[k] / med["dynamic-default"], "max_abs_logit_diff_vs_fp32": diff[k],
             "quantize_s": made.get(k), "op_counts": counts[k]} for k in med]
    cpu = machine_info().get("cpu", {})
    out = {"artifact": str(art), "batch": args.batch, "seq_len": args.seq_len, "threads": 1, "clock": "process CPU",
           "calibration_sequences": args.calib, "rounds": args.rounds, "cpu": cpu.get("model"), "isa": cpu.get("isa"),
           "onnxruntime": ort.__version__, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(args.out)
    print(f"\n{cpu.get('model')} ({', '.join(cpu.get('isa') or [])}), onnxruntime {ort.__version__}, "
          f"batch {args.batch} x {args.seq_len} tokens, 1 thread, {args.rounds} interleaved rounds\n")
    print("| recipe | seq / CPU-s | x fp32 | x dynamic-default | max logit diff vs fp32 | ops |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['seq_per_cpu_s']:.2f} | {r['x_fp32']:.2f} | {r['x_dynamic_default']:.2f} | "
              f"{r['max_abs_logit_diff_vs_fp32']:.4f} | {r['op_counts']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
