"""Image coding for machines: task accuracy on decoded images against whole-file bpp.

As CompressAI-Vision evaluates codecs for machines: every image of COCO128
(../shared/data/coco128, 128 COCO train2017 images with instance annotations)
is coded by each codec at each setting, decoded, and given to task models
(task_models.py); accuracy per setting is then plotted against the mean
whole-file bits per pixel, and codecs are compared by BD-rate at equal
accuracy (task_metrics.py).

    tasks           detection: SSD-MobileNet v1 (TFLite) -> COCO mAP@0.5 (primary), mAP@[.5:.95]
                    segmentation: DeepLabv3-MobileNetV2 (VOC) -> mIoU vs its output on the
                        uncompressed image (agreement), and vs COCO masks of the 20 VOC classes
                    classification: MobileNetV2 -> top-1 agreement with the uncompressed image
    anchors         baselines.CODECS with the sweeps of ANCHOR_PARAMS (down to the low rates
                    machine tasks live at); VVC at baselines.PARAMS["vvc"]; CODEC@SCALE
                    codes the picture at SCALE of its size and upsamples the decode, as
                    sdc's detection preset does (vvc@0.5)
    sdc             SDC_MODES: name -> fn(rgb, image, q) -> .sdc bytes; decoded with all levels

Every (method, setting, image) result -- the byte count and the task outputs,
not the pixels -- is cached under decoded_cache.cache_root()/icm, keyed by
what it depends on (codec settings and tool version; for sdc the mode, the
weights' sha256 and a hash of the sdc sources; the task models' fingerprints),
so an interrupted run resumes and a change recomputes only what it touches.
Slow anchors keep their decoded images in decoded_cache as well.

    nice -n 10 python benchmarks/icm.py                        # everything -> results/icm.json, icm.png
    python benchmarks/icm.py --limit 8 --tasks detection        # a quick look (writes nothing without --out)
    python benchmarks/icm.py --anchors jpeg,hevc --modes whole --qualities 1-4
    python benchmarks/icm.py --detector onnx:yolo.onnx:coco.names:640   # judge with your own detector
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import baselines as B
import common
import task_metrics as M
import task_models as TM
from decoded_cache import cache_root, cached_roundtrip

COCO_DIR = common.SHARED / "data" / "coco128"
ANNOTATIONS = COCO_DIR / "annotations" / "instances_train2017.json"
TASKS = ("detection", "segmentation", "classification")

# Sweeps from each codec's lowest useful rate on COCO128 (JPEG bottoms out near 0.10 bpp, WebP 0.14,
# AVIF 0.10, JPEG XL 0.17 at its largest distance, HEVC 0.06 at QP 51) to about 1.5 bpp.
ANCHOR_PARAMS: dict[str, list] = {
    "jpeg": [2, 5, 10, 15, 20, 30, 40, 50, 60, 75],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 75],
    "avif": [0, 10, 20, 30, 40, 50, 60, 70],
    "jxl": [1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 25.0],
    "hevc": [27, 30, 33, 36, 39, 42, 45, 48, 51],
    "vvc": list(B.PARAMS["vvc"]),
}
PARAM_NAME = {"jpeg": "q", "webp": "q", "avif": "q", "jxl": "d", "hevc": "QP", "vvc": "QP"}
# Anchors whose decoded images are kept in decoded_cache: too slow to run twice.
SLOW_ANCHORS = {"vvc", "hevc", "jxl", "avif"}

# metric -> (task, label); map50 is the primary one.
METRICS: dict[str, tuple[str, str]] = {
    "map50": ("detection", "mAP@0.5"),
    "map": ("detection", "mAP@[.5:.95]"),
    "miou_ref": ("segmentation", "mIoU agreement"),
    "miou_gt": ("segmentation", "mIoU vs COCO-derived GT"),
    "top1": ("classification", "top-1 agreement"),
}
# Summaries give the rate at which each curve reaches this share of the uncompressed accuracy.
TARGET_FRACTION = 0.9
# The references whose BD-rate columns are printed (all pairs are in the JSON).
PRINTED_REFERENCES = ("vvc", "vvc@0.5", "hevc", "sdc:whole")


# ----------------------------------------------------------------------------- data
@dataclass
class ImageEntry:
    name: str
    id: int
    width: int
    height: int
    path: Path
    annotations: list
    dataset: dict = field(repr=False)  # the whole COCO JSON: gt-detection reads this image's regions from it
    rgb: np.ndarray = field(repr=False, default=None)
    pixel_hash: str = ""


def load_dataset(limit: int | None = None) -> tuple[dict, list[ImageEntry]]:
    """The COCO JSON and its images sorted by file name (the first `limit` of them)."""
    dataset = json.loads(ANNOTATIONS.read_text())
    anns: dict[int, list] = {}
    for a in dataset["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = []
    for im in sorted(dataset["images"], key=lambda i: i["file_name"])[:limit or None]:
        path = COCO_DIR / "train2017" / im["file_name"]
        rgb = common.load_rgb(path)
        if rgb.shape[:2] != (im["height"], im["width"]):
            raise SystemExit(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"its annotations say {im['width']}x{im['height']}")
        images.append(ImageEntry(im["file_name"], int(im["id"]), im["width"], im["height"], path,
                                 anns.get(im["id"], []), dataset, rgb, common.pixel_hash(rgb)))
    return dataset, images


# ----------------------------------------------------------------------------- sdc modes
ModeFn = Callable[[np.ndarray, ImageEntry, int], bytes]


def sdc_encode(rgb: np.ndarray, q: int, analysis=None, task: str | None = None, **preset_changes) -> bytes:
    """One .sdc file at the single quality q.

    Through encode_image's `q`, where the task's preset (sdc.task_coding), changed by
    `preset_changes` (TaskPreset fields), picks the per-level qualities, the background
    and the regions' shape; an sdc without `q` codes every level at q instead."""
    from sdc.levels import LEVELS
    from sdc.pipeline import encode_image

    if "q" not in inspect.signature(encode_image).parameters:
        if preset_changes:
            raise RuntimeError("this sdc has no task presets to change")
        return encode_image(rgb, qualities={lv: q for lv in LEVELS}, analysis=analysis, task=task).data
    extra = {}
    if preset_changes:
        from sdc.task_coding import preset_for

        extra["preset"] = preset_for(task).with_changes(**preset_changes)
    return encode_image(rgb, q=q, task=task, analysis=analysis, **extra).data


