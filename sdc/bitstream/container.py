"""The .sdc container: header with chunk index, then the chunks. See spec/FORMAT.md.

Two header layouts are read: format 1 (fixed-size fields, 12-byte index
entries with 4-letter types) and format 2 (varint sizes, a 1-byte set of the
known chunks present, 5 to 9 bytes per chunk), which is what `write_sdc`
writes unless asked for 1.
Both share the first 12 bytes (magic, version, u16 header length) and end the
header with its CRC, so any version's reader can check a header and refuse a
version it does not know by name.

Imports nothing heavy at import time (numpy is imported inside the functions
that return or take arrays), so `sdc inspect` and `sdc truncate` start fast.

Reading is defensive: the header CRC is checked before any header field is
trusted, sizes are bounded before anything is allocated, every complete chunk's
CRC-32C is checked, and every error is a FormatError naming the damaged chunk.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ..errors import FormatError
from ..levels import LEVELS
from .crc import crc32c
from .display import DISP_NAME, DISP_TYPE, decode_display_size, encode_display_size
from .metadata import decode_metadata, encode_metadata, minor_version, summarize_metadata
from .regionmap import decode_cells, decode_region_map, encode_region_map, grid_size
from .wire import Reader, put_varint

if TYPE_CHECKING:  # annotations only: the container reads and writes bytes without numpy
    import numpy as np

MAGIC = b"\x89SDC\r\n\x1a\n"
VERSION_MAJOR = 2  # what write_sdc writes by default
VERSION_MINOR = 1  # the newest minor version write_sdc writes (only when a file needs it: minor_version)
DEFAULT_MAX_PIXELS = 1 << 26  # 67,108,864 pixels: 8192 x 8192
MAX_CHUNKS = 32
CRC_SIZE = 4
_PREAMBLE = struct.Struct(">8sBBH")  # magic, major, minor, header_length: the same in every version
_U32 = struct.Struct(">I")

# Chunk names (used in messages and by `sdc inspect`) in the only order allowed.
CHUNK_ORDER: tuple[str, ...] = ("META", "RMAP", "HYPR", *LEVELS)
_RANK = {name: i for i, name in enumerate(CHUNK_ORDER)}

# Type codes of the known chunks.
LEVEL_TYPES: dict[str, bytes] = {"L1": b"LVL1", "L2": b"LVL2", "L3": b"LVL3", "other": b"OTHR"}  # format 1
TYPES_V1: dict[str, bytes] = {"META": b"META", "RMAP": b"RMAP", "HYPR": b"HYPR", **LEVEL_TYPES}
# Format 2 stores no type for them (a bit of the chunk set each); inside sdc they
# are coded as their number 0..6, which no extra chunk can have (those are >= 0x80).
TYPES_V2: dict[str, bytes] = {name: bytes([i]) for i, name in enumerate(CHUNK_ORDER)}
CANONICAL_ORDER: tuple[bytes, ...] = tuple(TYPES_V1.values())
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

# A few signatures, to say what a non-sdc input looks like.
_OTHER_FORMATS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                  (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"RIFF", "a RIFF (WebP?) file"),
                  (b"{", "JSON text"), (b"PK\x03\x04", "a zip archive"))


@dataclass
class SdcHeader:
    width: int
    height: int
    codec_id: bytes            # 8 bytes (format 1) or their first 4 (format 2): see codec_id_matches
    qualities: dict[str, int]  # level name -> quality, for all 4 levels


@dataclass
class SdcFile:
    header: SdcHeader
    region_map: np.ndarray     # uint8 (h, w), values 0..3
    hyperprior: bytes
    levels: dict[str, bytes]   # substreams present (complete), keys in LEVELS order
    metadata: dict | None = None
    missing_levels: tuple[str, ...] = ()  # written by the encoder but not in these bytes
    display_size: tuple[int, int] | None = None  # (w, h) to upsample the decode to (DISP chunk, 2.1)


class _Fields(NamedTuple):
    """A header's fields as stored, before the checks common to every layout."""
    width: int
    height: int
    codec_id: bytes
    qualities: tuple[int, int, int, int]
    written_bits: int
    entries: list[tuple[bytes, int, int]]  # (type code, length, crc) in index order


