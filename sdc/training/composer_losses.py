"""The learned composer's training losses (torch), each over the missing pixels only.

- :func:`hole_l1`: the distance to the original. Alone it learns the
  conditional mean of the missing content, which is blur again.
- :func:`texture_loss`: how much detail there is, not where it is. It compares
  the local RMS contrast of the composed picture and of the original in each band
  of a Laplacian pyramid (1-2, 2-4 and 4-8 px). A hole that the hyperprior
  leaves smooth but that was grass in the photo is pushed to carry grass-like
  contrast, and since the loss ignores the phase of that detail, the network
  may draw it anywhere plausible instead of averaging it away.
- :func:`generator_hinge` and :func:`discriminator_hinge`: the GAN terms, with
  the patch discriminator's scores (one per 8x8 block) weighted by the mask.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

TEXTURE_BANDS = 3
TEXTURE_WINDOW = 8  # pooling window of the local contrast, in pixels of each band


def hole_l1(out, target, mask):
    """Mean absolute difference over the missing pixels (mask 1)."""
    return ((out - target).abs() * mask).sum() / (3 * mask.sum()).clamp_min(1.0)


def _band_contrast(x, bands: int):
    """[(N, C, H/2^k/8, W/2^k/8) local RMS of band k] for k < bands (sides multiples of 8 * 2^bands)."""
    out = []
    for _ in range(bands):
        low = F.avg_pool2d(x, 2)
        band = x - F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
        out.append((F.avg_pool2d(band * band, TEXTURE_WINDOW) + 1e-6).sqrt())
        x = low
    return out


def texture_loss(out, target, mask, bands: int = TEXTURE_BANDS):
    """Mean over bands of |local contrast(out) - local contrast(target)|, weighted by each window's hole share."""
    total = out.new_zeros(())
    for k, (c_out, c_target) in enumerate(zip(_band_contrast(out, bands), _band_contrast(target, bands))):
        share = F.avg_pool2d(mask, TEXTURE_WINDOW * 2 ** k)
        total = total + ((c_out - c_target).abs() * share).sum() / (3 * share.sum()).clamp_min(1e-6)
    return total / bands


def generator_hinge(fake_scores, mask):
    """The composer's GAN loss: minus the discriminator's mean score over blocks in the holes."""
    weight = mask[:, :, ::8, ::8]
    return -(fake_scores * weight).sum() / weight.sum().clamp_min(1.0)


def discriminator_hinge(real_scores, fake_scores):
    return torch.relu(1 - real_scores).mean() + torch.relu(1 + fake_scores).mean()
