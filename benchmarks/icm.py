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
    sdc             SDC_MODES (icm_methods.py): name -> fn(rgb, image, q) -> .sdc bytes; decoded with all levels

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
import sys
import time
from pathlib import Path

import numpy as np

import baselines as B
import common
import task_metrics as M
import task_models as TM
from decoded_cache import cache_root
from icm_methods import (ANCHOR_PARAMS, ANNOTATIONS, SDC_MODES, ImageEntry, Method, anchor_method,  # noqa: F401
                         load_dataset, parse_anchor, scaled_anchor_method, sdc_method, sdc_source_hash, task_mode,
                         uncompressed_method)
from icm_report import (METRICS, bd_table, compare, plot, points_table, summaries, summary_table,
                        timing_summary)

TASKS = ("detection", "segmentation", "classification")
# The references whose BD-rate columns are printed (all pairs are in the JSON).
PRINTED_REFERENCES = ("vvc", "vvc@0.5", "hevc", "sdc:whole")



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


def anchor_methods(anchors: list[tuple[str, float]], cache_only: set[str], tools: dict,
                   notes: list[str]) -> list[Method]:
    """The anchors whose tools are installed (their versions into `tools`), as Methods."""
    plan = []
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
    return plan


def print_report(reference: dict, methods_run: dict, metrics: list[str], bd: dict, summ: dict, tsum: dict,
                 notes: list[str]) -> None:
    refs = [r for r in PRINTED_REFERENCES if r in methods_run]
    print(f"\nuncompressed (original COCO JPEGs, {reference['bpp']:.3f} bpp): " +
          ", ".join(f"{METRICS[m][1]} {reference[m]:.4f}" for m in metrics if m in reference))
    print(points_table(methods_run, metrics))
    for m in metrics:
        print(f"\nBD-rate at equal {METRICS[m][1]} (PCHIP on the Pareto fronts; negative = fewer bits):")
        print(bd_table(bd[m], refs))
        print(summary_table(summ, m))
    print("\ntask model seconds per image (1 thread): " +
          ", ".join(f"{t} median {v['median_s'] * 1000:.0f} ms (n {v['n']})" for t, v in tsum.items()))
    for n in notes:
        print("note:", n)


def parse_args(argv):
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
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

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
    plan = anchor_methods(anchors, cache_only, tools, notes)
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
    tsum = timing_summary(timings)
    print_report(reference, methods_run, metrics, bd, summ, tsum, notes)
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
