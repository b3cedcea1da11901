"""The RMAP chunk: which importance group each latent position belongs to.

The codec runs the image padded to multiples of 64 at stride 16, so the map of
a W x H image is (ceil(H/64)*4) x (ceil(W/64)*4) cells (`grid_size`), each
holding a level index 0..3. Layouts (spec/FORMAT.md, "RMAP"):

- format 1: u32 BE rows h, u32 BE columns w, u8 encoding (1), body;
- format 2: u8 encoding, body (h and w come from the header's image size).

Encodings:

1. row run-length: repeat until h rows are described: varint R (R identical
   rows follow, described once), then runs `varint v` of (v >> 2) + 1 cells of
   level v & 3 that fill the row exactly;
2. adaptive (format 2 only): every cell in row-major order through the
   adaptive binary range coder (rangecoder.py), predicted from its left, upper,
   upper-left and upper-right neighbours. About a third of the run-length
   size on the maps of real objects' masks.

The format 2 writer codes both and keeps the smaller (run-length on a tie).
This module does not import numpy at import time: `sdc inspect` counts cells
from the raw bytes (`decode_cells`) without it.
"""
from __future__ import annotations

import struct

from ..errors import FormatError
from .rangecoder import RangeDecoder, RangeEncoder
from .wire import Reader, put_varint

ENCODING_ROW_RLE = 1
ENCODING_ADAPTIVE = 2
_HEAD_V1 = struct.Struct(">IIB")
_CHUNK = "RMAP"
_OTHER = 3


