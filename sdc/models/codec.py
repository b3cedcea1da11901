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
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sdc.errors import BadInputError, UsageError
from sdc.geometry import LATENT_STRIDE, latent_shape
from sdc.levels import LEVELS
from sdc.models.channel_context import ChannelContext
from sdc.models.entropy_coder import EntropyDecodeError
from sdc.models.fast_layers import speed_up
from sdc.models.latent_codec import GroupedLatentCodec
from sdc.models.layers import (BLOCK_KEYS, G_A_SCALE, G_S_SCALE, FoldedGDN, build_h_s, build_transforms, has_bypass,
                               reach_px, undeclared_blocks)
from sdc.models.network import pad_to_multiple
from sdc.models.refine import FactorizedDensity, FloatHyperprior, LatentRefiner
from sdc.models.weights import load_weights

# Large images are analysed and synthesised in tiles of the latent, so peak
# memory stays bounded whatever the image size (a 4000x3000 decode needed
# 3.6 GB untiled; 8192x8192, the default --max-pixels, would need ~16 GB).
# Each tile is run with a margin of latent cells of context on every side and
# only its centre is kept. g_a and g_s see little around a position (30
# pixels, plus 2 feature pixels per residual block: :func:`layers.reach_px`);
# :func:`tile_margin` turns that into whole cells, at least TILE_MARGIN, so a
# tiled result equals the untiled one up to float summation order
# (tests/test_reliability.py: within 1 code value).
# Images up to TILE * 16 = 1024 pixels on both sides are a single tile. Decoders
# need not tile the same way: this changes no bit of the format.
TILE = 64
TILE_MARGIN = 4


def tile_margin(g_a_res: Sequence[int] = (), g_s_res: Sequence[int] = ()) -> int:
    """Latent cells of context a tile needs for g_a and g_s with these residual blocks."""
    reach = max(reach_px(G_A_SCALE, g_a_res), reach_px(G_S_SCALE, g_s_res))
    return max(TILE_MARGIN, math.ceil(reach / LATENT_STRIDE))


def latent_tiles(h: int, w: int, tile: int = TILE, margin: int = TILE_MARGIN):
    """(kept, context) boxes (r0, r1, c0, c1) covering an h x w latent."""
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
            yield (r0, r1, c0, c1), (max(0, r0 - margin), min(h, r1 + margin), max(0, c0 - margin), min(w, c1 + margin))


@dataclass
class CodedImage:
    """Everything an .sdc file carries for the codec."""

    height: int
    width: int
    qualities: dict[str, int]  # 1-based, every level
    group_map: np.ndarray  # (h, w) uint8, LEVELS index per latent position
    hyperprior: bytes
    groups: dict[str, bytes] = field(default_factory=dict)

    @property
    def payload_bytes(self) -> int:
        """Bytes of the hyperprior and the groups held: what a decoder needs besides the header."""
        return len(self.hyperprior) + sum(len(b) for b in self.groups.values())


class InferenceNet(torch.nn.Module):
    """g_a, g_s, h_a and the gains, loaded from the weights file (no compressai)."""

    def __init__(self, tensors: dict[str, torch.Tensor], N: int, M: int, num_qualities: int,
                 g_s_res: tuple[int, ...] = (), bypass: bool = False, g_s_width: int | None = None,
                 g_a_res: tuple[int, ...] = (), g_s_pointwise: tuple[int, ...] = ()):
        super().__init__()
        self.N, self.M, self.num_qualities = N, M, num_qualities
        transforms = build_transforms(N, M, FoldedGDN, g_s_res, bypass, g_s_width, g_a_res, g_s_pointwise)
        for key, stray in undeclared_blocks(tensors, g_a_res, g_s_res, g_s_pointwise):
            transform, kind = BLOCK_KEYS[key]
            raise KeyError(f"{transform} {kind} blocks after {stray} are not in the manifest's {key}")
        if has_bypass(tensors) and not bypass:
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


