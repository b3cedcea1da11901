"""The trainable network: transforms, hyperprior and quality gains.

Architecture (module names and shapes match compressai's
``MeanScaleHyperprior(N, M)``, so its weights can initialise this one)::

              ┌───┐  y   ┌─────┐ y·g  ┌───┐  z  ┌───┐ ẑ  ┌───┐  μ, σ
        x ──►─┤g_a├──►───┤ ×g  ├──┬──►┤h_a├──►──┤ Q ├─►──┤h_s├──►──┐
              └───┘      └─────┘  │   └───┘     └───┘ EB └───┘     │
                                  ▼                                 ▼
                                ┌─┴─┐ ŷ·g = round(y·g − μ) + μ     GC
                                │ Q ├──────────────────────────◄───┘
                                └─┬─┘
              ┌───┐   ŷ  ┌─────┐  │
      x̂ ──◄──┤g_s├──◄───┤ ×g' ├──┘
              └───┘      └─────┘

g and g' are per-channel gain vectors, one pair per quality q (Cui et al.
2021, "Asymmetric gained deep image compression"). The gain is a *map*: each
latent position takes the gain of its group's quality, so one image can carry
L1 at q=8 and the background at q=2. h_a sees the gained latent, so the
hyperprior (and its rate) follows the quality too, and h_s predicts mean and
scale directly in the gained domain: the decoder needs no gain to find the
entropy-coding tables, only g' to reconstruct.

No spatial context is used for y: every position's distribution depends on
z alone, which is what makes groups decodable independently.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN

# Rate-distortion trade-offs of the qualities 1..8: loss = λ·255²·MSE + bpp.
LAMBDAS: tuple[float, ...] = tuple(0.0016 * 1.7**k for k in range(8))
# λ of the shared warm start; its gains are initialised to 1 there.
REFERENCE_LAMBDA = 0.013
# Downsampling factor of y, and of the padding grid (y is 1/16, z 1/64).
LATENT_STRIDE = 16
PAD_MULTIPLE = 64


def conv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, output_padding=s - 1, padding=k // 2)


def build_h_s(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(N, M),
        nn.LeakyReLU(inplace=True),
        deconv(M, M * 3 // 2),
        nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, M * 2, k=3, s=1),
    )


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return (torch.round(x) - x).detach() + x


class SDCNet(nn.Module):
    """Variable-rate mean-scale hyperprior with per-position gains.

    Args:
        N: channels of the transforms and of z.
        M: channels of y.
        num_qualities: number of gain pairs (qualities 1..num_qualities).
    """

    def __init__(self, N: int = 64, M: int = 96, num_qualities: int = len(LAMBDAS)):
        super().__init__()
        self.N, self.M, self.num_qualities = N, M, num_qualities
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M),
        )
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            conv(M, N, k=3, s=1), nn.LeakyReLU(inplace=True), conv(N, N),
            nn.LeakyReLU(inplace=True), conv(N, N),
        )
        self.h_s = build_h_s(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        # Gains start where high-rate theory puts them: step size ∝ 1/sqrt(λ).
        init = torch.tensor([0.5 * math.log(lam / REFERENCE_LAMBDA) for lam in LAMBDAS[:num_qualities]])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))

    # -- gains ---------------------------------------------------------------
    def gain_maps(self, qmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position gains for a (B, h, w) map of 0-based quality indexes."""
        g = self.log_gain.exp()[qmap].permute(0, 3, 1, 2)
        gi = self.log_inv_gain.exp()[qmap].permute(0, 3, 1, 2)
        return g.contiguous(), gi.contiguous()

    # -- training ------------------------------------------------------------
    def forward(self, x: torch.Tensor, qmap: torch.Tensor) -> dict:
        """x: (B, 3, H, W) in [0, 1]; qmap: (B, H/16, W/16) long quality indexes."""
        y = self.g_a(x)
        g, gi = self.gain_maps(qmap)
        y_g = y * g
        z = self.h_a(y_g)
        z_hat, z_lik = self.entropy_bottleneck(z)
        scales, means = self.h_s(z_hat).chunk(2, 1)
        # Rate from additive noise, reconstruction from true rounding
        # ("mixed quantization", Minnen & Singh 2020): the synthesis learns on
        # the latents it will really get.
        _, y_lik = self.gaussian_conditional(y_g, scales, means=means)
        y_hat = (ste_round(y_g - means) + means) * gi
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the bottom/right to multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def latent_shape(height: int, width: int) -> tuple[int, int]:
    """Shape of y (and of the region map) for an image of this size."""
    return (
        -(-height // PAD_MULTIPLE) * (PAD_MULTIPLE // LATENT_STRIDE),
        -(-width // PAD_MULTIPLE) * (PAD_MULTIPLE // LATENT_STRIDE),
    )
