"""Checkerboard context inside groups: the integer network matches the float one, the
coder and the float model agree on which neighbours count, groups stay independent,
decoding is bit-identical on any thread count, and training and export carry it."""
from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch

from conftest import load_rgb
from sdc.errors import BadInputError
from sdc.levels import LEVELS
from sdc.models.channel_context import ChannelContext
from sdc.models.checkerboard import (FACTOR_MAX, FACTOR_MIN, INDEX_SCALE, IntegerSpatialContext, SpatialContext,
                                     anchor_mask, cross_symbols)
from sdc.models.codec import SDCCodec
from sdc.models.integer_hyper import ACT_BITS
from sdc.models.network import latent_shape
from sdc.models.weights import load_weights

HIDDEN = 24


def random_spatial(M: int, seed: int = 0) -> SpatialContext:
    """A checkerboard context whose every layer is non-zero (a fresh one changes nothing)."""
    ctx = SpatialContext(M, HIDDEN)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ctx.net[2].weight.copy_(0.05 * torch.randn(ctx.net[2].weight.shape, generator=gen))
        ctx.net[2].bias.copy_(0.05 * torch.randn(ctx.net[2].bias.shape, generator=gen))
    return ctx


def shipped_with_spatial(spatial: SpatialContext | None) -> SDCCodec:
    """The shipped weights with their checkerboard context replaced (None: taken out)."""
    tensors, manifest = load_weights()
    tensors = {k: v for k, v in tensors.items() if not k.startswith(("int_spatial.", "context.spatial."))}
    manifest = copy.deepcopy(manifest)
    manifest["architecture"]["spatial_hidden"] = spatial.hidden if spatial else 0
    if spatial:
        tensors.update(IntegerSpatialContext.quantize(spatial))
        tensors.update({f"context.spatial.{k}": v for k, v in spatial.state_dict().items()})
    return SDCCodec(tensors=tensors, manifest=manifest)


@pytest.fixture(scope="module")
def spatial():
    return random_spatial(load_weights()[1]["architecture"]["M"])


@pytest.fixture(scope="module")
def cb_codec(spatial):
    return shipped_with_spatial(spatial)


@pytest.fixture(scope="module")
def quadrants(val_image):
    h, w = latent_shape(*val_image.shape[:2])
    gmap = np.full((h, w), 3, np.uint8)
    gmap[: h // 2, : w // 2], gmap[: h // 2, w // 2:], gmap[h // 2:, : w // 2] = 0, 1, 2
    return gmap


def test_integer_spatial_context_matches_the_float_one():
    M, P = 48, 400
    ctx = random_spatial(M, seed=1).double()
    gen = torch.Generator().manual_seed(2)
    cross = torch.randint(-6, 7, (4 * M, P), generator=gen)
    idx = torch.randint(0, 64, (M, P), generator=gen)
    means_g = 3 * torch.randn(M, P, generator=gen, dtype=torch.float64)
    scales_g = torch.rand(M, P, generator=gen, dtype=torch.float64) * 8 + 0.05
    two = 2.0 ** (2 * ACT_BITS)
    m, s = IntegerSpatialContext(IntegerSpatialContext.quantize(ctx)).refine(
        cross, idx, torch.round(means_g * two), torch.round(scales_g * two))
    assert torch.equal(m, torch.round(m)) and torch.equal(s, torch.round(s))  # integers, exactly
    feats = torch.cat([cross.double(), idx.double() * INDEX_SCALE], 0)
    d_mu, t = ctx.net(feats.T[:, :, None, None])[:, :, 0, 0].T.chunk(2, 0)
    mu_f, sigma_f = means_g + d_mu, scales_g * (1 + t).clamp(FACTOR_MIN, FACTOR_MAX)
    assert (m / two - mu_f).abs().max() < 0.01  # a hundredth of a step
    assert ((s / two) / sigma_f - 1).abs().max() < 0.005
    assert (m / two - means_g).abs().max() > 0.05  # it does change them


def test_cross_neighbours_stop_at_group_borders_and_edges():
    sym = torch.arange(1, 13, dtype=torch.float64).reshape(1, 1, 3, 4)
    groups = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]]])
    up, down, left, right = cross_symbols(sym, groups)[0, :, 1]  # row 1
    assert up.tolist() == [1, 2, 3, 4] and down.tolist() == [0, 0, 0, 0]  # row 2 is another group
    assert left.tolist() == [0, 5, 0, 7] and right.tolist() == [6, 0, 8, 0]
    assert cross_symbols(sym, None)[0, :, 0, 0].tolist() == [0, 5, 0, 2]  # one group: only the edges stop
    assert anchor_mask(2, 3).tolist() == [[True, False, True], [False, True, False]]


