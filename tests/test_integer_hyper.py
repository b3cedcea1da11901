"""The integer hyper-synthesis is exact: equal to an int64 reference, on numpy alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sdc.models.integer_hyper import (ACT_BITS, ACT_LIMIT, EXACT_LIMIT, WEIGHT_LIMIT, IntegerHyperSynthesis, _exact_conv,
                                      _winograd_conv3x3, deconv_as_conv_kernel, scale_indexes, scale_thresholds,
                                      subpixel_kernel, winograd_bound, winograd_kernel)
from sdc.training.layers import build_h_s
from sdc.training.quantize import quantize_hyper_synthesis


def reference_forward(tensors: dict, z: np.ndarray) -> np.ndarray:
    """Plain int64 NumPy loops: the specification of the integer network."""
    x = z.astype(np.int64)
    for i in range(3):
        w = tensors[f"int_h_s.{i}.weight"].numpy().astype(np.int64)
        b = tensors[f"int_h_s.{i}.bias"].numpy().astype(np.int64)
        shift = int(tensors[f"int_h_s.{i}.shift"].item())
        k = w.shape[-1]
        if i < 2:  # transposed conv k5 s2 p2 op1 == zero-insert, pad (2, 3), conv
            up = np.zeros((x.shape[0], 2 * x.shape[1] - 1, 2 * x.shape[2] - 1), np.int64)
            up[:, ::2, ::2] = x
            xp = np.pad(up, ((0, 0), (2, 3), (2, 3)))
        else:
            xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
        ho, wo = xp.shape[1] - k + 1, xp.shape[2] - k + 1
        acc = np.zeros((w.shape[0], ho, wo), np.int64)
        for dy in range(k):
            for dx in range(k):
                acc += np.einsum("oc,chw->ohw", w[:, :, dy, dx], xp[:, dy : dy + ho, dx : dx + wo])
        acc += b[:, None, None]
        x = (acc + (1 << (shift - 1))) >> shift  # round half up
        if i < 2:
            x = np.where(x < 0, (x * 41) >> 12, x)
        x = np.clip(x, -ACT_LIMIT, ACT_LIMIT)
    return x


def test_matches_int64_reference():
    """Integer tensors as the weights file holds them (torch) or as numpy arrays: the same integers."""
    torch.manual_seed(0)
    tensors = quantize_hyper_synthesis(build_h_s(8, 12))
    rng = np.random.default_rng(1)
    z = rng.integers(-6, 7, (8, 3, 5)) * 2**ACT_BITS + rng.integers(-2000, 2000, (8, 1, 1))
    ref = reference_forward(tensors, z)
    for weights in (tensors, {k: v.numpy() for k, v in tensors.items()}):
        scales, means = IntegerHyperSynthesis(weights)(z.astype(np.float64)[None])
        assert isinstance(scales, np.ndarray)
        assert np.array_equal(np.concatenate([scales, means], 1)[0].astype(np.int64), ref)


def test_close_to_the_float_network():
    torch.manual_seed(0)
    h_s = build_h_s(8, 12)
    net = IntegerHyperSynthesis(quantize_hyper_synthesis(h_s))
    z = torch.round(torch.randn(1, 8, 4, 4) * 3)
    scales, means = net(z.double().numpy() * 2**ACT_BITS)
    with torch.no_grad():
        ref = h_s(z).double().numpy()
    got = np.concatenate([scales, means], 1) / 2**ACT_BITS
    assert np.abs(got - ref).max() < 5e-3


def test_kernel_helpers_give_torch_and_numpy_the_same_values():
    """deconv_as_conv_kernel and subpixel_kernel serve numpy here and torch in sdc.training.fast_layers."""
    w = torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    for fn in (deconv_as_conv_kernel, lambda k: subpixel_kernel(deconv_as_conv_kernel(k))):
        got_t, got_n = fn(w), fn(w.numpy())
        assert isinstance(got_t, torch.Tensor) and isinstance(got_n, np.ndarray)
        assert np.array_equal(got_t.numpy(), got_n)
    assert torch.equal(deconv_as_conv_kernel(w), w.flip(2, 3).transpose(0, 1))


def test_scale_indexes_count_table_entries_below():
    table = np.array([0.11, 0.2, 0.5, 1.0, 4.0], dtype=np.float32)
    th = scale_thresholds(table)
    scales = np.array([0.0, 0.11, 0.12, 0.5, 0.6, 3.9, 100.0]) * 2**ACT_BITS
    assert scale_indexes(np.round(scales), th).tolist() == [0, 0, 1, 2, 3, 4, 4]


def test_winograd_is_the_same_integers_as_im2col_at_the_extremes():
    """Activations at ±ACT_LIMIT, weights at ±WEIGHT_LIMIT, h_s's widest layer (288 channels
    in, 384 out) and odd, single-row and single-column sizes: bit-identical to im2col."""
    rng = np.random.default_rng(0)
    for c, o, h, w in [(288, 384, 6, 9), (192, 40, 1, 7), (16, 9, 5, 1), (3, 2, 1, 1)]:
        x = rng.integers(-ACT_LIMIT, ACT_LIMIT + 1, (1, c, h, w)).astype(np.float64)
        x[..., 0, 0] = ACT_LIMIT  # the largest magnitudes the bound allows for
        k = rng.integers(-WEIGHT_LIMIT, WEIGHT_LIMIT + 1, (o, c, 3, 3)).astype(np.float64)
        k[0] = WEIGHT_LIMIT
        u = winograd_kernel(k)
        assert winograd_bound(u, ACT_LIMIT) < EXACT_LIMIT / 2
        assert np.array_equal(_winograd_conv3x3(x, u), _exact_conv(x, k, 1, (1, 1, 1, 1))), (c, o, h, w)


@pytest.mark.parametrize("path", ["float64 im2col", "int64 im2col"])
def test_huge_hyperprior_input_leaves_winograd_and_stays_exact(monkeypatch, path):
    """A hostile ẑ can be far beyond the activation range. Where Winograd's bound is not
    met, that layer runs im2col (in float64 while its sums stay exact, else int64), and
    h_s still equals the int64 reference."""
    import sdc.models.integer_hyper as ih

    torch.manual_seed(0)
    tensors = quantize_hyper_synthesis(build_h_s(8, 12))
    net = IntegerHyperSynthesis(tensors)
    winograd_calls = []
    monkeypatch.setattr(ih, "_winograd_conv3x3", lambda *a: winograd_calls.append(1) or _winograd_conv3x3(*a))
    first = net.layers[0]
    magnitude = int(EXACT_LIMIT / 4 / first["abs_row_sum"]) if path == "float64 im2col" else 2**40
    assert winograd_bound(first["winograd"], magnitude) >= EXACT_LIMIT / 2
    assert (first["abs_row_sum"] * magnitude < EXACT_LIMIT / 2) == (path == "float64 im2col")
    rng = np.random.default_rng(2)
    z = rng.integers(-magnitude, magnitude + 1, (8, 3, 4))
    z[0, 0, 0] = magnitude
    scales, means = net(z.astype(np.float64)[None])
    assert len(winograd_calls) == 2  # not the first layer; its outputs are clipped to ±ACT_LIMIT
    assert np.array_equal(np.concatenate([scales, means], 1)[0].astype(np.int64), reference_forward(tensors, z))
