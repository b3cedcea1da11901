"""Faster equivalents of a few transform layers, swapped in by the inference codec.

Each replacement computes the same sums of the same products as the layer
it replaces, only arranged so that oneDNN runs a plain stride-1 convolution
instead of a slow special case; results agree up to float32 summation order
(~1e-6, far below one code value). Training keeps the compressai layers, so
the weights file and its keys do not change.

Measured on a 2-core CPU, one thread, 768x512 image, channels-last (under
training load, so ratios rather than times):

    g_s last layer, 64 -> 3, 5x5 deconv s2   0.087-0.092 s -> 0.025-0.049 s
    g_s patch bypass, M -> 3, 16x16 deconv   0.027 s -> 0.014 s (M = 192)
    g_a first layer, 3 -> 64, 5x5 conv s2    0.024 s -> 0.017 s

The other deconvolutions of g_s (64 channels out) are faster as they are, so
they stay.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdc.models.integer_hyper import deconv_as_conv_kernel, subpixel_kernel


class SubpixelDeconv(nn.Module):
    """A stride-2, 5x5, padding-2, output-padding-1 transposed convolution as its
    four output phases: one 3x3 convolution with 4x the output channels, then a
    pixel shuffle (no multiplications by the zeros a transposed convolution inserts).
    Fast where the output has few channels (oneDNN's deconvolution is not)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        if deconv.kernel_size != (5, 5) or deconv.stride != (2, 2) or deconv.padding != (2, 2) \
                or deconv.output_padding != (1, 1):
            raise ValueError("SubpixelDeconv takes a 5x5 stride-2 deconv with padding 2, output padding 1")
        phases = subpixel_kernel(deconv_as_conv_kernel(deconv.weight.detach()))
        self.register_buffer("weight", phases.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", deconv.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=1), 2)


class PatchDeconv(nn.Module):
    """A transposed convolution whose kernel equals its stride (non-overlapping
    patches, the patch bypass of g_s) as a 1x1 convolution to k·k·C_out
    channels and a pixel shuffle by k."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        k = deconv.kernel_size[0]
        if deconv.kernel_size != (k, k) or deconv.stride != (k, k) or deconv.padding != (0, 0):
            raise ValueError("PatchDeconv takes a transposed convolution with kernel = stride, no padding")
        c_in, c_out = deconv.weight.shape[:2]
        # (C_in, C_out, k, k) -> (C_out·k·k, C_in, 1, 1), in pixel_shuffle's channel order.
        weight = deconv.weight.detach().reshape(c_in, c_out * k * k).t().reshape(c_out * k * k, c_in, 1, 1)
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", deconv.bias.detach().repeat_interleave(k * k))
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias), self.k)


class SpaceToDepthConv(nn.Module):
    """A stride-2, 5x5, padding-2 convolution as a pixel unshuffle by 2 and a 3x3
    convolution over the 4x channels (the 5x5 kernel padded to 6x6 and split
    into its 2x2 phases). Fast where the input has few channels (g_a's RGB
    input). Needs even input sizes, which the codec's padding to 64 guarantees."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.kernel_size != (5, 5) or conv.stride != (2, 2) or conv.padding != (2, 2):
            raise ValueError("SpaceToDepthConv takes a 5x5 stride-2 convolution with padding 2")
        c_out, c_in = conv.weight.shape[:2]
        w6 = F.pad(conv.weight.detach(), (0, 1, 0, 1))  # tap 5 of each axis is zero
        # Unshuffled input channel c·4 + rh·2 + rw holds x[2i + rh, 2j + rw]; block
        # offset b ∈ {0, 1, 2} (i − 1 .. i + 1) carries tap 2b + r.
        weight = w6.reshape(c_out, c_in, 3, 2, 3, 2).permute(0, 1, 3, 5, 2, 4).reshape(c_out, 4 * c_in, 3, 3)
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pixel_unshuffle(x, 2), self.weight, self.bias, padding=1)


def speed_up(g_a: nn.Sequential, g_s: nn.Sequential) -> None:
    """Swap in the faster equivalents (in place): g_a's first convolution, g_s's
    last deconvolution and, if present, g_s's patch bypass."""
    first = next(iter(g_a.named_children()))
    g_a._modules[first[0]] = SpaceToDepthConv(first[1])
    last_name = [name for name, _ in g_s.named_children() if name != "bypass"][-1]
    g_s._modules[last_name] = SubpixelDeconv(g_s._modules[last_name])
    if "bypass" in g_s._modules:
        g_s._modules["bypass"] = PatchDeconv(g_s._modules["bypass"])