def test_float_context_sees_only_same_group_anchors():
    """Moving y at another group's anchor changes nothing at this group's positions; at this
    group's anchor it changes its non-anchor neighbours."""
    M = 48
    ctx = ChannelContext(M, 4, 16, HIDDEN).double()
    ctx.spatial = random_spatial(M, seed=3).double()
    table = torch.linspace(0.11, 60, 64, dtype=torch.float64)
    gen = torch.Generator().manual_seed(4)
    y = 4 * torch.randn(1, M, 6, 6, generator=gen, dtype=torch.float64)
    means, scales = torch.zeros_like(y), torch.full_like(y, 2.0)
    groups = torch.zeros(1, 6, 6, dtype=torch.long)
    groups[:, :, 3:] = 1
    base = ctx(y, means, scales, table, torch.round, groups)
    other = y.clone()
    other[:, :, 2, 4] += 5  # an anchor of group 1
    other[:, :, 1, 2] += 5  # a non-anchor of group 0: no other position may depend on it
    moved = ctx(other, means, scales, table, torch.round, groups)
    same = torch.zeros(6, 6, dtype=torch.bool)
    same[:, :3] = True
    same[1, 2] = False
    for a, b in zip(base[:2], moved[:2]):
        assert torch.equal(a[..., same], b[..., same])  # group 0 sees neither change
    assert not torch.equal(base[0][:, :, 2, 5], moved[0][:, :, 2, 5])  # (2, 5) sees its anchor (2, 4)
    assert torch.equal(base[0][:, :, 0, 4], moved[0][:, :, 0, 4])  # (0, 4) is an anchor: not refined


def test_coder_and_float_model_agree_on_the_checkerboard(val_image, quadrants):
    """The coder's integer symbols are the float model's round(y·g − μ'), up to rare rounding ties.

    The context is made strong enough to change 5% of the symbols, so a coder that
    gathered other neighbours than the float model (say, up for down) would differ
    from it in about 2.5% (measured)."""
    spatial = random_spatial(load_weights()[1]["architecture"]["M"], seed=5)
    with torch.no_grad():
        spatial.net[2].weight.mul_(6)
    cb_codec = shipped_with_spatial(spatial)
    q = {"L1": 7, "L2": 5, "L3": 3, "other": 2}
    gmap = quadrants.astype(np.int64)
    qmap = cb_codec._quality_map(gmap, q)
    x = torch.from_numpy(np.array(val_image)).permute(2, 0, 1)[None].float() / 255
    from sdc.models.network import pad_to_multiple

    with torch.no_grad():
        y = cb_codec._analysis(pad_to_multiple(x))
        z = cb_codec.net.h_a(y)[0]
        _, z_symbols = cb_codec.latent.encode_z(z, int(qmap.max()))
        hp = cb_codec.latent.hyper_params(z_symbols, int(qmap.max()), qmap)
        y_g = y[0].double() * cb_codec.latent.gains(qmap)
        _, symbols = cb_codec.latent.encode_groups(y_g, hp, gmap)
        tensors, _ = load_weights()
        arch = cb_codec.manifest["architecture"]
        ctx = ChannelContext(arch["M"], arch["context_slices"], tensors["context.nets.0.0.weight"].shape[0], HIDDEN)
        ctx.load_state_dict({k[len("context."):]: v for k, v in tensors.items()
                             if k.startswith("context.") and not k.startswith("context.spatial.")}, strict=False)
        ctx.spatial = spatial
        ctx = ctx.double()
        mu, _, y_hat = ctx(y_g[None], hp.means[None], hp.scales[None], tensors["gaussian_conditional.scale_table"].double(),
                           torch.round, torch.from_numpy(gmap)[None])
    float_symbols = torch.round(y_hat - mu)[0].numpy().astype(np.int64)
    assert np.mean(float_symbols != symbols) < 0.002
    plain = shipped_with_spatial(None)
    assert np.mean(plain.latent.encode_groups(y_g, hp, gmap)[1] != symbols) > 0.02  # the context matters


