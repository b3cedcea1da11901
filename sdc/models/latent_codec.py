"""Group-structured coding of the latent y given the hyperprior z.

Data flow::

    encoder                                                decoder
    ───────                                                ───────
    z ─► round(z·gz − m) ─► ẑ symbols ─► TableCoder ─► HYPR ─► ẑ symbols
                               │                                   │
                               ▼   (ẑ + m)/gz in fixed point       ▼
                        integer h_s ─► μ, σ  (ungained)     integer h_s ─► μ, σ
                               │  × g of each position's quality   │  × g
                               ▼                                   ▼
                         μ·g, σ-index(σ·g)                   μ·g, σ-index(σ·g)
                               │                                   │
    y·g ─► round(y·g − μ·g) ─► symbols                             │
              │ split by group map (L1 | L2 | L3 | other)          │
              ▼                                                    ▼
         TableCoder per group ─► L1, L2, L3, other ──► decode any subset:
                                                        ŷ·g = symbols + μ·g  (decoded groups)
                                                        ŷ·g = μ·g            (other positions)

Every position's distribution depends on ẑ and its own group's quality alone
(no spatial or cross-group context), so each group's substream decodes
without the others. μ·g and the σ-index are computed in integers
(:class:`IntegerHyperSynthesis`, gains and z median stored as fixed-point
integers in the weights), so they are bit-identical on every machine. Within
a group, symbols are listed channel by channel, and within a channel in raster
order of the group's positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sdc.levels import LEVELS
from sdc.models.entropy_coder import EntropyDecodeError, TableCoder
from sdc.models.integer_hyper import ACT_BITS, IntegerHyperSynthesis, scale_indexes

Z_SYMBOL_LIMIT = 1 << 15  # |ẑ symbol| bound; beyond it the file cannot be ours
Y_SYMBOL_LIMIT = 1 << 20  # |y symbol| bound (real latents stay far below)


@dataclass
class HyperParams:
    """What the decoder derives from the HYPR substream, the region map and the qualities."""

    z_symbols: np.ndarray  # (N, hz, wz) int64
    means: torch.Tensor  # (M, h, w) float64, μ·g in the gained domain
    indexes: np.ndarray  # (M, h, w) int64 table index per element


class GroupedLatentCodec:
    """Codes z and the groups of y; see the module docstring for the data flow."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.h_s = IntegerHyperSynthesis(tensors)
        self.thresholds = tensors["int_scale_thresholds"]  # units 2^-(2·ACT_BITS)
        self.gain_fixed = tensors["int_gain"].to(torch.float64)  # (Q, M), units 2^-ACT_BITS
        self.z_inv_gain_fixed = tensors["int_z_inv_gain"].to(torch.float64)  # (Q, N)
        self.z_median_fixed = tensors["int_z_median"].to(torch.float64)  # (N,)
        self.z_coder = TableCoder(
            tensors["entropy_bottleneck._quantized_cdf"].numpy(),
            tensors["entropy_bottleneck._cdf_length"].numpy(),
            tensors["entropy_bottleneck._offset"].numpy(),
        )
        self.y_coder = TableCoder(
            tensors["gaussian_conditional._quantized_cdf"].numpy(),
            tensors["gaussian_conditional._cdf_length"].numpy(),
            tensors["gaussian_conditional._offset"].numpy(),
        )

    def gains(self, qmap: torch.Tensor) -> torch.Tensor:
        """(M, h, w) float64 gains g of each position's quality (exactly the fixed-point ones)."""
        return self.gain_fixed[qmap].permute(2, 0, 1) * 2.0**-ACT_BITS

    # -- hyperprior ------------------------------------------------------------
    def hyper_params(self, z_symbols: np.ndarray, qz: int, qmap: torch.Tensor) -> HyperParams:
        """μ·g and σ-indexes from ẑ symbols; qz and qmap are 0-based qualities."""
        zs = torch.from_numpy(z_symbols.astype(np.float64))
        z_gained = zs * 2.0**ACT_BITS + self.z_median_fixed.view(-1, 1, 1)
        z_fixed = torch.floor(z_gained * self.z_inv_gain_fixed[qz].view(-1, 1, 1) * 2.0**-ACT_BITS + 0.5)
        scales, means = self.h_s(z_fixed[None])
        g = self.gain_fixed[qmap].permute(2, 0, 1)
        indexes = scale_indexes(scales[0] * g, self.thresholds).numpy().astype(np.int64)
        return HyperParams(z_symbols, means[0] * g * 2.0 ** (-2 * ACT_BITS), indexes)

    def z_indexes(self, shape: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    def encode_z(self, z: torch.Tensor, qz: int) -> tuple[bytes, np.ndarray]:
        """z: (N, hz, wz) float, ungained. Returns the HYPR substream and its symbols."""
        gz = 2.0**ACT_BITS / self.z_inv_gain_fixed[qz].view(-1, 1, 1)
        median = self.z_median_fixed.view(-1, 1, 1) * 2.0**-ACT_BITS
        sym = torch.round(z.double() * gz - median).to(torch.int64).numpy()
        sym = np.clip(sym, -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        return self.z_coder.encode(sym, self.z_indexes(sym.shape)), sym

    def decode_z(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        sym = self.z_coder.decode(data, self.z_indexes(shape)).reshape(shape)
        if np.abs(sym).max(initial=0) > Z_SYMBOL_LIMIT:
            raise EntropyDecodeError("hyperprior symbols out of range")
        return sym

    # -- groups of y --------------------------------------------------------------
    def y_symbols(self, y_gained: torch.Tensor, hp: HyperParams) -> np.ndarray:
        """(M, h, w) int64 symbols round(y·g − μ·g)."""
        sym = torch.round(y_gained.to(torch.float64) - hp.means).to(torch.int64).numpy()
        return np.clip(sym, -Y_SYMBOL_LIMIT, Y_SYMBOL_LIMIT)

    def encode_groups(self, symbols: np.ndarray, hp: HyperParams, group_map: np.ndarray,
                      levels: tuple[str, ...] = LEVELS) -> dict[str, bytes]:
        out = {}
        for level in levels:
            mask = group_map == LEVELS.index(level)
            out[level] = self.y_coder.encode(symbols[:, mask], hp.indexes[:, mask])
        return out

    def decode_groups(self, streams: dict[str, bytes], hp: HyperParams, group_map: np.ndarray) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """ŷ·g for all positions (μ·g where a group is absent) and the decoded symbols per group."""
        y_gained = hp.means.clone()
        decoded = {}
        for level, data in streams.items():
            mask = group_map == LEVELS.index(level)
            idx = hp.indexes[:, mask]
            try:
                sym = self.y_coder.decode(data, idx).reshape(idx.shape)
            except EntropyDecodeError as exc:
                raise EntropyDecodeError(f"{level} substream: {exc}") from None
            decoded[level] = sym
            mask_t = torch.from_numpy(mask)
            y_gained[:, mask_t] = torch.from_numpy(sym.astype(np.float64)) + hp.means[:, mask_t]
        return y_gained, decoded
