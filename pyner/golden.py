"""Golden fixtures: the texts every artifact carries, computing their outputs, and comparing runtimes.

At packaging time the RUNTIME (not PyTorch) computes, for each golden text, its windows (token ids,
offsets, special-token mask), the per-token scores and labels ONNX Runtime gives, and the entities
for every aggregation strategy. Every runtime (Python `verify`, the JVM on load, the sidecar's
readiness check) re-computes them and must agree (ARCHITECTURE.md, "Golden fixtures").
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import artifact as _art
from .errors import ArtifactError

GOLDEN_FORMAT_VERSION = 1


def _long_document() -> str:
    """A deterministic news-like document long enough to need several windows at max_length 512."""
    paragraphs = [
        "BERLIN (Reuters) - Chancellor Angela Merkel met French President Emmanuel Macron in Berlin on Tuesday "
        "to discuss the European Union budget, officials said.",
        "Shares of Apple Inc. and Microsoft Corp. rose 2.3% on the Nasdaq after analysts at Goldman Sachs "
        "upgraded both companies.",
        "The United Nations said on Friday that aid convoys had reached Aleppo, Syria, for the first time since March.",
        "Lionel Messi scored twice as FC Barcelona beat Real Madrid 3-1 at the Camp Nou in front of 98,000 fans.",
        "Dr. María José García-López, a researcher at the Universidad de Buenos Aires, told El País that the "
        "results were \"very encouraging\".",
        "In Tokyo, Prime Minister Shinzo Abe and Toyota Motor Corp. chairman Akio Toyoda opened the new plant near Nagoya.",
    ]
    parts = []
    for i in range(24):
        parts.append(f"[{i + 1}] " + paragraphs[i % len(paragraphs)])
    return "\n\n".join(parts)


# (id, text): news-like, punctuation-heavy, accented and combining marks, CJK, RTL, emoji (ZWJ,
# flags, skin tones), control and zero-width characters, whitespace, empty, very long.
GOLDEN_TEXTS: list[tuple[str, str]] = [
    ("news-01", "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."),
    ("news-02", "Apple Inc. shares rose after Tim Cook spoke at the Steve Jobs Theater in Cupertino, California."),
    ("news-03", "The World Health Organization (WHO) warned on Monday that cases in Brazil and India were rising."),
    ("news-04", "LONDON, March 3 (Reuters) - BP Plc said it would sell its stake in Rosneft, the Russian oil company."),
    ("news-05", "Barack Obama and Michelle Obama visited Nairobi, Kenya, where they met President Uhuru Kenyatta."),
    ("news-06", "Manchester United's new manager, Erik ten Hag, arrived from Ajax Amsterdam in May."),
    ("news-07", "Google, Amazon and Meta Platforms face new antitrust rules from the European Commission in Brussels."),
    ("punct-01", "The U.S. and the U.K. signed the deal; O'Neil's e-mail (sent 9:30 a.m.) confirmed it."),
    ("punct-02", "\"Wait -- what?!\" asked J.R.R. Tolkien's editor... [sic] {Oxford} <University> #books @OUP"),
    ("punct-03", "AT&T, Procter & Gamble, and Johnson & Johnson reported Q3 results: +4.5%, -1.2%, 0.0%."),
    ("punct-04", "Visit https://example.com/path?q=New+York&lang=en or mail info@acme-corp.co.uk today!"),
    ("accent-01", "François Hollande et Ségolène Royal à Nîmes, près de Montpellier."),
    ("accent-02", "José Mourinho trained Internazionale in Milano and Real Madrid in España."),
    ("combining-01", "Zoe\u0308 Saldan\u0303a visited Sa\u0303o Paulo and Mu\u0308nchen."),
    ("nfkc-01", "The ﬁrst Ｔｏｋｙｏ office of Ⅸ Corp. opened at ① Main St. in ｼﾌﾞﾔ (Shibuya)."),
    ("cjk-01", "習近平主席は東京で岸田文雄首相と会談した。"),
    ("cjk-02", "三星电子在首尔发布了新款手机，李在镕出席了发布会。"),
    ("cjk-03", "서울에서 문재인 대통령이 기자회견을 열었다."),
    ("rtl-01", "التقى محمد بن سلمان مع جو بايدن في الرياض."),
    ("rtl-02", "בנימין נתניהו נפגש עם עמנואל מקרון בירושלים."),
    ("mixed-01", "Satya Nadella (萨提亚·纳德拉) spoke in Dubai (دبي) about Microsoft."),
    ("emoji-01", "Taylor Swift 🎤 performed in Paris 🇫🇷 and London 🇬🇧 last night 🎉"),
    ("emoji-02", "👨‍👩‍👧‍👦 Family trip to New York with Sarah 👋🏽 and Tom 👍🏿!"),
    ("emoji-03", "🏳️‍🌈 Pride march in San Francisco; Mayor London Breed 🤝 organizers."),
    ("zw-01", "Elon\u200bMusk\u200c and Tesla\u200d Inc.\ufeff met in Austin\u2060 Texas."),
    ("control-01", "Jeff Bezos\tfounded Amazon\nin Seattle,\r\nWashington.\x07"),
    ("space-01", "   Warren   Buffett    of   Berkshire   Hathaway   in   Omaha   "),
    ("lower-01", "barack obama visited new delhi with narendra modi"),
    ("upper-01", "NASA AND SPACEX LAUNCHED A ROCKET FROM CAPE CANAVERAL, FLORIDA"),
    ("twitter-01", "@BBCBreaking: #Brexit vote in Westminster tonight, says @theresa_may RT if u agree lol"),
    ("numbers-01", "On 2024-03-15 at 14:30 UTC, 1,234,567 shares of IBM traded at $145.67 in New York."),
    ("single-01", "Paris"),
    ("empty-01", ""),
    ("whitespace-01", " \t\n  "),
    ("long-01", _long_document()),
]


def compute_golden(model, texts: Sequence[tuple[str, str]] = GOLDEN_TEXTS) -> dict[str, Any]:
    """Run `model` (a pyner.runtime.Model) on the golden texts and record everything runtimes must reproduce."""
    from .artifact import AGGREGATIONS

    encoded = model.encode([t for _, t in texts])
    flat = [w for e in encoded for w in e.windows]
    scores = model.forward(flat)
    cases, k = [], 0
    for (cid, text), enc in zip(texts, encoded):
        n = len(enc.windows)
        wscores = scores[k : k + n]
        k += n
        windows = []
        for w, s in zip(enc.windows, wscores):
            windows.append(
                {
                    "input_ids": w.input_ids.tolist(),
                    "type_ids": w.type_ids.tolist(),
                    "offsets": w.offsets.tolist(),
                    "special_tokens_mask": w.special_tokens_mask.tolist(),
                    "labels": np.argmax(s, axis=-1).tolist(),
                    "scores": s.astype(np.float32).tolist(),
                }
            )
        entities = {a: model.decode(enc, wscores, aggregation=a) for a in AGGREGATIONS}
        cases.append({"id": cid, "text": text, "windows": windows, "entities": entities})
    return {"format_version": GOLDEN_FORMAT_VERSION, "cases": cases}


def write_golden(folder: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Compute the golden fixtures of the model in `folder` (before checksums exist) and write golden.json.

    Returns a summary for the packaging report.
    """
    from .runtime import Model

    folder = Path(folder)
    model = Model.from_parts(folder, manifest)
    golden = compute_golden(model)
    (folder / _art.GOLDEN_FILE).write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    n_windows = sum(len(c["windows"]) for c in golden["cases"])
    n_tokens = sum(len(w["input_ids"]) for c in golden["cases"] for w in c["windows"])
    n_entities = sum(len(c["entities"]["simple"]) for c in golden["cases"])
    return {"cases": len(golden["cases"]), "windows": n_windows, "tokens": n_tokens, "entities_simple": n_entities}


