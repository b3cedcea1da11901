"""The trainable network: transforms, hyperprior and quality gains.

Architecture (module names and shapes match compressai's
``MeanScaleHyperprior(N, M)``, so its weights can initialise this one)::

              ┌───┐  y   ┌────┐ y·g                 ŷ·g = round(y·g − μ·g) + μ·g
        x ──►─┤g_a├──►─┬─┤ ×g ├──►──────────────────────┬───────────────►─┐
              └───┘    │ └────┘                         │ GC(μ·g, σ·g)    │
                       │ ┌───┐ z ┌─────┐  ┌───┐ ┌─────┐ ┌───┐  μ, σ       │
                       └─┤h_a├─►─┤ ×gz ├─►┤ Q ├─┤ /gz ├─┤h_s├──►─┘         │
                         └───┘   └─────┘  └───┘ └─────┘ └───┘             │
                                            EB                           │
              ┌───┐   ŷ  ┌─────┐                                          │
      x̂ ──◄──┤g_s├──◄───┤ ×g' ├──◄───────────────────────────────────────┘
              └───┘      └─────┘

g, g' are per-channel gain vectors, one pair per quality q (Cui et al. 2021,
"Asymmetric gained deep image compression"), applied as a *map*: each latent
position takes the gain of its group's quality, so one image can carry L1 at
q=8 and the background at q=2. The hyperprior works in the ungained domain:
h_s predicts μ, σ of y, and each position's coding distribution is
N(μ·g, σ·g) with its own g. So a group's bits depend only on its own quality,
not on its neighbours' (a hyperprior that saw y·g would smear a high-quality
group's statistics into the low-quality groups around it). z has a gain gz of
its own, taken from the highest quality present in the image, so the side
information also shrinks at low rates.

With ``context_slices`` S > 1, a 1x1 channel-conditional context
(:mod:`sdc.training.channel_context`) refines μ·g, σ·g of channel slice k from
ŷ·g of slices < k at the same position, before the rate and ŷ are computed.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from sdc.models.architecture import DEFAULT_NUM_QUALITIES, Architecture
from sdc.training.channel_context import ChannelContext
from sdc.training.layers import build_transforms

# Rate-distortion trade-offs of the qualities 1, 2, ...: loss = λ·255²·MSE + bpp,
# spaced x2.4 from 0.00025 (a ladder of 0.0016·1.7^k reached only 0.33-1.08
# bpp). A network with n qualities uses the first n rungs, so
# adding a quality on top keeps the λs (and the gains) of the others.
LAMBDA_FIRST, LAMBDA_STEP = 0.00025, 2.4


def lambda_ladder(num_qualities: int) -> tuple[float, ...]:
    """λ of qualities 1..num_qualities."""
    return tuple(LAMBDA_FIRST * LAMBDA_STEP**k for k in range(num_qualities))


def quality_lambdas(qmap: torch.Tensor) -> torch.Tensor:
    """float32 λ of each entry of a map of 0-based quality indexes."""
    n = int(qmap.max()) + 1 if qmap.numel() else 1
    return torch.tensor(lambda_ladder(n), dtype=torch.float32)[qmap]


LAMBDAS: tuple[float, ...] = lambda_ladder(DEFAULT_NUM_QUALITIES)  # the default ladder
# λ of the shared warm start; its gains are initialised to 1 there.
REFERENCE_LAMBDA = 0.013


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return (torch.round(x) - x).detach() + x


def initial_log_gains(num_qualities: int, M: int) -> torch.Tensor:
    """Gains start where high-rate theory puts them: step size ∝ 1/sqrt(λ)."""
    init = torch.tensor([0.5 * math.log(lam / REFERENCE_LAMBDA) for lam in lambda_ladder(num_qualities)])
    return init[:, None].repeat(1, M)


def remap_log_gains(log_gain: torch.Tensor, old_lambdas, new_lambdas) -> torch.Tensor:
    """Carry learned (Q, C) log-gains over to a new set of λs.

    Learned log-gains stay close to linear in log λ per channel (the high-rate
    theory they start from), so fit that line per channel over the old qualities
    and read it off at the new λs: a warm start for changing the quality ladder.
    """
    old = torch.log(torch.tensor(old_lambdas, dtype=torch.float64))
    new = torch.log(torch.tensor(new_lambdas, dtype=torch.float64))
    design = torch.stack([old, torch.ones_like(old)], 1)
    slope, offset = torch.linalg.lstsq(design, log_gain.detach().double()).solution
    return (new[:, None] * slope + offset).to(log_gain.dtype)


def extend_log_gains(log_gain: torch.Tensor, old_lambdas, new_lambdas, fit_last: int = 3) -> torch.Tensor:
    """Learned (Q, C) log-gains for a ladder that extends the old one (old λs first).

    The old rows are kept as they are; each new row is read off the per-channel
    line through the top `fit_last` old qualities (local, because the learned
    gains bend away from the high-rate line at the ends of the ladder).
    """
    q = len(old_lambdas)
    top = remap_log_gains(log_gain[q - min(fit_last, q):], old_lambdas[q - min(fit_last, q):], new_lambdas[q:])
    return torch.cat([log_gain.detach(), top])


def trainable_gdn(channels: int, inverse: bool) -> nn.Module:
    """compressai's (trainable) GDN: the layer factory of the training network's transforms."""
    from compressai.layers import GDN  # lazily: importing compressai is slow

    return GDN(channels, inverse=inverse)


class SDCNet(nn.Module):
    """Variable-rate mean-scale hyperprior with per-position gains (trainable).

    Uses compressai's GDN and entropy models (imported here, lazily, because
    importing compressai is slow); the inference codec needs neither.

    Args:
        N: channels of the transforms and of z.
        M: channels of y.
        num_qualities: number of gain pairs (qualities 1..num_qualities).
        context_slices, context_hidden: the channel-conditional context (0: none).
        g_s_res: positions in g_s followed by a residual block, once per block
            (1, 3, 3: two stacked at 3; see :func:`sdc.training.layers.synthesis`).
        bypass: a linear 16x16 patch path beside g_a and g_s (see
            :class:`sdc.training.layers.Bypassed`).
        g_s_width: hidden channels of g_s (default N).
        g_a_res: positions in g_a followed by a residual block (see
            :func:`sdc.training.layers.analysis`).
        g_s_pointwise: positions in g_s followed by a pointwise (1x1) residual block.
    """

    def __init__(self, N: int = 64, M: int = 96, num_qualities: int = DEFAULT_NUM_QUALITIES, context_slices: int = 0,
                 context_hidden: int = 64, g_s_res: tuple[int, ...] = (), bypass: bool = False,
                 g_s_width: int | None = None, g_a_res: tuple[int, ...] = (), g_s_pointwise: tuple[int, ...] = ()):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck, GaussianConditional
        from compressai.models.google import get_scale_table

        self.N, self.M, self.num_qualities = N, M, num_qualities
        self.lambdas = lambda_ladder(num_qualities)
        self.context_slices, self.context_hidden = context_slices, context_hidden
        self.g_s_res, self.bypass, self.g_s_width = tuple(g_s_res), bool(bypass), int(g_s_width or N)
        self.g_a_res, self.g_s_pointwise = tuple(g_a_res), tuple(g_s_pointwise)
        for name, module in build_transforms(N, M, trainable_gdn, self.g_s_res, self.bypass, self.g_s_width,
                                             self.g_a_res, self.g_s_pointwise).items():
            setattr(self, name, module)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.log_gain = nn.Parameter(initial_log_gains(num_qualities, M))
        self.log_inv_gain = nn.Parameter(-initial_log_gains(num_qualities, M))
        self.log_z_gain = nn.Parameter(0.5 * initial_log_gains(num_qualities, N))
        # Optional 1x1 channel-conditional context (sdc.training.channel_context).
        self.context = ChannelContext(M, context_slices, context_hidden) if context_slices > 1 else None
        self.register_buffer("coder_scale_table", get_scale_table(), persistent=False)

    @classmethod
    def from_config(cls, config: dict) -> "SDCNet":
        """The network a checkpoint's config or a manifest's architecture describes (same keys)."""
        arch = Architecture.from_dict(config)
        return cls(arch.N, arch.M, num_qualities=arch.num_qualities, context_slices=arch.context_slices,
                   context_hidden=arch.context_hidden, bypass=arch.bypass, g_s_width=arch.g_s_width, **arch.blocks)

    # -- gains ---------------------------------------------------------------
    def gain_maps(self, qmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position gains for a (B, h, w) map of 0-based quality indexes."""
        g = self.log_gain.exp()[qmap].permute(0, 3, 1, 2)
        gi = self.log_inv_gain.exp()[qmap].permute(0, 3, 1, 2)
        return g.contiguous(), gi.contiguous()

    # -- training ------------------------------------------------------------
    def forward(self, x: torch.Tensor, qmap: torch.Tensor) -> dict:
        """x: (B, 3, H, W) in [0, 1]; qmap: (B, H/16, W/16) long quality indexes."""
        y = self.g_a(x)
        g, gi = self.gain_maps(qmap)
        gz = self.log_z_gain.exp()[qmap.flatten(1).amax(1)][:, :, None, None]
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z * gz)
        scales, means = self.h_s(z_hat / gz).chunk(2, 1)
        scales_g, means_g = scales * g, means * g
        y_g = y * g
        if self.context is not None:
            means_g, scales_g, y_hat_g = self.context(y_g, means_g, scales_g, self.coder_scale_table, ste_round)
        else:
            y_hat_g = ste_round(y_g - means_g) + means_g
        # Rate from additive noise, reconstruction from true rounding
        # ("mixed quantization", Minnen & Singh 2020): the synthesis learns on
        # the latents it will really get.
        _, y_lik = self.gaussian_conditional(y_g, scales_g, means=means_g)
        y_hat = y_hat_g * gi
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()
