"""Accuracy of the demo model (or any checkpoint) in PyTorch and as fp32 / fp16 / int8 artifacts.

Entity F1 is seqeval's strict IOB2 mode over PER / ORG / LOC (a test set's MISC tags are mapped to
O: the demo model has no MISC). Every engine is scored on identical windows: the artifact's
runtime tokenizes each sentence (words joined by single spaces) and a word takes the label of its
first sub-word (`pyner_export.evaldata`). PyTorch scores the same windows.

    .venv/bin/python bench/accuracy.py                      # demo model, full BTC test + WikiGold
    .venv/bin/python bench/accuracy.py --limit 200          # first 200 sentences of each set
    .venv/bin/python bench/accuracy.py --model CKPT --out bench/results/accuracy.json

Prints a Markdown table and writes JSON (default bench/results/accuracy.json). Artifacts are built
with the guard off (this script measures; `pyner package` decides) under --work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))  # run as a script: bench/common.py is importable as `common`
from common import DATA_DIR  # noqa: E402  ($PYNER_DATA_DIR, else ../shared/data beside the checkout)

DATA = DATA_DIR / "ner"
SETS = {
    "btc-test": DATA / "broad_twitter_corpus" / "test.bio",
    "wikigold": DATA / "wikigold" / "test.bio",
}
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = {"fp32": 0.0, "fp16": 0.1, "int8": 1.0}  # largest allowed F1 drop vs PyTorch, points


def read_mapped(path: Path, labels: list[str], limit: int | None):
    """Read a BIO file; tags of types the model lacks (MISC) become O; the rest must be model labels."""
    from pyner.errors import InputError
    from pyner_export.evaldata import read_bio

    known = set(labels)
    out, mapped = [], 0
    for words, tags in read_bio(path):
        new = []
        for t in tags:
            if t not in known and t[2:] == "MISC":
                t, mapped = "O", mapped + 1
            if t not in known:
                raise InputError(f"{path}: tag {t!r} is not a model label ({', '.join(labels)})")
            new.append(t)
        out.append((words, new))
        if limit and len(out) >= limit:
            break
    return out, mapped


def tag_agreement(a, b) -> float:
    n = sum(len(x) for x in a)
    same = sum(int(x == y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))
    return same / n if n else 1.0


def build(ckpt: Path, work: Path, precision: str, *, exclude=None, name=None, policy=None) -> Path:
    from pyner_export.package import package

    out = work / (name or precision)
    t0 = time.perf_counter()
    package(ckpt, out, precision=precision, guard=False, force=True, quiet=True, int8_policy=policy, int8_exclude=exclude)
    print(f"  packaged {out.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint folder (default: the demo model, trained on first use)")
    ap.add_argument("--work", default=str(REPO / "bench" / "results" / "accuracy-artifacts"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "accuracy.json"))
    ap.add_argument("--limit", type=int, default=None, help="first N sentences of each set (default: all)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--naive-int8", action="store_true", help="also score int8 with every MatMul quantized (no exclusions)")
    ap.add_argument("--fast-int8", action="store_true", help="also score int8 with the fast policy (--int8-policy head)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="reuse artifacts already under --work")
    args = ap.parse_args(argv)

    import torch

    from pyner.runtime import load
    from pyner_export.checkpoint import forward_input_names, inspect_checkpoint, load_model
    from pyner_export.evaldata import entity_f1, predict_word_tags
    from pyner_export.guard import torch_window_logits

    torch.set_num_threads(args.threads)
    if args.model:
        ckpt_dir = Path(args.model)
    else:
        from pyner_export.demo import ensure_demo_checkpoint

        ckpt_dir = ensure_demo_checkpoint()
    work = Path(args.work)
    precisions = [p for p in args.precisions.split(",") if p]
    variants = [(p, p, None, None) for p in precisions]
    if args.fast_int8:
        variants.append(("int8", "int8-head", None, "head"))
    if args.naive_int8:
        variants.append(("int8", "int8-naive", [], None))
    arts = {}
    for precision, name, exclude, policy in variants:
        folder = work / name
        if not (args.reuse and (folder / "pyner.json").is_file()):
            folder = build(ckpt_dir, work, precision, exclude=exclude, name=name, policy=policy)
        arts[name] = load(folder, threads=args.threads)

    ckpt = inspect_checkpoint(ckpt_dir)
    tmodel = load_model(ckpt)
    tmodel.eval()
    reference = arts[variants[0][1]]  # any artifact: all share the tokenizer
    torch_logits = torch_window_logits(tmodel, forward_input_names(tmodel), ckpt.tokenizer["pad_token_id"])

    results = {"model": str(ckpt_dir), "limit": args.limit, "threads": args.threads, "machine": platform.processor() or platform.machine(),
               "load_average_at_start": os.getloadavg()[0], "mode": "seqeval strict IOB2, PER/ORG/LOC (MISC -> O)",
               "sets": {}}
    for set_name, path in SETS.items():
        sents, mapped = read_mapped(path, reference.labels, args.limit)
        gold = [t for _, t in sents]
        t0 = time.perf_counter()
        ref_tags = predict_word_tags(reference, sents, torch_logits)
        entry = {"file": str(path), "sentences": len(sents), "words": sum(len(w) for w, _ in sents), "misc_tags_mapped_to_O": mapped,
                 "engines": {"pytorch-fp32": {"f1": entity_f1(gold, ref_tags), "seconds": round(time.perf_counter() - t0, 1)}}}
        f_ref = entry["engines"]["pytorch-fp32"]["f1"]
        for name, model in arts.items():
            t0 = time.perf_counter()
            tags = predict_word_tags(model, sents)
            f = entity_f1(gold, tags)
            entry["engines"][f"artifact-{name}"] = {
                "f1": f, "drop": f_ref - f, "word_tag_agreement_with_pytorch": tag_agreement(tags, ref_tags),
                "identical_to_pytorch": tags == ref_tags, "seconds": round(time.perf_counter() - t0, 1)}
        results["sets"][set_name] = entry
        print(f"  {set_name}: done", file=sys.stderr)

    q = arts.get("int8")
    if q is not None:
        results["int8_quantization"] = q.manifest.raw.get("quantization")
    results["targets_max_drop"] = TARGETS
    verdicts = {}
    for name in arts:
        base = name.split("-")[0]
        drops = [results["sets"][s]["engines"][f"artifact-{name}"]["drop"] for s in SETS]
        worst = max(drops)
        ok = (all(results["sets"][s]["engines"][f"artifact-{name}"]["identical_to_pytorch"] for s in SETS)
              if base == "fp32" else worst <= TARGETS[base] + 1e-9)
        verdicts[name] = {"worst_drop": worst, "target": TARGETS[base], "met": ok}
    results["verdicts"] = verdicts
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(markdown(results))
    print(f"\n(JSON: {out})")
    return 0


def markdown(results: dict) -> str:
    sets = list(results["sets"])
    head = "| engine | " + " | ".join(f"{s} F1 (Δ)" for s in sets) + " | word tags = PyTorch |"
    lines = [head, "|---|" + "---|" * len(sets) + "---|"]
    engines = list(results["sets"][sets[0]]["engines"])
    for e in engines:
        cells = []
        agree = []
        for s in sets:
            r = results["sets"][s]["engines"][e]
            cells.append(f"{r['f1']:.2f}" + (f" ({-r['drop']:+.2f})" if "drop" in r else ""))
            if "word_tag_agreement_with_pytorch" in r:
                agree.append(f"{100 * r['word_tag_agreement_with_pytorch']:.2f}%")
        lines.append(f"| {e} | " + " | ".join(cells) + f" | {' / '.join(agree) if agree else 'reference'} |")
    n = ", ".join(f"{s}: {results['sets'][s]['sentences']} sentences" for s in sets)
    lines.append("")
    lines.append(f"{results['mode']}; {n}.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