def mode_whole(rgb: np.ndarray, image: ImageEntry, q: int) -> bytes:
    """No regions and no task: the whole image is 'other', coded at q."""
    from sdc.analysis import Analysis

    return sdc_encode(rgb, q, Analysis(width=image.width, height=image.height, objects=[]))


_ANALYSES: dict[tuple, object] = {}


def analyzed(name: str, pixel_hash: str, rgb: np.ndarray, task: str):
    """sdc's default analysis of an image for a task, made once per image: what
    `encode_image` would run itself (the analyzer is deterministic), without
    repeating it for every quality and mode."""
    key = (name, pixel_hash, task)
    if key not in _ANALYSES:
        from PIL import Image

        from sdc.analysis import analyze

        _ANALYSES[key] = analyze(Image.fromarray(rgb), task=task, config={"masks": "box"})
    return _ANALYSES[key]


def task_mode(task: str, regions: str = "analyzer", **preset_changes) -> ModeFn:
    """A mode coding for `task`, its regions found by sdc's own analyzer ("analyzer") or
    read from the image's COCO annotations ("gt", an oracle), its preset changed by
    `preset_changes` -- e.g. task_mode("object detection", "gt", background="code",
    background_offset=-2) for an ablation."""
    if regions not in ("analyzer", "gt"):
        raise ValueError(f"regions must be 'analyzer' or 'gt', got {regions!r}")

    def mode(rgb: np.ndarray, image: ImageEntry, q: int) -> bytes:
        if regions == "gt":
            from sdc.analysis import load_regions

            analysis = load_regions(image.dataset, image.width, image.height, file_name=image.name)
        else:
            analysis = analyzed(image.name, image.pixel_hash, rgb, task)
        return sdc_encode(rgb, q, analysis, task, **preset_changes)

    mode.spec = f"task={task!r} regions={regions} preset_changes={sorted(preset_changes.items())!r}"
    return mode


# name -> fn(rgb, image, q) -> the whole .sdc file. Add a mode here to benchmark it (--modes NAME).
SDC_MODES: dict[str, ModeFn] = {
    "whole": mode_whole,
    "task-detection": task_mode("object detection"),
    "gt-detection": task_mode("object detection", regions="gt"),
    "task-classification": task_mode("classification"),
    "task-segmentation": task_mode("segmentation"),
}


