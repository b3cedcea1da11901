"""The learned composer (sdc.compose.learned): the shipped network on real partial
decodes, its weights' checks, the CLI, and its training code end to end on a few
real partial decodes (data, training steps, export; needs the train extra)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPO, SAMPLE, load_rgb, sdc_cli
from sdc.compose import compose
from sdc.compose.learned import MANIFEST, learned_compose, padded
from sdc.errors import BadInputError


def hole_psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64))[where] ** 2
    return float(10 * np.log10(255.0**2 / err.mean()))


def test_keeps_decoded_pixels_and_completes_the_hole(photo_l1):
    truth, decoded, missing = photo_l1
    out = compose(decoded, missing, composer="learned")
    assert out.shape == decoded.shape and out.dtype == np.uint8
    assert np.array_equal(out[~missing], decoded[~missing])
    change = np.abs(out.astype(int) - decoded)[missing].mean()
    assert change > 1.0, "the network left the hyperprior fill as it was"
    # It completes the picture, it does not paint over it: the hole stays close to the truth.
    assert hole_psnr(out, truth, missing) > hole_psnr(decoded, truth, missing) - 1.5


def test_deterministic_and_thread_count_within_one_code_value(photo_l1):
    _, decoded, missing = photo_l1
    one = learned_compose(decoded, missing, threads=1)
    assert np.array_equal(one, learned_compose(decoded, missing, threads=1))
    two = learned_compose(decoded, missing, threads=2)
    assert np.abs(one.astype(int) - two).max() <= 1


def test_any_size_and_noise_from_a_fixed_seed():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    missing = np.zeros((5, 7), bool)
    missing[1:4, 2:6] = True
    out = learned_compose(rgb, missing)
    assert out.shape == rgb.shape and np.array_equal(out[~missing], rgb[~missing])
    x, size = padded(rgb, missing)
    assert x.shape == (1, 5, 16, 16) and size == (5, 7)
    assert np.array_equal(x, padded(rgb, missing)[0])  # the same noise every call
    assert abs(float(x[0, 4].std()) - 1.0) < 0.25


@pytest.mark.parametrize("damage", ["tamper", "no_manifest", "no_onnx"])
def test_broken_weights_are_one_line_bad_input(tmp_path, photo_l1, damage, monkeypatch):
    _, decoded, missing = photo_l1
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in (MANIFEST, "composer.onnx"):
        shutil.copy(REPO / "weights" / name, weights / name)
    if damage == "tamper":
        data = bytearray((weights / "composer.onnx").read_bytes())
        data[len(data) // 2] ^= 1
        (weights / "composer.onnx").write_bytes(bytes(data))
    else:
        (weights / (MANIFEST if damage == "no_manifest" else "composer.onnx")).unlink()
    monkeypatch.setenv("SDC_WEIGHTS", str(weights))  # the codec's weights folder is the composer's too
    with pytest.raises(BadInputError) as e:
        compose(decoded, missing, composer="learned")
    assert "\n" not in str(e.value) and "learned composer" in str(e.value)


def test_cli_decode_with_the_learned_composer(tmp_path):
    src = tmp_path / "a.sdc"
    assert sdc_cli("encode", str(SAMPLE), "-o", str(src), "--quality", "L1=6,other=2").returncode == 0
    for composer in ("none", "learned"):
        result = sdc_cli("decode", str(src), "--levels", "L1", "--composer", composer, "-o", str(tmp_path / f"{composer}.png"))
        assert result.returncode == 0, result.stderr
    plain, learned = load_rgb(tmp_path / "none.png"), load_rgb(tmp_path / "learned.png")
    import sdc
    from sdc.pipeline import decode_sdc, missing_pixel_mask

    result = decode_sdc(src.read_bytes(), levels=("L1",))
    missing = missing_pixel_mask(result.sdc, result.decoded_levels)
    assert 0 < missing.mean() < 1
    assert np.array_equal(plain[~missing], learned[~missing])
    assert not np.array_equal(plain[missing], learned[missing])
    assert np.array_equal(sdc.decode_array(src.read_bytes(), levels="L1", composer="learned"), learned)


def test_training_end_to_end_on_real_partial_decodes(tmp_path, codec, shared):
    import torch
    from safetensors.torch import load_file

    from sdc.training import composer_train
    from sdc.training.composer_data import partial_decodes
    from sdc.training.composer_net import ComposerNet

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("wiki_001.png", "wiki_016.png"):
        sample = partial_decodes(codec, load_rgb(shared / "data" / "val" / name, (160, 112)), rng)
        assert sample["partial"].shape[1:] == (112, 160, 3) and sample["missing_cells"].any()
        np.savez(data / f"{name}.npz", **sample)
    run, out = tmp_path / "run", tmp_path / "weights"
    assert composer_train.main(["--data", str(data), "--val", str(data), "--run", str(run), "--adv", "0.01",
                                "--steps", "3", "--batch", "2", "--crop", "96"]) == 0
    log = json.loads((run / "train.json").read_text())
    assert log["steps"] == 3 and (run / "discriminator.safetensors").exists()
    resumed = tmp_path / "resumed"
    assert composer_train.main(["--data", str(data), "--val", str(data), "--run", str(resumed), "--init", str(run),
                                "--texture", "2", "--steps", "0", "--crop", "96"]) == 0
    resumed_log = json.loads((resumed / "train.json").read_text())
    assert resumed_log["history"][0]["val_l1"] == log["history"][-1]["val_l1"] and resumed_log["total_steps"] == 3
    assert composer_train.main(["--export", str(run), "--out", str(out)]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["steps"] == 3 and manifest["crop"] == 96
    assert f"the hyperprior fill's {log['fill_val_l1']:.2f}" in manifest["validation"]

    net = ComposerNet()
    net.load_state_dict(load_file(str(run / "composer.safetensors")))
    truth = load_rgb(shared / "data" / "val" / "wiki_001.png", (160, 112))
    missing = np.zeros(truth.shape[:2], bool)
    missing[16:80, 32:128] = True
    ours = learned_compose(truth, missing, weights=out)
    x, (h, w) = padded(truth, missing)
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x))[0, :, :h, :w].numpy().transpose(1, 2, 0)
    ref = np.clip(np.rint(ref * 255), 0, 255)
    assert np.abs(ours[missing].astype(int) - ref[missing]).max() <= 1
    assert np.array_equal(ours[~missing], truth[~missing])
