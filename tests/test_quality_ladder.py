"""Qualities added on top of a trained ladder: the old gains stay, the new ones start on
each channel's line, and training, resuming and export carry the longer ladder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import load_rgb
from sdc.errors import UsageError
from sdc.levels import LEVELS
from sdc.models.codec import SDCCodec
from sdc.geometry import latent_shape
from sdc.training.network import LAMBDAS, SDCNet, extend_log_gains, lambda_ladder


def test_the_ladder_is_a_prefix_of_itself():
    assert lambda_ladder(8) == LAMBDAS
    assert lambda_ladder(10)[:8] == LAMBDAS
    assert lambda_ladder(10)[9] == pytest.approx(LAMBDAS[7] * 2.4**2)


def test_extending_keeps_the_old_rows_and_follows_the_top_of_each_line():
    old, new = list(lambda_ladder(6)), list(lambda_ladder(8))
    slope, offset = torch.tensor([0.5, 0.45]), torch.tensor([0.2, -0.1])
    line = torch.log(torch.tensor(old, dtype=torch.float64))[:, None] * slope + offset
    bent = line.clone()
    bent[:2] += 0.3  # the bottom of the ladder bends away: only the top 3 rows set the new ones
    out = extend_log_gains(bent.float(), old, new)
    assert out.shape == (8, 2)
    assert torch.equal(out[:6], bent.float())
    top = torch.log(torch.tensor(new[6:], dtype=torch.float64))[:, None] * slope + offset
    assert torch.allclose(out[6:].double(), top, atol=1e-5)


def test_init_from_a_shorter_ladder_adds_qualities(tmp_path):
    from safetensors.torch import save_file

    from sdc.training.warm_start import init_weights

    src = SDCNet()
    with torch.no_grad():
        src.log_gain.copy_(0.5 * torch.log(torch.tensor(LAMBDAS))[:, None] + torch.linspace(-0.3, 0.3, src.M))
    folder = tmp_path / "w"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(folder / "sdc.safetensors"))
    manifest = {"file": "sdc.safetensors", "architecture": {"lambdas": list(LAMBDAS)}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    dst = SDCNet(num_qualities=10)
    init_weights(dst, str(folder / "sdc.safetensors"))
    assert torch.equal(dst.log_gain[:8], src.log_gain)
    expected = 0.5 * torch.log(torch.tensor(lambda_ladder(10)))[:, None] + torch.linspace(-0.3, 0.3, src.M)
    assert torch.allclose(dst.log_gain[8:], expected[8:], atol=1e-4)
    assert torch.equal(dst.g_s[0].weight, src.g_s[0].weight)

    fewer = SDCNet(num_qualities=6)  # dropping the top qualities keeps the others' gains as they are
    init_weights(fewer, str(folder / "sdc.safetensors"))
    assert torch.equal(fewer.log_gain, src.log_gain[:6]) and torch.equal(fewer.log_z_gain, src.log_z_gain[:6])

    manifest["architecture"]["lambdas"] = list(LAMBDAS[:7])  # a manifest that does not describe its file
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="8 gain vectors but its manifest lists 7"):
        init_weights(SDCNet(num_qualities=10), str(folder / "sdc.safetensors"))


def test_training_adds_qualities_resumes_them_and_export_ships_them(tmp_path, shared, tiny_training, one_thread):
    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    shipped = SDCCodec(tiny_training["init"].parent)
    n0 = shipped.num_qualities
    n = n0 + 2  # two qualities on top of the shipped ladder
    train(base + ["--init", str(tiny_training["init"]), "--num-qualities", str(n), "--steps", "1"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["num_qualities"] == n and len(ck["config"]["lambdas"]) == n
    assert ck["model"]["log_gain"].shape[0] == n
    assert torch.allclose(ck["model"]["log_gain"][:n0], shipped_log_gain(tiny_training["init"]), atol=0.01)
    train(base + ["--steps", "2"])  # resuming keeps the run's ladder without flags
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert set(log[-1]["val"]) == {"q1", "q4", "q8", f"q{n}"}
    with pytest.raises(SystemExit, match="other λs"):
        train(base + ["--num-qualities", str(n0), "--steps", "3"])

    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["num_qualities"] == n
    assert manifest["architecture"]["lambdas"] == pytest.approx(lambda_ladder(n), rel=1e-6)
    assert set(manifest["validation"]["results"]) == {f"q{q}" for q in range(1, n + 1)}
    codec = SDCCodec(out)
    assert codec.num_qualities == n
    rgb = load_rgb(shared / "data" / "val" / "wiki_001.png", (128, 96))
    gmap = np.full(latent_shape(*rgb.shape[:2]), LEVELS.index("other"), np.uint8)
    sizes = {}
    for q in (n0, n0 + 1, n0 + 2):
        coded = codec.encode(rgb, gmap, {lv: q for lv in LEVELS})
        rec = codec.decode(coded)
        assert rec.shape == rgb.shape
        sizes[q] = len(coded.hyperprior) + sum(len(b) for b in coded.groups.values())
    assert sizes[n0] < sizes[n0 + 1] < sizes[n0 + 2]
    with pytest.raises(UsageError, match=f"1..{n}"):
        codec.encode(rgb, gmap, {lv: n + 1 for lv in LEVELS})


def shipped_log_gain(path):
    from safetensors.torch import load_file

    return load_file(str(path))["log_gain"]


def test_gains_only_training_leaves_the_lower_qualities_bit_exact(tmp_path, shared, tiny_training, one_thread):
    """--gains-only-from: the new qualities' gains learn, nothing else moves, so the exported
    weights code the old qualities to the very same bytes."""
    from safetensors.torch import load_file

    from sdc.training.export import main as export
    from sdc.training.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    shipped = SDCCodec(tiny_training["init"].parent)
    n0 = shipped.num_qualities
    train(base + ["--init", str(tiny_training["init"]), "--num-qualities", str(n0 + 1),
                  "--gains-only-from", str(n0 + 1), "--steps", "3", "--lr", "1e-2"])
    before = load_file(str(tiny_training["init"]))
    after = torch.load(run / "ckpt.pt", weights_only=True)["model"]
    for name, value in after.items():
        if name in before and name.startswith("log_"):
            assert torch.equal(value[:n0], before[name]), name
        elif name in before and not name.endswith(("_quantized_cdf", "_cdf_length", "_offset", "scale_table")):
            assert torch.equal(value, before[name]), name
    assert not torch.equal(after["log_gain"][n0], shipped_extrapolated_row(before, n0)), "the new gains did not learn"

    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    codec = SDCCodec(out)
    rgb = load_rgb(shared / "data" / "val" / "wiki_001.png", (128, 96))
    gmap = np.full(latent_shape(*rgb.shape[:2]), LEVELS.index("other"), np.uint8)
    gmap[2:5, 1:4] = LEVELS.index("L1")
    for qualities in ({"L1": n0, "L2": 3, "L3": 2, "other": 1}, {lv: 5 for lv in LEVELS}):
        a, b = shipped.encode(rgb, gmap, qualities), codec.encode(rgb, gmap, qualities)
        assert a.hyperprior == b.hyperprior and a.groups == b.groups
    top = codec.encode(rgb, gmap, {lv: n0 + 1 for lv in LEVELS})
    assert codec.decode(top).shape == rgb.shape


def shipped_extrapolated_row(state, n0):
    return extend_log_gains(state["log_gain"], lambda_ladder(n0), lambda_ladder(n0 + 1))[n0]
