"""Widening y (M -> M' channels) keeps what a trained network does, so it is a warm start."""
from __future__ import annotations

import json

import pytest
import torch

from sdc.training.layers import has_bypass
from sdc.training.network import SDCNet
from sdc.training.widen import widen_state
from conftest import REPO, load_rgb

VAL = ["wiki_001.png", "wiki_016.png"]


@pytest.fixture(scope="module")
def shipped_state():
    from safetensors.torch import load_file

    from sdc.training.warm_start import trained_tensors

    state = load_file(str(REPO / "weights" / "sdc.safetensors"))
    return trained_tensors(state)


def _net(state, M, slices):
    net = SDCNet(64, M, num_qualities=state["log_gain"].shape[0], context_slices=slices, bypass=has_bypass(state))
    net.load_state_dict(state, strict=False)
    return net.eval()


@torch.no_grad()
def test_widened_network_reconstructs_the_same_and_old_channels_cost_the_same(shipped_state, crops):
    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())["architecture"]
    M, slices = manifest["M"], manifest["context_slices"]
    C = M // slices
    wide_M = M + 2 * C
    narrow = _net(shipped_state, M, slices)
    wide = _net(widen_state(shipped_state, 64, M, wide_M, slices, slices + 2, crops), wide_M, slices + 2)
    for q in (0, 4, 7):
        qmap = torch.full((len(crops), 8, 8), q)
        qmap[0, 2:5, 3:7] = 7 - q  # per-position quality, as in per-group coding
        a, b = narrow(crops, qmap), wide(crops, qmap)
        assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
        assert torch.allclose(a["likelihoods"]["y"], b["likelihoods"]["y"][:, :M], rtol=1e-4, atol=1e-6)
        assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])
    # The new channels are live: non-zero at the top quality (so g_s can learn them), cheap at the bottom.
    y_new = wide.g_a(crops)[:, M:] * wide.log_gain[7, M:].exp()[:, None, None]
    # 2.6% with weights 03dc8aa2 widened to 192, 0.9% with b3fcf1cd widened to 240; 0 if they started dead
    assert (y_new.round() != 0).float().mean() > 0.005
    bits = lambda out: -torch.log2(out["likelihoods"]["y"]).sum((0, 2, 3))  # noqa: E731
    low = bits(wide(crops, torch.zeros(len(crops), 8, 8, dtype=torch.long)))
    assert low[M:].sum() < 0.05 * low[:M].sum()


def test_widening_refuses_what_it_cannot_preserve(shipped_state):
    with pytest.raises(ValueError, match="only widen"):
        widen_state(shipped_state, 64, 96, 96, 4, 4)
    with pytest.raises(ValueError, match="slices"):
        widen_state(shipped_state, 64, 96, 128, 4, 4)  # 32-channel slices would regroup the old channels


def test_training_widens_from_narrower_weights_and_refuses_to_resume_at_another_width(tmp_path, shared, one_thread):
    from PIL import Image

    from sdc.training.train import main

    data = tmp_path / "data"
    data.mkdir()
    for i, name in enumerate(VAL):
        Image.fromarray(load_rgb(shared / "data" / "val" / name, (128, 128))).save(data / f"{i}.png")
    arch = json.loads((REPO / "weights" / "manifest.json").read_text())["architecture"]
    M, slices = arch["M"], arch["context_slices"]
    wide, wide_slices = M + 2 * (M // slices), slices + 2
    run = tmp_path / "run"
    base = ["--run", str(run), "--train", str(data), "--val", str(data), "--crop", "64", "--batch", "2",
            "--threads", "1", "--log-every", "1", "--val-every", "1000", "--no-compile"]
    shipped = str(REPO / "weights" / "sdc.safetensors")
    with pytest.raises(SystemExit, match="M >= "):  # narrowing is refused with a message, not a traceback
        main(base + ["--M", str(M // 2), "--init", shipped, "--run", str(tmp_path / "narrow"), "--steps", "1"])
    with pytest.raises(SystemExit, match="cannot widen"):  # new channels must form whole context slices
        main(base + ["--M", str(2 * M), "--context-slices", str(slices), "--init", shipped,
                     "--run", str(tmp_path / "odd"), "--steps", "1"])
    with pytest.raises(SystemExit, match="do not split"):
        main(base + ["--M", str(M + 1), "--run", str(tmp_path / "bad"), "--steps", "1"])
    main(base + ["--M", str(wide), "--context-slices", str(wide_slices), "--init", shipped, "--steps", "1"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["model"]["g_a.6.weight"].shape[0] == wide and ck["config"]["M"] == wide
    main(base + ["--steps", "2"])  # the run's width and slices are the defaults when resuming
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 2
    other = (wide // wide_slices - 1) * wide_slices  # another width that the run's slices split
    with pytest.raises(SystemExit, match=f"M={wide}"):
        main(base + ["--M", str(other), "--context-slices", str(wide_slices), "--steps", "3"])
