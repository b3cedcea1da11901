"""The light runtime: encode and decode without torch, one architecture description, and
a one-line message where torch is needed but missing."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sdc.errors import BadInputError, UsageError
from sdc.models.architecture import Architecture
from sdc.models.codec import SDCCodec

from conftest import REPO, SAMPLE

# Runs the sdc CLI in a process where torch, torchvision and compressai cannot be imported.
WITHOUT_TORCH = ("import sys\n"
                 "for name in ('torch', 'torchvision', 'compressai'):\n"
                 "    sys.modules[name] = None  # import raises ImportError\n"
                 "from sdc.cli import main\n"
                 "sys.argv = ['sdc'] + sys.argv[1:]\n"
                 "main()\n")


def sdc_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_encode_and_decode_run_without_torch_to_the_same_bytes_and_pixels(tmp_path):
    from PIL import Image

    import sdc

    out = tmp_path / "a.sdc"
    done = sdc_without_torch("encode", str(SAMPLE), "-o", str(out), "--quality", "L1=7,other=2", "--quiet")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == sdc.encode(SAMPLE, quality={"L1": 7, "other": 2})
    png = tmp_path / "a.png"
    done = sdc_without_torch("decode", str(out), "--levels", "L1", "-o", str(png), "--quiet")
    assert done.returncode == 0, done.stderr
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), sdc.decode_array(out.read_bytes(), levels=["L1"]))


def test_refining_encoder_without_torch_says_what_to_install_and_writes_nothing(tmp_path):
    out = tmp_path / "b.sdc"
    done = sdc_without_torch("encode", str(SAMPLE), "-o", str(out), "-e", "2")
    assert done.returncode != 0 and not out.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs torch" in lines[0] and "pip install" in lines[0], done.stderr


def test_the_default_runtime_reads_only_what_it_runs(monkeypatch):
    from sdc.models import codec as codec_module

    def refuse(*args, **kwargs):
        raise AssertionError("the onnx runtime read the float network's safetensors")

    monkeypatch.setattr(codec_module, "load_weights", refuse)
    codec = SDCCodec()
    assert codec.runtime == "onnx" and codec._torch_tensors is None
    assert "net" not in codec.__dict__  # the torch network is built only when asked for
    rgb = np.zeros((64, 64, 3), np.uint8)
    coded = codec.encode(rgb, np.zeros((4, 4), np.uint8), {"L1": 3, "L2": 3, "L3": 3, "other": 3})
    assert codec.decode(coded).shape == rgb.shape


def test_runtime_and_tensor_arguments_are_checked():
    with pytest.raises(UsageError, match="runtime must be one of onnx, torch"):
        SDCCodec(runtime="tflite")
    with pytest.raises(UsageError, match="loads a weights directory"):
        SDCCodec(runtime="onnx", tensors={}, manifest={})


def test_weights_without_onnx_files_are_refused_with_the_export_command(tmp_path):
    weights = tmp_path / "w"
    weights.mkdir()
    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())
    manifest.pop("runtime")
    (weights / "manifest.json").write_text(json.dumps(manifest))
    (weights / "sdc.safetensors").symlink_to(REPO / "weights" / "sdc.safetensors")
    with pytest.raises(BadInputError, match="lists no ONNX transforms.*python -m sdc.training.export onnx --weights"):
        SDCCodec(weights)
    assert SDCCodec(weights, runtime="torch").runtime == "torch"  # the torch runtime needs no ONNX files


def test_one_architecture_description_with_one_set_of_defaults():
    shipped = json.loads((REPO / "weights" / "manifest.json").read_text())["architecture"]
    arch = Architecture.from_dict(shipped)
    assert (arch.N, arch.M, arch.num_qualities, arch.context_slices) == (64, 192, 8, 8)
    assert arch.g_s_res == (1, 3, 3) and arch.bypass and arch.g_s_width == 64 and len(arch.lambdas) == 8
    assert Architecture.from_dict(arch.as_dict()) == arch
    # An older manifest that lists λs but not their count, and no context.
    old = Architecture.from_dict({"N": 64, "M": 96, "lambdas": [0.001, 0.01, 0.1]})
    assert old.num_qualities == 3 and old.context_slices == 0 and not old.has_context
    assert Architecture.from_dict({}) == Architecture()
    with pytest.raises(BadInputError, match="malformed"):
        Architecture.from_dict({"N": "wide"})
    with pytest.raises(BadInputError, match="not a JSON object"):
        Architecture.from_dict([64, 96])


def test_the_sdc_command_exits_at_once_with_complete_outputs_and_its_exit_code(tmp_path):
    """`python -m sdc` (as the `sdc` script) skips the interpreter's teardown after the
    command: outputs must be complete and streams flushed, exit codes unchanged."""
    from PIL import Image

    import sdc

    data = sdc.encode(SAMPLE, quality=2)
    (tmp_path / "a.sdc").write_bytes(data)
    done = subprocess.run([sys.executable, "-m", "sdc", "decode", "a.sdc", "-o", "-"], cwd=tmp_path,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import io

    with Image.open(io.BytesIO(done.stdout)) as im:  # every byte of stdout arrived
        assert np.array_equal(np.asarray(im), sdc.decode_array(data))
    assert b"sdc decode" in done.stderr  # the table, flushed too
    bad = subprocess.run([sys.executable, "-m", "sdc", "decode", "missing.sdc"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr == "sdc: error: missing.sdc: no such file\n"
