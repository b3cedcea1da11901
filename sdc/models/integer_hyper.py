"""Hyper-synthesis h_s in exact integer arithmetic.

Why: the entropy coder's tables are picked by the scale h_s predicts. If the
encoder and a decoder on another machine (other CPU, BLAS, thread count)
disagreed on one table index, the rANS decoder would desync and everything
after that symbol would be garbage. Following Ballé et al. 2019 ("Integer
networks for data compression with latent-variable models") h_s is run on
integers, so both sides compute bit-identical means and scale indexes.

Fixed point: activations are integers in units of 2^-ACT_BITS, clipped to
±ACT_LIMIT; each layer's weights are integers in units of 2^-shift (shift
chosen per layer so |w| < 2^15), biases in units of 2^-(ACT_BITS+shift).
After a convolution the accumulator is rescaled with round-half-up by a
power of two. LeakyReLU multiplies negatives by 41/4096 (≈ 0.01) and floors.

Exactness: the arithmetic runs on numpy float64 arrays, but every operand
and every partial sum is an integer below 2^53, which float64 represents
exactly (im2col: fan-in ≤ 2600 × 2^20 × 2^15 < 2^47; Winograd: see
winograd_bound); so any summation order, any BLAS, any thread count, with or
without FMA, gives the same integers. Convolutions are done by hand, never by
a library's conv (which may pick a fast algorithm with non-integer
intermediates, e.g. FFT): as an integer Winograd F(2x2, 3x3), whose
transforms are scaled to integers so every intermediate is an integer below
2^53 (checked per call against the input's largest value; im2col + matmul
otherwise, the same integers). A stride-2 transposed convolution is done as
its four output phases: one 3x3 convolution with 4x the output channels, then
a pixel shuffle. That is the same sum of the same integer products as
zero-insertion + 5x5 convolution, without multiplying the inserted zeros
(2.8x fewer operations), so the result is the same integers.

Only numpy is needed here, so a decoder runs without torch; the fixed-point
tensors are made from the float h_s at export by :mod:`sdc.training.quantize`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ACT_BITS = 12
ACT_LIMIT = 2 ** (ACT_BITS + 8)  # |activation| ≤ 256.0
WEIGHT_LIMIT = 2**15 - 1
LEAKY_NUM, LEAKY_SHIFT = 41, 12  # 41 / 4096 ≈ 0.01, the float model's slope
# Large z is run in tiles (im2col of the whole latent of an 8192x8192 image
# would take ~5 GB). An output at y position q depends on z within q/4 ± 1.75
# (deconv: ±1 input each, then conv 3x3), so tiles with Z_MARGIN cells of
# context give the very same integers as one pass.
Z_TILE = 16
Z_MARGIN = 3


def _pad(x: np.ndarray, padding: tuple[int, int, int, int]) -> np.ndarray:
    """Zero padding of the last two axes by (left, right, top, bottom)."""
    left, right, top, bottom = padding
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)])


def _exact_conv(x: np.ndarray, w: np.ndarray, stride: int, padding: tuple[int, int, int, int],
                dtype: type = np.float64) -> np.ndarray:
    """Convolution of integer-valued float64 arrays via im2col + matmul, the sums in
    `dtype` (int64 for sums past float64's exact range); float64 result.

    x: (1, C, H, W); w: (O, C, k, k); padding: (left, right, top, bottom).
    """
    k = w.shape[-1]
    x = _pad(x[0], padding)
    ho = (x.shape[-2] - k) // stride + 1
    wo = (x.shape[-1] - k) // stride + 1
    windows = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # (C, ho, wo, k, k)
    cols = windows.transpose(0, 3, 4, 1, 2).reshape(-1, ho * wo).astype(dtype)  # (C·k·k, L); |x| < 2^53, so exact
    acc = w.reshape(w.shape[0], -1).astype(dtype) @ cols
    return acc.astype(np.float64).reshape(1, w.shape[0], ho, wo)


# Winograd F(2x2, 3x3) (Lavin & Gray 2016) with every transform scaled to
# integers: B and A have entries 0/±1, and 2·G (G has halves) has entries
# 0/1/±1/2, so U = (2G) w (2G)^T is an integer kernel and the result is 4x the
# convolution, exactly. 16 products per 2x2 output tile instead of 36: 2.25x
# fewer multiplications for h_s's 3x3 convolutions, which are most of its time.
_WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
_WINO_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.float64)
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
# The two-sided transforms B^T d B and A^T m A of all tiles at once, as one
# matmul each over the 16 (or 4) tile positions flattened row-major: each row
# has 4 (input) or at most 9 (output) entries ±1, the rest 0.
_WINO_IN = np.kron(_WINO_BT, _WINO_BT)  # (16, 16)
_WINO_OUT = np.kron(_WINO_AT, _WINO_AT)  # (4, 16)
_WINO_KERNEL = np.kron(_WINO_G2, _WINO_G2)  # (16, 9): (2G) w (2G)^T of a 3x3 kernel flattened row-major
# Exact while every value the arithmetic forms is an integer below this.
EXACT_LIMIT = 2.0**53


def winograd_kernel(w: np.ndarray) -> np.ndarray:
    """(16, O, C) integer transform (2G) w (2G)^T of a (O, C, 3, 3) integer kernel."""
    o, c = w.shape[:2]
    # One product with kron(2G, 2G), written straight into the result's layout: the
    # kernels are large (up to ~30 MB) and first-touched memory is slow, so no
    # intermediate copies. Every product and sum is of small integers: exact.
    taps = np.asarray(w, dtype=np.float64).reshape(o * c, 9).T  # (9, O·C), a view
    return (_WINO_KERNEL @ taps).reshape(16, o, c)


def winograd_bound(u: np.ndarray, x_max: float) -> float:
    """Largest magnitude :func:`_winograd_conv3x3` can form for inputs |x| <= x_max: a
    GEMM sum of C products |U|·|B^T d B| (each input-transform entry sums 4 inputs),
    then 9 of those in the output transform."""
    largest = max(float(u.max()), -float(u.min())) if u.size else 0.0  # |u|.max() without a copy of u
    return 9.0 * u.shape[2] * largest * 4.0 * x_max


def _winograd_conv3x3(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Stride-1, padding-1 3x3 convolution of an integer-valued float64 (1, C, H, W)
    array with the kernel :func:`winograd_kernel` made: the same integers as
    :func:`_exact_conv`, provided :func:`winograd_bound` is below EXACT_LIMIT.

    Input tiles are 4x4 at stride 2 (of the padded input, grown to an even
    size): d (16, C·tiles) ─► B^T d B ─► per tile position (16 of them) one
    matmul over channels with U ─► A^T m A ─► 2x2 output tiles.
    """
    _, c, h, w = x.shape
    o = u.shape[1]
    if h == 0 or w == 0:  # no tiles to cut
        return np.zeros((1, o, h, w))
    th, tw = (h + 1) // 2, (w + 1) // 2
    xp = _pad(x[0], (1, 2 * tw + 1 - w, 1, 2 * th + 1 - h))
    tiles = sliding_window_view(xp, (4, 4), axis=(1, 2))[:, ::2, ::2]  # (C, th, tw, 4, 4)
    d = tiles.transpose(3, 4, 0, 1, 2).reshape(16, c * th * tw)
    v = (_WINO_IN @ d).reshape(16, c, th * tw)
    m = np.matmul(u, v).reshape(16, o * th * tw)  # sums of C integer products
    y = (_WINO_OUT @ m).reshape(2, 2, o, th, tw).transpose(2, 3, 0, 4, 1).reshape(1, o, 2 * th, 2 * tw)
    out = y[..., :h, :w]
    out *= 0.25
    return out


def deconv_as_conv_kernel(weight):
    """A ConvTranspose2d weight (C_in, C_out, k, k) as the equivalent stride-1 kernel
    (C_out, C_in, k, k) over the zero-inserted input: flipped and transposed.

    Takes a numpy array or (for :mod:`sdc.training.fast_layers` and the export) a
    torch tensor, and returns the same kind: only indexing both share is used.
    """
    flip = list(range(weight.shape[-1] - 1, -1, -1))
    return weight[:, :, flip][:, :, :, flip].swapaxes(0, 1)


def subpixel_kernel(w):
    """Phase kernels of a stride-2, 5x5, padding-2, output-padding-1 transposed convolution.

    w: (O, C, 5, 5), the equivalent stride-1 kernel applied to the
    zero-inserted input (how the weights file stores it). Output pixel
    (2m + r) sums w[2d − r + 2] · x[m + d] over d ∈ {−1, 0, 1} (taps outside
    0..4 are absent), per axis. Returns (4·O, C, 3, 3) ordered for a pixel
    shuffle by 2: channel o·4 + rh·2 + rw. A numpy array or, for
    :mod:`sdc.training.fast_layers`, a torch tensor; the result is the same kind.
    """
    o, c, k, _ = w.shape
    assert k == 5, "phase decomposition is written for 5x5 kernels"
    shape = (o, 2, 2, c, 3, 3)
    out = w.new_zeros(shape) if hasattr(w, "new_zeros") else np.zeros(shape, dtype=w.dtype)
    for rh in range(2):
        for dh in (-1, 0, 1):
            kh = 2 * dh - rh + 2
            if not 0 <= kh <= 4:
                continue
            for rw in range(2):
                for dw in (-1, 0, 1):
                    kw = 2 * dw - rw + 2
                    if 0 <= kw <= 4:
                        out[:, rh, rw, :, dh + 1, dw + 1] = w[:, :, kh, kw]
    return out.reshape(4 * o, c, 3, 3)


def _pixel_shuffle2(x: np.ndarray) -> np.ndarray:
    """(1, 4·C, H, W) -> (1, C, 2H, 2W), channel o·4 + rh·2 + rw to pixel (2h + rh, 2w + rw)."""
    _, c4, h, w = x.shape
    return x.reshape(c4 // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(1, c4 // 4, 2 * h, 2 * w)


def _rescale(acc: np.ndarray, shift: int) -> np.ndarray:
    """Round-half-up division by 2^shift (exact on integers in float64)."""
    return np.floor(acc * (2.0**-shift) + 0.5)


def layer_output(acc: np.ndarray, shift: int, leaky: bool) -> np.ndarray:
    """A fixed-point layer's activations from its accumulator (weights·x + bias), which
    it overwrites: :func:`_rescale` by 2^shift, the leaky ReLU's negative slope
    LEAKY_NUM / 2^LEAKY_SHIFT rounded down, clipped to ±ACT_LIMIT. In place because
    the accumulators are the largest arrays of h_s and of the context."""
    x = acc
    x *= 2.0**-shift
    x += 0.5
    np.floor(x, out=x)
    if leaky:
        # floor(x·41/4096) is ≤ x for integers x ≥ 0 and ≥ x for x < 0, so the
        # maximum is the leaky ReLU, without a mask pass.
        slope = x * LEAKY_NUM
        slope *= 2.0**-LEAKY_SHIFT
        np.maximum(x, np.floor(slope, out=slope), out=x)
    return np.clip(x, -ACT_LIMIT, ACT_LIMIT, out=x)


def float64_array(t) -> np.ndarray:
    """A weights-file entry (numpy array or torch tensor) as a float64 array."""
    return np.asarray(t, dtype=np.float64)


class IntegerHyperSynthesis:
    """Integer version of ``h_s`` (deconv → LReLU → deconv → LReLU → conv).

    Loaded from the integer tensors stored in the weights file (made once, at
    export, by :func:`sdc.training.quantize.quantize_hyper_synthesis`), so the
    decoder never re-derives them from floats. Entries may be numpy arrays or
    torch tensors; everything after loading is numpy.
    """

    def __init__(self, tensors: dict, prefix: str = "int_h_s."):
        self.layers = []
        for i in range(3):
            p = f"{prefix}{i}."
            deconv = i < 2
            weight = float64_array(tensors[p + "weight"])
            # Both kinds are 3x3 stride-1 convolutions once a deconvolution is split
            # into its phases (pixel-shuffled after), so both take the same paths.
            kernel = subpixel_kernel(weight) if deconv else weight
            winograd = winograd_kernel(kernel)
            self.layers.append(
                {
                    "deconv": deconv,
                    "kernel": kernel,
                    "winograd": winograd,
                    # Largest sums per unit of input magnitude, for _conv3x3's choice.
                    "winograd_gain": winograd_bound(winograd, 1.0),
                    "abs_row_sum": float(np.abs(kernel).sum((1, 2, 3)).max()),
                    "bias": float64_array(tensors[p + "bias"]),
                    "shift": int(np.asarray(tensors[p + "shift"]).reshape(-1)[0]),
                    "leaky": deconv,
                }
            )

    def __call__(self, z_int: np.ndarray, tile: int = Z_TILE) -> tuple[np.ndarray, np.ndarray]:
        """z_int: (1, N, h, w) integers (float64 or int) in units of 2^-ACT_BITS.

        Returns (scales, means), integer-valued float64 arrays in units of
        2^-ACT_BITS, shape (1, M, 4h, 4w). Large z is done in tiles (Z_TILE).
        """
        z_int = np.asarray(z_int)
        hz, wz = z_int.shape[-2:]
        if hz <= tile and wz <= tile:
            return tuple(np.split(self._run(z_int), 2, axis=1))
        out = None
        for r0 in range(0, hz, tile):
            for c0 in range(0, wz, tile):
                r1, c1 = min(r0 + tile, hz), min(c0 + tile, wz)
                R0, R1, C0, C1 = max(0, r0 - Z_MARGIN), min(hz, r1 + Z_MARGIN), max(0, c0 - Z_MARGIN), min(wz, c1 + Z_MARGIN)
                part = self._run(z_int[..., R0:R1, C0:C1])
                if out is None:
                    out = np.empty((1, part.shape[1], 4 * hz, 4 * wz))
                out[..., 4 * r0:4 * r1, 4 * c0:4 * c1] = part[..., 4 * (r0 - R0):4 * (r1 - R0), 4 * (c0 - C0):4 * (c1 - C0)]
        return tuple(np.split(out, 2, axis=1))

    @staticmethod
    def _conv3x3(x: np.ndarray, layer: dict) -> np.ndarray:
        """A layer's 3x3 stride-1 convolution (a deconvolution's phases), exact for any input.

        Winograd when its bound for this input's largest value keeps it exact (at
        h_s's widths always, for activations within ±ACT_LIMIT); else im2col in
        float64 when the largest |Σ w·x| stays below 2^53; else (only a hostile ẑ,
        far beyond what an encoder writes) im2col in int64, whose sums are exact
        and whose conversion to float64 rounds the same way everywhere: such a
        sum is so large that the layer clips its output to ±ACT_LIMIT anyway.
        """
        x_max = float(np.abs(x).max()) if x.size else 0.0
        if layer["winograd_gain"] * x_max < EXACT_LIMIT / 2:
            return _winograd_conv3x3(x, layer["winograd"])
        exact_in_float64 = layer["abs_row_sum"] * x_max < EXACT_LIMIT / 2
        return _exact_conv(x, layer["kernel"], 1, (1, 1, 1, 1), np.float64 if exact_in_float64 else np.int64)

    def _run(self, z_int: np.ndarray) -> np.ndarray:
        x = z_int.astype(np.float64)
        for layer in self.layers:
            acc = self._conv3x3(x, layer)
            if layer["deconv"]:
                acc = _pixel_shuffle2(acc)
            acc += layer["bias"].reshape(1, -1, 1, 1)
            x = layer_output(acc, layer["shift"], layer["leaky"])
        return x


def scale_thresholds(scale_table) -> np.ndarray:
    """The scale table in the fixed-point units of :class:`IntegerHyperSynthesis`."""
    return np.round(np.asarray(scale_table, dtype=np.float64) * 2.0**ACT_BITS).astype(np.int64)


def scale_indexes(scales_int: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Table index per scale (int64), as compressai's ``GaussianConditional.build_indexes``:
    the number of table entries (all but the last) strictly below the scale.
    Integer comparisons only."""
    t = np.asarray(thresholds, dtype=np.float64)[:-1]
    return np.searchsorted(t, scales_int.reshape(-1), side="left").reshape(scales_int.shape)
