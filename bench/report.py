"""Plots (PNG, matplotlib Agg) and the Markdown summary, made from the run's results only.

Every figure is shown as a ratio to its baseline from the same run; the targets of issue 8 are
evaluated here (`targets`), so the summary and BENCHMARKS.md state the same numbers.
"""

from __future__ import annotations

from pathlib import Path

from .common import Results

COLORS = {"pytorch-fp32": "#7f7f7f", "ort-fp32-plain": "#1f77b4", "ort-fp32-optimized": "#2ca02c", "ort-int8": "#d62728", "ort-int8-head-only": "#ff9896",
          "pytorch-fp32-cuda": "#8c564b", "pytorch-fp16-cuda": "#e377c2", "ort-fp16-cuda-iobinding": "#9467bd",
          "pipeline-pytorch-fp32": "#7f7f7f", "pyner-fp32": "#2ca02c", "pyner-int8": "#d62728", "pyner-int8-head": "#ff9896", "jvm-fp32": "#ff7f0e",
          "sidecar-c32-fp32": "#17becf"}


def _best(rows: list[dict], config: str) -> dict | None:
    cand = [r for r in rows if r.get("config") == config]
    return max(cand, key=lambda r: r["throughput"]) if cand else None


def _at(rows: list[dict], config: str, **where) -> dict | None:
    for r in rows:
        if r.get("config") == config and all(r.get(k) == v for k, v in where.items()):
            return r
    return None


