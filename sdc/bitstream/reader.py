"""Reading an .sdc file: `read_header`, `read_sdc` (spec/FORMAT.md, "Reading").

Reading is defensive: the header CRC is checked before any header field is
trusted, sizes are bounded before anything is allocated, every complete chunk's
CRC-32C is checked, and every error is a FormatError naming the damaged chunk.
`parse` and `usable_chunks` are shared with writer.py (truncation) and describe.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FormatError
from ..levels import LEVELS
from .container import SdcFile, SdcHeader
from .crc import crc32c
from .display import DISP_TYPE, decode_display_size
from .layouts import (CRC_SIZE, DEFAULT_MAX_PIXELS, LAYOUTS, MAGIC, NAMES, PREAMBLE, RANK, U32, Fields, LayoutV1,
                      LayoutV2, chunk_name)
from .metadata import decode_metadata
from .regionmap import decode_region_map, grid_size

# A few signatures, to say what a non-sdc input looks like.
_OTHER_FORMATS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                  (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"RIFF", "a RIFF (WebP?) file"),
                  (b"{", "JSON text"), (b"PK\x03\x04", "a zip archive"))


@dataclass
class Chunk:
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
class Parsed:
    layout: LayoutV1 | LayoutV2
    version: tuple[int, int]
    header: SdcHeader
    header_length: int
    written: tuple[str, ...]
    chunks: list[Chunk] = field(default_factory=list)
    total_length: int = 0  # length of the complete file the header describes

    def header_bytes(self, chunks: list[Chunk]) -> bytes:
        """This header with an index of `chunks` (what truncation writes)."""
        h = self.header
        bits = sum(1 << i for i, lv in enumerate(LEVELS) if lv in self.written)
        fields = Fields(h.width, h.height, h.codec_id, tuple(h.qualities[lv] for lv in LEVELS), bits,
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
    if n < PREAMBLE.size:
        raise FormatError(f"truncated header: input is only {n} bytes", chunk="header")
    _, major, minor, header_length = PREAMBLE.unpack_from(view)
    if header_length < PREAMBLE.size + CRC_SIZE:
        raise FormatError(f"bad header length {header_length}", chunk="header")
    if n < header_length:
        raise FormatError(f"truncated header: input is {n} bytes, the header alone {header_length}",
                          chunk="header")
    body = header_length - CRC_SIZE
    (stored,) = U32.unpack_from(view, body)
    if crc32c(view[:body]) != stored:
        raise FormatError("header CRC mismatch: the header is damaged", chunk="header")
    if major not in LAYOUTS:
        raise FormatError(f"unsupported sdc format version {major}.{minor}: this sdc reads versions "
                          f"{' and '.join(f'{m}.x' for m in LAYOUTS)}", chunk="header")
    return major, minor, header_length


def _check_fields(f: Fields, max_pixels: int | None) -> None:
    if f.written_bits & 0xF0:
        raise FormatError("reserved header bits are set (file from a newer sdc?)", chunk="header")
    if f.width < 1 or f.height < 1:
        raise FormatError(f"bad image size {f.width}x{f.height}", chunk="header")
    if max_pixels is not None and f.width * f.height > max_pixels:
        raise FormatError(f"image size {f.width}x{f.height} = {f.width * f.height} pixels is over the limit "
                          f"of {max_pixels} pixels (--max-pixels)", chunk="header")
    if 0 in f.qualities:
        raise FormatError("quality 0 in header (qualities are 1..255)", chunk="header")


def _index(parsed: Parsed, entries: list[tuple[bytes, int, int]], n: int) -> int:
    """Check the index rules, place the chunks; returns the complete file's length."""
    names = NAMES[parsed.layout.major]
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
            if RANK[name] < rank:
                raise FormatError(f"chunk {name} out of order", chunk="header")
            rank = RANK[name]
            if name in LEVELS and name not in parsed.written:
                raise FormatError(f"chunk {name} present but the header says it was not written",
                                  chunk="header")
        elif not parsed.layout.ancillary(code):
            raise FormatError(f"unknown critical chunk {name} (file from a newer sdc?)", chunk="header")
        parsed.chunks.append(Chunk(code, name, offset, length, crc, max(0, min(length, n - offset))))
        offset += length
    for required in ("RMAP", "HYPR"):
        if required not in {c.name for c in parsed.chunks if c.code in names}:
            raise FormatError(f"no {required} chunk in the index", chunk="header")
    return offset


def parse(data, max_pixels: int | None) -> Parsed:
    view = memoryview(data).cast("B")
    major, minor, header_length = _check_preamble(view)
    layout = LAYOUTS[major]
    fields = layout.parse(view, header_length)
    _check_fields(fields, max_pixels)
    header = SdcHeader(width=fields.width, height=fields.height, codec_id=fields.codec_id,
                       qualities=dict(zip(LEVELS, fields.qualities)))
    written = tuple(lv for i, lv in enumerate(LEVELS) if fields.written_bits >> i & 1)
    parsed = Parsed(layout=layout, version=(major, minor), header=header, header_length=header_length,
                    written=written)
    parsed.total_length = _index(parsed, fields.entries, len(view))
    if len(view) > parsed.total_length:
        raise FormatError(f"{len(view) - parsed.total_length} bytes of trailing data after the last chunk",
                          chunk=None)
    return parsed


def crc_ok(view: memoryview, c: Chunk) -> bool:
    return crc32c(view[c.offset:c.offset + c.length]) == c.crc


def usable_chunks(view: memoryview, parsed: Parsed) -> list[Chunk]:
    """Complete chunks before the first incomplete one, CRC-checked; RMAP and HYPR required."""
    usable = []
    for c in parsed.chunks:
        if not c.complete:
            break
        if not crc_ok(view, c):
            raise FormatError(f"CRC mismatch in chunk {c.name}: the chunk is damaged", chunk=c.name)
        usable.append(c)
    have = {c.name for c in usable if c.code in parsed.layout.types.values()}
    for required, what in (("RMAP", "region map (RMAP)"), ("HYPR", "hyperprior (HYPR)")):
        if required not in have:
            raise FormatError(f"input ends before the {what} chunk is complete: no level can be "
                              f"decoded (truncated file?)", chunk=required)
    return usable


def known_chunks(parsed: Parsed, chunks: list[Chunk]) -> dict[str, Chunk]:
    codes = set(parsed.layout.types.values())
    return {c.name: c for c in chunks if c.code in codes}


def read_header(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SdcHeader:
    """Parse and check just the header (data may be any prefix that holds it)."""
    return parse(data, max_pixels).header


def read_sdc(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SdcFile:
    """Parse an .sdc byte string (or a prefix of one ending anywhere after the HYPR chunk).

    Raises FormatError(message, chunk=...) on anything that violates the spec.
    """
    parsed = parse(data, max_pixels)
    view = memoryview(data).cast("B")
    usable = usable_chunks(view, parsed)
    by_name = known_chunks(parsed, usable)
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
                   display_size=read_display_size(parsed, view, usable, max_pixels))


def read_display_size(parsed: Parsed, view: memoryview, usable: list[Chunk],
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
