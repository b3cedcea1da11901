"""Group-structured coding of the latent y given the hyperprior z.

Data flow::

    encoder                                              decoder
    ───────                                              ───────
    z ─► round(z − m) ─► ẑ symbols ─► TableCoder ─► HYPR ─► ẑ symbols
                             │                                  │
                             ▼   ẑ·2¹² + m̃ (integers)           ▼
                      integer h_s ─► μ, σ ─► σ-index      integer h_s ─► μ, σ-index
                             │                                  │
    y·g ─► round(y·g − μ) ─► symbols                            │
              │ split by group map (L1 | L2 | L3 | other)       │
              ▼                                                 ▼
         TableCoder per group ─► L1, L2, L3, other ──► decode any subset:
                                                        ŷ·g = symbols + μ  (decoded groups)
                                                        ŷ·g = μ            (other positions)

Every position's distribution depends on ẑ alone (no spatial or cross-group
context), so each group's substream decodes without the others. μ and the
σ-index come from :class:`IntegerHyperSynthesis`, so they are bit-identical on
every machine; m̃ is the z median in the same fixed point, stored as an
integer. Within a group, symbols are listed channel by channel, and within a
channel in raster order of the group's positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sdc.levels import LEVELS
from sdc.models.entropy_coder import EntropyDecodeError, TableCoder
from sdc.models.integer_hyper import ACT_BITS, IntegerHyperSynthesis, scale_indexes

Z_SYMBOL_LIMIT = 1 << 15  # |ẑ symbol| bound; beyond it the file cannot be ours


@dataclass
class HyperParams:
    """What the decoder derives from the HYPR substream alone."""

    z_symbols: np.ndarray  # (N, hz, wz) int64
    means: torch.Tensor  # (M, h, w) float64, in the gained domain
    indexes: np.ndarray  # (M, h, w) int64 table index per element


class GroupedLatentCodec:
    """Codes z and the groups of y; see the module docstring for the data flow."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.h_s = IntegerHyperSynthesis(tensors)
        self.thresholds = tensors["int_scale_thresholds"]
        self.z_median_fixed = tensors["int_z_median"].to(torch.float64)  # (N,)
        self.z_median = tensors["entropy_bottleneck.quantiles"][:, 0, 1].to(torch.float32)
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

    # -- hyperprior ------------------------------------------------------------
    def hyper_params(self, z_symbols: np.ndarray) -> HyperParams:
        zs = torch.from_numpy(z_symbols.astype(np.float64))
        z_fixed = zs * 2.0**ACT_BITS + self.z_median_fixed.view(-1, 1, 1)
        scales, means = self.h_s(z_fixed[None])
        indexes = scale_indexes(scales[0], self.thresholds).numpy().astype(np.int64)
        return HyperParams(z_symbols, means[0] * 2.0**-ACT_BITS, indexes)

    def z_indexes(self, shape: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    def encode_z(self, z: torch.Tensor) -> tuple[bytes, HyperParams]:
        """z: (N, hz, wz) float. Returns the HYPR substream and the decoder's view of it."""
        sym = torch.round(z - self.z_median.view(-1, 1, 1)).to(torch.int64).numpy()
        sym = np.clip(sym, -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        data = self.z_coder.encode(sym, self.z_indexes(sym.shape))
        return data, self.hyper_params(sym)

    def decode_z(self, data: bytes, shape: tuple[int, int, int]) -> HyperParams:
        sym = self.z_coder.decode(data, self.z_indexes(shape)).reshape(shape)
        if np.abs(sym).max(initial=0) > Z_SYMBOL_LIMIT:
            raise EntropyDecodeError("hyperprior symbols out of range")
        return self.hyper_params(sym)

    # -- groups of y --------------------------------------------------------------
    def y_symbols(self, y_gained: torch.Tensor, hp: HyperParams) -> np.ndarray:
        """(M, h, w) int64 symbols round(y·g − μ)."""
        return torch.round(y_gained.to(torch.float64) - hp.means).to(torch.int64).numpy()

    def encode_groups(self, symbols: np.ndarray, hp: HyperParams, group_map: np.ndarray,
                      levels: tuple[str, ...] = LEVELS) -> dict[str, bytes]:
        out = {}
        for level in levels:
            mask = group_map == LEVELS.index(level)
            out[level] = self.y_coder.encode(symbols[:, mask], hp.indexes[:, mask])
        return out

    def decode_groups(self, streams: dict[str, bytes], hp: HyperParams, group_map: np.ndarray) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """ŷ·g for all positions (μ where a group is absent) and the decoded symbols per group."""
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
