"""How one training step updates the network: parameter groups and their Adam optimizers,
the compiled forward, freezing all but new gains, and the step itself."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sdc.training.layers import G_A_BLOCK_KEY, G_S_BLOCK_KEY, G_S_POINTWISE_KEY
from sdc.training.network import SDCNet
from sdc.training.objective import rd_loss
from sdc.training.warm_start import GAIN_NAMES

# Parts that start at zero in a trained model (context, patch bypass, residual
# blocks): they learn at --context-lr-scale x the LR.
FAST_PREFIXES = ("context.", "g_a.bypass.", "g_s.bypass.", G_A_BLOCK_KEY, G_S_BLOCK_KEY, G_S_POINTWISE_KEY)


def parameter_groups(net: SDCNet) -> tuple[list, list, list]:
    """(main, fast, aux) parameters: the fast ones start at zero (FAST_PREFIXES); aux are
    the entropy bottleneck's quantiles, trained by their own loss."""
    main, fast, aux = [], [], []
    for name, param in net.named_parameters():
        (aux if name.endswith(".quantiles") else fast if name.startswith(FAST_PREFIXES) else main).append(param)
    return main, fast, aux


def adam(params, lr: float, fused: bool = True) -> torch.optim.Adam:
    """Adam with the fused CPU kernel (one pass over all parameters instead of a
    loop of small ops): benchmarks/results/train_step.json."""
    return torch.optim.Adam(params, lr=lr, fused=fused)


def keep_fused(opt: torch.optim.Optimizer) -> None:
    """Loading a state dict brings back the saved groups' options (older runs: not fused)."""
    for group in opt.param_groups:
        group["fused"], group["foreach"] = True, None


@dataclass
class Optimizers:
    """A run's two Adams: `main` over the network's main parameters (the fast ones join it as a
    second group, :meth:`add_fast_group`) and `aux` over the entropy bottleneck's quantiles.
    `params` (main and fast) are the ones whose gradients are clipped together."""

    main: torch.optim.Adam
    aux: torch.optim.Adam
    params: list
    fast: list
    fast_lr_scale: float

    def add_fast_group(self) -> None:
        """Give the fast parameters, if any, their own group at `fast_lr_scale` x the LR. A
        separate step, as a resumed run adds it before or after loading the saved state
        depending on whether that state already has it."""
        if self.fast:
            self.main.add_param_group({"params": self.fast, "lr_scale": self.fast_lr_scale})


def make_optimizers(net: SDCNet, lr: float, fast_lr_scale: float) -> Optimizers:
    """The Adams of a run, the fast group not yet added; the aux loss learns at a fixed 1e-3."""
    main, fast, aux = parameter_groups(net)
    return Optimizers(adam(main, lr), adam(aux, 1e-3), main + fast, fast, fast_lr_scale)


def set_learning_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's LR to `lr` times its own scale (the fast group's --context-lr-scale)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def train_only_gains_from(net: SDCNet, first: int) -> None:
    """Freeze everything but the gains of 0-based qualities >= first.

    For qualities added on top of trained weights: the transforms, hyperprior,
    context and entropy tables stay exactly as they are, so the lower qualities
    code the same bytes, and only the new gain vectors learn (on samples of
    their own qualities).
    """
    for name, param in net.named_parameters():
        param.requires_grad_(name in GAIN_NAMES)
    rows = torch.arange(net.num_qualities)[:, None] >= first
    for name in GAIN_NAMES:
        getattr(net, name).register_hook(lambda grad: grad * rows.to(grad.dtype))


class CompiledForward:
    """The network's forward through torch.compile (inductor), for training.

    With fused Adam, about 8% (1 thread) and 14% (2 threads) less time per step here
    (mean over interleaved steps, benchmarks/results/train_step.json: it fuses
    the GDN, gain and likelihood element-wise ops that eager runs one by
    one), after a one-off compile of about 90 s. Inductor needs a C++ compiler; if
    the first call fails for any reason the run says so and goes on eagerly.
    Only the forward (and its backward) is compiled: the parameters are the
    net's own, so checkpoints and validation use `net` as before.
    """

    def __init__(self, net: SDCNet):
        self.net, self.fn, self.tried = net, torch.compile(net), False

    def __call__(self, x: torch.Tensor, qmap: torch.Tensor) -> dict:
        if self.tried:
            return self.fn(x, qmap)
        self.tried = True
        try:
            return self.fn(x, qmap)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, loudly
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            print(f"torch.compile failed ({type(exc).__name__}: {first}); training without it", flush=True)
            self.fn = self.net
            return self.fn(x, qmap)


def training_step(forward, net: SDCNet, opt, aux_opt, params, x: torch.Tensor, qmap: torch.Tensor,
                  quality_weights: torch.Tensor | None = None):
    """One optimisation step on a batch: rate-distortion loss, clipped gradients, then the
    entropy bottleneck's quantile (aux) loss (skipped when the bottleneck is frozen).
    Returns (loss, stats, aux loss)."""
    out = forward(x, qmap)
    loss, stats = rd_loss(out, x, qmap, quality_weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    aux = net.aux_loss()
    if aux.requires_grad:
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
    return loss, stats, aux
