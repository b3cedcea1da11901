"""Fixed-point tensors of the integer networks, made from the float ones at export.

Float modules (torch) ─► these functions ─► integer tensors in the weights file
─► :class:`sdc.models.integer_hyper.IntegerHyperSynthesis` and
:class:`sdc.models.integer_context.IntegerChannelContext`, which run on numpy.
This is the only place the two meet, so decoders never import torch for them
and never re-derive the integers from floats.

Per layer: weights become integers in units of 2^-shift, the shift chosen so
the largest |w| fits WEIGHT_LIMIT; biases become integers in units of
2^-(ACT_BITS + shift), the accumulator's unit for activations in 2^-ACT_BITS.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from sdc.models.integer_hyper import ACT_BITS, WEIGHT_LIMIT, deconv_as_conv_kernel

# Caps the shift of a near-zero layer (a context close to its zero start), so that
# its bias, in units of 2^-(ACT_BITS + shift), stays far below 2^53.
CONTEXT_MAX_SHIFT = 24


def _layer_tensors(prefix: str, w: torch.Tensor, bias: torch.Tensor, shift: int) -> dict[str, torch.Tensor]:
    """Weight, bias and shift of one fixed-point layer (float64 w and bias in)."""
    return {
        prefix + "weight": torch.round(w * 2.0**shift).to(torch.int32).contiguous(),
        prefix + "bias": torch.round(bias * 2.0 ** (shift + ACT_BITS)).to(torch.int64),
        prefix + "shift": torch.tensor([shift], dtype=torch.int64),
    }


def quantize_hyper_synthesis(h_s: nn.Sequential, prefix: str = "int_h_s.") -> dict[str, torch.Tensor]:
    """Fixed-point tensors of the float h_s (deconv, deconv, conv), as the weights file stores them.

    Transposed convolutions are stored as their equivalent stride-1 kernel
    (O, C, k, k) over the zero-inserted input.
    """
    convs = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 3
    out = {}
    for i, m in enumerate(convs):
        w = m.weight.detach().double()
        if isinstance(m, nn.ConvTranspose2d):
            w = deconv_as_conv_kernel(w)
        shift = int(torch.floor(torch.log2(WEIGHT_LIMIT / w.abs().max())).item())
        out.update(_layer_tensors(f"{prefix}{i}.", w, m.bias.detach().double(), shift))
    return out


def quantize_channel_context(ctx, prefix: str = "int_ctx.") -> dict[str, torch.Tensor]:
    """Fixed-point tensors of a float :class:`sdc.training.channel_context.ChannelContext`
    (its 1x1 convolutions as matrices), keyed ``{prefix}{slice}.{layer}.``."""
    out = {}
    for k, net in enumerate(ctx.nets, start=1):
        for j, conv in enumerate((net[0], net[2])):
            w = conv.weight.detach().double()[:, :, 0, 0]
            peak = float(w.abs().max())
            shift = int(torch.floor(torch.log2(torch.tensor(WEIGHT_LIMIT / peak))).item()) if peak > 0 else 15
            shift = min(shift, CONTEXT_MAX_SHIFT)
            out.update(_layer_tensors(f"{prefix}{k}.{j}.", w, conv.bias.detach().double(), shift))
    return out