# ------------------------------------------------------------------ the two header layouts
class _LayoutV1:
    """Format 1: u32 sizes, 4-letter type codes, 12-byte index entries."""

    major = 1
    types = TYPES_V1
    codec_id_size = 8
    _fixed = struct.Struct(">8sBBHII8s4BBBBB")  # ... width, height, codec, qualities, written, flags, count, reserved
    _entry = struct.Struct(">4sII")

    def parse(self, view: memoryview, header_length: int) -> _Fields:
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
        return _Fields(width, height, bytes(codec_id), (q1, q2, q3, q4), written_bits, entries)

    def build(self, version: tuple[int, int], fields: _Fields) -> bytes:
        count = len(fields.entries)
        header_length = self._fixed.size + self._entry.size * count + CRC_SIZE
        head = bytearray(self._fixed.pack(MAGIC, *version, header_length, fields.width, fields.height,
                                          fields.codec_id, *fields.qualities, fields.written_bits, 0, count, 0))
        for code, length, crc in fields.entries:
            head += self._entry.pack(code, length, crc)
        return bytes(head + _U32.pack(crc32c(head)))

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


class _LayoutV2:
    """Format 2: varint sizes; the index is a set of the known chunks present (one
    bit each, in the order of CHUNK_ORDER) with their lengths and CRCs, then any
    extra chunks, each with a 1-byte type."""

    major = 2
    types = TYPES_V2
    codec_id_size = 4
    _EXTRAS = 0x80  # bit 7 of the chunk set: extra chunks follow the known ones

    def parse(self, view: memoryview, header_length: int) -> _Fields:
        r = Reader(view[:header_length - CRC_SIZE], where="header", chunk="header", start=_PREAMBLE.size)
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
        return _Fields(width, height, codec_id, qualities, written_bits, entries)

    def build(self, version: tuple[int, int], fields: _Fields) -> bytes:
        names = _NAMES[2]
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
            body += _U32.pack(crc)
        if extras:
            body.append(len(extras))
            for code, length, crc in extras:
                body += code
                put_varint(body, length)
                body += _U32.pack(crc)
        header_length = _PREAMBLE.size + len(body) + CRC_SIZE
        head = _PREAMBLE.pack(MAGIC, *version, header_length) + body
        return bytes(head + _U32.pack(crc32c(head)))

    @staticmethod
    def check_code(code: bytes, i: int) -> None:
        pass  # known chunks have no stored type; every byte is an extra chunk's type

    @staticmethod
    def ancillary(code: bytes) -> bool:
        return code[0] >= 0x80

    @staticmethod
    def type_text(code: bytes) -> str:
        return _NAMES[2].get(code) or _EXTRA_NAMES.get(code) or f"0x{code[0]:02x}"


_LAYOUTS = {1: _LayoutV1(), 2: _LayoutV2()}
_NAMES = {major: {code: name for name, code in layout.types.items()} for major, layout in _LAYOUTS.items()}
_EXTRA_NAMES = {DISP_TYPE: DISP_NAME}  # the extra chunks this sdc knows (format 2.1)


def chunk_name(ctype: bytes) -> str:
    """The name errors and `sdc inspect` use for a chunk type (format 1: its 4
    letters; format 2: the known chunk's number 0..6 or the extra chunk's type
    byte): META, RMAP, HYPR, L1..L3, other, or for an unknown type its code
    (the letters in format 1, 0xNN in format 2)."""
    major = 2 if len(ctype) == 1 else 1
    return _NAMES[major].get(bytes(ctype)) or _LAYOUTS[major].type_text(bytes(ctype))


@dataclass
class _Chunk:
    code: bytes
    name: str
    offset: int
    length: int
    crc: int
    available: int  # bytes of the chunk present in the input

    @property
    def complete(self) -> bool:
        return self.available == self.length

    @property
    def level(self) -> str | None:
        return self.name if self.name in LEVELS else None


@dataclass
class _Parsed:
    layout: _LayoutV1 | _LayoutV2
    version: tuple[int, int]
    header: SdcHeader
    header_length: int
    written: tuple[str, ...]
    chunks: list[_Chunk] = field(default_factory=list)
    total_length: int = 0  # length of the complete file the header describes

    def header_bytes(self, chunks: list[_Chunk]) -> bytes:
        """This header with an index of `chunks` (what truncation writes)."""
        h = self.header
        bits = sum(1 << i for i, lv in enumerate(LEVELS) if lv in self.written)
        fields = _Fields(h.width, h.height, h.codec_id, tuple(h.qualities[lv] for lv in LEVELS), bits,
                         [(c.code, c.length, c.crc) for c in chunks])
        return self.layout.build(self.version, fields)