def mode_fingerprint(fn: ModeFn) -> str:
    """What a mode's files depend on in this script: its spec (task_mode) or its source."""
    return getattr(fn, "spec", None) or inspect.getsource(fn)


def sdc_source_hash() -> str:
    """sha256 over the sdc package's Python sources (paths and contents): cached sdc results
    are only reused for the code that made them."""
    h = hashlib.sha256()
    root = common.CODE / "sdc"
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- methods
Roundtrip = Callable[[np.ndarray, ImageEntry, object], tuple[int, np.ndarray]]


@dataclass
class Method:
    name: str
    label: str
    params: list
    param_name: str
    key: str  # what the results depend on besides the image, the setting and the task models
    roundtrip: Roundtrip
    has_cached_pixels: Callable[[ImageEntry, object], bool] | None = None  # set: never encode, only read


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def uncompressed_method() -> Method:
    """The original pixels; the 'rate' is the size of the original COCO JPEG."""
    return Method("uncompressed", "uncompressed (original JPEG)", ["original"], "", "uncompressed",
                  lambda rgb, image, p: (image.path.stat().st_size, rgb))


def anchor_method(codec: str, params: list, version: str, cache_only: bool) -> Method:
    if codec in SLOW_ANCHORS:
        def roundtrip(rgb, image, p):
            return cached_roundtrip(codec, p, image.name, rgb, version)
    else:
        def roundtrip(rgb, image, p):
            return B.CODECS[codec](rgb, p)

    def has_cached_pixels(image, p):
        from decoded_cache import _entry_dir

        stem = f"{Path(image.name).stem}-{image.pixel_hash}-{p}"
        d = _entry_dir(codec, version)
        return (d / f"{stem}.json").is_file() and (d / f"{stem}.png").is_file()

    return Method(codec, B.LABELS[codec], params, PARAM_NAME[codec], _key(codec, B.CONFIG[codec], version),
                  roundtrip, has_cached_pixels if cache_only else None)


def resized(rgb: np.ndarray, size: tuple[int, int], down: bool) -> np.ndarray:
    """rgb resized to size (w, h) as sdc's task presets resize: Lanczos down, bicubic up."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS if down else Image.BICUBIC))


def scaled_anchor_method(codec: str, scale: float, params: list, version: str) -> Method:
    """An anchor given the picture at `scale` of its size and upsampled after decoding:
    the trick of sdc's detection preset (sdc.task_coding) played by a standard codec,
    to tell what the smaller picture buys from what sdc's coding buys."""
    def roundtrip(rgb, image, p):
        h, w = rgb.shape[:2]
        small = resized(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), down=True)
        if codec in SLOW_ANCHORS:
            nbytes, out = cached_roundtrip(codec, p, image.name, small, version)
        else:
            nbytes, out = B.CODECS[codec](small, p)
        return nbytes, resized(out, (w, h), down=False)

    return Method(f"{codec}@{scale:g}", f"{B.LABELS[codec]}, {scale:g} of the size", params, PARAM_NAME[codec],
                  _key(codec, B.CONFIG[codec], version, "scaled", scale), roundtrip)


def parse_anchor(spec: str) -> tuple[str, float]:
    """'vvc' -> ('vvc', 1.0); 'vvc@0.5' -> ('vvc', 0.5)."""
    codec, _, scale = spec.partition("@")
    try:
        value = float(scale) if scale else 1.0
    except ValueError:
        raise SystemExit(f"bad anchor {spec!r}: expected CODEC or CODEC@SCALE") from None
    if codec not in ANCHOR_PARAMS or not 0 < value <= 1:
        raise SystemExit(f"bad anchor {spec!r}: expected one of {', '.join(ANCHOR_PARAMS)}, at a scale in (0, 1]")
    return codec, value


def sdc_method(mode: str, qualities: list[int], weights_sha: str, source_hash: str) -> Method:
    fn = SDC_MODES[mode]

    def roundtrip(rgb, image, q):
        from sdc.pipeline import decode_sdc

        data = fn(rgb, image, int(q))
        return len(data), decode_sdc(data).rgb

    key = _key("sdc", mode, mode_fingerprint(fn), inspect.getsource(sdc_encode), weights_sha, source_hash)
    return Method(f"sdc:{mode}", f"sdc {mode}", list(qualities), "q", key, roundtrip)