def targets(results: Results) -> list[dict]:
    """Issue 8's and issue 18's targets, each with the measured ratio from this run (None when not measured)."""
    out = []
    wc = [r for r in results.rows("worstcase") if r.get("group") == "batch"]
    rt = results.rows("realtext")
    lim = [r for r in results.rows("limit") if r.get("group") == "fraction"]
    checks = {c["config"]: c for c in results.scenario("realtext")["checks"]} if "realtext" in results.data["scenarios"] else {}

    def add(name, required, measured, how, ok_extra=True, note="", issue=8):
        met = None if measured is None else (measured >= required and ok_extra)
        out.append({"target": name, "required": required, "measured": measured, "met": met, "how": how, "note": note,
                    "issue": issue})

    def rt_ratio(group, config):
        r = _at(rt, config, group=group)
        return r.get("ratio") if r else None

    c = checks.get("pyner-fp32 (sentences)")
    add("real-text sentences: pyner fp32 / transformers' pipeline (entities identical)", 2.5,
        rt_ratio("sentences", "pyner-fp32"), "sentences/s, same model, aggregation simple",
        ok_extra=bool(c and c["passed"]), note="" if c is None else f"entities identical on {c['identical_texts']}/{c['texts']} texts")
    c = checks.get("pyner-int8 (sentences)")
    add("real-text sentences: pyner int8 / transformers' pipeline", 4.0, rt_ratio("sentences", "pyner-int8"),
        "sentences/s", note="" if c is None else f"entity F1 vs pipeline {c['entity_f1']:.4f}")
    agree = results.scenario("realtext").get("facts", {}).get("agreement pyner-int8-head (sentences) vs pipeline-pytorch-fp32") \
        if "realtext" in results.data["scenarios"] else None
    add("real-text sentences: pyner int8 --int8-policy head / transformers' pipeline", 4.0, rt_ratio("sentences", "pyner-int8-head"),
        "sentences/s", note="" if not isinstance(agree, dict) else f"entity F1 vs pipeline {agree['entity_f1']:.4f}")
    base, fp32 = _best(wc, "pytorch-fp32"), None
    for cfg in ("ort-fp32-optimized", "ort-fp32-plain"):
        b = _best(wc, cfg)
        if b and (fp32 is None or b["throughput"] > fp32["throughput"]):
            fp32 = b
    add("256-token worst case: ORT fp32 / PyTorch eager (best batch each)", 1.2,
        fp32["throughput"] / base["throughput"] if base and fp32 else None, "docs/s",
        note=f"{fp32['config']} at batch {fp32['batch_size']} vs PyTorch at batch {base['batch_size']}" if base and fp32 else "")
    f = [r for r in lim if r["config"] in ("ort-fp32-optimized", "ort-fp32-plain") and r.get("fraction_of_peak")]
    f = max(f, key=lambda r: r["fraction_of_peak"]) if f else None
    add("256-token worst case: ORT fp32 fraction of the fp32 GEMM peak", 0.85, f["fraction_of_peak"] if f else None,
        "achieved GFLOP/s / peak GFLOP/s", note=f"{f['config']} at batch {f['batch_size']}" if f else "")
    i8 = _best(wc, "ort-int8")
    add("256-token worst case: ORT int8 / PyTorch eager (best batch each)", 2.5,
        i8["throughput"] / base["throughput"] if base and i8 else None, "docs/s")
    i8h = _best(wc, "ort-int8-head-only")
    add("256-token worst case: ORT int8 --int8-policy head / PyTorch eager (best batch each)", 2.5,
        i8h["throughput"] / base["throughput"] if base and i8h else None, "docs/s")
    jvm, py = _at(rt, "jvm-fp32", group="sentences"), _at(rt, "pyner-fp32", group="sentences")
    add("JVM in-process / Python runtime (same fp32 artifact, sentences)", 0.9,
        jvm["throughput"] / py["throughput"] if jvm and py else None, "sentences/s")
    sc = _at(rt, "sidecar-c32-fp32", group="sentences")
    add("sidecar at concurrency 32 / in-process Python runtime (sentences)", 0.8,
        sc["throughput"] / py["throughput"] if sc and py else None, "sentences/s")
    g_ort, g_pt = _at(wc, "ort-fp16-cuda-iobinding", batch_size=128), _at(wc, "pytorch-fp32-cuda", batch_size=128)
    g_frac = next((r for r in lim if r["config"] == "ort-fp16-cuda-iobinding" and r.get("fraction_of_peak")), None)
    add("GPU: ORT fp16 (IO binding) / PyTorch fp32 at batch 128, 256 tokens", 3.5,
        g_ort["throughput"] / g_pt["throughput"] if g_ort and g_pt else None, "docs/s",
        note=("no CUDA device in this run" if not g_ort else
              f"{g_frac['fraction_of_peak']:.0%} of the fp16 tensor-core GEMM peak" if g_frac else ""))
    # Issue 18: the default CPU artifact against the peers a user would pick on a CPU with bf16 matrix units.
    bf = [b for b in (_best(wc, "pytorch-bf16"), _best(wc, "pytorch-bf16-autocast")) if b]
    bf = max(bf, key=lambda r: r["throughput"]) if bf else None
    add("256-token worst case: pyner int8 / PyTorch bf16 (the better of weights and autocast; best batch each)", 1.5,
        i8["throughput"] / bf["throughput"] if i8 and bf else None, "docs/s", issue=18,
        note=f"{bf['config']} at batch {bf['batch_size']}" if bf else "")
    ov = _best(wc, "openvino-default")
    add("256-token worst case: pyner int8 / OpenVINO at its default precision (best batch each)", 1.0,
        i8["throughput"] / ov["throughput"] if i8 and ov else None, "docs/s", issue=18,
        note=f"OpenVINO ran {ov['precision']}" if ov else "")
    f8 = next((r for r in lim if r["config"] == "ort-int8" and r.get("fraction_of_peak")), None)
    add("256-token worst case: pyner int8 fraction of the uint8 x int8 GEMM peak", 0.5,
        f8["fraction_of_peak"] if f8 else None, "achieved GOP/s / peak GOP/s", issue=18)
    p8, pb = _at(rt, "pyner-int8", group="sentences"), _at(rt, "pipeline-pytorch-bf16", group="sentences")
    add("real-text sentences: pyner int8 / transformers' pipeline in bf16", 1.5,
        p8["throughput"] / pb["throughput"] if p8 and pb else None, "sentences/s", issue=18)
    c = checks.get("pyner-int8 (sentences)")
    add("real-text sentences: pyner int8 texts with entities identical to the fp32 pipeline's (fraction)", 0.97,
        c["identical_fraction"] if c else None, "identical texts / texts", issue=18)
    return out


# ---------------------------------------------------------------- plots


def make_plots(results: Results) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for fn in (_plot_worstcase, _plot_realtext, _plot_limit, _plot_scaling):
        path = fn(results, plt)
        if path:
            made.append(path)
        plt.close("all")
    return made


def _plot_worstcase(results: Results, plt) -> Path | None:
    rows = [r for r in results.rows("worstcase") if r.get("group") == "batch"]
    if not rows:
        return None
    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for cfg in configs:
        rs = sorted((r for r in rows if r["config"] == cfg), key=lambda r: r["batch_size"])
        x = [r["batch_size"] for r in rs]
        a1.plot(x, [r["throughput"] for r in rs], marker="o", label=cfg, color=COLORS.get(cfg))
        if any(r.get("ratio") for r in rs):
            a2.plot(x, [r.get("ratio") or float("nan") for r in rs], marker="o", label=cfg, color=COLORS.get(cfg))
    model = results.scenario("worstcase")["facts"].get("model", {}).get("name", "?")
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.set_xlabel("batch size (documents of 256 tokens)")
        a.grid(alpha=0.3)
    a1.set_ylabel("documents / s")
    meta = results.data["meta"]
    clock = " (CPU time)" if meta.get("clock") == "cpu" else ""
    a1.set_title(f"Worst case: {model}, 256 tokens, {meta['threads']} thread(s){clock}")
    a2.axhline(1.0, color="#7f7f7f", lw=1)
    a2.set_ylabel("x PyTorch eager fp32 (same batch)")
    a2.set_title("Speed-up over PyTorch, same run")
    a1.legend(fontsize=8)
    fig.tight_layout()
    path = results.out / "fig_worstcase.png"
    fig.savefig(path, dpi=90)
    return path


