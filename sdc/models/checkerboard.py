"""Checkerboard spatial context inside a group (He et al. 2021, "Checkerboard
context model for efficient learned image compression"), restricted so that
groups stay independent.

Latent positions are split like a chessboard: *anchors* ((row + col) even)
are coded first, from the hyperprior (and the channel context) as before;
every other position then also sees the symbols of its four anchor
neighbours (up, down, left, right), **only those in its own group**::

                 anchors' symbols s = round(y·g − μ'·g)   (0 where not coded)
                          │ up, down, left, right of each non-anchor,
                          │ × [neighbour in the same group]
                          ▼
    σ-idx (own) ──► [4M + M] ─► 1x1 ─► LReLU ─► 1x1 ─► Δμ, t   (M each)
                                                      │
    non-anchor:  μ·g ← μ·g + Δμ,  σ·g ← σ·g · clamp(1 + t, 1/16, 4)
                 then the channel context's slice chain as for anchors

A neighbour in another group counts as symbol 0 (what "predicted exactly"
would give) whether or not that group is decoded, and the symbols are
residuals to the neighbour's own prediction, so a group's substream still
decodes from z and its own symbols alone. A group that is not decoded has
symbols 0 everywhere, and its non-anchors take the prediction this gives.

Float (:class:`SpatialContext`) for training and the encoder's refinement,
exact fixed point (:class:`IntegerSpatialContext`) for coding, with the
same argument as :mod:`sdc.models.integer_hyper`: inputs < 2^20, weights
< 2^15, fan-in 5M, so every sum is an integer far below 2^53.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdc.models.integer_hyper import ACT_BITS, ACT_LIMIT, apply_refinement, load_pointwise, quantize_pointwise, run_pointwise

SYMBOL_LIMIT = ACT_LIMIT * 2.0**-ACT_BITS  # symbols enter clipped to ±256 steps
INDEX_SCALE = 1 / 8  # the σ-index (0..63) enters as index / 8, as in the channel context
FACTOR_MIN, FACTOR_MAX = 1 / 16, 4.0
# (row, col) offsets of the four anchor neighbours of a non-anchor, in input order.
CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def anchor_mask(h: int, w: int, parity: int = 0, device=None) -> torch.Tensor:
    """(h, w) bool: True at anchors, (row + col + parity) even."""
    r = torch.arange(h, device=device)[:, None]
    c = torch.arange(w, device=device)[None, :]
    return (r + c + parity) % 2 == 0


def _shifted(x: torch.Tensor, dr: int, dc: int) -> torch.Tensor:
    """out[..., r, c] = x[..., r + dr, c + dc], 0 outside (x: (..., h, w))."""
    h, w = x.shape[-2:]
    pad = (max(0, -dc), max(0, dc), max(0, -dr), max(0, dr))
    padded = F.pad(x, pad)
    r0, c0 = max(0, dr), max(0, dc)
    return padded[..., r0:r0 + h, c0:c0 + w]


def cross_symbols(symbols: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """(B, 4M, h, w): each position's four neighbours' symbols, 0 where the
    neighbour is outside the latent or in another group.

    symbols: (B, M, h, w); groups: (B, h, w) group labels, None = one group.
    """
    parts = []
    for dr, dc in CROSS:
        s = _shifted(symbols, dr, dc)
        if groups is not None:
            g = groups[:, None].to(torch.int64)
            same = _shifted(g + 1, dr, dc) == g + 1  # +1: padding (0) never matches
            s = s * same.to(s.dtype)
        parts.append(s)
    return torch.cat(parts, 1)


class SpatialContext(nn.Module):
    """Float checkerboard context: (Δμ, t) for every position from its
    neighbours' symbols and its own σ-index; used at non-anchors only.

    The last layer starts at zero, so a new context changes nothing until it
    learns.
    """

    def __init__(self, M: int, hidden: int = 64):
        super().__init__()
        self.M, self.hidden = M, hidden
        self.net = nn.Sequential(nn.Conv2d(5 * M, hidden, 1), nn.LeakyReLU(), nn.Conv2d(hidden, 2 * M, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, symbols, index_feature, groups=None):
        """symbols: (B, M, h, w) anchors' symbols (0 at non-anchors); index_feature:
        σ-index × INDEX_SCALE; returns Δμ and the σ factor clamp(1 + t)."""
        feats = torch.cat([cross_symbols(symbols.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT), groups), index_feature], 1)
        d_mu, t = self.net(feats).chunk(2, 1)
        return d_mu, (1 + t).clamp(FACTOR_MIN, FACTOR_MAX)


class IntegerSpatialContext:
    """:class:`SpatialContext` in exact fixed point on flattened non-anchor positions.

    Units as :class:`sdc.models.channel_context.IntegerChannelContext`: μ·g, σ·g
    in 2^-(2·ACT_BITS), activations in 2^-ACT_BITS.
    """

    PREFIX = "int_spatial."

    def __init__(self, tensors: dict[str, torch.Tensor], prefix: str = PREFIX):
        self.layers = [load_pointwise(tensors, f"{prefix}{j}.") for j in range(2)]
        self.M = self.layers[1][0].shape[0] // 2

    @staticmethod
    def present(tensors: dict[str, torch.Tensor], prefix: str = PREFIX) -> bool:
        return f"{prefix}0.weight" in tensors

    @staticmethod
    def quantize(ctx: SpatialContext, prefix: str = PREFIX) -> dict[str, torch.Tensor]:
        return {**quantize_pointwise(ctx.net[0], f"{prefix}0."), **quantize_pointwise(ctx.net[2], f"{prefix}1.")}

    def refine(self, cross: torch.Tensor, indexes: torch.Tensor, means_2x: torch.Tensor,
               scales_2x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined μ·g, σ·g (units 2^-2·ACT_BITS) of (M, P) non-anchor positions.

        cross: (4M, P) integer neighbour symbols (0 for other groups / outside);
        indexes: (M, P) the hyperprior's σ-indexes there.
        """
        one = 2.0**ACT_BITS
        x = torch.cat([(cross.to(torch.float64) * one).clamp_(-ACT_LIMIT, ACT_LIMIT),
                       indexes.to(torch.float64) * (INDEX_SCALE * one)], 0)
        return apply_refinement(run_pointwise(self.layers, x), means_2x, scales_2x, FACTOR_MIN, FACTOR_MAX)
