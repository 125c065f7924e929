"""ONNX Runtime's transformer optimizer (fusions, exact math) and the fp16 conversion.

Fusions need exact subgraph matches, and a fused graph is only kept when it computes the same
logits as the unfused one on a padded probe batch; otherwise the unfused graph is used and the
manifest says why. GELU stays exact (no approximation).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

# Largest |logit| difference between the fused and the unfused fp32 graph that counts as "same math".
FUSION_TOLERANCE = 1e-4
# Ops kept in float32 in fp16 models: normalisation and softmax (attention and the output scores).
FP16_OP_BLOCK_LIST = ["Softmax", "LayerNormalization", "SimplifiedLayerNormalization"]


def probe_feed(input_names: list[str], pad_id: int, vocab_size: int, *, batch: int = 3, seq: int = 13, seed: int = 1):
    """A padded int64 batch with different lengths per row, for comparing graphs."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(5, vocab_size - 1), vocab_size, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for r in range(1, batch):
        mask[r, seq - 3 * r:] = 0
    ids[mask == 0] = pad_id
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        feed["token_type_ids"] = np.zeros_like(ids)
    return feed


def run_logits(path_or_bytes, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes,
                                opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if names[:2] == ["scores", "logits"]:
        scores, logits = sess.run(["scores", "logits"], feed)
        return scores, logits
    # other tasks (pyner.tasks.OUTPUTS): the task's result output, in the places of both
    out = sess.run([names[1]], feed)[0]
    return out, out


def optimize(src: Path, dst: Path, *, num_heads: int, hidden_size: int, feed: dict[str, np.ndarray]) -> tuple[Path, dict[str, Any]]:
    """Fuse `src` into `dst` (a file in the same folder: they share its external data); return the graph
    to use (`dst`, or `src` when fusion fails or changes the math) and the report.

    Memory: the optimizer sees the graph without its weights; the fused and unfused graphs are then run
    one ONNX Runtime session at a time."""
    import onnx

    if dst.parent != src.parent:
        raise ValueError(f"the fused graph {dst} must be written beside {src} (they share its external data)")

    report: dict[str, Any] = {"optimizer": "onnxruntime.transformers", "model_type": "bert",
                              "gelu_approximation": False, "fused_ops": {}, "fallback": None}
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        options = FusionOptions("bert")
        options.enable_gelu_approximation = False
        # The fusions rewrite the graph; the weights (external data over 1 KiB) are neither read nor copied:
        # the fused graph is written beside the source and refers to the same data files.
        graph = onnx.load(str(src), load_external_data=False)
        # the optimizer's checks resolve external-data locations against the working folder
        with contextlib.chdir(src.parent):
            optimized = optimize_model(graph, model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                       optimization_options=options, opt_level=0, use_gpu=False)
            stats = optimized.get_fused_operator_statistics()
            report["fused_ops"] = {k: int(v) for k, v in sorted(stats.items())}
            # (the optimizer's own save adds the com.microsoft opset import its fused ops need)
            optimized.save_model_to_file(dst.name, use_external_data_format=False)
        del optimized, graph
    except Exception as exc:  # the optimizer's failures are not typed
        report["fallback"] = f"fusion failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); unfused graph kept"
        report["fused_ops"] = {}
        return src, report
    try:
        _, ref = run_logits(src, feed)
        _, got = run_logits(dst, feed)
        mask = feed["attention_mask"].astype(bool)
        delta = np.abs(ref - got)
        diff = float((delta[mask] if delta.ndim >= 2 and delta.shape[:2] == mask.shape else delta).max())
    except Exception as exc:
        diff = float("inf")
        report["fallback"] = f"fused graph does not run ({type(exc).__name__}); unfused graph kept"
    report["fused_vs_unfused_max_abs_logit_diff"] = diff
    if not diff <= FUSION_TOLERANCE:
        report["fallback"] = report["fallback"] or f"fused graph differs from the unfused one by {diff:.3g} in logits; unfused graph kept"
        report["fused_ops"] = {}
        return src, report
    return dst, report


def mask_subgraph_nodes(model) -> list[str]:
    """Names of the nodes computing only from `attention_mask` (the additive mask): kept in float32.

    In fp16 the mask value finfo(float32).min overflows and 0 * -inf makes NaN rows; computed in
    float32 and cast once, it stays finite.
    """
    graph = model.graph
    tainted = {"attention_mask"}
    weights = {init.name for init in graph.initializer}
    names: list[str] = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        ins = [i for i in node.input if i]
        if not ins:
            continue
        if any(i in tainted for i in ins) and all(i in tainted or i in weights or _is_constant(graph, i) for i in ins):
            tainted.update(node.output)
            names.append(node.name)
    return names


def _is_constant(graph, name: str) -> bool:
    for node in graph.node:
        if name in node.output:
            return node.op_type == "Constant"
    return False


def to_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Convert to float16 with float32 inputs/outputs; softmax, normalisation and masking stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16, convert_np_to_float16

    from . import onnxio

    # Types are inferred on the graph without its weights (a model over 2 GiB cannot be serialized for
    # in-memory shape inference); the weights are then read once, into the typed graph.
    model = onnx.load(str(src), load_external_data=False)
    # The converter tracks nodes by name: the TorchScript export can give several layers' nodes one name
    # (SqueezeBERT's LayerNorms), and only one of them would then get its float32 casts.
    _rename_duplicates(model)
    model = _with_types(model, Path(src).parent)
    parked = onnxio.park_weights(model, Path(src).parent)  # the weights: converted by us, block by block
    onnx.load_external_data_for_model(model, str(Path(src).parent))
    node_block = mask_subgraph_nodes(model)
    # The graph's final softmax (the `scores` output) is float32 by contract.
    producer = {o: n for n in model.graph.node for o in n.output}
    final = producer.get("scores")
    if final is not None and final.name not in node_block:
        node_block.append(final.name)
    op_block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_OP_BLOCK_LIST))
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=op_block, node_block_list=node_block,
                                         disable_shape_infer=True)  # (inferred above)
    _unique_node_names(converted)
    _drop_output_round_trips(converted)
    onnxio.save(converted, dst)
    del converted, model
    onnxio.unpark(dst, parked, source=Path(src).parent, to_fp16=convert_np_to_float16)
    return {"op_block_list": [op for op in FP16_OP_BLOCK_LIST], "nodes_kept_float32": len(node_block),
            "keep_io_types": True, "target": "GPU (CUDAExecutionProvider); slower than fp32 on CPU"}


