"""Offline regions: boxes grown by a margin, the box itself, or GrabCut inside the box.

SAM backends live in sam.py (imported only when selected).
"""
from __future__ import annotations

import numpy as np

from .core import DetectedObject, box_pixel_range, clip_box

# Labels whose region is the box itself (GrabCut has nothing to separate).
BOX_ONLY_LABELS = {"text"}


def grow_box(box, margin: float, margin_px: float, width: int, height: int) -> tuple[float, float, float, float]:
    """`box` grown by max(margin * its width, margin_px) on the left and right and
    max(margin * its height, margin_px) on the top and bottom, clipped to the image."""
    if margin <= 0 and margin_px <= 0:
        return box
    x0, y0, x1, y1 = box
    dx = max(margin * (x1 - x0), margin_px)
    dy = max(margin * (y1 - y0), margin_px)
    return clip_box((x0 - dx, y0 - dy, x1 + dx, y1 + dy), width, height)


def grabcut_mask(rgb: np.ndarray, box, max_side: int = 128, iters: int = 1,
                 min_fill: float = 0.15, margin: int = 10, seed: float = 0.0) -> np.ndarray | None:
    """GrabCut foreground inside `box` (float pixels), as a bool (H, W) mask.

    The crop (the box plus a `margin`% margin that seeds the background model)
    is scaled so its longer side is at most `max_side`. Returns None when the
    box is too small or GrabCut keeps less than `min_fill` of the box, so the
    caller uses the box. `seed` > 0 marks a centred ellipse of that relative
    size as sure foreground. The defaults were measured on coco128's
    ground-truth boxes (172 objects): mean IoU with the true masks 0.609 for
    GrabCut (box where it fails) vs 0.560 for the bare box; 3 iterations gave
    0.606, a 0.2 seed 0.603, a 0.35 seed 0.571.
    """
    import cv2

    h, w = rgb.shape[:2]
    px0, py0, px1, py1 = box_pixel_range(box, w, h)
    bw, bh = px1 - px0, py1 - py0
    if bw < 12 or bh < 12:
        return None
    mx, my = max(2, bw * margin // 100), max(2, bh * margin // 100)
    cx0, cy0 = max(0, px0 - mx), max(0, py0 - my)
    cx1, cy1 = min(w, px1 + mx), min(h, py1 + my)
    crop = rgb[cy0:cy1, cx0:cx1]
    s = min(1.0, max_side / max(crop.shape[:2]))
    if s < 1.0:
        small = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
    else:
        small = crop
    sh, sw = small.shape[:2]
    rx0 = int((px0 - cx0) * s)
    ry0 = int((py0 - cy0) * s)
    rx1 = min(sw, int(np.ceil((px1 - cx0) * s)))
    ry1 = min(sh, int(np.ceil((py1 - cy0) * s)))
    # GrabCut needs some background around the rectangle
    rx0, ry0 = max(1, rx0), max(1, ry0)
    rx1, ry1 = min(sw - 1, rx1), min(sh - 1, ry1)
    if rx1 - rx0 < 4 or ry1 - ry0 < 4:
        return None
    gc = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    gc[ry0:ry1, rx0:rx1] = cv2.GC_PR_FGD
    if seed > 0:
        # the middle of a detection box is nearly always the object: mark a small
        # centred ellipse as sure foreground so GrabCut cannot collapse to background
        cx, cy = (rx0 + rx1 - 1) / 2, (ry0 + ry1 - 1) / 2
        ax, ay = max(1, int((rx1 - rx0) * seed / 2)), max(1, int((ry1 - ry0) * seed / 2))
        cv2.ellipse(gc, (int(round(cx)), int(round(cy))), (ax, ay), 0, 0, 360, int(cv2.GC_FGD), -1)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means init draws from OpenCV's global RNG
    try:
        cv2.grabCut(np.ascontiguousarray(small[:, :, ::-1]), gc, None, bgd, fgd, iters,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST).astype(bool)
    mask = np.zeros((h, w), dtype=bool)
    mask[cy0:cy1, cx0:cx1] = fg
    inside = np.zeros_like(mask)
    inside[py0:py1, px0:px1] = True
    mask &= inside
    if mask.sum() < min_fill * bw * bh:
        return None
    return mask


def apply_grabcut(rgb: np.ndarray, objects: list[DetectedObject], max_objects: int = 24) -> int:
    """Set `mask` of up to `max_objects` (largest first) objects by GrabCut; returns how many got one."""
    done = 0
    order = sorted(objects, key=lambda o: -o.area)
    for o in order[:max_objects]:
        if o.label in BOX_ONLY_LABELS or o.mask is not None:
            continue
        m = grabcut_mask(rgb, o.box)
        if m is not None:
            o.mask = m
            done += 1
    return done
