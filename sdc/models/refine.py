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

Large latents are refined tile by tile (the tiles of :mod:`sdc.models.codec`):
each tile's kept cells move while its margin cells stay at their current
values, and the loss covers the whole tile with its margin, which holds every
pixel the kept cells reach. Memory stays bounded; tiles see each other's
refined values in raster order.
"""
from __future__ import annotations

import torch

from sdc.models.channel_context import ChannelContext
from sdc.models.network import LAMBDAS, LATENT_STRIDE

# Encoder effort (sdc encode --effort) -> refinement steps. BD-rate against
# effort 1: 20 steps -7.6% on all val (results/rd_effort2.json); on 2 val
# images, 20 steps -7.0% and 50 steps -8.7% (a one-off probe, session 6).
EFFORT_STEPS = {1: 0, 2: 20, 3: 50}
TAU_START, TAU_END = 0.5, 0.05  # SGA temperature, annealed geometrically
LEARNING_RATE = 0.05  # Adam step on u, in quantization steps
SCALE_BOUND = 0.11  # the smallest σ·g the coder's table holds (compressai's bound)
LIKELIHOOD_BOUND = 1e-9


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


class LatentRefiner:
    """Refines y·g for one image given fixed hyperprior parameters (see the module docstring).

    Args:
        g_s: the synthesis transform (float, channels_last).
        context: the float channel context, or None when the weights have none.
        scale_table: σ values of the coder's table (for the context's σ-index feature).
    """

    def __init__(self, g_s: torch.nn.Module, context: ChannelContext | None, scale_table: torch.Tensor):
        self.g_s, self.context, self.scale_table = g_s, context, scale_table.float()

    def _relaxed(self, u, means, scales, quantize):
        """(ỹ·g, μ', σ') of the tile, with the channel context if there is one."""
        if self.context is not None:
            mu, sigma, y_tilde = self.context(u, means, scales, self.scale_table, quantize)
            return y_tilde, mu, sigma
        return quantize(u - means) + means, means, scales

    def refine(self, x: torch.Tensor, u0: torch.Tensor, means: torch.Tensor, scales: torch.Tensor,
               inv_gain: torch.Tensor, qmap: torch.Tensor, height: int, width: int, steps: int,
               tiles) -> torch.Tensor:
        """Refined y·g, (M, h, w) float64.

        x: (3, H', W') padded image in [0, 1]; u0: g_a's y·g; means, scales: μ·g, σ·g
        from ẑ (quantization steps); inv_gain: (M, h, w) g'; qmap: (h, w) 0-based
        qualities; tiles: (kept, context) latent boxes as :func:`latent_tiles` yields.
        """
        with torch.inference_mode(False), torch.enable_grad():
            u = u0.detach().float().clone()
            means, scales, inv_gain = means.float().clone(), scales.float().clone(), inv_gain.float().clone()
            lam = torch.tensor(LAMBDAS, dtype=torch.float32)[qmap.clone()] * 255.0**2
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
        pixel_lam = lam[R0:R1, C0:C1].repeat_interleave(s, 0).repeat_interleave(s, 1)[:rows, :cols]
        pixels = float(mask.sum()) * s * s  # scales both terms alike: sets only Adam's step size
        param = fixed.clone().requires_grad_(True)
        opt = torch.optim.Adam([param], lr=LEARNING_RATE)
        for step in range(steps):
            progress = step / max(1, steps - 1)
            tau = TAU_START * (TAU_END / TAU_START) ** progress
            for group in opt.param_groups:  # linear decay to a tenth
                group["lr"] = LEARNING_RATE * (1 - 0.9 * progress)
            moving = torch.where(mask, param, fixed)

            def quantize(v, tau=tau):  # margin cells round as the coder will
                return torch.where(mask, sga_round(v, tau, generator), torch.round(v))

            y_tilde, mu, sigma = self._relaxed(moving, tile_means, tile_scales, quantize)
            x_hat = self.g_s((y_tilde * tile_inv).contiguous(memory_format=torch.channels_last))[:, :, :rows, :cols]
            distortion = (pixel_lam * (x_hat - target).pow(2).mean(1)).sum() / pixels
            moved = mask.expand_as(y_tilde)
            bits = gaussian_bits(y_tilde[moved], mu[moved], sigma[moved])
            loss = distortion + bits / pixels
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            u[area] = torch.where(mask, param, fixed)[0]
