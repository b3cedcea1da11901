"""Training command: quality-ladder changes carry the learned gains over; runs resume safely."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sdc.training.network import LAMBDAS, SDCNet, remap_log_gains
from conftest import load_rgb


def test_remap_reads_each_channels_line_at_the_new_lambdas():
    old = [0.001 * 2**k for k in range(5)]
    new = [0.0003 * 3**k for k in range(5)]
    slope = torch.tensor([0.5, 0.4, 0.6])
    offset = torch.tensor([1.0, -0.2, 0.3])
    line = lambda lams: torch.log(torch.tensor(lams))[:, None] * slope + offset  # noqa: E731
    noisy = line(old) + torch.tensor([[0.01, -0.01, 0.0]]).repeat(5, 1) * torch.tensor([1, -1, 1, -1, 0.0])[:, None]
    assert torch.allclose(remap_log_gains(line(old), old, new), line(new), atol=1e-5)
    assert torch.allclose(remap_log_gains(noisy, old, old), line(old), atol=0.02)  # a least-squares fit
    assert not torch.allclose(remap_log_gains(noisy, old, old), noisy, atol=1e-4)


def _write_weights(folder, net, lambdas):
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "sdc.safetensors"))
    (folder / "manifest.json").write_text(json.dumps({"file": "sdc.safetensors", "architecture": {"lambdas": lambdas}}))
    return str(folder / "sdc.safetensors")


def test_init_from_weights_of_another_ladder_remaps_the_gains(tmp_path):
    from sdc.training.warm_start import init_weights

    src = SDCNet()
    old = [0.0016 * 1.7**k for k in range(len(LAMBDAS))]
    with torch.no_grad():  # gains that follow high-rate theory for the old ladder, plus a per-channel tilt
        src.log_gain.copy_(0.5 * torch.log(torch.tensor(old))[:, None] + torch.linspace(-0.3, 0.3, src.M))
    dst = SDCNet()
    init_weights(dst, _write_weights(tmp_path / "w", src, old))
    expected = 0.5 * torch.log(torch.tensor(LAMBDAS))[:, None] + torch.linspace(-0.3, 0.3, src.M)
    assert torch.allclose(dst.log_gain, expected, atol=1e-4)
    assert torch.equal(dst.g_a[0].weight, src.g_a[0].weight)

    same = SDCNet()  # same ladder: loaded as is
    init_weights(same, _write_weights(tmp_path / "w2", src, list(LAMBDAS)))
    assert torch.equal(same.log_gain, src.log_gain)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, shared):
    from PIL import Image

    folder = tmp_path_factory.mktemp("train_data")
    for i, name in enumerate(["wiki_001.png", "wiki_006.png"]):
        Image.fromarray(load_rgb(shared / "data" / "val" / name, (128, 128))).save(folder / f"{i}.png")
    return folder


def test_training_resumes_and_refuses_a_run_of_another_ladder(tmp_path, tiny_data, one_thread):
    from sdc.training.train import main

    run = tmp_path / "run"
    common = ["--run", str(run), "--train", str(tiny_data), "--val", str(tiny_data), "--crop", "64",
              "--batch", "2", "--threads", "1", "--log-every", "1", "--val-every", "1000", "--no-compile"]
    main(common + ["--steps", "2"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["step"] == 2 and ck["config"]["lambdas"] == pytest.approx(LAMBDAS)
    assert ck["config"]["seed"] == 0  # no --init, no --seed
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["bpp"] > 0 for r in records if "loss" in r)
    assert records[-1]["final"] and set(records[-1]["val"]) == {"q1", "q4", "q8"}

    main(common + ["--steps", "3"])  # resumes at step 2 and does one more
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 3

    ck = torch.load(run / "ckpt.pt", weights_only=True)
    ck["config"]["lambdas"] = [2 * lam for lam in LAMBDAS]
    torch.save(ck, run / "ckpt.pt")
    with pytest.raises(SystemExit, match="other λs"):
        main(common + ["--steps", "4"])


def test_a_continuation_of_shipped_weights_draws_new_crops(tmp_path, tiny_data, one_thread):
    """Each run counts steps from 0: with one fixed seed, every session's continuation of the
    shipped weights would see the same crops. The default seed is the weights' lineage steps,
    and a resumed run keeps the seed it started with."""
    from sdc.training.train import main

    weights = _write_weights(tmp_path / "w", SDCNet(), list(LAMBDAS))
    manifest = tmp_path / "w" / "manifest.json"
    meta = json.loads(manifest.read_text())
    meta["training"] = {"steps": 40, "lineage_steps": 225079}
    manifest.write_text(json.dumps(meta))
    run = tmp_path / "run"
    common = ["--run", str(run), "--train", str(tiny_data), "--val", str(tiny_data), "--crop", "64",
              "--batch", "2", "--threads", "1", "--val-every", "1000", "--no-compile", "--init", weights]
    main(common + ["--steps", "1"])
    assert torch.load(run / "ckpt.pt", weights_only=True)["config"]["seed"] == 225079

    meta["training"]["lineage_steps"] = 7  # the file beside the weights changes (a later export): the run keeps its seed
    manifest.write_text(json.dumps(meta))
    main(common + ["--steps", "2"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["step"] == 2 and ck["config"]["seed"] == 225079

    main(["--run", str(tmp_path / "run2")] + common[2:] + ["--steps", "1", "--seed", "5"])
    assert torch.load(tmp_path / "run2" / "ckpt.pt", weights_only=True)["config"]["seed"] == 5


def test_compile_failure_falls_back_to_eager_training(tmp_path, tiny_data, one_thread, monkeypatch, capsys):
    """--compile on a machine where inductor cannot build (no C++ compiler): one line, then eager steps."""
    from sdc.training.train import main

    calls = []

    def broken_compile(module, **kwargs):
        def run(*args):
            calls.append(len(args))
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    run = tmp_path / "run"
    main(["--run", str(run), "--train", str(tiny_data), "--val", str(tiny_data), "--crop", "64", "--batch", "2",
          "--threads", "1", "--log-every", "1", "--val-every", "1000", "--steps", "3", "--compile"])
    out = capsys.readouterr().out
    assert calls == [2]  # tried once, never again
    assert out.count("torch.compile failed (RuntimeError: InductorError: no working C++ compiler found)") == 1
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)


def test_a_resumed_optimizer_keeps_the_fused_kernel():
    """Optimizer.load_state_dict restores the saved groups' options, so a checkpoint of a
    run from before fused Adam would silently turn it off again without keep_fused."""
    from sdc.training.optim import adam, keep_fused

    w = torch.nn.Parameter(torch.ones(4))
    old = torch.optim.Adam([w], lr=1e-3)  # as runs before fused Adam saved it
    w.grad = torch.ones(4)
    old.step()
    opt = adam([w], 1e-3)
    opt.load_state_dict(old.state_dict())
    assert not opt.param_groups[0]["fused"]
    keep_fused(opt)
    assert opt.param_groups[0]["fused"]
    before = w.detach().clone()
    opt.step()
    assert torch.allclose(w.detach(), before - 1e-3, atol=1e-6)  # Adam's second step on a constant gradient


def _fake_output(qmap_shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, h, w = qmap_shape
    x = torch.rand(b, 3, 16 * h, 16 * w, generator=g)
    out = {"x_hat": torch.rand(b, 3, 16 * h, 16 * w, generator=g),
           "likelihoods": {"y": torch.rand(b, 8, h, w, generator=g).clamp_min(1e-3),
                           "z": torch.rand(b, 5, max(h // 4, 1), max(w // 4, 1), generator=g).clamp_min(1e-3)}}
    return x, out


def test_quality_weights_scale_each_qualitys_distortion_and_bits():
    from sdc.training.objective import rd_loss

    x, out = _fake_output((2, 4, 4))
    qmap = torch.full((2, 4, 4), 2, dtype=torch.long)
    plain, stats = rd_loss(out, x, qmap)
    ones, ones_stats = rd_loss(out, x, qmap, torch.ones(8))
    tripled, _ = rd_loss(out, x, qmap, torch.ones(8).index_fill(0, torch.tensor([2]), 3.0))
    assert torch.allclose(ones, plain) and ones_stats == stats
    assert torch.allclose(tripled, 3 * plain)

    # Mixed map: a weight of 0 on quality 5 drops exactly its pixels' distortion and its
    # positions' y bits; z's bits follow the image's top quality (here 5: dropped too).
    qmap[0, :2] = 5
    only_low = rd_loss(out, x, qmap, torch.ones(8).index_fill(0, torch.tensor([5]), 0.0))[0]
    keep = (qmap != 5).float()
    lam = LAMBDAS[2] * keep.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None]
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    y_bits = (-torch.log2(out["likelihoods"]["y"]).sum(1) * keep).sum()
    z_bits = -torch.log2(out["likelihoods"]["z"][1]).sum()
    expected = (lam * 255.0**2 * (out["x_hat"] - x).pow(2)).mean() + (y_bits + z_bits) / pixels
    assert torch.allclose(only_low, expected, rtol=1e-5)


def test_balanced_weights_even_out_the_qualities_losses():
    from sdc.training.objective import balanced_quality_weights

    lambdas = LAMBDAS[:3]
    val = {"q1": {"bpp": 0.1, "psnr": 24.0}, "q2": {"bpp": 0.3, "psnr": 28.0}, "q3": {"bpp": 0.9, "psnr": 32.0}}
    losses = [val[f"q{q + 1}"]["bpp"] + lam * 255.0**2 * 10 ** (-val[f"q{q + 1}"]["psnr"] / 10)
              for q, lam in enumerate(lambdas)]
    full = balanced_quality_weights(val, lambdas, 1.0)
    assert sum(full) == pytest.approx(3.0)
    assert [w * loss for w, loss in zip(full, losses)] == pytest.approx([full[0] * losses[0]] * 3)
    half = balanced_quality_weights(val, lambdas, 0.5)
    assert full[0] > half[0] > 1.0 > half[2] > full[2]
    assert balanced_quality_weights(val, lambdas, 0.0) == pytest.approx([1.0] * 3)


def test_a_balanced_run_keeps_its_weights_when_resumed(tmp_path, tiny_data, one_thread):
    from sdc.training.train import main

    run = tmp_path / "run"
    common = ["--run", str(run), "--train", str(tiny_data), "--val", str(tiny_data), "--crop", "64",
              "--batch", "2", "--threads", "1", "--val-every", "1000", "--no-compile"]
    main(common + ["--steps", "1"])  # a new run is balanced by default
    config = torch.load(run / "ckpt.pt", weights_only=True)["config"]
    weights = config["quality_weights"]
    assert config["quality_balance"] == 1.0 and len(weights) == len(LAMBDAS)
    assert sum(weights) == pytest.approx(len(LAMBDAS)) and weights[0] > weights[-1]
    main(common + ["--steps", "2"])  # resumed without the flag: the run's weights, not recomputed
    config = torch.load(run / "ckpt.pt", weights_only=True)["config"]
    assert config["quality_weights"] == weights and config["quality_balance"] == 1.0
    with pytest.raises(SystemExit, match="quality-balance 1"):
        main(common + ["--steps", "3", "--quality-balance", "0.5"])
    with pytest.raises(SystemExit, match="expected 0"):
        main(["--run", str(tmp_path / "neg")] + common[2:] + ["--steps", "1", "--quality-balance", "-1"])

    plain = tmp_path / "plain"
    main(["--run", str(plain)] + common[2:] + ["--steps", "1", "--quality-balance", "0"])
    config = torch.load(plain / "ckpt.pt", weights_only=True)["config"]
    assert config["quality_balance"] == 0.0 and config["quality_weights"] is None
