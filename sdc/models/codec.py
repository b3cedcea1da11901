"""The image codec the rest of sdc calls.

``SDCCodec.encode(rgb, group_map, qualities)`` turns an RGB image and a
latent-resolution group map into a hyperprior substream and one substream per
group; ``SDCCodec.decode(...)`` turns the hyperprior and any subset of group
substreams back into an RGB image, filling absent groups with the
hyperprior's predicted mean. Quality is per group: each latent position is
coded with the gain of its group's quality.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sdc.errors import BadInputError, UsageError
from sdc.levels import LEVELS
from sdc.models.entropy_coder import EntropyDecodeError
from sdc.models.integer_hyper import IntegerHyperSynthesis, scale_thresholds, ACT_BITS
from sdc.models.latent_codec import GroupedLatentCodec
from sdc.models.network import LATENT_STRIDE, SDCNet, latent_shape, pad_to_multiple
from sdc.models.weights import load_weights


@dataclass
class CodedImage:
    """Everything an .sdc file carries for the codec."""

    height: int
    width: int
    qualities: dict[str, int]  # 1-based, every level
    group_map: np.ndarray  # (h, w) uint8, LEVELS index per latent position
    hyperprior: bytes
    groups: dict[str, bytes] = field(default_factory=dict)


def inference_tensors(net: SDCNet) -> dict[str, torch.Tensor]:
    """Everything the weights file stores: float state, entropy tables, integer h_s."""
    net.entropy_bottleneck.update(force=True)
    from compressai.models.google import get_scale_table

    net.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
    tensors = {k: v.detach().clone() for k, v in net.state_dict().items()}
    tensors.update(IntegerHyperSynthesis.quantize(net.h_s))
    tensors["int_scale_thresholds"] = scale_thresholds(net.gaussian_conditional.scale_table)
    medians = net.entropy_bottleneck.quantiles[:, 0, 1].detach().double()
    tensors["int_z_median"] = torch.round(medians * 2.0**ACT_BITS).to(torch.int64)
    return tensors


class SDCCodec:
    """Loads shipped weights (hash-checked) and codes images.

    Args:
        weights: directory with sdc.safetensors + manifest.json (default: see
            :func:`sdc.models.weights.default_weights_dir`).
        tensors, manifest: already loaded weights (tests, export).
    """

    def __init__(self, weights: str | Path | None = None, *, tensors=None, manifest=None):
        if tensors is None:
            tensors, manifest = load_weights(weights)
        self.manifest = manifest or {}
        arch = self.manifest.get("architecture", {})
        self.net = SDCNet(arch.get("N", 64), arch.get("M", 96), arch.get("num_qualities", 8))
        state = {k: v for k, v in tensors.items() if not k.startswith("int_")}
        # Entropy tables are buffers sized at update(); give them the stored shapes first.
        for name in ("entropy_bottleneck", "gaussian_conditional"):
            module = getattr(self.net, name)
            for buf in ("_offset", "_quantized_cdf", "_cdf_length", "scale_table"):
                key = f"{name}.{buf}"
                if key in state:
                    module.register_buffer(buf, torch.empty_like(state[key]))
        self.net.load_state_dict(state)
        self.net.eval()
        self.latent = GroupedLatentCodec(tensors)
        sha = self.manifest.get("sha256", "0" * 16)
        self.codec_id = bytes.fromhex(sha[:16])
        self.num_qualities = self.net.num_qualities
        with torch.no_grad():
            self._gain = self.net.log_gain.exp().double()
            self._inv_gain = self.net.log_inv_gain.exp().float()

    # -- helpers ------------------------------------------------------------------
    def _quality_map(self, group_map: np.ndarray, qualities: dict[str, int]) -> torch.Tensor:
        q = np.array([qualities[lv] for lv in LEVELS], dtype=np.int64)
        if q.min() < 1 or q.max() > self.num_qualities:
            raise UsageError(f"quality must be 1..{self.num_qualities}, got {dict(qualities)}")
        return torch.from_numpy(q[group_map] - 1)

    def _check_map(self, group_map: np.ndarray, height: int, width: int) -> np.ndarray:
        expected = latent_shape(height, width)
        group_map = np.asarray(group_map)
        if group_map.shape != expected:
            raise BadInputError(f"region map is {group_map.shape[1]}x{group_map.shape[0]}, expected {expected[1]}x{expected[0]} for a {width}x{height} image")
        if group_map.size and group_map.max() > 3:
            raise BadInputError("region map has values outside 0..3")
        return group_map.astype(np.int64)

    def z_shape(self, height: int, width: int) -> tuple[int, int, int]:
        h, w = latent_shape(height, width)
        return (self.net.N, h // 4, w // 4)

    # -- API ----------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, group_map: np.ndarray, qualities: dict[str, int],
               levels: tuple[str, ...] = LEVELS) -> CodedImage:
        """rgb: (H, W, 3) uint8; group_map: latent-resolution LEVELS indexes."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInputError("expected an RGB uint8 image")
        height, width = rgb.shape[:2]
        gmap = self._check_map(group_map, height, width)
        qmap = self._quality_map(gmap, qualities)
        x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)
        y = self.net.g_a(pad_to_multiple(x))
        gain = self._gain[qmap].permute(2, 0, 1)  # (M, h, w)
        y_g = y[0].double() * gain
        z = self.net.h_a(y_g[None].float())[0]
        hyper, hp = self.latent.encode_z(z)
        symbols = self.latent.y_symbols(y_g, hp)
        groups = self.latent.encode_groups(symbols, hp, gmap, levels)
        return CodedImage(height, width, dict(qualities), gmap.astype(np.uint8), hyper, groups)

    @torch.inference_mode()
    def decode(self, coded: CodedImage) -> np.ndarray:
        """(H, W, 3) uint8 from the hyperprior and whichever groups `coded` holds."""
        y_hat, _ = self._decode_latent(coded)
        x_hat = self.net.g_s(y_hat[None])[0, :, : coded.height, : coded.width]
        x_hat = torch.nan_to_num(x_hat, nan=0.0).clamp_(0, 1).mul_(255).round_()
        return x_hat.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    def decode_symbols(self, coded: CodedImage) -> dict[str, np.ndarray]:
        """The integer symbols per substream (z under "hyperprior"): for determinism checks."""
        _, symbols = self._decode_latent(coded)
        return symbols

    def _decode_latent(self, coded: CodedImage) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        gmap = self._check_map(coded.group_map, coded.height, coded.width)
        qmap = self._quality_map(gmap, coded.qualities)
        try:
            hp = self.latent.decode_z(coded.hyperprior, self.z_shape(coded.height, coded.width))
            y_g, symbols = self.latent.decode_groups(coded.groups, hp, gmap)
        except EntropyDecodeError as exc:
            raise BadInputError(str(exc)) from None
        symbols["hyperprior"] = hp.z_symbols
        inv_gain = self._inv_gain[qmap].permute(2, 0, 1)
        return y_g.float() * inv_gain, symbols


@functools.lru_cache(maxsize=4)
def default_codec(weights: str | None = None) -> SDCCodec:
    """Process-wide codec instance (weights load once)."""
    return SDCCodec(weights)
