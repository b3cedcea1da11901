"""Benchmark the analyzers on ../shared/data/coco128 against its COCO annotations.

Ground truth: the objects of area >= 32x32 that are not crowds. An object is
covered when at least half of its annotated mask lies inside the regions,
measured two ways:

- pixels: the union of the L1, L2 and L3 regions (masks, or boxes where there
  is no mask);
- region map: what the codec codes, `Analysis.group_map(*latent_shape(h, w))`
  (16x16 cells, dilated by one cell) upsampled to pixels, cells L1..L3.

Two parts:

1. Detector sweep. Each Yolo-Fastest variant (1.1 and 1.1-XL from
   ../shared/models, input 320/416/480) runs once per image at the lowest
   threshold; higher thresholds keep the detections above them (NMS is greedy
   by score, so this equals running at that threshold). Coverage and area of
   the detector's boxes alone, and of those plus the offline faces (Haar on the
   whole image) and text.
   Seconds are the detector's alone.
2. Whole `analyze` calls: the offline default and its variants (threshold,
   saliency, masks, margin), and a user's Darknet detector, with wall and
   process CPU seconds per image (after one warm-up image), objects per image,
   the L1 share of the area, and the levels given to each kind of label.
3. Area on images the detector never saw and that have no annotations
   (../shared/data/val and 40 BSDS500 test images), per threshold.

    nice -n 10 python benchmarks/analysis_coco128.py             # all, writes benchmarks/results/analysis_coco128.json
    nice -n 10 python benchmarks/analysis_coco128.py --only offline   # rerun some analyzers, keep the other results
    python benchmarks/analysis_coco128.py --limit 16             # a quick look, writes nothing
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sdc.analysis import analyze, offline, rle  # noqa: E402
from sdc.analysis.core import Analysis, DetectedObject  # noqa: E402
from sdc.analysis.detectors import DarknetDetector  # noqa: E402
from sdc.analysis.ranking import LABEL_PRIORS  # noqa: E402
from sdc.geometry import latent_shape  # noqa: E402

SHARED = Path(os.environ.get("SDC_SHARED", ROOT.parent / "shared"))
COCO = SHARED / "data" / "coco128"
YOLO = SHARED / "models" / "yolo-fastest-1.1_coco"
MIN_AREA = 32 * 32
SWEEP_MODELS = ("yolo-fastest-1.1", "yolo-fastest-1.1-xl")
SWEEP_SIZES = (320, 416, 480)
SWEEP_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)


def darknet(xl: bool = False) -> dict:
    stem = "yolo-fastest-1.1-xl" if xl else "yolo-fastest-1.1"
    return {"detector_cfg": str(YOLO / f"{stem}.cfg"), "detector_weights": str(YOLO / f"{stem}.weights"),
            "detector_names": str(YOLO / "coco.names")}


# name -> (analyzer, config); the first is the offline default as shipped
RUNS = {
    f"offline default (threshold {offline.COCO_THRESHOLD})": ("offline", {}),
    **{f"offline, threshold {t}": ("offline", {"detector_threshold": t})
       for t in (0.1, 0.15, 0.2, 0.3) if t != offline.COCO_THRESHOLD},
    "offline, saliency always": ("offline", {"offline_saliency": "always"}),
    "offline, saliency off": ("offline", {"offline_saliency": "off"}),
    "offline, grabcut masks": ("offline", {"masks": "grabcut"}),
    "offline, margin 0.15 / 8 px": ("offline", {"box_margin": 0.15, "box_margin_px": 8}),
    "darknet yolo-fastest-1.1 (user's detector), threshold 0.3": ("darknet", {**darknet(), "masks": "box"}),
}


def gt_mask(ann: dict, h: int, w: int) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        img = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(img)
        for p in seg:
            if len(p) >= 6:
                d.polygon(p, fill=1, outline=1)
        return np.asarray(img, dtype=bool)
    return rle.decode(seg)


def load_dataset():
    """[(image entry, [ground-truth masks])] of coco128, by file name."""
    d = json.loads((COCO / "annotations" / "instances_train2017.json").read_text())
    anns: dict[int, list] = {}
    for a in d["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    out = []
    for im in sorted(d["images"], key=lambda i: i["file_name"]):
        kept = [a for a in anns.get(im["id"], []) if a["area"] >= MIN_AREA and not a["iscrowd"]]
        masks = [m for m in (gt_mask(a, im["height"], im["width"]) for a in kept) if m.any()]
        out.append((im, masks))
    return out


def open_image(im: dict) -> Image.Image:
    img = Image.open(COCO / "train2017" / im["file_name"])
    img.load()
    return img


def region_map_pixels(a: Analysis) -> np.ndarray:
    """Bool (H, W): the pixels whose latent cell the codec codes as L1..L3."""
    gm = a.group_map(*latent_shape(a.height, a.width))
    return np.repeat(np.repeat(gm < 3, 16, axis=0), 16, axis=1)[:a.height, :a.width]


class Coverage:
    """Accumulates objects covered and area shares over images, both ways."""

    def __init__(self):
        self.total = 0
        self.covered = {"pixels": 0, "region_map": 0}
        self.fractions: list[float] = []
        self.area = {"pixels": [], "region_map": []}

    def add(self, a: Analysis, masks: list[np.ndarray]) -> None:
        regions = {"pixels": a.coverage(), "region_map": region_map_pixels(a)}
        for way, r in regions.items():
            self.area[way].append(float(r.mean()))
        for m in masks:
            self.total += 1
            for way, r in regions.items():
                f = float((m & r).sum() / m.sum())
                self.covered[way] += f >= 0.5
                if way == "pixels":
                    self.fractions.append(f)

    def summary(self) -> dict:
        n = max(1, self.total)
        return {"gt_objects": self.total,
                "covered_pixels": round(self.covered["pixels"] / n, 4),
                "covered_region_map": round(self.covered["region_map"] / n, 4),
                "mean_covered_fraction_pixels": round(float(np.mean(self.fractions)), 4),
                "area_pixels": round(float(np.mean(self.area["pixels"])), 4),
                "area_region_map": round(float(np.mean(self.area["region_map"])), 4)}


def boxes_analysis(im: dict, boxes: list) -> Analysis:
    objs = [DetectedObject(id=i, label="x", box=b, score=1.0, level="L3") for i, b in enumerate(boxes)]
    return Analysis(width=im["width"], height=im["height"], objects=objs)


# ---------------------------------------------------------------- sweep
def timed(fn, x):
    t, c = time.perf_counter(), time.process_time()
    out = fn(x)
    return out, time.perf_counter() - t, time.process_time() - c


def sweep(data) -> list[dict]:
    rgbs = [np.asarray(open_image(im).convert("RGB")) for im, _ in data]
    faces_text = [[b for _, b, _ in offline.detect_faces(x) + offline.detect_text(x)] for x in rgbs]
    rows = []
    for model in SWEEP_MODELS:
        for size in SWEEP_SIZES:
            det = DarknetDetector.from_files(str(YOLO / f"{model}.cfg"), str(YOLO / f"{model}.weights"),
                                             str(YOLO / "coco.names"), size, min(SWEEP_THRESHOLDS))
            det.detect(rgbs[0])
            runs = [timed(det.detect, x) for x in rgbs]
            for th in SWEEP_THRESHOLDS:
                alone, with_ft = Coverage(), Coverage()
                for (im, masks), (found, _, _), ft in zip(data, runs, faces_text):
                    boxes = [b for _, b, s in found if s > th]
                    alone.add(boxes_analysis(im, boxes), masks)
                    with_ft.add(boxes_analysis(im, boxes + ft), masks)
                row = {"model": model, "input_size": size, "threshold": th,
                       "detector": alone.summary(), "with_faces_and_text": with_ft.summary(),
                       "detector_seconds_per_image": round(float(np.mean([r[1] for r in runs])), 4),
                       "detector_cpu_seconds_per_image": round(float(np.mean([r[2] for r in runs])), 4)}
                rows.append(row)
                d, f = row["detector"], row["with_faces_and_text"]
                print(f"{model:20s} {size:4d} {th:5.2f}  detector: px {d['covered_pixels']:.3f} "
                      f"map {d['covered_region_map']:.3f} area {d['area_pixels']:.3f}/{d['area_region_map']:.3f}  "
                      f"+faces+text: map {f['covered_region_map']:.3f} area {f['area_region_map']:.3f}  "
                      f"{row['detector_seconds_per_image']:.3f} s", flush=True)
    return rows


# ------------------------------------------------------------- analyze
def label_group(label: str) -> str:
    prior = LABEL_PRIORS.get(label)
    if label in ("person", "face", "text"):
        return "person/face/text"
    if prior == 0.8:
        return "vehicle/animal/sign"
    if label == "salient region":
        return "salient region"
    return "other COCO"


def run(name: str, analyzer: str, config: dict, data) -> dict:
    cov = Coverage()
    l1_areas, times, cpu, n_objects, warnings = [], [], [], [], 0
    levels: dict[str, dict[str, int]] = {}
    analyze(open_image(data[0][0]), analyzer=analyzer, config=config)  # warm-up: models load once
    ran = set()
    for im, masks in data:
        img = open_image(im)
        a, dt, dc = timed(lambda x: analyze(x, analyzer=analyzer, config=config), img)
        times.append(dt)
        cpu.append(dc)
        ran.add(a.analyzer)
        cov.add(a, masks)
        l1_areas.append(float(a.coverage(("L1",)).mean()))
        n_objects.append(len(a.objects))
        warnings += len(a.warnings)
        for o in a.objects:
            g = levels.setdefault(label_group(o.label), {"L1": 0, "L2": 0, "L3": 0})
            g[o.level] += 1
    return {
        "name": name, "analyzer": analyzer, "analyzer_ran": sorted(ran),
        "config": {k: (os.path.relpath(v, ROOT) if isinstance(v, str) and os.path.isabs(v) else v)
                   for k, v in config.items()},
        "images": len(data), **cov.summary(),
        "l1_area_pixels": round(float(np.mean(l1_areas)), 4),
        "objects_per_image": round(float(np.mean(n_objects)), 2),
        "levels_by_label": dict(sorted(levels.items())),
        "seconds_per_image": round(float(np.mean(times)), 4),
        "seconds_per_image_p90": round(float(np.percentile(times, 90)), 4),
        "cpu_seconds_per_image": round(float(np.mean(cpu)), 4),
        "warnings": warnings,
    }


def unseen(thresholds=(0.1, 0.15, 0.2, 0.3)) -> dict:
    """Area and objects per image of the offline analyzer on images Yolo-Fastest was not
    trained on and that have no annotations (../shared/data/val, 40 BSDS500 test images)."""
    files = (sorted((SHARED / "data" / "val").glob("*.png"))
             + sorted((SHARED / "data" / "train").glob("bsds_test_*.jpg"))[:40])
    rows = []
    for t in thresholds:
        areas, px, n, saliency = [], [], [], 0
        for f in files:
            a = analyze(Image.open(f), analyzer="offline", config={"detector_threshold": t})
            areas.append(float(region_map_pixels(a).mean()))
            px.append(float(a.coverage().mean()))
            n.append(len(a.objects))
            saliency += "saliency" in a.analyzer
        row = {"threshold": t, "area_pixels": round(float(np.mean(px)), 4),
               "area_region_map": round(float(np.mean(areas)), 4),
               "objects_per_image": round(float(np.mean(n)), 2), "images_with_saliency": saliency}
        rows.append(row)
        print(f"unseen images, threshold {t}: area px {row['area_pixels']:.3f} map {row['area_region_map']:.3f} "
              f"objects {row['objects_per_image']:.1f}, saliency on {saliency} of {len(files)}", flush=True)
    return {"images": len(files), "what": "data/val (10 Wikimedia photos) + the first 40 BSDS500 test images",
            "rows": rows}


def first_result_seconds() -> float:
    """Wall seconds of a fresh process's first offline analysis (imports and model loading included)."""
    import subprocess

    code = ("import time; t = time.perf_counter(); from PIL import Image; from sdc.analysis import analyze; "
            f"analyze(Image.open({str(COCO / 'train2017' / '000000000009.jpg')!r}), analyzer='offline'); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return round(float(out.stdout.strip()), 3)


def print_table(results: list[dict]) -> None:
    head = (f"{'analyzer':58s} {'cov. px':>7s} {'cov. map':>8s} {'area px':>7s} {'area map':>8s} "
            f"{'L1 px':>6s} {'obj/img':>7s} {'s/img':>6s} {'cpu s':>6s}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['name']:58s} {r['covered_pixels']:7.3f} {r['covered_region_map']:8.3f} {r['area_pixels']:7.3f} "
              f"{r['area_region_map']:8.3f} {r['l1_area_pixels']:6.3f} {r['objects_per_image']:7.1f} "
              f"{r['seconds_per_image']:6.3f} {r['cpu_seconds_per_image']:6.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--only", default="", help="run only the analyzers whose name contains this (no sweep)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "analysis_coco128.json"))
    args = ap.parse_args(argv)
    try:
        os.nice(10)
    except OSError:
        pass
    data = load_dataset()
    if args.limit:
        data = data[: args.limit]
    env = {"python": platform.python_version(), "cpus": os.cpu_count(),
           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    out = Path(args.out)
    previous = json.loads(out.read_text()) if args.only and out.is_file() else {}
    rows = previous.get("detector_sweep", []) if args.only else sweep(data)
    unseen_rows = previous.get("unseen_images", {}) if args.only or args.limit else unseen()
    results = []
    for name, (analyzer, config) in RUNS.items():
        if args.only and args.only not in name:
            continue
        r = run(name, analyzer, config, data)
        results.append(r)
        print(f"{name:58s} map {r['covered_region_map']:.3f} area {r['area_region_map']:.3f} "
              f"{r['seconds_per_image']:.3f} s/img", flush=True)
    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    env["first_result_seconds"] = first_result_seconds()
    print()
    print_table(results)
    print(f"\n{len(data)} images, {results[0]['gt_objects'] if results else 0} ground-truth objects "
          f"(area >= 32x32, not crowd); first result in a fresh process {env['first_result_seconds']} s; "
          f"load average {env['load_average_at_start']} -> {env['load_average_at_end']}")
    if args.limit:
        return 0
    kept = [r for r in previous.get("results", []) if r["name"] not in {x["name"] for x in results}]
    merged = sorted(kept + results, key=lambda r: list(RUNS).index(r["name"]) if r["name"] in RUNS else 99)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "dataset": "coco128 (../shared/data/coco128): COCO train2017 images, which Yolo-Fastest was trained on",
        "min_area": MIN_AREA,
        "coverage_rule": "object covered when >= 50% of its mask is in L1+L2+L3: pixels = union of the regions, "
                         "region_map = the codec's 16x16-cell group map (dilation 1) upsampled",
        "environment": env, "detector_sweep": rows, "unseen_images": unseen_rows, "results": merged}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
