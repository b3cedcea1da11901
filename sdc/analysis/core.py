"""The analysis result: objects with boxes, masks and levels, and what is derived from it.

Nothing heavy is imported here (numpy and PIL only), so the CLI can read and
write analyses without loading any model. The JSON schema written by
`Analysis.to_json` is documented in spec/ANALYSIS.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sdc.errors import BadInputError
from sdc.levels import LEVEL_INDEX, LEVELS, OBJECT_LEVELS

from . import rle

FORMAT_NAME = "sdc-analysis"
FORMAT_VERSION = 1

# Colours for `draw`, by level (RGB).
LEVEL_COLOURS = {"L1": (230, 40, 40), "L2": (255, 150, 0), "L3": (60, 130, 255)}


@dataclass
class DetectedObject:
    id: int
    label: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    level: str  # "L1" | "L2" | "L3"
    reason: str = ""
    mask: np.ndarray | None = None  # bool (H, W); None = use the box
    source: str = ""  # which backend found it

    def region(self, width: int, height: int) -> np.ndarray:
        """Bool (height, width) mask of the object: its mask, or its box rasterised."""
        if self.mask is not None:
            return np.asarray(self.mask, dtype=bool)
        return box_mask(self.box, width, height)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def box_pixel_range(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel range [px0, px1) x [py0, py1) covered by a float box, clipped to the image.

    A box covers every pixel it overlaps: floor of the start, ceil of the end.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    px0 = min(max(int(math.floor(x0)), 0), width)
    py0 = min(max(int(math.floor(y0)), 0), height)
    px1 = min(max(int(math.ceil(x1)), 0), width)
    py1 = min(max(int(math.ceil(y1)), 0), height)
    return px0, py0, max(px0, px1), max(py0, py1)


def box_mask(box, width: int, height: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    px0, py0, px1, py1 = box_pixel_range(box, width, height)
    m[py0:py1, px0:px1] = True
    return m


def clip_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
    y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
    return (x0, y0, x1, y1)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of a 2-D bool array by a (2r+1) square, without scipy."""
    if r <= 0 or not mask.any():
        return mask.copy()
    h, w = mask.shape
    p = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadInputError(f"analysis: {what} must be a finite number")
    return float(v)


