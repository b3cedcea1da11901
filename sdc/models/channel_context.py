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
Training uses :class:`ChannelContext` (float); decoders run
:class:`IntegerChannelContext`, the same network in fixed point with the same
exactness argument as :mod:`sdc.models.integer_hyper`, so the refined means
and table indexes are bit-identical everywhere.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from sdc.models.integer_hyper import ACT_BITS, ACT_LIMIT, WEIGHT_LIMIT, _rescale, layer_output

FEATURE_LIMIT = ACT_LIMIT * 2.0**-ACT_BITS  # inputs are clipped to ±256 steps
INDEX_SCALE = 1 / 8  # the σ-index (0..63) enters the network as index / 8
FACTOR_MIN, FACTOR_MAX = 1 / 16, 4.0  # bounds of the σ multiplier 1 + t


def _slice_width(M: int, slices: int) -> int:
    if M % slices:
        raise ValueError(f"{M} channels do not split into {slices} slices")
    return M // slices


class ChannelContext(nn.Module):
    """Float context for training: refines (μ·g, σ·g) slice by slice.

    The last layer of each slice network starts at zero, so a new context
    leaves a trained hyperprior model unchanged until it learns something.
    """

    def __init__(self, M: int, slices: int = 4, hidden: int = 64):
        super().__init__()
        self.M, self.slices, self.hidden = M, slices, hidden
        self.C = _slice_width(M, slices)
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


class IntegerChannelContext:
    """:class:`ChannelContext` in exact fixed point, for encoders and decoders.

    Works on flattened positions: every tensor is (channels, P) of
    integer-valued float64. Units: μ·g and σ·g in 2^-(2·ACT_BITS) (as
    :meth:`GroupedLatentCodec.hyper_params` makes them), network activations
    in 2^-ACT_BITS. Layers are 1x1, so a matmul with fan-in ≤ 2M + M of
    integers < 2^20 · 2^15 stays far below 2^53.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], M: int, slices: int, prefix: str = "int_ctx."):
        self.M, self.slices, self.C = M, slices, _slice_width(M, slices)
        self.layers = []
        for k in range(1, slices):
            pair = []
            for j in range(2):
                p = f"{prefix}{k}.{j}."
                pair.append((tensors[p + "weight"].to(torch.float64), tensors[p + "bias"].to(torch.float64),
                             int(tensors[p + "shift"].item())))
            self.layers.append(pair)

    @staticmethod
    def quantize(ctx: ChannelContext, prefix: str = "int_ctx.") -> dict[str, torch.Tensor]:
        out = {}
        for k, net in enumerate(ctx.nets, start=1):
            for j, conv in enumerate((net[0], net[2])):
                w = conv.weight.detach().double()[:, :, 0, 0]
                peak = float(w.abs().max())
                shift = int(torch.floor(torch.log2(torch.tensor(WEIGHT_LIMIT / peak))).item()) if peak > 0 else 15
                shift = min(shift, 24)
                p = f"{prefix}{k}.{j}."
                out[p + "weight"] = torch.round(w * 2.0**shift).to(torch.int32).contiguous()
                out[p + "bias"] = torch.round(conv.bias.detach().double() * 2.0 ** (shift + ACT_BITS)).to(torch.int64)
                out[p + "shift"] = torch.tensor([shift], dtype=torch.int64)
        return out

    @staticmethod
    def to_act(value_2x: torch.Tensor) -> torch.Tensor:
        """Units 2^-(2·ACT_BITS) -> clipped activations in 2^-ACT_BITS (round half up)."""
        return _rescale(value_2x, ACT_BITS).clamp_(-ACT_LIMIT, ACT_LIMIT)

    def input_rows(self, k: int) -> int:
        """Rows of slice k's network input: μ·g, σ-index (M each), then ŷ·g of slices < k."""
        return 2 * self.M + k * self.C

    def write_features(self, out: torch.Tensor, means_2x: torch.Tensor, indexes: torch.Tensor) -> None:
        """Fill the first 2M rows of an input buffer with what every slice network shares."""
        M = self.M
        out[:M] = self.to_act(means_2x)
        torch.mul(indexes.to(torch.float64), INDEX_SCALE * 2.0**ACT_BITS, out=out[M:2 * M])

    def inputs(self, means_2x: torch.Tensor, indexes: torch.Tensor, y_hat_2x: list[torch.Tensor]) -> torch.Tensor:
        """(2M + kC, P) input of slice k = len(y_hat_2x)'s network."""
        x = torch.empty(self.input_rows(len(y_hat_2x)), means_2x.shape[1], dtype=torch.float64)
        self.write_features(x, means_2x, indexes)
        for j, v in enumerate(y_hat_2x):
            r = self.input_rows(j)
            x[r:r + self.C] = self.to_act(v)
        return x

    def refine(self, k: int, x: torch.Tensor, means_2x: torch.Tensor,
               scales_2x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined μ·g, σ·g (units 2^-2·ACT_BITS) of slice k ≥ 1.

        x: the network input (:meth:`inputs`), or a buffer holding at least
        its rows; only the first :meth:`input_rows` (k) are read.
        """
        x = x[:self.input_rows(k)]
        for j, (w, b, shift) in enumerate(self.layers[k - 1]):
            x = layer_output(torch.addmm(b[:, None], w, x), shift, leaky=j == 0)
        d_mu, t = x.chunk(2, 0)
        one = 2.0**ACT_BITS
        factor = (one + t).clamp_(FACTOR_MIN * one, FACTOR_MAX * one)
        return means_2x + d_mu * one, torch.floor(scales_2x * factor * 2.0**-ACT_BITS)
