"""The Python API: images in, .sdc bytes out, and back.

Everything here is also reachable as ``sdc.encode``, ``sdc.decode``,
``sdc.decode_array``, ``sdc.open`` and ``sdc.SdcImage``. The command line
(:mod:`sdc.cli`) and the Pillow plugin go through the same functions, so an
option means the same thing everywhere: ``quality=N`` is ``sdc encode -q N``,
``quality={"L1": 7, "other": 2}`` is ``--quality L1=7,other=2``.

This module holds encoding and decoding; :mod:`sdc.api.inputs` reads what
the functions are given (images, paths, bytes, regions files), and
:mod:`sdc.api.reader` holds :class:`SdcImage`, what :func:`open` returns.

Data flow: an image (PIL image, (H, W, 3) uint8 array, image file bytes or a
path) -> :func:`encode_settings` checks the arguments -> :func:`encode_result`
turns the image into an RGB array, reads the regions if any, and calls
:func:`sdc.pipeline.encode_image` (analysis, codec, container) -> .sdc bytes.
.sdc bytes (or a path, or any prefix of a file that holds its HYPR chunk) ->
:func:`decode_result` checks the header without loading a model, then
:func:`sdc.pipeline.decode_sdc` -> RGB array.

Importing this module is cheap (no torch, numpy or PIL): they are imported
inside the functions that need them. Every error is an :class:`sdc.errors.SdcError`
with a one-line message: :class:`~sdc.errors.UsageError` for arguments,
:class:`~sdc.errors.BadInputError` (and its :class:`~sdc.errors.FormatError`)
for images and files.

A tour on the shipped sample (``samples/astronaut.png``, 512x512):

>>> import sdc
>>> data = sdc.encode("samples/astronaut.png", quality=3, task="object detection")
>>> img = sdc.open(data)
>>> img.size, img.coded_size      # the detection preset codes half the size ...
((512, 512), (256, 256))
>>> img.qualities["L1"]          # ... two qualities up
5
>>> any(o.label == "person" for o in img.objects)
True
>>> small = img.truncate("L1")   # drop every level but L1; no model is loaded
>>> len(small) < len(data), sdc.open(small).levels, sdc.open(small).missing_levels
(True, ('L1',), ('L2',))
>>> sdc.decode(small).size       # the missing regions come from the hyperprior
(512, 512)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from sdc.errors import UsageError
from sdc.levels import DEFAULT_QUALITY, LEVELS, parse_levels

from .inputs import (DEFAULT_MAX_PIXELS, ImageSource, Levels, SdcSource, level_names, read_file, read_image,
                     read_regions, refuse_sdc, rgb_array, sdc_bytes)
from .reader import SdcImage, SdcObject, open

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from sdc.pipeline import DecodeResult, EncodeResult

__all__ = ["encode", "decode", "decode_array", "open", "SdcImage", "SdcObject",
           "EncodeSettings", "encode_settings", "encode_result", "decode_settings", "decode_result",
           "read_file", "read_image", "read_regions", "refuse_sdc", "check_analyzer", "DEFAULT_MAX_PIXELS"]


# ---------------------------------------------------------------- encoding
@dataclass(frozen=True)
class EncodeSettings:
    """Checked encoder arguments, the keyword arguments of :func:`sdc.pipeline.encode_image`
    except the image and its analysis: ``pipeline.encode_image(rgb, **settings.kwargs(), analysis=...)``."""

    quality: Mapping[str, Any]  # {"q": N} (the task's preset spreads it) or {"qualities": {level: N}}
    keep_levels: tuple[str, ...]
    analyzer: str
    task: str | None
    analysis_config: Mapping[str, Any] | None
    include_meta: bool
    effort: int

    def kwargs(self) -> dict:
        return {**self.quality, "keep_levels": self.keep_levels, "analyzer": self.analyzer, "task": self.task,
                "analysis_config": self.analysis_config, "include_meta": self.include_meta,
                "effort": self.effort}


def check_analyzer(analyzer: str) -> None:
    """UsageError unless `analyzer` names one of :data:`sdc.analysis.ANALYZERS`.

    >>> from sdc import api
    >>> api.check_analyzer("offline")
    >>> api.check_analyzer("yolo9000")
    Traceback (most recent call last):
    ...
    sdc.errors.UsageError: unknown analyzer 'yolo9000': expected one of auto, offline, ...
    """
    from sdc.analysis import ANALYZERS

    if analyzer not in ANALYZERS:
        raise UsageError(f"unknown analyzer {analyzer!r}: expected one of {', '.join(ANALYZERS)}")


def _quality(quality: int | Mapping[str, int] | None, task: str | None) -> dict:
    """`quality` -> {"q": N} when a task's preset spreads it, else {"qualities": {level: N}};
    every value is checked against the qualities the shipped weights declare."""
    from sdc.models.weights import manifest_num_qualities

    n_q = manifest_num_qualities()  # read from the manifest: no model loads for a bad quality
    top = f"1..{n_q}" if n_q else "1 and up"

    def checked(v, where: str) -> int:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise UsageError(f"quality{where} must be an integer {top}, not {v!r}")
        if v < 1 or (n_q and v > n_q):
            raise UsageError(f"quality {v}{where} is out of range: this codec has qualities {top}")
        return int(v)

    if quality is None or not isinstance(quality, Mapping):
        q = checked(DEFAULT_QUALITY if quality is None else quality, "")
        return {"q": q} if task else {"qualities": {lv: q for lv in LEVELS}}
    qualities = {lv: DEFAULT_QUALITY for lv in LEVELS}
    for name, v in quality.items():
        try:
            (level,) = parse_levels(str(name))
        except ValueError:
            raise UsageError(f"quality: unknown level {name!r}: expected one of {', '.join(LEVELS)}") from None
        qualities[level] = checked(v, f" for {level}")
    return {"qualities": qualities}


def encode_settings(*, quality: int | Mapping[str, int] | None = None, task: str | None = None,
                    levels: Levels = None, analyzer: str = "auto", effort: int = 1, metadata: bool = True,
                    analysis_config: Mapping[str, Any] | None = None) -> EncodeSettings:
    """Check :func:`encode`'s arguments (same meanings) without touching an image or a file.

    Raises UsageError on the first bad one; an effort of 2 or more without torch
    installed is one (the refining encoder runs on torch).

    >>> from sdc import api
    >>> api.encode_settings(quality=3, task="object detection").kwargs()["q"]
    3
    >>> api.encode_settings(quality={"L1": 7, "other": 2}).kwargs()["qualities"]["other"]
    2
    >>> api.encode_settings(quality=99)
    Traceback (most recent call last):
    ...
    sdc.errors.UsageError: quality 99 is out of range: this codec has qualities 1..8
    """
    from sdc.pipeline import refine_steps

    quality_kwargs = _quality(quality, task)
    keep = level_names(levels)
    check_analyzer(analyzer)
    if isinstance(effort, bool) or not isinstance(effort, int):
        raise UsageError(f"effort must be an integer, not {effort!r}")
    refine_steps(effort)  # UsageError "effort must be 1..4"
    return EncodeSettings(quality_kwargs, keep, analyzer, task, analysis_config, bool(metadata), effort)


def encode_result(image: ImageSource, settings: EncodeSettings, *, regions: Any = None,
                  file_name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "EncodeResult":
    """Encode one image with checked settings; the whole :class:`sdc.pipeline.EncodeResult`
    (bytes, the analysis used, timings).

    regions: instead of running the analyzer, an :class:`sdc.analysis.Analysis`,
    the parsed JSON of an analysis or of COCO annotations, or the path of such a
    file. `file_name` picks the image's entry in a COCO file (default: the
    name of `image` when it is a path).

    >>> import numpy as np
    >>> from sdc import api
    >>> result = api.encode_result(np.zeros((64, 96, 3), np.uint8), api.encode_settings(quality=2),
    ...                            regions={"width": 96, "height": 64, "objects": []})
    >>> result.data[:4], sorted(result.timings)
    (b'\\x89SDC', ['analysis', 'codec', 'container'])
    """
    from sdc import pipeline

    rgb = rgb_array(image, max_pixels)
    analysis = None
    if regions is not None:
        from sdc.analysis import Analysis, load_regions

        if isinstance(regions, (str, os.PathLike)):
            regions = read_regions(regions)
        if isinstance(image, (str, os.PathLike)) and file_name is None:
            file_name = Path(image).name
        analysis = regions if isinstance(regions, Analysis) else \
            load_regions(regions, rgb.shape[1], rgb.shape[0], file_name=file_name)
    return pipeline.encode_image(rgb, **settings.kwargs(), analysis=analysis)


def encode(image: ImageSource, *, quality: int | Mapping[str, int] | None = None, task: str | None = None,
           levels: Levels = None, regions: Any = None, analyzer: str = "auto", effort: int = 1,
           metadata: bool = True, analysis_config: Mapping[str, Any] | None = None,
           max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bytes:
    """Encode an image into .sdc bytes (``sdc encode``).

    image: a PIL image (converted to RGB), an (H, W, 3) uint8 array, the bytes
        of an image file, or a path.
    quality: an int 1..N (N: the weights' quality count). Without `task` every
        level is coded at it; with `task` the task's preset spreads it over the
        levels (``sdc encode --task T -q N``). A dict such as
        ``{"L1": 7, "other": 2}`` sets levels by hand (others at the default, 5)
        and turns the preset off. Default: 5.
    task: what the decoded image is for ("object detection", "classification",
        "segmentation" or any text); steers the analysis and picks the preset.
    levels: keep only these levels' substreams: "L1,L2", ["L1", "L2"] or None (all).
    regions: use these regions instead of the analyzer (see :func:`encode_result`).
    analyzer: "auto" or a name from :data:`sdc.analysis.ANALYZERS`.
    effort: 1..4; 2 and up refine the latent first (slower, smaller files).
    metadata: False leaves the semantic metadata (objects, captions) out.
    analysis_config: overrides of the analysis config (spec/ANALYSIS.md).
    max_pixels: refuse larger images (None: no limit).

    >>> import numpy as np, sdc
    >>> rgb = np.zeros((64, 96, 3), np.uint8); rgb[16:48, 24:72] = (200, 30, 30)
    >>> no_objects = {"width": 96, "height": 64, "objects": []}   # skip the analyzer
    >>> data = sdc.encode(rgb, quality={"L1": 7, "other": 2}, regions=no_objects)
    >>> data[:4], sdc.open(data).qualities
    (b'\\x89SDC', {'L1': 7, 'L2': 5, 'L3': 5, 'other': 2})
    >>> sdc.encode(rgb, quality=99)
    Traceback (most recent call last):
    sdc.errors.UsageError: quality 99 is out of range: this codec has qualities 1...
    """
    settings = encode_settings(quality=quality, task=task, levels=levels, analyzer=analyzer, effort=effort,
                               metadata=metadata, analysis_config=analysis_config)
    return encode_result(image, settings, regions=regions, max_pixels=max_pixels).data


# ---------------------------------------------------------------- decoding
def decode_settings(*, levels: Levels = None, composer: str | None = None) -> dict:
    """Check :func:`decode`'s arguments; the keyword arguments of :func:`sdc.pipeline.decode_sdc`.

    >>> from sdc import api
    >>> api.decode_settings(levels="L2,L1")
    {'levels': ('L1', 'L2'), 'composer': None}
    >>> api.decode_settings(composer="paint")
    Traceback (most recent call last):
    ...
    sdc.errors.UsageError: unknown composer 'paint': expected one of ...
    """
    keep = level_names(levels)
    if composer is not None:
        from sdc.compose import COMPOSERS

        if not isinstance(composer, str) or composer.strip().lower() not in COMPOSERS:
            raise UsageError(f"unknown composer {composer!r}: expected one of {', '.join(COMPOSERS)}")
    return {"levels": None if keep == LEVELS else keep, "composer": composer}


def decode_result(data: SdcSource, settings: dict | None = None, *,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "DecodeResult":
    """Decode .sdc bytes with checked settings (:func:`decode_settings`); the whole
    :class:`sdc.pipeline.DecodeResult` (pixels, decoded and missing levels, the parsed file).

    The header is checked (magic, size against `max_pixels`) before any model loads.

    >>> import numpy as np, sdc
    >>> from sdc import api
    >>> data = sdc.encode(np.zeros((64, 96, 3), np.uint8), quality=2,
    ...                   regions={"width": 96, "height": 64, "objects": []})
    >>> result = api.decode_result(data, api.decode_settings(levels="L1"))
    >>> result.rgb.shape, result.decoded_levels, result.missing_levels
    ((64, 96, 3), (), ())
    """
    from sdc.bitstream import read_header

    data = sdc_bytes(data)
    read_header(data, max_pixels=max_pixels)
    from sdc import pipeline

    return pipeline.decode_sdc(data, **(settings or decode_settings()), max_pixels=max_pixels)


def decode_array(data: SdcSource, *, levels: Levels = None, composer: str | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "np.ndarray":
    """Decode .sdc bytes (or a path, or a prefix of a file) into an (H, W, 3) uint8 array.

    levels: decode only these ("L1", "L1,L2", a list, or None for all the data
        holds); the regions of the others are predicted from the hyperprior.
    composer: fill those regions for human eyes: "smooth", "learned", "diffusion", "auto"
        or "none" (:mod:`sdc.compose`).

    >>> import numpy as np, sdc
    >>> rgb = np.full((48, 80, 3), 120, np.uint8)
    >>> data = sdc.encode(rgb, regions={"width": 80, "height": 48, "objects": []})
    >>> out = sdc.decode_array(data)
    >>> out.shape, out.dtype, bool(np.abs(out.astype(int) - 120).mean() < 4)
    ((48, 80, 3), dtype('uint8'), True)
    >>> sdc.decode_array(b"GIF89a" + bytes(30))
    Traceback (most recent call last):
    sdc.errors.FormatError: not an sdc file (it looks like a GIF image)
    """
    settings = decode_settings(levels=levels, composer=composer)
    return decode_result(data, settings, max_pixels=max_pixels).rgb


def decode(data: SdcSource, *, levels: Levels = None, composer: str | None = None,
           max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "Image.Image":
    """Decode .sdc bytes (or a path, or a prefix of a file) into an RGB PIL image.

    Arguments as for :func:`decode_array`.

    >>> import numpy as np, sdc
    >>> rgb = np.full((40, 56, 3), 200, np.uint8)
    >>> im = sdc.decode(sdc.encode(rgb, quality=2, regions={"width": 56, "height": 40, "objects": []}))
    >>> im.mode, im.size
    ('RGB', (56, 40))
    """
    from PIL import Image

    return Image.fromarray(decode_array(data, levels=levels, composer=composer, max_pixels=max_pixels))
