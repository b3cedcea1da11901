"""Writing an .sdc file: `write_sdc`, and `truncate_sdc`, which rewrites one with fewer levels."""
from __future__ import annotations

from ..levels import LEVELS
from .container import SdcFile, SdcHeader
from .crc import crc32c
from .display import DISP_NAME, DISP_TYPE, encode_display_size
from .layouts import LAYOUTS, VERSION_MAJOR, Fields
from .metadata import encode_metadata, minor_version
from .reader import parse, usable_chunks
from .regionmap import encode_region_map, grid_size


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
    if version not in LAYOUTS:
        raise ValueError(f"unknown format version {version} (sdc writes {', '.join(map(str, LAYOUTS))})")
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
    layout = LAYOUTS[version]
    types = {**layout.types, DISP_NAME: DISP_TYPE}
    fields = Fields(h.width, h.height, bytes(h.codec_id[:layout.codec_id_size]),
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
    parsed = parse(data, None)
    view = memoryview(data).cast("B")
    kept = [c for c in usable_chunks(view, parsed) if c.level is None or c.level in keep]
    return parsed.header_bytes(kept) + b"".join(bytes(view[c.offset:c.offset + c.length]) for c in kept)