# ----------------------------------------------------------------------------- task models
class Judges:
    """The task models of this run, their fingerprints, and per-image references they need."""

    def __init__(self, tasks: list[str], dataset: dict, detector_spec: str | None):
        self.tasks = tasks
        cats = dataset["categories"]
        self.detector = TM.make_detector(detector_spec, cats) if "detection" in tasks else None
        self.segmenter = TM.DeeplabSegmenter() if "segmentation" in tasks else None
        self.classifier = TM.MobilenetClassifier() if "classification" in tasks else None
        self.voc_of = M.voc_index_of_coco(cats)
        self._reference_maps: dict[int, np.ndarray] = {}

    def model(self, task: str):
        return {"detection": self.detector, "segmentation": self.segmenter, "classification": self.classifier}[task]

    def fingerprint(self, task: str) -> str:
        return self.model(task).fingerprint

    def describe(self) -> dict:
        return {t: {"model": self.model(t).name, "fingerprint": self.fingerprint(t)} for t in self.tasks}

    def reference_map(self, image: ImageEntry) -> np.ndarray:
        """The segmenter's output on the uncompressed image (what agreement is measured against)."""
        if image.id not in self._reference_maps:
            self._reference_maps[image.id] = self.segmenter.segment(image.rgb)
        return self._reference_maps[image.id]

    def run(self, task: str, rgb: np.ndarray, image: ImageEntry) -> dict:
        """One task model on a decoded image: its output as the cache keeps it, and its seconds.

        Segmentation keeps the confusion matrices against the reference map and
        the ground truth rather than the map itself (441 counts, not 300k labels)."""
        t0 = time.perf_counter()
        if task == "detection":
            out = {"detections": [[c, [round(v, 2) for v in box], round(s, 5)]
                                  for c, box, s in self.detector.detect(rgb)]}
        elif task == "segmentation":
            pred = self.segmenter.segment(rgb)
        else:
            out = {"top1": self.classifier.classify(rgb)}
        seconds = time.perf_counter() - t0
        if task == "segmentation":
            gt = M.voc_ground_truth(image.annotations, image.height, image.width, self.voc_of)
            out = {"vs_ref": M.sparse(M.confusion(self.reference_map(image), pred)),
                   "vs_gt": M.sparse(M.confusion(gt, pred))}
        return {"model": self.fingerprint(task), "seconds": round(seconds, 5), **out}


# ----------------------------------------------------------------------------- one result, cached
def entry_path(method: Method, param, image: ImageEntry) -> Path:
    return cache_root() / "icm" / f"{method.name.replace(':', '-')}-{method.key}" / \
        f"{Path(image.name).stem}-{image.pixel_hash}-{param}.json"


def evaluate(method: Method, param, image: ImageEntry, judges: Judges) -> tuple[dict | None, bool]:
    """The cached result of one image at one setting, completed with the tasks it lacks.

    Returns (entry, computed now); entry is None when the method only reads
    decoded pixels from decoded_cache and they are not there yet."""
    path = entry_path(method, param, image)
    entry = common.read_json(path) or {}
    outputs = entry.get("tasks", {})
    need = [t for t in judges.tasks if (outputs.get(t) or {}).get("model") != judges.fingerprint(t)]
    if "bytes" in entry and not need:
        return entry, False
    if method.has_cached_pixels is not None and not method.has_cached_pixels(image, param):
        return None, False
    t0 = time.perf_counter()
    nbytes, decoded = method.roundtrip(image.rgb, image, param)
    entry.update({"method": method.name, "param": param, "image": image.name, "bytes": int(nbytes),
                  "codec_seconds": round(time.perf_counter() - t0, 4)})
    fresh = {t: judges.run(t, decoded, image) for t in need}
    # Runs with different --tasks share entries: keep what another one wrote meanwhile.
    latest = common.read_json(path) or {}
    if latest.get("bytes") == entry["bytes"]:
        outputs = {**outputs, **latest.get("tasks", {})}
    entry["tasks"] = {**outputs, **fresh}
    common.write_json(path, entry)
    return entry, True


