"""Benchmark the analyzers on ../shared/data/coco128 against its COCO annotations.

For every analyzer runnable here (the offline default, Darknet Yolo-Fastest with
the COCO labels; each with GrabCut masks and with the boxes themselves):

- objects covered: share of the ground-truth objects (area >= 32x32, not crowd)
  with at least half of their annotated mask inside the union of the L1, L2
  and L3 regions (masks, or boxes where there is no mask);
- mean covered fraction: the mean over those objects of the covered share of
  their mask;
- area: mean share of the image that L1+L2+L3 cover;
- L1 area: the same for L1 alone;
- s/img: wall-clock seconds of `analyze` per image (after one warm-up image);
- cpu s/img: process CPU seconds per image (all threads), which depends less
  on what else the machine runs than the wall clock does.

    nice -n 10 python benchmarks/analysis_coco128.py            # all, writes benchmarks/results/analysis_coco128.json
    nice -n 10 python benchmarks/analysis_coco128.py --only offline   # rerun some, keep the other results
    python benchmarks/analysis_coco128.py --limit 16            # a quick look, writes nothing
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

from sdc.analysis import analyze  # noqa: E402
from sdc.analysis import rle  # noqa: E402

SHARED = ROOT.parent / "shared"
COCO = SHARED / "data" / "coco128"
YOLO = SHARED / "models" / "yolo-fastest-1.1_coco"
MIN_AREA = 32 * 32


def darknet(xl: bool = False) -> dict:
    stem = "yolo-fastest-1.1-xl" if xl else "yolo-fastest-1.1"
    return {"detector_cfg": str(YOLO / f"{stem}.cfg"), "detector_weights": str(YOLO / f"{stem}.weights"),
            "detector_names": str(YOLO / "coco.names")}


# name -> (analyzer, config)
RUNS = {
    "offline (default: haar+ppocr+saliency, grabcut)": ("offline", {"masks": "grabcut"}),
    "offline, box masks": ("offline", {"masks": "box"}),
    "darknet yolo-fastest-1.1, grabcut": ("darknet", {**darknet(), "masks": "grabcut"}),
    "darknet yolo-fastest-1.1, box masks": ("darknet", {**darknet(), "masks": "box"}),
    "darknet yolo-fastest-1.1-xl, box masks": ("darknet", {**darknet(True), "masks": "box"}),
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
    d = json.loads((COCO / "annotations" / "instances_train2017.json").read_text())
    anns: dict[int, list] = {}
    for a in d["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = sorted(d["images"], key=lambda i: i["file_name"])
    return [(im, [a for a in anns.get(im["id"], []) if a["area"] >= MIN_AREA and not a["iscrowd"]])
            for im in images]


def run(name: str, analyzer: str, config: dict, data, env: dict) -> dict:
    covered = total = 0
    fractions, areas, l1_areas, times, cpu, n_objects, warnings = [], [], [], [], [], [], 0
    first = Image.open(COCO / "train2017" / data[0][0]["file_name"])
    analyze(first, analyzer=analyzer, config=config)  # warm-up: model loading is not per image
    for im, anns in data:
        img = Image.open(COCO / "train2017" / im["file_name"])
        img.load()
        t, c = time.perf_counter(), time.process_time()
        a = analyze(img, analyzer=analyzer, config=config)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        union = a.coverage()
        areas.append(float(union.mean()))
        l1_areas.append(float(a.coverage(("L1",)).mean()))
        n_objects.append(len(a.objects))
        warnings += len(a.warnings)
        for ann in anns:
            m = gt_mask(ann, a.height, a.width)
            if not m.any():
                continue
            f = float((m & union).sum() / m.sum())
            fractions.append(f)
            total += 1
            covered += f >= 0.5
    return {
        "name": name, "analyzer": analyzer, "analyzer_ran": a.analyzer,
        "config": {k: (os.path.relpath(v, ROOT) if isinstance(v, str) and os.path.isabs(v) else v)
                   for k, v in config.items()},
        "images": len(data), "gt_objects": total,
        "objects_covered": round(covered / max(1, total), 4),
        "mean_covered_fraction": round(float(np.mean(fractions)) if fractions else 0.0, 4),
        "area_share": round(float(np.mean(areas)), 4),
        "l1_area_share": round(float(np.mean(l1_areas)), 4),
        "objects_per_image": round(float(np.mean(n_objects)), 2),
        "seconds_per_image": round(float(np.mean(times)), 4),
        "seconds_per_image_p90": round(float(np.percentile(times, 90)), 4),
        "cpu_seconds_per_image": round(float(np.mean(cpu)), 4),
        "warnings": warnings,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--only", default="", help="run only analyzers whose name contains this")
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
    results = []
    for name, (analyzer, config) in RUNS.items():
        if args.only and args.only not in name:
            continue
        r = run(name, analyzer, config, data, env)
        results.append(r)
        print(f"{name:50s} covered {r['objects_covered']:.3f}  area {r['area_share']:.3f}  "
              f"{r['seconds_per_image']:.3f} s/img", flush=True)
    env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print()
    head = (f"{'analyzer':50s} {'objects covered':>15s} {'mean cov.':>9s} {'area':>6s} {'L1 area':>7s} "
            f"{'obj/img':>7s} {'s/img':>6s} {'cpu s/img':>9s}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['name']:50s} {r['objects_covered']:15.3f} {r['mean_covered_fraction']:9.3f} "
              f"{r['area_share']:6.3f} {r['l1_area_share']:7.3f} {r['objects_per_image']:7.1f} "
              f"{r['seconds_per_image']:6.3f} {r['cpu_seconds_per_image']:9.3f}")
    print(f"\n{len(data)} images, {results[0]['gt_objects'] if results else 0} ground-truth objects "
          f"(area >= 32x32, not crowd); load average {env['load_average_at_start']} -> {env['load_average_at_end']}")
    if not args.limit:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        previous = []
        if args.only and out.is_file():  # replace the rerun analyzers, keep the others
            previous = [r for r in json.loads(out.read_text()).get("results", [])
                        if r["name"] not in {x["name"] for x in results}]
        merged = sorted(previous + results, key=lambda r: list(RUNS).index(r["name"]) if r["name"] in RUNS else 99)
        out.write_text(json.dumps({"dataset": "coco128 (../shared/data/coco128)", "min_area": MIN_AREA,
                                   "coverage_rule": "object covered when >= 50% of its mask is in L1+L2+L3",
                                   "environment": env, "results": merged}, indent=1) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
