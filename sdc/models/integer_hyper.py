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

Exactness: the arithmetic runs in float64, but every operand and every
partial sum is an integer below 2^53, which float64 represents exactly
(im2col: fan-in ≤ 2600 × 2^20 × 2^15 < 2^47; Winograd: see winograd_bound); so any summation order, any BLAS, any thread
count, with or without FMA, gives the same integers. Convolutions are done by
hand, never by torch's conv (which may pick a fast algorithm with
non-integer intermediates, e.g. FFT): as an integer Winograd F(2x2, 3x3), whose
transforms are scaled to integers so every intermediate is an integer below
2^53 (checked per call against the input's largest value; im2col + matmul
otherwise, the same integers). A stride-2 transposed convolution is done as
its four output phases: one 3x3 convolution with 4x the output channels, then
a pixel shuffle. That is the same sum of the same integer products as
zero-insertion + 5x5 convolution, without multiplying the inserted zeros
(2.8x fewer operations), so the result is the same integers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def _exact_conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: tuple[int, int, int, int],
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Convolution of integer-valued float64 tensors via im2col + matmul, the sums in
    `dtype` (int64 for sums past float64's exact range); float64 result.

    x: (1, C, H, W); w: (O, C, k, k); padding: (left, right, top, bottom).
    """
    k = w.shape[-1]
    x = F.pad(x, padding)
    ho = (x.shape[-2] - k) // stride + 1
    wo = (x.shape[-1] - k) // stride + 1
    cols = F.unfold(x, k, stride=stride)[0].to(dtype)  # (C·k·k, L); |x| < 2^53, so exact
    acc = w.reshape(w.shape[0], -1).to(dtype) @ cols
    return acc.to(torch.float64).reshape(1, w.shape[0], ho, wo)


# Winograd F(2x2, 3x3) (Lavin & Gray 2016) with every transform scaled to
# integers: B and A have entries 0/±1, and 2·G (G has halves) has entries
# 0/1/±1/2, so U = (2G) w (2G)^T is an integer kernel and the result is 4x the
# convolution, exactly. 16 products per 2x2 output tile instead of 36: 2.25x
# fewer multiplications for h_s's 3x3 convolutions, which are most of its time.
_WINO_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
_WINO_G2 = torch.tensor([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=torch.float64)
_WINO_AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
# Exact while every value the arithmetic forms is an integer below this.
EXACT_LIMIT = 2.0**53


def winograd_kernel(w: torch.Tensor) -> torch.Tensor:
    """(16, O, C) integer transform (2G) w (2G)^T of a (O, C, 3, 3) integer kernel."""
    u = torch.einsum("ik,ockl,jl->ijoc", _WINO_G2, w.to(torch.float64), _WINO_G2)
    return u.reshape(16, w.shape[0], w.shape[1]).contiguous()


def winograd_bound(u: torch.Tensor, x_max: float) -> float:
    """Largest magnitude :func:`_winograd_conv3x3` can form for inputs |x| <= x_max: a
    GEMM sum of C products |U|·|B^T d B| (each input-transform entry sums 4 inputs),
    then 9 of those in the output transform."""
    return 9.0 * u.shape[2] * float(u.abs().max()) * 4.0 * x_max


def _input_transform(a: list[torch.Tensor]) -> list[torch.Tensor]:
    """B^T applied across four tensors (rows or columns 0..3 of the input tiles)."""
    return [a[0] - a[2], a[1] + a[2], a[2] - a[1], a[1] - a[3]]


def _output_transform(m: list[torch.Tensor]) -> list[torch.Tensor]:
    """A^T applied across four tensors."""
    return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def _winograd_conv3x3(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Stride-1, padding-1 3x3 convolution of an integer-valued float64 (1, C, H, W)
    tensor with the kernel :func:`winograd_kernel` made: the same integers as
    :func:`_exact_conv`, provided :func:`winograd_bound` is below EXACT_LIMIT.

    Input tiles are 4x4 at stride 2 (of the padded input, grown to an even
    size); the transforms are additions of strided slices, and per tile
    position (16 of them) one matmul over channels; output tiles are 2x2.
    """
    _, c, h, w = x.shape
    o = u.shape[1]
    th, tw = (h + 1) // 2, (w + 1) // 2
    xp = F.pad(x, (1, 2 * tw + 1 - w, 1, 2 * th + 1 - h))[0]
    rows = _input_transform([xp[:, k:k + 2 * th:2] for k in range(4)])  # 4 x (C, th, Wp)
    v = torch.empty(4, 4, c, th, tw, dtype=torch.float64)
    for i, r in enumerate(rows):
        for j, col in enumerate(_input_transform([r[:, :, k:k + 2 * tw:2] for k in range(4)])):
            v[i, j] = col
    m = torch.bmm(u, v.view(16, c, th * tw)).view(4, 4, o, th, tw)  # sums of C integer products
    y = torch.empty(o, th, 2, tw, 2, dtype=torch.float64)
    for i, r in enumerate(_output_transform(list(m))):
        for j, col in enumerate(_output_transform(list(r))):
            y[:, :, i, :, j] = col
    return y.view(1, o, 2 * th, 2 * tw)[..., :h, :w].mul_(0.25)


def deconv_as_conv_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose2d weight (C_in, C_out, k, k) as the equivalent stride-1 kernel
    (C_out, C_in, k, k) over the zero-inserted input: flipped and transposed."""
    return weight.flip(2, 3).transpose(0, 1)


def subpixel_kernel(w: torch.Tensor) -> torch.Tensor:
    """Phase kernels of a stride-2, 5x5, padding-2, output-padding-1 transposed convolution.

    w: (O, C, 5, 5), the equivalent stride-1 kernel applied to the
    zero-inserted input (how the weights file stores it). Output pixel
    (2m + r) sums w[2d − r + 2] · x[m + d] over d ∈ {−1, 0, 1} (taps outside
    0..4 are absent), per axis. Returns (4·O, C, 3, 3) ordered for
    ``pixel_shuffle(·, 2)``: channel o·4 + rh·2 + rw.
    """
    o, c, k, _ = w.shape
    assert k == 5, "phase decomposition is written for 5x5 kernels"
    out = w.new_zeros(o, 2, 2, c, 3, 3)
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


def _rescale(acc: torch.Tensor, shift: int) -> torch.Tensor:
    """Round-half-up division by 2^shift (exact on integers in float64)."""
    return torch.floor(acc * (2.0**-shift) + 0.5)


def layer_output(acc: torch.Tensor, shift: int, leaky: bool) -> torch.Tensor:
    """A fixed-point layer's activations from its accumulator (weights·x + bias), which
    it overwrites: :func:`_rescale` by 2^shift, the leaky ReLU's negative slope
    LEAKY_NUM / 2^LEAKY_SHIFT rounded down, clipped to ±ACT_LIMIT. In place because
    the accumulators are the largest tensors of h_s and of the context."""
    x = acc.mul_(2.0**-shift).add_(0.5).floor_()
    if leaky:
        x = torch.where(x < 0, torch.floor(x * LEAKY_NUM * 2.0**-LEAKY_SHIFT), x)
    return x.clamp_(-ACT_LIMIT, ACT_LIMIT)


class IntegerHyperSynthesis:
    """Integer version of ``h_s`` (deconv → LReLU → deconv → LReLU → conv).

    Built once from the float module with :meth:`quantize` (at export time) and
    then loaded from the integer tensors stored in the weights file, so the
    decoder never re-derives them from floats.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], prefix: str = "int_h_s."):
        self.layers = []
        for i in range(3):
            p = f"{prefix}{i}."
            deconv = i < 2
            weight = tensors[p + "weight"].to(torch.float64)
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
                    "abs_row_sum": float(kernel.abs().sum((1, 2, 3)).max()),
                    "bias": tensors[p + "bias"].to(torch.float64),
                    "shift": int(tensors[p + "shift"].item()),
                    "leaky": deconv,
                }
            )

    @staticmethod
    def quantize(h_s: nn.Sequential, prefix: str = "int_h_s.") -> dict[str, torch.Tensor]:
        """Fixed-point tensors for the float module (weights file content)."""
        convs = [m for m in h_s if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert len(convs) == 3
        out = {}
        for i, m in enumerate(convs):
            w = m.weight.detach().double()
            if isinstance(m, nn.ConvTranspose2d):
                # Store as the equivalent stride-1 convolution kernel (O, C, k, k).
                w = deconv_as_conv_kernel(w)
            shift = int(torch.floor(torch.log2(WEIGHT_LIMIT / w.abs().max())).item())
            out[f"{prefix}{i}.weight"] = torch.round(w * 2.0**shift).to(torch.int32).contiguous()
            out[f"{prefix}{i}.bias"] = torch.round(m.bias.detach().double() * 2.0 ** (shift + ACT_BITS)).to(torch.int64)
            out[f"{prefix}{i}.shift"] = torch.tensor([shift], dtype=torch.int64)
        return out

    def __call__(self, z_int: torch.Tensor, tile: int = Z_TILE) -> tuple[torch.Tensor, torch.Tensor]:
        """z_int: (1, N, h, w) integers (float64 or int) in units of 2^-ACT_BITS.

        Returns (scales, means), integer-valued float64 tensors in units of
        2^-ACT_BITS, shape (1, M, 4h, 4w). Large z is done in tiles (Z_TILE).
        """
        hz, wz = z_int.shape[-2:]
        if hz <= tile and wz <= tile:
            return self._run(z_int).chunk(2, 1)
        out = None
        for r0 in range(0, hz, tile):
            for c0 in range(0, wz, tile):
                r1, c1 = min(r0 + tile, hz), min(c0 + tile, wz)
                R0, R1, C0, C1 = max(0, r0 - Z_MARGIN), min(hz, r1 + Z_MARGIN), max(0, c0 - Z_MARGIN), min(wz, c1 + Z_MARGIN)
                part = self._run(z_int[..., R0:R1, C0:C1])
                if out is None:
                    out = part.new_empty(1, part.shape[1], 4 * hz, 4 * wz)
                out[..., 4 * r0:4 * r1, 4 * c0:4 * c1] = part[..., 4 * (r0 - R0):4 * (r1 - R0), 4 * (c0 - C0):4 * (c1 - C0)]
        return out.chunk(2, 1)

    @staticmethod
    def _conv3x3(x: torch.Tensor, layer: dict) -> torch.Tensor:
        """A layer's 3x3 stride-1 convolution (a deconvolution's phases), exact for any input.

        Winograd when its bound for this input's largest value keeps it exact (at
        h_s's widths always, for activations within ±ACT_LIMIT); else im2col in
        float64 when the largest |Σ w·x| stays below 2^53; else (only a hostile ẑ,
        far beyond what an encoder writes) im2col in int64, whose sums are exact
        and whose conversion to float64 rounds the same way everywhere: such a
        sum is so large that the layer clips its output to ±ACT_LIMIT anyway.
        """
        x_max = float(x.abs().max()) if x.numel() else 0.0
        if layer["winograd_gain"] * x_max < EXACT_LIMIT / 2:
            return _winograd_conv3x3(x, layer["winograd"])
        exact_in_float64 = layer["abs_row_sum"] * x_max < EXACT_LIMIT / 2
        return _exact_conv(x, layer["kernel"], 1, (1, 1, 1, 1), torch.float64 if exact_in_float64 else torch.int64)

    def _run(self, z_int: torch.Tensor) -> torch.Tensor:
        x = z_int.to(torch.float64)
        for layer in self.layers:
            acc = self._conv3x3(x, layer)
            if layer["deconv"]:
                acc = F.pixel_shuffle(acc, 2)
            x = layer_output(acc.add_(layer["bias"].view(1, -1, 1, 1)), layer["shift"], layer["leaky"])
        return x


def scale_thresholds(scale_table: torch.Tensor) -> torch.Tensor:
    """The scale table in the fixed-point units of :class:`IntegerHyperSynthesis`."""
    return torch.round(scale_table.double() * 2.0**ACT_BITS).to(torch.int64)


def scale_indexes(scales_int: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Table index per scale, as compressai's ``GaussianConditional.build_indexes``:
    the number of table entries (all but the last) strictly below the scale.
    Integer comparisons only."""
    t = thresholds[:-1].to(torch.float64)
    return torch.searchsorted(t, scales_int.reshape(-1).contiguous(), right=False).reshape(scales_int.shape).to(torch.int32)
