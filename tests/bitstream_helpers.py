"""Small .sdc files and header surgery for the container and CLI tests.

The header helpers parse and rebuild headers of both format versions with
fuzz/spec_header.py, from spec/FORMAT.md rather than through sdc.bitstream: a
test that edits a header this way also checks that the library reads what the
spec says.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sdc.bitstream import SdcFile, SdcHeader, crc32c, grid_size, write_sdc
from sdc.levels import LEVELS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from spec_header import (V1_NAMES, build_header, header_length, refresh_header_crc,  # noqa: E402,F401
                         split_header)

CODEC_ID = bytes.fromhex("0123456789abcdef")
META = {
    "analyzer": "test(fixed)",
    "task": "find the dog",
    "caption_short": "a dog on grass",
    "objects": [
        {"id": 0, "label": "dog", "box": [10, 12, 60, 50], "score": 0.93, "level": "L1",
         "reason": "matches the task"},
        {"id": 1, "label": "ball", "box": [70, 40, 90, 60], "score": 0.5, "level": "L2"},
        {"id": 2, "label": "tree", "box": [100, 0, 150, 70], "score": 0.4, "level": "L3"},
    ],
}


def region_map(width: int, height: int, seed: int = 0) -> np.ndarray:
    h, w = grid_size(width, height)
    rm = np.full((h, w), 3, np.uint8)
    rm[1:3, 1:4] = 0
    rm[2:4, 4:6] = 1
    rm[h - 1, : max(1, w // 2)] = 2
    if seed:
        rng = np.random.default_rng(seed)
        rm = rng.integers(0, 4, size=(h, w), dtype=np.uint8)
    return rm


def sample_file(width: int = 150, height: int = 70, *, meta: dict | None = META,
                levels: tuple[str, ...] = LEVELS, missing: tuple[str, ...] = (),
                qualities: dict[str, int] | None = None, seed: int = 0) -> SdcFile:
    header = SdcHeader(width=width, height=height, codec_id=CODEC_ID,
                       qualities=qualities or {"L1": 8, "L2": 6, "L3": 4, "other": 2})
    subs = {lv: bytes([0x10 * (i + 1) + k for k in range(3 + 5 * i)]) for i, lv in enumerate(LEVELS)}
    return SdcFile(header=header, region_map=region_map(width, height, seed),
                   hyperprior=b"\xf0\xf1\xf2\xf3\xf4\xf5",
                   levels={lv: subs[lv] for lv in levels}, metadata=meta, missing_levels=missing)


def sample_bytes(*, version: int = 2, **kw) -> bytes:
    return write_sdc(sample_file(**kw), version=version)


# ------------------------------------------------------------------ headers, from the spec
def chunk_name_of(major: int, code: bytes) -> str:
    if major == 1:
        return V1_NAMES.get(bytes(code), bytes(code).decode("ascii", "replace"))
    return code if isinstance(code, str) else f"0x{code[0]:02x}"


def chunk_spans(data: bytes) -> list[tuple[str, int, int]]:
    """(name, start, end) of every chunk payload, from the index."""
    h = split_header(data)
    spans, off = [], header_length(data)
    for code, length, _ in h["entries"]:
        spans.append((chunk_name_of(h["major"], code), off, off + length))
        off += length
    return spans


def entry_offset(data: bytes, name: str) -> int:
    """Offset of the index entry of chunk `name` (format 2: of its length, or of an
    extra chunk's type byte)."""
    h = split_header(data)
    names = [chunk_name_of(h["major"], code) for code, _, _ in h["entries"]]
    return h["entry_offsets"][names.index(name)]


def patch_header(data: bytes, **changes) -> bytes:
    """The file with header fields changed (width=, height=, codec_id=, qualities=,
    written=, major=, minor=, entries=) and a valid header CRC; payloads unchanged.
    Format 2 entries: (name, length, crc) for known chunks, (type byte, length, crc) for extras."""
    h = split_header(data)
    h.update(changes)
    return build_header(h) + data[header_length(data):]


def set_chunk(data: bytes, name: str, payload: bytes) -> bytes:
    """Replace one chunk's payload, fixing its index entry and the header CRC."""
    h = split_header(data)
    entries, body = [], bytearray()
    for (code, _, crc), (cname, start, end) in zip(h["entries"], chunk_spans(data)):
        p = payload if cname == name else data[start:end]
        entries.append((code, len(p), crc32c(p)))
        body += p
    h["entries"] = entries
    return build_header(h) + bytes(body)
