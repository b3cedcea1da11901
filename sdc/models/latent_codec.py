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
from ŷ·g of slices < k *at the same position* (:mod:`sdc.training.channel_context`)::

    slice 0: μ·g, σ-idx from h_s ─► symbols₀ ─► ŷ₀·g
    slice k: IntegerChannelContext(μ·g, σ-idx, ŷ₀..ŷ_{k-1}) ─► μ'·g, σ'-idx ─► symbols_k ─► ŷ_k·g

A decoder lacking a group uses ŷ = μ'·g there and carries on the chain.

Every position's distribution depends on ẑ, its own group's quality and its
own earlier slices alone (no spatial or cross-group context), so each group's
substream decodes without the others. μ·g, the context and the σ-index are
computed in integers (:class:`IntegerHyperSynthesis`,
:class:`IntegerChannelContext`, gains and z median stored as fixed-point
integers in the weights), so they are bit-identical on every machine. All of
it runs on numpy (integer-valued float64 arrays), without torch. Within
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

from sdc.levels import LEVELS
from sdc.models.entropy_coder import EntropyDecodeError, TableCoder
from sdc.models.integer_context import IntegerChannelContext
from sdc.models.integer_hyper import ACT_BITS, IntegerHyperSynthesis, float64_array, scale_indexes

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
    means_2x: np.ndarray  # (M, h, w) integer-valued float64: μ·g in units 2^-(2·ACT_BITS)
    scales_2x: np.ndarray  # (M, h, w) the same for σ·g
    indexes: np.ndarray  # (M, h, w) int64 table index per element, from the hyperprior alone

    @property
    def means(self) -> np.ndarray:
        """μ·g in quantization steps (float64, exact)."""
        return self.means_2x * 2.0 ** (-2 * ACT_BITS)

    @property
    def scales(self) -> np.ndarray:
        """σ·g in quantization steps (float64, exact)."""
        return self.scales_2x * 2.0 ** (-2 * ACT_BITS)


