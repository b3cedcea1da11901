"""The learned composer's network and the discriminator that trains it (torch).

Data flow of :class:`ComposerNet` (H, W multiples of 16)::

    partial decode (3) + missing mask (1) + noise (1), H x W
      -> pixel unshuffle 4 -> 80 ch, H/4 -> conv -> res  ---------------- skip4
      -> conv s2 -> H/8 -> res  ----------------------------------------- skip8
      -> conv s2 -> H/16 -> dilated res blocks (1, 2, 4)  (receptive field ~ 300 px)
      -> pixel shuffle up to H/8, + skip8 -> conv -> res
      -> pixel shuffle up to H/4, + skip4 -> conv -> res
      -> head (x2, 3x3 conv, x2, 3x3 conv) -> 3 ch residual, added to the partial decode

The head goes up by 2 twice (pixel shuffle, then a 3x3 conv at H/2 and at H),
so that neighbouring 4x4 blocks blend instead of repeating one pattern.

The noise channel (standard normal) gives the network something to shape into
texture; training draws it afresh, the runtime from a fixed seed, so the
composer stays deterministic. The network sees the whole partial decode but is
trained, and used, only for the missing pixels: the caller keeps the decoded
ones (:mod:`sdc.compose.learned`). Its body works at a quarter of the
resolution and below, so that a 768x512 picture costs about 9.5 GFLOP (well
under a second on two cores with ONNX Runtime); the head still sets every pixel.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MULTIPLE = 16  # input height and width must be multiples of this
IN_CHANNELS = 5  # partial decode, missing mask, noise
WIDTHS = (32, 64, 96)  # channels at H/4, H/8, H/16
DILATIONS = (1, 2, 4)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation), _act(),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation))

    def forward(self, x):
        return x + self.body(x)


class Up(nn.Module):
    """x2 by pixel shuffle, then merged with the skip of that scale."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.expand = nn.Conv2d(c_in, 4 * c_out, 1)
        self.merge = nn.Sequential(nn.Conv2d(2 * c_out, c_out, 3, padding=1), _act(), ResBlock(c_out))

    def forward(self, x, skip):
        return self.merge(torch.cat([F.pixel_shuffle(self.expand(x), 2), skip], 1))


class ComposerNet(nn.Module):
    """(N, 5, H, W) [partial decode in 0..1, missing mask 0/1, noise] -> (N, 3, H, W) picture in 0..1."""

    def __init__(self, widths: tuple[int, int, int] = WIDTHS, dilations: tuple[int, ...] = DILATIONS):
        super().__init__()
        c4, c8, c16 = widths
        self.widths, self.dilations = tuple(widths), tuple(dilations)
        self.stem = nn.Sequential(nn.Conv2d(16 * IN_CHANNELS, c4, 3, padding=1), _act(), ResBlock(c4))
        self.down8 = nn.Sequential(nn.Conv2d(c4, c8, 3, stride=2, padding=1), _act(), ResBlock(c8))
        self.down16 = nn.Sequential(nn.Conv2d(c8, c16, 3, stride=2, padding=1), _act(),
                                    *[ResBlock(c16, d) for d in dilations])
        self.up8 = Up(c16, c8)
        self.up4 = Up(c8, c4)
        self.head = nn.Sequential(
            nn.Conv2d(c4, 64, 1), nn.PixelShuffle(2), _act(), nn.Conv2d(16, 16, 3, padding=1), _act(),
            nn.Conv2d(16, 32, 1), nn.PixelShuffle(2), _act(), nn.Conv2d(8, 3, 3, padding=1))
        last = self.head[-1]
        nn.init.zeros_(last.weight)  # starts as the identity: the partial decode itself
        nn.init.zeros_(last.bias)

    def forward(self, x):
        rgb = x[:, :3]
        s4 = self.stem(F.pixel_unshuffle(torch.cat([x[:, :4] - 0.5, x[:, 4:]], 1), 4))
        s8 = self.down8(s4)
        s16 = self.down16(s8)
        return rgb + self.head(self.up4(self.up8(s16, s8), s4))


class PatchDiscriminator(nn.Module):
    """(N, 4, H, W) [picture, missing mask] -> (N, 1, H/8, W/8) realness scores (hinge GAN).

    The mask tells it where the composer worked; real pictures come with the same
    masks, so the mask alone says nothing about realness."""

    def __init__(self, width: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.body = nn.Sequential(
            sn(nn.Conv2d(4, width, 4, 2, 1)), _act(),
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), _act(),
            sn(nn.Conv2d(2 * width, 4 * width, 4, 2, 1)), _act(),
            sn(nn.Conv2d(4 * width, 1, 3, 1, 1)))

    def forward(self, picture, mask):
        return self.body(torch.cat([picture - 0.5, mask], 1))
