"""COCO run-length encoding of binary masks, in pure numpy (no pycocotools).

Masks are stored the way COCO stores them: runs over the mask in column-major
(Fortran) order, starting with a run of zeros, and the "compressed" string form
of pycocotools (`counts` is an ASCII string, each count delta-coded against the
count two places back and written in 5-bit groups). Both the string form and
the plain list-of-ints form are decoded; masks are always encoded as strings.
"""
from __future__ import annotations

import numpy as np


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a bool (H, W) mask in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return runs


def counts_to_string(counts: list[int]) -> str:
    """pycocotools' rleToString."""
    out = []
    for i, c in enumerate(counts):
        x = int(c)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """pycocotools' rleFrString."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                raise ValueError("invalid character in RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict:
    """Bool (H, W) mask -> {"size": [H, W], "counts": str} (COCO compressed RLE)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(mask_to_counts(mask))}


def decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed string or list counts) -> bool (H, W) mask.

    Raises ValueError when the RLE is malformed or its runs do not fill H*W.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("RLE must be an object with 'size' and 'counts'")
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and v >= 0 for v in size)):
        raise ValueError("RLE 'size' must be [height, width]")
    h, w = size
    counts = rle["counts"]
    if isinstance(counts, (bytes, bytearray)):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    elif not (isinstance(counts, list) and all(isinstance(c, int) for c in counts)):
        raise ValueError("RLE 'counts' must be a string or a list of integers")
    if any(c < 0 for c in counts):
        raise ValueError("RLE has a negative run")
    if sum(counts) != h * w:
        raise ValueError(f"RLE runs add up to {sum(counts)}, expected {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")
