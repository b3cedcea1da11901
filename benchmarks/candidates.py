"""Compare candidate codec weights by real bitstreams on ../shared/data/val.

    nice -n 10 python benchmarks/candidates.py A=runs/v4a_w B=runs/v4b_w \\
        --question "widen y from 96 to 144 channels?" --protocol "..." \\
        --out benchmarks/results/widen_candidates.json

Each candidate is a weights directory (sdc.safetensors + manifest.json, as
``python -m sdc.training.export`` writes). For each one this runs the rate-distortion
sweep of benchmarks/rd.py (every quality, whole .sdc files, region map all
"other"), then reports BD-rate (PSNR) of every candidate against the first
and against the cached baselines (results/rd_baselines.json; run rd.py once
to fill it), and the median encode/decode seconds of the sweep. It is the
measurement behind a training decision made "at equal CPU time".
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines as B  # noqa: E402
import rd  # noqa: E402
from common import arguments, read_json, start, table, write_json  # noqa: E402


def sweep(weights: Path, images: dict, qualities: list[int]) -> tuple[dict, dict]:
    """rd.run_sdc with `weights` as the default codec; returns (per-image points, manifest)."""
    from sdc.models.codec import default_codec

    os.environ["SDC_WEIGHTS"] = str(weights)
    default_codec.cache_clear()
    manifest = default_codec().manifest
    return rd.run_sdc(images, qualities), manifest


def main(argv=None) -> int:
    ap = arguments(__doc__, None)
    ap.add_argument("candidates", nargs="+", help="NAME=weights_dir; the first is the reference")
    ap.add_argument("--question", required=True)
    ap.add_argument("--protocol", default="", help="how the candidates were trained (equal CPU time, ...)")
    ap.add_argument("--anchors", default="webp,hevc,jpeg", help="cached baselines to compare against")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    started = start(args)
    cands = []
    for item in args.candidates:
        name, sep, folder = item.partition("=")
        if not sep or not (Path(folder) / "sdc.safetensors").is_file():
            ap.error(f"expected NAME=weights_dir with sdc.safetensors, got {item!r}")
        cands.append((name, Path(folder)))

    images = rd.load_val_images(args.limit)
    cache = read_json(rd.CACHE) if rd.CACHE.exists() else {"codecs": {}}
    anchors = {}
    for c in args.anchors.split(","):
        entry = cache["codecs"].get(c)
        if entry:
            anchors[c] = rd.mean_curve(entry["points"], images, B.PARAMS[c])

    results, curves = {}, {}
    for name, folder in cands:
        print(f"{name}: {folder}", flush=True)
        arch = read_json(folder / "manifest.json").get("architecture", {})
        qualities = list(range(1, int(arch.get("num_qualities", 8)) + 1))
        points, manifest = sweep(folder, images, qualities)
        curve = rd.mean_curve(points, images, qualities)
        curves[name] = curve
        arch = manifest.get("architecture", {})
        results[name] = {
            "weights": str(folder), "sha256": manifest.get("sha256"),
            "architecture": {k: arch.get(k) for k in ("N", "M", "num_qualities", "context_slices", "g_s_res", "bypass", "g_s_width", "g_a_res", "g_s_pointwise")},
            "training": {k: (manifest.get("training") or {}).get(k) for k in ("steps", "cpu_hours", "initialised_from")},
            "curve": curve,
            "encode_s_median": float(np.median([q["encode_s"] for im in points.values() for q in im.values()])),
            "decode_s_median": float(np.median([q["decode_s"] for im in points.values() for q in im.values()])),
        }

    ref = cands[0][0]
    # Candidates may have different numbers of qualities: BD-rates are taken over the
    # qualities all candidates share (1..common), and against the anchors also over all.
    common = min(len(c) for c in curves.values())

    def bd_of(ac, c):
        rate, dq = rd.bd_pair([p["bpp"] for p in ac], [p["psnr"] for p in ac], [p["bpp"] for p in c], [p["psnr"] for p in c])
        return {"bd_rate_psnr": rate, "bd_psnr": dq}

    rows = []
    for name, _ in cands:
        c = curves[name]
        bd = {anchor: bd_of(ac, c[:common]) for anchor, ac in [(ref, curves[ref][:common])] + list(anchors.items())
              if anchor != name}
        results[name]["bd_vs"] = bd
        results[name]["bd_vs_all_qualities"] = {anchor: bd_of(ac, c) for anchor, ac in anchors.items()}
        rows.append([name, f"{c[0]['bpp']:.3f}-{c[-1]['bpp']:.3f}", f"{c[0]['psnr']:.2f}-{c[-1]['psnr']:.2f}"]
                    + [rd.fmt(bd.get(a, {}).get("bd_rate_psnr"), "+.1f", "%") for a in [ref] + list(anchors)]
                    + [rd.fmt(results[name]["bd_vs_all_qualities"][a]["bd_rate_psnr"], "+.1f", "%") for a in anchors]
                    + [f"{results[name]['encode_s_median']:.3f}", f"{results[name]['decode_s_median']:.3f}"])
    print(table(rows, ["candidate", "bpp range", "PSNR range"]
                + [f"BD vs {a} (q1..{common})" for a in [ref] + list(anchors)]
                + [f"BD vs {a} (all q)" for a in anchors] + ["enc s", "dec s"]))
    write_json(args.out, {
        "question": args.question, "protocol": args.protocol,
        "command": "python benchmarks/candidates.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": started["git"], "machine": started["machine"],
        "images": {"dir": "shared/data/val", "count": len(images)},
        "common_qualities": common, "candidates": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
