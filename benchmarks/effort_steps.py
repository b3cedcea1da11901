"""What more encoder effort buys: real cost of sdc encode --effort E on a few val photos.

    python benchmarks/effort_steps.py [--images 0,4,8] [--qualities 3,6] [--efforts 1,2,3,4]

rd.py --effort E gives the BD-rate of one effort over the whole sweep but
takes (10 images x qualities) encodes of up to ~2 minutes each at effort 4;
this compares efforts on the same few (image, quality) pairs: the real
rate-distortion cost the encoder minimises (mean λ·255²·MSE + bits per pixel,
`SDCCodec.rd_cost`), bpp of the whole payload, PSNR and CPU seconds, each
relative to effort 1. Writes results/effort_steps.json.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, git_commit, load_rgb, machine_info, set_threads, table, val_paths, weights_info, write_json  # noqa: E402

OUT = RESULTS / "effort_steps.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="0,4,8", help="indexes into the sorted val photos")
    ap.add_argument("--qualities", default="3,6")
    ap.add_argument("--efforts", default="1,2,3,4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    set_threads(args.threads)

    from sdc.levels import LEVELS
    from sdc.models.codec import default_codec
    from sdc.geometry import latent_shape
    from sdc.pipeline import refine_steps

    codec = default_codec()
    paths = val_paths()
    efforts = [int(e) for e in args.efforts.split(",")]
    rows = []
    for i in (int(s) for s in args.images.split(",")):
        rgb = load_rgb(paths[i])
        gmap = np.full(latent_shape(*rgb.shape[:2]), len(LEVELS) - 1, np.uint8)
        for q in (int(s) for s in args.qualities.split(",")):
            base = None
            for effort in efforts:
                start = time.process_time()
                coded = codec.encode(rgb, gmap, {lv: q for lv in LEVELS}, **refine_steps(effort))
                cpu = time.process_time() - start
                bits = 8 * coded.payload_bytes
                err = ((codec.decode(coded).astype(np.float64) - rgb) ** 2).mean()
                row = {"image": paths[i].name, "quality": q, "effort": effort, "cost": codec.rd_cost(coded, rgb),
                       "bpp": bits / (rgb.shape[0] * rgb.shape[1]), "psnr": 10 * math.log10(255**2 / err),
                       "cpu_s": cpu}
                base = base or row
                row["cost_vs_effort1_pct"] = 100 * (row["cost"] / base["cost"] - 1)
                rows.append(row)
                print(f"{row['image']} q{q} effort {effort}: cost {row['cost']:.4f} ({row['cost_vs_effort1_pct']:+.2f}%)"
                      f" {row['bpp']:.4f} bpp {row['psnr']:.2f} dB {cpu:.0f} s", flush=True)
    summary = []
    for effort in efforts:
        mine = [r for r in rows if r["effort"] == effort]
        summary.append({"effort": effort, "steps": refine_steps(effort),
                        "mean_cost_vs_effort1_pct": float(np.mean([r["cost_vs_effort1_pct"] for r in mine])),
                        "mean_cpu_s": float(np.mean([r["cpu_s"] for r in mine]))})
    print(table([[s["effort"], f"{s['mean_cost_vs_effort1_pct']:+.2f}%", f"{s['mean_cpu_s']:.0f}"] for s in summary],
                ["effort", "RD cost vs effort 1", "CPU s per encode"]))
    write_json(args.out, {"benchmark": "effort_steps", "command": " ".join(sys.argv), "git_commit": git_commit(),
                          "machine": machine_info(), "weights": weights_info(), "threads": args.threads,
                          "summary": summary, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
