"""Small .sdc files and header surgery for the container and CLI tests."""
from __future__ import annotations

import struct

import numpy as np

from sdc.bitstream import SdcFile, SdcHeader, crc32c, grid_size, write_sdc
from sdc.levels import LEVELS

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


def sample_bytes(**kw) -> bytes:
    return write_sdc(sample_file(**kw))


def header_length(data: bytes) -> int:
    return struct.unpack_from(">H", data, 10)[0]


def chunk_spans(data: bytes) -> list[tuple[str, int, int]]:
    """(name, start, end) of every chunk payload, from the index."""
    from sdc.bitstream import chunk_name

    hl = header_length(data)
    count = data[34]
    spans, off = [], hl
    for i in range(count):
        ctype, length, _ = struct.unpack_from(">4sII", data, 36 + 12 * i)
        spans.append((chunk_name(ctype), off, off + length))
        off += length
    return spans


def refresh_header_crc(data: bytes | bytearray) -> bytes:
    """Recompute the header CRC after editing header fields (a 'valid' bad file)."""
    data = bytearray(data)
    hl = header_length(data)
    data[hl - 4:hl] = struct.pack(">I", crc32c(bytes(data[:hl - 4])))
    return bytes(data)


def set_chunk(data: bytes, name: str, payload: bytes) -> bytes:
    """Replace one chunk's payload, fixing its index entry and the header CRC."""
    hl = header_length(data)
    out = bytearray(data[:hl])
    body = bytearray()
    for i, (cname, start, end) in enumerate(chunk_spans(data)):
        p = payload if cname == name else data[start:end]
        struct.pack_into(">II", out, 36 + 12 * i + 4, len(p), crc32c(p))
        body += p
    return refresh_header_crc(out) + bytes(body)
