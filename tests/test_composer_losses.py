"""The learned composer's training losses on real photo crops."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_rgb

torch = pytest.importorskip("torch")
from sdc.training.composer_losses import hole_l1, texture_loss  # noqa: E402


@pytest.fixture(scope="module")
def photo(shared):
    rgb = load_rgb(shared / "data" / "val" / "wiki_001.png", (256, 192))
    return torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255)


def hole(shape, box):
    mask = torch.zeros(1, 1, *shape)
    mask[..., box[0]:box[1], box[2]:box[3]] = 1
    return mask


def blurred(x, passes=3):
    for _ in range(passes):
        x = torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    return x


def test_hole_l1_counts_only_the_missing_pixels(photo):
    mask = hole(photo.shape[2:], (32, 96, 32, 160))
    other = photo.clone()
    other[..., :32, :] = 1 - other[..., :32, :]  # changed outside the hole only
    assert hole_l1(other, photo, mask).item() == 0
    other[..., 32:96, 32:160] += 0.1
    assert hole_l1(other, photo, mask).item() == pytest.approx(0.1, abs=1e-3)


def test_texture_loss_asks_for_detail_but_not_where(photo):
    mask = hole(photo.shape[2:], (0, 192, 0, 256))
    assert texture_loss(photo, photo, mask).item() == 0
    smooth = texture_loss(blurred(photo), photo, mask).item()
    # the same detail moved by two pixels costs more L1 than blur, but half its texture loss
    shifted = torch.roll(photo, (2, 2), (2, 3))
    assert texture_loss(shifted, photo, mask).item() < smooth / 2
    assert hole_l1(shifted, photo, mask).item() > hole_l1(blurred(photo), photo, mask).item()
    # grain on the blurred picture lowers it while it is about as strong as the lost detail, not beyond
    grain = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    assert texture_loss(blurred(photo) + 0.005 * grain, photo, mask).item() < smooth
    assert texture_loss(blurred(photo) + 0.05 * grain, photo, mask).item() > smooth


def test_texture_loss_looks_only_at_windows_in_the_hole(photo):
    mask = hole(photo.shape[2:], (64, 128, 64, 192))
    damaged = photo.clone()
    damaged[..., :32, :] = blurred(photo)[..., :32, :]  # outside every window the hole touches
    assert texture_loss(damaged, photo, mask).item() == 0
    damaged[..., 64:128, 64:192] = blurred(photo)[..., 64:128, 64:192]
    assert texture_loss(damaged, photo, mask).item() > 0
