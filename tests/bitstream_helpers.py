"""Small .sdc files and header surgery for the container and CLI tests.

The header helpers parse and rebuild headers of both format versions on their
own, from spec/FORMAT.md, rather than through sdc.bitstream: a test that
edits a header this way also checks that the library reads what the spec says.
"""
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
V2_CHUNKS = ("META", "RMAP", "HYPR", "L1", "L2", "L3", "other")  # bit i of the chunk set
V1_NAMES = {b"META": "META", b"RMAP": "RMAP", b"HYPR": "HYPR", b"LVL1": "L1", b"LVL2": "L2",
            b"LVL3": "L3", b"OTHR": "other"}


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
def header_length(data: bytes) -> int:
    return struct.unpack_from(">H", data, 10)[0]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def split_header(data: bytes) -> dict:
    """The fields of a well-formed header of either version (spec sections 3 and 4)."""
    major, minor = data[8], data[9]
    hl = header_length(data)
    h = {"major": major, "minor": minor}
    if major == 1:
        width, height, codec, q, written, _, count, _ = struct.unpack_from(">II8s4sBBBB", data, 12)
        entries = [struct.unpack_from(">4sII", data, 36 + 12 * i) for i in range(count)]
        entry_offsets = [36 + 12 * i for i in range(count)]
    else:  # known chunks are keyed by their name, extra chunks by their type byte
        width, pos = _varint(data, 12)
        height, pos = _varint(data, pos)
        codec, q, written, present = data[pos:pos + 4], data[pos + 4:pos + 8], data[pos + 8], data[pos + 9]
        pos += 10
        entries, entry_offsets = [], []

        def entry(code, pos):
            entry_offsets.append(pos)
            if code is None:
                code, pos = data[pos:pos + 1], pos + 1
            length, pos = _varint(data, pos)
            entries.append((code, length, struct.unpack_from(">I", data, pos)[0]))
            return pos + 4

        for name in (name for i, name in enumerate(V2_CHUNKS) if present >> i & 1):
            pos = entry(name, pos)
        if present & 0x80:  # extra chunks: a count, then type, length, crc each
            count, pos = data[pos], pos + 1
            for _ in range(count):
                pos = entry(None, pos)
    h.update(width=width, height=height, codec_id=bytes(codec), qualities=bytes(q), written=written,
             entries=entries, entry_offsets=entry_offsets)
    return h


def build_header(h: dict) -> bytes:
    """A header (CRC included) from split_header's fields."""
    entries = h["entries"]
    if h["major"] == 1:
        hl = 36 + 12 * len(entries) + 4
        head = bytearray(struct.pack(">8sBBHII8s4sBBBB", b"\x89SDC\r\n\x1a\n", h["major"], h["minor"], hl,
                                     h["width"], h["height"], h["codec_id"], h["qualities"], h["written"],
                                     0, len(entries), 0))
        for code, length, crc in entries:
            head += struct.pack(">4sII", code, length, crc)
    else:
        body = bytearray()
        _put_varint(body, h["width"])
        _put_varint(body, h["height"])
        body += h["codec_id"] + h["qualities"] + bytes([h["written"]])
        known = [e for e in entries if isinstance(e[0], str)]
        extras = [e for e in entries if not isinstance(e[0], str)]
        body.append(sum(1 << V2_CHUNKS.index(name) for name, _, _ in known) | (0x80 if extras else 0))
        for _, length, crc in known:
            _put_varint(body, length)
            body += struct.pack(">I", crc)
        if extras:
            body.append(len(extras))
        for code, length, crc in extras:
            body += code
            _put_varint(body, length)
            body += struct.pack(">I", crc)
        head = bytearray(struct.pack(">8sBBH", b"\x89SDC\r\n\x1a\n", h["major"], h["minor"], 12 + len(body) + 4))
        head += body
    return bytes(head + struct.pack(">I", crc32c(bytes(head))))


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


def refresh_header_crc(data: bytes | bytearray) -> bytes:
    """Recompute the header CRC after editing header bytes in place (a 'valid' bad file)."""
    data = bytearray(data)
    hl = header_length(data)
    data[hl - 4:hl] = struct.pack(">I", crc32c(bytes(data[:hl - 4])))
    return bytes(data)


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
