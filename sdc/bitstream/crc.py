"""CRC-32C (Castagnoli), the checksum of every .sdc chunk and of the header.

Parameters (spec/FORMAT.md, "Checksums"): polynomial 0x1EDC6F41 (reflected
0x82F63B78), initial value 0xFFFFFFFF, input and output reflected, final XOR
0xFFFFFFFF. Check value: crc32c(b"123456789") == 0xE3069283.

The `crc32c` package (a C implementation, hardware-accelerated where the CPU
allows) does the work; it is a hard dependency because the reader must stay
fast on large and adversarial inputs.
"""
from __future__ import annotations

from crc32c import crc32c as _crc32c


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of `data` as an unsigned 32-bit integer."""
    return _crc32c(data)
