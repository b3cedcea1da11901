"""The .sdc container: header with chunk index, then the chunks. See spec/FORMAT.md.

Imports nothing heavy at import time (numpy is imported inside the functions
that return or take arrays), so `sdc inspect` and `sdc truncate` start fast.

Reading is defensive: the header CRC is checked before any header field is
trusted, sizes are bounded before anything is allocated, every complete chunk's
CRC-32C is checked, and every error is a FormatError naming the damaged chunk.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import FormatError
from ..levels import LEVELS
from .crc import crc32c
from .metadata import decode_metadata, encode_metadata, summarize_metadata
from .regionmap import decode_cells, decode_region_map, encode_region_map, grid_size

if TYPE_CHECKING:  # annotations only: the container reads and writes bytes without numpy
    import numpy as np

MAGIC = b"\x89SDC\r\n\x1a\n"
VERSION_MAJOR = 1
VERSION_MINOR = 0
DEFAULT_MAX_PIXELS = 1 << 26  # 67,108,864 pixels: 8192 x 8192
MAX_CHUNKS = 32

# magic, major, minor, header_length, width, height, codec_id, 4 qualities,
# levels_written, flags, chunk_count, reserved
_FIXED = struct.Struct(">8sBBHII8s4BBBBB")
_ENTRY = struct.Struct(">4sII")
_U32 = struct.Struct(">I")
FIXED_SIZE = _FIXED.size  # 36
ENTRY_SIZE = _ENTRY.size  # 12
CRC_SIZE = 4
_PREAMBLE = 12  # magic, major, minor, header_length: the same in every version

TYPE_META = b"META"
TYPE_RMAP = b"RMAP"
TYPE_HYPR = b"HYPR"
LEVEL_TYPES: dict[str, bytes] = {"L1": b"LVL1", "L2": b"LVL2", "L3": b"LVL3", "other": b"OTHR"}
CANONICAL_ORDER: tuple[bytes, ...] = (TYPE_META, TYPE_RMAP, TYPE_HYPR, *LEVEL_TYPES.values())
_TYPE_LEVEL = {t: lv for lv, t in LEVEL_TYPES.items()}
_RANK = {t: i for i, t in enumerate(CANONICAL_ORDER)}
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

# A few signatures, to say what a non-sdc input looks like.
_OTHER_FORMATS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                  (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"RIFF", "a RIFF (WebP?) file"),
                  (b"{", "JSON text"), (b"PK\x03\x04", "a zip archive"))


@dataclass
class SdcHeader:
    width: int
    height: int
    codec_id: bytes            # 8 bytes
    qualities: dict[str, int]  # level name -> quality, for all 4 levels


@dataclass
class SdcFile:
    header: SdcHeader
    region_map: np.ndarray     # uint8 (h, w), values 0..3
    hyperprior: bytes
    levels: dict[str, bytes]   # substreams present (complete), keys in LEVELS order
    metadata: dict | None = None
    missing_levels: tuple[str, ...] = ()  # written by the encoder but not in these bytes


def chunk_name(ctype: bytes) -> str:
    """The name errors and `sdc inspect` use for a chunk: L1..L3/other for level
    chunks, the type code (META, RMAP, HYPR, or an ancillary code) otherwise."""
    return _TYPE_LEVEL.get(ctype) or ctype.decode("ascii", "replace")


@dataclass
class _Chunk:
    type: bytes
    offset: int
    length: int
    crc: int
    available: int  # bytes of the chunk present in the input

    @property
    def name(self) -> str:
        return chunk_name(self.type)

    @property
    def complete(self) -> bool:
        return self.available == self.length


@dataclass
class _Parsed:
    header: SdcHeader
    version: tuple[int, int]
    header_length: int
    written: tuple[str, ...]
    chunks: list[_Chunk] = field(default_factory=list)
    total_length: int = 0  # length of the complete file the header describes


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


def _parse(data, max_pixels: int | None) -> _Parsed:
    view = memoryview(data).cast("B")
    n = len(view)
    if n == 0:
        raise FormatError("empty input, not an sdc file", chunk="header")
    k = min(n, len(MAGIC))
    if view[:k] != MAGIC[:k]:
        raise _not_sdc(view)
    if n < _PREAMBLE:
        raise FormatError(f"truncated header: input is only {n} bytes", chunk="header")
    major, minor, header_length = struct.unpack_from(">BBH", view, 8)
    if header_length < _PREAMBLE + CRC_SIZE:
        raise FormatError(f"bad header length {header_length}", chunk="header")
    if n < header_length:
        raise FormatError(f"truncated header: input is {n} bytes, the header alone {header_length}",
                          chunk="header")
    body = header_length - CRC_SIZE
    (stored,) = _U32.unpack_from(view, body)
    if crc32c(view[:body]) != stored:
        raise FormatError("header CRC mismatch: the header is damaged", chunk="header")
    if major != VERSION_MAJOR:
        raise FormatError(f"unsupported sdc format version {major}.{minor}: this sdc reads "
                          f"version {VERSION_MAJOR}.x", chunk="header")
    if header_length < FIXED_SIZE + CRC_SIZE:
        raise FormatError(f"bad header length {header_length}", chunk="header")
    (_, _, _, _, width, height, codec_id, q1, q2, q3, q4,
     written_bits, flags, count, reserved) = _FIXED.unpack_from(view)
    if not 2 <= count <= MAX_CHUNKS:
        raise FormatError(f"bad chunk count {count}", chunk="header")
    if header_length != FIXED_SIZE + ENTRY_SIZE * count + CRC_SIZE:
        raise FormatError(f"header length {header_length} does not match {count} chunks", chunk="header")
    if flags or reserved or written_bits & 0xF0:
        raise FormatError("reserved header bits are set (file from a newer sdc?)", chunk="header")
    if width < 1 or height < 1:
        raise FormatError(f"bad image size {width}x{height}", chunk="header")
    if max_pixels is not None and width * height > max_pixels:
        raise FormatError(f"image size {width}x{height} = {width * height} pixels is over the limit of "
                          f"{max_pixels} pixels (--max-pixels)", chunk="header")
    qualities = dict(zip(LEVELS, (q1, q2, q3, q4)))
    if 0 in qualities.values():
        raise FormatError("quality 0 in header (qualities are 1..255)", chunk="header")
    written = tuple(lv for i, lv in enumerate(LEVELS) if written_bits >> i & 1)
    header = SdcHeader(width=width, height=height, codec_id=bytes(codec_id), qualities=qualities)
    parsed = _Parsed(header=header, version=(major, minor), header_length=header_length, written=written)

    offset = header_length
    rank = -1
    seen = set()
    for i in range(count):
        ctype, length, crc = _ENTRY.unpack_from(view, FIXED_SIZE + i * ENTRY_SIZE)
        if not all(b in _ALNUM for b in ctype):
            raise FormatError(f"bad chunk type {ctype!r} in index entry {i}", chunk="header")
        if ctype in seen:
            raise FormatError(f"chunk {chunk_name(ctype)} listed twice", chunk="header")
        seen.add(ctype)
        if ctype in _RANK:
            if _RANK[ctype] < rank:
                raise FormatError(f"chunk {chunk_name(ctype)} out of order", chunk="header")
            rank = _RANK[ctype]
            level = _TYPE_LEVEL.get(ctype)
            if level is not None and level not in written:
                raise FormatError(f"chunk {level} present but the header says it was not written",
                                  chunk="header")
        elif not 0x61 <= ctype[0] <= 0x7A:  # unknown and critical (not lowercase-first)
            raise FormatError(f"unknown critical chunk {chunk_name(ctype)} (file from a newer sdc?)",
                              chunk="header")
        available = max(0, min(length, n - offset))
        parsed.chunks.append(_Chunk(ctype, offset, length, crc, available))
        offset += length
    for required in (TYPE_RMAP, TYPE_HYPR):
        if required not in seen:
            raise FormatError(f"no {required.decode()} chunk in the index", chunk="header")
    parsed.total_length = offset
    if n > offset:
        raise FormatError(f"{n - offset} bytes of trailing data after the last chunk", chunk=None)
    return parsed


def _check_crc(view: memoryview, c: _Chunk) -> None:
    if crc32c(view[c.offset:c.offset + c.length]) != c.crc:
        raise FormatError(f"CRC mismatch in chunk {c.name}: the chunk is damaged", chunk=c.name)


def _usable(view: memoryview, parsed: _Parsed) -> list[_Chunk]:
    """Complete chunks before the first incomplete one, CRC-checked; RMAP and HYPR required."""
    usable = []
    for c in parsed.chunks:
        if not c.complete:
            break
        _check_crc(view, c)
        usable.append(c)
    have = {c.type for c in usable}
    for required, what in ((TYPE_RMAP, "region map (RMAP)"), (TYPE_HYPR, "hyperprior (HYPR)")):
        if required not in have:
            raise FormatError(f"input ends before the {what} chunk is complete: no level can be "
                              f"decoded (truncated file?)", chunk=chunk_name(required))
    return usable


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
    by_type = {c.type: c for c in usable}
    h = parsed.header

    def payload(c: _Chunk) -> memoryview:
        return view[c.offset:c.offset + c.length]

    metadata = decode_metadata(payload(by_type[TYPE_META])) if TYPE_META in by_type else None
    region_map = decode_region_map(payload(by_type[TYPE_RMAP]), grid_size(h.width, h.height))
    levels = {lv: bytes(payload(by_type[t])) for lv, t in LEVEL_TYPES.items() if t in by_type}
    missing = tuple(lv for lv in parsed.written if lv not in levels)
    return SdcFile(header=h, region_map=region_map, hyperprior=bytes(payload(by_type[TYPE_HYPR])),
                   levels=levels, metadata=metadata, missing_levels=missing)


def _assemble(header: SdcHeader, written: tuple[str, ...], chunks: list[tuple[bytes, bytes | memoryview, int]]) -> bytes:
    """chunks: (type, payload, crc) in file order."""
    bits = sum(1 << i for i, lv in enumerate(LEVELS) if lv in written)
    count = len(chunks)
    header_length = FIXED_SIZE + ENTRY_SIZE * count + CRC_SIZE
    q = [header.qualities[lv] for lv in LEVELS]
    head = bytearray(_FIXED.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, header_length, header.width,
                                 header.height, header.codec_id, *q, bits, 0, count, 0))
    for ctype, body, crc in chunks:
        head += _ENTRY.pack(ctype, len(body), crc)
    head += _U32.pack(crc32c(head))
    return b"".join([bytes(head), *(bytes(body) for _, body, _ in chunks)])


def _check_header(h: SdcHeader) -> None:
    if not (1 <= h.width <= 0xFFFFFFFF and 1 <= h.height <= 0xFFFFFFFF):
        raise ValueError(f"image size {h.width}x{h.height} out of range")
    if not isinstance(h.codec_id, (bytes, bytearray)) or len(h.codec_id) != 8:
        raise ValueError("codec_id must be 8 bytes")
    if set(h.qualities) != set(LEVELS):
        raise ValueError(f"qualities must give one value for each of {', '.join(LEVELS)}")
    for lv, q in h.qualities.items():
        if not (isinstance(q, int) and 1 <= q <= 255):
            raise ValueError(f"quality {q!r} for {lv} out of range 1..255")


def write_sdc(f: SdcFile) -> bytes:
    """Serialize `f`. Levels in `f.levels` are written; `f.missing_levels` are
    recorded as written-but-absent (so a reader reports them missing)."""
    h = f.header
    _check_header(h)
    unknown = (set(f.levels) | set(f.missing_levels)) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown level(s) {sorted(unknown)}")
    if set(f.levels) & set(f.missing_levels):
        raise ValueError("a level cannot be both present and missing")
    expected = grid_size(h.width, h.height)
    if tuple(getattr(f.region_map, "shape", ())) != expected:
        raise ValueError(f"region map shape {getattr(f.region_map, 'shape', None)} != {expected} "
                         f"for a {h.width}x{h.height} image")
    bodies: list[tuple[bytes, bytes]] = []
    if f.metadata is not None:
        bodies.append((TYPE_META, encode_metadata(f.metadata)))
    bodies.append((TYPE_RMAP, encode_region_map(f.region_map)))
    bodies.append((TYPE_HYPR, bytes(f.hyperprior)))
    for lv in LEVELS:
        if lv in f.levels:
            bodies.append((LEVEL_TYPES[lv], bytes(f.levels[lv])))
    for _, body in bodies:
        if len(body) > 0xFFFFFFFF:
            raise ValueError("chunk longer than 4 GiB")
    written = tuple(lv for lv in LEVELS if lv in f.levels or lv in f.missing_levels)
    return _assemble(h, written, [(t, b, crc32c(b)) for t, b in bodies])


def truncate_sdc(data, keep: tuple[str, ...]) -> bytes:
    """Keep only the level substreams in `keep` (and all other complete chunks);
    rewrite the header so the result is a complete file. No model is loaded.

    Levels asked for but absent from `data` are silently not kept (a reader
    reports them missing); the CRC of every chunk kept is checked.
    """
    bad = set(keep) - set(LEVELS)
    if bad:
        raise ValueError(f"unknown level(s) {sorted(bad)}")
    parsed = _parse(data, None)
    view = memoryview(data).cast("B")
    kept = [c for c in _usable(view, parsed) if c.type not in _TYPE_LEVEL or _TYPE_LEVEL[c.type] in keep]
    return _assemble(parsed.header, parsed.written,
                     [(c.type, view[c.offset:c.offset + c.length], c.crc) for c in kept])


def describe_sdc(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict:
    """Everything `sdc inspect` shows, as plain JSON-able data.

    Header problems raise FormatError; damaged or missing chunks are reported in
    "problems" (and per chunk) instead, so a damaged file can still be inspected.
    Every bpp counts whole files: per level, "bpp" is the size of the file
    `sdc truncate` would make keeping the present levels up to this one.
    """
    parsed = _parse(data, max_pixels)
    view = memoryview(data).cast("B")
    h = parsed.header
    pixels = h.width * h.height
    problems: list[str] = []
    chunks = [{"type": "header", "name": "header", "offset": 0, "length": parsed.header_length,
               "crc": f"{_U32.unpack_from(view, parsed.header_length - 4)[0]:08x}",
               "status": "ok"}]
    usable: list[_Chunk] = []
    broken = False
    for c in parsed.chunks:
        if not c.complete:
            status = f"truncated ({c.available} of {c.length} bytes)" if c.available else "missing"
            broken = True
        elif broken:
            status = "unusable (after a truncated chunk)"
        elif crc32c(view[c.offset:c.offset + c.length]) != c.crc:
            status = "CRC mismatch"
            problems.append(f"CRC mismatch in chunk {c.name}: the chunk is damaged")
        else:
            status = "ok"
            usable.append(c)
        chunks.append({"type": c.type.decode("ascii"), "name": c.name, "offset": c.offset,
                       "length": c.length, "crc": f"{c.crc:08x}", "status": status})
    by_type = {c.type: c for c in usable}

    def payload(c: _Chunk) -> memoryview:
        return view[c.offset:c.offset + c.length]

    for required in (TYPE_RMAP, TYPE_HYPR):
        if required not in by_type:
            problems.append(f"chunk {required.decode()} is not usable: no level can be decoded")

    metadata = None
    if TYPE_META in by_type:
        try:
            metadata = summarize_metadata(decode_metadata(payload(by_type[TYPE_META])))
        except FormatError as e:
            problems.append(str(e))

    cells = None
    grid = grid_size(h.width, h.height)
    if TYPE_RMAP in by_type:
        try:
            cells = decode_cells(payload(by_type[TYPE_RMAP]), grid)
        except FormatError as e:
            problems.append(str(e))

    # bpp per level, cumulative over the present levels, whole-file sizes
    non_level = [c for c in usable if c.type not in _TYPE_LEVEL]
    base = FIXED_SIZE + CRC_SIZE + sum(ENTRY_SIZE + c.length for c in non_level)
    in_index = {_TYPE_LEVEL[c.type] for c in parsed.chunks if c.type in _TYPE_LEVEL}
    present_levels = [lv for lv in LEVELS if LEVEL_TYPES[lv] in by_type]
    levels = {}
    cumulative = base
    for lv in LEVELS:
        c = by_type.get(LEVEL_TYPES[lv])
        info: dict = {"quality": h.qualities[lv]}
        if c is not None:
            cumulative += ENTRY_SIZE + c.length
            info.update(status="present", bytes=c.length, cumulative_bytes=cumulative,
                        bpp=8 * cumulative / pixels)
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
        "bpp": 8 * len(view) / pixels,
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
