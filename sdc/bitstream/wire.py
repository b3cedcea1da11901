"""Bounded reads and writes of the container's primitive types (spec/FORMAT.md, "Conventions").

`Reader` never reads past the end of its buffer and turns every problem into a
one-line FormatError naming the chunk, so a parser built on it cannot crash on
hostile bytes and never allocates more than the bytes it was given.
"""
from __future__ import annotations

from ..errors import FormatError

MAX_VARINT_BYTES = 5  # values < 2**32


def put_varint(out: bytearray, value: int) -> None:
    """Append `value` (0 <= value < 2**32) as unsigned LEB128, shortest form."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"varint value {value} out of range 0..2**32-1")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint_size(value: int) -> int:
    """Bytes `put_varint` writes for `value`."""
    return max(1, (value.bit_length() + 6) // 7)


def put_string(out: bytearray, text: str) -> None:
    """varint byte length, then the UTF-8 bytes."""
    raw = text.encode("utf-8")
    put_varint(out, len(raw))
    out += raw


class Reader:
    """Reads a byte string front to back. `where` names the structure in messages
    ("region map", "metadata", "header"); `chunk` is the FormatError's chunk."""

    def __init__(self, data, *, where: str, chunk: str, start: int = 0):
        self.buf = bytes(data)
        self.pos = start
        self.end = len(self.buf)
        self.where = where
        self.chunk = chunk

    def error(self, message: str) -> FormatError:
        return FormatError(f"{self.where}: {message}", chunk=self.chunk)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self, what: str) -> int:
        if self.pos >= self.end:
            raise self.error(f"ends before {what}")
        self.pos += 1
        return self.buf[self.pos - 1]

    def take(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise self.error(f"ends inside {what} ({n} bytes needed, {self.end - self.pos} left)")
        self.pos += n
        return self.buf[self.pos - n:self.pos]

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def varint(self, what: str) -> int:
        """Unsigned LEB128: at most 5 bytes, value < 2**32, shortest form."""
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            if self.pos >= self.end:
                raise self.error(f"ends inside {what}")
            b = self.buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                if b == 0 and shift:
                    raise self.error(f"non-minimal varint in {what}")
                if value >> 32:
                    raise self.error(f"{what} {value} is over 2**32-1")
                return value
            shift += 7
        raise self.error(f"varint longer than 5 bytes in {what}")

    def string(self, what: str) -> str:
        n = self.varint(f"length of {what}")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"{what} is not valid UTF-8") from None

    def finish(self) -> None:
        if self.pos != self.end:
            raise self.error(f"{self.end - self.pos} unused bytes at the end")
