"""Reading an .sdc file without a model: :class:`SdcImage` and :func:`open`."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .inputs import DEFAULT_MAX_PIXELS, Levels, SdcSource, level_names, sdc_bytes

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


class SdcObject(NamedTuple):
    """One object of an .sdc file's metadata; fields of the wrong type read as None."""

    label: str | None
    level: str | None  # "L1", "L2" or "L3"
    score: float | None
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 in pixels
    reason: str | None  # why the ranker put it at that level


class SdcImage:
    """An .sdc file read and checked (every chunk's CRC), without loading a model.

    data: the file's bytes. width, height, size: the decoded image's (the original
    size, when a task preset coded a smaller picture: coded_size is then that
    picture's, and objects' boxes are given in the decoded image). levels: the
    levels whose substreams are present, in stream order. missing_levels:
    written by the encoder but not in these bytes (cut short or truncated).
    qualities: each level's quality. objects, captions, analyzer, task: from
    the semantic metadata (empty or None when the file has none).

    >>> import numpy as np, sdc
    >>> rgb = np.zeros((64, 64, 3), np.uint8)
    >>> boxes = {"width": 64, "height": 64, "objects": [
    ...     {"label": "dog", "box": [0, 0, 32, 32], "score": 0.9, "level": "L1"}]}
    >>> img = sdc.open(sdc.encode(rgb, regions=boxes))
    >>> img
    <SdcImage 64x64, levels L1,other>
    >>> [(o.label, o.level, o.box) for o in img.objects]
    [('dog', 'L1', (0.0, 0.0, 32.0, 32.0))]
    >>> sdc.open(img.truncate("other")).missing_levels
    ('L1',)
    >>> img.decode(levels="L1").size
    (64, 64)
    """

    def __init__(self, data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        from sdc.bitstream import read_sdc
        from sdc.bitstream.metadata import summarize_metadata

        self.data = bytes(data)
        self.max_pixels = max_pixels
        f = read_sdc(self.data, max_pixels=max_pixels)
        self.coded_size: tuple[int, int] = (f.header.width, f.header.height)
        self.width, self.height = f.display_size or self.coded_size
        sx, sy = self.width / self.coded_size[0], self.height / self.coded_size[1]
        self.qualities: dict[str, int] = dict(f.header.qualities)
        self.codec_id: str = f.header.codec_id.hex()
        self.levels: tuple[str, ...] = tuple(f.levels)
        self.missing_levels: tuple[str, ...] = tuple(f.missing_levels)
        meta = summarize_metadata(f.metadata) if f.metadata is not None else None
        self.has_metadata = meta is not None
        meta = meta or {"objects": [], "captions": {}, "analyzer": None, "task": None}
        self.objects: tuple[SdcObject, ...] = tuple(
            SdcObject(o["label"], o["level"], o["score"],
                      tuple(v * s for v, s in zip(o["box"], (sx, sy, sx, sy))) if o["box"] else None, o["reason"])
            for o in meta["objects"])
        self.captions: dict[str, str] = dict(meta["captions"])
        self.analyzer: str | None = meta["analyzer"]
        self.task: str | None = meta["task"]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL's ``Image.size``."""
        return self.width, self.height

    def truncate(self, levels: Levels) -> bytes:
        """A complete .sdc file keeping only `levels` ("L1", "L1,L2" or a list); the others
        are dropped at the byte level and reported missing by readers."""
        from sdc.bitstream import truncate_sdc

        return truncate_sdc(self.data, level_names(levels))

    def decode(self, levels: Levels = None, composer: str | None = None) -> "Image.Image":
        """The image, as :func:`sdc.decode`."""
        from . import decode

        return decode(self.data, levels=levels, composer=composer, max_pixels=self.max_pixels)

    def decode_array(self, levels: Levels = None, composer: str | None = None) -> "np.ndarray":
        """The image as an (H, W, 3) uint8 array, as :func:`sdc.decode_array`."""
        from . import decode_array

        return decode_array(self.data, levels=levels, composer=composer, max_pixels=self.max_pixels)

    def __repr__(self) -> str:
        levels = ",".join(self.levels) or "none"
        missing = f", missing {','.join(self.missing_levels)}" if self.missing_levels else ""
        return f"<SdcImage {self.width}x{self.height}, levels {levels}{missing}>"


def open(source: SdcSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SdcImage:  # noqa: A001
    """Read an .sdc file (a path, or its bytes) into an :class:`SdcImage`; no model is loaded.

    A damaged or foreign file raises :class:`~sdc.errors.FormatError`.

    >>> import sdc
    >>> data = sdc.encode("samples/astronaut.png", quality=3, task="object detection")
    >>> img = sdc.open(data)
    >>> img.size, img.coded_size, img.levels
    ((512, 512), (256, 256), ('L1', 'L2'))
    >>> sdc.open(b"not an sdc file")
    Traceback (most recent call last):
    ...
    sdc.errors.FormatError: not an sdc file ...
    """
    return SdcImage(sdc_bytes(source), max_pixels=max_pixels)
