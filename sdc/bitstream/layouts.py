"""The two header layouts of the .sdc container, and the chunks' names and type codes (spec/FORMAT.md).

Format 1: fixed-size fields, 12-byte index entries with 4-letter types. Format 2
(what `write_sdc` writes unless asked for 1): varint sizes, a 1-byte set of the
known chunks present, 5 to 9 bytes per chunk. Both share the first 12 bytes
(magic, version, u16 header length) and end the header with its CRC, so any
version's reader can check a header and refuse a version it does not know by name.
Each layout parses a header's bytes into `Fields` and builds them back.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import FormatError
from ..levels import LEVELS
from .crc import crc32c
from .display import DISP_NAME, DISP_TYPE
from .wire import Reader, put_varint

MAGIC = b"\x89SDC\r\n\x1a\n"
VERSION_MAJOR = 2  # what write_sdc writes by default
VERSION_MINOR = 1  # the newest minor version write_sdc writes (only when a file needs it: minor_version)
DEFAULT_MAX_PIXELS = 1 << 26  # 67,108,864 pixels: 8192 x 8192
MAX_CHUNKS = 32
CRC_SIZE = 4
PREAMBLE = struct.Struct(">8sBBH")  # magic, major, minor, header_length: the same in every version
U32 = struct.Struct(">I")

# Chunk names (used in messages and by `sdc inspect`) in the only order allowed.
CHUNK_ORDER: tuple[str, ...] = ("META", "RMAP", "HYPR", *LEVELS)
RANK = {name: i for i, name in enumerate(CHUNK_ORDER)}

# Type codes of the known chunks.
LEVEL_TYPES: dict[str, bytes] = {"L1": b"LVL1", "L2": b"LVL2", "L3": b"LVL3", "other": b"OTHR"}  # format 1
TYPES_V1: dict[str, bytes] = {"META": b"META", "RMAP": b"RMAP", "HYPR": b"HYPR", **LEVEL_TYPES}
# Format 2 stores no type for them (a bit of the chunk set each); inside sdc they
# are coded as their number 0..6, which no extra chunk can have (those are >= 0x80).
TYPES_V2: dict[str, bytes] = {name: bytes([i]) for i, name in enumerate(CHUNK_ORDER)}
CANONICAL_ORDER: tuple[bytes, ...] = tuple(TYPES_V1.values())
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class Fields(NamedTuple):
    """A header's fields as stored, before the checks common to every layout."""
    width: int
    height: int
    codec_id: bytes
    qualities: tuple[int, int, int, int]
    written_bits: int
    entries: list[tuple[bytes, int, int]]  # (type code, length, crc) in index order


# ------------------------------------------------------------------ the two header layouts
class LayoutV1:
    """Format 1: u32 sizes, 4-letter type codes, 12-byte index entries."""

    major = 1
    types = TYPES_V1
    codec_id_size = 8
    _fixed = struct.Struct(">8sBBHII8s4BBBBB")  # ... width, height, codec, qualities, written, flags, count, reserved
    _entry = struct.Struct(">4sII")

    def parse(self, view: memoryview, header_length: int) -> Fields:
        fixed, entry = self._fixed, self._entry
        if header_length < fixed.size + CRC_SIZE:
            raise FormatError(f"bad header length {header_length}", chunk="header")
        (_, _, _, _, width, height, codec_id, q1, q2, q3, q4,
         written_bits, flags, count, reserved) = fixed.unpack_from(view)
        if not 2 <= count <= MAX_CHUNKS:
            raise FormatError(f"bad chunk count {count}", chunk="header")
        if header_length != fixed.size + entry.size * count + CRC_SIZE:
            raise FormatError(f"header length {header_length} does not match {count} chunks", chunk="header")
        if flags or reserved:
            raise FormatError("reserved header bits are set (file from a newer sdc?)", chunk="header")
        entries = [entry.unpack_from(view, fixed.size + i * entry.size) for i in range(count)]
        return Fields(width, height, bytes(codec_id), (q1, q2, q3, q4), written_bits, entries)

    def build(self, version: tuple[int, int], fields: Fields) -> bytes:
        count = len(fields.entries)
        header_length = self._fixed.size + self._entry.size * count + CRC_SIZE
        head = bytearray(self._fixed.pack(MAGIC, *version, header_length, fields.width, fields.height,
                                          fields.codec_id, *fields.qualities, fields.written_bits, 0, count, 0))
        for code, length, crc in fields.entries:
            head += self._entry.pack(code, length, crc)
        return bytes(head + U32.pack(crc32c(head)))

    @staticmethod
    def check_code(code: bytes, i: int) -> None:
        if not all(b in _ALNUM for b in code):
            raise FormatError(f"bad chunk type {code!r} in index entry {i}", chunk="header")

    @staticmethod
    def ancillary(code: bytes) -> bool:
        return 0x61 <= code[0] <= 0x7A  # lowercase first letter

    @staticmethod
    def type_text(code: bytes) -> str:
        return code.decode("ascii", "replace")


