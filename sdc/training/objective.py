"""What training minimises and how it is measured: the rate-distortion loss, the per-quality
loss weights, validation on whole images, and the learning-rate schedule."""
from __future__ import annotations

import math

import numpy as np
import torch

from sdc.geometry import LATENT_STRIDE, PAD_MULTIPLE
from sdc.training.network import SDCNet, quality_lambdas


def rd_loss(out: dict, x: torch.Tensor, qmap: torch.Tensor,
            quality_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """λ·255²·MSE + bpp, with λ taken per pixel from the quality map.

    With `quality_weights` (one per quality), each pixel's distortion and each
    latent position's bits count w[q] times (z's bits: w of the image's top
    quality, whose gain z takes); see :func:`balanced_quality_weights`."""
    b, _, h, w = x.shape
    lam = quality_lambdas(qmap).to(x.dtype)  # (B, h/16, w/16)
    y_bits = -torch.log2(out["likelihoods"]["y"])
    z_bits = -torch.log2(out["likelihoods"]["z"])
    bpp = (y_bits.sum() + z_bits.sum()) / (b * h * w)
    weighted_bpp = bpp
    if quality_weights is not None:
        table = quality_weights.to(x.dtype)
        weight, z_weight = table[qmap], table[qmap.flatten(1).amax(1)]  # (B, h/16, w/16), (B,)
        lam = lam * weight
        weighted_bpp = ((y_bits.sum(1) * weight).sum() + (z_bits.flatten(1).sum(1) * z_weight).sum()) / (b * h * w)
    lam = lam.repeat_interleave(LATENT_STRIDE, 1).repeat_interleave(LATENT_STRIDE, 2)[:, None]
    se = (out["x_hat"] - x).pow(2)
    distortion = (lam * 255.0**2 * se).mean()
    mse = se.mean()
    return distortion + weighted_bpp, {"bpp": bpp.item(), "mse": mse.item()}


def balanced_quality_weights(val: dict, lambdas, alpha: float) -> list[float]:
    """Per-quality loss weights w_q ∝ L_q^-alpha (mean 1), L_q = bpp + λ·255²·MSE at quality q
    from a validation table ({"q1": {"bpp", "psnr"}, ...}).

    Why: with one loss summed over qualities, a quality's pull on the shared
    transforms grows with its loss, and L_q rises ~29x from q1 to q8, so the
    transforms serve the top qualities first. BD-rate weighs every quality's
    *relative* rate alike; dividing by L_q (alpha 1) makes the training do so.
    """
    losses = [val[f"q{q + 1}"]["bpp"] + lam * 255.0**2 * 10 ** (-val[f"q{q + 1}"]["psnr"] / 10)
              for q, lam in enumerate(lambdas)]
    raw = [loss ** -alpha for loss in losses]
    return [r * len(raw) / sum(raw) for r in raw]


@torch.no_grad()
def validate(net: SDCNet, images, qualities=None) -> dict:
    """Estimated bpp (rounded latents, exact likelihoods) and PSNR on whole images
    (default: qualities 1, 4, 8 and the top one, 0-based indexes)."""
    if qualities is None:
        qualities = sorted({q for q in (0, 3, 7) if q < net.num_qualities} | {net.num_qualities - 1})
    net.eval()
    results = {}
    for q in qualities:
        bpps, psnrs = [], []
        for img in images:
            _, h, w = img.shape
            h, w = h - h % PAD_MULTIPLE, w - w % PAD_MULTIPLE
            x = img[None, :, :h, :w].float() / 255.0
            qmap = torch.full((1, h // LATENT_STRIDE, w // LATENT_STRIDE), q, dtype=torch.long)
            out = net(x, qmap)
            bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
            bpps.append(bits.item() / (h * w))
            mse = (out["x_hat"].clamp(0, 1) - x).pow(2).mean().item()
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-12)))
        results[f"q{q + 1}"] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
    net.train()
    return results


def learning_rate(step: int, progress: float, base: float, warmup: int = 200, decay_share: float = 0.3) -> float:
    """Warm-up over the first `warmup` steps, constant, then cosine decay to base/10 over the
    last `decay_share` of the run; `progress` is the share of the run done (steps or clock time)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, max(0.0, (progress - (1 - decay_share)) / decay_share))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
