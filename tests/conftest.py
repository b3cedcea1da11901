"""Shared fixtures: real images from ../shared (never copied into the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SDC_SHARED", REPO.parent / "shared"))
SAMPLE = REPO / "samples" / "astronaut.png"


def load_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size:
            im = im.crop((0, 0) + size)
        return np.asarray(im).copy()


@pytest.fixture(scope="session")
def shared() -> Path:
    assert SHARED.is_dir(), f"shared data not found at {SHARED} (set SDC_SHARED)"
    return SHARED


@pytest.fixture(scope="session")
def val_image(shared) -> np.ndarray:
    """A real photo, cropped to an odd size (not a multiple of 16) to exercise padding."""
    return load_rgb(shared / "data" / "val" / "wiki_001.png", (200, 136))


@pytest.fixture(scope="session")
def codec():
    from sdc.models.codec import default_codec

    return default_codec()
