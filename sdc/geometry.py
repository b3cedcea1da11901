"""The codec's geometry, shared by the runtime, training and the container: no dependencies.

An image is padded on the bottom and right to multiples of PAD_MULTIPLE pixels;
y (and the region map) has one position per LATENT_STRIDE x LATENT_STRIDE
pixels, z one per 4 x 4 positions of y.
"""
from __future__ import annotations

LATENT_STRIDE = 16  # pixels per latent position, each way
PAD_MULTIPLE = 64  # the padding grid: one position of z


def latent_shape(height: int, width: int) -> tuple[int, int]:
    """Shape of y (and of the region map) for an image of this size."""
    return (
        -(-height // PAD_MULTIPLE) * (PAD_MULTIPLE // LATENT_STRIDE),
        -(-width // PAD_MULTIPLE) * (PAD_MULTIPLE // LATENT_STRIDE),
    )


def cells_to_pixels(cells, height: int, width: int):
    """An (h, w) array over latent positions (a region map, a mask of missing cells) as an
    (height, width) array over the image's pixels (numpy's own methods: no import here)."""
    return cells.repeat(LATENT_STRIDE, 0).repeat(LATENT_STRIDE, 1)[:height, :width]
