"""The image codec the rest of sdc calls.

``SDCCodec.encode(rgb, group_map, qualities)`` turns an RGB image and a
latent-resolution group map into a hyperprior substream and one substream per
group; ``SDCCodec.decode(...)`` turns the hyperprior and any subset of group
substreams back into an RGB image, filling absent groups with the
hyperprior's predicted mean. Quality is per group: each latent position is
coded with the gain of its group's quality.

::

    rgb ─pad─▶ g_a ─▶ y ─▶ h_a ─▶ z          float transforms: ONNX Runtime (default) or torch
    y·g, z ─▶ GroupedLatentCodec ─▶ bytes    integer-exact, numpy (sdc.models.latent_codec)
    bytes ─▶ GroupedLatentCodec ─▶ ŷ ─▶ g_s ─▶ rgb

The two runtimes run the same transforms (the ONNX files are exported from
the weights the torch ones load), and everything between them is integer, so a
file made by either decodes to the same symbols with either, and to pixels
within one code value. The default runtime imports no torch; torch is needed
for the refining encoder (``--effort`` 2 and up), training and export.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdc.errors import BadInputError, UsageError
from sdc.geometry import latent_shape
from sdc.levels import LEVELS
from sdc.models.architecture import Architecture
from sdc.models.entropy_coder import EntropyDecodeError
from sdc.models.latent_codec import GroupedLatentCodec
from sdc.models.tiling import TILE, analysis_tiled, latent_tiles, padded_input, synthesis_tiled, tile_margin
from sdc.models.weights import default_weights_dir, load_runtime_tables, load_weights

RUNTIMES = ("onnx", "torch")
TORCH_INSTALL = "pip install torch==2.14.1 torchvision==0.29.1 compressai==1.2.8 (or sdc's [train] extra)"


def require_torch(what: str):
    """torch, or a UsageError that says in one line what needs it and how to install it."""
    try:
        import torch
    except ImportError:
        raise UsageError(f"{what} needs torch, which is not installed: {TORCH_INSTALL}") from None
    return torch


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


class SDCCodec:
    """Loads shipped weights (hash-checked) and codes images.

    Args:
        weights: directory with sdc.safetensors + manifest.json (default: see
            :func:`sdc.models.weights.default_weights_dir`).
        runtime: "onnx" (the default with a weights directory: the exported
            transforms on ONNX Runtime) or "torch" (the default with `tensors`).
        tensors, manifest: already loaded weights (tests, export); they have no
            ONNX files, so they run on torch.
        threads: ONNX Runtime's threads (default: the cores this process may use).
    """

    refine_tile = TILE  # latent tile of the refinement (memory of its backward pass grows with the tile)

    def __init__(self, weights: str | Path | None = None, *, runtime: str | None = None, tensors=None,
                 manifest=None, threads: int | None = None):
        runtime = runtime or ("torch" if tensors is not None else "onnx")
        if runtime not in RUNTIMES:
            raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime == "onnx" and tensors is not None:
            raise UsageError("the onnx runtime loads a weights directory, not tensors")
        self.runtime = runtime
        self.weights_dir = Path(weights) if weights else (None if tensors is not None else default_weights_dir())
        if tensors is None:  # the onnx runtime reads only its tables; torch needs the float network too
            tensors, manifest = (load_runtime_tables if runtime == "onnx" else load_weights)(self.weights_dir)
        self.manifest = manifest or {}
        self.arch = Architecture.from_dict(self.manifest.get("architecture", {}))
        self.num_qualities = self.arch.num_qualities
        self.tile_margin = tile_margin(self.arch.reach_px)
        try:
            self.latent = GroupedLatentCodec(tensors, self.arch.context_slices)
            self._inv_gain = np.exp(np.asarray(tensors["log_inv_gain"], dtype=np.float32))  # (Q, M) g'
            if self._inv_gain.shape != (self.arch.num_qualities, self.arch.M):
                raise ValueError(f"g' has shape {self._inv_gain.shape}")
        except (KeyError, ValueError) as exc:
            raise BadInputError(f"codec weights do not fit the architecture in their manifest ({exc})") from None
        if runtime == "torch":
            self._torch_tensors = tensors
            self.transforms = self._torch_transforms()
        else:
            from sdc.models.onnx_transforms import OnnxTransforms

            self._torch_tensors = None  # the float network, read from the weights file if the refiner needs it
            self.transforms = OnnxTransforms(self.weights_dir, threads)
            self.transforms.check()
        sha = self.manifest.get("sha256", "0" * 16)
        self.codec_id = bytes.fromhex(sha[:16])

    def _torch_transforms(self):
        from sdc.training.torch_transforms import TorchTransforms

        try:
            return TorchTransforms(self._torch_tensors, self.arch)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise BadInputError(f"codec weights do not fit the architecture in their manifest ({exc})") from None

    @functools.cached_property
    def net(self):
        """The torch InferenceNet (g_a, h_a, g_s): the refiner differentiates through its g_s."""
        require_torch("the torch transforms")
        if self.runtime == "torch":
            return self.transforms.net
        self._torch_tensors, _ = load_weights(self.weights_dir)
        return self._torch_transforms().net

    @functools.cached_property
    def refiner(self):
        """The encoder's latent refinement (built on first use: it needs torch, the float context and h_s)."""
        require_torch("encoder refinement (--effort 2 and up)")
        from sdc.training.refine import build_refiner
        from sdc.training.torch_transforms import as_torch

        g_s = self.net.g_s
        return build_refiner(as_torch(self._torch_tensors), self.arch, g_s, self.latent.z_median)

    # -- helpers ------------------------------------------------------------------
    def _quality_map(self, group_map: np.ndarray, qualities: dict[str, int]) -> np.ndarray:
        """(h, w) int64 0-based quality of each latent position."""
        q = np.array([qualities[lv] for lv in LEVELS], dtype=np.int64)
        if q.min() < 1 or q.max() > self.num_qualities:
            raise UsageError(f"quality must be 1..{self.num_qualities}, got {dict(qualities)}")
        return q[group_map] - 1

    def _inv_gain_map(self, qmap: np.ndarray) -> np.ndarray:
        """(M, h, w) float32 g' of each position's quality, for g_s."""
        return self._inv_gain[qmap].transpose(2, 0, 1)

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
        return (self.arch.N, h // 4, w // 4)

    @staticmethod
    def _z_quality(qmap: np.ndarray) -> int:
        """0-based quality of z: the highest quality of any position (decoder derives it too)."""
        return int(qmap.max()) if qmap.size else 0

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

    # -- API ----------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, group_map: np.ndarray, qualities: dict[str, int],
               levels: tuple[str, ...] = LEVELS, refine_steps: int | Sequence[int] = 0,
               joint_steps: int = 0, flat_hyperprior: bool = False) -> CodedImage:
        """rgb: (H, W, 3) uint8; group_map: latent-resolution LEVELS indexes.

        flat_hyperprior: code ẑ as its median (symbol 0, nearly free) outside
        :meth:`hyperprior_support` of `levels`; positions of other levels then decode
        to a flat prediction instead of a blurred picture. The file format is the
        same: this only chooses the symbols.

        joint_steps, refine_steps: steps of encoder-side refinement (:mod:`sdc.training.refine`,
        which needs torch) of ẑ and y together (only when the latent fits one refinement
        tile), then of y alone, one run per length when refine_steps is a sequence; 0 and 0
        code g_a's latents as they are. With refinement the file kept is the cheapest
        (:meth:`rd_cost`) of g_a's latents, y refined alone from them and, with
        joint_steps, ẑ and y refined together and then y alone. The file format is
        the same either way.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInputError("expected an RGB uint8 image")
        lengths = [n for n in ((refine_steps,) if isinstance(refine_steps, int) else refine_steps) if n > 0]
        if joint_steps or lengths:
            require_torch("encoder refinement (--effort 2 and up)")
        height, width = rgb.shape[:2]
        gmap = self._check_map(group_map, height, width)
        qmap = self._quality_map(gmap, qualities)
        x = padded_input(rgb)
        y = analysis_tiled(self.transforms.analysis, x, self.arch.M, self.tile_margin)
        z = self.transforms.hyper_analysis(y)[0]
        qz = self._z_quality(qmap)
        gains = self.latent.gains(qmap)
        y_gained = y[0].astype(np.float64) * gains
        z_support = self.hyperprior_support(gmap, levels) if flat_hyperprior else None

        def code_z(symbols: np.ndarray) -> tuple[bytes, np.ndarray]:
            if z_support is not None:
                symbols = np.where(z_support, symbols, 0)
            return self.latent.encode_z_symbols(symbols)

        def coded(hyper: bytes, hp, y) -> CodedImage:
            groups, _ = self.latent.encode_groups(y, hp, gmap, levels)
            return CodedImage(height, width, dict(qualities), gmap.astype(np.uint8), hyper, groups)

        hyper, z_symbols = code_z(np.round(self.latent.z_unrounded(z, qz)).astype(np.int64))
        hp = self.latent.hyper_params(z_symbols, qz, qmap)
        plain = coded(hyper, hp, y_gained)
        if not (joint_steps or lengths):
            return plain
        candidates = [plain, *self._refined(rgb, x, y_gained, z, hyper, hp, gmap, qmap, qz, gains, lengths,
                                            joint_steps, code_z, coded)]
        # Refinement descends a relaxed objective and can end above where it
        # started (seen on small crops, and for the joint phase, which then lost
        # to y alone: docs/experiments.md), so the file kept is the one
        # with the lowest real cost of all runs. Each run is seeded, and each
        # effort's runs include the lower efforts' (EFFORT_STEPS), so a higher
        # effort is never worse than a lower one.
        costs = [self.rd_cost(c, rgb) for c in candidates]
        return candidates[int(np.argmin(costs))]

    def _refined(self, rgb, x, y_gained, z, hyper, hp, gmap, qmap, qz, gains, lengths, joint_steps, code_z, coded):
        """The refined candidates of :meth:`encode`: y alone from g_a's y, and with
        joint_steps, ẑ and y together and then y alone."""
        import torch

        height, width = rgb.shape[:2]
        x = torch.from_numpy(x[0])
        inv_gain = self._inv_gain_map(qmap)
        tiles = list(latent_tiles(*gmap.shape, self.refine_tile, self.tile_margin))

        def y_refined(hyper: bytes, hp, y_start) -> list[CodedImage]:
            return [coded(hyper, hp, self.refiner.refine(x, y_start, hp.means, hp.scales, inv_gain,
                                                         qmap, height, width, n, tiles)) for n in lengths]

        candidates = y_refined(hyper, hp, y_gained)
        if joint_steps > 0 and max(gmap.shape) <= self.refine_tile and self.refiner.hyper is not None:
            y_joint, z_joint = self.refiner.refine_jointly(
                x, y_gained, self.latent.z_unrounded(z, qz), self.latent.z_gain(qz), gains,
                inv_gain, qmap, height, width, joint_steps)
            hyper_joint, z_joint = code_z(z_joint.numpy())
            hp_joint = self.latent.hyper_params(z_joint, qz, qmap)
            candidates += y_refined(hyper_joint, hp_joint, y_joint) or [coded(hyper_joint, hp_joint, y_joint)]
        return candidates

    def rd_cost(self, coded: CodedImage, rgb: np.ndarray) -> float:
        """The training objective on a real file: mean over pixels of λ·255²·MSE (λ of each
        pixel's quality, spread as the refiner spreads it) + hyperprior and group bits per pixel."""
        from sdc.training.refine import LatentRefiner

        height, width = rgb.shape[:2]
        qmap = self._quality_map(coded.group_map, coded.qualities)
        lam = LatentRefiner._per_pixel(LatentRefiner._pixel_lambdas(qmap), height, width).double().numpy()
        err = ((self.decode(coded).astype(np.float64) - rgb) / 255.0) ** 2
        bits = 8 * coded.payload_bytes
        return float((lam * err.mean(2)).mean()) + bits / (height * width)

    def decode(self, coded: CodedImage) -> np.ndarray:
        """(H, W, 3) uint8 from the hyperprior and whichever groups `coded` holds."""
        y_hat, _ = self._decode_latent(coded)
        return self._synthesis(y_hat, coded.height, coded.width)

    def _analysis(self, x: np.ndarray, tile: int = TILE) -> np.ndarray:
        """g_a of a padded (1, 3, H, W) image, tile by tile (:mod:`sdc.models.tiling`)."""
        return analysis_tiled(self.transforms.analysis, x, self.arch.M, self.tile_margin, tile)

    def _synthesis(self, y_hat: np.ndarray, height: int, width: int, tile: int = TILE) -> np.ndarray:
        """(height, width, 3) uint8 from ŷ (M, h, w): g_s tile by tile (:mod:`sdc.models.tiling`)."""
        return synthesis_tiled(self.transforms.synthesis, y_hat, height, width, self.tile_margin, tile)

    def decode_symbols(self, coded: CodedImage) -> dict[str, np.ndarray]:
        """The integer symbols per substream (z under "hyperprior"): for determinism checks."""
        _, symbols = self._decode_latent(coded)
        return symbols

    def _decode_latent(self, coded: CodedImage) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        gmap = self._check_map(coded.group_map, coded.height, coded.width)
        qmap = self._quality_map(gmap, coded.qualities)
        try:
            z_symbols = self.latent.decode_z(coded.hyperprior, self.z_shape(coded.height, coded.width))
            hp = self.latent.hyper_params(z_symbols, self._z_quality(qmap), qmap)
            y_g, symbols = self.latent.decode_groups(coded.groups, hp, gmap)
        except EntropyDecodeError as exc:
            raise BadInputError(str(exc)) from None
        symbols["hyperprior"] = z_symbols
        return y_g.astype(np.float32) * self._inv_gain_map(qmap), symbols


@functools.lru_cache(maxsize=4)
def default_codec(weights: str | None = None) -> SDCCodec:
    """Process-wide codec instance (weights load once)."""
    return SDCCodec(weights)
