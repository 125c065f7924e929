"""Label schemes: detect which tagging scheme a label set uses (IOB2, IOB1, IOBES or none)."""

from __future__ import annotations

SCHEMES = ("IOB2", "IOB1", "IOBES", "none")


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a tag without a known prefix -> ('', tag)."""
    if tag == "O":
        return "O", ""
    for sep in ("-", "_"):
        if len(tag) > 2 and tag[1] == sep and tag[0] in "BIESLU":
            return tag[0], tag[2:]
    return "", tag


def detect_scheme(labels) -> str:
    """The scheme a set of tags uses.

    IOBES when any E-/S- (or L-/U-) prefix appears; IOB2 when every type that has I- also has B-;
    IOB1 when some type has I- but never B- (B- only separates adjacent entities there); "none"
    when tags carry no prefixes at all.
    """
    prefixes: dict[str, set[str]] = {}
    for tag in labels:
        prefix, kind = split_tag(str(tag))
        if prefix in ("O",):
            continue
        if prefix == "":
            return "none"
        prefixes.setdefault(kind, set()).add(prefix)
    if not prefixes:
        return "none"
    used = set().union(*prefixes.values())
    if used & {"E", "S", "L", "U"}:
        return "IOBES"
    if any("I" in p and "B" not in p for p in prefixes.values()):
        return "IOB1"
    return "IOB2"
