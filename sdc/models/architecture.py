"""The network a weights manifest describes, read in one place with one set of defaults.

``manifest.json["architecture"]`` (and a training checkpoint's ``config``, which
uses the same keys) is parsed once into an :class:`Architecture`; the runtime
codec, the torch network, the ONNX export and training all read it from there.
No dependencies.

The reach constants describe how far g_a and g_s see around a latent position:
the runtime needs them to size the margins of its tiles
(:mod:`sdc.models.tiling`), training to place residual blocks.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from sdc.errors import BadInputError

DEFAULT_NUM_QUALITIES = 8

# Positions in g_a and g_s after which residual blocks may sit: after each GDN
# or inverse GDN (g_a: 1: 1/2 of the image's resolution, 3: 1/4, 5: 1/8;
# g_s: 1: 1/8, 3: 1/4, 5: 1/2). A position may repeat: blocks stack there.
RES_POSITIONS = (1, 3, 5)
# Image pixels per feature pixel at each position: a block (two 3x3
# convolutions) there reaches 2 feature pixels, i.e. twice this many image pixels.
G_A_SCALE = {1: 2, 3: 4, 5: 8}
G_S_SCALE = {1: 8, 3: 4, 5: 2}
# Both plain transforms (4 stride-2 5x5 layers; GDN is per pixel) reach 30 image pixels.
PLAIN_REACH_PX = 30
# The architecture keys that place blocks, each with the transform and the kind
# of block it places. The same names are used in manifests, checkpoint configs,
# SDCNet's arguments and attributes, and sdc.training.train's options.
BLOCK_KEYS = {"g_a_res": ("g_a", "residual"), "g_s_res": ("g_s", "residual"), "g_s_pointwise": ("g_s", "pointwise")}


def reach_px(scale: dict[int, int], res_after) -> int:
    """Image pixels around a position that g_a (scale=G_A_SCALE) or g_s (G_S_SCALE) sees
    with residual blocks at `res_after` (the patch bypass sees its own cell only, and
    pointwise blocks their own pixel: neither adds reach)."""
    return PLAIN_REACH_PX + sum(2 * scale[p] for p in res_after)


def declared_num_qualities(architecture: Mapping) -> int | None:
    """Qualities a manifest architecture or checkpoint config declares: num_qualities, else
    the length of its λ list (older files), else None."""
    n = architecture.get("num_qualities") or len(architecture.get("lambdas") or ())
    return int(n) if n else None


@dataclass(frozen=True)
class Architecture:
    """Shapes and options of the codec network.

    Attributes:
        N: channels of the transforms and of z.
        M: channels of y.
        num_qualities: gain pairs, i.e. qualities 1..num_qualities.
        context_slices, context_hidden: the channel-conditional context (0 or 1: none).
        g_a_res, g_s_res, g_s_pointwise: positions of the transforms' extra blocks
            (:data:`BLOCK_KEYS`; empty: none).
        bypass: a linear 16x16 patch path beside g_a and g_s.
        g_s_width: hidden channels of g_s (None: N).
        lambdas: the λ of each quality the weights were trained with (empty: not recorded).
    """

    N: int = 64
    M: int = 96
    num_qualities: int = DEFAULT_NUM_QUALITIES
    context_slices: int = 0
    context_hidden: int = 64
    g_a_res: tuple[int, ...] = ()
    g_s_res: tuple[int, ...] = ()
    g_s_pointwise: tuple[int, ...] = ()
    bypass: bool = False
    g_s_width: int | None = None
    lambdas: tuple[float, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping) -> Architecture:
        """The architecture of a manifest's "architecture" or a checkpoint's "config"
        (unknown keys, such as training options, are ignored)."""
        if not isinstance(data, Mapping):
            raise BadInputError("the weights manifest's architecture is not a JSON object")
        try:
            return cls(
                N=int(data.get("N", cls.N)), M=int(data.get("M", cls.M)),
                num_qualities=declared_num_qualities(data) or DEFAULT_NUM_QUALITIES,
                context_slices=int(data.get("context_slices") or 0),
                context_hidden=int(data.get("context_hidden") or cls.context_hidden),
                bypass=bool(data.get("bypass", False)),
                g_s_width=int(data["g_s_width"]) if data.get("g_s_width") else None,
                lambdas=tuple(float(v) for v in data.get("lambdas") or ()),
                **{key: tuple(int(p) for p in data.get(key) or ()) for key in BLOCK_KEYS})
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"the weights manifest's architecture is malformed ({exc})") from None

    @property
    def blocks(self) -> dict[str, tuple[int, ...]]:
        """The block positions by architecture key (:data:`BLOCK_KEYS`)."""
        return {key: getattr(self, key) for key in BLOCK_KEYS}

    @property
    def has_context(self) -> bool:
        return self.context_slices > 1

    @property
    def reach_px(self) -> int:
        """Image pixels around a position that g_a or g_s sees, whichever is more."""
        return max(reach_px(G_A_SCALE, self.g_a_res), reach_px(G_S_SCALE, self.g_s_res))

    def as_dict(self) -> dict:
        """The manifest form (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