def codec_id_matches(stored: bytes, codec_id: bytes) -> bool:
    """True if a file's codec id (SdcHeader.codec_id: 8 bytes in format 1; in
    format 2 their first 4) names the weights whose id is `codec_id`."""
    return len(stored) in (4, 8) and bytes(codec_id[:len(stored)]) == bytes(stored)


def is_sdc(prefix: bytes) -> bool:
    """True if `prefix` starts with the sdc magic bytes (8 bytes needed)."""
    return bytes(prefix[:len(MAGIC)]) == MAGIC


def _not_sdc(view: memoryview) -> FormatError:
    head = bytes(view[:8])
    what = next((name for sig, name in _OTHER_FORMATS if head.startswith(sig)), None)
    if what is None and head.lstrip()[:1] in (b"{", b"["):
        what = "JSON text"
    return FormatError("not an sdc file" + (f" (it looks like {what})" if what else " (no sdc magic bytes)"),
                       chunk="header")


def _check_preamble(view: memoryview) -> tuple[int, int, int]:
    """Steps every version shares: magic, header length, header CRC. Returns (major, minor, header_length)."""
    n = len(view)
    if n == 0:
        raise FormatError("empty input, not an sdc file", chunk="header")
    k = min(n, len(MAGIC))
    if view[:k] != MAGIC[:k]:
        raise _not_sdc(view)
    if n < _PREAMBLE.size:
        raise FormatError(f"truncated header: input is only {n} bytes", chunk="header")
    _, major, minor, header_length = _PREAMBLE.unpack_from(view)
    if header_length < _PREAMBLE.size + CRC_SIZE:
        raise FormatError(f"bad header length {header_length}", chunk="header")
    if n < header_length:
        raise FormatError(f"truncated header: input is {n} bytes, the header alone {header_length}",
                          chunk="header")
    body = header_length - CRC_SIZE
    (stored,) = _U32.unpack_from(view, body)
    if crc32c(view[:body]) != stored:
        raise FormatError("header CRC mismatch: the header is damaged", chunk="header")
    if major not in _LAYOUTS:
        raise FormatError(f"unsupported sdc format version {major}.{minor}: this sdc reads versions "
                          f"{' and '.join(f'{m}.x' for m in _LAYOUTS)}", chunk="header")
    return major, minor, header_length


def _check_fields(f: _Fields, max_pixels: int | None) -> None:
    if f.written_bits & 0xF0:
        raise FormatError("reserved header bits are set (file from a newer sdc?)", chunk="header")
    if f.width < 1 or f.height < 1:
        raise FormatError(f"bad image size {f.width}x{f.height}", chunk="header")
    if max_pixels is not None and f.width * f.height > max_pixels:
        raise FormatError(f"image size {f.width}x{f.height} = {f.width * f.height} pixels is over the limit "
                          f"of {max_pixels} pixels (--max-pixels)", chunk="header")
    if 0 in f.qualities:
        raise FormatError("quality 0 in header (qualities are 1..255)", chunk="header")


def _index(parsed: _Parsed, entries: list[tuple[bytes, int, int]], n: int) -> int:
    """Check the index rules, place the chunks; returns the complete file's length."""
    names = _NAMES[parsed.layout.major]
    offset = parsed.header_length
    rank = -1
    seen = set()
    for i, (code, length, crc) in enumerate(entries):
        parsed.layout.check_code(code, i)
        name = chunk_name(code)
        if code in seen:
            raise FormatError(f"chunk {name} listed twice", chunk="header")
        seen.add(code)
        if code in names:
            if _RANK[name] < rank:
                raise FormatError(f"chunk {name} out of order", chunk="header")
            rank = _RANK[name]
            if name in LEVELS and name not in parsed.written:
                raise FormatError(f"chunk {name} present but the header says it was not written",
                                  chunk="header")
        elif not parsed.layout.ancillary(code):
            raise FormatError(f"unknown critical chunk {name} (file from a newer sdc?)", chunk="header")
        parsed.chunks.append(_Chunk(code, name, offset, length, crc, max(0, min(length, n - offset))))
        offset += length
    for required in ("RMAP", "HYPR"):
        if required not in {c.name for c in parsed.chunks if c.code in names}:
            raise FormatError(f"no {required} chunk in the index", chunk="header")
    return offset


