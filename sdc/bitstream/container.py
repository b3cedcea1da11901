"""The .sdc container: header with chunk index, then the chunks. See spec/FORMAT.md.

What a file holds (`SdcHeader`, `SdcFile`) is here; the rest by job:

- layouts.py: the two header layouts (format 1 and 2), chunk names and type codes;
- reader.py: `read_header`, `read_sdc`, `is_sdc`, `codec_id_matches`;
- writer.py: `write_sdc`, `truncate_sdc`;
- describe.py: `describe_sdc`, what `sdc inspect` shows.

Imports nothing heavy at import time (numpy is imported inside the functions
that return or take arrays), so `sdc inspect` and `sdc truncate` start fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the container reads and writes bytes without numpy
    import numpy as np


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
