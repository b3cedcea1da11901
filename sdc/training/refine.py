"""Encoder-side refinement of the latent by stochastic Gumbel annealing (SGA).

g_a is amortised: trained on many images, it maps an image to a good latent
in one pass, not to the latent that minimises *this* image's rate +
λ·distortion. With ẑ fixed, so that μ, σ and everything a decoder computes
stay as they are, the encoder can search for a better y·g by gradient
descent on the loss the codec was trained on (Yang, Bamler & Mandt 2020,
"Improving Inference for Neural Image Compression"). Rounding has no useful
gradient (straight-through rounding made the loss *rise* here: each element
that crosses a rounding boundary jumps a whole step), so it is relaxed: every
element is a Gumbel-softmax mix of rounding down and up whose temperature τ
anneals from 0.5 to 0.05, ending close to a hard choice::

    u₀ = y·g from g_a ──► u ──► SGA_τ(u − μ') + μ' = ỹ·g ──► ×g' ──► g_s ──► x̂
                                 ▲ μ', σ': ẑ's μ·g, σ·g, refined by the (float)
                                 │ channel context from ỹ·g of earlier slices
    loss = mean over pixels of λ_p·255²·(x̂ − x)²  +  Σ −log2 P(ỹ·g | μ', σ') / pixels
    Adam on u for `steps` steps ──► the encoder codes round(u − μ') as always

λ_p is the λ of each pixel's quality, so a region map with L1 at q7 and
the background at q2 refines each part at its own trade-off. Nothing in the
file changes and a decoder cannot tell a refined latent from g_a's: this is
an encoder's choice, like a slower x265 preset.

**Joint phase.** ẑ is g_a's guess too, made for the unrefined y. So the
encoder first moves ẑ and y together (ẑ relaxed by SGA in its symbol units,
μ and σ from the *float* h_s, ẑ's own bits from its factorized density in the
loss), then rounds ẑ, lets the coder compute the exact integer μ, σ from it,
and finishes with the y-only phase above::

    v₀ = z·g_z − median ──► v ──► SGA_τ(v) + median = z̃·g_z ──► ÷g_z ──► float h_s ──► μ·g, σ·g ─┐
    u₀ = y·g ───────────► u ──────────────────────────────────────────────────────────────┴► as above
    loss += Σ −log2 P(z̃·g_z) / pixels  (factorized density)
    ẑ symbols = round(v) ──► integer h_s ──► exact μ·g, σ·g ──► y-only phase from u

The float h_s is the integer one before fixed-point rounding (μ agrees to
about 0.01 step), so what the joint phase learns carries over. On two val
photos, 20 joint + 20 y-only steps were 2.7% smaller (BD-rate) than 40 y-only
steps; 10 + 10 did no better than 20 y-only (see sdc.models.effort.EFFORT_STEPS).

Large latents are refined tile by tile (the tiles of :mod:`sdc.models.codec`):
each tile's kept cells move while its margin cells stay at their current
values, and the loss covers the whole tile with its margin, which holds every
pixel the kept cells reach. Memory stays bounded; tiles see each other's
refined values in raster order. The joint phase needs the whole latent in one
tile (a ẑ cell reaches μ of y cells in neighbouring tiles, refined against
the old μ), so latents larger than a tile skip it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sdc.models.architecture import Architecture
from sdc.training.channel_context import ChannelContext
from sdc.geometry import LATENT_STRIDE
from sdc.training.network import quality_lambdas

TAU_START, TAU_END = 0.5, 0.05  # SGA temperature, annealed geometrically
LEARNING_RATE = 0.05  # Adam step on u, in quantization steps, for runs of up to REFERENCE_STEPS
REFERENCE_STEPS = 20
SCALE_BOUND = 0.11  # the smallest σ·g the coder's table holds (compressai's bound)
LIKELIHOOD_BOUND = 1e-9


def _float32(a) -> torch.Tensor:
    """A new float32 tensor of `a`: the latent codec's numpy arrays enter the refiner here."""
    return torch.as_tensor(a).detach().float().clone()


