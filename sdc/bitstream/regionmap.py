"""The RMAP chunk: which importance group each latent position belongs to.

Layout (spec/FORMAT.md, "RMAP"): u32 BE rows h, u32 BE columns w, u8 encoding
(1 = row-run-length), then the body:

    repeat until h rows are described:
        varint R            R >= 1 identical rows follow, described once:
        repeat until the row holds w cells:
            varint v        a run of (v >> 2) + 1 cells of group v & 3

Varints are unsigned LEB128, at most 5 bytes, value < 2**32, shortest form.
Runs never cross a row end; the body must be consumed exactly.

The codec runs the image padded to multiples of 64 at stride 16, so the map of a
W x H image is (ceil(H/64)*4) x (ceil(W/64)*4); `grid_size` computes it.

This module does not import numpy at import time: `sdc inspect` counts cells
from the raw bytes (`decode_cells`) without it.
"""
from __future__ import annotations

import struct

from ..errors import FormatError

ENCODING_ROW_RLE = 1
_HEAD = struct.Struct(">IIB")
_CHUNK = "RMAP"


def grid_size(width: int, height: int) -> tuple[int, int]:
    """(h, w) of the region map of a width x height image."""
    return (-(-height // 64)) * 4, (-(-width // 64)) * 4


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_cells(h: int, w: int, cells: bytes) -> bytes:
    """Encode h*w cells (one byte each, values 0..3, row-major) as an RMAP payload.

    The output is canonical: maximal row groups, maximal runs, shortest varints.
    """
    if h < 1 or w < 1 or h > 0xFFFFFFFF or w > 0xFFFFFFFF:
        raise ValueError(f"region map size {h}x{w} out of range")
    if len(cells) != h * w:
        raise ValueError(f"region map has {len(cells)} cells, expected {h}x{w}")
    if cells and max(cells) > 3:
        raise ValueError("region map values must be 0..3")
    out = bytearray(_HEAD.pack(h, w, ENCODING_ROW_RLE))
    r = 0
    while r < h:
        row = cells[r * w:(r + 1) * w]
        n = 1
        while r + n < h and cells[(r + n) * w:(r + n + 1) * w] == row:
            n += 1
        _put_varint(out, n)
        i = 0
        while i < w:
            v = row[i]
            j = i + 1
            while j < w and row[j] == v:
                j += 1
            _put_varint(out, ((j - i - 1) << 2) | v)
            i = j
        r += n
    return bytes(out)


def encode_region_map(region_map) -> bytes:
    """Encode a uint8 numpy array (h, w) with values 0..3."""
    import numpy as np

    arr = np.asarray(region_map)
    if arr.ndim != 2:
        raise ValueError(f"region map must be 2-D, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 3):
        raise ValueError("region map values must be 0..3")
    h, w = arr.shape
    return encode_cells(h, w, np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def peek_size(payload: bytes | memoryview) -> tuple[int, int]:
    """(h, w) stored in an RMAP payload, without decoding the body."""
    if len(payload) < _HEAD.size:
        raise FormatError(f"region map chunk is {len(payload)} bytes, shorter than its "
                          f"{_HEAD.size}-byte head", chunk=_CHUNK)
    h, w, _ = _HEAD.unpack_from(payload)
    return h, w


def decode_cells(payload: bytes | memoryview, expected: tuple[int, int]) -> bytearray:
    """Decode an RMAP payload into h*w cells; `expected` is (h, w) from the header.

    The size is checked against `expected` before anything is allocated, so the
    output is never larger than the header (already bounded by --max-pixels) says.
    """
    buf = bytes(payload)
    h, w = peek_size(buf)
    enc = buf[8]
    if enc != ENCODING_ROW_RLE:
        raise FormatError(f"unsupported region map encoding {enc}", chunk=_CHUNK)
    if (h, w) != tuple(expected):
        raise FormatError(f"region map is {h}x{w} but the image size in the header needs "
                          f"{expected[0]}x{expected[1]}", chunk=_CHUNK)
    end = len(buf)
    pos = _HEAD.size
    cells = bytearray()
    rows = 0
    cell_bytes = [bytes((k,)) for k in range(4)]
    while rows < h:
        # varint: row-group size
        value = shift = 0
        while True:
            if pos >= end:
                raise FormatError("region map ends in the middle of a row group", chunk=_CHUNK)
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                if b == 0 and shift:
                    raise FormatError("non-minimal varint in region map", chunk=_CHUNK)
                break
            shift += 7
            if shift > 28:
                raise FormatError("varint longer than 5 bytes in region map", chunk=_CHUNK)
        if value == 0 or value > h - rows:
            raise FormatError(f"region map row group of {value} rows at row {rows} of {h}",
                              chunk=_CHUNK)
        group = value
        row = bytearray()
        filled = 0
        while filled < w:
            value = shift = 0
            while True:
                if pos >= end:
                    raise FormatError("region map ends in the middle of a row", chunk=_CHUNK)
                b = buf[pos]
                pos += 1
                value |= (b & 0x7F) << shift
                if b < 0x80:
                    if b == 0 and shift:
                        raise FormatError("non-minimal varint in region map", chunk=_CHUNK)
                    break
                shift += 7
                if shift > 28:
                    raise FormatError("varint longer than 5 bytes in region map", chunk=_CHUNK)
            run = (value >> 2) + 1
            if value >> 32 or run > w - filled:
                raise FormatError(f"region map run of {run} cells overflows the {w}-cell row",
                                  chunk=_CHUNK)
            row += cell_bytes[value & 3] * run
            filled += run
        cells += row * group
        rows += group
    if pos != end:
        raise FormatError(f"{end - pos} unused bytes at the end of the region map", chunk=_CHUNK)
    return cells


def decode_region_map(payload: bytes | memoryview, expected: tuple[int, int]):
    """Decode an RMAP payload into a uint8 numpy array of shape `expected`."""
    import numpy as np

    cells = decode_cells(payload, expected)
    return np.frombuffer(cells, dtype=np.uint8).reshape(expected)
