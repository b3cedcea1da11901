"""`describe_sdc`: everything `sdc inspect` shows, damaged files included."""
from __future__ import annotations

from ..errors import FormatError
from ..levels import LEVELS
from .layouts import DEFAULT_MAX_PIXELS, U32
from .metadata import decode_metadata, summarize_metadata
from .reader import Chunk, Parsed, crc_ok, known_chunks, parse, read_display_size
from .regionmap import decode_cells, grid_size


def _chunk_status(view: memoryview, c: Chunk, after_truncated: bool) -> str:
    if not c.complete:
        return f"truncated ({c.available} of {c.length} bytes)" if c.available else "missing"
    if after_truncated:
        return "unusable (after a truncated chunk)"
    return "ok" if crc_ok(view, c) else "CRC mismatch"


def describe_sdc(data, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict:
    """Everything `sdc inspect` shows, as plain JSON-able data.

    Header problems raise FormatError; damaged or missing chunks are reported in
    "problems" (and per chunk) instead, so a damaged file can still be inspected.
    Every bpp counts whole files: per level, "bpp" is the size of the file
    `sdc truncate` would make keeping the present levels up to this one. Pixels
    are the display size's when the file has one (the picture a user gets).
    """
    parsed = parse(data, max_pixels)
    view = memoryview(data).cast("B")
    h = parsed.header
    major = parsed.version[0]
    pixels = h.width * h.height
    problems: list[str] = []
    chunks, usable = _chunk_rows(parsed, view, problems)
    by_name = known_chunks(parsed, usable)

    def payload(name: str) -> memoryview:
        c = by_name[name]
        return view[c.offset:c.offset + c.length]

    for required in ("RMAP", "HYPR"):
        if required not in by_name:
            problems.append(f"chunk {required} is not usable: no level can be decoded")
    display = _or_problem(problems, lambda: read_display_size(parsed, view, usable, max_pixels))
    metadata = None
    if "META" in by_name:
        metadata = _or_problem(problems, lambda: summarize_metadata(decode_metadata(payload("META"), version=major)))
    cells = None
    grid = grid_size(h.width, h.height)
    # Counting cells decodes the map: bounded by the pixel limit even when the caller lifted it.
    if "RMAP" in by_name and pixels <= max(max_pixels or 0, DEFAULT_MAX_PIXELS):
        cells = _or_problem(problems, lambda: decode_cells(payload("RMAP"), grid, version=major))
    # bits per pixel of the picture a user gets: the display size when the file has one
    shown = display[0] * display[1] if display else pixels
    present_levels = [lv for lv in LEVELS if lv in by_name]
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
        "levels": _level_rows(parsed, usable, by_name, cells, shown),
        "metadata": metadata,
        "problems": problems,
    }


def _or_problem(problems: list[str], read):
    """read(), or None with its FormatError added to `problems`."""
    try:
        return read()
    except FormatError as e:
        problems.append(str(e))
        return None


def _chunk_rows(parsed: Parsed, view: memoryview, problems: list[str]) -> tuple[list[dict], list[Chunk]]:
    """One row per chunk, the header's first; and the chunks a reader can use."""
    rows = [{"type": "header", "name": "header", "offset": 0, "length": parsed.header_length,
             "crc": f"{U32.unpack_from(view, parsed.header_length - 4)[0]:08x}", "status": "ok"}]
    usable: list[Chunk] = []
    broken = False
    for c in parsed.chunks:
        status = _chunk_status(view, c, broken)
        broken = broken or not c.complete
        if status == "ok":
            usable.append(c)
        elif status == "CRC mismatch":
            problems.append(f"CRC mismatch in chunk {c.name}: the chunk is damaged")
        rows.append({"type": parsed.layout.type_text(c.code), "name": c.name, "offset": c.offset,
                     "length": c.length, "crc": f"{c.crc:08x}", "status": status})
    return rows, usable


def _level_rows(parsed: Parsed, usable: list[Chunk], by_name: dict[str, Chunk], cells: bytearray | None,
                shown: int) -> dict[str, dict]:
    """Per level: quality, status, and when present its bytes and the bpp of the file
    `sdc truncate` makes keeping the present levels up to it."""
    in_index = {c.level for c in parsed.chunks if c.level and c.code in parsed.layout.types.values()}
    levels = {}
    kept = [c for c in usable if c.level is None]
    for lv in LEVELS:
        info: dict = {"quality": parsed.header.qualities[lv]}
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
    return levels
