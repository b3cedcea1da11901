"""The Pillow plugin on a real photo: `im.save("x.sdc", quality=..., task=...)`, then
`Image.open` and `.load()`, all through sdc.api."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sdc  # noqa: F401  (registers the plugin)
from sdc.bitstream import read_sdc
from sdc.errors import UsageError
from sdc.levels import LEVELS


@pytest.fixture(scope="module")
def photo(shared) -> Image.Image:
    """A 128x96 crop of a validation photo (small, so the round trips stay fast)."""
    with Image.open(shared / "data" / "val" / "wiki_006.png") as im:
        return im.convert("RGB").crop((64, 64, 192, 160))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def test_save_open_load_round_trip(photo, tmp_path):
    path = tmp_path / "x.sdc"
    photo.save(path, quality=5, analyzer="offline")
    assert Image.registered_extensions()[".sdc"] == "SDC"
    data = path.read_bytes()
    assert read_sdc(data).header.qualities == {lv: 5 for lv in LEVELS}
    with Image.open(path) as im:
        assert im.format == "SDC" and im.size == photo.size and im.mode == "RGB"
        im.load()
        assert psnr(np.asarray(im), np.asarray(photo)) > 25
        assert np.array_equal(np.asarray(im), sdc.decode_array(data))  # the API's decoder


def test_save_passes_task_and_levels(photo, tmp_path):
    path = tmp_path / "t.sdc"
    photo.save(path, format="SDC", quality=4, task="object detection", levels="L1,L2,L3,other")
    img = sdc.open(path)
    assert img.task == "object detection"
    assert sdc.open(sdc.encode(photo, quality=4, task="object detection")).data == img.data
    # any mode Pillow can convert to RGB
    gray = tmp_path / "g.sdc"
    photo.convert("L").save(gray, quality=2, regions={"width": 128, "height": 96, "objects": []})
    with Image.open(gray) as im:
        arr = np.asarray(im)
        assert arr.shape == (96, 128, 3)
        assert np.abs(arr[..., 0].astype(int) - arr[..., 2]).mean() < 8  # still (nearly) gray


def test_save_errors_leave_no_file(photo, tmp_path):
    path = tmp_path / "bad.sdc"
    with pytest.raises(UsageError, match="out of range"):
        photo.save(path, quality=99)
    assert not path.exists()
