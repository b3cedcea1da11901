"""The channel context (:mod:`sdc.training.channel_context`) in exact fixed point, on numpy.

Encoders and decoders run this; training runs the float
:class:`~sdc.training.channel_context.ChannelContext`, whose layers
:func:`sdc.training.quantize.quantize_channel_context` turns into the integer
tensors loaded here. Per slice k ≥ 1 and per position::

    rows 0..M-1     to_act(μ·g)            ┐
    rows M..2M-1    σ-index · INDEX_SCALE   ├─► 1x1 layer ─► LReLU ─► 1x1 layer ─► Δμ, t
    then C rows     to_act(ŷ·g) per slice < k┘
    μ' = μ·g + Δμ,   σ' = floor(σ·g · clamp(1 + t, 1/16, 4))

The exactness argument of :mod:`sdc.models.integer_hyper` holds here too, so
the refined means and table indexes are bit-identical everywhere.
"""
from __future__ import annotations

import numpy as np

from sdc.models.integer_hyper import ACT_BITS, ACT_LIMIT, _rescale, float64_array, layer_output

FEATURE_LIMIT = ACT_LIMIT * 2.0**-ACT_BITS  # inputs are clipped to ±256 steps
INDEX_SCALE = 1 / 8  # the σ-index (0..63) enters the network as index / 8
FACTOR_MIN, FACTOR_MAX = 1 / 16, 4.0  # bounds of the σ multiplier 1 + t


def slice_width(M: int, slices: int) -> int:
    """Channels per slice; raises ValueError when M does not split evenly."""
    if M % slices:
        raise ValueError(f"{M} channels do not split into {slices} slices")
    return M // slices


class IntegerChannelContext:
    """The channel context in exact fixed point, for encoders and decoders.

    Works on flattened positions: every array is (channels, P) of
    integer-valued float64. Units: μ·g and σ·g in 2^-(2·ACT_BITS) (as
    :meth:`GroupedLatentCodec.hyper_params` makes them), network activations
    in 2^-ACT_BITS. Layers are 1x1, so a matmul with fan-in ≤ 2M + M of
    integers < 2^20 · 2^15 stays far below 2^53.
    """

    def __init__(self, tensors: dict, M: int, slices: int, prefix: str = "int_ctx."):
        self.M, self.slices, self.C = M, slices, slice_width(M, slices)
        self.layers = []
        for k in range(1, slices):
            pair = []
            for j in range(2):
                p = f"{prefix}{k}.{j}."
                pair.append((float64_array(tensors[p + "weight"]), float64_array(tensors[p + "bias"])[:, None],
                             int(np.asarray(tensors[p + "shift"]).reshape(-1)[0])))
            self.layers.append(pair)

    @staticmethod
    def to_act(value_2x: np.ndarray) -> np.ndarray:
        """Units 2^-(2·ACT_BITS) -> clipped activations in 2^-ACT_BITS (round half up)."""
        x = _rescale(value_2x, ACT_BITS)
        return np.clip(x, -ACT_LIMIT, ACT_LIMIT, out=x)

    def input_rows(self, k: int) -> int:
        """Rows of slice k's network input: μ·g, σ-index (M each), then ŷ·g of slices < k."""
        return 2 * self.M + k * self.C

    def write_features(self, out: np.ndarray, means_2x: np.ndarray, indexes: np.ndarray) -> None:
        """Fill the first 2M rows of an input buffer with what every slice network shares."""
        M = self.M
        out[:M] = self.to_act(means_2x)
        np.multiply(indexes, INDEX_SCALE * 2.0**ACT_BITS, out=out[M:2 * M])

    def inputs(self, means_2x: np.ndarray, indexes: np.ndarray, y_hat_2x: list[np.ndarray]) -> np.ndarray:
        """(2M + kC, P) input of slice k = len(y_hat_2x)'s network."""
        x = np.empty((self.input_rows(len(y_hat_2x)), means_2x.shape[1]))
        self.write_features(x, means_2x, indexes)
        for j, v in enumerate(y_hat_2x):
            r = self.input_rows(j)
            x[r:r + self.C] = self.to_act(v)
        return x

    def refine(self, k: int, x: np.ndarray, means_2x: np.ndarray,
               scales_2x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Refined μ·g, σ·g (units 2^-2·ACT_BITS) of slice k ≥ 1.

        x: the network input (:meth:`inputs`), or a buffer holding at least
        its rows; only the first :meth:`input_rows` (k) are read.
        """
        x = x[:self.input_rows(k)]
        for j, (w, b, shift) in enumerate(self.layers[k - 1]):
            acc = w @ x  # integer sums below 2^53: exact in any order
            acc += b
            x = layer_output(acc, shift, leaky=j == 0)
        d_mu, t = x[:self.C], x[self.C:]
        one = 2.0**ACT_BITS
        factor = np.clip(one + t, FACTOR_MIN * one, FACTOR_MAX * one)
        return means_2x + d_mu * one, np.floor(scales_2x * factor * 2.0**-ACT_BITS)
