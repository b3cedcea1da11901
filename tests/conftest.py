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
COCO = SHARED / "data" / "coco128"
YOLO = SHARED / "models" / "yolo-fastest-1.1_coco"
DARKNET = {"detector_cfg": str(YOLO / "yolo-fastest-1.1.cfg"),
           "detector_weights": str(YOLO / "yolo-fastest-1.1.weights"),
           "detector_names": str(YOLO / "coco.names")}
# Environment that steers analysis; tests start without any of it.
ANALYSIS_ENV = ("SDC_CONFIG", "SDC_ANALYZER", "SDC_LMM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                "SDC_LMM_API_KEY", "SDC_LMM_MODEL", "SDC_VLM_MODEL", "SDC_GROUNDING_MODEL",
                "SDC_SAM_CHECKPOINT", "SDC_ALLOW_DOWNLOAD")


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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for the module: tiny models and fuzz inputs are all overhead, and a
    second thread on a busy 2-core machine only spins (4 s vs 0.1 s a call seen here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def isolated_analysis(tmp_path, monkeypatch):
    """No user config, an empty offline Hugging Face cache, a private task cache, no LMM endpoint."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for v in ANALYSIS_ENV:
        monkeypatch.delenv(v, raising=False)
