"""Golden fixtures, the format layer: the texts every artifact carries, reading and writing
golden.json, and the one comparison of two runtimes' outputs in its schema. Knows nothing of models.

At packaging time the RUNTIME (not PyTorch) computes, for each golden text, its windows (token ids,
offsets, special-token mask), the per-token scores and labels ONNX Runtime gives, and the entities
for every aggregation strategy (`pyner.check`, above this module and the runtime). Every runtime
(Python `verify`, the JVM on load, the sidecar's readiness check) re-computes them and must agree
(ARCHITECTURE.md, "Golden fixtures").
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import artifact as _art
from .artifact import AGGREGATIONS
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


def save_golden(folder: str | Path, golden: dict[str, Any]) -> dict[str, Any]:
    """Write golden.json into `folder`; return a summary for the packaging report."""
    (Path(folder) / _art.GOLDEN_FILE).write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n",
                                                 encoding="utf-8")
    cases = golden["cases"]
    return {"cases": len(cases), "windows": sum(len(c["windows"]) for c in cases),
            "tokens": sum(len(w["input_ids"]) for c in cases for w in c["windows"]),
            "entities_simple": sum(len(c.get("entities", {}).get("simple", [])) for c in cases)}


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


# -- the one comparison over the golden schema ------------------------------------------------------

# Compared for identity; "score" is compared within the tolerance.
WINDOW_KEYS = ("input_ids", "type_ids", "offsets", "special_tokens_mask")
ENTITY_KEYS = ("entity_group", "entity", "start", "end", "word", "index")
# A window's model outputs (NER: scores; text classification: logits and scores), compared within the tolerance.
OUTPUT_KEYS = ("scores", "logits")


@dataclass
class Comparison:
    """Differences between two runtimes' outputs in the golden schema (`got` vs `want`), with counts.

    Token ids, type ids, offsets, special masks, labels and entity label/span/word/index identical;
    scores within `tolerance` (`bit_identical` when the worst difference is 0). The first `limit`
    differences are kept as messages naming the text, window, token or entity."""

    tolerance: float
    names: tuple[str, str] = ("runtime", "golden")
    limit: int = 20
    texts: int = 0
    windows: int = 0
    tokens: int = 0
    entities: int = 0
    identical_texts: int = 0
    max_score_diff: float = 0.0
    differences: list[str] = field(default_factory=list)
    total_differences: int = 0

    @property
    def ok(self) -> bool:
        return self.total_differences == 0

    @property
    def bit_identical(self) -> bool:
        return self.ok and self.max_score_diff == 0.0

    def add(self, msg: str) -> None:
        self.total_differences += 1
        if len(self.differences) < self.limit:
            self.differences.append(msg)

    def summary(self) -> str:
        status = "OK" if self.ok else f"{self.total_differences} difference(s)"
        return (f"{status}: {self.texts} cases, {self.tokens} tokens, {self.entities} entities compared; "
                f"worst score difference {self.max_score_diff:.3g} (tolerance {self.tolerance:g})")

    def _scores_ok(self, d: float) -> bool:
        d = math.inf if d != d else d  # NaN
        self.max_score_diff = max(self.max_score_diff, d)
        return d <= self.tolerance

    def compare_entities(self, where: str, got: Sequence[dict], want: Sequence[dict]) -> None:
        """Entities identical (keys, label, start, end, word, index), scores within the tolerance;
        the first difference of a list is reported."""
        a, b = self.names
        self.entities += len(want)
        if len(got) != len(want):
            self.add(f"{where}: {a} has {len(got)} entities, {b} {len(want)}")
            return
        for j, (g, w) in enumerate(zip(got, want)):
            bad = next((k for k in ENTITY_KEYS if g.get(k) != w.get(k)), None)
            if bad is not None:
                self.add(f"{where}[{j}].{bad}: {a} {g.get(bad)!r} vs {b} {w.get(bad)!r}")
                return
            if set(g) != set(w):
                self.add(f"{where}[{j}]: {a} keys {sorted(g)} vs {b} keys {sorted(w)}")
                return
            if not self._scores_ok(abs(float(g["score"]) - float(w["score"]))):
                self.add(f"{where}[{j}].score: {a} {g['score']!r} vs {b} {w['score']!r} (tolerance {self.tolerance:g})")
                return

    def compare_window(self, where: str, got: dict, want: dict) -> None:
        a, b = self.names
        self.windows += 1
        for key in (*WINDOW_KEYS, *(["labels"] if "labels" in want else [])):
            x, y = list(got.get(key, [])), list(want[key])
            if x != y:
                t = next((t for t, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
                what = "label of token" if key == "labels" else f"{key} differ at token"
                self.add(f"{where}: {what} {t}: {a} {x[t] if t < len(x) else 'end'} vs {b} {y[t] if t < len(y) else 'end'}")
                if key != "labels":
                    return  # other tokens: their outputs cannot be compared
        self.tokens += len(got["input_ids"])
        for key in OUTPUT_KEYS:
            if key in want:
                self.compare_values(f"{where}: {key}", got.get(key, []), want[key])

    def compare_values(self, where: str, got: Any, want: Any) -> None:
        """Two float arrays (scores, logits, an embedding): same shape, every value within the tolerance."""
        a, b = self.names
        s, r = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if s.size == 0 and r.size == 0:
            return
        if s.shape != r.shape:
            self.add(f"{where} of shape {s.shape} in {a}, {r.shape} in {b}")
        elif not self._scores_ok(float(np.max(np.abs(s - r)))):
            self.add(f"{where} differ by {float(np.max(np.abs(s - r))):.3g} (tolerance {self.tolerance:g})")

    def compare_ranked(self, where: str, got: Sequence[dict], want: Sequence[dict]) -> None:
        """Ranked labels (text classification): the same labels in the same order, scores within the tolerance."""
        a, b = self.names
        glabels, wlabels = [g.get("label") for g in got], [w.get("label") for w in want]
        if glabels != wlabels:
            self.add(f"{where}: labels ranked {glabels} in {a}, {wlabels} in {b}")
            return
        self.compare_values(f"{where}: scores", [g["score"] for g in got], [w["score"] for w in want])

    def compare_case(self, where: str, got: dict, want: dict) -> None:
        """One text: its windows, then its entities for every strategy `want` holds."""
        a, b = self.names
        self.texts += 1
        before = self.total_differences
        if len(got["windows"]) != len(want["windows"]):
            self.add(f"{where}: {a} has {len(got['windows'])} windows, {b} {len(want['windows'])}")
        else:
            for wi, (gw, ww) in enumerate(zip(got["windows"], want["windows"])):
                self.compare_window(f"{where} window {wi}", gw, ww)
            for agg in AGGREGATIONS:
                if agg in want.get("entities", {}):
                    self.compare_entities(f"{where} entities[{agg}]", got["entities"].get(agg, []), want["entities"][agg])
            for mode, ranked in want.get("classification", {}).items():
                self.compare_ranked(f"{where} classification[{mode}]", got.get("classification", {}).get(mode, []), ranked)
            if "embedding" in want:
                self.compare_values(f"{where} embedding", got.get("embedding", []), want["embedding"])
        if self.total_differences == before:
            self.identical_texts += 1


def entity_differences(got: Sequence[dict], want: Sequence[dict], tolerance: float, *, where: str = "entities",
                       names: tuple[str, str] = ("got", "want")) -> list[str]:
    """The first difference between two entity lists (as `Comparison.compare_entities` judges it), or []."""
    cmp = Comparison(tolerance, names)
    cmp.compare_entities(where, got, want)
    return cmp.differences


def compare_golden(got: Sequence[dict], want: Sequence[dict], tolerance: float, *, names: tuple[str, str] = ("runtime", "golden"),
                   where: Sequence[str] | None = None, comparison: Comparison | None = None) -> Comparison:
    """Compare two lists of cases in the golden schema (text by text; `where` names them, default
    their "id"). Used by `pyner verify`, the self-checks and the JVM parity report."""
    cmp = comparison or Comparison(tolerance, names)
    if len(got) != len(want):
        cmp.add(f"{names[0]} has {len(got)} texts, {names[1]} {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        cmp.compare_case(where[i] if where is not None else str(w.get("id", f"text {i}")), g, w)
    return cmp