class LayoutV2:
    """Format 2: varint sizes; the index is a set of the known chunks present (one
    bit each, in the order of CHUNK_ORDER) with their lengths and CRCs, then any
    extra chunks, each with a 1-byte type."""

    major = 2
    types = TYPES_V2
    codec_id_size = 4
    _EXTRAS = 0x80  # bit 7 of the chunk set: extra chunks follow the known ones

    def parse(self, view: memoryview, header_length: int) -> Fields:
        r = Reader(view[:header_length - CRC_SIZE], where="header", chunk="header", start=PREAMBLE.size)
        width = r.varint("width")
        height = r.varint("height")
        codec_id = r.take(self.codec_id_size, "codec id")
        qualities = tuple(r.take(4, "qualities"))
        written_bits = r.u8("levels written")
        present = r.u8("chunk set")
        entries = []
        for i, name in enumerate(CHUNK_ORDER):
            if present >> i & 1:
                entries.append((self.types[name], r.varint(f"length of {name}"), r.u32(f"CRC of {name}")))
        if present & self._EXTRAS:
            count = r.u8("extra chunk count")
            if not 1 <= count <= MAX_CHUNKS - len(entries):
                raise FormatError(f"bad extra chunk count {count}", chunk="header")
            for i in range(count):
                what = f"extra chunk {i}"
                code = r.take(1, what)
                if not self.ancillary(code):  # format 2.0 defines no critical extra chunk
                    raise FormatError(f"unknown critical chunk 0x{code[0]:02x} (file from a newer sdc?)",
                                      chunk="header")
                entries.append((code, r.varint(f"length of {what}"), r.u32(f"CRC of {what}")))
        if r.remaining:
            raise FormatError(f"{r.remaining} unused bytes at the end of the header", chunk="header")
        return Fields(width, height, codec_id, qualities, written_bits, entries)

    def build(self, version: tuple[int, int], fields: Fields) -> bytes:
        names = NAMES[2]
        known = [e for e in fields.entries if e[0] in names]
        extras = [e for e in fields.entries if e[0] not in names]
        body = bytearray()
        put_varint(body, fields.width)
        put_varint(body, fields.height)
        body += fields.codec_id + bytes(fields.qualities) + bytes([fields.written_bits])
        body.append(sum(1 << CHUNK_ORDER.index(names[code]) for code, _, _ in known)
                    | (self._EXTRAS if extras else 0))
        for code, length, crc in known:
            put_varint(body, length)
            body += U32.pack(crc)
        if extras:
            body.append(len(extras))
            for code, length, crc in extras:
                body += code
                put_varint(body, length)
                body += U32.pack(crc)
        header_length = PREAMBLE.size + len(body) + CRC_SIZE
        head = PREAMBLE.pack(MAGIC, *version, header_length) + body
        return bytes(head + U32.pack(crc32c(head)))

    @staticmethod
    def check_code(code: bytes, i: int) -> None:
        pass  # known chunks have no stored type; every byte is an extra chunk's type

    @staticmethod
    def ancillary(code: bytes) -> bool:
        return code[0] >= 0x80

    @staticmethod
    def type_text(code: bytes) -> str:
        return NAMES[2].get(code) or _EXTRA_NAMES.get(code) or f"0x{code[0]:02x}"


LAYOUTS = {1: LayoutV1(), 2: LayoutV2()}
NAMES = {major: {code: name for name, code in layout.types.items()} for major, layout in LAYOUTS.items()}
_EXTRA_NAMES = {DISP_TYPE: DISP_NAME}  # the extra chunks this sdc knows (format 2.1)


def chunk_name(ctype: bytes) -> str:
    """The name errors and `sdc inspect` use for a chunk type (format 1: its 4
    letters; format 2: the known chunk's number 0..6 or the extra chunk's type
    byte): META, RMAP, HYPR, L1..L3, other, or for an unknown type its code
    (the letters in format 1, 0xNN in format 2)."""
    major = 2 if len(ctype) == 1 else 1
    return NAMES[major].get(bytes(ctype)) or LAYOUTS[major].type_text(bytes(ctype))