def grid_size(width: int, height: int) -> tuple[int, int]:
    """(h, w) of the region map of a width x height image."""
    return (-(-height // 64)) * 4, (-(-width // 64)) * 4


# ------------------------------------------------------------------ run-length
def _rle_body(h: int, w: int, cells: bytes) -> bytes:
    """Canonical: maximal row groups, maximal runs, shortest varints."""
    out = bytearray()
    r = 0
    while r < h:
        row = cells[r * w:(r + 1) * w]
        n = 1
        while r + n < h and cells[(r + n) * w:(r + n + 1) * w] == row:
            n += 1
        put_varint(out, n)
        i = 0
        while i < w:
            v = row[i]
            j = i + 1
            while j < w and row[j] == v:
                j += 1
            put_varint(out, ((j - i - 1) << 2) | v)
            i = j
        r += n
    return bytes(out)


def _decode_rle(buf: bytes, pos: int, h: int, w: int) -> bytearray:
    r = Reader(buf, where="region map", chunk=_CHUNK, start=pos)
    cells = bytearray()
    rows = 0
    cell_bytes = [bytes((k,)) for k in range(4)]
    while rows < h:
        group = r.varint("row group")
        if group == 0 or group > h - rows:
            raise FormatError(f"region map row group of {group} rows at row {rows} of {h}", chunk=_CHUNK)
        row = bytearray()
        filled = 0
        while filled < w:
            value = r.varint("row")
            run = (value >> 2) + 1
            if run > w - filled:
                raise FormatError(f"region map run of {run} cells overflows the {w}-cell row", chunk=_CHUNK)
            row += cell_bytes[value & 3] * run
            filled += run
        cells += row * group  # bounded: rows never exceed h, runs never exceed w
        rows += group
    r.finish()
    return cells


# ------------------------------------------------------------------ adaptive
def _tables():
    """Per neighbourhood (left, up, up-right, up-left): the context of the
    "same as left" bit and the three other levels in the order they are tried."""
    ctx, cands = [], []
    for key in range(256):
        left, up, up_right, up_left = key >> 6, (key >> 4) & 3, (key >> 2) & 3, key & 3
        ctx.append(4 * (up == left) + 2 * (up_left == left) + (up_right == left))
        order = [v for v in dict.fromkeys((up, up_right, up_left, 0, 1, 2, 3)) if v != left]
        cands.append(tuple(order))
    return ctx, cands


_CTX, _CANDS = _tables()
# Starting probabilities (of a 0 bit, in 1/4096) of the 8 contexts of "same as
# left", then of "the first candidate", "the second candidate": the bit
# frequencies of region maps of real objects (64 COCO images, masks and boxes).
# A map then pays for little more than its boundaries from its first cell on.
PROB_START = (3536, 3984, 496, 1552, 3776, 4048, 3856, 4080, 3952, 1824)


def _adaptive_body(h: int, w: int, cells: bytes) -> bytes:
    enc = RangeEncoder()
    probs = list(PROB_START)
    above = [_OTHER] * (w + 2)  # padded: cells outside the map count as "other"
    for r in range(h):
        row = [_OTHER] * (w + 2)
        base = r * w - 1
        for c in range(1, w + 1):
            left = row[c - 1]
            key = (left << 6) | (above[c] << 4) | (above[c + 1] << 2) | above[c - 1]
            v = cells[base + c]
            row[c] = v
            if v == left:
                enc.encode(probs, _CTX[key], 0)
                continue
            enc.encode(probs, _CTX[key], 1)
            k = _CANDS[key].index(v)
            enc.encode(probs, 8, k > 0)
            if k:
                enc.encode(probs, 9, k > 1)
        above = row
    return enc.finish()


def _decode_adaptive(buf: bytes, pos: int, h: int, w: int) -> bytearray:
    dec = RangeDecoder(buf[pos:], where="region map", chunk=_CHUNK)
    decode = dec.decode
    probs = list(PROB_START)
    cells = bytearray()  # grows row by row: a stream cut short fails before the map is allocated
    above = [_OTHER] * (w + 2)
    for _ in range(h):
        row = [_OTHER] * (w + 2)
        for c in range(1, w + 1):
            left = row[c - 1]
            key = (left << 6) | (above[c] << 4) | (above[c + 1] << 2) | above[c - 1]
            if not decode(probs, _CTX[key]):
                row[c] = left
            else:
                cands = _CANDS[key]
                row[c] = cands[0] if not decode(probs, 8) else cands[1] if not decode(probs, 9) else cands[2]
        cells += bytes(row[1:w + 1])
        above = row
    dec.finish()
    return cells


# ------------------------------------------------------------------ payloads
def _check_cells(h: int, w: int, cells: bytes) -> None:
    if h < 1 or w < 1 or h > 0xFFFFFFFF or w > 0xFFFFFFFF:
        raise ValueError(f"region map size {h}x{w} out of range")
    if len(cells) != h * w:
        raise ValueError(f"region map has {len(cells)} cells, expected {h}x{w}")
    if cells and max(cells) > 3:
        raise ValueError("region map values must be 0..3")


def encode_cells(h: int, w: int, cells: bytes, *, version: int = 2, encoding: int | None = None) -> bytes:
    """An RMAP payload for h*w cells (one byte each, values 0..3, row-major).

    Format 2 picks the smaller encoding unless `encoding` names one; format 1
    has only the run-length encoding.
    """
    cells = bytes(cells)
    _check_cells(h, w, cells)
    if version == 1:
        if encoding not in (None, ENCODING_ROW_RLE):
            raise ValueError("format 1 region maps are run-length coded")
        return _HEAD_V1.pack(h, w, ENCODING_ROW_RLE) + _rle_body(h, w, cells)
    if version != 2:
        raise ValueError(f"unknown format version {version}")
    coders = {ENCODING_ROW_RLE: _rle_body, ENCODING_ADAPTIVE: _adaptive_body}
    if encoding is not None:
        if encoding not in coders:
            raise ValueError(f"unknown region map encoding {encoding}")
        return bytes([encoding]) + coders[encoding](h, w, cells)
    options = [bytes([enc]) + coder(h, w, cells) for enc, coder in coders.items()]
    return min(options, key=len)  # min keeps the first (run-length) on a tie


def encode_region_map(region_map, *, version: int = 2, encoding: int | None = None) -> bytes:
    """Encode a uint8 numpy array (h, w) with values 0..3."""
    import numpy as np

    arr = np.asarray(region_map)
    if arr.ndim != 2:
        raise ValueError(f"region map must be 2-D, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 3):
        raise ValueError("region map values must be 0..3")
    h, w = arr.shape
    return encode_cells(h, w, np.ascontiguousarray(arr, dtype=np.uint8).tobytes(), version=version,
                        encoding=encoding)


def decode_cells(payload: bytes | memoryview, expected: tuple[int, int], *, version: int = 2) -> bytearray:
    """Decode an RMAP payload into h*w cells; `expected` is (h, w) from the header.

    Format 1 stores h and w; they are checked against `expected` before anything
    is allocated, so the output is never larger than the header (already bounded
    by --max-pixels) says.
    """
    buf = bytes(payload)
    h, w = expected
    if version == 1:
        if len(buf) < _HEAD_V1.size:
            raise FormatError(f"region map chunk is {len(buf)} bytes, shorter than its "
                              f"{_HEAD_V1.size}-byte head", chunk=_CHUNK)
        sh, sw, enc = _HEAD_V1.unpack_from(buf)
        if enc != ENCODING_ROW_RLE:
            raise FormatError(f"unsupported region map encoding {enc}", chunk=_CHUNK)
        if (sh, sw) != (h, w):
            raise FormatError(f"region map is {sh}x{sw} but the image size in the header needs "
                              f"{h}x{w}", chunk=_CHUNK)
        return _decode_rle(buf, _HEAD_V1.size, h, w)
    if not buf:
        raise FormatError("region map chunk is empty (no encoding byte)", chunk=_CHUNK)
    enc = buf[0]
    if enc == ENCODING_ROW_RLE:
        return _decode_rle(buf, 1, h, w)
    if enc == ENCODING_ADAPTIVE:
        return _decode_adaptive(buf, 1, h, w)
    raise FormatError(f"unsupported region map encoding {enc}", chunk=_CHUNK)


def decode_region_map(payload: bytes | memoryview, expected: tuple[int, int], *, version: int = 2):
    """Decode an RMAP payload into a uint8 numpy array of shape `expected`."""
    import numpy as np

    cells = decode_cells(payload, expected, version=version)
    return np.frombuffer(cells, dtype=np.uint8).reshape(expected)