def _with_types(model, folder: Path):
    """The model with a type for every value. The converter inserts the float32 casts of a blocked node only for
    inputs whose type ONNX shape inference found; where it finds none (SqueezeBERT's transposed LayerNorms), the
    types are read from one ONNX Runtime run of the float32 graph on a tiny feed (types do not depend on values)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, shape_inference

    inferred = shape_inference.infer_shapes(model)
    known = {v.name for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    known |= {i.name for i in inferred.graph.initializer}
    missing = [o for n in inferred.graph.node for o in n.output if o and o not in known]
    if not missing:
        return inferred
    probe = onnx.ModelProto()
    probe.CopyFrom(inferred)
    probe.graph.output.extend([onnx.ValueInfoProto(name=o) for o in missing])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    probe_path = folder / "types-probe.onnx"  # beside the graph: its external data resolves from there
    onnx.save_model(probe, str(probe_path))
    try:
        sess = ort.InferenceSession(str(probe_path), opts, providers=["CPUExecutionProvider"])
    finally:
        probe_path.unlink()
    feed = {i.name: np.ones((1, 8), dtype=np.int64) for i in sess.get_inputs()}
    for name, value in zip(missing, sess.run(missing, feed)):
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
        inferred.graph.value_info.append(helper.make_tensor_value_info(name, elem, None))
    return inferred


def _rename_duplicates(model) -> None:
    """Give every node a unique name (a repeated name gets a numbered suffix; the first keeps its own)."""
    names = {n.name for n in model.graph.node}
    seen: set[str] = set()
    for k, node in enumerate(model.graph.node):
        if node.name in seen or not node.name:
            new = f"{node.name or node.op_type}_{k}"
            while new in names:
                new += "_"
            node.name = new
            names.add(new)
        seen.add(node.name)


def _unique_node_names(model) -> None:
    """The converter casts a shared weight once per consumer under one name (DeBERTa shares LayerNorm
    weights): drop the repeated identical casts, then keep the node list topologically sorted."""
    graph = model.graph
    produced: dict[str, tuple] = {}
    keep = []
    for node in graph.node:
        sig = (node.op_type, tuple(node.input), tuple(a.SerializeToString() for a in node.attribute))
        if node.output and all(o in produced for o in node.output) and all(produced[o] == sig for o in node.output):
            continue
        for o in node.output:
            produced[o] = sig
        keep.append(node)
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, pending = [], list(keep)
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # a cycle or a subgraph reference: leave the order alone
            ordered.extend(rest)
            break
        pending = rest
    seen: set[str] = set()
    for node in ordered:
        if node.name in seen:
            node.name = f"{node.name}_{len(seen)}"
        seen.add(node.name)
    del graph.node[:]
    graph.node.extend(ordered)


def _drop_output_round_trips(model) -> None:
    """`float32 op -> Cast(fp16) -> Cast(fp32) -> output` loses precision (the converter does this for a
    blocked node feeding a kept-io output): let the float32 op write the output directly."""
    import onnx

    graph = model.graph
    consumers: dict[str, int] = {}
    for node in graph.node:
        for i in node.input:
            consumers[i] = consumers.get(i, 0) + 1
    producer = {o: n for n in graph.node for o in n.output}

    def cast_to(node) -> int | None:
        if node is None or node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    for out in graph.output:
        outer = producer.get(out.name)
        if cast_to(outer) != onnx.TensorProto.FLOAT:
            continue
        inner = producer.get(outer.input[0])
        if cast_to(inner) != onnx.TensorProto.FLOAT16 or consumers.get(outer.input[0], 0) != 1:
            continue
        source = producer.get(inner.input[0])
        if source is None or source.op_type == "Cast" or consumers.get(inner.input[0], 0) != 1:
            continue
        # only when the source really computes float32: it was kept out of the fp16 conversion
        for k, name in enumerate(source.output):
            if name == inner.input[0]:
                source.output[k] = out.name
        graph.node.remove(inner)
        graph.node.remove(outer)
