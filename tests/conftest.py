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


def sdc_cli(*args: str, stdin: str | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: int = 300):
    """`python -m sdc ARGS` in a fresh process, as a shell script runs it (text output)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sdc", *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def coco_photos(folder: Path, n: int) -> list[Path]:
    """The first `n` coco128 photos (by name, of different sizes) copied into `folder`, where a
    batch may write beside them."""
    import shutil

    names = sorted(p.name for p in (COCO / "train2017").glob("*.jpg"))[:n]
    for name in names:
        shutil.copy(COCO / "train2017" / name, folder / name)
    return [folder / name for name in names]


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
def shipped():
    """(tensors, manifest) of the shipped weights, hash-checked."""
    from sdc.training.torch_transforms import load_torch_weights

    return load_torch_weights(REPO / "weights")


@pytest.fixture(scope="session")
def shipped_plain(shipped):
    """The shipped weights without the optional parts that start at zero (patch bypass, g_a
    and g_s blocks), as (tensors, manifest): trained weights that a test can add those parts
    to, whether or not the shipped ones have them."""
    tensors, manifest = shipped
    kept = {k: v for k, v in tensors.items() if ".bypass." not in k and not k.startswith(("g_s.r", "g_s.p", "g_a.r"))}
    return kept, dict(manifest, architecture=dict(manifest["architecture"], bypass=False, g_s_res=[], g_a_res=[],
                                                  g_s_pointwise=[]))


@pytest.fixture(scope="session")
def crops(shared):
    """Two 128x128 val crops as a (2, 3, 128, 128) float batch in [0, 1]."""
    import torch

    rgb = [load_rgb(shared / "data" / "val" / name, (128, 128)) for name in ("wiki_001.png", "wiki_016.png")]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture
def tiny_training(tmp_path, shared):
    """Arguments for `sdc.training.train.main` on two 128x128 val crops (64-pixel crops, batch 2, one
    thread), with --run tmp_path/run, and a copy of the shipped weights to start from."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for i, name in enumerate(("wiki_001.png", "wiki_016.png")):
        Image.fromarray(load_rgb(shared / "data" / "val" / name, (128, 128))).save(data / f"{i}.png")
    init_dir = tmp_path / "init"  # a copy: tests may replace its manifest, as an export over weights/ does
    shutil.copytree(REPO / "weights", init_dir)
    args = ["--run", str(tmp_path / "run"), "--train", str(data), "--val", str(data), "--crop", "64", "--batch", "2",
            "--threads", "1", "--log-every", "1", "--val-every", "1000", "--no-compile"]
    return {"args": args, "data": data, "run": tmp_path / "run", "init": init_dir / "sdc.safetensors"}


def float_net(tensors: dict, arch: dict, g_s_res=(), bypass: bool = False, g_a_res=(), g_s_pointwise=()):
    """The trainable SDCNet (eval mode) holding a weights file's float tensors, grown by
    g_s or g_a residual or pointwise blocks and/or a patch bypass (which start as no-ops)."""
    from sdc.training.network import SDCNet
    from sdc.training.warm_start import trained_tensors

    net = SDCNet(arch["N"], arch["M"], num_qualities=tensors["log_gain"].shape[0], context_slices=arch["context_slices"],
                 g_s_res=g_s_res, bypass=bypass, g_a_res=g_a_res, g_s_pointwise=g_s_pointwise)
    state = trained_tensors(tensors)
    net.load_state_dict(state, strict=False)
    return net.eval()


def exported_round_trip_psnr(weights_dir: Path, image: Path, quality: int = 6) -> float:
    """PSNR of a 128x96 crop of `image` coded and decoded (all background, one quality) by the
    codec in `weights_dir`, e.g. weights a test has just trained and exported."""
    from sdc.levels import LEVELS
    from sdc.models.codec import SDCCodec
    from sdc.geometry import latent_shape

    codec = SDCCodec(weights_dir)
    rgb = load_rgb(image, (128, 96))
    gmap = np.full(latent_shape(*rgb.shape[:2]), LEVELS.index("other"), np.uint8)
    rec = codec.decode(codec.encode(rgb, gmap, {lv: quality for lv in LEVELS}))
    assert rec.shape == rgb.shape
    return float(10 * np.log10(255**2 / np.mean((rec - rgb.astype(float)) ** 2)))


def assert_weights_and_manifest_must_agree(plain: dict, grown: dict, manifest: dict, grown_arch: dict) -> None:
    """The codec refuses weights with parts their manifest does not declare, and a manifest
    declaring parts the weights lack: `grown` holds what `grown_arch` adds to `plain`/`manifest`."""
    from sdc.errors import BadInputError
    from sdc.models.codec import SDCCodec

    with pytest.raises(BadInputError, match="do not fit"):
        SDCCodec(tensors=grown, manifest=manifest)
    with pytest.raises(BadInputError, match="do not fit"):
        SDCCodec(tensors=plain, manifest=dict(manifest, architecture=grown_arch))


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


@pytest.fixture
def spy(monkeypatch):
    """Calls made into sdc.pipeline (by the CLI, the API, Pillow): [("encode"|"decode", kwargs), ...]."""
    from sdc import pipeline

    calls = []
    enc, dec = pipeline.encode_image, pipeline.decode_sdc

    def encode_image(rgb, **kw):
        calls.append(("encode", kw))
        return enc(rgb, **kw)

    def decode_sdc(data, **kw):
        calls.append(("decode", kw))
        return dec(data, **kw)

    monkeypatch.setattr(pipeline, "encode_image", encode_image)
    monkeypatch.setattr(pipeline, "decode_sdc", decode_sdc)
    return calls


# ----------------------------------------------------------------- partial decodes (composers)
LEVEL_QUALITIES = {"L1": 4, "L2": 4, "L3": 4, "other": 4}


def partial_decode(codec, rgb: np.ndarray, group_map: np.ndarray, levels: tuple[str, ...]):
    """(decoded image, missing mask): `rgb` coded with `group_map`, only `levels` kept."""
    from sdc.levels import LEVEL_INDEX
    from sdc.geometry import LATENT_STRIDE

    coded = codec.encode(rgb, group_map, LEVEL_QUALITIES, levels=levels)
    decoded = codec.decode(coded)
    kept = np.isin(group_map, [LEVEL_INDEX[lv] for lv in levels])
    missing = np.repeat(np.repeat(~kept, LATENT_STRIDE, 0), LATENT_STRIDE, 1)[: rgb.shape[0], : rgb.shape[1]]
    return decoded, missing


@pytest.fixture(scope="module")
def photo_l1(codec, shared):
    """A shared photo (317x203 centre crop, not a multiple of 16): only a central L1 box decoded (78 % missing)."""
    from sdc.geometry import latent_shape

    full = load_rgb(shared / "data" / "val" / "wiki_046.png")
    y0, x0 = full.shape[0] // 2 - 100, full.shape[1] // 2 - 150
    truth = np.ascontiguousarray(full[y0:y0 + 203, x0:x0 + 317])
    gmap = np.full(latent_shape(*truth.shape[:2]), 3, np.uint8)
    gmap[3:10, 6:14] = 0
    decoded, missing = partial_decode(codec, truth, gmap, ("L1",))
    return truth, decoded, missing
