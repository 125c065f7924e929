"""PyTorch -> ONNX with the artifact's contract: outputs `scores` (float32 softmax) then `logits`.

The TorchScript exporter (`dynamo=False`) is used: it handles all six families with dynamic batch
and sequence axes (DeBERTa-v2 fails under dynamo). It leaves the model in training mode, so the
model is put back into eval mode afterwards (see field notes).
"""

from __future__ import annotations

from pathlib import Path

OUTPUTS = ["scores", "logits"]  # token classification's; every task's: pyner.tasks.OUTPUTS


def dummy_inputs(input_names, pad_id: int, vocab_size: int, *, batch: int = 2, seq: int = 11):
    """A padded batch (row 1 shorter) so that the masking path is traced, not a mask-free shortcut."""
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(low=min(5, vocab_size - 1), high=vocab_size, size=(batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1:, seq - 4:] = 0
    ids[mask == 0] = pad_id
    inputs = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        inputs["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.long)
    return inputs


def export_onnx(wrapper, input_names: list[str], output_names: list[str], path: Path, *, opset: int, pad_id: int,
                vocab_size: int) -> Path:
    """Export `wrapper` (the checkpoint's model with its task's outputs: pyner_export.tasks.wrapper) to
    `path`, with dynamic [batch, sequence] axes (per-text outputs: [batch]) and its weights in `path`.data.

    The weights go from PyTorch's tensors straight to the data file (`_weights_beside`): the exporter
    itself, for a model under 2 GiB, builds the whole graph with its weights embedded in memory, then
    parses it once more (three copies of the weights beside PyTorch's: BERT-large's export peaked at 5.5x
    its checkpoint). Where the exporter's internals this relies on are not found (another torch), the
    embedded export is written and its weights moved to the data file after it (same result, more memory).
    """
    import torch

    from . import onnxio

    inputs = dummy_inputs(input_names, pad_id, vocab_size)
    args = tuple(inputs[n] for n in input_names)
    with torch.no_grad():
        probe = wrapper(*args)
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    for name, tensor in zip(output_names, probe):
        axes[name] = {0: "batch", 1: "sequence"} if tensor.dim() == 3 else {0: "batch"}
    path = Path(path)
    capture = _ParamsCapture()
    direct = capture.available()
    target = path if direct else path.with_name("embedded-" + path.name)
    try:
        with torch.no_grad(), capture:
            torch.onnx.export(
                wrapper, args, str(target), input_names=input_names, output_names=list(output_names),
                dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
                export_params=not direct,
            )
    finally:
        wrapper.eval()  # the TorchScript exporter leaves the module (and the model inside) in training mode
    if direct:
        _weights_beside(path, capture.params)
    else:
        onnxio.consolidate(target, path)
        for f in target.parent.iterdir():
            if f.name not in (path.name, onnxio.data_file(path).name):
                f.unlink()  # the embedded export (or, over 2 GiB, the exporter's one file per tensor), now copied
    return path


class _ParamsCapture:
    """Keeps the weights the TorchScript exporter computed for the graph (the model's parameters and the
    constant-folded ones, e.g. transposed Linear weights) while `export_params=False` makes it write the
    graph without them. The exporter's `_model_to_graph` returns them; it is wrapped for one export."""

    def __init__(self):
        self.params: dict = {}
        self._module = None
        self._original = None

    def available(self) -> bool:
        try:
            from torch.onnx._internal.torchscript_exporter import utils
        except ImportError:
            return False
        if not callable(getattr(utils, "_model_to_graph", None)):
            return False
        self._module = utils
        return True

    def __enter__(self):
        if self._module is None:
            return self
        self._original = original = self._module._model_to_graph

        def capturing(*args, **kwargs):
            graph, params, out = original(*args, **kwargs)
            self.params = dict(params)
            return graph, params, out

        self._module._model_to_graph = capturing
        return self

    def __exit__(self, *exc):
        if self._module is not None:
            self._module._model_to_graph = self._original
        return False


def _weights_beside(path: Path, params: dict) -> None:
    """Turn the graph inputs that stand for weights (what `export_params=False` leaves) into initializers,
    in the exporter's order, each tensor over 1 KiB written once from PyTorch's memory into `path`.data at
    a page-aligned offset (onnxio's layout); the rest embedded."""
    import onnx
    import torch

    from . import onnxio

    model = onnx.load(str(path))  # the graph alone: no weights in it
    user_inputs = [i for i in model.graph.input if i.name not in params]
    weights = [i.name for i in model.graph.input if i.name in params]
    if not weights:
        raise RuntimeError("the exporter's weights were not captured (an unexpected torch.onnx); cannot write the graph")
    with onnxio.DataFile(onnxio.data_file(path)) as data:
        for name in weights:
            tensor = params[name].detach().cpu().contiguous()
            init = model.graph.initializer.add()
            init.name = name
            init.dims.extend(tensor.shape)
            init.data_type = _onnx_dtype(tensor)
            raw = tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b""
            if len(raw) <= 1024:  # as onnxio.save: small tensors stay in the graph
                init.raw_data = bytes(raw)
            else:
                data.add(init, [memoryview(raw)])
    del model.graph.input[:]
    model.graph.input.extend(user_inputs)
    onnx.save_model(model, str(path))
    onnxio.share_modes(path.parent)


def _onnx_dtype(tensor) -> int:
    import onnx
    import torch

    types = {torch.float32: onnx.TensorProto.FLOAT, torch.float16: onnx.TensorProto.FLOAT16,
             torch.bfloat16: onnx.TensorProto.BFLOAT16, torch.float64: onnx.TensorProto.DOUBLE,
             torch.int64: onnx.TensorProto.INT64, torch.int32: onnx.TensorProto.INT32,
             torch.int16: onnx.TensorProto.INT16, torch.int8: onnx.TensorProto.INT8,
             torch.uint8: onnx.TensorProto.UINT8, torch.bool: onnx.TensorProto.BOOL}
    if tensor.dtype not in types:
        raise RuntimeError(f"the exporter produced a weight of type {tensor.dtype}, which pyner cannot write")
    return types[tensor.dtype]
