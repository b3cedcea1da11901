"""Run g_a and g_s on large images tile by tile, so peak memory stays bounded.

A 4000x3000 decode needed 3.6 GB untiled; 8192x8192, the default --max-pixels,
would need ~16 GB. Each tile is run with a margin of latent cells of context
on every side and only its centre is kept. g_a and g_s see little around a
position (:attr:`Architecture.reach_px`: 30 pixels, plus 2 feature pixels per
residual block); :func:`tile_margin` turns that into whole cells, at least
TILE_MARGIN, so a tiled result equals the untiled one up to float summation
order (tests/test_reliability.py: within 1 code value). Images up to
TILE * 16 = 1024 pixels on both sides are a single tile. Decoders need not
tile the same way: this changes no bit of the format.

Arrays are numpy, NCHW float32, whatever runs the transforms (ONNX Runtime or
torch): a transform is any callable from one such array to another.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from sdc.geometry import LATENT_STRIDE, PAD_MULTIPLE

TILE = 64
TILE_MARGIN = 4

Transform = Callable[[np.ndarray], np.ndarray]
Box = tuple[int, int, int, int]  # r0, r1, c0, c1 in latent cells


def tile_margin(reach_px: int) -> int:
    """Latent cells of context a tile needs for transforms that see `reach_px` pixels around a position."""
    return max(TILE_MARGIN, math.ceil(reach_px / LATENT_STRIDE))


def latent_tiles(h: int, w: int, tile: int = TILE, margin: int = TILE_MARGIN) -> Iterator[tuple[Box, Box]]:
    """(kept, context) boxes (r0, r1, c0, c1) covering an h x w latent."""
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
            yield (r0, r1, c0, c1), (max(0, r0 - margin), min(h, r1 + margin), max(0, c0 - margin), min(w, c1 + margin))


def padded_input(rgb: np.ndarray) -> np.ndarray:
    """(1, 3, H', W') float32 in [0, 1] from (H, W, 3) uint8, edge-replicated on the bottom
    and right to multiples of PAD_MULTIPLE (g_a's input)."""
    h, w = rgb.shape[:2]
    x = np.pad(rgb, ((0, (-h) % PAD_MULTIPLE), (0, (-w) % PAD_MULTIPLE), (0, 0)), mode="edge")
    return (x.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0))


def analysis_tiled(g_a: Transform, x: np.ndarray, channels: int, margin: int, tile: int = TILE) -> np.ndarray:
    """y (1, channels, H/16, W/16) of a padded (1, 3, H, W) image, tile by tile."""
    h, w = x.shape[-2] // LATENT_STRIDE, x.shape[-1] // LATENT_STRIDE
    if h <= tile and w <= tile:
        return g_a(x)
    y = np.empty((1, channels, h, w), np.float32)
    s = LATENT_STRIDE
    for (r0, r1, c0, c1), (R0, R1, C0, C1) in latent_tiles(h, w, tile, margin):
        part = g_a(np.ascontiguousarray(x[:, :, R0 * s:R1 * s, C0 * s:C1 * s]))
        y[:, :, r0:r1, c0:c1] = part[:, :, r0 - R0:r1 - R0, c0 - C0:c1 - C0]
    return y


def to_pixels(x_hat: np.ndarray) -> np.ndarray:
    """(3, h, w) float g_s output -> (h, w, 3) uint8: NaN to 0, clamp to [0, 1], round half to even."""
    x = np.nan_to_num(x_hat.astype(np.float32, copy=False), nan=0.0)
    x = np.round(np.clip(x, 0.0, 1.0) * np.float32(255.0))
    return x.astype(np.uint8).transpose(1, 2, 0)


def synthesis_tiled(g_s: Transform, y_hat: np.ndarray, height: int, width: int, margin: int,
                    tile: int = TILE) -> np.ndarray:
    """(height, width, 3) uint8 from ŷ (M, h, w) float32: g_s tile by tile."""
    h, w = y_hat.shape[-2:]
    s = LATENT_STRIDE
    out = np.empty((height, width, 3), np.uint8)
    for (r0, r1, c0, c1), (R0, R1, C0, C1) in latent_tiles(h, w, tile, margin):
        rows, cols = min(r1 * s, height) - r0 * s, min(c1 * s, width) - c0 * s
        if rows <= 0 or cols <= 0:
            continue
        x_hat = g_s(np.ascontiguousarray(y_hat[None, :, R0:R1, C0:C1]))[0]
        x_hat = x_hat[:, (r0 - R0) * s:(r0 - R0) * s + rows, (c0 - C0) * s:(c0 - C0) * s + cols]
        out[r0 * s:r0 * s + rows, c0 * s:c0 * s + cols] = to_pixels(x_hat)
    return out
