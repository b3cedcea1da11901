"""Export the runtime's files: the float transforms as ONNX, and the tables it reads.

``python -m sdc.training.export onnx [--weights weights/]``::

    weights/sdc.safetensors + manifest.json   (hash-checked, :func:`~sdc.models.weights.load_weights`)
        │  g_a, g_s, h_a rebuilt as compressai lays them out, GDNs folded (FoldedGDN)
        ▼  torch.onnx.export, TorchScript exporter, NCHW float32, dynamic H and W
    weights/g_a.onnx   x (1, 3, H, W)      -> y (1, M, H/16, W/16)
    weights/h_a.onnx   y (1, M, h, w)      -> z (1, N, h/4, w/4)
    weights/g_s.onnx   y_hat (1, M, h, w)  -> x_hat (1, 3, 16h, 16w)
    weights/runtime.safetensors   the entropy tables and integer parts the runtime reads
    weights/manifest.json["runtime"]: each file's sha256 (and opset), the tool versions,
        and the sha256 of the safetensors they came from

:mod:`sdc.models.onnx_transforms` loads only files whose hashes the manifest lists
for the safetensors it describes, so ONNX files left from other weights are refused.
The manifest's ``sha256`` (the codec id) is not touched.

Why these choices:

* TorchScript exporter (``dynamo=False``): the torch.export-based one needs
  onnxscript, which is not installed, and these transforms are plain
  feed-forward graphs that tracing captures exactly.
* g_s's 5x5 stride-2 deconvolutions as their four output phases (one 3x3
  convolution and a DepthToSpace: :class:`~sdc.training.fast_layers.SubpixelDeconv`).
  ONNX Runtime's ConvTranspose unfolds its input into a buffer of
  C_out·25 values per input pixel; the phases need none, so a one-shot
  768x512 decode peaks at 178 instead of 307 MB and its first g_s call
  takes 0.48 instead of 0.53 s (whole process, 2 threads); later calls
  time the same. The other layers stay plain: the rearrangements that help
  oneDNN elsewhere time the same on ONNX Runtime.
* The graphs are checked against the torch modules on export (:func:`verify`).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from sdc.models.architecture import Architecture
from sdc.training.fast_layers import SubpixelDeconv
from sdc.training.layers import FoldedGDN, build_transforms
from sdc.models.weights import (MANIFEST_FILE, TABLES_FILE, TABLES_KEY, default_weights_dir, runtime_tensor,
                                sha256_file)
from sdc.training.torch_transforms import as_torch, load_torch_weights

OPSET = 17
# Transform name -> (input name, output name), the names inside each graph.
TRANSFORMS = {"g_a": ("x", "y"), "h_a": ("y", "z"), "g_s": ("y_hat", "x_hat")}
EXPORTER = "torch.onnx.export, TorchScript-based (dynamo=False)"
# Largest |ONNX Runtime − torch| allowed on export, relative to the output's range.
# Measured: ~1e-6 (ORT's graph optimisations reorder float sums, nothing more).
VERIFY_RTOL = 1e-4


def plain_transforms(tensors: dict, manifest: dict) -> dict[str, torch.nn.Module]:
    """g_a, g_s, h_a of the weights in compressai's layout with FoldedGDN (g_s's deconvolutions
    phased), in eval mode."""
    arch = Architecture.from_dict(manifest.get("architecture", {}))
    tensors = as_torch(tensors)
    built = build_transforms(arch.N, arch.M, FoldedGDN, arch.g_s_res, arch.bypass, arch.g_s_width, arch.g_a_res,
                             arch.g_s_pointwise)
    out = {}
    for name in TRANSFORMS:
        module = built[name]
        for key, sub in module.named_children():
            prefix = f"{name}.{key}."
            if isinstance(sub, FoldedGDN):
                sub.load_reparametrized(tensors, prefix)
            else:  # strict: a missing or extra tensor would export a wrong graph silently
                sub.load_state_dict({k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)})
        out[name] = module.eval()
    out["g_s"] = phased_deconvolutions(out["g_s"])
    return out


def phased_deconvolutions(g_s: torch.nn.Module) -> torch.nn.Module:
    """g_s with its 5x5 stride-2 deconvolutions replaced by their phase convolutions
    (the same sums of the same products; see the module docstring for why)."""
    for key, sub in list(g_s.named_children()):
        if isinstance(sub, torch.nn.ConvTranspose2d) and sub.kernel_size == (5, 5) and sub.stride == (2, 2):
            phased = SubpixelDeconv(sub)
            phased.weight = phased.weight.contiguous()  # NCHW: the layout ONNX graphs use
            g_s._modules[key] = phased
    return g_s


def example_input(name: str, M: int, h: int = 4, w: int = 6) -> torch.Tensor:
    """A traced input for `name` with an h x w latent: a smooth image for g_a (values in
    [0, 1] as the codec feeds it), latent-like values for h_a and g_s. Deterministic."""
    gen = torch.Generator().manual_seed(0)
    if name == "g_a":
        ramp = torch.linspace(0, 1, 16 * w)[None, :] * torch.linspace(0.2, 1, 16 * h)[:, None]
        return (0.6 * ramp + 0.4 * torch.rand(3, 16 * h, 16 * w, generator=gen))[None].clamp(0, 1)
    return 4 * torch.randn(1, M, h, w, generator=gen)


def export_one(module: torch.nn.Module, name: str, example: torch.Tensor, path: Path, opset: int = OPSET) -> None:
    """Trace `module` on `example` into `path`: batch 1, dynamic height and width."""
    inp, out = TRANSFORMS[name]
    tmp = path.with_suffix(".onnx.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated; it is chosen on purpose (module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[inp], output_names=[out], do_constant_folding=True,
                          dynamic_axes={inp: {2: "height", 3: "width"}, out: {2: "out_height", 3: "out_width"}})
    tmp.replace(path)


def verify(module: torch.nn.Module, name: str, path: Path, example: torch.Tensor) -> float:
    """max |ORT − torch| of `path` on `example` with the runtime's session options; raises
    if above VERIFY_RTOL of the output's range."""
    import onnxruntime as ort

    from sdc.models.onnx_transforms import session_options

    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    got = session.run(None, {TRANSFORMS[name][0]: example.numpy()})[0]
    with torch.no_grad():
        want = module(example).numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"{path}: ONNX Runtime gives shape {got.shape}, torch {want.shape}")
    diff = float(np.abs(got - want).max())
    if not diff <= VERIFY_RTOL * max(1.0, float(np.abs(want).max())):
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by {diff:.3g}")
    return diff


