"""Table coder: exact round trips including escapes; broken streams raise, never crash."""
from __future__ import annotations

import numpy as np
import pytest
from compressai.entropy_models import GaussianConditional
from compressai.models.google import get_scale_table

from sdc.models.entropy_coder import EntropyDecodeError, TableCoder


@pytest.fixture(scope="module")
def coder():
    gc = GaussianConditional(None)
    gc.update_scale_table(get_scale_table())
    gc.update()
    return TableCoder(gc._quantized_cdf.numpy(), gc._cdf_length.numpy(), gc._offset.numpy()), gc.scale_table.numpy()


def test_round_trip_with_escapes(coder):
    tc, table = coder
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(table), 5000)
    sym = np.round(rng.normal(0, table[idx])).astype(np.int64)
    sym[:6] = [10**6, -(10**6), 2**29, -(2**29), 0, 40]
    data = tc.encode(sym, idx)
    assert np.array_equal(tc.decode(data, idx), sym)


def test_rate_close_to_entropy(coder):
    tc, table = coder
    rng = np.random.default_rng(1)
    idx = np.full(20000, 20)
    sym = np.round(rng.normal(0, table[20], idx.shape)).astype(np.int64)
    bits = 8 * len(tc.encode(sym, idx))
    _, counts = np.unique(sym, return_counts=True)
    p = counts / counts.sum()
    entropy = -(counts * np.log2(p)).sum()
    assert bits < entropy * 1.02 + 64


def test_damaged_streams_raise_or_decode_wrong_but_never_crash(coder):
    tc, table = coder
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 30, 3000)
    sym = np.round(rng.normal(0, table[idx])).astype(np.int64)
    data = tc.encode(sym, idx)
    # Detectable: invalid code words, bad length, data left over.
    for bad in (data[:8], data[:7], data + bytes(8)):
        with pytest.raises(EntropyDecodeError):
            tc.decode(bad, idx)
    # Not always detectable by a range coder (the container's CRC is): must not crash.
    for bad in (data[:-4], b"", bytes(rng.integers(0, 256, len(data), dtype=np.uint8))):
        try:
            out = tc.decode(bad, idx)
        except EntropyDecodeError:
            continue
        assert out.shape == sym.shape and not np.array_equal(out, sym)


def test_batches_share_one_stream_and_decode_in_turn(coder):
    """The channel context codes one batch per slice; a batch's tables are only known after the last."""
    tc, table = coder
    rng = np.random.default_rng(3)
    batches = []
    for n in (700, 0, 1500, 3):
        idx = rng.integers(0, len(table), n)
        sym = np.round(rng.normal(0, table[idx])).astype(np.int64)
        if n:
            sym[0] = 5 * 10**5  # an escape inside every non-empty batch
        batches.append((sym, idx))
    enc = tc.encoder()
    for sym, idx in batches:
        enc.encode(sym, idx)
    data = enc.finish()
    dec = tc.decoder(data)
    for sym, idx in batches:
        assert np.array_equal(dec.decode(idx), sym)
    dec.finish()
    # One batch is exactly the single-call format.
    assert tc.encode(*batches[0]) == (lambda e: (e.encode(*batches[0]), e.finish())[1])(tc.encoder())
    # Stopping early leaves data: detected.
    dec = tc.decoder(data)
    dec.decode(batches[0][1])
    with pytest.raises(EntropyDecodeError):
        dec.finish()


def test_table_order_is_the_stable_sort_and_rejects_unknown_tables(coder):
    """The radix-sorted coding order equals the stable int64 sort; an index past the tables is an error."""
    coder, _ = coder
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(coder.models), 50_000)
    assert np.array_equal(coder.table_order(idx), np.argsort(idx, kind="stable"))
    for bad in (len(coder.models), -1):
        with pytest.raises(EntropyDecodeError, match="table index"):
            coder.table_order(np.r_[idx[:10], bad])
