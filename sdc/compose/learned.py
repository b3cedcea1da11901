"""The learned composer ("learned"): a network trained on this codec's own partial decodes.

It takes the partial decode (the hyperprior fill in the missing regions) and
the missing mask, and returns the picture with the missing pixels completed;
the decoded pixels are kept byte for byte. The network
(:class:`sdc.training.composer_net.ComposerNet`) runs on ONNX Runtime from
``composer.onnx`` in the codec's weights folder ($SDC_WEIGHTS, else the
repository's ``weights/``), whose sha256 the manifest ``composer.json``
records (with the training settings); a file that does not match is refused.
How it was trained: :mod:`sdc.training.composer_train`. What it buys:
``benchmarks/compose_tasks.py``.

Deterministic: same input, same threads, same pixels; other thread counts stay
within one code value.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from sdc.errors import BadInputError

ONNX_FILE = "composer.onnx"
MANIFEST = "composer.json"
MULTIPLE = 16  # the network's input sides are multiples of this
EXPORT_HINT = "python -m sdc.training.composer_train --export RUN writes it"
NOISE_SEED = 0  # the noise channel's: fixed, so that a picture always composes the same


def padded(rgb: np.ndarray, missing: np.ndarray, noise: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """(1, 5, H', W') float32 network input [picture, mask, noise], edge-padded to multiples of 16,
    and the original (H, W). The noise is standard normal from NOISE_SEED unless given."""
    h, w = missing.shape
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    x = np.concatenate([rgb.astype(np.float32) / 255, missing[..., None].astype(np.float32)], 2)
    x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
    if noise is None:
        # PCG64 and its normals are the same on every platform (numpy's stream guarantee)
        noise = np.random.default_rng(NOISE_SEED).standard_normal(x.shape[:2], dtype=np.float32)
    x = np.concatenate([x, noise[: x.shape[0], : x.shape[1], None]], 2)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), (h, w)


@functools.lru_cache(maxsize=2)
def _session(folder: str, threads: int):
    import onnxruntime as ort

    from sdc.models.onnx_transforms import session_options
    from sdc.models.weights import read_checked

    root = Path(folder)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise BadInputError(f"learned composer: {root / MANIFEST} not found ({EXPORT_HINT})") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"learned composer: unreadable manifest {root / MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("file"), str):
        raise BadInputError(f"learned composer: {root / MANIFEST} names no ONNX file ({EXPORT_HINT})")
    data = read_checked(root, manifest, "learned composer", hint=EXPORT_HINT)
    return ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])


def learned_compose(rgb: np.ndarray, missing: np.ndarray, *, weights: str | Path | None = None,
                    threads: int | None = None) -> np.ndarray:
    """`rgb` with its `missing` pixels completed by the network (see the module docstring)."""
    from sdc.models.onnx_transforms import default_threads
    from sdc.models.weights import default_weights_dir

    session = _session(str(Path(weights) if weights else default_weights_dir()), threads or default_threads())
    x, (h, w) = padded(rgb, missing)
    picture = session.run(None, {"input": x})[0][0, :, :h, :w].transpose(1, 2, 0)
    result = rgb.copy()
    result[missing] = np.clip(np.rint(picture[missing] * 255), 0, 255).astype(np.uint8)
    return result


def weights_digest(weights: str | Path | None = None) -> str:
    """sha256 of the composer's manifest (names the weights in benchmark caches)."""
    from sdc.models.weights import default_weights_dir

    return hashlib.sha256((Path(weights or default_weights_dir()) / MANIFEST).read_bytes()).hexdigest()
