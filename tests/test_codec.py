"""The learned codec: group-subset round trips, determinism, weights check, rate ladder."""
from __future__ import annotations

import copy
import itertools
import math
import shutil

import numpy as np
import pytest
import torch

from sdc.errors import BadInputError
from sdc.levels import LEVELS
from sdc.models.codec import CodedImage, SDCCodec
from sdc.geometry import LATENT_STRIDE, latent_shape

from conftest import load_rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / max(mse, 1e-12))


def quadrant_map(height: int, width: int) -> np.ndarray:
    """Every level present: L1 top-left, L2 top-right, L3 bottom-left, other bottom-right."""
    h, w = latent_shape(height, width)
    m = np.full((h, w), 3, np.uint8)
    m[: h // 2, : w // 2] = 0
    m[: h // 2, w // 2 :] = 1
    m[h // 2 :, : w // 2] = 2
    return m


def pixel_mask(gmap: np.ndarray, level: int, height: int, width: int) -> np.ndarray:
    full = np.repeat(np.repeat(gmap == level, LATENT_STRIDE, 0), LATENT_STRIDE, 1)
    return full[:height, :width]


@pytest.fixture(scope="module")
def coded(codec, val_image):
    gmap = quadrant_map(*val_image.shape[:2])
    return codec.encode(val_image, gmap, {"L1": 6, "L2": 5, "L3": 4, "other": 3})


def subset(coded: CodedImage, levels) -> CodedImage:
    c = copy.copy(coded)
    c.groups = {lv: coded.groups[lv] for lv in levels}
    return c


def test_every_group_subset_decodes_its_own_symbols(codec, coded, val_image):
    full = codec.decode_symbols(coded)
    full_rgb = codec.decode(coded)
    assert psnr(full_rgb, val_image) > 22
    for n in range(len(LEVELS) + 1):
        for levels in itertools.combinations(LEVELS, n):
            part = subset(coded, levels)
            symbols = codec.decode_symbols(part)
            assert set(symbols) == set(levels) | {"hyperprior"}
            for lv in levels:
                assert np.array_equal(symbols[lv], full[lv]), lv
            rgb = codec.decode(part)
            assert rgb.shape == val_image.shape and rgb.dtype == np.uint8
            if len(levels) == len(LEVELS):
                assert np.array_equal(rgb, full_rgb)


def test_decoded_group_is_better_than_its_hyperprior_fill(codec, coded, val_image):
    h, w = val_image.shape[:2]
    only_l1 = codec.decode(subset(coded, ("L1",)))
    nothing = codec.decode(subset(coded, ()))
    inside = pixel_mask(coded.group_map, 0, h, w)
    assert psnr(only_l1[inside], val_image[inside]) > psnr(nothing[inside], val_image[inside]) + 3


def test_symbols_identical_across_threads_runtimes_and_perturbed_float_path(codec, coded, val_image):
    """One file decodes to the same symbols, and to pixels within one code value, on ONNX
    Runtime with 1 or 2 threads, on torch, and on torch with every float weight perturbed by
    a relative 1e-6 (a decoder whose float arithmetic differs slightly: other BLAS, other CPU)."""
    assert codec.runtime == "onnx"
    torch_codec = SDCCodec(runtime="torch")
    perturbed = SDCCodec(runtime="torch")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in perturbed.net.parameters():
            p.mul_(1 + 1e-6 * torch.randn(p.shape, generator=gen))
    perturbed._inv_gain = codec._inv_gain * (1 + 1e-6 * np.random.default_rng(0).standard_normal(codec._inv_gain.shape))
    one = SDCCodec(threads=1)
    reference = one.decode_symbols(coded), one.decode(coded)
    for other in (SDCCodec(threads=2), torch_codec, perturbed):
        symbols, rgb = other.decode_symbols(coded), other.decode(coded)
        assert symbols.keys() == reference[0].keys()
        for k in symbols:
            assert np.array_equal(symbols[k], reference[0][k]), k
        assert np.abs(rgb.astype(int) - reference[1].astype(int)).max() <= 1


def test_files_of_either_runtime_decode_alike_with_the_other(codec, val_image):
    """A file encoded on ONNX Runtime decodes on torch to the same symbols and to pixels within one
    code value, and a file encoded on torch likewise on ONNX Runtime; the two encoders' files
    differ at most where g_a's float outputs round differently (a few symbols)."""
    torch_codec = SDCCodec(runtime="torch")
    gmap = np.full(latent_shape(*val_image.shape[:2]), LEVELS.index("other"), np.uint8)
    gmap[2:10, 3:12] = 0
    qualities = {"L1": 6, "L2": 5, "L3": 4, "other": 2}
    files = {name: c.encode(val_image, gmap, qualities) for name, c in (("onnx", codec), ("torch", torch_codec))}
    for name, coded in files.items():
        onnx_symbols, torch_symbols = codec.decode_symbols(coded), torch_codec.decode_symbols(coded)
        assert all(np.array_equal(onnx_symbols[k], torch_symbols[k]) for k in onnx_symbols), name
        onnx_rgb, torch_rgb = codec.decode(coded), torch_codec.decode(coded)
        assert np.abs(onnx_rgb.astype(int) - torch_rgb.astype(int)).max() <= 1, name
        assert psnr(onnx_rgb, val_image) > 25, name
    sizes = [files[n].payload_bytes for n in files]
    assert abs(sizes[0] - sizes[1]) <= 0.002 * max(sizes)


def test_repeated_encodes_are_identical(codec, val_image, coded):
    again = codec.encode(val_image, coded.group_map, coded.qualities)
    assert again.hyperprior == coded.hyperprior and again.groups == coded.groups


def test_rate_grows_and_distortion_falls_with_quality(codec, val_image):
    gmap = np.full(latent_shape(*val_image.shape[:2]), 3, np.uint8)
    sizes, psnrs = [], []
    for q in range(1, codec.num_qualities + 1):
        c = codec.encode(val_image, gmap, {lv: q for lv in LEVELS})
        sizes.append(len(c.hyperprior) + sum(map(len, c.groups.values())))
        psnrs.append(psnr(codec.decode(c), val_image))
    assert all(a < b for a, b in zip(sizes, sizes[1:])), sizes
    assert psnrs[-1] > psnrs[0] + 1, psnrs


def test_per_group_quality_in_one_file(codec, val_image):
    h, w = val_image.shape[:2]
    gmap = quadrant_map(h, w)
    low = codec.encode(val_image, gmap, {lv: 1 for lv in LEVELS})
    mixed = codec.encode(val_image, gmap, {"L1": 8, "L2": 1, "L3": 1, "other": 1})
    rec_low, rec_mixed = codec.decode(low), codec.decode(mixed)
    l1 = pixel_mask(gmap, 0, h, w)
    assert len(mixed.groups["L1"]) > 1.5 * len(low.groups["L1"])
    assert psnr(rec_mixed[l1], val_image[l1]) > psnr(rec_low[l1], val_image[l1]) + 1


def test_high_quality_neighbour_does_not_cost_the_low_quality_group(codec, shared):
    """L1 at q8 next to L2 at q1: L2 costs and looks about the same as when all is q1.

    z takes the highest quality present, so L2's symbols do change a little (about
    ±0.5 dB on a single small group); the claim is about the average over real photos."""
    l2_bytes_low = l2_bytes_mixed = 0
    deltas = []
    for path in sorted((shared / "data" / "val").glob("*.png"))[1:5]:
        img = load_rgb(path, (512, 384))
        h, w = img.shape[:2]
        gmap = quadrant_map(h, w)
        low = codec.encode(img, gmap, {lv: 1 for lv in LEVELS})
        mixed = codec.encode(img, gmap, {"L1": 8, "L2": 1, "L3": 1, "other": 1})
        l2 = pixel_mask(gmap, 1, h, w)
        deltas.append(psnr(codec.decode(mixed)[l2], img[l2]) - psnr(codec.decode(low)[l2], img[l2]))
        l2_bytes_low += len(low.groups["L2"])
        l2_bytes_mixed += len(mixed.groups["L2"])
    assert l2_bytes_mixed < 1.1 * l2_bytes_low, (l2_bytes_mixed, l2_bytes_low)
    assert np.mean(deltas) > -0.3, deltas


def test_weights_hash_is_checked(tmp_path):
    """Every weights file a runtime reads is checked against the manifest: the runtime's
    tables on the default (ONNX) runtime, the safetensors on torch."""
    from sdc.models.weights import default_weights_dir

    for name, runtime, message in (("runtime.safetensors", "onnx", "runtime tables .* does not match"),
                                   ("sdc.safetensors", "torch", "do not match their manifest")):
        weights = tmp_path / runtime
        shutil.copytree(default_weights_dir(), weights)
        path = weights / name
        data = bytearray(path.read_bytes())
        data[-100] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(BadInputError, match=message):
            SDCCodec(weights, runtime=runtime)


def test_codec_id_comes_from_the_weights_hash(codec):
    assert codec.codec_id == bytes.fromhex(codec.manifest["sha256"][:16])


def test_wrong_map_shape_is_a_clear_error(codec, val_image):
    with pytest.raises(BadInputError, match="region map"):
        codec.encode(val_image, np.zeros((3, 3), np.uint8), {lv: 4 for lv in LEVELS})
