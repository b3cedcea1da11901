"""Shipped codec weights: safetensors files plus a JSON manifest.

``weights/sdc.safetensors`` holds the float network (for training to resume
from), the entropy-coding tables and the integer hyper-synthesis;
``weights/manifest.json`` holds the architecture, how it was trained, its
validation results and the file's sha256. Loading checks the hash, so a
swapped or damaged file is refused instead of silently decoding garbage, and
the first 8 bytes of that hash are the *codec id* written into every .sdc
file. Never pickle: safetensors only.

The runtime reads its own files, made from sdc.safetensors by the export
and listed with their hashes under ``manifest["runtime"]``: the ONNX
transforms (:mod:`sdc.models.onnx_transforms`) and ``runtime.safetensors``,
the tables and integer parts (:func:`load_runtime_tables`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from sdc.errors import BadInputError
from sdc.models.architecture import declared_num_qualities

if TYPE_CHECKING:  # annotations only: training code saves torch tensors; the runtime never imports torch
    import numpy as np
    import torch

# safetensors is imported where tensors are read or written, so that the CLI
# can read a manifest (e.g. the quality count) without loading it.

WEIGHTS_FILE = "sdc.safetensors"
MANIFEST_FILE = "manifest.json"
# The runtime's own files, listed with their sha256 under manifest["runtime"]["files"]
# (written by EXPORT_COMMAND from WEIGHTS_FILE): the ONNX transforms, and TABLES_FILE,
# the part of WEIGHTS_FILE the runtime reads (a decoder reads 12 of its 32 MB).
EXPORT_COMMAND = "python -m sdc.training.export onnx"
TABLES_KEY, TABLES_FILE = "tables", "runtime.safetensors"


def runtime_tensor(name: str) -> bool:
    """Whether the runtime reads this weights entry: the coder's tables, the integer
    hyper-synthesis and context, and g' (the float network is in the ONNX files)."""
    return (name.startswith(("int_", "entropy_bottleneck._", "gaussian_conditional._"))
            or name == "log_inv_gain")


def default_weights_dir() -> Path:
    """$SDC_WEIGHTS, else the repository's weights/ (source checkout or editable install)."""
    import os

    env = os.environ.get("SDC_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "weights"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_num_qualities(directory: Path | None = None) -> int | None:
    """The quality count the manifest of the weights in use declares (None if unreadable:
    loading the weights reports that properly)."""
    directory = Path(directory) if directory else default_weights_dir()
    try:
        return declared_num_qualities(json.loads((directory / MANIFEST_FILE).read_text()).get("architecture", {}))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def save_weights(directory: Path, tensors: dict[str, torch.Tensor], manifest: dict) -> dict:
    """Write the safetensors file and a manifest that records its sha256."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS_FILE
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    manifest = dict(manifest, file=WEIGHTS_FILE, sha256=sha256_file(path))
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: Path) -> dict:
    """The manifest of a weights directory; BadInputError if it is missing or unreadable."""
    manifest_path = Path(directory) / MANIFEST_FILE
    try:
        return json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"no codec weights: {manifest_path} not found (set SDC_WEIGHTS)") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"unreadable weights manifest {manifest_path}: {exc}") from None


def load_weights(directory: Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Numpy arrays and manifest; raises BadInputError if missing or the hash differs."""
    from safetensors import SafetensorError, safe_open

    directory = Path(directory) if directory else default_weights_dir()
    manifest = read_manifest(directory)
    path = directory / manifest.get("file", WEIGHTS_FILE)
    if not path.is_file():
        raise BadInputError(f"no codec weights: {path} not found")
    digest = sha256_file(path)
    if digest != manifest.get("sha256"):
        raise BadInputError(
            f"codec weights {path} do not match their manifest (sha256 {digest[:16]}…, expected {str(manifest.get('sha256'))[:16]}…)"
        )
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, manifest
    except SafetensorError as exc:
        raise BadInputError(f"unreadable codec weights {path}: {exc}") from None


def export_hint(directory: Path) -> str:
    """What to run to make a weights directory's runtime files."""
    default = Path(directory).resolve() == default_weights_dir().resolve()
    return f"run {EXPORT_COMMAND}" + ("" if default else f" --weights {directory}")


def runtime_files(directory: Path, manifest: dict | None = None) -> dict[str, dict]:
    """The manifest's runtime file entries (name -> {"file", "sha256", ...}), if they were made
    from the safetensors it describes; BadInputError with the export command otherwise."""
    manifest = read_manifest(directory) if manifest is None else manifest
    runtime = manifest.get("runtime") or {}
    if not runtime.get("files") or runtime.get("source_sha256") != manifest.get("sha256"):
        raise BadInputError(f"{Path(directory) / MANIFEST_FILE} lists no ONNX transforms for its weights: "
                            f"{export_hint(directory)}")
    return runtime["files"]


def read_checked(directory: Path, entry: dict | None, what: str, hint: str | None = None) -> bytes:
    """The bytes of a runtime file after checking their sha256 against its manifest entry.
    hint: what to run to make the file (default: the codec's export, :func:`export_hint`)."""
    directory = Path(directory)
    hint = hint or export_hint(directory)
    if entry is None:
        raise BadInputError(f"{directory / MANIFEST_FILE} lists no {what}: {hint}")
    path = directory / entry["file"]
    try:
        data = path.read_bytes()  # hashed and used from the same bytes
    except FileNotFoundError:
        raise BadInputError(f"{what} {path} not found: {hint}") from None
    except OSError as exc:
        raise BadInputError(f"unreadable {what} {path}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise BadInputError(f"{what} {path} does not match the weights' manifest (sha256 {digest[:16]}…, "
                            f"expected {str(entry.get('sha256'))[:16]}…): {hint}")
    return data


def load_runtime_tables(directory: Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The runtime's arrays (:func:`runtime_tensor`) from TABLES_FILE, and the manifest."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    directory = Path(directory) if directory else default_weights_dir()
    manifest = read_manifest(directory)
    data = read_checked(directory, runtime_files(directory, manifest).get(TABLES_KEY), "runtime tables")
    try:
        return load(data), manifest
    except SafetensorError as exc:
        raise BadInputError(f"unreadable runtime tables in {directory}: {exc}") from None