def test_checkerboard_groups_decode_independently_and_exactly(cb_codec, val_image, quadrants, monkeypatch):
    q = {"L1": 7, "L2": 5, "L3": 3, "other": 2}
    coded = cb_codec.encode(val_image, quadrants, q)
    plain = shipped_with_spatial(None).encode(val_image, quadrants, q)
    assert coded.hyperprior == plain.hyperprior and coded.groups != plain.groups
    full = cb_codec.decode_symbols(coded)
    for n in range(len(LEVELS) + 1):
        for levels in itertools.combinations(LEVELS, n):
            part = copy.copy(coded)
            part.groups = {lv: coded.groups[lv] for lv in levels}
            symbols = cb_codec.decode_symbols(part)
            for lv in levels:
                assert np.array_equal(symbols[lv], full[lv]), (levels, lv)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cb_codec.decode_symbols(coded)
        torch.set_num_threads(2)
        two = cb_codec.decode_symbols(coded)
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(one[k], two[k]) for k in one)
    rgb = cb_codec.decode(coded)
    assert 10 * np.log10(255**2 / np.mean((rgb.astype(float) - val_image) ** 2)) > 22

    import sdc.models.latent_codec as lc

    monkeypatch.setattr(lc, "CONTEXT_CHUNK", 7)  # chunked positions: the very same bytes and pixels
    again = cb_codec.encode(val_image, quadrants, q)
    assert again.groups == coded.groups and np.array_equal(cb_codec.decode(again), rgb)


def test_refinement_runs_through_the_checkerboard(cb_codec, val_image, quadrants):
    q = {"L1": 6, "L2": 4, "L3": 3, "other": 2}
    refined = cb_codec.encode(val_image, quadrants, q, refine_steps=4, joint_steps=2)
    part = copy.copy(refined)
    part.groups = {"L1": refined.groups["L1"]}
    assert np.array_equal(cb_codec.decode_symbols(part)["L1"], cb_codec.decode_symbols(refined)["L1"])
    rgb = cb_codec.decode(refined)
    assert 10 * np.log10(255**2 / np.mean((rgb.astype(float) - val_image) ** 2)) > 22


def test_training_adds_a_checkerboard_and_export_ships_it(tmp_path, shared, tiny_training, one_thread):
    from sdc.export import main as export
    from sdc.train import main as train

    base, data, run = tiny_training["args"], tiny_training["data"], tiny_training["run"]
    shipped_file = str(tiny_training["init"])
    train(base + ["--init", shipped_file, "--spatial-hidden", "16", "--steps", "2"])
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    assert ck["config"]["spatial_hidden"] == 16 and ck["model"]["context.spatial.net.0.weight"].shape[0] == 16
    assert ck["model"]["context.spatial.net.2.weight"].abs().max() > 0  # it learns from its zero start
    with pytest.raises(SystemExit, match="spatial_hidden 16"):
        train(base + ["--spatial-hidden", "0", "--steps", "3"])

    out = tmp_path / "weights"
    export(["--run", str(run), "--out", str(out), "--val", str(data), "--val-limit", "1"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["architecture"]["spatial_hidden"] == 16
    codec = SDCCodec(out)
    rgb = load_rgb(shared / "data" / "val" / "wiki_001.png", (128, 96))
    gmap = np.full(latent_shape(*rgb.shape[:2]), LEVELS.index("other"), np.uint8)
    rec = codec.decode(codec.encode(rgb, gmap, {lv: 6 for lv in LEVELS}))
    assert rec.shape == rgb.shape and 10 * np.log10(255**2 / np.mean((rec - rgb.astype(float)) ** 2)) > 20
    tensors, _ = load_weights(out)
    with pytest.raises(BadInputError, match="do not fit"):
        SDCCodec(tensors=tensors, manifest=dict(manifest, architecture=dict(manifest["architecture"], spatial_hidden=0)))