def step_size(steps: int) -> float:
    """Adam's starting step for a run of `steps`: LEARNING_RATE up to REFERENCE_STEPS, then
    falling as 1/steps, so a longer run travels as far as a short one but in finer steps
    (at the 20-step size, 80 and 200 steps wandered off and coded worse than 20)."""
    return LEARNING_RATE * min(1.0, REFERENCE_STEPS / max(1, steps))


def sga_round(v: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Relaxed rounding of v: floor(v) + w, w ∈ (0, 1) the Gumbel-softmax weight of rounding up.

    The logit of each choice falls with its distance d as −atanh(d)/τ, so the
    nearer integer is favoured and, as τ → 0, always chosen.
    """
    floor = torch.floor(v).detach()
    frac = v - floor
    eps = 1e-5
    logits = torch.stack([-torch.atanh(frac.clamp(eps, 1 - eps)), -torch.atanh((1 - frac).clamp(eps, 1 - eps))]) / tau
    uniform = torch.rand(logits.shape, generator=generator, dtype=v.dtype).clamp_(1e-10, 1.0)
    weights = torch.softmax(logits - torch.log(-torch.log(uniform)), 0)
    return floor + weights[1]


def gaussian_bits(values: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Σ −log2 P(values) under N(means, scales) integrated over unit bins (as the coder's tables)."""
    scales = scales.clamp_min(SCALE_BOUND)
    d = (values - means).abs()
    upper = torch.special.ndtr((0.5 - d) / scales)
    lower = torch.special.ndtr((-0.5 - d) / scales)
    return -torch.log2((upper - lower).clamp_min(LIKELIHOOD_BOUND)).sum()


class FactorizedDensity:
    """z's factorized density (compressai's EntropyBottleneck, Ballé et al. 2018) in plain torch.

    Reads the float parameters the weights file keeps beside the coder's
    tables, so the encoder's joint refinement needs no compressai import.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], prefix: str = "entropy_bottleneck."):
        def stack(kind):
            found, i = [], 0
            while f"{prefix}{kind}.{i}" in tensors:
                found.append(tensors[f"{prefix}{kind}.{i}"].float())
                i += 1
            return found

        self.matrices, self.biases, self.factors = stack("matrices"), stack("biases"), stack("factors")
        if not self.matrices or len(self.biases) != len(self.matrices) or len(self.factors) != len(self.matrices) - 1:
            raise KeyError(f"{prefix}matrices/biases/factors")

    def _logits_cumulative(self, v: torch.Tensor) -> torch.Tensor:
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(torch.nn.functional.softplus(matrix), v) + bias
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def bits(self, values: torch.Tensor) -> torch.Tensor:
        """Σ −log2 P(values) over unit bins; values: (N, ...) in units of z·g_z."""
        v = values.reshape(values.shape[0], 1, -1)
        lower, upper = self._logits_cumulative(v - 0.5), self._logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate the far tail where sigmoid is not saturated
        likelihood = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return -torch.log2(likelihood.clamp_min(LIKELIHOOD_BOUND)).sum()


@dataclass
class FloatHyperprior:
    """What the joint phase needs to move ẑ: the float h_s and z's density and gain.

    The integer h_s the coder runs is this h_s in fixed point (μ within about
    2^-12 of it), so a ẑ that the float model likes, the integer one likes too.
    """

    h_s: torch.nn.Module
    density: FactorizedDensity
    median: torch.Tensor  # (N,) z's median, units of z·g_z (as the coder's int_z_median)


class LatentRefiner:
    """Refines y·g (and, jointly, ẑ) for one image (see the module docstring).

    Args:
        g_s: the synthesis transform (float, channels_last).
        context: the float channel context, or None when the weights have none.
        scale_table: σ values of the coder's table (for the context's σ-index feature).
        hyper: float hyperprior for the joint phase (None: y only).
    """

    def __init__(self, g_s: torch.nn.Module, context: ChannelContext | None, scale_table: torch.Tensor,
                 hyper: FloatHyperprior | None = None):
        self.g_s, self.context, self.scale_table = g_s, context, scale_table.float()
        self.hyper = hyper

    def _relaxed(self, u, means, scales, quantize):
        """(ỹ·g, μ', σ') of the tile, with the channel context if there is one."""
        if self.context is not None:
            mu, sigma, y_tilde = self.context(u, means, scales, self.scale_table, quantize)
            return y_tilde, mu, sigma
        return quantize(u - means) + means, means, scales

    def _objective(self, u, means, scales, quantize, inv_gain, target, pixel_lam, moved):
        """(λ-weighted squared error summed over pixels, bits of ỹ at the `moved` cells)."""
        rows, cols = target.shape[-2:]
        y_tilde, mu, sigma = self._relaxed(u, means, scales, quantize)
        x_hat = self.g_s((y_tilde * inv_gain).contiguous(memory_format=torch.channels_last))[:, :, :rows, :cols]
        distortion = (pixel_lam * (x_hat - target).pow(2).mean(1)).sum()
        moved = moved.expand_as(y_tilde)
        return distortion, gaussian_bits(y_tilde[moved], mu[moved], sigma[moved])

    @staticmethod
    def _schedule(opt, step, steps):
        """τ of this step; sets Adam's step size (linear decay to a tenth)."""
        progress = step / max(1, steps - 1)
        for group in opt.param_groups:
            group["lr"] = step_size(steps) * (1 - 0.9 * progress)
        return TAU_START * (TAU_END / TAU_START) ** progress

    @staticmethod
    def _pixel_lambdas(qmap):
        """(h, w) λ·255² of each latent cell's quality."""
        return quality_lambdas(torch.as_tensor(qmap).clone()) * 255.0**2

    @staticmethod
    def _per_pixel(lam, rows, cols):
        """Latent-cell λs spread over the cells' 16x16 pixels, cropped to rows x cols."""
        s = LATENT_STRIDE
        return lam.repeat_interleave(s, 0).repeat_interleave(s, 1)[:rows, :cols]

    def refine(self, x: torch.Tensor, u0, means, scales, inv_gain, qmap, height: int, width: int, steps: int,
               tiles) -> torch.Tensor:
        """Refined y·g with ẑ fixed, (M, h, w) float64.

        x: (3, H', W') padded image in [0, 1]; u0: g_a's y·g; means, scales: μ·g, σ·g
        from ẑ (quantization steps); inv_gain: (M, h, w) g'; qmap: (h, w) 0-based
        qualities; tiles: (kept, context) latent boxes as :func:`latent_tiles` yields.
        The arrays may be numpy (as the latent codec makes them) or torch.
        """
        with torch.inference_mode(False), torch.enable_grad():
            u = _float32(u0)
            means, scales, inv_gain = _float32(means), _float32(scales), _float32(inv_gain)
            lam = self._pixel_lambdas(qmap)
            x = x.float().clone()
            generator = torch.Generator().manual_seed(0)
            for kept, box in tiles:
                self._refine_tile(u, x, means, scales, inv_gain, lam, kept, box, height, width, steps, generator)
            return u.double()

    def _refine_tile(self, u, x, means, scales, inv_gain, lam, kept, box, height, width, steps, generator):
        r0, r1, c0, c1 = kept
        R0, R1, C0, C1 = box
        s = LATENT_STRIDE
        rows, cols = min(R1 * s, height) - R0 * s, min(C1 * s, width) - C0 * s
        if rows <= 0 or cols <= 0:
            return
        area = (slice(None), slice(R0, R1), slice(C0, C1))
        fixed = u[area].clone()[None]
        mask = torch.zeros((1, 1) + fixed.shape[2:], dtype=torch.bool)  # the kept cells, all channels
        mask[:, :, r0 - R0:r1 - R0, c0 - C0:c1 - C0] = True
        tile_means, tile_scales = means[area][None], scales[area][None]
        tile_inv = inv_gain[area][None]
        target = x[:, R0 * s:R0 * s + rows, C0 * s:C0 * s + cols][None]
        pixel_lam = self._per_pixel(lam[R0:R1, C0:C1], rows, cols)
        pixels = float(mask.sum()) * s * s  # scales both terms alike: sets only Adam's step size
        param = fixed.clone().requires_grad_(True)
        opt = torch.optim.Adam([param], lr=step_size(steps))
        for step in range(steps):
            tau = self._schedule(opt, step, steps)
            moving = torch.where(mask, param, fixed)

            def quantize(v, tau=tau):  # margin cells round as the coder will
                return torch.where(mask, sga_round(v, tau, generator), torch.round(v))

            distortion, bits = self._objective(moving, tile_means, tile_scales, quantize, tile_inv, target,
                                               pixel_lam, mask)
            loss = (distortion + bits) / pixels
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            u[area] = torch.where(mask, param, fixed)[0]

    def refine_jointly(self, x: torch.Tensor, u0, v0, z_gain, gain, inv_gain, qmap, height: int, width: int,
                       steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined (y·g, ẑ symbols) of a whole latent: ẑ moves too (the joint phase).

        v0: (N, hz, wz) g_a's z·g_z − median, the ẑ symbols before rounding;
        z_gain: (N,) g_z; gain, inv_gain: (M, h, w) g and g' (numpy or torch). The bits of ẑ join
        the loss, and μ·g, σ·g come from the float h_s of the relaxed ẑ. Returns
        y·g (M, h, w) float64 and the rounded ẑ symbols (N, hz, wz) int64.
        """
        hyper = self.hyper
        with torch.inference_mode(False), torch.enable_grad():
            x, gain, inv_gain = x.float().clone()[None], _float32(gain)[None], _float32(inv_gain)[None]
            z_gain, median = _float32(z_gain).view(-1, 1, 1), hyper.median.float().view(-1, 1, 1)
            target = x[:, :, :height, :width]
            pixel_lam = self._per_pixel(self._pixel_lambdas(qmap), height, width)
            pixels = float(height * width)
            moved = torch.ones((1, 1) + tuple(u0.shape[1:]), dtype=torch.bool)
            u = _float32(u0)[None].requires_grad_(True)
            v = _float32(v0).requires_grad_(True)
            opt = torch.optim.Adam([u, v], lr=step_size(steps))
            generator = torch.Generator().manual_seed(0)
            for step in range(steps):
                tau = self._schedule(opt, step, steps)
                z_tilde = sga_round(v, tau, generator) + median  # ẑ·g_z
                scales, means = hyper.h_s((z_tilde / z_gain)[None]).chunk(2, 1)
                distortion, bits = self._objective(u, means * gain, scales * gain,
                                                   lambda t, tau=tau: sga_round(t, tau, generator),
                                                   inv_gain, target, pixel_lam, moved)
                loss = (distortion + bits + hyper.density.bits(z_tilde)) / pixels
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return u.detach()[0].double(), torch.round(v.detach()).to(torch.int64)


def build_refiner(tensors: dict[str, torch.Tensor], arch: Architecture, g_s: torch.nn.Module,
                  z_median) -> LatentRefiner:
    """The refiner of a codec's weights: its float channel context and h_s, frozen, with g_s.

    Weights without the float h_s's tensors refine y only (no joint phase)."""
    from sdc.training.layers import build_h_s

    with torch.inference_mode(False):  # encoding runs in inference mode; autograd needs normal tensors
        context = None
        if arch.has_context:
            hidden = tensors["context.nets.0.0.weight"].shape[0]
            context = ChannelContext(arch.M, arch.context_slices, hidden)
            context.load_state_dict({k[len("context."):]: v for k, v in tensors.items() if k.startswith("context.")})
            context.requires_grad_(False)
        try:
            h_s = build_h_s(arch.N, arch.M)
            h_s.load_state_dict({k[len("h_s."):]: v for k, v in tensors.items() if k.startswith("h_s.")})
            h_s.requires_grad_(False)
            hyper = FloatHyperprior(h_s, FactorizedDensity(tensors), torch.as_tensor(z_median))
        except (KeyError, RuntimeError):
            hyper = None
    g_s.requires_grad_(False)
    return LatentRefiner(g_s, context, tensors["gaussian_conditional.scale_table"], hyper)
