"""The ONNX transforms (sdc.training.export_onnx writes them, sdc.models.onnx_transforms runs them)
compute what the torch InferenceNet computes, on real photos; files that do not belong to
the weights are refused; and the runtime never imports torch."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, load_rgb
from sdc.errors import BadInputError

IMAGES = ("wiki_006.png", "wiki_041.png")
CROP = (256, 192)  # width, height: multiples of 64, as the codec pads
QUALITY = 4  # 0-based quality whose gain quantises y for the g_s comparison


def weights_copy(source: Path, target: Path) -> Path:
    """A weights directory at `target` sharing `source`'s files: links to the large ones,
    a copy of the manifest (the tests rewrite it)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name == "manifest.json":
            shutil.copy(path, target / path.name)
        elif path.suffix in (".safetensors", ".onnx"):
            (target / path.name).symlink_to(path.resolve())
    return target


@pytest.fixture(scope="session")
def onnx_weights(tmp_path_factory) -> Path:
    """The shipped weights with ONNX files exported from them now (not the committed ones)."""
    from sdc.training.export_onnx import export_runtime

    directory = tmp_path_factory.mktemp("onnx") / "weights"
    weights_copy(REPO / "weights", directory)
    for name in ("g_a", "h_a", "g_s"):  # export writes its own, beside the linked safetensors
        (directory / f"{name}.onnx").unlink(missing_ok=True)
    export_runtime(directory)
    return directory


@pytest.fixture(scope="session")
def torch_net(shipped):
    from sdc.models.architecture import Architecture
    from sdc.training.torch_transforms import InferenceNet

    tensors, manifest = shipped
    return InferenceNet(tensors, Architecture.from_dict(manifest["architecture"]))


@pytest.fixture(scope="session")
def images(shared) -> list[np.ndarray]:
    """Real photos as (1, 3, H, W) float32 in [0, 1]."""
    rgb = [load_rgb(shared / "data" / "val" / name, CROP) for name in IMAGES]
    return [np.ascontiguousarray(im.transpose(2, 0, 1)[None], dtype=np.float32) / 255 for im in rgb]


@pytest.fixture(scope="session")
def runtime(onnx_weights):
    from sdc.models.onnx_transforms import OnnxTransforms

    return OnnxTransforms(onnx_weights)


def torch_run(module, array: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(array).contiguous(memory_format=torch.channels_last)).contiguous().numpy()


