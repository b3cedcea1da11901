"""Building blocks shared by the trainable network and the inference codec.

Nothing here imports compressai: its package import pulls in torch_geometric
and takes seconds, which every `sdc encode`/`decode` would pay. The inference
codec therefore uses :class:`FoldedGDN`, which loads compressai's GDN state
dict keys and folds the reparametrisation into plain tensors once.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, output_padding=s - 1, padding=k // 2)


class FoldedGDN(nn.Module):
    """GDN / inverse GDN with effective β and γ (Ballé et al. 2016).

    y = x / sqrt(β + γ·x²) (GDN) or y = x · sqrt(β + γ·x²) (inverse). Loads
    compressai ``GDN`` state dicts: ``beta``, ``gamma`` and the
    ``*_reparam`` bounds, folded as compressai's NonNegativeParametrizer does:
    max(p, bound)² − pedestal.
    """

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.register_buffer("beta_eff", torch.ones(channels))
        self.register_buffer("gamma_eff", torch.zeros(channels, channels, 1, 1))

    def load_reparametrized(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        def fold(name: str) -> torch.Tensor:
            raw = state[f"{prefix}{name}"].float()
            bound = state[f"{prefix}{name}_reparam.lower_bound.bound"].float()
            pedestal = state[f"{prefix}{name}_reparam.pedestal"].float()
            return torch.max(raw, bound) ** 2 - pedestal

        self.beta_eff = fold("beta")
        self.gamma_eff = fold("gamma").reshape(*fold("gamma").shape, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x * x, self.gamma_eff, self.beta_eff)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def build_transforms(N: int, M: int, gdn) -> dict[str, nn.Sequential]:
    """g_a, g_s, h_a, h_s as in compressai's MeanScaleHyperprior(N, M) (same keys).

    `gdn(channels, inverse)` builds the normalisation layers.
    """
    return {
        "g_a": nn.Sequential(conv(3, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, M)),
        "g_s": nn.Sequential(deconv(M, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, 3)),
        "h_a": nn.Sequential(conv(M, N, k=3, s=1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)),
        "h_s": build_h_s(N, M),
    }


def build_h_s(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, M * 2, k=3, s=1),
    )
