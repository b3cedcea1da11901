"""Channel-conditional context: the integer network matches the float one, keeps groups
independent and decodes bit-identically (tests/test_golden.py pins the symbols across
machines, thread counts and runtimes)."""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from sdc.levels import LEVELS
from sdc.training.channel_context import ChannelContext
from sdc.models.codec import SDCCodec
from sdc.models.integer_context import IntegerChannelContext
from sdc.models.integer_hyper import ACT_BITS
from sdc.geometry import latent_shape
from sdc.training.quantize import quantize_channel_context
from sdc.training.torch_transforms import load_torch_weights as load_weights

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
        tensors.update(quantize_channel_context(context))
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

    from sdc.models.integer_context import FACTOR_MAX, FACTOR_MIN, FEATURE_LIMIT, INDEX_SCALE

    M, P, C = 96, 500, 96 // SLICES
    ctx = random_context(M, seed=1).double()
    rng = np.random.default_rng(2)
    means_g = 3 * rng.standard_normal((M, P))
    scales_g = rng.random((M, P)) * 8 + 0.05
    y_g = means_g + scales_g * rng.standard_normal((M, P))

    ictx = IntegerChannelContext(quantize_channel_context(ctx), M, SLICES)
    two = 2.0 ** (2 * ACT_BITS)
    means_2x, scales_2x = np.round(means_g * two), np.round(scales_g * two)
    idx = np.searchsorted(np.round(get_scale_table().double().numpy() * two)[:-1], scales_2x)
    y_hat = [np.round(y_g[:C] - means_g[:C]) * two + means_2x[:C]]
    for k in range(1, SLICES):
        ch = slice(k * C, (k + 1) * C)
        m, s = ictx.refine(k, ictx.inputs(means_2x, idx, y_hat), means_2x[ch], scales_2x[ch])
        assert np.array_equal(m, np.round(m)) and np.array_equal(s, np.round(s))  # integers, exactly
        float_in = torch.from_numpy(np.concatenate([np.clip(means_g, -FEATURE_LIMIT, FEATURE_LIMIT), idx * INDEX_SCALE]
                                                   + [v / two for v in y_hat], 0))
        with torch.no_grad():
            d_mu, t = ctx.nets[k - 1](float_in.T[:, :, None, None])[:, :, 0, 0].T.numpy().reshape(2, C, P)
        mu_f, sigma_f = means_g[ch] + d_mu, scales_g[ch] * np.clip(1 + t, FACTOR_MIN, FACTOR_MAX)
        assert np.abs(m / two - mu_f).max() < 0.01  # fixed point vs float: a hundredth of a step
        assert np.abs((s / two) / sigma_f - 1).max() < 0.005
        assert np.abs(m / two - means_g[ch]).max() > 0.05  # the context does change them
        y_hat.append(np.round(y_g[ch] - m / two) * two + m)


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
