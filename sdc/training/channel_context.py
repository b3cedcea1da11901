"""Channel-conditional context at one position (1x1), as in SSIC.

y's M channels are split into S slices of C = M / S. Slice 0 is coded with
the hyperprior's μ·g, σ·g; slice k > 0 gets them refined by a small network
that sees, at the *same latent position only*, the hyperprior's μ·g and
σ-index for all channels and the decoded ŷ·g of slices 0..k-1::

    μ·g, σ-idx ──┬──────────────┬─────────────── ... ──┐
                 ▼              ▼                      ▼
    slice 0 ─► ŷ₀ ──► net₁ ─► Δμ₁, t₁ ──► ŷ₁ ──► net₂ ─► ... ─► ŷ_{S-1}
                      μ₁' = μ₁·g + Δμ₁,  σ₁' = σ₁·g · clamp(1 + t₁, 1/16, 4)

Because nothing crosses positions, a group's substream still decodes from z
and its own symbols alone, and positions of groups not decoded get the
chain's prediction with ŷ = μ' in place of the missing symbols.

All values are in the gained domain (units of one quantization step), so the
network sees how coarse its inputs are without being told the quality.
Training (and the encoder's refinement, :mod:`sdc.training.refine`) uses
:class:`ChannelContext`, in float torch; encoders and decoders code with
:class:`sdc.models.integer_context.IntegerChannelContext`, the same network
in fixed point on numpy with the same exactness argument as
:mod:`sdc.models.integer_hyper`, so the refined means and table indexes are
bit-identical everywhere. :mod:`sdc.training.quantize` makes its tensors.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from sdc.models.integer_context import FACTOR_MAX, FACTOR_MIN, FEATURE_LIMIT, INDEX_SCALE, slice_width


class ChannelContext(nn.Module):
    """Float context for training: refines (μ·g, σ·g) slice by slice.

    The last layer of each slice network starts at zero, so a new context
    leaves a trained hyperprior model unchanged until it learns something.
    """

    def __init__(self, M: int, slices: int = 4, hidden: int = 64):
        super().__init__()
        self.M, self.slices, self.hidden = M, slices, hidden
        self.C = slice_width(M, slices)
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * M + k * self.C, hidden, 1), nn.LeakyReLU(), nn.Conv2d(hidden, 2 * self.C, 1))
            for k in range(1, slices)
        )
        for net in self.nets:
            nn.init.zeros_(net[2].weight)
            nn.init.zeros_(net[2].bias)

    @staticmethod
    def index_feature(scales_g: torch.Tensor, scale_table: torch.Tensor) -> torch.Tensor:
        """σ-index as the coder picks it (no gradient), times INDEX_SCALE."""
        with torch.no_grad():
            idx = torch.searchsorted(scale_table[:-1].to(scales_g.dtype).contiguous(),
                                     scales_g.detach().contiguous(), right=False)
            return idx.to(scales_g.dtype) * INDEX_SCALE

    def forward(self, y_g, means_g, scales_g, scale_table, quantize):
        """Returns refined (means_g, scales_g) and ŷ·g = quantize(y·g − μ') + μ'.

        quantize: rounding used for ŷ (straight-through rounding in training).
        """
        C = self.C
        feats = [means_g.clamp(-FEATURE_LIMIT, FEATURE_LIMIT), self.index_feature(scales_g, scale_table)]
        mus, sigmas = [means_g[:, :C]], [scales_g[:, :C]]
        y_hat = [quantize(y_g[:, :C] - mus[0]) + mus[0]]
        for k in range(1, self.slices):
            out = self.nets[k - 1](torch.cat(feats + [s.clamp(-FEATURE_LIMIT, FEATURE_LIMIT) for s in y_hat], 1))
            d_mu, t = out.chunk(2, 1)
            mus.append(means_g[:, k * C:(k + 1) * C] + d_mu)
            sigmas.append(scales_g[:, k * C:(k + 1) * C] * (1 + t).clamp(FACTOR_MIN, FACTOR_MAX))
            y_hat.append(quantize(y_g[:, k * C:(k + 1) * C] - mus[k]) + mus[k])
        return torch.cat(mus, 1), torch.cat(sigmas, 1), torch.cat(y_hat, 1)
