"""Plain box-drawing tables for `sdc inspect`.

`sdc inspect` must start and finish in well under 0.3 s; importing and laying
out rich tables alone costs about 0.1 s of CPU on the reference machine, so
inspect renders its tables with this small module instead (rich is still used
by encode and decode, where loading the codec dominates). Same look as rich's
default box, ANSI colour only on a terminal (and never with NO_COLOR set).

Cell text from files (labels, captions, reasons) is untrusted: every
non-printable character is shown escaped, so a file cannot send terminal
control sequences.
"""
from __future__ import annotations

import os
import sys

_BOX = {"tl": "┏", "tm": "┳", "tr": "┓", "h": "━", "v": "┃", "ml": "┡", "mm": "╇", "mr": "┩",
        "hl": "─", "vl": "│", "bl": "└", "bm": "┴", "br": "┘"}
_ASCII = {"tl": "+", "tm": "+", "tr": "+", "h": "=", "v": "|", "ml": "+", "mm": "+", "mr": "+",
          "hl": "-", "vl": "|", "bl": "+", "bm": "+", "br": "+"}
_COLOURS = {"red": "31", "yellow": "33", "bold": "1", "dim": "2"}


def clean(text) -> str:
    """`text` with every non-printable character escaped (\\x1b -> \\x1b shown literally)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


class Out:
    """Writes lines to a stream, with colour if it is a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.colour = isatty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        encoding = getattr(self.stream, "encoding", None) or "ascii"
        try:
            "┏━┃│…".encode(encoding)
            self.box = _BOX
        except (UnicodeEncodeError, LookupError):
            self.box = _ASCII

    def style(self, text: str, style: str | None) -> str:
        if not style or not self.colour:
            return text
        return f"\x1b[{_COLOURS[style]}m{text}\x1b[0m"

    def line(self, text: str = "", style: str | None = None) -> None:
        if self.box is _ASCII:
            text = text.replace("…", "...")
        self.stream.write(self.style(text, style) + "\n")

    def table(self, title: str, columns: list[tuple[str, str]], rows: list[list[str]],
              styles: list[str | None] | None = None) -> None:
        """columns: (header, "left"|"right"); rows: lists of cell strings (already cleaned)."""
        b = self.box
        if b is _ASCII:
            rows = [[c.replace("…", "...") for c in r] for r in rows]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, (h, _) in enumerate(columns)]

        def cells(values, sep):
            parts = []
            for v, w, (_, just) in zip(values, widths, columns):
                parts.append(" " + (v.rjust(w) if just == "right" else v.ljust(w)) + " ")
            return sep + sep.join(parts) + sep

        self.line(title, "bold")
        self.line(b["tl"] + b["tm"].join(b["h"] * (w + 2) for w in widths) + b["tr"])
        self.line(cells([h for h, _ in columns], b["v"]))
        self.line(b["ml"] + b["mm"].join(b["h"] * (w + 2) for w in widths) + b["mr"])
        for k, r in enumerate(rows):
            self.line(cells(r, b["vl"]), (styles or [None] * len(rows))[k])
        self.line(b["bl"] + b["bm"].join(b["hl"] * (w + 2) for w in widths) + b["br"])