def write_manifest_entry(directory: Path, runtime: dict) -> None:
    """Set manifest["runtime"], leaving every other key and its order as it is."""
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.pop("runtime", None)
    # The top-level keys are sorted (save_weights); "runtime" goes in its sorted place.
    keys = sorted([*manifest, "runtime"])
    manifest = {k: runtime if k == "runtime" else manifest[k] for k in keys}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)


def export_runtime(directory: Path | None = None, opset: int = OPSET, check: bool = True) -> dict:
    """Write g_a.onnx, h_a.onnx, g_s.onnx beside the weights in `directory` and their
    manifest entry; returns that entry. `check`: compare each graph with torch first."""
    directory = Path(directory) if directory else default_weights_dir()
    tensors, manifest = load_torch_weights(directory)  # refuses a safetensors file its manifest does not describe
    modules = plain_transforms(tensors, manifest)
    M = Architecture.from_dict(manifest.get("architecture", {})).M
    files = {}
    for name, module in modules.items():
        path = directory / f"{name}.onnx"
        export_one(module, name, example_input(name, M), path, opset)
        entry = {"file": path.name, "sha256": sha256_file(path), "opset": opset,
                 "input": TRANSFORMS[name][0], "output": TRANSFORMS[name][1]}
        if check:  # another size than the traced one, so a shape frozen by tracing shows
            entry["verified_max_abs_diff"] = float(f"{verify(module, name, path, example_input(name, M, 8, 4)):.3g}")
        files[name] = entry
    files[TABLES_KEY] = write_tables(directory, tensors)
    runtime = {"format": "onnx", "layout": "NCHW float32, batch 1, dynamic height and width",
               "exporter": EXPORTER, "torch": torch.__version__, "onnx": _version("onnx"),
               "onnxruntime": _version("onnxruntime") if check else None,
               "source": manifest.get("file"), "source_sha256": manifest["sha256"], "files": files}
    write_manifest_entry(directory, runtime)
    return runtime


def write_tables(directory: Path, tensors: dict[str, torch.Tensor]) -> dict:
    """TABLES_FILE: the weights' entries the runtime reads (:func:`runtime_tensor`), as they
    are in the safetensors; returns its manifest entry."""
    from safetensors.numpy import save_file

    path = directory / TABLES_FILE
    tmp = path.with_suffix(".tmp")
    save_file({k: v.numpy() for k, v in sorted(tensors.items()) if runtime_tensor(k)}, str(tmp))
    tmp.replace(path)
    return {"file": TABLES_FILE, "sha256": sha256_file(path)}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m sdc.training.export onnx", description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="weights directory (default: $SDC_WEIGHTS, else the repository's weights/)")
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--no-check", action="store_true", help="skip comparing each graph with torch on ONNX Runtime")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    directory = Path(args.weights) if args.weights else default_weights_dir()
    runtime = export_runtime(directory, args.opset, check=not args.no_check)
    for name, entry in runtime["files"].items():
        size = (directory / entry["file"]).stat().st_size
        check = f", max |ORT - torch| {entry.get('verified_max_abs_diff', 'not checked')}" if name != TABLES_KEY else ""
        print(f"wrote {directory / entry['file']} ({size / 1e6:.2f} MB, sha256 {entry['sha256'][:16]}{check})")
    print(f"manifest runtime entry for weights {runtime['source_sha256'][:16]}")


if __name__ == "__main__":
    main()
