"""Runners: one model configuration that takes a padded numpy batch and returns logits.

Each runner has `run(batch)` (what is timed: the fetch the runtime itself would do) and
`logits(batch)` (float32 numpy, for the agreement checks). PyTorch runners import torch lazily.
"""

from __future__ import annotations

import numpy as np

from .common import Skip, require_baseline


def random_batch(n: int, seq_len: int, *, vocab: int = 30522, seed: int = 0, cls_id: int = 101, sep_id: int = 102) -> dict:
    """`n` full-length sequences of random word-piece ids framed by [CLS] ... [SEP] (no padding)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(1000, vocab // 4), min(vocab, 30000), size=(n, seq_len), dtype=np.int64)
    ids[:, 0] = cls_id
    ids[:, -1] = sep_id
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def take(batch: dict, n: int) -> dict:
    return {k: np.ascontiguousarray(v[:n]) for k, v in batch.items()}


def session_options(threads: int):
    """The Python runtime's own session options (pyner.runtime), so that ONNX Runtime is timed as pyner runs it."""
    from pyner.runtime import _session_options

    return _session_options(threads)


class OrtRunner:
    """An ONNX Runtime session on CPU (or CUDA with IO binding)."""

    engine = "onnxruntime"

    def __init__(self, path, *, threads: int, precision: str = "fp32", cuda: bool = False):
        import onnxruntime as ort

        self.precision = precision
        self.cuda = cuda
        providers = ["CPUExecutionProvider"]
        if cuda:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Skip("onnxruntime has no CUDAExecutionProvider: pip install 'pyner[gpu]' (onnxruntime-gpu) "
                           "and pip uninstall onnxruntime")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        # What the runtime fetches (scores, when the graph has them), and the logits for checks.
        self.fetch = ["scores"] if "scores" in outs else [outs[0]]
        self.logits_name = "logits" if "logits" in outs else outs[0]
        self._ort = ort

    def feed(self, batch: dict) -> dict:
        return {k: batch[k] for k in self.inputs}

    def prepare(self, batch: dict):
        """Inputs ready for `run`: numpy on CPU, device-resident OrtValues bound once on CUDA."""
        feed = self.feed(batch)
        if not self.cuda:
            return feed
        io = self.session.io_binding()
        for k, v in feed.items():
            io.bind_ortvalue_input(k, self._ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
        for name in self.fetch:
            io.bind_output(name, "cuda")
        return io

    def run(self, prepared) -> None:
        if self.cuda:
            self.session.run_with_iobinding(prepared)
            prepared.synchronize_outputs()
        else:
            self.session.run(self.fetch, prepared)

    def logits(self, batch: dict) -> np.ndarray:
        return self.session.run([self.logits_name], self.feed(batch))[0].astype(np.float32)


class TorchRunner:
    """transformers' AutoModelForTokenClassification in PyTorch eager mode (inference_mode).

    Precisions: fp32; fp16 (CUDA); bf16 (the model loaded with `dtype=torch.bfloat16`: the one line a
    user changes on a CPU with bf16 matrix units, AVX512_BF16 or AMX); bf16-autocast (float32 weights,
    run under `torch.autocast("cpu", dtype=torch.bfloat16)`)."""

    engine = "pytorch"

    def __init__(self, checkpoint, *, threads: int, precision: str = "fp32", cuda: bool = False):
        torch = require_baseline("torch", "the PyTorch baseline")
        tf = require_baseline("transformers", "the PyTorch baseline")
        if cuda and not torch.cuda.is_available():
            raise Skip("PyTorch sees no CUDA device")
        torch.set_num_threads(threads)
        self.torch = torch
        self.cuda = cuda
        self.precision = precision
        self.device = "cuda" if cuda else "cpu"
        kwargs = {"dtype": torch.bfloat16} if precision == "bf16" else {}
        model = tf.AutoModelForTokenClassification.from_pretrained(checkpoint, **kwargs).eval()
        if precision == "fp16":
            model = model.half()
        self.model = model.to(self.device)
        self.autocast = precision == "bf16-autocast"
        import inspect

        self.inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids")
                       if k in inspect.signature(model.forward).parameters]

    def prepare(self, batch: dict) -> dict:
        return {k: self.torch.from_numpy(batch[k]).to(self.device) for k in self.inputs}

    def _context(self):
        import contextlib

        if self.autocast:
            return self.torch.autocast(self.device, dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def run(self, prepared) -> None:
        with self.torch.inference_mode(), self._context():
            self.model(**prepared).logits
        if self.cuda:
            self.torch.cuda.synchronize()

    def logits(self, batch: dict) -> np.ndarray:
        with self.torch.inference_mode(), self._context():
            out = self.model(**self.prepare(batch)).logits
        return out.float().cpu().numpy()


class OpenVinoRunner:
    """OpenVINO's CPU plugin on the plain ONNX export (what a user would hand it: pyner's optimized graph has
    ONNX Runtime's fused operators, which OpenVINO does not read). Precision "default" leaves the
    plugin's inference precision hint as it is (bf16 on a CPU with AVX512_BF16 or AMX, f32 elsewhere:
    `self.precision` says which it chose); "fp32" forces f32. Threads: INFERENCE_NUM_THREADS."""

    engine = "openvino"

    def __init__(self, path, *, threads: int, precision: str = "default"):
        try:
            import openvino as ov
        except ImportError as exc:  # a contender, not a baseline: the run goes on without it
            raise Skip(f"OpenVINO is not installed ({exc}): pip install 'pyner[bench]'") from exc
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": int(threads)}
        if precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(str(path), "CPU", config)
        chosen = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "bf16", "f16", "f32"
        self.precision = {"bf16": "bf16", "f16": "fp16"}.get(chosen, "fp32")
        self.inputs = [p.get_any_name() for p in self.compiled.inputs]
        self.request = self.compiled.create_infer_request()

    def prepare(self, batch: dict) -> dict:
        return {k: batch[k] for k in self.inputs}

    def run(self, prepared) -> None:
        self.request.infer(prepared)

    def logits(self, batch: dict) -> np.ndarray:
        return np.array(self.request.infer(self.prepare(batch))[0], dtype=np.float32)


def agreement(logits: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Max absolute logit difference and per-token argmax agreement over unpadded positions."""
    if mask is None:
        mask = np.ones(reference.shape[:2], dtype=bool)
    mask = mask.astype(bool)
    diff = np.abs(logits - reference)[mask]
    same = (logits.argmax(-1) == reference.argmax(-1))[mask]
    return {"max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
            "token_agreement": float(same.mean()) if same.size else 1.0,
            "tokens": int(mask.sum())}
