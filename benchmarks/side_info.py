"""Side information of quality-1 .sdc files on coco128: format 1.0 against format 2.0.

For each of the 128 images of ../shared/data/coco128/train2017, an analysis is
built from its ground-truth annotations (`sdc.analysis.load_regions`), once
with the segmentation masks ("masks") and once from the boxes alone ("boxes"),
and coded for object detection at quality 1 with the background not coded:
`encode_image(rgb, qualities=q1, keep_levels=("L1", "L2", "L3"))`, which
writes format 2.0. A third variant ("analyzer") is what a user gets from
`sdc encode -q 1 --task "object detection"`: the offline default analyzer's
regions and metadata, coded with the detection preset. The same region map, hyperprior and substreams are also
written in format 1.0, as a 1.0 writer lays them out: `write_sdc(version=1)`
with format 1.0's metadata (`metadata_before_2_0`: every non-empty reason,
including the heuristic ranker's).

Reported per variant and format: mean bytes of the header (index included),
META, RMAP, DISP, HYPR and the level chunks, and the side information (header,
META, RMAP, DISP) as a share of the file: of the mean sizes, and per file (mean,
median, max, files over 8%). Also the region-map encodings on the same maps
(format 1 run-length, format 2 run-length and adaptive, and a greedy cover by
rectangles painted "most important level wins", the alternative that was
measured and not kept) and which META encoding the writer chose.

    nice -n 10 python benchmarks/side_info.py        # writes benchmarks/results/side_info.json
    python benchmarks/side_info.py --limit 8         # a quick look, writes nothing
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED, git_commit, load_rgb, write_json  # noqa: E402

COCO = SHARED / "data" / "coco128"
QUALITY_1 = {"L1": 1, "L2": 1, "L3": 1, "other": 1}
KEEP = ("L1", "L2", "L3")
SIDE_PARTS = ("header", "META", "RMAP", "DISP")  # DISP: the original size of a picture coded smaller
PARTS = (*SIDE_PARTS, "HYPR", "levels")
TARGET_PERCENT = 8.0
TASK = "object detection"
VARIANTS = ("masks", "boxes", "analyzer")


def metadata_before_2_0(analysis) -> dict:
    """What Analysis.metadata() wrote into format 1.0 files: reasons whoever ranked."""
    md = analysis.metadata()
    for o, d in zip(analysis.objects, md["objects"]):
        if o.reason:
            d["reason"] = o.reason
    return md


def parts(data: bytes) -> dict[str, int]:
    from sdc.bitstream import describe_sdc

    sizes = {p: 0 for p in PARTS}
    for c in describe_sdc(data)["chunks"]:
        sizes["levels" if c["name"] in KEEP or c["name"] == "other" else c["name"]] += c["length"]
    sizes["total"] = len(data)
    sizes["side"] = sum(sizes[p] for p in SIDE_PARTS)
    return sizes


def rectangle_cover_bytes(region_map: np.ndarray) -> int:
    """Bytes of a greedy cover of the map by rectangles (level, row, column, height,
    width as varints; the most important level wins where they overlap)."""
    from sdc.bitstream.wire import varint_size

    h, w = region_map.shape
    rects = []
    for level in (0, 1, 2):
        todo = region_map == level
        allowed = region_map <= level
        while todo.any():
            r, c = (int(v) for v in np.argwhere(todo)[0])
            best = None
            for wide_first in (True, False):
                if wide_first:
                    c1 = c
                    while c1 < w and allowed[r, c1]:
                        c1 += 1
                    r1 = r
                    while r1 < h and allowed[r1, c:c1].all():
                        r1 += 1
                else:
                    r1 = r
                    while r1 < h and allowed[r1, c]:
                        r1 += 1
                    c1 = c
                    while c1 < w and allowed[r:r1, c1].all():
                        c1 += 1
                gain = int(todo[r:r1, c:c1].sum())
                if best is None or gain > best[0]:
                    best = (gain, r, c, r1, c1)
            _, r0, c0, r1, c1 = best
            todo[r0:r1, c0:c1] = False
            rects.append((level, r0, c0, r1 - r0 - 1, c1 - c0 - 1))
    return 1 + varint_size(len(rects)) + sum(
        varint_size(r0 * 4 + lv) + varint_size(c0) + varint_size(dh) + varint_size(dw) for lv, r0, c0, dh, dw in rects)


def region_map_sizes(region_map: np.ndarray) -> dict[str, int]:
    from sdc.bitstream.regionmap import ENCODING_ADAPTIVE, ENCODING_ROW_RLE, encode_region_map

    return {
        "1.0 run-length": len(encode_region_map(region_map, version=1)),
        "2.0 run-length": len(encode_region_map(region_map, encoding=ENCODING_ROW_RLE)),
        "2.0 adaptive": len(encode_region_map(region_map, encoding=ENCODING_ADAPTIVE)),
        "rectangles (not kept)": rectangle_cover_bytes(region_map),
        "2.0 written": len(encode_region_map(region_map)),
    }


def code_one(path: Path, coco: dict, variant: str) -> dict:
    from sdc.analysis import load_regions
    from sdc.bitstream import SdcFile, read_sdc, write_sdc
    from sdc.bitstream.metadata import encode_metadata
    from sdc.models.codec import default_codec
    from sdc.pipeline import encode_image

    rgb = load_rgb(path)
    h, w = rgb.shape[:2]
    if variant == "analyzer":  # what `sdc encode -q 1 --task "object detection"` writes
        result = encode_image(rgb, q=1, task=TASK)
        analysis = result.analysis
    else:
        analysis = load_regions(coco, w, h, file_name=path.name)
        result = encode_image(rgb, qualities=QUALITY_1, keep_levels=KEEP, analysis=analysis)
    new = result.data
    f = read_sdc(new)
    header = replace(f.header, codec_id=default_codec().codec_id)  # 1.0 stores all 8 bytes of it
    old = write_sdc(SdcFile(header=header, region_map=f.region_map, hyperprior=f.hyperprior, levels=f.levels,
                            metadata=metadata_before_2_0(analysis), missing_levels=f.missing_levels), version=1)
    g = read_sdc(old)
    assert np.array_equal(g.region_map, f.region_map) and g.levels == f.levels and g.hyperprior == f.hyperprior
    meta = encode_metadata(analysis.metadata())  # the META payload in `new`
    return {"image": path.name, "variant": variant, "width": w, "height": h, "objects": len(analysis.objects),
            "1.0": parts(old), "2.0": parts(new), "meta_encoding": meta[0],
            "region_map": region_map_sizes(f.region_map)}


def summarize(rows: list[dict]) -> dict:
    out = {"images": len(rows), "objects_per_image": round(statistics.mean(r["objects"] for r in rows), 2)}
    for version in ("1.0", "2.0"):
        sizes = [r[version] for r in rows]
        mean = {p: round(statistics.mean(s[p] for s in sizes), 1) for p in (*PARTS, "side", "total")}
        per_file = [100 * s["side"] / s["total"] for s in sizes]
        out[version] = {
            "mean_bytes": mean,
            "side_percent_of_mean_file": round(100 * mean["side"] / mean["total"], 2),
            "side_percent_per_file": {"mean": round(statistics.mean(per_file), 2),
                                      "median": round(statistics.median(per_file), 2),
                                      "max": round(max(per_file), 2),
                                      f"files_over_{TARGET_PERCENT:g}": sum(p > TARGET_PERCENT for p in per_file)},
        }
    out["region_map_bytes"] = {k: round(statistics.mean(r["region_map"][k] for r in rows), 1)
                               for k in rows[0]["region_map"]}
    out["region_map_adaptive_chosen"] = sum(r["region_map"]["2.0 written"] == r["region_map"]["2.0 adaptive"]
                                            and r["region_map"]["2.0 adaptive"] < r["region_map"]["2.0 run-length"]
                                            for r in rows)
    out["meta_encodings"] = {str(k): sum(r["meta_encoding"] == k for r in rows) for k in (1, 2, 3)}
    return out


def main(argv=None) -> int:
    import json

    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="first N images only; writes nothing")
    ap.add_argument("--out", default=str(RESULTS / "side_info.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the machine is shared
    coco = json.loads((COCO / "annotations" / "instances_train2017.json").read_text())
    boxes_only = dict(coco, annotations=[{k: v for k, v in a.items() if k != "segmentation"}
                                         for a in coco["annotations"]])
    paths = sorted((COCO / "train2017").glob("*.jpg"))[:args.limit]
    t0 = time.perf_counter()
    rows = []
    for i, path in enumerate(paths):
        for variant, source in zip(VARIANTS, (coco, boxes_only, None)):
            rows.append(code_one(path, source, variant))
        if (i + 1) % 16 == 0:
            print(f"{i + 1}/{len(paths)} images, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    result = {
        "benchmark": "side_info",
        "what": __doc__.split("\n\n")[1].replace("\n", " "),
        "qualities": QUALITY_1,
        "keep_levels": list(KEEP),
        "target": f"side information (header, index, META, RMAP, DISP) <= {TARGET_PERCENT:g}% of a quality-1 file",
        "variants": {v: summarize([r for r in rows if r["variant"] == v]) for v in VARIANTS},
        "seconds": round(time.perf_counter() - t0, 1),
        "git": git_commit(),
        "per_image": rows,
    }
    print(json.dumps(result["variants"], indent=1))
    if args.limit is None:
        write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