def _parse(data, max_pixels: int | None) -> _Parsed:
    view = memoryview(data).cast("B")
    major, minor, header_length = _check_preamble(view)
    layout = _LAYOUTS[major]
    fields = layout.parse(view, header_length)
    _check_fields(fields, max_pixels)
    header = SdcHeader(width=fields.width, height=fields.height, codec_id=fields.codec_id,
                       qualities=dict(zip(LEVELS, fields.qualities)))
    written = tuple(lv for i, lv in enumerate(LEVELS) if fields.written_bits >> i & 1)
    parsed = _Parsed(layout=layout, version=(major, minor), header=header, header_length=header_length,
                     written=written)
    parsed.total_length = _index(parsed, fields.entries, len(view))
    if len(view) > parsed.total_length:
        raise FormatError(f"{len(view) - parsed.total_length} bytes of trailing data after the last chunk",
                          chunk=None)
    return parsed


def _crc_ok(view: memoryview, c: _Chunk) -> bool:
    return crc32c(view[c.offset:c.offset + c.length]) == c.crc


def _usable(view: memoryview, parsed: _Parsed) -> list[_Chunk]:
    """Complete chunks before the first incomplete one, CRC-checked; RMAP and HYPR required."""
    usable = []
    for c in parsed.chunks:
        if not c.complete:
            break
        if not _crc_ok(view, c):
            raise FormatError(f"CRC mismatch in chunk {c.name}: the chunk is damaged", chunk=c.name)
        usable.append(c)
    have = {c.name for c in usable if c.code in parsed.layout.types.values()}
    for required, what in (("RMAP", "region map (RMAP)"), ("HYPR", "hyperprior (HYPR)")):
        if required not in have:
            raise FormatError(f"input ends before the {what} chunk is complete: no level can be "
                              f"decoded (truncated file?)", chunk=required)
    return usable


def _known(parsed: _Parsed, chunks: list[_Chunk]) -> dict[str, _Chunk]:
    codes = set(parsed.layout.types.values())
    return {c.name: c for c in chunks if c.code in codes}


