"""Encoder choices for a machine task: what `sdc encode --task TEXT -q N` writes.

A task text picks a preset (:func:`preset_for`); the preset decides, for each
`-q N`:

- the quality of every level (:meth:`TaskPreset.qualities`);
- what becomes of the background ("other"): coded at a lower quality
  ("code"), left to the hyperprior's prediction ("hyperprior": not coded, the
  decoder fills it from ẑ), or dropped ("drop": not coded, and ẑ flattened
  there too, so it costs next to nothing and decodes flat);
- how the objects' regions are drawn: boxes instead of masks, optionally
  grown by a margin. The region map already adds a ring of one 16-pixel cell
  around every object, which is the context task models get;
- the size of the picture coded (:meth:`TaskPreset.coding_point`): task models
  look at a small input (SSD-MobileNet at 300x300), so at the rates machine
  tasks live at, a picture coded at half its size with a higher quality
  serves them better than the full one; the file records the original size
  and the decoder upsamples to it (spec/FORMAT.md, DISP).

The numbers behind each preset are measured by `benchmarks/icm.py` (task
accuracy against whole-file bits; benchmarks/README.md, "Coding for machines").
Every preset keeps `-q` monotone in rate: the object levels' qualities and the
background's never decrease as q grows.

Presets apply after analysis, whatever ran it (the offline detector, Grounding
DINO, SAM, an LMM ranker or a regions file), so every backend goes through the
same choices.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from sdc.levels import LEVELS, OBJECT_LEVELS

BACKGROUNDS = ("code", "hyperprior", "drop")


@dataclass(frozen=True)
class TaskPreset:
    """How to code an image for one kind of task.

    name: the preset's name (a task text that selects it).
    background: "code", "hyperprior" or "drop" (module docstring).
    background_offset: with "code", the background's quality is q + offset (at least 1).
    level_offsets: quality offsets of L1, L2, L3 from q (each level at least 1).
    boxes: code each object's box rather than its mask.
    margin: fraction of a box's width (height) added on its left and right (top and bottom).
    margin_px: at least this many pixels added on each side.
    scale: fraction of the width and height of the picture coded (1: the original).
    scaled_offset: with scale < 1, `-q q` codes the smaller picture at quality q + scaled_offset,
        as long as that quality exists; the qualities above code the original size at q.
    """

    name: str
    background: str = "hyperprior"
    background_offset: int = -3
    level_offsets: tuple[int, int, int] = (0, 0, 0)
    boxes: bool = True
    margin: float = 0.0
    margin_px: float = 0.0
    scale: float = 1.0
    scaled_offset: int = 0

    def __post_init__(self):
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.margin < 0 or self.margin_px < 0:
            raise ValueError("margins must be non-negative")
        if not 1 / 16 <= self.scale <= 1:  # the format's display size is at most 16x the coded one
            raise ValueError(f"scale must be within 1/16..1, got {self.scale}")

    def coding_point(self, q: int, num_qualities: int) -> tuple[float, int]:
        """(scale, quality) of the picture coded for `-q q`.

        The smaller picture at q + scaled_offset while that quality exists, then the
        original at q: rate still grows with q, since the original at the lowest q
        reached this way costs more than the smaller picture at the top quality
        (tests/test_task_coding.py checks it on real images)."""
        if self.scale < 1 and q + self.scaled_offset <= num_qualities:
            return self.scale, q + self.scaled_offset
        return 1.0, q

    def qualities(self, q: int, num_qualities: int) -> dict[str, int]:
        """Every level's quality for `-q q` (the background's too, though it is coded only with "code")."""
        q = self.coding_point(q, num_qualities)[1]
        out = {lv: _clamp(q + off, num_qualities) for lv, off in zip(OBJECT_LEVELS, self.level_offsets)}
        # Not coded: the background takes the top object quality, so it neither raises
        # ẑ's quality (the highest of any position) nor changes the prediction's gain.
        out["other"] = _clamp(q + self.background_offset, num_qualities) if self.background == "code" \
            else max(out.values())
        return out

    def levels(self) -> tuple[str, ...]:
        """The levels this preset codes."""
        return LEVELS if self.background == "code" else OBJECT_LEVELS

    def with_changes(self, **changes) -> "TaskPreset":
        return replace(self, **changes)


def _clamp(q: int, num_qualities: int) -> int:
    return min(max(int(q), 1), num_qualities)


PRESETS: dict[str, TaskPreset] = {
    # SSD-class detectors look at about 300x300 pixels: half the size at two qualities
    # up gives them more per bit, and then the background coded at q-3 more than the
    # hyperprior's prediction of it (benchmarks/README.md, "Coding for machines").
    "object detection": TaskPreset("object detection", background="code", background_offset=-3,
                                   scale=0.5, scaled_offset=2),
    # The classifier (224x224) and the segmenter (513 pixels on the long side) look at small pictures too.
    "classification": TaskPreset("classification", background="code", background_offset=-3,
                                 scale=0.5, scaled_offset=2),
    # A segmenter labels every pixel, the background too: left to the hyperprior's
    # blurred prediction, the background is mislabelled (benchmarks/README.md).
    "segmentation": TaskPreset("segmentation", background="code", background_offset=-3,
                               scale=0.5, scaled_offset=2),
}

# Task texts (lower-cased, spaces collapsed) that name a preset. Any other task text
# is about finding things in the image ("count the cars", "read the signs"), which
# the detection preset serves.
PRESET_ALIASES: dict[str, str] = {
    "detection": "object detection", "object detection": "object detection", "detect objects": "object detection",
    "coco detection": "object detection", "classification": "classification",
    "image classification": "classification", "classify": "classification", "recognition": "classification",
    "segmentation": "segmentation", "semantic segmentation": "segmentation",
    "instance segmentation": "segmentation",
}


def preset_for(task: str | None) -> TaskPreset | None:
    """The preset a task text selects (None without a task)."""
    if task is None or not task.strip():
        return None
    key = re.sub(r"\s+", " ", task.strip().lower()).rstrip(".")
    return PRESETS[PRESET_ALIASES.get(key, "object detection")]


def shape_regions(analysis, preset: TaskPreset):
    """A copy of `analysis` whose objects are drawn as the preset wants: boxes
    (masks dropped) grown by the preset's margin and clipped to the image."""
    from copy import copy

    from sdc.analysis.core import clip_box

    W, H = analysis.width, analysis.height
    objects = []
    for o in analysis.objects:
        o = copy(o)
        x0, y0, x1, y1 = o.box
        dx = max(preset.margin * (x1 - x0), preset.margin_px)
        dy = max(preset.margin * (y1 - y0), preset.margin_px)
        grown = clip_box((x0 - dx, y0 - dy, x1 + dx, y1 + dy), W, H)
        if preset.boxes:
            o.mask = None
            o.box = grown
        elif o.mask is not None:
            o.mask = _grow_mask(o.mask, int(round(max(dx, dy))))
        else:
            o.box = grown
        objects.append(o)
    return replace(analysis, objects=objects)


def _grow_mask(mask, r: int):
    """A mask dilated by r pixels (a square), with OpenCV."""
    import cv2
    import numpy as np

    if r <= 0:
        return mask
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)
