"""Residual blocks in g_a (the analysis transform): added to trained weights they change
nothing at first, they train, and the weights they produce export, load and encode
through the inference codec, whose g_a then matches the training network's."""
from __future__ import annotations

import json

import pytest
import torch

from sdc.models.codec import SDCCodec
from conftest import assert_weights_and_manifest_must_agree, exported_round_trip_psnr, float_net


def test_blocks_added_to_trained_weights_start_as_the_identity_and_receive_gradients(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    plain, grown = float_net(tensors, arch), float_net(tensors, arch, g_a_res=(3, 5))
    assert [k for k, _ in grown.g_a.named_children()][:8] == ["0", "1", "2", "3", "r3", "4", "5", "r5"]
    qmap = torch.full((len(crops), 8, 8), 5)
    with torch.no_grad():
        assert torch.equal(plain.g_a(crops), grown.g_a(crops))
        assert torch.equal(plain(crops, qmap)["x_hat"], grown(crops, qmap)["x_hat"])
    out = grown(crops, qmap)
    out["x_hat"].sub(crops).pow(2).mean().backward()
    for name in ("r3", "r5"):  # the zero convolution is where learning starts
        assert grown.g_a.get_submodule(name).conv_b.weight.grad.abs().max() > 0


def test_blocks_learn_at_the_fast_rate_and_only_known_positions_are_accepted():
    from sdc.training.network import SDCNet
    from sdc.training.optim import parameter_groups

    net = SDCNet(16, 32, num_qualities=2, g_a_res=(5,), bypass=True)
    main, fast, _ = parameter_groups(net)
    names = {id(p): n for n, p in net.named_parameters()}
    blocks = {n for n in names.values() if n.startswith("g_a.r5.")}
    assert len(blocks) == 4 and blocks <= {names[id(p)] for p in fast}
    # The trained layers around it keep the base rate.
    assert {"g_a.4.weight", "g_a.6.weight"} <= {names[id(p)] for p in main}
    with pytest.raises(ValueError, match="g_a residual blocks go after"):
        SDCNet(16, 32, num_qualities=2, g_a_res=(4,))


def test_inference_codec_runs_the_blocks_like_the_training_network(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = dict(manifest["architecture"], g_a_res=[5])
    torch.manual_seed(0)
    grown = float_net(tensors, arch, g_a_res=(5,))
    torch.nn.init.normal_(grown.g_a.get_submodule("r5").conv_b.weight, std=0.02)
    with_blocks = dict(tensors, **{k: v for k, v in grown.state_dict().items() if k.startswith("g_a.r")})
    codec = SDCCodec(tensors=with_blocks, manifest=dict(manifest, architecture=arch))
    with torch.no_grad():
        expected = grown.g_a(crops)
        got = codec.net.g_a(crops.contiguous(memory_format=torch.channels_last))
        plain = float_net(tensors, arch).g_a(crops)
    assert (expected - plain).abs().max() > 1e-2  # the block matters...
    assert torch.allclose(got, expected, atol=1e-3)  # ...and runs the same in the codec
    assert_weights_and_manifest_must_agree(tensors, with_blocks, manifest, arch)


def test_training_grows_blocks_from_weights_and_export_ships_them(tmp_path, shared, tiny_training, one_thread):
    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    shipped_file = str(tiny_training["init"])
    train(base + ["--init", shipped_file, "--g-a-res", "5", "--steps", "1"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["g_a_res"] == [5] and "g_a.r5.conv_b.weight" in ck["model"]
    assert ck["model"]["g_a.r5.conv_b.weight"].abs().max() > 0  # one step moved it off zero
    train(base + ["--steps", "2"])  # resuming keeps the run's blocks without flags
    with pytest.raises(SystemExit, match="g_a residual blocks after"):
        train(base + ["--g-a-res", "none", "--steps", "3"])

    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["g_a_res"] == [5] and manifest["training"]["steps"] == 2
    assert exported_round_trip_psnr(out, shared / "data" / "val" / "wiki_016.png") > 20
    # Starting a network without the block from these weights would drop a trained layer: refused.
    with pytest.raises(SystemExit, match="keep them with --g-a-res"):
        train(base + ["--init", str(out / "sdc.safetensors"), "--run", str(tmp_path / "drop"), "--steps", "1",
                      "--g-a-res", "none"])
