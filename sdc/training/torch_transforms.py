"""The codec's float transforms in torch: the reference the ONNX files are exported from.

::

    tensors (numpy or torch) + Architecture ──▶ InferenceNet (g_a, h_a, g_s, FoldedGDN)
    TorchTransforms.analysis / hyper_analysis / synthesis: numpy NCHW float32 in and out,
    the interface of :class:`sdc.models.onnx_transforms.OnnxTransforms`

``SDCCodec(runtime="torch")`` codes with these (tests check that its files and
the ONNX runtime's decode to the same symbols either way); the refining encoder
(``--effort`` 2 and up) differentiates through :class:`InferenceNet`'s g_s.
"""
from __future__ import annotations

import numpy as np
import torch

from sdc.models.architecture import BLOCK_KEYS, Architecture
from sdc.training.fast_layers import speed_up
from sdc.training.layers import FoldedGDN, build_transforms, has_bypass, undeclared_blocks


def as_torch(tensors: dict) -> dict[str, torch.Tensor]:
    """A weights dict with every entry a torch tensor (safetensors loads numpy arrays)."""
    return {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v)) for k, v in tensors.items()}


class InferenceNet(torch.nn.Module):
    """g_a, g_s, h_a and the inverse gains, loaded from the weights file (no compressai).

    Raises KeyError, RuntimeError or ValueError when the tensors do not fit `arch`.
    """

    def __init__(self, tensors: dict, arch: Architecture):
        super().__init__()
        tensors = as_torch(tensors)
        self.N, self.M, self.num_qualities = arch.N, arch.M, arch.num_qualities
        transforms = build_transforms(arch.N, arch.M, FoldedGDN, arch.g_s_res, arch.bypass, arch.g_s_width,
                                      arch.g_a_res, arch.g_s_pointwise)
        for key, stray in undeclared_blocks(tensors, arch.g_a_res, arch.g_s_res, arch.g_s_pointwise):
            transform, kind = BLOCK_KEYS[key]
            raise KeyError(f"{transform} {kind} blocks after {stray} are not in the manifest's {key}")
        if has_bypass(tensors) and not arch.bypass:
            raise KeyError("the weights have a patch bypass the manifest does not declare")
        for name in ("g_a", "g_s", "h_a"):
            module = transforms[name]
            for key, sub in module.named_children():
                if isinstance(sub, FoldedGDN):
                    sub.load_reparametrized(tensors, f"{name}.{key}.")
                else:
                    sub.load_state_dict({k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"{name}.{key}.")})
            setattr(self, name, module)
        speed_up(self.g_a, self.g_s)
        self.register_buffer("inv_gain", tensors["log_inv_gain"].float().exp())
        # NHWC: oneDNN's convolutions, transposed ones above all, and the
        # GDNs' 1x1 convolutions run 1.3-1.5x faster on it on this CPU
        # (benchmarks/speed.py); the values are the same up to summation order.
        self.to(memory_format=torch.channels_last)
        self.eval()


class TorchTransforms:
    """g_a, h_a and g_s of an :class:`InferenceNet` behind the numpy interface of the ONNX runtime."""

    def __init__(self, tensors: dict, arch: Architecture):
        self.net = InferenceNet(tensors, arch)

    @staticmethod
    def _run(module: torch.nn.Module, array: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            return module(x.contiguous(memory_format=torch.channels_last)).contiguous().numpy()

    def analysis(self, x: np.ndarray) -> np.ndarray:
        """g_a: image (1, 3, H, W) in [0, 1] -> y (1, M, H/16, W/16)."""
        return self._run(self.net.g_a, x)

    def hyper_analysis(self, y: np.ndarray) -> np.ndarray:
        """h_a: y (1, M, h, w) -> z (1, N, h/4, w/4)."""
        return self._run(self.net.h_a, y)

    def synthesis(self, y_hat: np.ndarray) -> np.ndarray:
        """g_s: ŷ (1, M, h, w) -> x̂ (1, 3, 16h, 16w), not clamped."""
        return self._run(self.net.g_s, y_hat)


def load_torch_weights(directory=None) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`sdc.models.weights.load_weights` with torch tensors (training, export, tests)."""
    from sdc.models.weights import load_weights

    tensors, manifest = load_weights(directory)
    return as_torch(tensors), manifest
