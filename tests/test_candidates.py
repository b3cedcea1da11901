"""Training starts (float16, no integer tables), as `python -m sdc.training.export --training-start`
writes them (to keep a candidate in weights/candidates/NAME): one must resume training on
a fresh machine, i.e. load through `sdc.training.train --init` into the architecture its manifest
declares, with every tensor of the file landing in the network."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from sdc.training.export import write_training_start
from sdc.training.network import SDCNet
from sdc.training.warm_start import ENTROPY_TABLE_KEYS, init_weights

@pytest.fixture(scope="module")
def written_from_shipped(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("start") / "shipped"
    write_training_start(REPO / "weights", out)
    return out / "sdc.safetensors"


def check_resumes(path: Path, crops) -> None:
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert "candidate" in manifest  # says what the file is (not decodable weights)
    arch = manifest["architecture"]
    net = SDCNet.from_config(dict(arch, g_s_res=tuple(arch.get("g_s_res") or ())))
    init_weights(net, str(path))
    state, stored = net.state_dict(), load_file(str(path))
    assert any(v.dtype == torch.float16 for v in stored.values())  # the large tensors are halved
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


def test_training_start_of_the_shipped_weights_resumes(written_from_shipped, crops):
    check_resumes(written_from_shipped, crops)

