"""An adaptive binary range coder (spec/FORMAT.md, "Adaptive binary range coder").

The coder of LZMA, with 12-bit probabilities adapting by 1/16 per bit, no
leading zero byte, and a short final flush: at most 4 zero bytes are left off
the end of the stream and a decoder reads them back as zeros. Used by the
region map's encoding 2; pure integer arithmetic, so every reader decodes the
same bits.

A probability is the chance, in 1/4096, that the next bit is 0. Starting
anywhere in 16..4080, it stays in 15..4081, so neither bit ever gets an
empty interval.
"""
from __future__ import annotations

from ..errors import FormatError

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
ADAPT_SHIFT = 4
MAX_PADDING = 4  # zero bytes a writer may leave off; a reader supplies at most these
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF


class RangeEncoder:
    def __init__(self) -> None:
        self.low = 0            # up to 33 bits: bit 32 is a carry not yet written
        self.range = _MASK32
        self.cache = 0          # the byte before the pending 0xFF run
        self.pending = 1        # bytes held back: the cache and the 0xFF bytes after it
        self.out = bytearray()

    def encode(self, probs: list[int], i: int, bit: int) -> None:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[i] = p - (p >> ADAPT_SHIFT)
        else:
            self.range = bound
            probs[i] = p + ((PROB_ONE - p) >> ADAPT_SHIFT)
        while self.range < _TOP:
            self.range <<= 8
            self._shift_low()

    def _shift_low(self) -> None:
        # The top byte of `low` can still change through a carry while it is 0xFF,
        # so runs of 0xFF are held back until a byte below 0xFF (or a carry) settles them.
        if self.low < 0xFF000000 or self.low > _MASK32:
            carry = self.low >> 32
            byte = self.cache
            for _ in range(self.pending):
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
            self.pending = 0
            self.cache = (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def finish(self) -> bytes:
        """The stream: any value in [low, low + range) decodes the same bits, so
        take the one with the most trailing zero bits; its zero bytes are left off."""
        high = self.low + self.range
        k = 40
        while (value := -(-self.low >> k) << k) >= high:
            k -= 1
        self.low = value
        for _ in range(5):
            self._shift_low()
        out = self.out
        assert out[0] == 0  # the interval never leaves [0, 1): the first byte carries nothing
        end = len(out)
        while end > max(1, len(out) - MAX_PADDING) and out[end - 1] == 0:
            end -= 1
        return bytes(out[1:end])


class RangeDecoder:
    """Decodes a stream from `data`; `chunk` and `where` name it in errors."""

    def __init__(self, data: bytes, *, where: str, chunk: str):
        self.data = data
        self.where = where
        self.chunk = chunk
        self.pos = 0
        self.code = 0
        self.range = _MASK32
        for _ in range(4):
            self.code = (self.code << 8) | self._next()
        if self.code == _MASK32:  # the code must lie inside the initial interval
            raise FormatError(f"{where}: bad range coder start FF FF FF FF", chunk=chunk)

    def _next(self) -> int:
        pos = self.pos
        self.pos += 1
        if pos < len(self.data):
            return self.data[pos]
        if pos >= len(self.data) + MAX_PADDING:
            raise FormatError(f"{self.where}: the coded data ends early (truncated?)", chunk=self.chunk)
        return 0

    def decode(self, probs: list[int], i: int) -> int:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[i] = p + ((PROB_ONE - p) >> ADAPT_SHIFT)
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[i] = p - (p >> ADAPT_SHIFT)
            bit = 1
        while self.range < _TOP:
            self.range <<= 8
            self.code = (self.code << 8) | self._next()
        return bit

    def finish(self) -> None:
        """Every byte of the stream must have been read."""
        if self.pos < len(self.data):
            raise FormatError(f"{self.where}: {len(self.data) - self.pos} unused bytes at the end",
                              chunk=self.chunk)