class GroupedLatentCodec:
    """Codes z and the groups of y; see the module docstring for the data flow.

    Args:
        tensors: the weights file's tensors (numpy arrays or torch tensors; only
            read here, into numpy).
        context_slices: channel slices of the 1x1 channel context (0 or 1: none).

    Arrays in and out are numpy: qmap (h, w) int 0-based qualities, y·g and
    the results float64.
    """

    def __init__(self, tensors: dict, context_slices: int = 0):
        self.h_s = IntegerHyperSynthesis(tensors)
        self.thresholds = np.asarray(tensors["int_scale_thresholds"], dtype=np.int64)  # units 2^-(2·ACT_BITS)
        self.gain_fixed = float64_array(tensors["int_gain"])  # (Q, M), units 2^-ACT_BITS
        self.M = self.gain_fixed.shape[1]
        self.z_inv_gain_fixed = float64_array(tensors["int_z_inv_gain"])  # (Q, N)
        self.z_median_fixed = float64_array(tensors["int_z_median"])  # (N,)
        self.context = IntegerChannelContext(tensors, self.M, context_slices) if context_slices > 1 else None
        width = self.context.C if self.context else self.M
        self.slices = [slice(c, c + width) for c in range(0, self.M, width)]
        self.z_coder = self._table_coder(tensors, "entropy_bottleneck.")
        self.y_coder = self._table_coder(tensors, "gaussian_conditional.")

    @staticmethod
    def _table_coder(tensors: dict, prefix: str) -> TableCoder:
        return TableCoder(*(np.asarray(tensors[prefix + key]) for key in ("_quantized_cdf", "_cdf_length", "_offset")))

    def _gain_fixed_map(self, qmap: np.ndarray) -> np.ndarray:
        """(M, h, w) fixed-point gains (units 2^-ACT_BITS) of each position's quality."""
        return np.ascontiguousarray(self.gain_fixed[np.asarray(qmap)].transpose(2, 0, 1))

    def gains(self, qmap: np.ndarray) -> np.ndarray:
        """(M, h, w) float64 gains g of each position's quality (exactly the fixed-point ones)."""
        return self._gain_fixed_map(qmap) * 2.0**-ACT_BITS

    # -- hyperprior ------------------------------------------------------------
    def hyper_params(self, z_symbols: np.ndarray, qz: int, qmap: np.ndarray) -> HyperParams:
        """μ·g, σ·g and σ-indexes from ẑ symbols; qz and qmap are 0-based qualities."""
        zs = z_symbols.astype(np.float64)
        z_gained = zs * 2.0**ACT_BITS + self.z_median_fixed[:, None, None]
        z_fixed = np.floor(z_gained * self.z_inv_gain_fixed[qz][:, None, None] * 2.0**-ACT_BITS + 0.5)
        scales, means = self.h_s(z_fixed[None])
        g = self._gain_fixed_map(qmap)
        scales_2x = scales[0] * g
        return HyperParams(z_symbols, means[0] * g, scales_2x, scale_indexes(scales_2x, self.thresholds))

    def z_indexes(self, shape: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    def z_gain(self, qz: int) -> np.ndarray:
        """(N,) float64 g_z of quality qz, as the decoder's fixed-point inverse implies."""
        return 2.0**ACT_BITS / self.z_inv_gain_fixed[qz]

    @property
    def z_median(self) -> np.ndarray:
        """(N,) float64 median of z·g_z (the symbols' offset)."""
        return self.z_median_fixed * 2.0**-ACT_BITS

    def z_unrounded(self, z: np.ndarray, qz: int) -> np.ndarray:
        """z·g_z − median: the ẑ symbols before rounding; z: (N, hz, wz) from h_a."""
        return float64_array(z) * self.z_gain(qz)[:, None, None] - self.z_median[:, None, None]

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
    def encode_groups(self, y_gained: np.ndarray, hp: HyperParams, group_map: np.ndarray,
                      levels: tuple[str, ...] = LEVELS) -> tuple[dict[str, bytes], np.ndarray]:
        """Substreams of `levels` from y·g (M, h, w); also returns all (M, h, w) symbols.

        Each substream holds one batch per channel slice, in slice order.
        """
        y2 = float64_array(y_gained).reshape(self.M, -1)
        masks = {lv: (group_map == LEVELS.index(lv)).reshape(-1) for lv in levels}
        encoders = {lv: self.y_coder.encoder() for lv in levels}
        symbols = np.empty(y2.shape, dtype=np.int64)
        chain = _SliceChain(self, hp)
        for k, ch in enumerate(self.slices):
            means, indexes = chain.params(k)
            sym = np.round(y2[ch] - means * 2.0 ** (-2 * ACT_BITS))  # half to even
            np.clip(sym, -Y_SYMBOL_LIMIT, Y_SYMBOL_LIMIT, out=sym)
            symbols[ch] = sym
            chain.push(sym * 2.0 ** (2 * ACT_BITS) + means)
            for lv in levels:
                encoders[lv].encode(symbols[ch][:, masks[lv]], indexes[:, masks[lv]])
        return {lv: e.finish() for lv, e in encoders.items()}, symbols.reshape(hp.means_2x.shape)

    def decode_groups(self, streams: dict[str, bytes], hp: HyperParams,
                      group_map: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
            y_k = means.copy()
            for lv, dec in decoders.items():
                idx = indexes[:, masks[lv]]
                with _naming_substream(lv):
                    sym = dec.decode(idx).reshape(idx.shape)
                    if np.abs(sym).max(initial=0) > Y_SYMBOL_LIMIT:
                        raise EntropyDecodeError("symbols out of range")
                decoded[lv].append(sym)
                y_k[:, masks[lv]] += sym * 2.0 ** (2 * ACT_BITS)
            chain.push(y_k)
        for lv, dec in decoders.items():
            with _naming_substream(lv):
                dec.finish()
        y_gained = (np.concatenate(chain.y_hat_2x, 0) * 2.0 ** (-2 * ACT_BITS)).reshape(hp.means_2x.shape)
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
        M, P = codec.M, hp.means_2x[0].size
        self.means, self.scales = hp.means_2x.reshape(M, P), hp.scales_2x.reshape(M, P)
        self.indexes = hp.indexes.reshape(M, P)
        self.y_hat_2x: list[np.ndarray] = []
        self.buffer = None
        ctx = self.context
        if ctx is not None and ctx.input_rows(ctx.slices - 1) * P * 8 <= CONTEXT_BUFFER_BYTES:
            self.buffer = np.empty((ctx.input_rows(ctx.slices - 1), P))  # the last slice's input
            ctx.write_features(self.buffer, self.means, self.indexes)

    def params(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, P) μ'·g (units 2^-2·ACT_BITS) and σ'-indexes of slice k; slices < k must be pushed."""
        ch, ctx = self.codec.slices[k], self.context
        if k == 0 or ctx is None:
            return self.means[ch], self.indexes[ch]
        if len(self.y_hat_2x) != k:
            raise RuntimeError(f"slice {k} needs exactly {k} slices pushed, not {len(self.y_hat_2x)}")
        # One pass over the buffer, or chunks whose inputs are rebuilt.
        P = self.means.shape[1]
        step = P if self.buffer is not None else CONTEXT_CHUNK
        out_m, out_i = np.empty(self.means[ch].shape), np.empty(self.means[ch].shape, dtype=np.int64)
        for p0 in range(0, P, step):
            part = slice(p0, min(P, p0 + step))
            x = self.buffer if self.buffer is not None else ctx.inputs(
                self.means[:, part], self.indexes[:, part], [v[:, part] for v in self.y_hat_2x])
            m, s = ctx.refine(k, x, self.means[ch, part], self.scales[ch, part])
            out_m[:, part] = m
            out_i[:, part] = scale_indexes(s, self.codec.thresholds)
        return out_m, out_i

    def push(self, y_hat_2x: np.ndarray) -> None:
        """ŷ·g (C, P) of the next slice."""
        k = len(self.y_hat_2x)
        self.y_hat_2x.append(y_hat_2x)
        ctx = self.context
        if self.buffer is not None and k < ctx.slices - 1:
            r = ctx.input_rows(k)
            self.buffer[r:r + ctx.C] = ctx.to_act(y_hat_2x)
