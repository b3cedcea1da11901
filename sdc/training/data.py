"""Training data: images decoded once into memory, random crops and random quality maps.

Every draw goes through one ``random.Random``, so a run's seed fixes its crops and
quality maps.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp"}


def load_images(folder: Path, min_side: int) -> list[torch.Tensor]:
    """Decode every image once into uint8 (3, H, W) tensors kept in memory."""
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    if not images:
        raise SystemExit(f"no usable images in {folder}")
    return images


def random_batch(images, batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    """(batch, 3, crop, crop) floats in [0, 1]: crops of random images at random places, each
    flipped left-right half the time."""
    out = torch.empty(batch, 3, crop, crop, dtype=torch.uint8)
    for i in range(batch):
        img = images[rng.randrange(len(images))]
        _, h, w = img.shape
        top, left = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
        patch = img[:, top : top + crop, left : left + crop]
        out[i] = patch.flip(-1) if rng.random() < 0.5 else patch
    return out.float().div_(255.0)


def random_quality_maps(batch: int, size: int, num_q: int, rng: random.Random, mixed_share: float,
                        lowest: int = 0) -> torch.Tensor:
    """(B, size, size) 0-based quality indexes in lowest..num_q-1: uniform, or with a rectangle
    at a second quality."""
    qmap = torch.empty(batch, size, size, dtype=torch.long)
    for i in range(batch):
        qmap[i] = rng.randrange(lowest, num_q)
        if rng.random() < mixed_share:
            h, w = rng.randint(1, size), rng.randint(1, size)
            t, l = rng.randrange(size - h + 1), rng.randrange(size - w + 1)
            qmap[i, t : t + h, l : l + w] = rng.randrange(lowest, num_q)
    return qmap
