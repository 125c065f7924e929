"""Int8 sensitivity sweep: which MatMul nodes must stay float32 for dynamic int8 to keep F1.

Measured on the BTC **dev** split (never on the test sets the accuracy table reports). The
reference is the fp32 artifact (itself identical to PyTorch, see bench/accuracy.py). Runs:

1. `none`: every MatMul quantized (per-channel QInt8 weights, dynamic uint8 activations);
2. `policy`: the export's current `default_int8_exclusions` policy;
3. one group at a time kept float32 (head, attention projections, FFN in, FFN out, ...), the rest quantized;
4. leave-one-out: every single MatMul kept float32 in turn, the rest quantized;
5. greedy: keep nodes float32 in order of their leave-one-out gain until the dev F1 drop is
   at most --target-drop.

Per run: entity F1 (seqeval strict IOB2), its drop vs fp32, word-tag agreement, and the mean
squared logit error over real tokens (the smoothest signal, used to rank nodes).

    .venv/bin/python bench/int8_sweep.py --fp32 bench/results/accuracy-artifacts/fp32
    .venv/bin/python bench/int8_sweep.py --fp32 DIR --limit 300 --no-loo   # quicker

Writes bench/results/int8_sweep.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))  # run as a script: bench/common.py is importable as `common`
from common import DATA_DIR  # noqa: E402  ($PYNER_DATA_DIR, else ../shared/data beside the checkout)

DEV = DATA_DIR / "ner" / "broad_twitter_corpus" / "dev.bio"
GELU_OPS = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu"}


NAME_ROLES = (  # Hugging Face module paths as the TorchScript exporter names nodes (bert, roberta, electra, distilbert)
    (re.compile(r"attention/self/(query|key|value)/|attention/(q_lin|k_lin|v_lin)/"), "qkv"),
    (re.compile(r"attention/output/dense/|attention/out_lin/"), "attn_out"),
    (re.compile(r"intermediate/dense/|ffn/lin1/"), "ffn_in"),
    (re.compile(r"layer\.\d+/output/dense/|ffn/lin2/"), "ffn_out"),
)
ELEMENTWISE = {"Add", "Mul", "Div", "Erf", "Cast", "Sub", "Pow", "Tanh"}


def matmul_roles(onnx_model) -> list[dict]:
    """Every MatMul with a constant weight, in graph order, with its role and layer.

    Roles: qkv, attn_out, ffn_in, ffn_out, head. Names from the exporter are used when they carry
    the module path; otherwise the graph's structure decides (GELU after = ffn_in, GELU before =
    ffn_out, attention before = attn_out).
    """
    from pyner_export.int8 import head_matmuls

    g = onnx_model.graph
    inits = {i.name for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    head = set(head_matmuls(onnx_model))

    def reaches(start, step, targets, through, depth=6):
        frontier, seen = list(start), set()
        for _ in range(depth):
            nxt = []
            for node in frontier:
                if node is None or id(node) in seen:
                    continue
                seen.add(id(node))
                for m in step(node):
                    if m.op_type in targets:
                        return True
                    if m.op_type in through:
                        nxt.append(m)
            frontier = nxt
        return False

    def down(node):
        return [c for o in node.output for c in cons.get(o, [])]

    def up(node):
        return [prod[i] for i in node.input if i in prod]

    def structural(n):
        if reaches([n], down, GELU_OPS | {"Erf"}, ELEMENTWISE - {"Erf"}):
            return "ffn_in"
        if reaches([n], up, GELU_OPS | {"Erf"}, ELEMENTWISE):
            return "ffn_out"
        if reaches([n], up, {"Attention", "MultiHeadAttention", "Softmax"}, {"Reshape", "Transpose", "MatMul"}):
            return "attn_out"
        return "qkv"

    out = []
    layer = 0
    for n in g.node:
        if n.op_type != "MatMul" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        if n.name in head:
            role = "head"
        else:
            role = next((r for rx, r in NAME_ROLES if rx.search(n.name)), None) or structural(n)
        m = re.search(r"layer\.(\d+)/", n.name)
        out.append({"name": n.name, "role": role, "layer": int(m.group(1)) if m else (None if role == "head" else layer)})
        if role == "ffn_out" and not m:
            layer += 1
    return out


class Evaluator:
    def __init__(self, fp32_dir: Path, sentences, threads: int, work: Path):
        from pyner.runtime import load

        self.fp32_dir = fp32_dir
        self.sentences = sentences
        self.threads = threads
        self.work = work
        self.ref_model = load(fp32_dir, threads=threads)
        self.manifest = dict(self.ref_model.manifest.raw)
        self.texts_windows = None
        self.ref_logits, self.ref_tags = self._run(self.ref_model)
        self.gold = [t for _, t in sentences]
        self.ref_f1 = self._f1(self.ref_tags)

    def _run(self, model):
        from pyner_export.evaldata import predict_word_tags

        logits_store = []

        def logits_fn(ws):
            out = model.forward(ws, output="logits")
            logits_store.extend(out)
            return out

        tags = predict_word_tags(model, self.sentences, logits_fn)
        return logits_store, tags

    def _f1(self, tags):
        from pyner_export.evaldata import entity_f1

        return entity_f1(self.gold, tags)

    def evaluate(self, exclude: list[str]) -> dict:
        from pyner.runtime import Model
        from pyner_export.int8 import quantize_int8

        folder = Path(tempfile.mkdtemp(prefix="sweep-", dir=self.work))
        try:
            for f in self.fp32_dir.iterdir():
                if f.is_file() and f.name != "model.onnx":
                    shutil.copy(f, folder / f.name)
            t0 = time.perf_counter()
            quantize_int8(self.fp32_dir / "model.onnx", folder / "model.onnx", exclude=list(exclude))
            manifest = dict(self.manifest, precision="int8")
            model = Model.from_parts(folder, manifest, threads=self.threads)
            logits, tags = self._run(model)
            del model
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        mse = float(np.mean(np.concatenate([((a - b) ** 2).mean(-1) for a, b in zip(logits, self.ref_logits)])))
        n = sum(len(x) for x in tags)
        agree = sum(int(a == b) for xs, ys in zip(tags, self.ref_tags) for a, b in zip(xs, ys)) / n
        f1 = self._f1(tags)
        return {"excluded": list(exclude), "f1": f1, "drop": self.ref_f1 - f1, "word_agreement": agree,
                "logit_mse": mse, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", required=True, help="an fp32 artifact folder (pyner package --precision fp32)")
    ap.add_argument("--dev", default=str(DEV))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target-drop", type=float, default=0.3, help="greedy stops at this dev F1 drop (points)")
    ap.add_argument("--no-loo", action="store_true", help="skip the leave-one-out runs")
    ap.add_argument("--policy-only", action="store_true", help="only the runs 'none' and 'policy' (check the current policy)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "int8_sweep.json"))
    args = ap.parse_args(argv)

    import onnx

    from pyner_export.evaldata import read_bio
    from pyner_export.int8 import default_int8_exclusions

    fp32 = Path(args.fp32)
    graph = onnx.load(str(fp32 / "model.onnx"))
    nodes = matmul_roles(graph)
    labels = json.loads((fp32 / "pyner.json").read_text())["labels"]
    sents = read_bio(args.dev, labels)
    if args.limit:
        sents = sents[: args.limit]
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pyner-int8-sweep-"))
    results: dict = {"dev": args.dev, "sentences": len(sents), "nodes": nodes, "runs": {}}

    def save():
        out_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")

    try:
        ev = Evaluator(fp32, sents, args.threads, work)
        results["fp32_f1"] = ev.ref_f1
        print(f"fp32 dev F1 {ev.ref_f1:.2f} on {len(sents)} sentences; {len(nodes)} MatMul nodes", file=sys.stderr)

        def run(key, exclude):
            r = ev.evaluate(exclude)
            results["runs"][key] = r
            save()
            print(f"  {key:<28} F1 {r['f1']:6.2f} drop {r['drop']:+.2f} agree {100 * r['word_agreement']:.2f}% "
                  f"mse {r['logit_mse']:.4f} ({r['seconds']} s)", file=sys.stderr)
            return r

        run("none", [])
        run("policy", default_int8_exclusions(graph))
        if args.policy_only:
            print(markdown(results))
            return 0
        roles = sorted({n["role"] for n in nodes})
        for role in roles:
            run(f"keep:{role}", [n["name"] for n in nodes if n["role"] == role])
        layers = sorted({n["layer"] for n in nodes if n["layer"] is not None})
        for layer in layers:
            run(f"keep:layer{layer}", [n["name"] for n in nodes if n["layer"] == layer])
        if not args.no_loo:
            base = results["runs"]["none"]["logit_mse"]
            for n in nodes:
                r = run(f"loo:{n['name']}", [n["name"]])
                n["loo_mse_gain"] = base - r["logit_mse"]
                n["loo_drop"] = r["drop"]
            order = sorted(nodes, key=lambda n: -n["loo_mse_gain"])
            chosen: list[str] = []
            for n in order:
                chosen.append(n["name"])
                r = run(f"greedy:{len(chosen)}", list(chosen))
                if r["drop"] <= args.target_drop:
                    break
            results["greedy"] = {"excluded": chosen, "target_drop": args.target_drop}
            save()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    lines = [f"BTC dev, {results['sentences']} sentences, fp32 F1 {results.get('fp32_f1', float('nan')):.2f}", "",
             "| kept float32 | nodes | F1 | drop | word agreement | logit MSE |", "|---|---|---|---|---|---|"]
    for key, r in results["runs"].items():
        lines.append(f"| {key} | {len(r['excluded'])} | {r['f1']:.2f} | {r['drop']:+.2f} | "
                     f"{100 * r['word_agreement']:.2f}% | {r['logit_mse']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