# ----------------------------------------------------------------------------- one setting
def score_setting(entries: list[dict], images: list[ImageEntry], judges: Judges, gt, reference_top1: dict) -> dict:
    """bpp and every task metric of one setting from its per-image entries."""
    point = {"n_images": len(entries),
             "bpp": float(np.mean([8 * e["bytes"] / (im.width * im.height) for e, im in zip(entries, images)]))}
    if "detection" in judges.tasks:
        dets = {im.id: e["tasks"]["detection"]["detections"] for e, im in zip(entries, images)}
        point.update(M.coco_map(gt, dets, [im.id for im in images]))
    if "segmentation" in judges.tasks:
        point["miou_ref"] = M.miou(sum(M.dense(e["tasks"]["segmentation"]["vs_ref"]) for e in entries))
        point["miou_gt"] = M.miou(sum(M.dense(e["tasks"]["segmentation"]["vs_gt"]) for e in entries))
    if "classification" in judges.tasks and reference_top1:
        point["top1"] = float(np.mean([e["tasks"]["classification"]["top1"] == reference_top1[im.id]
                                       for e, im in zip(entries, images)]))
    return point


def run_reference(images: list[ImageEntry], judges: Judges, gt, timings: dict) -> tuple[dict, dict[int, int]]:
    """The task metrics on the uncompressed images, and each image's top-1 class there."""
    method = uncompressed_method()
    entries = [evaluate(method, "original", im, judges)[0] for im in images]
    for e in entries:
        for t in judges.tasks:
            timings.setdefault(t, []).append(e["tasks"][t]["seconds"])
    top1 = ({im.id: e["tasks"]["classification"]["top1"] for e, im in zip(entries, images)}
            if "classification" in judges.tasks else {})
    return {"param": "original", **score_setting(entries, images, judges, gt, top1)}, top1


def run_method(method: Method, images: list[ImageEntry], judges: Judges, gt, reference_top1: dict,
               timings: dict, notes: list[str]) -> list[dict]:
    points = []
    for p in method.params:
        t0 = time.perf_counter()
        print(f"  {method.name} {method.param_name}{'=' if method.param_name else ''}{p} ...", end="", flush=True)
        entries, new, missing = [], 0, 0
        for image in images:
            e, computed = evaluate(method, p, image, judges)
            if e is None:
                missing += 1
                continue
            entries.append(e)
            new += computed
            for t in judges.tasks:
                timings.setdefault(t, []).append(e["tasks"][t]["seconds"])
        if missing:
            msg = (f"{method.name} {method.param_name} {p}: {missing} of {len(images)} images not in the "
                   f"decoded cache yet (cache-only); setting skipped")
            print(f" skipped: {missing} images not cached yet")
            notes.append(msg)
            continue
        point = {"param": p, **score_setting(entries, images, judges, gt, reference_top1)}
        points.append(point)
        shown = "  ".join(f"{k} {point[k]:.4f}" for k in METRICS if k in point)
        print(f" bpp {point['bpp']:.4f}  {shown}  ({new} new, {time.perf_counter() - t0:.0f} s)", flush=True)
    return points


# ----------------------------------------------------------------------------- comparisons
def compare(methods: dict[str, dict], metrics: list[str]) -> dict:
    """BD-rate at equal accuracy of every method against every other, per metric."""
    out = {}
    for m in metrics:
        curves = {name: [(p["bpp"], p[m]) for p in r["points"] if m in p] for name, r in methods.items()}
        out[m] = {test: {ref: M.bd_rate_at_accuracy(curves[ref], curves[test])
                         for ref in curves if ref != test} for test in curves}
    return out


def summaries(methods: dict[str, dict], metrics: list[str], reference: dict) -> dict:
    """Each curve's extremes, and the rate at which it reaches TARGET_FRACTION of the uncompressed accuracy."""
    return {name: {m: M.curve_summary([(p["bpp"], p[m]) for p in r["points"] if m in p],
                                      TARGET_FRACTION * reference[m] if m in reference else None)
                   for m in metrics}
            for name, r in methods.items()}


