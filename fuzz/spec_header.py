"""The .sdc header of both format versions, read and written from spec/FORMAT.md alone.

Independent of sdc.bitstream on purpose: the fuzzers (sdcfuzz.py) and the container
tests (tests/bitstream_helpers.py) edit headers with it, so a file they build checks
the library against the spec rather than against itself. For well-formed headers
only: nothing is bounds- or CRC-checked. sdc is imported only inside the functions
that compute a CRC, so that fuzz/run.py can instrument sdc's modules first.
"""
from __future__ import annotations

import struct

MAGIC = b"\x89SDC\r\n\x1a\n"
V2_CHUNKS = ("META", "RMAP", "HYPR", "L1", "L2", "L3", "other")  # bit i of format 2's chunk set
V1_TYPES = dict(zip(V2_CHUNKS, (b"META", b"RMAP", b"HYPR", b"LVL1", b"LVL2", b"LVL3", b"OTHR")))
V1_NAMES = {t: n for n, t in V1_TYPES.items()}
_V1_FIXED = ">II8s4sBBBB"  # after the preamble: width, height, codec id, qualities, written, flags, count, reserved


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
    """The fields of a well-formed header of either version (spec sections 3 and 4).

    "entries" are (code, length, crc) in index order: format 1's 4-letter type codes;
    in format 2 a known chunk's name, or an extra chunk's type byte. "entry_offsets"
    are where each entry starts (format 2: its length, or an extra chunk's type byte)."""
    major, minor = data[8], data[9]
    h = {"major": major, "minor": minor}
    if major == 1:
        width, height, codec, q, written, _, count, _ = struct.unpack_from(_V1_FIXED, data, 12)
        entries = [struct.unpack_from(">4sII", data, 36 + 12 * i) for i in range(count)]
        entry_offsets = [36 + 12 * i for i in range(count)]
    else:
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
    from sdc.bitstream import crc32c

    entries = h["entries"]
    if h["major"] == 1:
        hl = 36 + 12 * len(entries) + 4
        head = bytearray(struct.pack(">8sBBH" + _V1_FIXED[1:], MAGIC, h["major"], h["minor"], hl, h["width"],
                                     h["height"], h["codec_id"], h["qualities"], h["written"], 0, len(entries), 0))
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
        head = bytearray(struct.pack(">8sBBH", MAGIC, h["major"], h["minor"], 12 + len(body) + 4)) + body
    return bytes(head + struct.pack(">I", crc32c(bytes(head))))


def refresh_header_crc(data: bytes | bytearray) -> bytes:
    """Recompute the header CRC after editing header bytes in place (a 'valid' bad file);
    a header length that leaves no room for the CRC leaves the data as it is."""
    from sdc.bitstream import crc32c

    hl = header_length(data)
    if not 16 <= hl <= len(data):
        return bytes(data)
    buf = bytearray(data)
    buf[hl - 4:hl] = struct.pack(">I", crc32c(bytes(buf[:hl - 4])))
    return bytes(buf)
