"""The .sdc container format (spec/FORMAT.md). Imports no torch, and no numpy
until a function that returns or takes an array is called."""
from .container import SdcFile, SdcHeader
from .describe import describe_sdc
from .layouts import (
    CANONICAL_ORDER,
    DEFAULT_MAX_PIXELS,
    LEVEL_TYPES,
    MAGIC,
    VERSION_MAJOR,
    VERSION_MINOR,
    chunk_name,
)
from .reader import codec_id_matches, is_sdc, read_header, read_sdc
from .writer import truncate_sdc, write_sdc
from .crc import crc32c
from .regionmap import grid_size

__all__ = [
    "CANONICAL_ORDER", "DEFAULT_MAX_PIXELS", "LEVEL_TYPES", "MAGIC", "VERSION_MAJOR", "VERSION_MINOR",
    "SdcFile", "SdcHeader", "chunk_name", "codec_id_matches", "crc32c", "describe_sdc", "grid_size", "is_sdc",
    "read_header", "read_sdc", "truncate_sdc", "write_sdc",
]