def read_golden(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / _art.GOLDEN_FILE
    try:
        golden = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    if golden.get("format_version", 0) > GOLDEN_FORMAT_VERSION:
        raise ArtifactError(f"{path}: golden format {golden.get('format_version')} is newer than this pyner supports ({GOLDEN_FORMAT_VERSION})")
    return golden


class Comparison:
    """Differences between a runtime's outputs and the golden fixtures, with counts for reports."""

    def __init__(self, tolerance: float):
        self.tolerance = tolerance
        self.cases = 0
        self.tokens = 0
        self.entities = 0
        self.max_score_diff = 0.0
        self.differences: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.differences

    def add(self, msg: str) -> None:
        self.differences.append(msg)

    def summary(self) -> str:
        status = "OK" if self.ok else f"{len(self.differences)} difference(s)"
        return (
            f"{status}: {self.cases} cases, {self.tokens} tokens, {self.entities} entities compared; "
            f"worst score difference {self.max_score_diff:.3g} (tolerance {self.tolerance:g})"
        )


def compare_entities(cmp: Comparison, where: str, got: list[dict], want: list[dict]) -> None:
    """Entities identical (label, start, end, word, index) and scores within the tolerance."""
    cmp.entities += len(want)
    if len(got) != len(want):
        cmp.add(f"{where}: {len(got)} entities, golden has {len(want)}")
        return
    for j, (g, w) in enumerate(zip(got, want)):
        for key in ("entity_group", "entity", "start", "end", "word", "index"):
            if g.get(key) != w.get(key):
                cmp.add(f"{where}[{j}].{key}: {g.get(key)!r} != golden {w.get(key)!r}")
                break
        else:
            d = abs(float(g["score"]) - float(w["score"]))
            cmp.max_score_diff = max(cmp.max_score_diff, d)
            if not d <= cmp.tolerance:
                cmp.add(f"{where}[{j}].score: {g['score']!r} differs from golden {w['score']!r} by {d:.3g}")


def compare_model(model, golden: dict[str, Any], tolerance: float | None = None, *, limit: int = 20) -> Comparison:
    """Re-run every golden case through `model` and compare windows, per-token outputs and entities."""
    from .artifact import AGGREGATIONS

    tol = model.manifest.score_tolerance if tolerance is None else tolerance
    cmp = Comparison(tol)
    cases = golden["cases"]
    encoded = model.encode([c["text"] for c in cases])
    flat = [w for e in encoded for w in e.windows]
    scores = model.forward(flat)
    k = 0
    for case, enc in zip(cases, encoded):
        cmp.cases += 1
        cid = case["id"]
        n = len(enc.windows)
        wscores = scores[k : k + n]
        k += n
        if n != len(case["windows"]):
            cmp.add(f"{cid}: {n} windows, golden has {len(case['windows'])}")
            continue
        for wi, (w, s, gw) in enumerate(zip(enc.windows, wscores, case["windows"])):
            where = f"{cid} window {wi}"
            for key in ("input_ids", "offsets", "special_tokens_mask"):
                got = getattr(w, key).tolist()
                if got != gw[key]:
                    first = next((i for i, (a, b) in enumerate(zip(got, gw[key])) if a != b), min(len(got), len(gw[key])))
                    cmp.add(f"{where}: {key} differ at token {first}")
                    break
            else:
                cmp.tokens += len(w)
                labels = np.argmax(s, axis=-1).tolist()
                if labels != gw["labels"]:
                    i = next(i for i, (a, b) in enumerate(zip(labels, gw["labels"])) if a != b)
                    cmp.add(f"{where}: label of token {i} is {labels[i]}, golden {gw['labels'][i]}")
                want = np.asarray(gw["scores"], dtype=np.float64)
                d = float(np.max(np.abs(s.astype(np.float64) - want))) if want.size else 0.0
                if math.isnan(d):
                    cmp.add(f"{where}: NaN in scores")
                    d = math.inf
                cmp.max_score_diff = max(cmp.max_score_diff, d)
                if d > tol:
                    cmp.add(f"{where}: scores differ by {d:.3g} (tolerance {tol:g})")
        for agg in AGGREGATIONS:
            if agg in case.get("entities", {}):
                got = model.decode(enc, wscores, aggregation=agg)
                compare_entities(cmp, f"{cid} entities[{agg}]", got, case["entities"][agg])
    if len(cmp.differences) > limit:
        extra = len(cmp.differences) - limit
        cmp.differences = cmp.differences[:limit] + [f"... and {extra} more"]
    return cmp


def self_check(model) -> Comparison:
    """Raise ArtifactError if `model` does not reproduce its artifact's golden fixtures."""
    cmp = compare_model(model, read_golden(model.folder))
    if not cmp.ok:
        raise ArtifactError(
            f"{model.folder / _art.GOLDEN_FILE}: this runtime does not reproduce the golden fixtures: "
            + "; ".join(cmp.differences[:3]),
            hint="run `pyner verify` for the full list",
        )
    return cmp