@dataclass
class Analysis:
    width: int
    height: int
    objects: list[DetectedObject]
    caption_short: str = ""
    caption_long: str = ""
    analyzer: str = ""  # what actually ran, e.g. "offline(haar+saliency)/grabcut/heuristic"
    task: str | None = None
    labels: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        """The whole analysis as a JSON-able dict (masks as COCO compressed RLE); see spec/ANALYSIS.md."""
        objs = []
        for o in self.objects:
            objs.append({
                "id": int(o.id),
                "label": o.label,
                "box": [round(float(v), 2) for v in o.box],
                "score": round(float(o.score), 4),
                "level": o.level,
                "reason": o.reason,
                "source": o.source,
                "mask": None if o.mask is None else rle.encode(o.mask),
            })
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "width": int(self.width),
            "height": int(self.height),
            "analyzer": self.analyzer,
            "task": self.task,
            "labels": None if self.labels is None else list(self.labels),
            "caption_short": self.caption_short,
            "caption_long": self.caption_long,
            "warnings": list(self.warnings),
            "objects": objs,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Analysis":
        """Inverse of `to_json`. Raises BadInputError with a one-line message on anything malformed."""
        if not isinstance(d, dict):
            raise BadInputError("analysis: expected a JSON object")
        if d.get("format", FORMAT_NAME) != FORMAT_NAME:
            raise BadInputError(f"analysis: format is {d.get('format')!r}, expected {FORMAT_NAME!r}")
        version = d.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise BadInputError(f"analysis: unsupported version {version!r} (this sdc reads {FORMAT_VERSION})")
        w, h = d.get("width"), d.get("height")
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0) or isinstance(w, bool):
            raise BadInputError("analysis: 'width' and 'height' must be positive integers")
        raw_objs = d.get("objects")
        if not isinstance(raw_objs, list):
            raise BadInputError("analysis: 'objects' must be a list")
        objs = []
        seen = set()
        for k, ro in enumerate(raw_objs):
            where = f"analysis: object {k}"
            if not isinstance(ro, dict):
                raise BadInputError(f"{where} is not an object")
            oid = ro.get("id", k)
            if not isinstance(oid, int) or isinstance(oid, bool):
                raise BadInputError(f"{where}: 'id' must be an integer")
            if oid in seen:
                raise BadInputError(f"{where}: duplicate id {oid}")
            seen.add(oid)
            box = ro.get("box")
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise BadInputError(f"{where}: 'box' must be [x0, y0, x1, y1]")
            box = tuple(_number(v, f"object {k} box") for v in box)
            if box[2] < box[0] or box[3] < box[1]:
                raise BadInputError(f"{where}: box has x1 < x0 or y1 < y0")
            level = ro.get("level", "L3")
            if level not in OBJECT_LEVELS:
                raise BadInputError(f"{where}: level {level!r} is not one of {', '.join(OBJECT_LEVELS)}")
            mask = None
            if ro.get("mask") is not None:
                try:
                    mask = rle.decode(ro["mask"])
                except ValueError as e:
                    raise BadInputError(f"{where}: bad mask: {e}") from None
                if mask.shape != (h, w):
                    raise BadInputError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}")
            label = ro.get("label", "object")
            if not isinstance(label, str):
                raise BadInputError(f"{where}: 'label' must be a string")
            objs.append(DetectedObject(
                id=oid, label=label, box=box,
                score=_number(ro.get("score", 1.0), f"object {k} score"),
                level=level, reason=str(ro.get("reason", "") or ""), mask=mask,
                source=str(ro.get("source", "") or "")))
        labels = d.get("labels")
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise BadInputError("analysis: 'labels' must be a list of strings or null")
        task = d.get("task")
        if task is not None and not isinstance(task, str):
            raise BadInputError("analysis: 'task' must be a string or null")
        warnings = d.get("warnings") or []
        if not isinstance(warnings, list):
            raise BadInputError("analysis: 'warnings' must be a list")
        return cls(width=w, height=h, objects=objs,
                   caption_short=str(d.get("caption_short", "") or ""),
                   caption_long=str(d.get("caption_long", "") or ""),
                   analyzer=str(d.get("analyzer", "") or ""),
                   task=task, labels=labels, warnings=[str(x) for x in warnings])

    @property
    def ranked_by_heuristic(self) -> bool:
        """True when the heuristic ranker set the levels (the ranker is the last
        part of `analyzer`): its reasons are then derived from the label, box and
        score, not an LMM's words."""
        return self.analyzer.rsplit("/", 1)[-1] == "heuristic"

    def metadata(self) -> dict:
        """Compact dict for the .sdc metadata chunk (no masks, no task label list).

        Boxes are rounded to whole pixels, scores to 3 decimals. Reasons are kept
        only when the heuristic did not rank: its reasons only restate the
        label, box and score it ranked from, so a file does not pay for them.
        """
        md: dict[str, Any] = {"analyzer": self.analyzer}
        if self.task:
            md["task"] = self.task
        if self.caption_short:
            md["caption_short"] = self.caption_short
        if self.caption_long:
            md["caption_long"] = self.caption_long
        keep_reasons = not self.ranked_by_heuristic
        md["objects"] = [
            {"id": int(o.id), "label": o.label, "box": [int(round(float(v))) for v in o.box],
             "score": round(float(o.score), 3), "level": o.level,
             **({"reason": o.reason} if o.reason and keep_reasons else {})}
            for o in self.objects
        ]
        return md

    # ---------------------------------------------------------- region map
    def scaled(self, width: int, height: int) -> "Analysis":
        """This analysis for the image resized to width x height: boxes scaled, masks
        resized by nearest neighbour."""
        from PIL import Image

        sx, sy = width / self.width, height / self.height
        objects = []
        for o in self.objects:
            x0, y0, x1, y1 = o.box
            mask = None
            if o.mask is not None:
                small = Image.fromarray(np.asarray(o.mask, np.uint8) * 255).resize((width, height), Image.NEAREST)
                mask = np.asarray(small) > 127
            objects.append(replace(o, box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy), mask=mask))
        return replace(self, width=width, height=height, objects=objects)

    def group_map(self, latent_h: int, latent_w: int, stride: int = 16, dilation: int = 1) -> np.ndarray:
        """uint8 (latent_h, latent_w) map of levels: L1=0, L2=1, L3=2, other=3.

        Cell (i, j) covers pixels [stride*i, stride*i+stride) x [stride*j, ...).
        A cell takes the most important level of any object region (mask, or
        box when there is no mask) touching it; then each level is dilated by
        `dilation` cells, the more important level winning; cells wholly
        outside the image stay "other".
        """
        other = LEVEL_INDEX["other"]
        gm = np.full((latent_h, latent_w), other, dtype=np.uint8)
        if latent_h <= 0 or latent_w <= 0:
            return gm
        W, H = self.width, self.height
        for o in self.objects:
            lv = LEVEL_INDEX.get(o.level)
            if lv is None or lv == other:
                continue
            if o.mask is None:
                px0, py0, px1, py1 = box_pixel_range(o.box, W, H)
                if px1 <= px0 or py1 <= py0:
                    continue
                i0, i1 = py0 // stride, min(-(-py1 // stride), latent_h)
                j0, j1 = px0 // stride, min(-(-px1 // stride), latent_w)
                sub = gm[i0:i1, j0:j1]
                np.minimum(sub, lv, out=sub)
            else:
                m = np.asarray(o.mask, dtype=bool)
                mh, mw = m.shape
                ch, cw = -(-mh // stride), -(-mw // stride)
                pad = np.zeros((ch * stride, cw * stride), dtype=bool)
                pad[:mh, :mw] = m
                cells = pad.reshape(ch, stride, cw, stride).any(axis=(1, 3))
                cells = cells[:latent_h, :latent_w]
                sub = gm[:cells.shape[0], :cells.shape[1]]
                sub[cells] = np.minimum(sub[cells], lv)
        if dilation > 0:
            base = gm.copy()
            for lv in range(other):
                grown = _dilate(base == lv, dilation)
                np.minimum(gm, np.where(grown, lv, other).astype(np.uint8), out=gm)
            # cells wholly outside the image stay background
            inside_h = -(-H // stride)
            inside_w = -(-W // stride)
            gm[inside_h:, :] = other
            gm[:, inside_w:] = other
        return gm

    # ---------------------------------------------------------------- draw
    def draw(self, image):
        """A copy of `image` with masks tinted and boxes outlined in the colour of each object's level."""
        from PIL import Image, ImageDraw

        base = image.convert("RGB")
        if base.size != (self.width, self.height):
            base = base.resize((self.width, self.height))
        arr = np.asarray(base, dtype=np.float32).copy()
        # least important first so that L1 ends up on top
        order = sorted(self.objects, key=lambda o: -LEVEL_INDEX.get(o.level, 3))
        for o in order:
            colour = np.array(LEVEL_COLOURS.get(o.level, (128, 128, 128)), dtype=np.float32)
            m = o.region(self.width, self.height)
            arr[m] = 0.55 * arr[m] + 0.45 * colour
        out = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        d = ImageDraw.Draw(out)
        for o in order:
            colour = LEVEL_COLOURS.get(o.level, (128, 128, 128))
            x0, y0, x1, y1 = o.box
            d.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=2)
            text = f"{o.level} {o.label} {o.score:.2f}"
            tx, ty = x0 + 2, max(0, y0 - 12) if y0 >= 12 else y0 + 2
            tb = d.textbbox((tx, ty), text)
            d.rectangle(tb, fill=colour)
            d.text((tx, ty), text, fill=(255, 255, 255))
        return out

    # -------------------------------------------------------------- helpers
    def coverage(self, levels=OBJECT_LEVELS) -> np.ndarray:
        """Bool (H, W) union of the regions of the objects whose level is in `levels`."""
        m = np.zeros((self.height, self.width), dtype=bool)
        for o in self.objects:
            if o.level in levels:
                m |= o.region(self.width, self.height)
        return m


__all__ = ["DetectedObject", "Analysis", "LEVELS", "box_mask", "box_pixel_range", "clip_box"]