def test_analysis_and_hyper_analysis_match_torch(runtime, torch_net, images):
    for x in images:
        y, y_ref = runtime.analysis(x), torch_run(torch_net.g_a, x)
        assert y.shape == y_ref.shape == (1, torch_net.M, CROP[1] // 16, CROP[0] // 16)
        z, z_ref = runtime.hyper_analysis(y_ref), torch_run(torch_net.h_a, y_ref)
        assert z.shape == z_ref.shape == (1, torch_net.N, CROP[1] // 64, CROP[0] // 64)
        dy, dz = np.abs(y - y_ref).max(), np.abs(z - z_ref).max()
        print(f"g_a max |ORT - torch| {dy:.2e} (|y| up to {np.abs(y_ref).max():.1f}), h_a {dz:.2e}")
        # Float summation order only: ~1e-5 measured, while y is rounded to whole symbols.
        assert dy < 5e-4 and dz < 5e-4


def test_synthesis_matches_torch_within_one_code_value(runtime, torch_net, images, shipped):
    inv_gain = np.exp(shipped[0]["log_inv_gain"][QUALITY].float().numpy())[None, :, None, None]
    for x in images:
        y = torch_run(torch_net.g_a, x)
        y_hat = (np.round(y / inv_gain) * inv_gain).astype(np.float32)  # as decoding reconstructs it
        x_hat, x_ref = runtime.synthesis(y_hat), torch_run(torch_net.g_s, y_hat)
        assert x_hat.shape == x_ref.shape == x.shape
        pixels = [np.round(np.clip(a, 0, 1) * 255) for a in (x_hat, x_ref)]
        off = np.abs(pixels[0] - pixels[1])
        print(f"g_s max |ORT - torch| {np.abs(x_hat - x_ref).max():.2e}, pixels off by one: {int((off > 0).sum())} "
              f"of {off.size}")
        assert np.abs(x_hat - x_ref).max() < 1e-4
        assert off.max() <= 1 and (off > 0).mean() < 1e-3


def test_module_functions_use_one_session_per_transform(onnx_weights, images):
    from sdc.models import onnx_transforms as ot

    y = ot.analysis(images[0], onnx_weights)
    assert ot.transforms(onnx_weights) is ot.transforms(str(onnx_weights))
    session = ot.transforms(onnx_weights).session("g_a")
    np.testing.assert_array_equal(ot.analysis(images[0], onnx_weights), y)  # bit-identical on a rerun
    assert ot.transforms(onnx_weights).session("g_a") is session
    with pytest.raises(ValueError, match=r"\(1, 192, H, W\)"):
        ot.synthesis(images[0], onnx_weights)


def test_tampered_or_missing_files_are_refused(onnx_weights, tmp_path, images):
    from sdc.models.onnx_transforms import OnnxTransforms

    bad = weights_copy(onnx_weights, tmp_path / "tampered")
    data = bytearray((onnx_weights / "g_s.onnx").read_bytes())
    data[len(data) // 2] ^= 1  # one bit of a weight (initializers fill most of the file)
    (bad / "g_s.onnx").unlink()
    (bad / "g_s.onnx").write_bytes(bytes(data))
    (bad / "h_a.onnx").unlink()
    transforms = OnnxTransforms(bad)
    transforms.analysis(images[0])  # g_a is intact: the others are checked when first used
    with pytest.raises(BadInputError, match=r"g_s\.onnx does not match.*python -m sdc\.training\.export onnx --weights") as err:
        transforms.synthesis(np.zeros((1, 192, 4, 4), np.float32))
    assert "\n" not in str(err.value)
    with pytest.raises(BadInputError, match=r"h_a\.onnx not found.*python -m sdc\.training\.export onnx"):
        transforms.hyper_analysis(np.zeros((1, 192, 4, 4), np.float32))


def test_files_of_other_weights_are_refused(onnx_weights, tmp_path, images):
    """A manifest rewritten for new weights (sha256 changed) without re-exporting the ONNX files."""
    from sdc.models.onnx_transforms import OnnxTransforms

    other = weights_copy(onnx_weights, tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match=r"lists no ONNX transforms for its weights: run python -m sdc\.training\.export onnx"):
        OnnxTransforms(other).analysis(images[0])
    del manifest["runtime"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match="lists no ONNX transforms"):
        OnnxTransforms(other).analysis(images[0])


def test_export_keeps_the_manifest_and_records_the_runtime(onnx_weights):
    shipped = json.loads((REPO / "weights" / "manifest.json").read_text())
    exported = json.loads((onnx_weights / "manifest.json").read_text())
    runtime = exported.pop("runtime")
    shipped.pop("runtime", None)
    assert exported == shipped  # the codec id (sha256) and everything else unchanged
    assert runtime["source_sha256"] == shipped["sha256"]
    assert sorted(runtime["files"]) == ["g_a", "g_s", "h_a", "tables"]
    for name, entry in runtime["files"].items():
        assert len(entry["sha256"]) == 64 and (name == "tables" or entry["opset"] >= 13)
    # The tables are the runtime's part of the safetensors, value for value.
    from sdc.models.weights import load_runtime_tables, load_weights, runtime_tensor

    tables, _ = load_runtime_tables(onnx_weights)
    everything, _ = load_weights(onnx_weights)
    assert sorted(tables) == sorted(k for k in everything if runtime_tensor(k))
    assert all(np.array_equal(tables[k], everything[k]) for k in tables)


def test_committed_onnx_files_match_the_manifest():
    from sdc.models.weights import sha256_file

    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())
    runtime = manifest["runtime"]
    assert runtime["source_sha256"] == manifest["sha256"], "weights/*.onnx are from other weights: python -m sdc.training.export onnx"
    for name, entry in runtime["files"].items():
        assert sha256_file(REPO / "weights" / entry["file"]) == entry["sha256"], f"weights/{entry['file']} ({name})"


def test_runtime_does_not_import_torch(onnx_weights, tmp_path):
    code = ("import sys, numpy as np\n"
            "from sdc.models import onnx_transforms as ot\n"
            f"t = ot.OnnxTransforms({str(onnx_weights)!r})\n"
            "y = t.analysis(np.zeros((1, 3, 64, 64), np.float32))\n"
            "z, x = t.hyper_analysis(y), t.synthesis(y)\n"
            "assert z.shape == (1, 64, 1, 1) and x.shape == (1, 3, 64, 64), (z.shape, x.shape)\n"
            "print(','.join(m for m in ('torch', 'compressai') if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip() == ""
