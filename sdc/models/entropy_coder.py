"""Table-driven range coding of integer symbols with constriction.

Why constriction (and not compressai's C++ rANS): its decoders are memory
safe, so a hostile or damaged substream can at worst decode to wrong symbols
or raise, never read out of bounds; compressai's rANS decoder trusts its
input (its escape path reads an unbounded number of words). Both would be
exact; speed is comparable because symbols are coded in batches, one batch per
probability table.

A *table* is a quantized CDF (compressai's format: ``cdf[0] = 0``, strictly
increasing, ``cdf[length - 1] = 2**16``) over the symbols
``offset, offset + 1, ..., offset + length - 3`` plus one escape slot at the
end. Each symbol is coded with the table its index selects. Values outside a
table's range are coded as the escape slot and then, after all table-coded
symbols, as a zig-zag integer: 5 bits of length, then the bits in 16-bit
pieces, all with uniform models.

Coding order (the decoder repeats it): a substream is one queue (FIFO) range
coder holding one or more *batches*; within a batch, tables in increasing
index order, within a table the symbols in the order given, then the batch's
escaped values.
"""
from __future__ import annotations

import numpy as np
import constriction

Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder

MAX_ESCAPE_BITS = 31


class EntropyDecodeError(ValueError):
    """A substream does not decode (damaged, truncated or from other weights)."""


class TableCoder:
    """Encode/decode int symbols, each with the table its index selects."""

    def __init__(self, cdfs: np.ndarray, cdf_lengths: np.ndarray, offsets: np.ndarray):
        cdfs = np.asarray(cdfs, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        self.sizes = np.asarray(cdf_lengths, dtype=np.int64).reshape(-1) - 1  # slots incl. escape
        self.models = []
        for i, length in enumerate(np.asarray(cdf_lengths).reshape(-1)):
            pmf = np.diff(cdfs[i, :length]).astype(np.float64)
            if pmf.min() <= 0:
                raise ValueError(f"table {i} has an empty slot")
            self.models.append(Categorical(pmf, perfect=False))
        self._len_model = Uniform(MAX_ESCAPE_BITS + 1)
        self._piece_model = Uniform(1 << 16)

    def table_order(self, indexes: np.ndarray) -> np.ndarray:
        """Positions sorted by table index, stably: the coding order within a batch.

        A stable sort has one answer, so the narrowest integer type that holds
        every index gives the same order, and numpy sorts ≤ 16-bit integers by
        radix sort, several times faster than int64.
        """
        if indexes.size and (indexes.min() < 0 or indexes.max() >= len(self.models)):
            raise EntropyDecodeError("table index out of range")
        narrow = np.uint8 if len(self.models) <= 1 << 8 else np.uint16 if len(self.models) <= 1 << 16 else np.int64
        return np.argsort(indexes.astype(narrow), kind="stable")

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """One batch in one substream."""
        enc = self.encoder()
        enc.encode(symbols, indexes)
        return enc.finish()

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Symbols in the order of `indexes` (one batch; see :class:`BatchDecoder`)."""
        dec = self.decoder(data)
        out = dec.decode(indexes)
        dec.finish()
        return out

    def encoder(self) -> "BatchEncoder":
        return BatchEncoder(self)

    def decoder(self, data: bytes) -> "BatchDecoder":
        return BatchDecoder(self, data)

    def _encode_escape(self, enc: RangeEncoder, value: int) -> None:
        u = 2 * value if value >= 0 else -2 * value - 1  # zig-zag
        nbits = u.bit_length()
        if nbits > MAX_ESCAPE_BITS:
            raise ValueError(f"symbol {value} out of codable range")
        enc.encode(nbits, self._len_model)
        for shift in range(0, nbits, 16):
            enc.encode((u >> shift) & 0xFFFF, self._piece_model)

    def _decode_escape(self, dec: RangeDecoder) -> int:
        nbits = int(dec.decode(self._len_model))
        u = 0
        for shift in range(0, nbits, 16):
            u |= int(dec.decode(self._piece_model)) << shift
        if u >= 1 << MAX_ESCAPE_BITS:
            raise EntropyDecodeError("escaped symbol out of range")
        return u // 2 if u % 2 == 0 else -(u + 1) // 2


class BatchEncoder:
    """Several batches in one substream, each laid out as :class:`TableCoder` describes.

    A batch's symbols may pick the tables of the next batch (the channel
    context does), which is why the decoder must finish one before it can
    index the next.
    """

    def __init__(self, coder: TableCoder):
        self.coder, self.enc = coder, RangeEncoder()

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> None:
        c = self.coder
        symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
        indexes = np.asarray(indexes, dtype=np.int64).reshape(-1)
        order = c.table_order(indexes)
        sorted_idx = indexes[order]
        slots = symbols[order] - c.offsets[sorted_idx]
        escape_slot = c.sizes[sorted_idx] - 1
        escaped = (slots < 0) | (slots >= escape_slot)
        slots = np.where(escaped, escape_slot, slots).astype(np.int32)
        bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(sorted_idx)]):
            if stop > start:
                self.enc.encode(slots[start:stop], c.models[sorted_idx[start]])
        for value in symbols[order][escaped]:
            c._encode_escape(self.enc, int(value))

    def finish(self) -> bytes:
        return self.enc.get_compressed().tobytes()


class BatchDecoder:
    """Decodes the batches of one substream in turn; :meth:`finish` checks nothing is left.

    Raises EntropyDecodeError where damage is detectable (invalid code words,
    out-of-range escapes, leftover data). A range coder cannot detect every
    damage, e.g. a cut-off tail decodes to wrong symbols; the container's
    per-chunk CRC-32C and lengths catch those before this runs.
    """

    def __init__(self, coder: TableCoder, data: bytes):
        if len(data) % 4:
            raise EntropyDecodeError("substream length is not a multiple of 4 bytes")
        self.coder = coder
        try:
            self.dec = RangeDecoder(np.frombuffer(data, dtype=np.uint32).copy())
        except Exception as exc:
            raise EntropyDecodeError(f"substream does not decode ({exc})") from None

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        """The next batch's symbols, in the order of `indexes`."""
        c = self.coder
        indexes = np.asarray(indexes, dtype=np.int64).reshape(-1)
        try:
            order = c.table_order(indexes)
            sorted_idx = indexes[order]
            slots = np.empty(len(sorted_idx), dtype=np.int64)
            bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
            for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(sorted_idx)]):
                if stop > start:
                    slots[start:stop] = self.dec.decode(c.models[sorted_idx[start]], stop - start)
            escaped = slots == c.sizes[sorted_idx] - 1
            values = slots + c.offsets[sorted_idx]
            for pos in np.flatnonzero(escaped):
                values[pos] = c._decode_escape(self.dec)
        except EntropyDecodeError:
            raise
        except Exception as exc:  # constriction reports broken streams as Python exceptions
            raise EntropyDecodeError(f"substream does not decode ({exc})") from None
        out = np.empty_like(values)
        out[order] = values
        return out

    def finish(self) -> None:
        if not self.dec.maybe_exhausted():
            raise EntropyDecodeError("substream has data after its last symbol")
