"""Channel-conditional context: the integer network matches the float one, keeps groups
independent and decodes bit-identically on any thread count."""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from sdc.levels import LEVELS
from sdc.models.channel_context import ChannelContext, IntegerChannelContext
from sdc.models.codec import SDCCodec
from sdc.models.integer_hyper import ACT_BITS
from sdc.models.network import latent_shape
from sdc.models.weights import load_weights

SLICES = 4


def random_context(M: int, seed: int = 0) -> ChannelContext:
    """A context whose every layer is non-zero (a fresh one starts as the identity)."""
    ctx = ChannelContext(M, SLICES, 32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in ctx.nets:
            net[2].weight.copy_(0.05 * torch.randn(net[2].weight.shape, generator=gen))
            net[2].bias.copy_(0.05 * torch.randn(net[2].bias.shape, generator=gen))
    return ctx


def shipped_with_context(context: ChannelContext | None) -> SDCCodec:
    """The shipped weights with their context replaced (None: taken out)."""
    tensors, manifest = load_weights()
    tensors = {k: v for k, v in tensors.items() if not k.startswith("int_ctx.")}
    manifest = copy.deepcopy(manifest)
    manifest["architecture"]["context_slices"] = context.slices if context else 0
    if context:
        tensors.update(IntegerChannelContext.quantize(context))
    return SDCCodec(tensors=tensors, manifest=manifest)


@pytest.fixture(scope="module")
def ctx_codec():
    """A context whose every layer is non-zero, whatever the shipped weights learned."""
    return shipped_with_context(random_context(load_weights()[1]["architecture"]["M"]))


@pytest.fixture(scope="module")
def quadrants(val_image):
    h, w = latent_shape(*val_image.shape[:2])
    gmap = np.full((h, w), 3, np.uint8)
    gmap[: h // 2, : w // 2], gmap[: h // 2, w // 2:], gmap[h // 2:, : w // 2] = 0, 1, 2
    return gmap


def test_integer_context_matches_the_float_one():
    """Same inputs to both: the fixed-point network's μ', σ' stay within rounding of the float one's."""
    from compressai.models.google import get_scale_table

    from sdc.models.channel_context import FACTOR_MAX, FACTOR_MIN, FEATURE_LIMIT, INDEX_SCALE

    M, P, C = 96, 500, 96 // SLICES
    ctx = random_context(M, seed=1).double()
    gen = torch.Generator().manual_seed(2)
    means_g = 3 * torch.randn(M, P, generator=gen, dtype=torch.float64)
    scales_g = torch.rand(M, P, generator=gen, dtype=torch.float64) * 8 + 0.05
    y_g = means_g + scales_g * torch.randn(M, P, generator=gen, dtype=torch.float64)

    ictx = IntegerChannelContext(IntegerChannelContext.quantize(ctx), M, SLICES)
    two = 2.0 ** (2 * ACT_BITS)
    means_2x, scales_2x = torch.round(means_g * two), torch.round(scales_g * two)
    idx = torch.searchsorted(torch.round(get_scale_table().double() * two)[:-1].contiguous(), scales_2x.contiguous())
    y_hat = [torch.round(y_g[:C] - means_g[:C]) * two + means_2x[:C]]
    for k in range(1, SLICES):
        ch = slice(k * C, (k + 1) * C)
        m, s = ictx.refine(k, ictx.inputs(means_2x, idx, y_hat), means_2x[ch], scales_2x[ch])
        assert torch.equal(m, torch.round(m)) and torch.equal(s, torch.round(s))  # integers, exactly
        float_in = torch.cat([means_g.clamp(-FEATURE_LIMIT, FEATURE_LIMIT), idx.double() * INDEX_SCALE]
                             + [v / two for v in y_hat], 0)
        d_mu, t = ctx.nets[k - 1](float_in.T[:, :, None, None])[:, :, 0, 0].T.chunk(2, 0)
        mu_f, sigma_f = means_g[ch] + d_mu, scales_g[ch] * (1 + t).clamp(FACTOR_MIN, FACTOR_MAX)
        assert (m / two - mu_f).abs().max() < 0.01  # fixed point vs float: a hundredth of a step
        assert ((s / two) / sigma_f - 1).abs().max() < 0.005
        assert (m / two - means_g[ch]).abs().max() > 0.05  # the context does change them
        y_hat.append(torch.round(y_g[ch] - m / two) * two + m)


def test_context_groups_decode_independently_and_exactly(ctx_codec, val_image, quadrants):
    q = {"L1": 7, "L2": 5, "L3": 3, "other": 2}
    coded = ctx_codec.encode(val_image, quadrants, q)
    plain = shipped_with_context(None).encode(val_image, quadrants, q)
    assert coded.hyperprior == plain.hyperprior and coded.groups != plain.groups  # the context is in the stream
    full = ctx_codec.decode_symbols(coded)
    for n in range(len(LEVELS) + 1):
        for levels in itertools.combinations(LEVELS, n):
            part = copy.copy(coded)
            part.groups = {lv: coded.groups[lv] for lv in levels}
            symbols = ctx_codec.decode_symbols(part)
            for lv in levels:
                assert np.array_equal(symbols[lv], full[lv]), (levels, lv)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ctx_codec.decode_symbols(coded)
        torch.set_num_threads(2)
        two = ctx_codec.decode_symbols(coded)
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(one[k], two[k]) for k in one)
    rgb = ctx_codec.decode(coded)
    assert 10 * np.log10(255**2 / np.mean((rgb.astype(float) - val_image) ** 2)) > 22


def test_context_positions_are_chunked_without_changing_a_value(ctx_codec, val_image, quadrants, monkeypatch):
    """Huge images rebuild the context's inputs chunk by chunk instead of keeping one buffer: same bytes."""
    import sdc.models.latent_codec as lc

    coded = ctx_codec.encode(val_image, quadrants, {lv: 4 for lv in LEVELS})
    monkeypatch.setattr(lc, "CONTEXT_BUFFER_BYTES", 0)
    monkeypatch.setattr(lc, "CONTEXT_CHUNK", 7)
    again = ctx_codec.encode(val_image, quadrants, {lv: 4 for lv in LEVELS})
    assert again.groups == coded.groups
    assert np.array_equal(ctx_codec.decode(again), ctx_codec.decode(coded))


def test_shipped_context_saves_bits_on_photos(codec, shared):
    """The trained context must pay: the same weights with it taken out code real photos in more bytes."""
    from conftest import load_rgb

    assert codec.manifest["architecture"].get("context_slices", 0) > 1
    plain = shipped_with_context(None)
    for name in ("wiki_011.png", "wiki_036.png"):
        rgb = load_rgb(shared / "data" / "val" / name, (384, 256))
        gmap = np.full(latent_shape(*rgb.shape[:2]), 3, np.uint8)
        for q in (2, 5, 8):
            with_ctx = codec.encode(rgb, gmap, {lv: q for lv in LEVELS})
            without = plain.encode(rgb, gmap, {lv: q for lv in LEVELS})
            assert with_ctx.hyperprior == without.hyperprior  # z does not depend on the context
            n_ctx, n_plain = len(with_ctx.groups["other"]), len(without.groups["other"])
            assert n_ctx < 0.99 * n_plain, (name, q, n_ctx, n_plain)
            # Both decode to the picture they coded.
            for c, coded in ((codec, with_ctx), (plain, without)):
                rgb_hat = c.decode(coded)
                assert 10 * np.log10(255**2 / np.mean((rgb_hat.astype(float) - rgb) ** 2)) > 20
