"""The linear 16x16 patch bypass beside g_a and g_s: added to trained weights it changes
nothing at first and learns; the inference codec runs it (tiled too) like the training
network; widening keeps it; training, resuming and export carry it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sdc.errors import BadInputError
from sdc.models.codec import SDCCodec
from conftest import exported_round_trip_psnr, float_net


def _with_random_bypass(tensors, arch, seed=0):
    """A float net with a non-zero bypass, and the weights file tensors that hold it."""
    torch.manual_seed(seed)
    net = float_net(tensors, arch, bypass=True)
    for name in ("g_a", "g_s"):
        torch.nn.init.normal_(getattr(net, name).bypass.weight, std=0.01)
    return net, dict(tensors, **{k: v for k, v in net.state_dict().items() if ".bypass." in k})


def test_bypass_added_to_trained_weights_changes_nothing_and_both_halves_learn(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    plain, grown = float_net(tensors, arch), float_net(tensors, arch, bypass=True)
    qmap = torch.full((len(crops), 8, 8), 6)
    with torch.no_grad():
        assert torch.equal(plain(crops, qmap)["x_hat"], grown(crops, qmap)["x_hat"])
    out = grown(crops, qmap)
    out["x_hat"].sub(crops).pow(2).mean().backward()
    # g_s's half learns from the residual; g_a's from the main synthesis path (its
    # partner is still zero), so neither waits for the other.
    assert grown.g_s.bypass.weight.grad.abs().max() > 0
    assert grown.g_a.bypass.weight.grad.abs().max() > 0


def test_inference_codec_runs_the_bypass_like_the_training_network_also_tiled(shipped_plain, crops, one_thread):
    tensors, manifest = shipped_plain
    arch = dict(manifest["architecture"], bypass=True)
    net, with_bypass = _with_random_bypass(tensors, arch)
    codec = SDCCodec(tensors=with_bypass, manifest=dict(manifest, architecture=arch))
    with torch.no_grad():
        y, got_y = net.g_a(crops), codec.net.g_a(crops.contiguous(memory_format=torch.channels_last))
        expected, got = net.g_s(y), codec.net.g_s(y.contiguous(memory_format=torch.channels_last))
        plain = float_net(tensors, arch).g_s(y)
    assert (expected - plain).abs().max() > 1e-2  # the bypass matters...
    assert torch.allclose(got_y, y, atol=1e-4) and torch.allclose(got, expected, atol=1e-4)  # ...and runs the same
    # It sees only its own latent cell, so tiles with the usual margin give the untiled result.
    x = crops[:1].repeat(1, 1, 2, 3).numpy()  # 256x384: an 16x24 latent, tiled below with 8-cell tiles
    whole_y = codec._analysis(x, tile=10**6)
    assert np.allclose(codec._analysis(x, tile=8), whole_y, atol=1e-4)
    whole = codec._synthesis(whole_y[0], 256, 384, tile=10**6)
    assert np.abs(codec._synthesis(whole_y[0], 256, 384, tile=8).astype(int) - whole.astype(int)).max() <= 1
    # Bypass and manifest must agree, both ways.
    with pytest.raises(BadInputError, match="do not fit"):
        SDCCodec(tensors=with_bypass, manifest=manifest)
    with pytest.raises(BadInputError, match="do not fit"):
        SDCCodec(tensors=tensors, manifest=dict(manifest, architecture=arch))


def test_widening_keeps_the_bypass_and_leaves_new_channels_out_of_it(shipped_plain, crops):
    from sdc.training.widen import widen_state

    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    M, slices = arch["M"], arch["context_slices"]
    net, _ = _with_random_bypass(tensors, arch)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("_cdf")}
    wide = widen_state(state, arch["N"], M, M + 2 * (M // slices), slices, slices + 2, crops)
    for key in ("g_a.bypass.weight", "g_s.bypass.weight"):
        assert torch.equal(wide[key][:M], state[key]) and not wide[key][M:].any()
    assert torch.equal(wide["g_s.bypass.bias"], state["g_s.bypass.bias"])


def test_training_adds_the_bypass_resumes_it_and_export_ships_it(tmp_path, shared, tiny_training, one_thread):
    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    train(base + ["--init", str(tiny_training["init"]), "--bypass", "--steps", "2"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["bypass"] is True and ck["model"]["g_s.bypass.weight"].any()  # it trained
    assert len(ck["opt"]["param_groups"]) == 2  # bypass and context share the faster learning rate
    train(base + ["--steps", "3"])  # resuming keeps the bypass without flags
    with pytest.raises(SystemExit, match="has a patch bypass"):
        train(base + ["--no-bypass", "--steps", "4"])

    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["bypass"] is True and manifest["training"]["steps"] == 3
    assert exported_round_trip_psnr(out, shared / "data" / "val" / "wiki_001.png") > 20
    # Starting a network without the bypass from these weights would drop trained layers: refused.
    with pytest.raises(SystemExit, match="keep it with --bypass"):
        train(base + ["--init", str(out / "sdc.safetensors"), "--no-bypass", "--run", str(tmp_path / "drop"),
                      "--steps", "1"])
