"""Dynamic int8 quantization (per-channel QInt8 weights, for VNNI CPUs) and its node-exclusion policy.

`default_int8_exclusions` is the one place that decides which MatMul nodes stay float32. It is a
plain function of the ONNX graph so that a sensitivity sweep (quantize one node at a time, measure
F1) can replace or refine it; the chosen policy and the excluded nodes are recorded in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

POLICY = "head+ffn_out"
POLICY_DESCRIPTION = ("keep float32: the token-classification head (the MatMul producing the logits) and every "
                      "feed-forward output projection (the MatMul after GELU); quantize every other MatMul per channel")
FAST_POLICY = "head"
FAST_POLICY_DESCRIPTION = ("keep float32: the token-classification head only; quantize every other MatMul per channel "
                           "(1.4-1.6x faster than head+ffn_out on CPU, about twice its logit error)")


def _producers(graph) -> dict[str, Any]:
    return {o: n for n in graph.node for o in n.output}


def head_matmuls(onnx_model) -> list[str]:
    """The MatMul/Gemm nodes on the path from the last hidden state to the `logits` output."""
    graph = onnx_model.graph
    prod = _producers(graph)
    found: list[str] = []
    frontier = ["logits"]
    seen: set[str] = set()
    steps = 0
    while frontier and steps < 12:  # walk back through Add (bias), Cast, Reshape, ... to the classifier
        steps += 1
        nxt = []
        for t in frontier:
            node = prod.get(t)
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in ("MatMul", "Gemm"):
                found.append(node.name)
                continue
            nxt.extend(i for i in node.input if i in prod)
        frontier = nxt
    return found


def default_int8_exclusions(onnx_model) -> list[str]:
    """Node names that stay float32 under the default policy (see POLICY_DESCRIPTION).

    The head, and every feed-forward output projection: a MatMul with a constant weight whose input
    comes from a GELU (fused Gelu/BiasGelu/FastGelu, or the Erf formula) through elementwise ops only.
    Chosen by the sensitivity sweep on the demo model (bench/int8_sweep.py, BTC dev, docs/demo.md):
    post-GELU activations have the widest ranges, so their dynamic per-tensor uint8 quantization
    costs the most; keeping those 6 of 37 MatMuls float32 halved the logit error and removed the
    F1 loss, while any other group or layer helped far less.
    """
    graph = onnx_model.graph
    producers = _producers(graph)
    weights = {i.name for i in graph.initializer}
    gelu = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Erf"}
    elementwise = {"Add", "Sub", "Mul", "Div", "Pow", "Tanh", "Cast"}

    def after_gelu(tensor: str) -> bool:
        frontier, seen = [tensor], set()
        for _ in range(8):
            nxt = []
            for t in frontier:
                node = producers.get(t)
                if node is None or t in seen:
                    continue
                seen.add(t)
                if node.op_type in gelu:
                    return True
                if node.op_type in elementwise:
                    nxt.extend(node.input)
            frontier = nxt
        return False

    head = head_matmuls(onnx_model)
    ffn_out = [n.name for n in graph.node
               if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights and n.name not in head
               and after_gelu(n.input[0])]
    return head + ffn_out


# The named policies `pyner package --int8-policy` offers: name -> (nodes kept float32, description).
POLICIES = {
    POLICY: (default_int8_exclusions, POLICY_DESCRIPTION),
    FAST_POLICY: (head_matmuls, FAST_POLICY_DESCRIPTION),
}


def quantize_int8(src: Path, dst: Path, *, policy: str = POLICY, exclude: list[str] | None = None) -> dict[str, Any]:
    """Quantize `src` dynamically to `dst`; return the manifest's "quantization" record.

    `policy` names the float32 exclusions (POLICIES); an explicit `exclude` list overrides it ("custom").
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from . import onnxio

    src, dst = Path(src), Path(dst)
    if dst.parent != src.parent:
        raise ValueError(f"the int8 graph {dst} must be written beside {src} (it keeps referring to its embedding tables)")
    model = onnx.load(str(src), load_external_data=False)  # the policy needs the graph, not the weights
    if exclude is None:
        exclude = POLICIES[policy][0](model)
        description = POLICIES[policy][1]
    else:
        policy, description = "custom", "nodes given by the caller"
    # The quantizer reads the weights of the MatMuls it quantizes, nothing else: the rest (embedding tables,
    # fused attention weights, the excluded MatMuls') are parked, so its copies are of what it needs.
    initializers = {i.name for i in model.graph.initializer}
    skip = set(exclude)
    read = {x for n in model.graph.node if n.op_type == "MatMul" and n.name not in skip for x in n.input if x in initializers}
    parked = onnxio.park_all_but(model, src.parent, read)
    # The quantizer is given a path, not the model (given a model it saves and reloads it once more): the
    # graph with the stand-ins, its other weights still references to `src`'s data beside it.
    staged = src.with_name(src.stem + "-int8-input.onnx")
    onnx.save_model(model, str(staged))
    del model
    try:
        quantize_dynamic(
            str(staged), str(dst), per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"], nodes_to_exclude=list(exclude),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, use_external_data_format=True,
        )
    finally:
        staged.unlink()
    onnxio.unpark(dst, parked)
    onnxio.share_modes(dst.parent)
    quantized = onnx.load(str(dst), load_external_data=False)
    counts: dict[str, int] = {}
    for node in quantized.graph.node:
        if node.op_type in ("MatMulInteger", "DynamicQuantizeLinear", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMul"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        "reduce_range": False,
        "op_types": ["MatMul"],
        "policy": policy,
        "policy_description": description,
        "nodes_excluded": list(exclude),
        "op_counts": counts,
        "target": "CPU (dynamic int8; fastest with AVX-512 VNNI)",
    }
