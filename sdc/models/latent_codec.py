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

With a channel context (weights whose manifest has ``context_slices`` S > 1)
the channels are coded in S slices, and slice k's μ·g, σ-index are refined
from ŷ·g of slices < k *at the same position* (:mod:`sdc.models.channel_context`)::

    slice 0: μ·g, σ-idx from h_s ─► symbols₀ ─► ŷ₀·g
    slice k: IntegerChannelContext(μ·g, σ-idx, ŷ₀..ŷ_{k-1}) ─► μ'·g, σ'-idx ─► symbols_k ─► ŷ_k·g

A decoder lacking a group uses ŷ = μ'·g there and carries on the chain.

Every position's distribution depends on ẑ, its own group's quality and its
own earlier slices alone (no spatial or cross-group context), so each group's
substream decodes without the others. μ·g, the context and the σ-index are
computed in integers (:class:`IntegerHyperSynthesis`,
:class:`IntegerChannelContext`, gains and z median stored as fixed-point
integers in the weights), so they are bit-identical on every machine. Within
a group, symbols are listed slice by slice, within a slice channel by
channel, and within a channel in raster order of the group's positions; each
slice is one batch of the substream's range coder (see
:mod:`sdc.models.entropy_coder`), so a decoder can index slice k only after
decoding slice k-1.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from sdc.levels import LEVELS
from sdc.models.channel_context import IntegerChannelContext
from sdc.models.entropy_coder import EntropyDecodeError, TableCoder
from sdc.models.integer_hyper import ACT_BITS, IntegerHyperSynthesis, scale_indexes

Z_SYMBOL_LIMIT = 1 << 15  # |ẑ symbol| bound; beyond it the file cannot be ours
Y_SYMBOL_LIMIT = 1 << 20  # |y symbol| bound (real latents stay far below)
CONTEXT_BUFFER_BYTES = 256 << 20  # largest input buffer of the channel context kept for a whole image
CONTEXT_CHUNK = 16384  # positions per pass of the channel context beyond that (bounds memory on huge images)


@contextlib.contextmanager
def _naming_substream(level: str):
    """Prefix entropy-decoding errors with the substream they come from."""
    try:
        yield
    except EntropyDecodeError as exc:
        raise EntropyDecodeError(f"{level} substream: {exc}") from None


@dataclass
class HyperParams:
    """What the decoder derives from the HYPR substream, the region map and the qualities."""

    z_symbols: np.ndarray  # (N, hz, wz) int64
    means_2x: torch.Tensor  # (M, h, w) integer-valued float64: μ·g in units 2^-(2·ACT_BITS)
    scales_2x: torch.Tensor  # (M, h, w) the same for σ·g
    indexes: np.ndarray  # (M, h, w) int64 table index per element, from the hyperprior alone

    @property
    def means(self) -> torch.Tensor:
        """μ·g in quantization steps (float64, exact)."""
        return self.means_2x * 2.0 ** (-2 * ACT_BITS)

    @property
    def scales(self) -> torch.Tensor:
        """σ·g in quantization steps (float64, exact)."""
        return self.scales_2x * 2.0 ** (-2 * ACT_BITS)


