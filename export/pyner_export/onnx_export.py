"""PyTorch -> ONNX with the artifact's contract: outputs `scores` (float32 softmax) then `logits`.

The TorchScript exporter (`dynamo=False`) is used: it handles all six families with dynamic batch
and sequence axes (DeBERTa-v2 fails under dynamo). It leaves the model in training mode, so the
model is put back into eval mode afterwards (see field notes).
"""

from __future__ import annotations

from pathlib import Path

OUTPUTS = ["scores", "logits"]


def _wrapper(model, input_names):
    import torch

    class ScoresAndLogits(torch.nn.Module):
        """Token classifier whose outputs are float32 probabilities (in the graph) and float32 logits."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            logits = self.inner(**kwargs, return_dict=True).logits.float()
            return torch.softmax(logits, dim=-1), logits

    return ScoresAndLogits(model).eval()


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


def export_onnx(model, input_names: list[str], path: Path, *, opset: int, pad_id: int, vocab_size: int) -> Path:
    """Export `model` to `path` (weights embedded) with dynamic [batch, sequence] axes."""
    import torch

    wrapper = _wrapper(model, input_names)
    inputs = dummy_inputs(input_names, pad_id, vocab_size)
    args = tuple(inputs[n] for n in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names + OUTPUTS}
    try:
        with torch.no_grad():
            torch.onnx.export(
                wrapper, args, str(path), input_names=input_names, output_names=OUTPUTS,
                dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
            )
    finally:
        model.eval()  # the TorchScript exporter leaves the module in training mode
        wrapper.eval()
    return path
