"""Building blocks shared by the trainable network and the inference codec.

Nothing here imports compressai: its package import pulls in torch_geometric
and takes seconds, which every `sdc encode`/`decode` would pay. The inference
codec therefore uses :class:`FoldedGDN`, which loads compressai's GDN state
dict keys and folds the reparametrisation into plain tensors once.
"""
from __future__ import annotations

from collections import Counter, OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdc.models.architecture import RES_POSITIONS


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
        if torch.is_grad_enabled() and x.requires_grad:  # encoder-side refinement backpropagates
            return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
        # Inference: the same values in place in `norm`. GDN is a few passes over the
        # largest tensors of the transforms, and one allocation fewer is ~20% of its time.
        if self.inverse:
            norm.sqrt_()
        else:
            norm.rsqrt_()
        return norm.mul_(x)


class ResidualBlock(nn.Module):
    """x + conv(LeakyReLU(conv(x))) with k x k convolutions, starting as the identity.

    kernel 3 is a residual block; kernel 1 a per-pixel MLP ("pointwise"), which
    adds nonlinear capacity where a 3x3 block costs too much (at 1/2 of the
    image's resolution in g_s, ~9x cheaper) and reaches no neighbouring pixel.
    The second convolution starts at zero, so a block added to trained
    weights changes nothing until training moves it (Net2Net-style growth).
    """

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.conv_b = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv_b.weight)
        nn.init.zeros_(self.conv_b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_b(F.leaky_relu(self.conv_a(x)))


# State-dict keys of the blocks start with these, followed by the block's
# name (``g_s.r3.conv_a.weight``; a second block at 3 is ``g_s.r3_2``; a
# pointwise block at 5 is ``g_s.p5``): see :func:`block_names`.
G_A_BLOCK_KEY = "g_a.r"
G_S_BLOCK_KEY = "g_s.r"
G_S_POINTWISE_KEY = "g_s.p"


def block_names(res_after, prefix: str = "r") -> list[tuple[int, str]]:
    """(position, child name) of the blocks at `res_after`, in order: the first at a
    position is ``r<position>`` (the name weights with one block per position use),
    the k-th after it ``r<position>_<k>``; pointwise blocks (prefix "p") likewise."""
    seen: Counter = Counter()
    names = []
    for pos in sorted(res_after):
        seen[pos] += 1
        names.append((pos, f"{prefix}{pos}" if seen[pos] == 1 else f"{prefix}{pos}_{seen[pos]}"))
    return names


def _res_in(state, key: str) -> tuple[int, ...]:
    names = {k.split(".")[1] for k in state if k.startswith(key)}  # "r3", "r3_2", ...
    return tuple(sorted(int(name[1:].split("_")[0]) for name in names))


def g_a_res_in(state) -> tuple[int, ...]:
    """Positions of the g_a residual blocks a state dict (or weights file) holds, a position once per block."""
    return _res_in(state, G_A_BLOCK_KEY)


def g_s_res_in(state) -> tuple[int, ...]:
    """Positions of the g_s residual blocks a state dict (or weights file) holds, a position once per block."""
    return _res_in(state, G_S_BLOCK_KEY)


def g_s_pointwise_in(state) -> tuple[int, ...]:
    """Positions of the g_s pointwise blocks a state dict (or weights file) holds, a position once per block."""
    return _res_in(state, G_S_POINTWISE_KEY)


def undeclared_blocks(state, g_a_res, g_s_res, g_s_pointwise=()) -> list[tuple[str, list[int]]]:
    """(architecture key (BLOCK_KEYS), positions) of the blocks a state dict holds beyond those declared."""
    held = {"g_a_res": (g_a_res_in(state), g_a_res), "g_s_res": (g_s_res_in(state), g_s_res),
            "g_s_pointwise": (g_s_pointwise_in(state), g_s_pointwise)}
    extra = {name: sorted((Counter(h) - Counter(d)).elements()) for name, (h, d) in held.items()}
    return [(name, positions) for name, positions in extra.items() if positions]


def g_s_width_in(state) -> int:
    """Hidden channels of the g_s a state dict (or weights file) holds (its first deconvolution's outputs)."""
    return int(state["g_s.0.weight"].shape[1])


def with_blocks(layers: list[nn.Module], channels: int, res_after: tuple[int, ...], what: str,
                pointwise: tuple[int, ...] = ()) -> list[tuple[str, nn.Module]]:
    """compressai's layer list as named children, with residual blocks after the positions in
    `res_after` and pointwise blocks (after those) at the positions in `pointwise`.

    The blocks are named as :func:`block_names` says, so the compressai layers keep their
    keys (``g_s.0.weight`` ...) and weights without blocks still load.
    """
    blocks_after: dict[int, list[tuple[str, int]]] = {}
    for kind, positions, prefix, kernel in (("residual", res_after, "r", 3), ("pointwise", pointwise, "p", 1)):
        bad = sorted(set(positions) - set(RES_POSITIONS))
        if bad:
            raise ValueError(f"{what} {kind} blocks go after positions {RES_POSITIONS}, not {bad}")
        for pos, name in block_names(positions, prefix):
            blocks_after.setdefault(pos, []).append((name, kernel))
    named: list[tuple[str, nn.Module]] = []
    for i, layer in enumerate(layers):
        named.append((str(i), layer))
        named.extend((name, ResidualBlock(channels, kernel)) for name, kernel in blocks_after.get(i, ()))
    return named


def analysis(N: int, M: int, gdn, res_after: tuple[int, ...] = ()) -> nn.Sequential:
    """compressai's g_a, with residual blocks after the GDNs in `res_after`."""
    layers = [conv(3, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, N), gdn(N, False), conv(N, M)]
    return nn.Sequential(OrderedDict(with_blocks(layers, N, tuple(res_after), "g_a")))


def synthesis(N: int, M: int, gdn, res_after: tuple[int, ...] = (), pointwise: tuple[int, ...] = ()) -> nn.Sequential:
    """compressai's g_s, with residual blocks after the inverse GDNs in `res_after` and
    pointwise blocks after those in `pointwise`."""
    layers = [deconv(M, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, N), gdn(N, True), deconv(N, 3)]
    return nn.Sequential(OrderedDict(with_blocks(layers, N, tuple(res_after), "g_s", tuple(pointwise))))


class Bypassed(nn.Sequential):
    """A transform's layers in sequence, plus a linear patch path added to their output.

    The ``bypass`` child (kept last, so the compressai keys stay ``g_a.0`` ...)
    sees the transform's input and is skipped by the sequence.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name, layer in self.named_children():
            if name != "bypass":
                out = layer(out)
        return out + self.bypass(x)


# Why a linear patch bypass: at high rates transform coding is close to linear,
# and on our val photos a plain 16x16x3 KLT keeping 144 components reaches
# 31.6 dB while g_s(g_a(x)) of the 144-channel GDN network, unquantised,
# reached only 30.6 dB: the narrow (N=64) nonlinear path, not y's
# width, capped the top qualities. One 16x16 stride-16 convolution each way is
# the cheapest way to give y and x̂ that linear path: 768·M multiply-adds per
# latent cell, ~0.17 GMAC for 768x512 at M=144, ~4% of g_s.
def patch_analysis(M: int) -> nn.Conv2d:
    """16x16 patches of the image -> M latent channels (one latent cell each)."""
    layer = nn.Conv2d(3, M, 16, stride=16)
    nn.init.zeros_(layer.weight); nn.init.zeros_(layer.bias)
    return layer


def patch_synthesis(M: int) -> nn.ConvTranspose2d:
    """M latent channels -> a 16x16 RGB patch per latent cell; zero at first, so
    a bypass added to trained weights changes nothing until training moves it."""
    layer = nn.ConvTranspose2d(M, 3, 16, stride=16)
    nn.init.zeros_(layer.weight); nn.init.zeros_(layer.bias)
    return layer


def has_bypass(state) -> bool:
    """Whether a state dict (or weights file) holds a patch bypass."""
    return any(k.startswith(("g_a.bypass.", "g_s.bypass.")) for k in state)


def build_transforms(N: int, M: int, gdn, g_s_res: tuple[int, ...] = (), bypass: bool = False,
                     g_s_width: int | None = None, g_a_res: tuple[int, ...] = (),
                     g_s_pointwise: tuple[int, ...] = ()) -> dict[str, nn.Sequential]:
    """g_a, g_s, h_a, h_s as in compressai's MeanScaleHyperprior(N, M) (same keys).

    `gdn(channels, inverse)` builds the normalisation layers; `g_s_res` adds
    residual blocks to g_s (see :func:`synthesis`), `g_a_res` to g_a, `g_s_pointwise`
    pointwise (1x1) blocks to g_s; `bypass` adds a linear
    16x16 patch path to g_a and g_s (see :class:`Bypassed`); `g_s_width`
    (default N) is g_s's hidden width, which may exceed g_a's because decoding
    has time to spare where encoding has little (see sdc.training.widen_synthesis).
    """
    g_a = analysis(N, M, gdn, tuple(g_a_res))
    g_s = synthesis(g_s_width or N, M, gdn, tuple(g_s_res), tuple(g_s_pointwise))
    if bypass:
        g_a = Bypassed(OrderedDict(list(g_a.named_children()) + [("bypass", patch_analysis(M))]))
        g_s = Bypassed(OrderedDict(list(g_s.named_children()) + [("bypass", patch_synthesis(M))]))
    return {
        "g_a": g_a,
        "g_s": g_s,
        "h_a": nn.Sequential(conv(M, N, k=3, s=1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)),
        "h_s": build_h_s(N, M),
    }


def build_h_s(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2), nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, M * 2, k=3, s=1),
    )