class GroupedLatentCodec:
    """Codes z and the groups of y; see the module docstring for the data flow.

    Args:
        tensors: the weights file's tensors.
        context_slices: channel slices of the 1x1 channel context (0 or 1: none).
    """

    def __init__(self, tensors: dict[str, torch.Tensor], context_slices: int = 0):
        self.h_s = IntegerHyperSynthesis(tensors)
        self.thresholds = tensors["int_scale_thresholds"]  # units 2^-(2·ACT_BITS)
        self.gain_fixed = tensors["int_gain"].to(torch.float64)  # (Q, M), units 2^-ACT_BITS
        self.M = self.gain_fixed.shape[1]
        self.z_inv_gain_fixed = tensors["int_z_inv_gain"].to(torch.float64)  # (Q, N)
        self.z_median_fixed = tensors["int_z_median"].to(torch.float64)  # (N,)
        self.context = IntegerChannelContext(tensors, self.M, context_slices) if context_slices > 1 else None
        width = self.context.C if self.context else self.M
        self.slices = [slice(c, c + width) for c in range(0, self.M, width)]
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
        """μ·g, σ·g and σ-indexes from ẑ symbols; qz and qmap are 0-based qualities."""
        zs = torch.from_numpy(z_symbols.astype(np.float64))
        z_gained = zs * 2.0**ACT_BITS + self.z_median_fixed.view(-1, 1, 1)
        z_fixed = torch.floor(z_gained * self.z_inv_gain_fixed[qz].view(-1, 1, 1) * 2.0**-ACT_BITS + 0.5)
        scales, means = self.h_s(z_fixed[None])
        g = self.gain_fixed[qmap].permute(2, 0, 1)
        scales_2x = scales[0] * g
        indexes = scale_indexes(scales_2x, self.thresholds).numpy().astype(np.int64)
        return HyperParams(z_symbols, means[0] * g, scales_2x, indexes)

    def z_indexes(self, shape: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    def z_gain(self, qz: int) -> torch.Tensor:
        """(N,) float64 g_z of quality qz, as the decoder's fixed-point inverse implies."""
        return 2.0**ACT_BITS / self.z_inv_gain_fixed[qz]

    @property
    def z_median(self) -> torch.Tensor:
        """(N,) float64 median of z·g_z (the symbols' offset)."""
        return self.z_median_fixed * 2.0**-ACT_BITS

    def z_unrounded(self, z: torch.Tensor, qz: int) -> torch.Tensor:
        """z·g_z − median: the ẑ symbols before rounding."""
        return z.double() * self.z_gain(qz).view(-1, 1, 1) - self.z_median.view(-1, 1, 1)

    def encode_z_symbols(self, sym: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The HYPR substream of (N, hz, wz) ẑ symbols (clipped to the format's bound), and the symbols."""
        sym = np.clip(sym, -Z_SYMBOL_LIMIT, Z_SYMBOL_LIMIT)
        return self.z_coder.encode(sym, self.z_indexes(sym.shape)), sym

    def decode_z(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        sym = self.z_coder.decode(data, self.z_indexes(shape)).reshape(shape)
        if np.abs(sym).max(initial=0) > Z_SYMBOL_LIMIT:
            raise EntropyDecodeError("hyperprior symbols out of range")
        return sym

    # -- groups of y --------------------------------------------------------------
    def encode_groups(self, y_gained: torch.Tensor, hp: HyperParams, group_map: np.ndarray,
                      levels: tuple[str, ...] = LEVELS) -> tuple[dict[str, bytes], np.ndarray]:
        """Substreams of `levels` from y·g (M, h, w); also returns all (M, h, w) symbols.

        Each substream holds one batch per channel slice, in slice order.
        """
        M, P = self.M, y_gained[0].numel()
        y2 = y_gained.to(torch.float64).reshape(M, P)
        masks = {lv: (group_map == LEVELS.index(lv)).reshape(-1) for lv in levels}
        encoders = {lv: self.y_coder.encoder() for lv in levels}
        symbols = np.empty((M, P), dtype=np.int64)
        chain = _SliceChain(self, hp)
        for k, ch in enumerate(self.slices):
            means, indexes = chain.params(k)
            sym = torch.round(y2[ch] - means * 2.0 ** (-2 * ACT_BITS)).clamp_(-Y_SYMBOL_LIMIT, Y_SYMBOL_LIMIT)
            symbols[ch] = sym.to(torch.int64).numpy()
            chain.push(sym * 2.0 ** (2 * ACT_BITS) + means)
            for lv in levels:
                encoders[lv].encode(symbols[ch][:, masks[lv]], indexes[:, masks[lv]])
        return {lv: e.finish() for lv, e in encoders.items()}, symbols.reshape(y_gained.shape)

    def decode_groups(self, streams: dict[str, bytes], hp: HyperParams, group_map: np.ndarray) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """ŷ·g for all positions (the prediction μ'·g where a group is absent) and the decoded symbols per group."""
        masks = {lv: (group_map == LEVELS.index(lv)).reshape(-1) for lv in streams}
        decoders = {}
        for lv, data in streams.items():
            with _naming_substream(lv):
                decoders[lv] = self.y_coder.decoder(data)
        decoded = {lv: [] for lv in streams}
        chain = _SliceChain(self, hp)
        for k, ch in enumerate(self.slices):
            means, indexes = chain.params(k)
            y_k = means.clone()
            for lv, dec in decoders.items():
                idx = indexes[:, masks[lv]]
                with _naming_substream(lv):
                    sym = dec.decode(idx).reshape(idx.shape)
                    if np.abs(sym).max(initial=0) > Y_SYMBOL_LIMIT:
                        raise EntropyDecodeError("symbols out of range")
                decoded[lv].append(sym)
                y_k[:, torch.from_numpy(masks[lv])] += torch.from_numpy(sym.astype(np.float64)) * 2.0 ** (2 * ACT_BITS)
            chain.push(y_k)
        for lv, dec in decoders.items():
            with _naming_substream(lv):
                dec.finish()
        y_gained = (torch.cat(chain.y_hat_2x, 0) * 2.0 ** (-2 * ACT_BITS)).reshape(hp.means_2x.shape)
        return y_gained, {lv: np.concatenate(parts, 0) for lv, parts in decoded.items()}


class _SliceChain:
    """μ'·g and σ'-indexes of one image's slices, in coding order.

    Call :meth:`params` (k) for slice k, code it, then :meth:`push` its ŷ·g.
    The context's inputs for all positions live in one buffer: the features
    of μ·g and σ-index, written once, then to_act(ŷ·g) of each slice as it is
    pushed; slice k's network reads the buffer's first 2M + kC rows as they
    are, instead of rebuilding them per slice. Past CONTEXT_BUFFER_BYTES (very
    large images) there is no buffer and the inputs are rebuilt per chunk of
    CONTEXT_CHUNK positions. The context works per position in exact
    integers, so both ways give the same values.
    """

    def __init__(self, codec: GroupedLatentCodec, hp: HyperParams):
        self.codec, self.context = codec, codec.context
        M, P = codec.M, hp.means_2x[0].numel()
        self.means, self.scales = hp.means_2x.reshape(M, P), hp.scales_2x.reshape(M, P)
        self.indexes = hp.indexes.reshape(M, P)
        self.y_hat_2x: list[torch.Tensor] = []
        self.buffer = None
        ctx = self.context
        if ctx is not None and ctx.input_rows(ctx.slices - 1) * P * 8 <= CONTEXT_BUFFER_BYTES:
            self.buffer = torch.empty(ctx.input_rows(ctx.slices - 1), P, dtype=torch.float64)  # the last slice's input
            ctx.write_features(self.buffer, self.means, torch.from_numpy(self.indexes))

    def params(self, k: int) -> tuple[torch.Tensor, np.ndarray]:
        """(C, P) μ'·g (units 2^-2·ACT_BITS) and σ'-indexes of slice k; slices < k must be pushed."""
        ch, ctx = self.codec.slices[k], self.context
        if k == 0 or ctx is None:
            return self.means[ch], self.indexes[ch]
        if len(self.y_hat_2x) != k:
            raise RuntimeError(f"slice {k} needs exactly {k} slices pushed, not {len(self.y_hat_2x)}")
        # One pass over the buffer, or chunks whose inputs are rebuilt.
        P = self.means.shape[1]
        step = P if self.buffer is not None else CONTEXT_CHUNK
        indexes = torch.from_numpy(self.indexes)
        out_m, out_i = torch.empty_like(self.means[ch]), torch.empty(self.means[ch].shape, dtype=torch.int64)
        for p0 in range(0, P, step):
            part = slice(p0, min(P, p0 + step))
            x = self.buffer if self.buffer is not None else ctx.inputs(
                self.means[:, part], indexes[:, part], [v[:, part] for v in self.y_hat_2x])
            m, s = ctx.refine(k, x, self.means[ch, part], self.scales[ch, part])
            out_m[:, part] = m
            out_i[:, part] = scale_indexes(s, self.codec.thresholds).to(torch.int64)
        return out_m, out_i.numpy()

    def push(self, y_hat_2x: torch.Tensor) -> None:
        """ŷ·g (C, P) of the next slice."""
        k = len(self.y_hat_2x)
        self.y_hat_2x.append(y_hat_2x)
        ctx = self.context
        if self.buffer is not None and k < ctx.slices - 1:
            r = ctx.input_rows(k)
            self.buffer[r:r + ctx.C] = ctx.to_act(y_hat_2x)