# ----------------------------------------------------------------------------- report
def fmt(v, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def points_table(methods: dict[str, dict], metrics: list[str]) -> str:
    rows = []
    for name, r in methods.items():
        for p in r["points"]:
            rows.append([name, f"{r['param_name']} {p['param']}".strip(), fmt(p["bpp"])] +
                        [fmt(p.get(m)) for m in metrics])
    return common.table(rows, ["method", "setting", "bpp"] + [METRICS[m][1] for m in metrics])


def bd_cell(r: dict | None) -> list[str]:
    if r is None:  # the reference itself
        return ["-", ""]
    if r["bd_rate"] is None:
        return [f"n/a: {r['reason']}", ""]
    return [f"{r['bd_rate']:+.1f}%", f"{r['range'][0]:.3f}..{r['range'][1]:.3f}"]


def bd_table(bd: dict, refs: list[str]) -> str:
    rows = [[test] + sum((bd_cell(row.get(ref)) for ref in refs), []) for test, row in bd.items()]
    header = ["method"] + sum(([f"vs {ref}", "accuracy range"] for ref in refs), [])
    return common.table(rows, header)


def summary_table(summ: dict, metric: str) -> str:
    rows = []
    for name, s in summ.items():
        c = s[metric]
        lo, hi = c["at_lowest_rate"], c["at_highest_rate"]
        reach = c.get("rate_for_target") or {}
        reached = "never" if reach.get("bpp") is None else \
            ("<= " if reach["upper_bound"] else "") + fmt(reach["bpp"])
        rows.append([name, fmt(c["best"]), f"{fmt(lo[1])} @ {fmt(lo[0])}" if lo else "-",
                     f"{fmt(hi[1])} @ {fmt(hi[0])}" if hi else "-", reached])
    return common.table(rows, ["method", "best", "at lowest bpp", "at highest bpp",
                               f"bpp for {TARGET_FRACTION:.0%} of uncompressed"])


def timing_summary(timings: dict) -> dict:
    return {t: {"median_s": float(np.median(v)), "mean_s": float(np.mean(v)), "n": len(v)}
            for t, v in timings.items() if v}


def plot(path: Path, methods: dict[str, dict], reference: dict, metrics: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    palette = list(plt.cm.tab10.colors) + list(plt.cm.Dark2.colors)  # one colour per method in every panel
    for ax, m in zip(axes.ravel(), metrics):
        for i, (name, r) in enumerate(methods.items()):
            pts = sorted((p["bpp"], p[m]) for p in r["points"] if m in p)
            if pts:
                style = "o-" if name.startswith("sdc:") else ".--"
                ax.plot(*zip(*pts), style, label=name, ms=4, lw=1.2, color=palette[i % len(palette)])
        if m in reference:
            ax.axhline(reference[m], color="k", lw=0.8, ls=":", label="uncompressed")
        ax.set_xscale("log")
        ax.set_xlabel("bpp (whole file)")
        ax.set_title(METRICS[m][1])
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def parse_list(text: str, allowed) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip() and s.strip() != "none"]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise SystemExit(f"unknown {', '.join(bad)}: expected some of {', '.join(allowed)}")
    return items


def parse_qualities(text: str | None, n: int) -> list[int]:
    if not text:
        return list(range(1, n + 1))
    qs = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        qs.update(range(int(lo), int(hi or lo) + 1))
    if not all(1 <= q <= n for q in qs):
        raise SystemExit(f"qualities must be within 1..{n}")
    return sorted(qs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default=",".join(SDC_MODES), help=f"sdc modes ({', '.join(SDC_MODES)}; 'none')")
    ap.add_argument("--anchors", default=",".join(ANCHOR_PARAMS),
                    help="anchor codecs, CODEC or CODEC@SCALE to code the picture at SCALE of its size "
                         "and upsample the decode (e.g. vvc@0.5); 'none' for none")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    ap.add_argument("--qualities", help="sdc qualities, e.g. 1-8 or 1,3,5 (default all of the weights')")
    ap.add_argument("--detector", help="judging detector: ssd (default), tflite:M[:LABELS], onnx:M:NAMES[:SIZE], "
                                       "darknet:CFG:WEIGHTS:NAMES[:SIZE]")
    ap.add_argument("--cache-only", default="vvc",
                    help="anchors only read from decoded_cache, never encoded here "
                         "(default vvc: a separate job fills it; 'none' to encode missing points)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for sdc (default 1)")
    ap.add_argument("--out", type=Path, help="JSON to write (default results/icm.json; a --limit run writes none)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)

    tasks = parse_list(args.tasks, TASKS)
    anchors = [parse_anchor(a) for a in args.anchors.split(",") if a.strip() and a.strip() != "none"]
    modes = parse_list(args.modes, list(SDC_MODES))
    cache_only = set(parse_list(args.cache_only, list(ANCHOR_PARAMS)))
    if not tasks:
        raise SystemExit("no task selected")
    out = args.out or (None if args.limit else common.RESULTS / "icm.json")
    common.set_threads(args.threads)

    dataset, images = load_dataset(args.limit)
    judges = Judges(tasks, dataset, args.detector)
    gt = M.coco_gt(dataset)
    notes, timings, tools, methods_run = [], {}, {}, {}
    plan: list[Method] = []
    for codec, scale in anchors:
        why = B.available(codec)
        if why:
            print(f"{codec}: skipped ({why})")
            notes.append(f"{codec} skipped: {why}")
            continue
        tools[codec] = B.tool_version(codec)
        if scale < 1:
            plan.append(scaled_anchor_method(codec, scale, ANCHOR_PARAMS[codec], tools[codec]))
        else:
            plan.append(anchor_method(codec, ANCHOR_PARAMS[codec], tools[codec], codec in cache_only))
    weights = common.weights_info() if modes else {}
    if modes:
        from sdc.models.codec import default_codec

        qualities = parse_qualities(args.qualities, default_codec().num_qualities)
        source = sdc_source_hash()
        weights["sdc_source_hash"] = source
        plan += [sdc_method(m, qualities, weights["sha256"], source) for m in modes]
    print(f"icm: {len(images)} images, tasks {', '.join(tasks)}, methods {', '.join(m.name for m in plan)}; "
          f"cache {cache_root() / 'icm'}", flush=True)

    t_start = time.perf_counter()
    reference, reference_top1 = run_reference(images, judges, gt, timings)
    for method in plan:
        print(f"{method.name} ({method.label})", flush=True)
        points = run_method(method, images, judges, gt, reference_top1, timings, notes)
        methods_run[method.name] = {"label": method.label, "param_name": method.param_name, "points": points}

    metrics = [m for m in METRICS if METRICS[m][0] in tasks]
    bd = compare(methods_run, metrics)
    summ = summaries(methods_run, metrics, reference)
    refs = [r for r in PRINTED_REFERENCES if r in methods_run]

    print(f"\nuncompressed (original COCO JPEGs, {reference['bpp']:.3f} bpp): " +
          ", ".join(f"{METRICS[m][1]} {reference[m]:.4f}" for m in metrics if m in reference))
    print(points_table(methods_run, metrics))
    for m in metrics:
        print(f"\nBD-rate at equal {METRICS[m][1]} (PCHIP on the Pareto fronts; negative = fewer bits):")
        print(bd_table(bd[m], refs))
        print(summary_table(summ, m))
    tsum = timing_summary(timings)
    print("\ntask model seconds per image (1 thread): " +
          ", ".join(f"{t} median {v['median_s'] * 1000:.0f} ms (n {v['n']})" for t, v in tsum.items()))
    for n in notes:
        print("note:", n)
    print(f"total {time.perf_counter() - t_start:.0f} s")

    if out is None:
        print("(--limit run: nothing written; give --out to keep it)")
        return 0
    result = {
        "what": "task accuracy of decoded COCO128 images vs whole-file bpp; BD-rate at equal accuracy",
        "command": " ".join(sys.argv), "machine": common.machine_info(), "git_commit": common.git_commit(),
        "weights": weights,
        "tools": tools, "task_models": judges.describe(),
        "images": {"set": "coco128 train2017", "count": len(images), "annotations": str(ANNOTATIONS)},
        "settings": {"anchors": {(c if s == 1 else f"{c}@{s:g}"): ANCHOR_PARAMS[c] for c, s in anchors},
                     "sdc_modes": modes,
                     "segmentation_compared_at": "image size (model output resized by nearest neighbour)",
                     "bd_rate": "pchip, log10(bpp) over accuracy, on each curve's Pareto front, overlapping range"},
        "reference": reference, "methods": methods_run, "bd_rate": bd, "summary": summ,
        "task_seconds_per_image": tsum, "notes": notes,
    }
    common.write_json(out, result)
    print(f"wrote {out}")
    if not args.no_plot:
        plot(out.with_suffix(".png"), methods_run, reference, metrics)
        print(f"wrote {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
