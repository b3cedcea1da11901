"""Widening g_s (N -> N' hidden channels) keeps what a trained network does, the new channels
learn, and the widened weights train, export and decode through the inference codec."""
from __future__ import annotations

import json

import pytest
import torch

from sdc.errors import BadInputError
from sdc.models.codec import SDCCodec
from sdc.training.network import SDCNet
from sdc.training.widen_synthesis import widen_synthesis_state
from conftest import exported_round_trip_psnr, float_net

VAL = ["wiki_001.png", "wiki_016.png"]


def _plain_state(tensors, arch, g_s_res=(), g_s_pointwise=()):
    net = float_net(tensors, arch, g_s_res, g_s_pointwise=g_s_pointwise)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("_cdf")}


def _wide_net(state, arch, width, g_s_res=(), g_s_pointwise=()):
    net = SDCNet(arch["N"], arch["M"], num_qualities=state["log_gain"].shape[0], context_slices=arch["context_slices"],
                 g_s_res=g_s_res, g_s_width=width, g_s_pointwise=g_s_pointwise)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(("_cdf", "_offset", "_cdf_length", "scale_table")) for k in missing)
    return net.eval()


def test_widened_synthesis_reconstructs_the_same_and_its_new_channels_learn(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    narrow = float_net(tensors, arch)
    wide = _wide_net(widen_synthesis_state(_plain_state(tensors, arch), 96), arch, 96)
    assert wide.g_s[0].weight.shape[1] == 96 and wide.g_s[6].weight.shape[0] == 96
    qmap = torch.full((len(crops), 8, 8), 5)
    qmap[0, 2:5, 3:7] = 1
    with torch.no_grad():
        a, b = narrow(crops, qmap), wide(crops, qmap)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
    # The new channels carry activations of the old ones' size, and their way out gets a gradient.
    y_hat = narrow.g_a(crops).detach()
    hidden = wide.g_s[1](wide.g_s[0](y_hat))
    assert hidden[:, 64:].abs().mean() > 0.1 * hidden[:, :64].abs().mean()
    wide(crops, qmap)["x_hat"].sub(crops).pow(2).mean().backward()
    assert wide.g_s[2].weight.grad[64:].abs().max() > 0 and wide.g_s[6].weight.grad[64:].abs().max() > 0


def test_widening_keeps_residual_and_pointwise_blocks_and_refuses_to_narrow(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    blocks, pointwise = (1, 5, 5), (5,)  # two stacked at 5, then a pointwise one
    state = _plain_state(tensors, arch, blocks, pointwise)
    torch.manual_seed(1)
    for name in ("r1", "r5", "r5_2", "p5"):
        state[f"g_s.{name}.conv_b.weight"] = 0.02 * torch.randn_like(state[f"g_s.{name}.conv_b.weight"])
    narrow = SDCNet(arch["N"], arch["M"], num_qualities=state["log_gain"].shape[0],
                    context_slices=arch["context_slices"], g_s_res=blocks, g_s_pointwise=pointwise).eval()
    narrow.load_state_dict(state, strict=False)
    wide = _wide_net(widen_synthesis_state(state, 80), arch, 80, blocks, pointwise)
    assert wide.g_s.p5.conv_a.weight.shape == (80, 80, 1, 1)
    y = narrow.g_a(crops)
    with torch.no_grad():
        assert (narrow.g_s(y) - float_net(tensors, arch).g_s(y)).abs().max() > 1e-2  # the blocks matter
        assert torch.allclose(narrow.g_s(y), wide.g_s(y), atol=1e-5)
    with pytest.raises(ValueError, match="only widen"):
        widen_synthesis_state(state, 64)


def test_training_widens_synthesis_from_weights_and_export_ships_it(tmp_path, shared, tiny_training, one_thread):
    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    shipped_file = str(tiny_training["init"])
    train(base + ["--init", shipped_file, "--g-s-width", "80", "--steps", "1"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["g_s_width"] == 80 and ck["model"]["g_s.2.weight"].shape[:2] == (80, 80)
    train(base + ["--steps", "2"])  # resuming keeps the run's width without flags
    with pytest.raises(SystemExit, match="g_s 80 wide"):
        train(base + ["--g-s-width", "96", "--steps", "3"])

    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["g_s_width"] == 80
    assert exported_round_trip_psnr(out, shared / "data" / "val" / VAL[0]) > 20
    # Weights and manifest must agree on the width.
    from sdc.training.torch_transforms import load_torch_weights as load_weights

    tensors, _ = load_weights(out)
    with pytest.raises(BadInputError, match="do not fit"):
        SDCCodec(tensors=tensors, manifest=dict(manifest, architecture=dict(manifest["architecture"], g_s_width=64)))
    # A narrower g_s would drop trained channels: refused.
    with pytest.raises(SystemExit, match="--g-s-width >= 80"):
        train(base + ["--init", str(out / "sdc.safetensors"), "--run", str(tmp_path / "narrow"), "--g-s-width", "64",
                      "--steps", "1"])
