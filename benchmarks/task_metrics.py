"""Task accuracy and rate comparisons at equal accuracy, as CompressAI-Vision reports them.

- detection: COCO mAP@0.5 and mAP@[.5:.95] by pycocotools' COCOeval over all
  images of a codec setting at once (maxDets 100, crowd regions as COCO treats
  them);
- segmentation: mIoU from a confusion matrix accumulated over all images,
  against the model's own output on the uncompressed image ("agreement") or a
  ground truth drawn from the COCO masks of the 20 VOC classes;
- classification: top-1 agreement with the uncompressed image's prediction;
- BD-rate at equal accuracy on each curve's Pareto front (PCHIP, as JVET's
  current common test conditions do).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from bdrate import bd_rate

N_VOC = 21
IGNORE = 255

# PASCAL VOC classes (index 1..20, 0 = background) as COCO names them.
VOC_AS_COCO = ["airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table",
               "dog", "horse", "motorcycle", "person", "potted plant", "sheep", "couch", "train", "tv"]


# ----------------------------------------------------------------------------- detection
def coco_gt(dataset: dict):
    """A pycocotools COCO object over an already parsed annotation dict (quietly)."""
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_map(gt, detections: dict[int, list], image_ids: list[int]) -> dict[str, float]:
    """mAP@[.5:.95] ("map") and mAP@0.5 ("map50") of detections {image id: [(cat, [x,y,w,h], score)]}.

    Evaluated over `image_ids` only (COCOeval's imgIds), so that a --limit run
    is scored on the images it saw; no detection at all scores 0.
    """
    from pycocotools.cocoeval import COCOeval

    results = [{"image_id": int(i), "category_id": int(c), "bbox": [float(v) for v in box], "score": float(s)}
               for i in image_ids for c, box, s in detections.get(i, [])]
    if not results:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(0.0, float(ev.stats[0])), "map50": max(0.0, float(ev.stats[1]))}


# ----------------------------------------------------------------------------- segmentation
def voc_index_of_coco(categories: list[dict]) -> dict[int, int]:
    """COCO category id -> VOC class index (1..20) for the 20 COCO categories that are VOC classes."""
    by_name = {c["name"]: int(c["id"]) for c in categories}
    missing = [n for n in VOC_AS_COCO if n not in by_name]
    if missing:
        raise ValueError(f"annotation file lacks the COCO categories {missing}")
    return {by_name[n]: i + 1 for i, n in enumerate(VOC_AS_COCO)}


def voc_ground_truth(annotations: list[dict], height: int, width: int, voc_of: dict[int, int]) -> np.ndarray:
    """(H, W) uint8 VOC class map from COCO instance masks; everything else background.

    Pixels that two different VOC classes claim are IGNORE (255) and left out
    of the scores (torchvision's COCO-to-VOC reference ignores any two
    overlapping instances; here instances of one class merge, since the class
    of their pixels is not in doubt). Crowd regions count as their class.
    """
    from pycocotools import mask as mask_utils

    union: dict[int, np.ndarray] = {}
    for a in annotations:
        cls = voc_of.get(a["category_id"])
        if cls is None:
            continue
        seg = a["segmentation"]
        if isinstance(seg, list):
            rles = mask_utils.frPyObjects([p for p in seg if len(p) >= 6], height, width)
            if not rles:
                continue
            m = mask_utils.decode(mask_utils.merge(rles))
        else:
            rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg.get("counts"), list) else seg
            m = mask_utils.decode(rle)
        union[cls] = union.get(cls, np.zeros((height, width), bool)) | m.astype(bool)
    label = np.zeros((height, width), np.uint8)
    claims = np.zeros((height, width), np.uint8)
    for cls, m in union.items():
        label[m] = cls
        claims += m
    label[claims > 1] = IGNORE
    return label


def confusion(reference: np.ndarray, predicted: np.ndarray, n: int = N_VOC) -> np.ndarray:
    """(n, n) int64 counts [reference class, predicted class]; IGNORE pixels of the reference left out."""
    if reference.shape != predicted.shape:
        raise ValueError(f"maps differ in size: {reference.shape} vs {predicted.shape}")
    keep = reference != IGNORE
    idx = reference[keep].astype(np.int64) * n + np.minimum(predicted[keep], n - 1).astype(np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def sparse(matrix: np.ndarray) -> list[list[int]]:
    """A mostly-zero count matrix as [[row, col, count], ...] for the JSON cache."""
    r, c = np.nonzero(matrix)
    return [[int(i), int(j), int(matrix[i, j])] for i, j in zip(r, c)]


def dense(entries: list[list[int]], n: int = N_VOC) -> np.ndarray:
    m = np.zeros((n, n), np.int64)
    for i, j, v in entries:
        m[i, j] += v
    return m


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in the reference or the prediction (others have no IoU)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")


# ----------------------------------------------------------------------------- curves at equal accuracy
def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The monotone part of a (rate, accuracy) curve: sorted by rate, each point kept only
    when its accuracy is strictly above that of every lower-rate point."""
    front: list[tuple[float, float]] = []
    for r, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if np.isfinite(a) and (not front or a > front[-1][1]):
            front.append((float(r), float(a)))
    return front


def bd_rate_at_accuracy(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> dict:
    """BD-rate (%) of `test` vs `anchor` at equal accuracy, on their Pareto fronts, or n/a with why.

    Returns {"bd_rate": float | None, "range": [lo, hi] accuracy integrated over,
    "points": [n anchor, n test], "reason": str (only when n/a)}.
    """
    fa, ft = pareto(anchor), pareto(test)
    out = {"bd_rate": None, "range": None, "points": [len(fa), len(ft)]}
    short = [f"{who} has {len(f)} monotone point{'s' * (len(f) != 1)}"
             for who, f in (("anchor", fa), ("test", ft)) if len(f) < 4]
    if short:
        return {**out, "reason": "; ".join(short) + " (< 4)"}
    lo, hi = max(fa[0][1], ft[0][1]), min(fa[-1][1], ft[-1][1])
    if hi <= lo:
        return {**out, "reason": f"accuracies do not overlap ({fa[0][1]:.4g}..{fa[-1][1]:.4g} vs "
                                 f"{ft[0][1]:.4g}..{ft[-1][1]:.4g})"}
    value = bd_rate([r for r, _ in fa], [a for _, a in fa], [r for r, _ in ft], [a for _, a in ft], method="pchip")
    return {**out, "bd_rate": value, "range": [lo, hi]}


def rate_for_accuracy(points: list[tuple[float, float]], target: float) -> dict:
    """The rate at which a curve first reaches `target` accuracy: on its Pareto front, linear
    in log rate between the two points around the target. A steadier figure than BD-rate
    where curves saturate (mAP near its uncompressed value wobbles by a point or two).

    {"bpp": rate or None (never reached), "upper_bound": True when even the lowest
    rate measured reaches the target (the true rate may be lower)}."""
    front = pareto(points)
    if not front or front[-1][1] < target:
        return {"bpp": None, "upper_bound": False}
    if front[0][1] >= target:
        return {"bpp": front[0][0], "upper_bound": True}
    for (r0, a0), (r1, a1) in zip(front, front[1:]):
        if a1 >= target:
            t = (target - a0) / (a1 - a0)
            return {"bpp": float(10 ** (np.log10(r0) + t * (np.log10(r1) - np.log10(r0)))), "upper_bound": False}
    raise AssertionError("unreachable: the front's last point reaches the target")


def curve_summary(points: list[tuple[float, float]], target: float | None = None) -> dict:
    """Best accuracy reached, the accuracy at the lowest and the highest rate, and the rate
    that reaches `target` (when given)."""
    pts = sorted((p for p in points if np.isfinite(p[1])), key=lambda p: p[0])
    out = {"best": None, "at_lowest_rate": None, "at_highest_rate": None}
    if pts:
        out = {"best": max(a for _, a in pts), "at_lowest_rate": list(pts[0]), "at_highest_rate": list(pts[-1])}
    if target is not None:
        out["target"] = target
        out["rate_for_target"] = rate_for_accuracy(pts, target)
    return out
