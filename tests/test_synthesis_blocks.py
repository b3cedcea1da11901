"""Residual blocks in g_s (3x3, and pointwise 1x1 ones): added to trained weights they change
nothing at first, they train, and the weights they produce export, load and decode through the
inference codec."""
from __future__ import annotations

import json

import pytest
import torch

from sdc.models.codec import SDCCodec
from sdc.training.layers import block_names
from conftest import assert_weights_and_manifest_must_agree, exported_round_trip_psnr, float_net

VAL = ["wiki_001.png", "wiki_016.png"]


def test_blocks_added_to_trained_weights_start_as_the_identity_and_receive_gradients(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    plain, grown = float_net(tensors, arch, ()), float_net(tensors, arch, (1, 3))
    qmap = torch.full((len(crops), 8, 8), 6)
    with torch.no_grad():
        assert torch.equal(plain(crops, qmap)["x_hat"], grown(crops, qmap)["x_hat"])
    out = grown(crops, qmap)
    out["x_hat"].sub(crops).pow(2).mean().backward()
    for name in ("r1", "r3"):  # the zero convolution is where learning starts
        assert grown.g_s.get_submodule(name).conv_b.weight.grad.abs().max() > 0


def test_blocks_learn_at_the_fast_rate_of_parts_that_start_at_zero():
    from sdc.training.network import SDCNet
    from sdc.training.optim import parameter_groups

    net = SDCNet(16, 32, num_qualities=2, g_s_res=(1, 3), bypass=True)
    main, fast, _ = parameter_groups(net)
    names = {id(p): n for n, p in net.named_parameters()}
    fast_names = {names[id(p)] for p in fast}
    blocks = {n for n in names.values() if n.startswith(("g_s.r1.", "g_s.r3."))}
    assert len(blocks) == 8 and blocks <= fast_names
    # The trained layers around them keep the base rate.
    assert {"g_s.0.weight", "g_s.2.weight", "g_a.0.weight"} <= {names[id(p)] for p in main}


def test_a_repeated_position_stacks_a_block_that_starts_as_the_identity(shipped_plain, crops):
    from sdc.training.train import parse_positions

    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    assert parse_positions("3,1,3") == (1, 3, 3)
    torch.manual_seed(0)
    one = float_net(tensors, arch, (1, 3))
    for name in ("r1", "r3"):  # as if trained
        torch.nn.init.normal_(one.g_s.get_submodule(name).conv_b.weight, std=0.02)
    two = float_net(dict(tensors, **one.state_dict()), arch, (1, 3, 3))
    names = [name for name, _ in two.g_s.named_children()]
    assert names.index("r3") + 1 == names.index("r3_2") < names.index("4")  # right after the first
    qmap = torch.full((len(crops), 8, 8), 6)
    with torch.no_grad():
        assert torch.equal(one(crops, qmap)["x_hat"], two(crops, qmap)["x_hat"])
    two(crops, qmap)["x_hat"].sub(crops).pow(2).mean().backward()
    assert two.g_s.r3_2.conv_b.weight.grad.abs().max() > 0


def test_stacked_blocks_run_in_the_codec_and_are_counted_against_the_manifest(shipped_plain, crops):
    from sdc.training.layers import undeclared_blocks

    tensors, manifest = shipped_plain
    one_arch, two_arch = dict(manifest["architecture"], g_s_res=[1, 3]), dict(manifest["architecture"], g_s_res=[1, 3, 3])
    torch.manual_seed(0)
    grown = float_net(tensors, two_arch, (1, 3, 3))
    for name in ("r1", "r3", "r3_2"):
        torch.nn.init.normal_(grown.g_s.get_submodule(name).conv_b.weight, std=0.02)
    blocks = {k: v for k, v in grown.state_dict().items() if k.startswith("g_s.r")}
    one_block = dict(tensors, **{k: v for k, v in blocks.items() if not k.startswith("g_s.r3_2.")})
    two_blocks = dict(tensors, **blocks)
    assert undeclared_blocks(two_blocks, (), (1, 3)) == [("g_s_res", [3])] and not undeclared_blocks(two_blocks, (), (1, 3, 3))
    codec = SDCCodec(tensors=two_blocks, manifest=dict(manifest, architecture=two_arch))
    y = grown.g_a(crops)
    with torch.no_grad():
        expected, got = grown.g_s(y), codec.net.g_s(y.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-4)
    assert_weights_and_manifest_must_agree(one_block, two_blocks, dict(manifest, architecture=one_arch), two_arch)


def test_widening_keeps_the_blocks(shipped_plain, crops):
    from sdc.training.widen import widen_state

    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    M, slices = arch["M"], arch["context_slices"]
    state = {k: v for k, v in float_net(tensors, arch, (3,)).state_dict().items() if not k.endswith("_cdf")}
    state["g_s.r3.conv_b.weight"] = torch.randn_like(state["g_s.r3.conv_b.weight"])
    wide = widen_state(state, arch["N"], M, M + 2 * (M // slices), slices, slices + 2, crops)
    assert torch.equal(wide["g_s.r3.conv_b.weight"], state["g_s.r3.conv_b.weight"])


def test_inference_codec_runs_the_blocks_like_the_training_network(shipped_plain, crops):
    tensors, manifest = shipped_plain
    arch = dict(manifest["architecture"], g_s_res=[1, 3])
    torch.manual_seed(0)
    grown = float_net(tensors, arch, (1, 3))
    for name in ("r1", "r3"):
        torch.nn.init.normal_(grown.g_s.get_submodule(name).conv_b.weight, std=0.02)
    with_blocks = dict(tensors, **{k: v for k, v in grown.state_dict().items() if k.startswith("g_s.r")})
    codec = SDCCodec(tensors=with_blocks, manifest=dict(manifest, architecture=arch))
    y = grown.g_a(crops)
    with torch.no_grad():
        expected, got = grown.g_s(y), codec.net.g_s(y.contiguous(memory_format=torch.channels_last))
        plain = float_net(tensors, arch, ()).g_s(y)
    assert (expected - plain).abs().max() > 1e-2  # the blocks matter...
    assert torch.allclose(got, expected, atol=1e-4)  # ...and run the same in the codec
    assert_weights_and_manifest_must_agree(tensors, with_blocks, manifest, arch)


def test_training_grows_blocks_from_weights_and_export_ships_them(tmp_path, shared, tiny_training, one_thread):
    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    init_dir = tiny_training["init"].parent
    shipped_file = str(tiny_training["init"])
    before = json.loads((init_dir / "manifest.json").read_text())["training"]
    with pytest.raises(SystemExit, match=r"not \[2\]"):
        train(base + ["--init", shipped_file, "--g-s-res", "2", "--run", str(tmp_path / "bad"), "--steps", "1"])
    # One block more at 3 than the shipped weights have (whatever they have), stacked on theirs.
    grown = sorted(json.loads((init_dir / "manifest.json").read_text())["architecture"]["g_s_res"] + [3])
    new_block = "g_s." + [name for pos, name in block_names(grown) if pos == 3][-1]  # g_s.r3_3 for 1,3,3,3
    train(base + ["--init", shipped_file, "--g-s-res", ",".join(map(str, grown)), "--steps", "1"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["g_s_res"] == grown and f"{new_block}.conv_b.weight" in ck["model"]
    train(base + ["--steps", "2"])  # resuming keeps the run's blocks without flags
    with pytest.raises(SystemExit, match="residual blocks after"):
        train(base + ["--g-s-res", "none", "--steps", "3"])

    replaced = json.loads((init_dir / "manifest.json").read_text())
    replaced["training"]["lineage_steps"] += 10_000
    (init_dir / "manifest.json").write_text(json.dumps(replaced))
    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["g_s_res"] == grown and manifest["training"]["steps"] == 2
    # The lineage counts the init weights as they were when the run started.
    assert manifest["training"]["lineage_steps"] == before["lineage_steps"] + 2
    assert exported_round_trip_psnr(out, shared / "data" / "val" / VAL[0]) > 20
    # Starting a network without blocks from these weights would drop trained layers: refused.
    with pytest.raises(SystemExit, match="keep them"):
        train(base + ["--init", str(out / "sdc.safetensors"), "--g-s-res", "none", "--run", str(tmp_path / "drop"),
                      "--steps", "1"])


def _trained_pointwise(tensors, arch, crops, g_s_res=(3,)):
    """A float net with residual blocks at `g_s_res` and a pointwise block at 5, all as if trained."""
    torch.manual_seed(0)
    net = float_net(tensors, arch, g_s_res, g_s_pointwise=(5,))
    for name, block in net.g_s.named_children():
        if name.startswith(("r", "p")):
            torch.nn.init.normal_(block.conv_b.weight, std=0.02)
    return net


def test_a_pointwise_block_is_1x1_starts_as_the_identity_and_learns_fast(shipped_plain, crops):
    from sdc.training.optim import parameter_groups

    tensors, manifest = shipped_plain
    arch = manifest["architecture"]
    plain, grown = float_net(tensors, arch, (3,)), float_net(tensors, arch, (3,), g_s_pointwise=(5, 3))
    names = [name for name, _ in grown.g_s.named_children()]
    # After the residual block at the same position, so weights with only that block keep their order.
    assert names.index("r3") < names.index("p3") < names.index("4") < names.index("5") < names.index("p5") < names.index("6")
    assert grown.g_s.p5.conv_a.weight.shape[-2:] == (1, 1) and grown.g_s.r3.conv_a.weight.shape[-2:] == (3, 3)
    qmap = torch.full((len(crops), 8, 8), 6)
    with torch.no_grad():
        assert torch.equal(plain(crops, qmap)["x_hat"], grown(crops, qmap)["x_hat"])
    grown(crops, qmap)["x_hat"].sub(crops).pow(2).mean().backward()
    assert grown.g_s.p5.conv_b.weight.grad.abs().max() > 0
    _, fast, _ = parameter_groups(grown)
    assert {id(p) for p in grown.g_s.p5.parameters()} <= {id(p) for p in fast}


def test_pointwise_blocks_run_in_the_codec_reach_nothing_and_must_be_declared(shipped_plain, crops):
    from sdc.models.architecture import Architecture
    from sdc.models.tiling import tile_margin
    from sdc.training.layers import undeclared_blocks

    tensors, manifest = shipped_plain
    plain_arch = dict(manifest["architecture"], g_s_res=[3])
    arch = dict(plain_arch, g_s_pointwise=[5])
    grown = _trained_pointwise(tensors, arch, crops)
    blocks = {k: v for k, v in grown.state_dict().items() if k.startswith(("g_s.r", "g_s.p"))}
    with_residual = dict(tensors, **{k: v for k, v in blocks.items() if k.startswith("g_s.r")})
    with_both = dict(tensors, **blocks)
    assert undeclared_blocks(with_both, (), (3,)) == [("g_s_pointwise", [5])]
    assert not undeclared_blocks(with_both, (), (3,), (5,))
    codec = SDCCodec(tensors=with_both, manifest=dict(manifest, architecture=arch))
    y = grown.g_a(crops)
    with torch.no_grad():
        expected, got = grown.g_s(y), codec.net.g_s(y.contiguous(memory_format=torch.channels_last))
        without = float_net(with_residual, plain_arch, (3,)).g_s(y)
    assert (expected - without).abs().max() > 1e-2  # the pointwise block matters...
    assert torch.allclose(got, expected, atol=1e-4)  # ...and runs the same in the codec
    # A 1x1 block sees its own pixel only: the tile context stays what the 3x3 blocks need.
    assert codec.tile_margin == tile_margin(Architecture(g_s_res=(3,)).reach_px)
    assert_weights_and_manifest_must_agree(with_residual, with_both, dict(manifest, architecture=plain_arch), arch)


def test_training_adds_a_pointwise_block_and_export_declares_it(tmp_path, shared, tiny_training, one_thread):
    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    shipped_file = str(tiny_training["init"])
    train(base + ["--init", shipped_file, "--g-s-pointwise", "5", "--steps", "1"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["g_s_pointwise"] == [5] and ck["model"]["g_s.p5.conv_a.weight"].shape[-2:] == (1, 1)
    with pytest.raises(SystemExit, match="pointwise blocks after"):
        train(base + ["--g-s-pointwise", "none", "--steps", "2"])
    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    assert json.loads((out / "manifest.json").read_text())["architecture"]["g_s_pointwise"] == [5]
    assert exported_round_trip_psnr(out, shared / "data" / "val" / VAL[0]) > 20
    with pytest.raises(SystemExit, match="--g-s-pointwise"):  # starting without it would drop trained layers
        train(base + ["--init", str(out / "sdc.safetensors"), "--run", str(tmp_path / "drop"), "--g-s-pointwise",
                      "none", "--steps", "1"])
