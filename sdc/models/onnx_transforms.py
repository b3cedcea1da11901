"""The codec's float transforms on ONNX Runtime: encode and decode without torch.

::

    weights/manifest.json["runtime"]: sha256 of each file, made from the safetensors of "sha256"
    weights/g_a.onnx, h_a.onnx, g_s.onnx ──hash checked on first use──▶ one InferenceSession each
    x (1, 3, H, W) float32 in [0, 1] ──analysis──▶ y (1, M, H/16, W/16) ──hyper_analysis──▶ z (1, N, H/64, W/64)
    y_hat (1, M, h, w) ──synthesis──▶ x_hat (1, 3, 16h, 16w), unclamped

H and W are any multiples of 16 (the codec pads to 64 and tiles large images
itself: :mod:`sdc.models.tiling`). ``python -m sdc.training.export onnx``
writes the files and the manifest entry (:mod:`sdc.training.export_onnx`).

This module imports numpy and, on first use, onnxruntime; never torch.

Session options, measured on the 2-core CPU with a 768x512 image (other
processes running, so ratios rather than times):

* ORT_ENABLE_ALL: the fastest level; its layout transforms reorder float
  sums, changing y by ~1e-5 (|y| up to ~35) and x̂ by ~1e-6 against
  ORT_ENABLE_BASIC, far below the rounding to integer symbols and 8-bit pixels.
* Outputs are bit-identical from run to run and between 1 and 2 intra-op
  threads, so the thread count is chosen for speed only: all cores the
  process may use, as torch does. With the other core busy, 2 threads cost
  at most ~8% over 1 (g_s 0.28 vs 0.26 s); with it free they can use both.
* Spinning off: busy-waiting pool threads take the CPU from whatever else
  runs (other processes, the caller's entropy coding); with 2 threads and the
  other core busy, g_s took 0.37 s spinning and 0.28 s not.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from sdc.errors import BadInputError
from sdc.models.weights import default_weights_dir, export_hint, read_checked, runtime_files

TRANSFORM_NAMES = ("g_a", "h_a", "g_s")


def default_threads() -> int:
    """$SDC_THREADS (set for the workers of a batch), else the cores this process may run on
    (its affinity mask, which containers narrow)."""
    env = os.environ.get("SDC_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None):
    """onnxruntime.SessionOptions for the transforms (see the module docstring for why)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one chain of layers: nothing to run side by side
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT's notes on graph rewrites are not for sdc's users
    return so


class OnnxTransforms:
    """g_a, h_a and g_s of the weights in `directory`, each an InferenceSession made on first use.

    Args:
        directory: weights directory (default :func:`sdc.models.weights.default_weights_dir`).
        threads: intra-op threads per session (default :func:`default_threads`).
    """

    def __init__(self, directory: str | Path | None = None, threads: int | None = None):
        self.directory = Path(directory) if directory else default_weights_dir()
        self.threads = threads
        self._sessions: dict = {}
        self._files: dict[str, dict] | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise BadInputError now if the manifest lists no ONNX files for its weights
        (the files themselves are read and hash-checked on first use)."""
        if self._files is None:
            self._files = runtime_files(self.directory)

    def session(self, name: str):
        """The InferenceSession of transform `name` ("g_a", "h_a", "g_s"), created on first use
        from the file's bytes after checking their sha256 against the manifest."""
        session = self._sessions.get(name)
        if session is not None:
            return session
        with self._lock:  # two threads' first calls make one session
            if name not in self._sessions:
                self._sessions[name] = self._load(name)
            return self._sessions[name]

    def _load(self, name: str):
        self.check()
        entry = self._files.get(name)
        if entry is None:
            raise BadInputError(f"the weights' manifest lists no ONNX file for {name}: {export_hint(self.directory)}")
        data = read_checked(self.directory, entry, "ONNX transform")
        path = self.directory / entry["file"]
        import onnxruntime as ort

        try:
            return ort.InferenceSession(data, session_options(self.threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's load errors have no common base class
            raise BadInputError(f"cannot load ONNX transform {path}: {str(exc).splitlines()[0][:200]}") from None

    def _run(self, name: str, array: np.ndarray) -> np.ndarray:
        session = self.session(name)
        inp = session.get_inputs()[0]
        x = np.ascontiguousarray(array, dtype=np.float32)
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != inp.shape[1]:
            raise ValueError(f"{name} takes a (1, {inp.shape[1]}, H, W) array, got shape {x.shape}")
        return session.run(None, {inp.name: x})[0]

    def analysis(self, x: np.ndarray) -> np.ndarray:
        """g_a: image (1, 3, H, W) in [0, 1] -> y (1, M, H/16, W/16); H, W multiples of 16."""
        return self._run("g_a", x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        """h_a: y (1, M, h, w) -> z (1, N, h/4, w/4); h, w multiples of 4."""
        return self._run("h_a", y)

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        """g_s: ŷ (1, M, h, w) -> x̂ (1, 3, 16h, 16w), not clamped to [0, 1]."""
        return self._run("g_s", y_hat)


_shared: dict[str, OnnxTransforms] = {}
_shared_lock = threading.Lock()


def transforms(weights: str | Path | None = None) -> OnnxTransforms:
    """The process-wide transforms of a weights directory (default: the shipped weights)."""
    key = str(Path(weights).resolve()) if weights else ""
    with _shared_lock:
        if key not in _shared:
            _shared[key] = OnnxTransforms(weights)
        return _shared[key]


def analysis(x: np.ndarray, weights: str | Path | None = None) -> np.ndarray:
    """g_a of the shipped (or `weights`) codec: (1, 3, H, W) float32 -> y (1, M, H/16, W/16)."""
    return transforms(weights).analysis(x)


def hyper_analysis(y: np.ndarray, weights: str | Path | None = None) -> np.ndarray:
    """h_a: y (1, M, h, w) -> z (1, N, h/4, w/4)."""
    return transforms(weights).hyper_analysis(y)


def synthesis(y_hat: np.ndarray, weights: str | Path | None = None) -> np.ndarray:
    """g_s: ŷ (1, M, h, w) -> x̂ (1, 3, 16h, 16w)."""
    return transforms(weights).synthesis(y_hat)
