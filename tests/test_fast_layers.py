"""The inference codec's faster layer equivalents (sdc.training.fast_layers) compute what the
compressai layers they replace compute, forward and backward (encoder-side refinement
backpropagates through g_s), on the shipped weights and real images."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from sdc.training.fast_layers import PatchDeconv, SpaceToDepthConv, SubpixelDeconv, speed_up
from sdc.training.layers import FoldedGDN, build_transforms
from conftest import float_net


def _same_forward_and_backward(original: nn.Module, fast: nn.Module, x: torch.Tensor) -> None:
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = original(x1), fast(x2)
    assert a.shape == b.shape and a.abs().max() > 0.05  # real magnitudes, not zeros
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-3, atol=1e-4)


def test_each_replacement_matches_its_layer_on_real_activations(shipped, crops):
    tensors, manifest = shipped
    arch = manifest["architecture"]
    net = float_net(tensors, arch, bypass=bool(arch.get("bypass")))
    with torch.no_grad():
        y = net.g_a(crops)
        layers = [m for name, m in net.g_s.named_children() if name != "bypass"]
        h = y
        for layer in layers[:-1]:
            h = layer(h)  # the input of g_s's last deconvolution
    _same_forward_and_backward(net.g_a[0], SpaceToDepthConv(net.g_a[0]), crops)
    _same_forward_and_backward(layers[-1], SubpixelDeconv(layers[-1]), h)
    if arch.get("bypass"):
        _same_forward_and_backward(net.g_s.bypass, PatchDeconv(net.g_s.bypass), y)
    # Random weights as well, so a symmetry of the trained kernels cannot hide a wrong tap order.
    torch.manual_seed(0)
    conv, deconv, patch = nn.Conv2d(3, 8, 5, 2, 2), nn.ConvTranspose2d(8, 3, 5, 2, 2, 1), nn.ConvTranspose2d(8, 3, 16, 16)
    _same_forward_and_backward(conv, SpaceToDepthConv(conv), crops)
    _same_forward_and_backward(deconv, SubpixelDeconv(deconv), torch.randn(2, 8, 12, 10))
    _same_forward_and_backward(patch, PatchDeconv(patch), torch.randn(2, 8, 3, 5))


def test_speed_up_swaps_exactly_the_three_layers_and_refuses_other_shapes():
    t = build_transforms(8, 16, FoldedGDN, bypass=True)
    g_a, g_s = t["g_a"], t["g_s"]
    speed_up(g_a, g_s)
    assert isinstance(g_a[0], SpaceToDepthConv) and isinstance(g_s._modules["6"], SubpixelDeconv)
    assert isinstance(g_s._modules["bypass"], PatchDeconv)
    kinds = [type(m) for name, m in g_s.named_children() if name not in ("6", "bypass")]
    assert nn.ConvTranspose2d in kinds  # the 64-channel deconvolutions stay as they are
    with pytest.raises(ValueError, match="5x5 stride-2"):
        SubpixelDeconv(nn.ConvTranspose2d(8, 3, 3, 2, 1, 1))
    with pytest.raises(ValueError, match="5x5 stride-2"):
        SpaceToDepthConv(nn.Conv2d(3, 8, 5, 1, 2))
    with pytest.raises(ValueError, match="kernel = stride"):
        PatchDeconv(nn.ConvTranspose2d(8, 3, 16, 8))
