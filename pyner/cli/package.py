"""`pyner package [MODEL_DIR] -o ARTIFACT_DIR`: a Hugging Face checkpoint becomes one verified artifact.

Tasks (docs/tasks.md): token classification (NER), text classification, feature extraction (sentence
embeddings), chosen from the checkpoint or by --task. No MODEL_DIR: the embedded demo NER model, or with
--task feature-extraction the embedded all-MiniLM-L6-v2 as it ships.

The export stage (torch, transformers, onnx) lives in the separate package `pyner_export`; it is
imported here, inside `run`, and only here: no other command pays for it or needs it installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_OUTPUT = "artifacts/demo"
EMBEDDINGS_DEMO_OUTPUT = "artifacts/minilm-embeddings"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", nargs="?", default=None,
                   help="local Hugging Face checkpoint (config.json, safetensors or .bin weights, tokenizer.json): "
                        "...ForTokenClassification, ...ForSequenceClassification, a sentence-transformers folder or a "
                        "bare encoder; omitted: the embedded demo NER model (with --task feature-extraction: "
                        "all-MiniLM-L6-v2 as it ships)")
    p.add_argument("--task", default=None, metavar="TASK",
                   help="token-classification, text-classification or feature-extraction (default: what the "
                        "checkpoint is: its architecture, or a sentence-transformers folder)")
    p.add_argument("--function-to-apply", default=None, metavar="FN",
                   help="text-classification: softmax, sigmoid or none for the scores (default: the pipeline's "
                        "choice: sigmoid for multi-label or one label, none for regression, else softmax)")
    p.add_argument("-o", "--output", metavar="ARTIFACT_DIR", default=None,
                   help=f"artifact folder to write (required with MODEL_DIR; default {DEMO_OUTPUT} for the demo model)")
    p.add_argument("--precision", default="fp32",
                   help="fp32 (exact, any CPU/GPU), fp16 (GPU format), int8 (dynamic, fast on VNNI CPUs); default fp32")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="tokens per window, special tokens included (default: the tokenizer's, at most the model's positions and 512)")
    p.add_argument("--stride", type=int, default=None, metavar="N", help="overlap between windows in tokens (default max_length // 4)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument("--eval-data", metavar="FILE", default=None,
                   help="BIO two-column file (word and tag, blank line between sentences) for the guard's entity F1")
    p.add_argument("--max-f1-drop", type=float, default=None, metavar="POINTS",
                   help="largest entity-F1 drop versus PyTorch the guard accepts "
                        "(default per precision: fp32 0.1, fp16 0.1, int8 1.0 points)")
    p.add_argument("--min-identical", type=float, default=None, metavar="FRACTION",
                   help="smallest share of --eval-data sentences whose tags must stay PyTorch's "
                        "(default per precision: fp32 0.99, fp16 0.97, int8 0.85)")
    p.add_argument("--int8-policy", default=None, metavar="NAME",
                   help="which MatMuls int8 keeps float32: head+ffn_out (default; the classifier and every "
                        "feed-forward output projection: most accurate) or head (the classifier only: 1.4-1.6x faster "
                        "on CPU, about twice the logit error); the guard judges either")
    p.add_argument("--external-data", default="auto", metavar="MODE",
                   help="auto (default: weights in model.onnx.data beside model.onnx only when they exceed what one "
                        "ONNX file holds, 2 GiB), always, or never")
    p.add_argument("--no-guard", action="store_true",
                   help="write the artifact even when the accuracy guard fails (recorded in the manifest)")
    p.add_argument("--force", action="store_true",
                   help="replace ARTIFACT_DIR if it is a pyner artifact or an empty folder (only once the new one is complete)")
    p.add_argument("--quiet", action="store_true", help="no progress display and no summary")


def _import_export():
    from ..errors import MissingDependency

    import importlib.util

    try:
        import pyner_export.package as pkg
    except ImportError as exc:
        raise MissingDependency(
            f"`pyner package` needs the export stage (torch, transformers, onnx), which is not installed ({exc})",
            hint="pip install 'pyner[export]'",
        ) from exc
    # the wheel ships pyner_export itself; its heavy dependencies come only with the extra
    missing = [m for m in ("torch", "transformers", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(
            f"`pyner package` needs the export stage's dependencies: {', '.join(missing)} not installed",
            hint="pip install 'pyner[export]'",
        )
    return pkg


def _demo_checkpoint(quiet: bool) -> Path:
    from ..errors import MissingDependency

    try:
        from pyner_export.demo import ensure_demo_checkpoint
    except ImportError as exc:
        raise MissingDependency(
            f"no MODEL_DIR given and the embedded demo model is not available in this installation ({exc})",
            hint="pass a checkpoint folder: pyner package MODEL_DIR -o ARTIFACT_DIR",
        ) from exc
    return Path(ensure_demo_checkpoint(progress=not quiet))


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    pkg = _import_export()
    options = pkg.Options(precision=args.precision, max_length=args.max_length, stride=args.stride, opset=args.opset,
                          eval_data=args.eval_data, max_f1_drop=args.max_f1_drop, min_identical=args.min_identical, guard=not args.no_guard,
                          force=args.force, quiet=args.quiet, int8_policy=args.int8_policy,
                          external_data=args.external_data, task=args.task,
                          function_to_apply=args.function_to_apply).check()
    if args.model_dir is None and args.task == "feature-extraction":
        from pyner_export.demo import encoder_dir

        out = args.output or EMBEDDINGS_DEMO_OUTPUT
        model_dir = encoder_dir()
    elif args.model_dir is None:
        if args.task not in (None, "token-classification"):
            raise UsageError(f"--task {args.task} needs a MODEL_DIR: the embedded models are an NER model (the demo) and "
                             "all-MiniLM-L6-v2 for --task feature-extraction")
        out = args.output or DEMO_OUTPUT
        model_dir = _demo_checkpoint(args.quiet)
    else:
        if args.output is None:
            raise UsageError("-o ARTIFACT_DIR is required when MODEL_DIR is given")
        model_dir, out = Path(args.model_dir), args.output
    manifest = pkg.package(model_dir, out, options)
    if not args.quiet:
        for line in pkg.summary_lines(Path(out), manifest):
            print(line)
    guard = manifest.get("guard") or {}
    if not guard.get("passed", True):
        print(f"warning: the accuracy guard failed and --no-guard wrote the artifact anyway: {'; '.join(guard.get('failures', []))}",
              file=sys.stderr)
    return 0
