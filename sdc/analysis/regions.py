"""`load_regions`: an analysis from a file, for `sdc encode --regions`.

Accepts an sdc analysis JSON (spec/ANALYSIS.md) or COCO-style JSON:
a dataset ({"images", "annotations", "categories"}), a bare list of
annotations, or {"annotations": [...]}. Annotations have `bbox` [x, y, w, h]
and optionally `segmentation` (polygons, or RLE with string or list counts),
`category_id`, `score`, and an sdc `level` ("L1".."L3"). Annotations
without a level are ranked by the heuristic ranker.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from sdc.errors import BadInputError

from . import rle
from .core import FORMAT_NAME, Analysis, DetectedObject, clip_box
from .ranking import heuristic_rank


def _polygons_mask(polys, width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(img)
    for p in polys:
        if not isinstance(p, list) or len(p) < 6 or len(p) % 2 or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in p):
            raise ValueError("a polygon must be a flat list of at least 3 x, y pairs")
        d.polygon([float(v) for v in p], fill=1, outline=1)
    return np.asarray(img, dtype=bool)


def _pick_image(images: list, width: int, height: int, file_name: str | None) -> dict:
    if not all(isinstance(im, dict) for im in images):
        raise BadInputError("regions: every entry of 'images' must be an object")
    if file_name:
        base = os.path.basename(file_name)
        named = [im for im in images if os.path.basename(str(im.get("file_name", ""))) == base]
        if len(named) == 1:
            return named[0]
    sized = [im for im in images if im.get("width") == width and im.get("height") == height]
    if len(sized) == 1:
        return sized[0]
    if len(images) == 1:
        return images[0]
    if not sized:
        raise BadInputError(f"regions: no image entry of {width}x{height} among {len(images)} images")
    raise BadInputError(f"regions: {len(sized)} image entries are {width}x{height}; "
                        "cannot tell which one is this image (name it by file name)")


def _from_coco(d, width: int, height: int, file_name: str | None) -> Analysis:
    if isinstance(d, list):
        anns, images, cats = d, None, []
    else:
        anns, images, cats = d.get("annotations"), d.get("images"), d.get("categories") or []
    if not isinstance(anns, list):
        raise BadInputError("regions: 'annotations' must be a list")
    if not isinstance(cats, list):
        raise BadInputError("regions: 'categories' must be a list")
    names = {c.get("id"): str(c.get("name")) for c in cats if isinstance(c, dict) and "name" in c}
    if isinstance(images, list) and images:
        im = _pick_image(images, width, height, file_name)
        iw, ih = im.get("width", width), im.get("height", height)
        if (iw, ih) != (width, height):
            raise BadInputError(f"regions: the image entry is {iw}x{ih}, the image is {width}x{height}")
        anns = [a for a in anns if isinstance(a, dict) and a.get("image_id", im.get("id")) == im.get("id")]
    else:
        ids = {a.get("image_id") for a in anns if isinstance(a, dict)}
        if len(ids) > 1:
            raise BadInputError(f"regions: annotations for {len(ids)} images and no 'images' list to pick one")
    objects = []
    explicit_levels = True
    for k, a in enumerate(anns):
        where = f"regions: annotation {k}"
        if not isinstance(a, dict):
            raise BadInputError(f"{where} is not an object")
        bbox = a.get("bbox")
        seg = a.get("segmentation")
        mask = None
        try:
            if isinstance(seg, list) and seg:
                mask = _polygons_mask(seg, width, height)
            elif isinstance(seg, dict):
                mask = rle.decode(seg)
                if mask.shape != (height, width):
                    raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
        except ValueError as e:
            raise BadInputError(f"{where}: bad segmentation: {e}") from None
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
            x, y, w, h = (float(v) for v in bbox)
            if w < 0 or h < 0:
                raise BadInputError(f"{where}: bbox has a negative size")
            box = (x, y, x + w, y + h)
        elif mask is not None and mask.any():
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        else:
            raise BadInputError(f"{where}: needs 'bbox' [x, y, w, h] or a segmentation")
        box = clip_box(box, width, height)
        cid = a.get("category_id")
        label = str(a.get("label") or names.get(cid) or (f"category {cid}" if cid is not None else "object"))
        score = a.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise BadInputError(f"{where}: 'score' must be a number")
        level = a.get("level")
        if level is not None and level not in ("L1", "L2", "L3"):
            raise BadInputError(f"{where}: level {level!r} is not L1, L2 or L3")
        explicit_levels &= level is not None
        objects.append(DetectedObject(id=len(objects), label=label, box=box, score=float(score),
                                      level=level or "L3", mask=mask, source="regions:coco"))
    todo = [o for o, a in zip(objects, anns) if a.get("level") is None]
    if todo:
        heuristic_rank(todo, width, height)
    return Analysis(width=width, height=height, objects=objects,
                    analyzer="regions(coco)/" + ("given" if explicit_levels else "heuristic"))


def load_regions(source: str | dict | list, width: int, height: int,
                 file_name: str | None = None) -> Analysis:
    """An analysis for a `width` x `height` image from an sdc analysis JSON or COCO-style JSON.

    `source` is a path or the parsed JSON. `file_name` (the image's file name)
    picks the entry of a COCO dataset with several images; otherwise the
    entry of this size, or the single entry, is used. Raises
    sdc.errors.BadInputError with a one-line message on anything else.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, encoding="utf-8") as f:
                d = json.load(f)
        except OSError as e:
            raise BadInputError(f"regions: cannot read {source}: {e.strerror}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInputError(f"regions: {source} is not JSON ({str(e)[:120]})") from None
    else:
        d = source
    if isinstance(d, dict) and (d.get("format") == FORMAT_NAME or "objects" in d):
        a = Analysis.from_json(d)
        if (a.width, a.height) != (width, height):
            raise BadInputError(f"regions: the analysis is for a {a.width}x{a.height} image, "
                                f"this image is {width}x{height}")
        return a
    if isinstance(d, list) or (isinstance(d, dict) and "annotations" in d):
        return _from_coco(d, width, height, file_name)
    raise BadInputError("regions: neither an sdc analysis (spec/ANALYSIS.md) nor COCO-style JSON")