def read_header(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SdcHeader:
    """Parse and check just the header (data may be any prefix that holds it)."""
    return _parse(data, max_pixels).header


def read_sdc(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SdcFile:
    """Parse an .sdc byte string (or a prefix of one ending anywhere after the HYPR chunk).

    Raises FormatError(message, chunk=...) on anything that violates the spec.
    """
    parsed = _parse(data, max_pixels)
    view = memoryview(data).cast("B")
    usable = _usable(view, parsed)
    by_name = _known(parsed, usable)
    h = parsed.header
    major = parsed.version[0]

    def payload(name: str) -> memoryview:
        c = by_name[name]
        return view[c.offset:c.offset + c.length]

    metadata = decode_metadata(payload("META"), version=major) if "META" in by_name else None
    region_map = decode_region_map(payload("RMAP"), grid_size(h.width, h.height), version=major)
    levels = {lv: bytes(payload(lv)) for lv in LEVELS if lv in by_name}
    missing = tuple(lv for lv in parsed.written if lv not in levels)
    return SdcFile(header=h, region_map=region_map, hyperprior=bytes(payload("HYPR")),
                   levels=levels, metadata=metadata, missing_levels=missing,
                   display_size=_display_size(parsed, view, usable, max_pixels))


def _display_size(parsed: _Parsed, view: memoryview, usable: list[_Chunk],
                  max_pixels: int | None) -> tuple[int, int] | None:
    """The DISP chunk's size, if the file has a complete one (it comes last: a file cut
    short loses it before anything else and then decodes at its coded size)."""
    if parsed.version[0] != 2:
        return None
    for c in usable:
        if c.code == DISP_TYPE:
            h = parsed.header
            return decode_display_size(view[c.offset:c.offset + c.length], h.width, h.height, max_pixels)
    return None


def _check_header(h: SdcHeader, version: int) -> None:
    if not (1 <= h.width <= 0xFFFFFFFF and 1 <= h.height <= 0xFFFFFFFF):
        raise ValueError(f"image size {h.width}x{h.height} out of range")
    sizes = (8,) if version == 1 else (4, 8)  # format 2 keeps the first 4 bytes
    if not isinstance(h.codec_id, (bytes, bytearray)) or len(h.codec_id) not in sizes:
        raise ValueError(f"codec_id must be {' or '.join(map(str, sizes))} bytes for format {version}")
    if set(h.qualities) != set(LEVELS):
        raise ValueError(f"qualities must give one value for each of {', '.join(LEVELS)}")
    for lv, q in h.qualities.items():
        if not (isinstance(q, int) and 1 <= q <= 255):
            raise ValueError(f"quality {q!r} for {lv} out of range 1..255")


def write_sdc(f: SdcFile, *, version: int = VERSION_MAJOR) -> bytes:
    """Serialize `f` in format `version` (2, or 1 for readers that only know 1.0).

    Levels in `f.levels` are written; `f.missing_levels` are recorded as
    written-but-absent (so a reader reports them missing).
    """
    if version not in _LAYOUTS:
        raise ValueError(f"unknown format version {version} (sdc writes {', '.join(map(str, _LAYOUTS))})")
    h = f.header
    _check_header(h, version)
    unknown = (set(f.levels) | set(f.missing_levels)) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown level(s) {sorted(unknown)}")
    if set(f.levels) & set(f.missing_levels):
        raise ValueError("a level cannot be both present and missing")
    expected = grid_size(h.width, h.height)
    if tuple(getattr(f.region_map, "shape", ())) != expected:
        raise ValueError(f"region map shape {getattr(f.region_map, 'shape', None)} != {expected} "
                         f"for a {h.width}x{h.height} image")
    bodies: list[tuple[str, bytes]] = []
    if f.metadata is not None:
        bodies.append(("META", encode_metadata(f.metadata, version=version)))
    bodies.append(("RMAP", encode_region_map(f.region_map, version=version)))
    bodies.append(("HYPR", bytes(f.hyperprior)))
    bodies += [(lv, bytes(f.levels[lv])) for lv in LEVELS if lv in f.levels]
    if f.display_size is not None:
        if version != 2:
            raise ValueError("format 1 has no display size")
        bodies.append((DISP_NAME, encode_display_size(f.display_size, h.width, h.height)))
    if any(len(body) > 0xFFFFFFFF for _, body in bodies):
        raise ValueError("chunk longer than 4 GiB")
    written = tuple(lv for lv in LEVELS if lv in f.levels or lv in f.missing_levels)
    layout = _LAYOUTS[version]
    types = {**layout.types, DISP_NAME: DISP_TYPE}
    fields = _Fields(h.width, h.height, bytes(h.codec_id[:layout.codec_id_size]),
                     tuple(h.qualities[lv] for lv in LEVELS),
                     sum(1 << i for i, lv in enumerate(LEVELS) if lv in written),
                     [(types[name], len(body), crc32c(body)) for name, body in bodies])
    minor = max(minor_version(f.metadata), int(f.display_size is not None)) if version == 2 else 0
    return layout.build((version, minor), fields) + b"".join(body for _, body in bodies)


def truncate_sdc(data, keep: tuple[str, ...]) -> bytes:
    """Keep only the level substreams in `keep` (and all other complete chunks);
    rewrite the header so the result is a complete file. No model is loaded.

    The output has the input's format version and header fields; only the
    index (and so the header length and CRC) changes. Levels asked for but
    absent from `data` are silently not kept (a reader reports them missing).
    Every complete chunk's CRC is checked, kept or not.
    """
    bad = set(keep) - set(LEVELS)
    if bad:
        raise ValueError(f"unknown level(s) {sorted(bad)}")
    parsed = _parse(data, None)
    view = memoryview(data).cast("B")
    kept = [c for c in _usable(view, parsed) if c.level is None or c.level in keep]
    return parsed.header_bytes(kept) + b"".join(bytes(view[c.offset:c.offset + c.length]) for c in kept)


def _chunk_status(view: memoryview, c: _Chunk, after_truncated: bool) -> str:
    if not c.complete:
        return f"truncated ({c.available} of {c.length} bytes)" if c.available else "missing"
    if after_truncated:
        return "unusable (after a truncated chunk)"
    return "ok" if _crc_ok(view, c) else "CRC mismatch"


def describe_sdc(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict:
    """Everything `sdc inspect` shows, as plain JSON-able data.

    Header problems raise FormatError; damaged or missing chunks are reported in
    "problems" (and per chunk) instead, so a damaged file can still be inspected.
    Every bpp counts whole files: per level, "bpp" is the size of the file
    `sdc truncate` would make keeping the present levels up to this one. Pixels
    are the display size's when the file has one (the picture a user gets).
    """
    parsed = _parse(data, max_pixels)
    view = memoryview(data).cast("B")
    h = parsed.header
    major = parsed.version[0]
    pixels = h.width * h.height
    problems: list[str] = []
    chunks = [{"type": "header", "name": "header", "offset": 0, "length": parsed.header_length,
               "crc": f"{_U32.unpack_from(view, parsed.header_length - 4)[0]:08x}",
               "status": "ok"}]
    usable: list[_Chunk] = []
    broken = False
    for c in parsed.chunks:
        status = _chunk_status(view, c, broken)
        broken = broken or not c.complete
        if status == "ok":
            usable.append(c)
        elif status == "CRC mismatch":
            problems.append(f"CRC mismatch in chunk {c.name}: the chunk is damaged")
        chunks.append({"type": parsed.layout.type_text(c.code), "name": c.name, "offset": c.offset,
                       "length": c.length, "crc": f"{c.crc:08x}", "status": status})
    by_name = _known(parsed, usable)

    def payload(name: str) -> memoryview:
        c = by_name[name]
        return view[c.offset:c.offset + c.length]

    for required in ("RMAP", "HYPR"):
        if required not in by_name:
            problems.append(f"chunk {required} is not usable: no level can be decoded")

    display = None
    try:
        display = _display_size(parsed, view, usable, max_pixels)
    except FormatError as e:
        problems.append(str(e))

    metadata = None
    if "META" in by_name:
        try:
            metadata = summarize_metadata(decode_metadata(payload("META"), version=major))
        except FormatError as e:
            problems.append(str(e))

    cells = None
    grid = grid_size(h.width, h.height)
    # Counting cells decodes the map: bounded by the pixel limit even when the caller lifted it.
    if "RMAP" in by_name and pixels <= max(max_pixels or 0, DEFAULT_MAX_PIXELS):
        try:
            cells = decode_cells(payload("RMAP"), grid, version=major)
        except FormatError as e:
            problems.append(str(e))

    # bits per pixel of the picture a user gets: the display size when the file has one
    shown = display[0] * display[1] if display else pixels
    # bpp per level: the size of the file `sdc truncate` makes keeping the present levels up to it
    non_level = [c for c in usable if c.level is None]
    in_index = {c.level for c in parsed.chunks if c.level and c.code in parsed.layout.types.values()}
    present_levels = [lv for lv in LEVELS if lv in by_name]
    levels = {}
    kept = list(non_level)
    for lv in LEVELS:
        info: dict = {"quality": h.qualities[lv]}
        if lv in by_name:
            c = by_name[lv]
            kept.append(c)
            size = len(parsed.header_bytes(kept)) + sum(k.length for k in kept)
            info.update(status="present", bytes=c.length, cumulative_bytes=size, bpp=8 * size / shown)
        elif lv not in parsed.written:
            info.update(status="not written")
        elif lv not in in_index:
            info.update(status="dropped")
        else:
            info.update(status="missing")
        if cells is not None:
            info["region_cells"] = cells.count(LEVELS.index(lv))
        levels[lv] = info

    return {
        "format_version": f"{parsed.version[0]}.{parsed.version[1]}",
        "file_bytes": len(view),
        "complete_file_bytes": parsed.total_length,
        "width": h.width,
        "height": h.height,
        "display_size": None if display is None else list(display),
        "bpp": 8 * len(view) / shown,
        "codec_id": h.codec_id.hex(),
        "qualities": dict(h.qualities),
        "written_levels": list(parsed.written),
        "present_levels": present_levels,
        "missing_levels": [lv for lv in parsed.written if lv not in present_levels],
        "region_map": {"h": grid[0], "w": grid[1]},
        "chunks": chunks,
        "levels": levels,
        "metadata": metadata,
        "problems": problems,
    }