class SDCCodec:
    """Loads shipped weights (hash-checked) and codes images.

    Args:
        weights: directory with sdc.safetensors + manifest.json (default: see
            :func:`sdc.models.weights.default_weights_dir`).
        tensors, manifest: already loaded weights (tests, export).
    """

    refine_tile = TILE  # latent tile of the refinement (memory of its backward pass grows with the tile)

    def __init__(self, weights: str | Path | None = None, *, tensors=None, manifest=None):
        if tensors is None:
            tensors, manifest = load_weights(weights)
        self.manifest = manifest or {}
        arch = self.manifest.get("architecture", {})
        blocks = {key: tuple(arch.get(key) or ()) for key in BLOCK_KEYS}
        try:
            self.net = InferenceNet(tensors, arch.get("N", 64), arch.get("M", 96), arch.get("num_qualities", 8),
                                    bypass=bool(arch.get("bypass", False)), g_s_width=arch.get("g_s_width"), **blocks)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise BadInputError(f"codec weights do not fit the architecture in their manifest ({exc})") from None
        self.tile_margin = tile_margin(blocks["g_a_res"], blocks["g_s_res"])  # pointwise blocks reach nothing
        try:
            self.latent = GroupedLatentCodec(tensors, int(arch.get("context_slices", 0)))
        except (KeyError, ValueError) as exc:
            raise BadInputError(f"codec weights do not fit the architecture in their manifest ({exc})") from None
        sha = self.manifest.get("sha256", "0" * 16)
        self.codec_id = bytes.fromhex(sha[:16])
        self.num_qualities = self.net.num_qualities
        self._inv_gain = self.net.inv_gain
        # Only what the refiner needs later, not the whole weights file.
        self._refine_tensors = {k: v for k, v in tensors.items()
                                if k.startswith(("context.", "h_s.", "entropy_bottleneck."))
                                or k == "gaussian_conditional.scale_table"}
        self._context_slices = int(arch.get("context_slices", 0))

    # -- helpers ------------------------------------------------------------------
    def _quality_map(self, group_map: np.ndarray, qualities: dict[str, int]) -> np.ndarray:
        """(h, w) int64 0-based quality of each latent position."""
        q = np.array([qualities[lv] for lv in LEVELS], dtype=np.int64)
        if q.min() < 1 or q.max() > self.num_qualities:
            raise UsageError(f"quality must be 1..{self.num_qualities}, got {dict(qualities)}")
        return q[group_map] - 1

    def _inv_gain_map(self, qmap: np.ndarray) -> torch.Tensor:
        """(M, h, w) float32 g' of each position's quality, for g_s."""
        return self._inv_gain[torch.from_numpy(qmap)].permute(2, 0, 1)

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
    @staticmethod
    def _z_quality(qmap: np.ndarray) -> int:
        """0-based quality of z: the highest quality of any position (decoder derives it too)."""
        return int(qmap.max()) if qmap.size else 0

    @functools.cached_property
    def refiner(self) -> LatentRefiner:
        """The encoder's latent refinement (built on first use: it needs the float context and h_s)."""
        tensors = self._refine_tensors
        with torch.inference_mode(False):  # encode() runs in inference mode; autograd needs normal tensors
            context = None
            if self._context_slices > 1:
                hidden = tensors["context.nets.0.0.weight"].shape[0]
                context = ChannelContext(self.net.M, self._context_slices, hidden)
                context.load_state_dict({k[len("context."):]: v for k, v in tensors.items() if k.startswith("context.")})
                context.requires_grad_(False)
            try:  # the joint phase's float hyperprior; weights without its tensors refine y only
                h_s = build_h_s(self.net.N, self.net.M)
                h_s.load_state_dict({k[len("h_s."):]: v for k, v in tensors.items() if k.startswith("h_s.")})
                h_s.requires_grad_(False)
                hyper = FloatHyperprior(h_s, FactorizedDensity(tensors), torch.from_numpy(self.latent.z_median))
            except (KeyError, RuntimeError):
                hyper = None
        self.net.requires_grad_(False)
        return LatentRefiner(self.net.g_s, context, tensors["gaussian_conditional.scale_table"], hyper)

    @staticmethod
    def hyperprior_support(group_map: np.ndarray, levels: Sequence[str], reach: int = 1) -> np.ndarray:
        """(hz, wz) bool: the z cells within `reach` z cells of a position of one of `levels`.

        A z cell covers 4x4 latent positions; h_s sees about one z cell around each
        position, so z beyond that reach only shapes the prediction of positions
        that are not coded."""
        idx = [LEVELS.index(lv) for lv in levels]
        h, w = group_map.shape
        cells = np.isin(group_map, idx).reshape(h // 4, 4, w // 4, 4).any(axis=(1, 3))
        padded = np.pad(cells, reach)
        out = np.zeros_like(cells)
        for dy in range(2 * reach + 1):
            for dx in range(2 * reach + 1):
                out |= padded[dy:dy + cells.shape[0], dx:dx + cells.shape[1]]
        return out

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, group_map: np.ndarray, qualities: dict[str, int],
               levels: tuple[str, ...] = LEVELS, refine_steps: int | Sequence[int] = 0,
               joint_steps: int = 0, flat_hyperprior: bool = False) -> CodedImage:
        """rgb: (H, W, 3) uint8; group_map: latent-resolution LEVELS indexes.

        flat_hyperprior: code ẑ as its median (symbol 0, nearly free) outside
        :meth:`hyperprior_support` of `levels`; positions of other levels then decode
        to a flat prediction instead of a blurred picture. The file format is the
        same: this only chooses the symbols.

        joint_steps, refine_steps: steps of encoder-side refinement (:mod:`sdc.models.refine`)
        of ẑ and y together (only when the latent fits one refinement tile), then of y
        alone, one run per length when refine_steps is a sequence; 0 and 0 code g_a's
        latents as they are. With refinement the file kept is the cheapest
        (:meth:`rd_cost`) of g_a's latents, y refined alone from them and, with
        joint_steps, ẑ and y refined together and then y alone. The file format is
        the same either way.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInputError("expected an RGB uint8 image")
        height, width = rgb.shape[:2]
        gmap = self._check_map(group_map, height, width)
        qmap = self._quality_map(gmap, qualities)
        x = pad_to_multiple(torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float().div_(255.0))
        y = self._analysis(x)
        z = self.net.h_a(y)[0].numpy()
        qz = self._z_quality(qmap)
        gains = self.latent.gains(qmap)
        y_gained = y[0].double().numpy() * gains  # the latent codec works on numpy
        z_support = self.hyperprior_support(gmap, levels) if flat_hyperprior else None

        def code_z(symbols: np.ndarray) -> tuple[bytes, np.ndarray]:
            if z_support is not None:
                symbols = np.where(z_support, symbols, 0)
            return self.latent.encode_z_symbols(symbols)

        hyper, z_symbols = code_z(np.round(self.latent.z_unrounded(z, qz)).astype(np.int64))
        hp = self.latent.hyper_params(z_symbols, qz, qmap)
        groups, _ = self.latent.encode_groups(y_gained, hp, gmap, levels)
        plain = CodedImage(height, width, dict(qualities), gmap.astype(np.uint8), hyper, groups)
        lengths = [n for n in ((refine_steps,) if isinstance(refine_steps, int) else refine_steps) if n > 0]
        if not (joint_steps or lengths):
            return plain
        inv_gain = self._inv_gain_map(qmap)
        tiles = list(latent_tiles(*gmap.shape, self.refine_tile, self.tile_margin))

        def coded(hyper: bytes, hp, y) -> CodedImage:
            groups, _ = self.latent.encode_groups(y, hp, gmap, levels)
            return CodedImage(height, width, dict(qualities), gmap.astype(np.uint8), hyper, groups)

        def y_refined(hyper: bytes, hp, y_start) -> list[CodedImage]:
            return [coded(hyper, hp, self.refiner.refine(x[0], y_start, hp.means, hp.scales, inv_gain,
                                                         qmap, height, width, n, tiles)) for n in lengths]

        candidates = [plain, *y_refined(hyper, hp, y_gained)]
        if joint_steps > 0 and max(gmap.shape) <= self.refine_tile and self.refiner.hyper is not None:
            y_joint, z_joint = self.refiner.refine_jointly(
                x[0], y_gained, self.latent.z_unrounded(z, qz), self.latent.z_gain(qz), gains,
                inv_gain, qmap, height, width, joint_steps)
            hyper_joint, z_joint = code_z(z_joint.numpy())
            hp_joint = self.latent.hyper_params(z_joint, qz, qmap)
            candidates += y_refined(hyper_joint, hp_joint, y_joint) or [coded(hyper_joint, hp_joint, y_joint)]
        # Refinement descends a relaxed objective and can end above where it
        # started (seen on small crops, and for the joint phase, which then lost
        # to y alone: docs/experiments.md), so the file kept is the one
        # with the lowest real cost of all runs. Each run is seeded, and each
        # effort's runs include the lower efforts' (EFFORT_STEPS), so a higher
        # effort is never worse than a lower one.
        costs = [self.rd_cost(c, rgb) for c in candidates]
        return candidates[int(np.argmin(costs))]

    def rd_cost(self, coded: CodedImage, rgb: np.ndarray) -> float:
        """The training objective on a real file: mean over pixels of λ·255²·MSE (λ of each
        pixel's quality, spread as the refiner spreads it) + hyperprior and group bits per pixel."""
        height, width = rgb.shape[:2]
        qmap = self._quality_map(coded.group_map, coded.qualities)
        lam = LatentRefiner._per_pixel(LatentRefiner._pixel_lambdas(qmap), height, width).double().numpy()
        err = ((self.decode(coded).astype(np.float64) - rgb) / 255.0) ** 2
        bits = 8 * coded.payload_bytes
        return float((lam * err.mean(2)).mean()) + bits / (height * width)

    @torch.inference_mode()
    def decode(self, coded: CodedImage) -> np.ndarray:
        """(H, W, 3) uint8 from the hyperprior and whichever groups `coded` holds."""
        y_hat, _ = self._decode_latent(coded)
        return self._synthesis(y_hat, coded.height, coded.width)

    def _analysis(self, x: torch.Tensor, tile: int = TILE) -> torch.Tensor:
        """g_a of a padded (1, 3, H, W) image, tile by tile (see TILE)."""
        h, w = x.shape[-2] // LATENT_STRIDE, x.shape[-1] // LATENT_STRIDE
        x = x.contiguous(memory_format=torch.channels_last)
        if h <= tile and w <= tile:
            return self.net.g_a(x)
        y = x.new_empty(1, self.net.M, h, w)
        s = LATENT_STRIDE
        for (r0, r1, c0, c1), (R0, R1, C0, C1) in latent_tiles(h, w, tile, self.tile_margin):
            part = self.net.g_a(x[:, :, R0 * s:R1 * s, C0 * s:C1 * s])
            y[:, :, r0:r1, c0:c1] = part[:, :, r0 - R0:r1 - R0, c0 - C0:c1 - C0]
        return y

    def _synthesis(self, y_hat: torch.Tensor, height: int, width: int, tile: int = TILE) -> np.ndarray:
        """(height, width, 3) uint8 from ŷ (M, h, w): g_s tile by tile (see TILE)."""
        h, w = y_hat.shape[-2:]
        s = LATENT_STRIDE
        out = np.empty((height, width, 3), np.uint8)
        for (r0, r1, c0, c1), (R0, R1, C0, C1) in latent_tiles(h, w, tile, self.tile_margin):
            rows, cols = min(r1 * s, height) - r0 * s, min(c1 * s, width) - c0 * s
            if rows <= 0 or cols <= 0:
                continue
            x_hat = self.net.g_s(y_hat[None, :, R0:R1, C0:C1].contiguous(memory_format=torch.channels_last))[0]
            x_hat = x_hat[:, (r0 - R0) * s:(r0 - R0) * s + rows, (c0 - C0) * s:(c0 - C0) * s + cols]
            x_hat = torch.nan_to_num(x_hat, nan=0.0).clamp_(0, 1).mul_(255).round_()
            out[r0 * s:r0 * s + rows, c0 * s:c0 * s + cols] = x_hat.to(torch.uint8).permute(1, 2, 0).numpy()
        return out

    def decode_symbols(self, coded: CodedImage) -> dict[str, np.ndarray]:
        """The integer symbols per substream (z under "hyperprior"): for determinism checks."""
        _, symbols = self._decode_latent(coded)
        return symbols

    def _decode_latent(self, coded: CodedImage) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        gmap = self._check_map(coded.group_map, coded.height, coded.width)
        qmap = self._quality_map(gmap, coded.qualities)
        try:
            z_symbols = self.latent.decode_z(coded.hyperprior, self.z_shape(coded.height, coded.width))
            hp = self.latent.hyper_params(z_symbols, self._z_quality(qmap), qmap)
            y_g, symbols = self.latent.decode_groups(coded.groups, hp, gmap)
        except EntropyDecodeError as exc:
            raise BadInputError(str(exc)) from None
        symbols["hyperprior"] = z_symbols
        return torch.from_numpy(y_g).float() * self._inv_gain_map(qmap), symbols


@functools.lru_cache(maxsize=4)
def default_codec(weights: str | None = None) -> SDCCodec:
    """Process-wide codec instance (weights load once)."""
    return SDCCodec(weights)
