"""WikiGold as running text: sentences rebuilt from `test.bio`, documents from the original file.

The corpus stores tokens; the benchmark needs text as users have it. Tokens are joined with
spaces, except before closing punctuation and contractions and after opening brackets (a light
detokenizer: the exact spacing does not matter for speed, and every contender gets the same
strings). Documents are the 145 `-DOCSTART-`-separated articles of the original file, their
sentences joined by one space; without the original file, sentences are concatenated in order
into chunks of the same average size.
"""

from __future__ import annotations

from pathlib import Path

from .common import DATA_DIR, Skip

WIKIGOLD = DATA_DIR / "ner" / "wikigold"
NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'S", "n't", "'", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}


def detokenize(tokens: list[str]) -> str:
    out: list[str] = []
    for tok in tokens:
        if out and tok not in NO_SPACE_BEFORE and out[-1] not in NO_SPACE_AFTER:
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _blocks(lines, sep: str = " ") -> list[list[str]]:
    """Token lists of blank-line-separated blocks of `token<sep>tag` lines."""
    blocks, cur = [], []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = []
            continue
        cur.append(line.split(sep)[0] if sep in line else line.split()[0])
    if cur:
        blocks.append(cur)
    return blocks


def sentences(limit: int | None = None) -> list[str]:
    path = WIKIGOLD / "test.bio"
    if not path.is_file():
        raise Skip(f"WikiGold not found at {path} (set PYNER_DATA_DIR to the folder holding ner/wikigold)")
    with open(path, encoding="utf-8") as f:
        out = [detokenize(b) for b in _blocks(f, "\t")]
    return out[:limit] if limit else out


def documents(limit: int | None = None) -> tuple[list[str], str]:
    """(documents, how they were formed)."""
    path = WIKIGOLD / "original" / "wikigold.conll.txt"
    if path.is_file():
        docs: list[list[str]] = [[]]
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        block: list[str] = []
        for line in lines + ["\n"]:
            if line.startswith("-DOCSTART-"):
                if docs[-1]:
                    docs.append([])
                continue
            if not line.strip():
                if block:
                    docs[-1].extend(_blocks(block))
                    block = []
                continue
            block.append(line)
        texts = [" ".join(detokenize(s) for s in d) for d in docs if d]
        how = f"the {len(texts)} -DOCSTART- separated articles of {path.name}"
    else:
        sents = sentences()
        per = max(1, round(len(sents) / 145))
        texts = [" ".join(sents[i:i + per]) for i in range(0, len(sents), per)]
        how = f"{per} consecutive sentences of test.bio per document (no original file with -DOCSTART-)"
    return (texts[:limit] if limit else texts), how
