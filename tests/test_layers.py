"""FoldedGDN, the inference codec's GDN: the same function as compressai's trainable GDN
it is folded from, in both the in-place inference path and the autograd path."""
from __future__ import annotations

import pytest
import torch

from sdc.training.layers import FoldedGDN
from sdc.training.network import trainable_gdn


@pytest.mark.parametrize("prefix, inverse", [("g_a.1.", False), ("g_s.5.", True)])
def test_folded_gdn_matches_compressai_gdn_on_real_activations(shipped, crops, prefix, inverse):
    tensors, _ = shipped
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    channels = state["beta"].numel()
    reference = trainable_gdn(channels, inverse)
    reference.load_state_dict(state)
    folded = FoldedGDN(channels, inverse)
    folded.load_reparametrized(tensors, prefix)
    # Realistic inputs: the image through g_a's first convolution, scaled to spread over GDN's range.
    conv = torch.nn.Conv2d(3, channels, 5, 2, 2)
    conv.load_state_dict({"weight": tensors["g_a.0.weight"], "bias": tensors["g_a.0.bias"]})
    with torch.no_grad():
        x = conv(crops) * (3.0 if inverse else 1.0)
        expected = reference(x)
    with torch.inference_mode():
        in_place = folded(x.clone())
    x_grad = x.clone().requires_grad_(True)
    with_grad = folded(x_grad)
    with_grad.square().sum().backward()
    assert x_grad.grad is not None and x_grad.grad.abs().max() > 0
    assert torch.equal(in_place, with_grad.detach())
    torch.testing.assert_close(in_place, expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 0.1  # the comparison is over real magnitudes, not zeros