def _plot_realtext(results: Results, plt) -> Path | None:
    rows = results.rows("realtext")
    groups = [g for g in ("sentences", "documents") if any(r.get("group") == g for r in rows)]
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, g in zip(axes[0], groups):
        rs = [r for r in rows if r.get("group") == g]
        names = [r["config"] for r in rs]
        vals = [r["throughput"] for r in rs]
        bars = ax.bar(range(len(rs)), vals, color=[COLORS.get(n, "#999999") for n in names])
        for b, r in zip(bars, rs):
            label = f"{r['ratio']:.2f}x" if r.get("ratio") else "1.00x"
            ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rs)), [n.replace("-", "\n", 1) for n in names], fontsize=7)
        ax.set_ylabel(rs[0]["unit"])
        clock = ", CPU time" if results.data["meta"].get("clock") == "cpu" else ""
        ax.set_title(f"WikiGold {g} ({rs[0]['items']}), end to end, {results.data['meta']['threads']} thread(s){clock}",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = results.out / "fig_realtext.png"
    fig.savefig(path, dpi=90)
    return path


def _plot_limit(results: Results, plt) -> Path | None:
    lim = results.rows("limit")
    frac = [r for r in lim if r.get("group") == "fraction"]
    peaks = results.scenario("limit")["facts"].get("peak_gflops", {}) if "limit" in results.data["scenarios"] else {}
    if not frac or not peaks:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = [r["config"] for r in frac]
    bars = ax.bar(range(len(frac)), [r["gflops"] for r in frac], color=[COLORS.get(n, "#999999") for n in names])
    for b, r in zip(bars, frac):
        if r.get("fraction_of_peak"):
            ax.annotate(f"{r['fraction_of_peak']:.0%} of {r['peak']}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    for key, style in (("fp32", "--"), ("int8", ":")):
        if peaks.get(key):
            ax.axhline(peaks[key], ls=style, color="k", lw=1)
            ax.annotate(f"{key} GEMM peak {peaks[key]:.0f}", (len(frac) - 0.5, peaks[key]), ha="right", va="bottom", fontsize=8)
    ax.set_xticks(range(len(frac)), names, fontsize=8)
    ax.set_ylabel("achieved GFLOP/s (model FLOPs / time)")
    ax.set_title("Worst case against the machine's GEMM peak (best batch each)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = results.out / "fig_limit.png"
    fig.savefig(path, dpi=90)
    return path


def _plot_scaling(results: Results, plt) -> Path | None:
    rows = results.rows("scaling")
    th = [r for r in rows if r.get("group") == "threads"]
    mem = [r for r in rows if r.get("group") == "memory"]
    if not th and not mem:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for cfg in dict.fromkeys(r["config"] for r in th):
        rs = sorted((r for r in th if r["config"] == cfg), key=lambda r: r["threads"])
        a1.plot([r["threads"] for r in rs], [r["throughput"] for r in rs], marker="o", label=cfg, color=COLORS.get(cfg))
    a1.set_xlabel("threads")
    a1.set_ylabel("documents / s (256 tokens)")
    a1.set_title("Throughput against threads")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    for cfg in dict.fromkeys(r["config"] for r in mem):
        rs = sorted((r for r in mem if r["config"] == cfg), key=lambda r: r["batch_size"])
        a2.plot([r["batch_size"] for r in rs], [r["peak_rss_mib"] for r in rs], marker="o", label=cfg, color=COLORS.get(cfg))
    a2.set_xscale("log", base=2)
    a2.set_xlabel("batch size (256 tokens)")
    a2.set_ylabel("peak RSS (MiB)")
    a2.set_title("Memory against batch size")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    path = results.out / "fig_scaling.png"
    fig.savefig(path, dpi=90)
    return path


# ---------------------------------------------------------------- summary


def _f(v, digits=2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def machine_line(meta: dict) -> str:
    m = meta.get("machine", {})
    cpu = m.get("cpu", {})
    gpu = m.get("gpu")
    return (f"{cpu.get('model')} ({cpu.get('vendor')}), {cpu.get('cores')} cores x {cpu.get('threads_per_core')} thread, "
            f"ISA {', '.join(cpu.get('isa', []))}, L2 {cpu.get('l2')}, L3 {cpu.get('l3')}, "
            f"{m.get('memory_gib')} GiB RAM{', ' + cpu['hypervisor'] + ' VM' if cpu.get('hypervisor') else ''}; "
            f"GPU: {gpu['name'] if gpu else 'none'}")


def summary_markdown(results: Results) -> str:
    d = results.data
    meta = d["meta"]
    lines = [f"# pyner bench: {meta.get('started_utc')} UTC", "",
             f"- command: `{meta.get('command')}`",
             f"- machine: {machine_line(meta)}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in meta.get('machine', {}).get('versions', {}).items())}",
             f"- threads per engine: {meta.get('threads')}; clock: {meta.get('clock', 'wall')}; quick: {meta.get('quick')}", ""]
    every = targets(results)
    for issue, title in ((8, "issue 8"), (18, "issue 18: CPU matrix engines")):
        lines += [f"## Targets ({title}), ratios from this run", "", "| target | required | measured | met |", "|---|---|---|---|"]
        for t in (t for t in every if t["issue"] == issue):
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            req = f"≥ {t['required']:.0%}" if "fraction" in t["target"] else f"≥ {t['required']}x"
            meas = "—" if t["measured"] is None else (f"{t['measured']:.0%}" if "fraction" in t["target"] else f"{t['measured']:.2f}x")
            lines.append(f"| {t['target']} | {req} | {meas} | {met}{' (' + t['note'] + ')' if t['note'] else ''} |")
        lines.append("")
    for name, sc in d["scenarios"].items():
        lines += [f"## {name} ({sc['status']})", ""]
        facts = sc.get("facts", {})
        if facts:
            for k, v in facts.items():
                lines.append(f"- {k}: {v}")
            lines.append("")
        rows = sc["rows"]
        if rows:
            lines += _rows_table(name, rows)
        for c in sc["checks"]:
            lines.append(f"- check {'ok' if c['passed'] else '**FAILED**'}: {c['config']} vs {c['reference']}: "
                         f"{c['metric']} = {_f(c['value'], 6)} (threshold {c['threshold']})")
        for s in sc["skipped"]:
            lines.append(f"- skipped: {s['what']}: {s['why']}")
        for n in sc["notes"]:
            lines.append(f"- note: {n}")
        if sc.get("error"):
            lines.append(f"- **error**: {sc['error']}")
        lines.append("")
    figs = sorted(p.name for p in results.out.glob("fig_*.png"))
    if figs:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figs] + [""]
    return "\n".join(lines)


def _rows_table(name: str, rows: list[dict]) -> list[str]:
    groups = list(dict.fromkeys(r.get("group", "") for r in rows))
    out = []
    for g in groups:
        rs = [r for r in rows if r.get("group", "") == g]
        if g == "gemm":
            cols = [("config", "kernel"), ("precision", "precision"), ("gflops", "G(FL)OP/s")]
        elif g == "fraction":
            cols = [("config", "config"), ("batch_size", "batch"), ("throughput", "docs/s"), ("gflops", "GFLOP/s"),
                    ("fraction_of_peak", "of its peak"), ("fraction_of_fp32_peak", "of fp32 peak")]
        elif g == "memory":
            cols = [("config", "config"), ("batch_size", "batch"), ("rss_mib", "RSS loaded MiB"), ("peak_rss_mib", "peak RSS MiB")]
        elif g == "threads":
            cols = [("config", "config"), ("threads", "threads"), ("throughput", "docs/s"), ("ratio", "x 1 thread")]
        elif name == "realtext":
            cols = [("config", "config"), ("items", "texts"), ("seconds", "seconds"), ("throughput", rs[0].get("unit", "")),
                    ("ratio", "x pipeline"), ("breakdown_s", "tokenize / ORT / decode s")]
        else:
            cols = [("config", "config"), ("batch_size", "batch"), ("throughput", "docs/s"), ("ratio", "x PyTorch"),
                    ("gflops", "GFLOP/s")]
        out += [f"### {g}", "", "| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
        for r in rs:
            cells = []
            for k, _ in cols:
                v = r.get(k)
                if k == "breakdown_s" and isinstance(v, dict):
                    v = " / ".join(f"{x:.2f}" for x in v.values())
                elif k.startswith("fraction") and isinstance(v, float):
                    v = f"{v:.0%}"
                cells.append(_f(v))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def write_summary(results: Results) -> Path:
    path = results.out / "summary.md"
    path.write_text(summary_markdown(results), encoding="utf-8")
    return path
