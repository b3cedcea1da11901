"""Training starts kept in weights/candidates/ (float16, no integer tables): each must
resume training on a fresh machine, i.e. load through `sdc.train --init` into the
architecture its manifest declares, with every tensor of the file landing in the network."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from sdc.models.network import SDCNet
from sdc.train import ENTROPY_TABLE_KEYS, init_weights

CANDIDATES = sorted((REPO / "weights" / "candidates").glob("*/sdc.safetensors"))


def test_there_is_a_candidate_to_check():
    assert CANDIDATES, "weights/candidates/ holds no training start (remove this test with the folder)"


@pytest.mark.parametrize("path", CANDIDATES, ids=lambda p: p.parent.name)
def test_candidate_resumes_into_its_declared_architecture(path: Path, crops):
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert "candidate" in manifest  # says what the file is (not decodable weights)
    arch = manifest["architecture"]
    net = SDCNet.from_config(dict(arch, g_s_res=tuple(arch.get("g_s_res") or ())))
    init_weights(net, str(path))
    state, stored = net.state_dict(), load_file(str(path))
    for key, value in stored.items():
        if key.endswith(ENTROPY_TABLE_KEYS):  # rebuilt by the network itself, as for any --init
            continue
        assert key in state, key
        assert torch.equal(state[key], value.to(state[key].dtype)), key
    net.eval()
    with torch.no_grad():
        out = net(crops, torch.full((len(crops), 8, 8), arch["num_qualities"] - 1))
    mse = (out["x_hat"].clamp(0, 1) - crops).pow(2).mean()
    assert -10 * torch.log10(mse) > 25  # a trained codec at its top quality, not noise
